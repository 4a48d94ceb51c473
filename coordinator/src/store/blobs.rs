//! The uploads' metadata: one `blobs` row a stored upload (size, when it was
//! made, when it was last used) and one `job_blobs` row for each blob a
//! stored job uses, written in the transaction that stores the job. A
//! blob's references are its `job_blobs` rows, so listing them is one query.
//!
//! The rules, each kept by the single writer (so a job's insertion and a
//! blob's deletion are ordered, never interleaved):
//!
//! - A job is stored only if every blob it uses is stored: a blob without a
//!   row but with a file (an upload from before this table, or one written
//!   by the coordinator itself) gains a row; one without a file, or deleted
//!   earlier in the same group, refuses the job ([`StoreError::BlobGone`]).
//! - A blob is deleted only without references: by a user, or by the sweep
//!   once its last use is older than the retention. Its row goes in the
//!   transaction; its file after the commit, before the writer takes its
//!   next group, so a later write never finds a row whose file is going.
//! - A use moves `last_used_at` forward, never back: an upload, a job
//!   submitted with it, a job using it removed (releasing counts as a use,
//!   so a blob outlives its last job by the retention), and downloads,
//!   which the blob store remembers in memory and the sweep records first.

use std::collections::HashSet;
use std::path::Path;

use grid_kernels::ContentDigest;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::{Store, StoreError};
use crate::blobs::blob_path;
use crate::jobs::JobDefinition;
use crate::users::{FIRST_ADMIN, UserId};

/// A stored upload as `GET /api/blobs` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRow {
    pub digest: ContentDigest,
    pub size: u64,
    /// Stored jobs that use it.
    pub references: u64,
    /// Unix ms.
    pub created_at: u64,
    /// Unix ms.
    pub last_used_at: u64,
}

/// What became of a request to delete a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobDeletion {
    /// Deleted: its row, then its file.
    Deleted { size: u64 },
    /// Kept: these stored jobs use it.
    Referenced(Vec<u64>),
    /// There is no such blob (for a user: none that it owns).
    Absent,
    /// Kept for its other owners; the user no longer owns it.
    Disowned { size: u64 },
}

/// Digests are stored as their text, `sha256:<hex>`, as the API writes them.
fn key(digest: &ContentDigest) -> String {
    digest.to_string()
}

fn parse(text: String) -> Result<ContentDigest, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("a blob row names {text:?}")))
}

/// The blobs deleted in the transaction being built: their files go after
/// the commit, and nothing later in the group may use them.
pub(super) type Doomed = HashSet<ContentDigest>;

/// The blobs a new job uses, each made sure of before the job is stored:
/// a row (made for a blob that has a file but none yet), used at `at`.
/// `Err(digest)` if one of them is gone; the job must then not be stored.
pub(super) fn claim_job_blobs(
    tx: &Transaction,
    dir: &Path,
    doomed: &Doomed,
    definition: &JobDefinition,
    at: u64,
) -> Result<Result<Vec<ContentDigest>, ContentDigest>, StoreError> {
    let blobs = definition.blobs();
    for digest in &blobs {
        if !ensure_row(tx, dir, doomed, digest, at)? {
            return Ok(Err(*digest));
        }
    }
    Ok(Ok(blobs))
}

/// The references of job `job`, just stored, to the blobs it claimed.
pub(super) fn link_job_blobs(
    tx: &Transaction,
    job: u64,
    blobs: &[ContentDigest],
) -> Result<(), StoreError> {
    let mut insert =
        tx.prepare_cached("INSERT OR IGNORE INTO job_blobs (digest, job_id) VALUES (?1, ?2)")?;
    for digest in blobs {
        insert.execute(params![key(digest), job])?;
    }
    Ok(())
}

/// Makes sure `digest` has a row, used at `at`: true, or false if the blob
/// is gone (no file, or deleted in this group).
fn ensure_row(
    tx: &Transaction,
    dir: &Path,
    doomed: &Doomed,
    digest: &ContentDigest,
    at: u64,
) -> Result<bool, StoreError> {
    if doomed.contains(digest) {
        return Ok(false);
    }
    let touched = tx
        .prepare_cached("UPDATE blobs SET last_used_at = max(last_used_at, ?2) WHERE digest = ?1")?
        .execute(params![key(digest), at])?;
    if touched == 1 {
        return Ok(true);
    }
    match std::fs::metadata(blob_path(dir, digest)) {
        Ok(meta) if meta.is_file() => {
            insert_row(tx, digest, meta.len(), at)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

fn insert_row(
    tx: &Transaction,
    digest: &ContentDigest,
    size: u64,
    at: u64,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO blobs (digest, size, created_at, last_used_at) VALUES (?1, ?2, ?3, ?3)
         ON CONFLICT (digest) DO UPDATE SET last_used_at = max(last_used_at, excluded.last_used_at)",
    )?
    .execute(params![key(digest), size, at])?;
    Ok(())
}

/// An upload of `digest` (`size` bytes) at `at` by `owner` (none for an
/// output a worker stored): its row made or its last use moved, and the
/// owner recorded. False if its file is not there (any more).
#[allow(clippy::too_many_arguments)]
pub(super) fn record_upload(
    tx: &Transaction,
    dir: &Path,
    doomed: &Doomed,
    digest: &ContentDigest,
    size: u64,
    at: u64,
    owner: Option<UserId>,
) -> Result<bool, StoreError> {
    if doomed.contains(digest) || !blob_path(dir, digest).is_file() {
        return Ok(false);
    }
    insert_row(tx, digest, size, at)?;
    if let Some(owner) = owner {
        tx.prepare_cached("INSERT OR IGNORE INTO blob_owners (digest, user) VALUES (?1, ?2)")?
            .execute(params![key(digest), owner])?;
    }
    Ok(true)
}

/// Forgets who owned the blobs deleted.
fn forget_owners(tx: &Transaction, digest: &ContentDigest) -> Result<(), StoreError> {
    tx.prepare_cached("DELETE FROM blob_owners WHERE digest = ?1")?
        .execute([key(digest)])?;
    Ok(())
}

/// A user's deletion of `digest` (`as_user` None: an admin's, or the
/// coordinator's own). A user who does not own it finds nothing; one of
/// several owners only gives up its ownership; the last owner, or an
/// admin, deletes the blob, which is refused while jobs use it.
pub(super) fn delete_blob(
    tx: &Transaction,
    dir: &Path,
    doomed: &mut Doomed,
    digest: &ContentDigest,
    as_user: Option<UserId>,
) -> Result<BlobDeletion, StoreError> {
    if let Some(user) = as_user {
        let owners: Vec<UserId> = tx
            .prepare_cached("SELECT user FROM blob_owners WHERE digest = ?1")?
            .query_map([key(digest)], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        if !owners.contains(&user) {
            return Ok(BlobDeletion::Absent);
        }
        if owners.len() > 1 {
            tx.execute(
                "DELETE FROM blob_owners WHERE digest = ?1 AND user = ?2",
                params![key(digest), user],
            )?;
            let size = tx.query_row(
                "SELECT size FROM blobs WHERE digest = ?1",
                [key(digest)],
                |r| r.get(0),
            )?;
            return Ok(BlobDeletion::Disowned { size });
        }
    }
    let users = tx
        .prepare_cached("SELECT job_id FROM job_blobs WHERE digest = ?1 ORDER BY job_id")?
        .query_map([key(digest)], |r| r.get::<_, u64>(0))?
        .collect::<Result<Vec<u64>, _>>()?;
    if !users.is_empty() {
        return Ok(BlobDeletion::Referenced(users));
    }
    if doomed.contains(digest) {
        return Ok(BlobDeletion::Absent);
    }
    let size: Option<u64> = tx
        .query_row(
            "DELETE FROM blobs WHERE digest = ?1 RETURNING size",
            [key(digest)],
            |r| r.get(0),
        )
        .optional()?;
    // A file without a row (written by the coordinator, never used) goes too.
    let size = size.or_else(|| {
        std::fs::metadata(blob_path(dir, digest))
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
    });
    forget_owners(tx, digest)?;
    Ok(match size {
        Some(size) => {
            doomed.insert(*digest);
            BlobDeletion::Deleted { size }
        }
        None => BlobDeletion::Absent,
    })
}

/// The retention sweep: records the downloads remembered (`touches`), then
/// deletes every blob that no job uses and that was last used before
/// `cutoff`. The blobs deleted, with their sizes.
pub(super) fn sweep(
    tx: &Transaction,
    doomed: &mut Doomed,
    touches: &[(ContentDigest, u64)],
    cutoff: u64,
) -> Result<Vec<(ContentDigest, u64)>, StoreError> {
    {
        let mut touch = tx.prepare_cached(
            "UPDATE blobs SET last_used_at = max(last_used_at, ?2) WHERE digest = ?1",
        )?;
        for (digest, at) in touches {
            touch.execute(params![key(digest), at])?;
        }
    }
    let expired = tx
        .prepare_cached(
            "DELETE FROM blobs
             WHERE last_used_at < ?1
               AND NOT EXISTS (SELECT 1 FROM job_blobs j WHERE j.digest = blobs.digest)
             RETURNING digest, size",
        )?
        // SQLite integers are signed: a cutoff past them means "any time".
        .query_map([cutoff.min(i64::MAX as u64)], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut swept = Vec::with_capacity(expired.len());
    for (digest, size) in expired {
        let digest = parse(digest)?;
        forget_owners(tx, &digest)?;
        doomed.insert(digest);
        swept.push((digest, size));
    }
    Ok(swept)
}

/// Deletes a finished job's rows (its results, votes and blob references
/// too); the blobs it used count as used at `at`. False if there was no
/// such job.
pub(super) fn delete_job(tx: &Transaction, job: u64, at: u64) -> Result<bool, StoreError> {
    tx.execute(
        "UPDATE blobs SET last_used_at = max(last_used_at, ?2)
         WHERE digest IN (SELECT digest FROM job_blobs WHERE job_id = ?1)",
        params![job, at],
    )?;
    for table in ["job_blobs", "results", "replicas"] {
        tx.execute(&format!("DELETE FROM {table} WHERE job_id = ?1"), [job])?;
    }
    Ok(tx.execute("DELETE FROM jobs WHERE id = ?1", [job])? == 1)
}

/// At start, before the writer runs: every blob file in `dir` without a row
/// gets one (created and last used `now`, so a blob from before this table
/// has a full retention period ahead), and a row whose file is gone and
/// that no job uses is dropped. Jobs stored before `job_blobs` existed get
/// their rows, once.
pub(super) fn reconcile(conn: &mut Connection, dir: &Path, now: u64) -> Result<(), StoreError> {
    let files = crate::blobs::scan(dir)
        .map_err(|e| StoreError::Io(format!("cannot read {}: {e}", dir.display())))?;
    let tx = conn.transaction()?;
    let filled: Option<String> = tx
        .query_row("SELECT value FROM meta WHERE key = 'job_blobs'", [], |r| {
            r.get(0)
        })
        .optional()?;
    if filled.is_none() {
        let jobs = super::reads::load_jobs_from(&tx)?;
        let mut insert =
            tx.prepare("INSERT OR IGNORE INTO job_blobs (digest, job_id) VALUES (?1, ?2)")?;
        for job in &jobs {
            for digest in job.definition.blobs() {
                insert.execute(params![key(&digest), job.id])?;
            }
        }
        drop(insert);
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('job_blobs', '1')",
            [],
        )?;
    }
    // Blobs uploaded before users belong to the first admin, once.
    let owned: Option<String> = tx
        .query_row(
            "SELECT value FROM meta WHERE key = 'blob_owners'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if owned.is_none() {
        tx.execute(
            "INSERT OR IGNORE INTO blob_owners (digest, user) SELECT digest, ?1 FROM blobs",
            [FIRST_ADMIN],
        )?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('blob_owners', '1')",
            [],
        )?;
    }
    let known: HashSet<ContentDigest> = tx
        .prepare("SELECT digest FROM blobs")?
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .map(parse)
        .collect::<Result<_, _>>()?;
    let mut adopted = 0;
    for (digest, size, _) in &files {
        if !known.contains(digest) {
            tx.execute(
                "INSERT INTO blobs (digest, size, created_at, last_used_at) VALUES (?1, ?2, ?3, ?3)",
                params![key(digest), size, now],
            )?;
            // A file of unknown origin: the first admin's to see and delete.
            tx.execute(
                "INSERT OR IGNORE INTO blob_owners (digest, user) VALUES (?1, ?2)",
                params![key(digest), FIRST_ADMIN],
            )?;
            adopted += 1;
        }
    }
    let on_disk: HashSet<ContentDigest> = files.iter().map(|(d, ..)| *d).collect();
    let mut dropped = 0;
    for digest in known.difference(&on_disk) {
        let gone = tx.execute(
            "DELETE FROM blobs WHERE digest = ?1
               AND NOT EXISTS (SELECT 1 FROM job_blobs j WHERE j.digest = blobs.digest)",
            [key(digest)],
        )?;
        if gone > 0 {
            tx.execute("DELETE FROM blob_owners WHERE digest = ?1", [key(digest)])?;
        }
        dropped += gone;
    }
    tx.commit()?;
    if adopted > 0 || dropped > 0 {
        tracing::info!(adopted, dropped, "blob rows brought in line with the files");
    }
    Ok(())
}

impl Store {
    /// The stored uploads `owner` owns (every one for None) with their
    /// references, by digest.
    pub fn blobs(&self, owner: Option<UserId>) -> Result<Vec<BlobRow>, StoreError> {
        let conn = self.reader();
        let mut statement = conn.prepare(
            "SELECT b.digest, b.size, b.created_at, b.last_used_at,
                    (SELECT COUNT(*) FROM job_blobs j WHERE j.digest = b.digest)
             FROM blobs b
             WHERE ?1 IS NULL
                OR EXISTS (SELECT 1 FROM blob_owners o WHERE o.digest = b.digest AND o.user = ?1)
             ORDER BY b.digest",
        )?;
        let rows = statement
            .query_map([owner], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, u64>(1)?,
                    r.get::<_, u64>(2)?,
                    r.get::<_, u64>(3)?,
                    r.get::<_, u64>(4)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(digest, size, created_at, last_used_at, references)| {
                Ok(BlobRow {
                    digest: parse(digest)?,
                    size,
                    references,
                    created_at,
                    last_used_at,
                })
            })
            .collect()
    }

    /// Whether `user` may read or use blob `digest`: it uploaded it, or one
    /// of its jobs uses it.
    pub fn blob_readable(&self, digest: &ContentDigest, user: UserId) -> Result<bool, StoreError> {
        let conn = self.reader();
        Ok(conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM blob_owners WHERE digest = ?1 AND user = ?2)
                 OR EXISTS (SELECT 1 FROM job_blobs b JOIN jobs j ON j.id = b.job_id
                            WHERE b.digest = ?1 AND j.owner = ?2)",
            params![key(digest), user],
            |r| r.get(0),
        )?)
    }

    /// The bytes of the uploads `user` owns (each counted whole, shared or
    /// not).
    pub fn stored_bytes(&self, user: UserId) -> Result<u64, StoreError> {
        let conn = self.reader();
        Ok(conn.query_row(
            "SELECT COALESCE(SUM(b.size), 0) FROM blobs b
             JOIN blob_owners o ON o.digest = b.digest WHERE o.user = ?1",
            [user],
            |r| r.get(0),
        )?)
    }

    /// How many uploads are stored, and their bytes.
    pub fn blob_totals(&self) -> Result<(u64, u64), StoreError> {
        let conn = self.reader();
        Ok(conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM blobs",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    }

    /// Records an upload of `digest` (`size` bytes) at `at`. False if its
    /// file is not there: a deletion got to it first, and it must be
    /// written again.
    pub async fn record_upload(
        &self,
        digest: ContentDigest,
        size: u64,
        at: u64,
        owner: Option<UserId>,
    ) -> Result<bool, StoreError> {
        self.send(|reply| super::writer::Write::RecordUpload {
            digest,
            size,
            at,
            owner,
            reply,
        })
        .await
    }

    /// Deletes an upload no job uses: its row, then its file. `as_user`:
    /// see [`delete_blob`]'s rules (None for an admin or the coordinator).
    pub async fn delete_blob(
        &self,
        digest: ContentDigest,
        as_user: Option<UserId>,
    ) -> Result<BlobDeletion, StoreError> {
        self.send(|reply| super::writer::Write::DeleteBlob {
            digest,
            as_user,
            reply,
        })
        .await
    }

    /// Records `touches` (downloads: blob, Unix ms), then deletes the
    /// uploads no job uses that were last used before `cutoff` (Unix ms).
    pub async fn sweep_blobs(
        &self,
        touches: Vec<(ContentDigest, u64)>,
        cutoff: u64,
    ) -> Result<Vec<(ContentDigest, u64)>, StoreError> {
        self.send(|reply| super::writer::Write::SweepBlobs {
            touches,
            cutoff,
            reply,
        })
        .await
    }

    /// Deletes a job's rows, results and blob references (the caller checks
    /// that it is finished); its blobs count as used at `at`. False if the
    /// store had no such job.
    pub async fn delete_job(&self, job: u64, at: u64) -> Result<bool, StoreError> {
        self.send(|reply| super::writer::Write::DeleteJob { job, at, reply })
            .await
    }
}
