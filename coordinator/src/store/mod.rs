//! The durable store: jobs, decided results and replica votes in one SQLite
//! file (WAL mode) under the data directory.
//!
//! Writes go to one thread that owns the write connection ([`writer`]). It
//! takes every write waiting in its queue, applies them in one transaction,
//! commits, and only then answers each caller: a group commit, so
//! durability costs one fsync per group rather than one per result, and a
//! result is acknowledged to its worker only once it is on disk. Reads
//! ([`reads`]) use their own connection and never wait for the writer. The
//! tables and how an older file is brought up to date are in [`schema`];
//! the uploads' rows, their references and who may delete them, in
//! [`blobs`].
//!
//! This module is the handle: opening, the write calls (each answered once
//! its group is committed), and the rows they carry.

mod audit;
mod blobs;
mod reads;
mod schema;
mod users;
mod writer;

pub use blobs::{BlobDeletion, BlobRow};
pub use reads::FinishedPage;
pub use schema::STORE_FILE;
pub use users::UserWrite;
use writer::{Write, writer_loop};

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;

use bytes::Bytes;
use grid_kernels::ContentDigest;
use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::jobs::{JobDefinition, Lifecycle};
use crate::metrics::{Histogram, LATENCY_BOUNDS};

/// How the store was asked to sync commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync on every commit: nothing acknowledged is lost even if the
    /// machine loses power.
    Full,
    /// fsync at WAL checkpoints only: safe against a crash or kill of the
    /// process, not against power loss.
    Normal,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Not a `source`: the message is already in the text, and printing the
    /// chain would repeat it.
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
    #[error("cannot open the store {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("the store's writer thread has stopped")]
    Closed,
    #[error("corrupt record in the store: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Io(String),
    /// A commit failed for want of room.
    #[error("the disk is full: {0}")]
    DiskFull(String),
    /// A job was not stored: a blob it uses was deleted a moment before.
    #[error(
        "blob {0} is no longer stored (it was deleted while the job was submitted): upload it again and resubmit"
    )]
    BlobGone(ContentDigest),
}

impl StoreError {
    /// Whether SQLite said the disk is full.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::DiskFull(_) => true,
            StoreError::Sqlite(error) => {
                error.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
            }
            _ => false,
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        StoreError::Sqlite(error)
    }
}

/// Below this much free space, a store that fails to open is taken to have
/// failed for want of room: SQLite then reports anything from "database or
/// disk is full" to a "disk I/O error" on its shared-memory file.
const LOW_SPACE_BYTES: u64 = 1 << 20;

/// Why the store at `path` could not be opened, in words a user can act on.
fn open_error(data_dir: &Path, path: &Path, error: rusqlite::Error) -> StoreError {
    let free = rustix::fs::statvfs(data_dir)
        .ok()
        .map(|fs| fs.f_bavail.saturating_mul(fs.f_frsize));
    let reason = match free {
        Some(free) if free < LOW_SPACE_BYTES => {
            format!("the disk is full ({free} bytes free; SQLite said: {error})")
        }
        _ => error.to_string(),
    };
    StoreError::Open {
        path: path.display().to_string(),
        reason,
    }
}

/// A job as stored: its definition and its lifecycle, and how many of its
/// tasks are decided (all of a done job's; the stored results of another).
#[derive(Debug, Clone)]
pub struct StoredJob {
    pub id: u64,
    pub definition: JobDefinition,
    pub lifecycle: Lifecycle,
    pub tasks_done: u32,
}

/// A decided task's output.
#[derive(Debug, Clone)]
pub struct ResultRow {
    pub job: u64,
    pub task: u32,
    pub donor: u64,
    /// A view of the results frame it came in (see `ResultsFrame`).
    pub output: Bytes,
}

/// One replica's answer, kept while a task waits for its quorum.
#[derive(Debug, Clone)]
pub struct ReplicaRow {
    pub job: u64,
    pub task: u32,
    pub donor: u64,
    pub digest: [u8; 32],
    pub output: Bytes,
}

/// A cheap handle to the store; clone it freely.
#[derive(Clone, Debug)]
pub struct Store {
    writes: std::sync::mpsc::SyncSender<Write>,
    reader: Arc<Mutex<Connection>>,
    /// For short reads only (see `reads`).
    lookups: Arc<Mutex<Connection>>,
    path: PathBuf,
    commits: Arc<Histogram>,
}

impl Store {
    /// Opens (creating if needed) `DATA/grid.sqlite3` and starts the writer.
    /// Fails with a clear error if the directory cannot be written.
    pub fn open(data_dir: &Path, durability: Durability) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Io(format!(
                "cannot create data directory {}: {e}",
                data_dir.display()
            ))
        })?;
        let path = data_dir.join(STORE_FILE);
        let (mut writer, reader) = schema::open_connections(&path, durability)
            .map_err(|e| open_error(data_dir, &path, e))?;
        let blob_dir = data_dir.join(crate::blobs::UPLOADS);
        blobs::reconcile(&mut writer, &blob_dir, crate::clock::unix_ms()).map_err(|e| match e {
            StoreError::Sqlite(e) => open_error(data_dir, &path, e),
            other => other,
        })?;
        let lookups = Connection::open(&path)
            .and_then(|conn| {
                conn.busy_timeout(std::time::Duration::from_secs(5))?;
                Ok(conn)
            })
            .map_err(|e| open_error(data_dir, &path, e))?;
        let (writes, queue) = std::sync::mpsc::sync_channel(65_536);
        let commits = Arc::new(Histogram::new(LATENCY_BOUNDS));
        let timing = commits.clone();
        thread::Builder::new()
            .name("grid-store".into())
            .spawn(move || writer_loop(writer, queue, &timing, blob_dir))
            .map_err(|e| StoreError::Io(format!("cannot start the store thread: {e}")))?;
        Ok(Store {
            writes,
            reader: Arc::new(Mutex::new(reader)),
            lookups: Arc::new(Mutex::new(lookups)),
            path,
            commits,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How long group commits take.
    pub fn commit_latency(&self) -> &Histogram {
        &self.commits
    }

    /// How many times this store has been opened: a run number, so ids made
    /// from it never repeat across restarts.
    pub fn epoch(&self) -> Result<u64, StoreError> {
        let conn = self.reader();
        let value: String =
            conn.query_row("SELECT value FROM meta WHERE key = 'opened'", [], |r| {
                r.get(0)
            })?;
        value
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("meta.opened = {value:?}")))
    }

    async fn send<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Write,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let writes = self.writes.clone();
        let write = make(reply);
        // The queue is bounded; a full queue blocks, so do it off the runtime.
        match writes.try_send(write) {
            Ok(()) => {}
            Err(std::sync::mpsc::TrySendError::Full(write)) => {
                tokio::task::spawn_blocking(move || writes.send(write).map_err(drop))
                    .await
                    .map_err(|_| StoreError::Closed)?
                    .map_err(|_| StoreError::Closed)?;
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return Err(StoreError::Closed),
        }
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Stores a new job, queued; the store assigns its id.
    pub async fn insert_job(&self, definition: JobDefinition) -> Result<u64, StoreError> {
        self.send(|reply| Write::InsertJob(Box::new(definition), reply))
            .await
    }

    /// Stores results and replicas durably. For each result, whether it was
    /// new.
    pub async fn record(
        &self,
        results: Vec<ResultRow>,
        replicas: Vec<ReplicaRow>,
    ) -> Result<Vec<bool>, StoreError> {
        if results.is_empty() && replicas.is_empty() {
            return Ok(Vec::new());
        }
        self.send(|reply| Write::Results {
            results,
            replicas,
            reply,
        })
        .await
    }

    /// Stores a job's lifecycle, unless a later version of it is already
    /// stored (see [`Lifecycle::version`]).
    pub async fn update_job(&self, job: u64, lifecycle: Lifecycle) -> Result<(), StoreError> {
        self.send(|reply| Write::UpdateJob {
            job,
            lifecycle,
            reply,
        })
        .await
    }

    /// Overwrites a decided task's output (after a re-check found it wrong).
    pub async fn replace_result(&self, row: ResultRow) -> Result<(), StoreError> {
        self.send(|reply| Write::ReplaceResult(row, reply)).await
    }

    /// Deletes up to `max` finished jobs that finished before `cutoff`
    /// (Unix ms), oldest first, as `grid rm` does (their blobs count as used
    /// at `at`). How many went; fewer than `max` means none is left.
    pub async fn delete_finished(&self, cutoff: u64, at: u64, max: u32) -> Result<u32, StoreError> {
        self.send(|reply| Write::DeleteFinished {
            cutoff,
            at,
            max,
            reply,
        })
        .await
    }

    /// Gives up to `pages` free pages back to the file system
    /// (`PRAGMA incremental_vacuum`); answers how many free pages are left.
    /// Once none is, the write-ahead log is checkpointed so the file shrinks.
    pub async fn vacuum_step(&self, pages: u32) -> Result<u64, StoreError> {
        self.send(|reply| Write::VacuumStep { pages, reply }).await
    }

    /// Stores a change to the users.
    pub async fn change_user(&self, change: users::UserWrite) -> Result<(), StoreError> {
        self.send(|reply| Write::User(change, reply)).await
    }

    /// Waits until every write queued so far is committed (or has failed):
    /// what shutdown waits for, since some writes are not awaited by anyone
    /// (a job's start, a quarantine).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.send(Write::Flush).await
    }

    /// Queues a write nobody waits for, behind the writes before it, to be
    /// committed with the next group: without blocking the caller, even
    /// when the queue is full. If the store is closed, `lost` says what
    /// that costs.
    fn queue_unanswered(&self, write: Write, lost: impl FnOnce(Write)) {
        match self.writes.try_send(write) {
            Ok(()) => {}
            Err(std::sync::mpsc::TrySendError::Full(write)) => {
                let writes = self.writes.clone();
                tokio::task::spawn_blocking(move || writes.send(write).map_err(drop));
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(write)) => lost(write),
        }
    }

    /// Remembers a quarantined donor, so that a restart does not forgive it,
    /// and that its answers in finished jobs are still to be looked at
    /// (until [`Store::remember_rechecked`]). Nobody waits for it (a
    /// donor's results are refused from the moment the scheduler
    /// quarantines it).
    pub fn remember_quarantine(&self, donor: u64, reason: &str, at: u64) {
        let (reply, _) = oneshot::channel();
        let write = Write::Quarantine {
            donor,
            reason: reason.to_owned(),
            at,
            reply,
        };
        self.queue_unanswered(write, |_| {
            tracing::warn!(
                donor,
                "the store is closed; this quarantine lasts until a restart"
            )
        });
    }

    /// Remembers that every finished job `donor` answered in was looked at
    /// after its quarantine: a restart need not do it again.
    pub fn remember_rechecked(&self, donor: u64) {
        self.queue_unanswered(Write::Rechecked { donor }, |_| {
            tracing::warn!(donor, "the store is closed; the next start rechecks again")
        });
    }

    /// Remembers a donor that earned trust, so that a restart keeps it;
    /// committed with the next group, nobody waits for it.
    pub fn remember_trust(&self, donor: u64, at: u64) {
        self.queue_unanswered(Write::Trust { donor, at }, |_| {
            tracing::warn!(
                donor,
                "the store is closed; this trust lasts until a restart"
            )
        });
    }

    /// Appends an audit entry, committed with the next group; nobody waits
    /// for it.
    pub fn audit(&self, entry: grid_protocol::api::AuditEntry) {
        self.queue_unanswered(Write::Audit(entry), |write| {
            if let Write::Audit(entry) = write {
                tracing::warn!(?entry, "the store is closed; an audit entry is lost");
            }
        });
    }

    /// The audit entries at or after `since` (Unix ms), oldest first, at
    /// most `limit`.
    pub fn audit_since(
        &self,
        since: u64,
        limit: u32,
    ) -> Result<Vec<grid_protocol::api::AuditEntry>, StoreError> {
        let conn = self.reader();
        audit::since(&conn, since, limit)
    }

    fn reader(&self) -> std::sync::MutexGuard<'_, Connection> {
        crate::sync::lock(&self.reader, "store reader")
    }
}

#[cfg(test)]
mod tests;
