//! The store's single writer: a thread that owns the write connection,
//! takes every write waiting in its queue, applies them in one transaction
//! and answers each caller only after the commit (a group commit). A commit
//! that fails answers every write of its group with the error, so nothing of
//! the group is acknowledged. A write can also be refused on its own (a job
//! whose blob is gone) without failing the others of its group.
//!
//! Blob files deleted by a group (their rows gone in its transaction) are
//! removed after the commit and before the next group, so no later write
//! finds a row whose file is about to go (see [`super::blobs`]).

use std::path::{Path, PathBuf};

use grid_kernels::ContentDigest;
use grid_protocol::api::JobState;
use rusqlite::{Connection, params};
use tokio::sync::oneshot;

use super::blobs::{self, BlobDeletion, Doomed};
use super::{ReplicaRow, ResultRow, StoreError};
use crate::blobs::blob_path;
use crate::jobs::{JobDefinition, Lifecycle};
use crate::metrics::Histogram;

/// The most writes folded into one transaction.
const MAX_GROUP: usize = 4096;

pub(super) enum Write {
    InsertJob(Box<JobDefinition>, oneshot::Sender<Result<u64, StoreError>>),
    /// Results and replicas of one frame; answered with how many result rows
    /// were new (a task already stored is never stored or counted again).
    Results {
        results: Vec<ResultRow>,
        replicas: Vec<ReplicaRow>,
        reply: oneshot::Sender<Result<Vec<bool>, StoreError>>,
    },
    UpdateJob {
        job: u64,
        lifecycle: Lifecycle,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// A re-checked task's corrected output.
    ReplaceResult(ResultRow, oneshot::Sender<Result<(), StoreError>>),
    /// A donor whose results failed validation.
    /// Nothing to write: answered once every write queued before it is
    /// committed.
    Flush(oneshot::Sender<Result<(), StoreError>>),
    Quarantine {
        donor: u64,
        reason: String,
        at: u64,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// An upload; answered false if its file is not there.
    RecordUpload {
        digest: ContentDigest,
        size: u64,
        at: u64,
        owner: Option<crate::users::UserId>,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
    DeleteBlob {
        digest: ContentDigest,
        as_user: Option<crate::users::UserId>,
        reply: oneshot::Sender<Result<BlobDeletion, StoreError>>,
    },
    SweepBlobs {
        touches: Vec<(ContentDigest, u64)>,
        cutoff: u64,
        reply: oneshot::Sender<Result<Vec<(ContentDigest, u64)>, StoreError>>,
    },
    DeleteJob {
        job: u64,
        at: u64,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
    /// The retention: finished jobs older than `cutoff`, at most `max`.
    DeleteFinished {
        cutoff: u64,
        at: u64,
        max: u32,
        reply: oneshot::Sender<Result<u32, StoreError>>,
    },
    /// One small step of `PRAGMA incremental_vacuum`; answered with the
    /// free pages left.
    VacuumStep {
        pages: u32,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    User(
        super::users::UserWrite,
        oneshot::Sender<Result<(), StoreError>>,
    ),
    /// Nobody waits for an audit entry.
    Audit(grid_protocol::api::AuditEntry),
    /// A donor that earned trust; nobody waits for it.
    Trust {
        donor: u64,
        at: u64,
    },
    /// Every job a quarantined donor answered in has been looked at (its
    /// done jobs reopened where they had its answers); nobody waits for it.
    Rechecked {
        donor: u64,
    },
}

pub(super) fn writer_loop(
    mut conn: Connection,
    queue: std::sync::mpsc::Receiver<Write>,
    commits: &Histogram,
    blob_dir: PathBuf,
) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(write) => group.push(write),
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let mut doomed = Doomed::new();
        let outcome = apply_group(&mut conn, &group, &blob_dir, &mut doomed);
        commits.observe_micros(started.elapsed().as_micros() as u64);
        if let Ok(answers) = &outcome {
            for digest in &doomed {
                remove_blob_file(&blob_dir, digest);
            }
            if answers.iter().any(|a| matches!(a, Answer::Vacuumed(0))) {
                checkpoint(&conn);
            }
        }
        answer_group(group, outcome);
    }
    tracing::debug!("store writer stopped");
}

/// Copies the log into the file so that the pages a vacuum freed leave the
/// disk now rather than at the next automatic checkpoint. Passive: it never
/// waits for a reader.
fn checkpoint(conn: &Connection) {
    if let Err(error) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
        tracing::warn!(%error, "cannot checkpoint the store after a vacuum");
    }
}

/// Runs a pragma that may answer rows, reading them all.
fn pragma(tx: &Connection, sql: &str) -> Result<Option<i64>, StoreError> {
    let mut statement = tx.prepare(sql)?;
    let mut rows = statement.query([])?;
    let mut first = None;
    while let Some(row) = rows.next()? {
        if first.is_none() {
            first = row.get(0).ok();
        }
    }
    Ok(first)
}

/// A deleted blob's file, after the commit that deleted its row.
fn remove_blob_file(dir: &Path, digest: &ContentDigest) {
    match std::fs::remove_file(blob_path(dir, digest)) {
        Ok(()) => tracing::info!(%digest, "blob deleted"),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => tracing::warn!(%digest, %error, "cannot remove a deleted blob's file"),
    }
}

enum Answer {
    Id(u64),
    Inserted(Vec<bool>),
    Done,
    Flag(bool),
    BlobDeletion(BlobDeletion),
    Swept(Vec<(ContentDigest, u64)>),
    Count(u32),
    /// Free pages left after a vacuum step.
    Vacuumed(u64),
    /// This write alone is refused; the rest of the group stands.
    Refused(StoreError),
}

fn apply_group(
    conn: &mut Connection,
    group: &[Write],
    blob_dir: &Path,
    doomed: &mut Doomed,
) -> Result<Vec<Answer>, StoreError> {
    let tx = conn.transaction()?;
    let mut answers = Vec::with_capacity(group.len());
    {
        // Not for a job removed meanwhile (its results may still be queued).
        let mut insert_result = tx.prepare_cached(
            "INSERT INTO results (job_id, task, donor, output)
             SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM jobs WHERE id = ?1)
             ON CONFLICT (job_id, task) DO NOTHING",
        )?;
        let mut insert_replica = tx.prepare_cached(
            "INSERT INTO replicas (job_id, task, donor, digest, output)
             SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM jobs WHERE id = ?1)
             ON CONFLICT (job_id, task, donor) DO NOTHING",
        )?;
        for write in group {
            match write {
                Write::InsertJob(job, _) => {
                    let claimed =
                        blobs::claim_job_blobs(&tx, blob_dir, doomed, job, job.created_at)?;
                    let used = match claimed {
                        Ok(used) => used,
                        Err(gone) => {
                            answers.push(Answer::Refused(StoreError::BlobGone(gone)));
                            continue;
                        }
                    };
                    tx.execute(
                        "INSERT INTO jobs (spec, tasks, redundancy, quorum, max_replicas, state,
                                           created_at, inputs, owner, priority)
                         VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?7, ?8, ?9)",
                        params![
                            serde_json::to_string(&job.spec).expect("specs are plain data"),
                            job.tasks,
                            job.replication.redundancy,
                            job.replication.quorum,
                            job.replication.max_replicas,
                            job.created_at,
                            job.inputs
                                .as_ref()
                                .map(|i| serde_json::to_string(i).expect("inputs are plain data")),
                            job.owner,
                            job.priority,
                        ],
                    )?;
                    let id = tx.last_insert_rowid() as u64;
                    blobs::link_job_blobs(&tx, id, &used)?;
                    answers.push(Answer::Id(id));
                }
                Write::Results {
                    results, replicas, ..
                } => {
                    for replica in replicas {
                        insert_replica.execute(params![
                            replica.job,
                            replica.task,
                            replica.donor,
                            &replica.digest[..],
                            &replica.output[..]
                        ])?;
                    }
                    let mut inserted = Vec::with_capacity(results.len());
                    for result in results {
                        inserted.push(
                            insert_result.execute(params![
                                result.job,
                                result.task,
                                result.donor,
                                &result.output[..]
                            ])? == 1,
                        );
                    }
                    answers.push(Answer::Inserted(inserted));
                }
                Write::UpdateJob { job, lifecycle, .. } => {
                    // Only over an older version: transitions may reach this
                    // queue in another order than they happened.
                    tx.execute(
                        "UPDATE jobs SET state = ?2, paused = ?3, started_at = ?4, finished_at = ?5,
                                         error = ?6, result = ?7, version = ?8, revised = ?9
                         WHERE id = ?1 AND version < ?8",
                        params![
                            job,
                            lifecycle.state.name(),
                            lifecycle.paused,
                            lifecycle.started_at,
                            lifecycle.finished_at,
                            lifecycle.error,
                            lifecycle
                                .result
                                .as_ref()
                                .map(|r| serde_json::to_string(r).expect("results are plain data")),
                            lifecycle.version,
                            lifecycle.revised
                        ],
                    )?;
                    if lifecycle.state == JobState::Done {
                        // Votes only matter while a task waits for its quorum;
                        // a failed job keeps them for inspection.
                        tx.execute("DELETE FROM replicas WHERE job_id = ?1", [job])?;
                    }
                    answers.push(Answer::Done);
                }
                Write::Flush(_) => answers.push(Answer::Done),
                Write::Quarantine {
                    donor, reason, at, ..
                } => {
                    let new = tx.execute(
                        "INSERT INTO quarantine (donor, reason, at) VALUES (?1, ?2, ?3)
                         ON CONFLICT (donor) DO NOTHING",
                        params![donor, reason, at],
                    )?;
                    // In the same commit: a crash before the recheck of its
                    // answers is done leaves it to the next start.
                    if new > 0 {
                        tx.execute(
                            "INSERT INTO recheck_pending (donor) VALUES (?1)
                             ON CONFLICT (donor) DO NOTHING",
                            [donor],
                        )?;
                    }
                    answers.push(Answer::Done);
                }
                Write::ReplaceResult(row, _) => {
                    tx.execute(
                        // An upsert: if the first answer's own insert is still queued
                        // behind this one, it then finds the row and is ignored.
                        "INSERT INTO results (job_id, task, donor, output)
                         SELECT ?1, ?2, ?4, ?3 WHERE EXISTS (SELECT 1 FROM jobs WHERE id = ?1)
                         ON CONFLICT (job_id, task) DO UPDATE SET output = excluded.output, donor = excluded.donor",
                        params![row.job, row.task, &row.output[..], row.donor],
                    )?;
                    answers.push(Answer::Done);
                }
                Write::RecordUpload {
                    digest,
                    size,
                    at,
                    owner,
                    ..
                } => answers.push(Answer::Flag(blobs::record_upload(
                    &tx, blob_dir, doomed, digest, *size, *at, *owner,
                )?)),
                Write::DeleteBlob {
                    digest, as_user, ..
                } => answers.push(Answer::BlobDeletion(blobs::delete_blob(
                    &tx, blob_dir, doomed, digest, *as_user,
                )?)),
                Write::SweepBlobs {
                    touches, cutoff, ..
                } => answers.push(Answer::Swept(blobs::sweep(&tx, doomed, touches, *cutoff)?)),
                Write::DeleteJob { job, at, .. } => {
                    answers.push(Answer::Flag(blobs::delete_job(&tx, *job, *at)?))
                }
                Write::DeleteFinished {
                    cutoff, at, max, ..
                } => {
                    let doomed_jobs: Vec<u64> = tx
                        .prepare_cached(
                            // Walks `jobs_by_finished` from the oldest and
                            // stops at the limit: a group costs its own rows
                            // only (a rechecking job keeps its `finished_at`;
                            // `+state` leaves it out without the state index).
                            "SELECT id FROM jobs
                             WHERE finished_at < ?1 AND +state IN ('done', 'failed', 'cancelled')
                             ORDER BY finished_at LIMIT ?2",
                        )?
                        .query_map(params![cutoff, max], |r| r.get(0))?
                        .collect::<Result<_, _>>()?;
                    let mut deleted = 0;
                    for job in doomed_jobs {
                        deleted += u32::from(blobs::delete_job(&tx, job, *at)?);
                    }
                    answers.push(Answer::Count(deleted));
                }
                Write::VacuumStep { pages, .. } => {
                    pragma(&tx, &format!("PRAGMA incremental_vacuum({pages})"))?;
                    let free = pragma(&tx, "PRAGMA freelist_count")?.unwrap_or(0);
                    answers.push(Answer::Vacuumed(u64::try_from(free).unwrap_or(0)));
                }
                Write::User(change, _) => {
                    super::users::apply(&tx, change)?;
                    answers.push(Answer::Done);
                }
                Write::Audit(entry) => {
                    super::audit::append(&tx, entry)?;
                    answers.push(Answer::Done);
                }
                Write::Rechecked { donor } => {
                    tx.execute("DELETE FROM recheck_pending WHERE donor = ?1", [donor])?;
                    answers.push(Answer::Done);
                }
                Write::Trust { donor, at } => {
                    tx.execute(
                        "INSERT INTO trust (donor, at) VALUES (?1, ?2) ON CONFLICT (donor) DO NOTHING",
                        params![donor, at],
                    )?;
                    answers.push(Answer::Done);
                }
            }
        }
    }
    tx.commit()?;
    Ok(answers)
}

fn answer_group(group: Vec<Write>, outcome: Result<Vec<Answer>, StoreError>) {
    match outcome {
        Ok(answers) => {
            for (write, answer) in group.into_iter().zip(answers) {
                match (write, answer) {
                    (Write::InsertJob(_, reply), Answer::Id(id)) => drop(reply.send(Ok(id))),
                    (Write::InsertJob(_, reply), Answer::Refused(error)) => {
                        drop(reply.send(Err(error)))
                    }
                    (Write::Results { reply, .. }, Answer::Inserted(inserted)) => {
                        drop(reply.send(Ok(inserted)))
                    }
                    (Write::UpdateJob { reply, .. }, Answer::Done) => drop(reply.send(Ok(()))),
                    (Write::ReplaceResult(_, reply), Answer::Done) => drop(reply.send(Ok(()))),
                    (Write::Quarantine { reply, .. }, Answer::Done) => drop(reply.send(Ok(()))),
                    (Write::Flush(reply), Answer::Done) => drop(reply.send(Ok(()))),
                    (Write::RecordUpload { reply, .. }, Answer::Flag(stored)) => {
                        drop(reply.send(Ok(stored)))
                    }
                    (Write::DeleteBlob { reply, .. }, Answer::BlobDeletion(deletion)) => {
                        drop(reply.send(Ok(deletion)))
                    }
                    (Write::SweepBlobs { reply, .. }, Answer::Swept(swept)) => {
                        drop(reply.send(Ok(swept)))
                    }
                    (Write::DeleteJob { reply, .. }, Answer::Flag(deleted)) => {
                        drop(reply.send(Ok(deleted)))
                    }
                    (Write::DeleteFinished { reply, .. }, Answer::Count(count)) => {
                        drop(reply.send(Ok(count)))
                    }
                    (Write::VacuumStep { reply, .. }, Answer::Vacuumed(free)) => {
                        drop(reply.send(Ok(free)))
                    }
                    (Write::User(_, reply), Answer::Done) => drop(reply.send(Ok(()))),
                    (
                        Write::Audit(_) | Write::Trust { .. } | Write::Rechecked { .. },
                        Answer::Done,
                    ) => {}
                    _ => unreachable!("answers are made in the order of the writes"),
                }
            }
        }
        Err(error) => {
            tracing::error!(%error, writes = group.len(), "store commit failed");
            let full = error.is_disk_full();
            let message = error.to_string();
            let failed = || {
                if full {
                    StoreError::DiskFull(format!("commit failed: {message}"))
                } else {
                    StoreError::Io(format!("commit failed: {message}"))
                }
            };
            for write in group {
                match write {
                    Write::InsertJob(_, reply) => drop(reply.send(Err(failed()))),
                    Write::Results { reply, .. } => drop(reply.send(Err(failed()))),
                    Write::UpdateJob { reply, .. } => drop(reply.send(Err(failed()))),
                    Write::ReplaceResult(_, reply) => drop(reply.send(Err(failed()))),
                    Write::Quarantine { reply, .. } => drop(reply.send(Err(failed()))),
                    Write::Flush(reply) => drop(reply.send(Err(failed()))),
                    Write::RecordUpload { reply, .. } => drop(reply.send(Err(failed()))),
                    Write::DeleteBlob { reply, .. } => drop(reply.send(Err(failed()))),
                    Write::SweepBlobs { reply, .. } => drop(reply.send(Err(failed()))),
                    Write::DeleteJob { reply, .. } => drop(reply.send(Err(failed()))),
                    Write::DeleteFinished { reply, .. } => drop(reply.send(Err(failed()))),
                    Write::VacuumStep { reply, .. } => drop(reply.send(Err(failed()))),
                    Write::User(_, reply) => drop(reply.send(Err(failed()))),
                    Write::Audit(entry) => {
                        tracing::warn!(?entry, "an audit entry was not stored")
                    }
                    Write::Trust { donor, .. } => {
                        tracing::warn!(
                            donor,
                            "a donor's trust was not stored; it lasts until a restart"
                        )
                    }
                    Write::Rechecked { donor } => {
                        tracing::warn!(
                            donor,
                            "a finished recheck was not stored; the next start repeats it"
                        )
                    }
                }
            }
        }
    }
}
