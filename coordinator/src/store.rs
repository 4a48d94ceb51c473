//! The durable store: jobs, decided results and replica votes in one SQLite
//! file (WAL mode) under the data directory.
//!
//! Writes go to one thread that owns the write connection. It takes every
//! write waiting in its queue, applies them in one transaction, commits, and
//! only then answers each caller: a group commit, so durability costs one
//! fsync per group rather than one per result, and a result is acknowledged
//! to its worker only once it is on disk. Reads use their own connection and
//! never wait for the writer.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;

use bytes::Bytes;
use grid_kernels::KernelSpec;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use crate::metrics::{Histogram, LATENCY_BOUNDS};
use grid_kernels::ResultSummary;
use grid_protocol::api::JobState;

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

/// A job as stored.
#[derive(Debug, Clone)]
pub struct StoredJob {
    pub id: u64,
    pub spec: KernelSpec,
    pub tasks: u32,
    pub redundancy: u32,
    pub quorum: u32,
    pub max_replicas: u32,
    pub state: JobState,
    pub paused: bool,
    pub created_at: u64,
    pub started_at: Option<u64>,
    pub finished_at: Option<u64>,
    pub error: Option<String>,
    pub result: Option<ResultSummary>,
}

#[derive(Debug, thiserror::Error)]
#[error("unknown job state {0:?}")]
struct UnknownState(String);

/// A new job to insert; the store assigns its id.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub spec: KernelSpec,
    pub tasks: u32,
    pub redundancy: u32,
    pub quorum: u32,
    pub max_replicas: u32,
    pub created_at: u64,
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

/// A change to a job's row.
#[derive(Debug, Clone)]
pub struct JobUpdate {
    pub job: u64,
    pub state: JobState,
    pub paused: bool,
    pub started_at: Option<u64>,
    pub finished_at: Option<u64>,
    pub error: Option<String>,
    pub result: Option<ResultSummary>,
}

enum Write {
    InsertJob(NewJob, oneshot::Sender<Result<u64, StoreError>>),
    /// Results and replicas of one frame; answered with how many result rows
    /// were new (a task already stored is never stored or counted again).
    Results {
        results: Vec<ResultRow>,
        replicas: Vec<ReplicaRow>,
        reply: oneshot::Sender<Result<Vec<bool>, StoreError>>,
    },
    UpdateJob(JobUpdate, oneshot::Sender<Result<(), StoreError>>),
    /// A re-checked task's corrected output.
    ReplaceResult(ResultRow, oneshot::Sender<Result<(), StoreError>>),
    /// A donor whose results failed validation.
    Quarantine {
        donor: u64,
        reason: String,
        at: u64,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

/// A cheap handle to the store; clone it freely.
#[derive(Clone, Debug)]
pub struct Store {
    writes: std::sync::mpsc::SyncSender<Write>,
    reader: Arc<Mutex<Connection>>,
    path: PathBuf,
    commits: Arc<Histogram>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    spec         TEXT NOT NULL,
    tasks        INTEGER NOT NULL,
    redundancy   INTEGER NOT NULL,
    quorum       INTEGER NOT NULL,
    max_replicas INTEGER NOT NULL,
    state        TEXT NOT NULL,
    paused       INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    started_at   INTEGER,
    finished_at  INTEGER,
    error        TEXT,
    result       TEXT
);
CREATE TABLE IF NOT EXISTS results (
    job_id INTEGER NOT NULL REFERENCES jobs(id),
    task   INTEGER NOT NULL,
    donor  INTEGER NOT NULL,
    output BLOB NOT NULL,
    PRIMARY KEY (job_id, task)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS replicas (
    job_id INTEGER NOT NULL REFERENCES jobs(id),
    task   INTEGER NOT NULL,
    donor  INTEGER NOT NULL,
    digest BLOB NOT NULL,
    output BLOB NOT NULL,
    PRIMARY KEY (job_id, task, donor)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS quarantine (
    donor  INTEGER PRIMARY KEY,
    reason TEXT NOT NULL,
    at     INTEGER NOT NULL
);
";

/// The most writes folded into one transaction.
const MAX_GROUP: usize = 4096;

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
        let path = data_dir.join("grid.sqlite3");
        let (writer, reader) =
            open_connections(&path, durability).map_err(|e| open_error(data_dir, &path, e))?;
        let (writes, queue) = std::sync::mpsc::sync_channel(65_536);
        let commits = Arc::new(Histogram::new(LATENCY_BOUNDS));
        let timing = commits.clone();
        thread::Builder::new()
            .name("grid-store".into())
            .spawn(move || writer_loop(writer, queue, &timing))
            .map_err(|e| StoreError::Io(format!("cannot start the store thread: {e}")))?;
        Ok(Store {
            writes,
            reader: Arc::new(Mutex::new(reader)),
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
        let conn = crate::sync::lock(&self.reader, "store reader");
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
                tokio::task::spawn_blocking(move || writes.send(write))
                    .await
                    .map_err(|_| StoreError::Closed)?
                    .map_err(|_| StoreError::Closed)?;
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return Err(StoreError::Closed),
        }
        answer.await.map_err(|_| StoreError::Closed)?
    }

    pub async fn insert_job(&self, job: NewJob) -> Result<u64, StoreError> {
        self.send(|reply| Write::InsertJob(job, reply)).await
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

    pub async fn update_job(&self, update: JobUpdate) -> Result<(), StoreError> {
        self.send(|reply| Write::UpdateJob(update, reply)).await
    }

    /// Overwrites a decided task's output (after a re-check found it wrong).
    pub async fn replace_result(&self, row: ResultRow) -> Result<(), StoreError> {
        self.send(|reply| Write::ReplaceResult(row, reply)).await
    }

    /// Remembers a quarantined donor, so that a restart does not forgive it.
    /// Queued behind the writes before it and committed with the next group;
    /// nobody waits for it (a donor's results are refused from the moment the
    /// scheduler quarantines it).
    pub fn remember_quarantine(&self, donor: u64, reason: &str, at: u64) {
        let (reply, _) = oneshot::channel();
        let write = Write::Quarantine {
            donor,
            reason: reason.to_owned(),
            at,
            reply,
        };
        match self.writes.try_send(write) {
            Ok(()) => {}
            Err(std::sync::mpsc::TrySendError::Full(write)) => {
                let writes = self.writes.clone();
                tokio::task::spawn_blocking(move || writes.send(write));
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {
                tracing::warn!(
                    donor,
                    "the store is closed; this quarantine lasts until a restart"
                );
            }
        }
    }

    // ---- reads ---------------------------------------------------------------

    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = crate::sync::lock(&self.reader, "store reader");
        f(&conn)
    }

    /// Every donor quarantined so far, with why, oldest first.
    pub fn quarantined(&self) -> Result<Vec<(u64, String)>, StoreError> {
        self.read(|conn| {
            let mut statement =
                conn.prepare("SELECT donor, reason FROM quarantine ORDER BY at, donor")?;
            let rows =
                statement.query_map([], |r| Ok((r.get::<_, u64>(0)?, r.get::<_, String>(1)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    pub fn load_jobs(&self) -> Result<Vec<StoredJob>, StoreError> {
        self.read(|conn| {
            let mut statement = conn.prepare(
                "SELECT id, spec, tasks, redundancy, quorum, max_replicas, state, paused,
                        created_at, started_at, finished_at, error, result
                 FROM jobs ORDER BY id",
            )?;
            // Text columns holding JSON or a state name are parsed here too;
            // a value that does not parse is a corrupt record.
            fn parsed<T, E: std::error::Error + Send + Sync + 'static>(
                column: usize,
                value: Result<T, E>,
            ) -> rusqlite::Result<T> {
                value.map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        column,
                        rusqlite::types::Type::Text,
                        Box::new(e),
                    )
                })
            }
            let rows = statement.query_map([], |r| {
                let state: String = r.get(6)?;
                let result: Option<String> = r.get(12)?;
                Ok(StoredJob {
                    id: r.get(0)?,
                    spec: parsed(1, serde_json::from_str(&r.get::<_, String>(1)?))?,
                    tasks: r.get(2)?,
                    redundancy: r.get(3)?,
                    quorum: r.get(4)?,
                    max_replicas: r.get(5)?,
                    state: parsed(6, JobState::from_name(&state).ok_or(UnknownState(state)))?,
                    paused: r.get(7)?,
                    created_at: r.get(8)?,
                    started_at: r.get(9)?,
                    finished_at: r.get(10)?,
                    error: r.get(11)?,
                    result: parsed(12, result.map(|r| serde_json::from_str(&r)).transpose())?,
                })
            })?;
            let jobs = rows
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| StoreError::Corrupt(format!("a job record: {e}")))?;
            Ok(jobs)
        })
    }

    /// Calls `each(task, output)` for every decided task of a job, in task order.
    pub fn for_each_result(
        &self,
        job: u64,
        mut each: impl FnMut(u32, &[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.read(|conn| {
            let mut statement = conn.prepare_cached(
                "SELECT task, output FROM results WHERE job_id = ?1 ORDER BY task",
            )?;
            let mut rows = statement.query([job])?;
            while let Some(row) = rows.next()? {
                let task: u32 = row.get(0)?;
                let output = row
                    .get_ref(1)?
                    .as_blob()
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                each(task, output)?;
            }
            Ok(())
        })
    }

    /// Replica votes of a job's undecided tasks: (task, donor, digest).
    pub fn replicas(&self, job: u64) -> Result<Vec<(u32, u64, [u8; 32])>, StoreError> {
        self.read(|conn| {
            let mut statement = conn.prepare(
                "SELECT r.task, r.donor, r.digest FROM replicas r
                 WHERE r.job_id = ?1
                   AND NOT EXISTS (SELECT 1 FROM results d WHERE d.job_id = r.job_id AND d.task = r.task)
                 ORDER BY r.task",
            )?;
            let rows = statement.query_map([job], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, u64>(1)?, r.get::<_, Vec<u8>>(2)?)))?;
            let mut out = Vec::new();
            for row in rows {
                let (task, donor, digest) = row?;
                let digest: [u8; 32] = digest.try_into().map_err(|_| StoreError::Corrupt(format!("job {job} task {task}: digest length")))?;
                out.push((task, donor, digest));
            }
            Ok(out)
        })
    }

    /// A decided task's stored output.
    pub fn result_output(&self, job: u64, task: u32) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|conn| {
            Ok(conn
                .query_row(
                    "SELECT output FROM results WHERE job_id = ?1 AND task = ?2",
                    params![job, task],
                    |r| r.get(0),
                )
                .optional()?)
        })
    }

    /// The number of decided tasks stored for a job.
    pub fn result_count(&self, job: u64) -> Result<u64, StoreError> {
        self.read(|conn| {
            Ok(conn.query_row(
                "SELECT COUNT(*) FROM results WHERE job_id = ?1",
                [job],
                |r| r.get(0),
            )?)
        })
    }

    pub fn job_exists(&self, job: u64) -> Result<bool, StoreError> {
        self.read(|conn| {
            Ok(conn
                .query_row("SELECT 1 FROM jobs WHERE id = ?1", [job], |_| Ok(()))
                .optional()?
                .is_some())
        })
    }
}

/// The writer's and the reader's connections to the store at `path`, with
/// the schema in place and the store proven writable.
fn open_connections(
    path: &Path,
    durability: Durability,
) -> Result<(Connection, Connection), rusqlite::Error> {
    let writer = Connection::open(path)?;
    writer.pragma_update(None, "journal_mode", "WAL")?;
    writer.pragma_update(
        None,
        "synchronous",
        match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        },
    )?;
    writer.pragma_update(None, "foreign_keys", "ON")?;
    writer.busy_timeout(std::time::Duration::from_secs(5))?;
    writer.execute_batch(SCHEMA)?;
    // Prove the store is writable now rather than at the first result.
    writer.execute(
        "INSERT INTO meta (key, value) VALUES ('opened', '0')
         ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
        [],
    )?;
    let reader = Connection::open(path)?;
    reader.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok((writer, reader))
}

fn writer_loop(mut conn: Connection, queue: std::sync::mpsc::Receiver<Write>, commits: &Histogram) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(write) => group.push(write),
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let outcome = apply_group(&mut conn, &group);
        commits.observe_micros(started.elapsed().as_micros() as u64);
        answer_group(group, outcome);
    }
    tracing::debug!("store writer stopped");
}

enum Answer {
    Id(u64),
    Inserted(Vec<bool>),
    Done,
}

fn apply_group(conn: &mut Connection, group: &[Write]) -> Result<Vec<Answer>, StoreError> {
    let tx = conn.transaction()?;
    let mut answers = Vec::with_capacity(group.len());
    {
        let mut insert_result = tx.prepare_cached(
            "INSERT INTO results (job_id, task, donor, output) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (job_id, task) DO NOTHING",
        )?;
        let mut insert_replica = tx.prepare_cached(
            "INSERT INTO replicas (job_id, task, donor, digest, output) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (job_id, task, donor) DO NOTHING",
        )?;
        for write in group {
            match write {
                Write::InsertJob(job, _) => {
                    tx.execute(
                        "INSERT INTO jobs (spec, tasks, redundancy, quorum, max_replicas, state, created_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6)",
                        params![
                            serde_json::to_string(&job.spec).expect("specs are plain data"),
                            job.tasks,
                            job.redundancy,
                            job.quorum,
                            job.max_replicas,
                            job.created_at
                        ],
                    )?;
                    answers.push(Answer::Id(tx.last_insert_rowid() as u64));
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
                Write::UpdateJob(update, _) => {
                    tx.execute(
                        "UPDATE jobs SET state = ?2, paused = ?3, started_at = ?4, finished_at = ?5, error = ?6, result = ?7
                         WHERE id = ?1",
                        params![
                            update.job,
                            update.state.name(),
                            update.paused,
                            update.started_at,
                            update.finished_at,
                            update.error,
                            update
                                .result
                                .as_ref()
                                .map(|r| serde_json::to_string(r).expect("results are plain data"))
                        ],
                    )?;
                    if update.state == JobState::Done {
                        // Votes only matter while a task waits for its quorum;
                        // a failed job keeps them for inspection.
                        tx.execute("DELETE FROM replicas WHERE job_id = ?1", [update.job])?;
                    }
                    answers.push(Answer::Done);
                }
                Write::Quarantine {
                    donor, reason, at, ..
                } => {
                    tx.execute(
                        "INSERT INTO quarantine (donor, reason, at) VALUES (?1, ?2, ?3)
                         ON CONFLICT (donor) DO NOTHING",
                        params![donor, reason, at],
                    )?;
                    answers.push(Answer::Done);
                }
                Write::ReplaceResult(row, _) => {
                    tx.execute(
                        // An upsert: if the first answer's own insert is still queued
                        // behind this one, it then finds the row and is ignored.
                        "INSERT INTO results (job_id, task, donor, output) VALUES (?1, ?2, ?4, ?3)
                         ON CONFLICT (job_id, task) DO UPDATE SET output = excluded.output, donor = excluded.donor",
                        params![row.job, row.task, &row.output[..], row.donor],
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
                    (Write::Results { reply, .. }, Answer::Inserted(inserted)) => {
                        drop(reply.send(Ok(inserted)))
                    }
                    (Write::UpdateJob(_, reply), Answer::Done) => drop(reply.send(Ok(()))),
                    (Write::ReplaceResult(_, reply), Answer::Done) => drop(reply.send(Ok(()))),
                    (Write::Quarantine { reply, .. }, Answer::Done) => drop(reply.send(Ok(()))),
                    _ => unreachable!("answers are made in the order of the writes"),
                }
            }
        }
        Err(error) => {
            tracing::error!(%error, writes = group.len(), "store commit failed");
            let message = error.to_string();
            let failed = || StoreError::Io(format!("commit failed: {message}"));
            for write in group {
                match write {
                    Write::InsertJob(_, reply) => drop(reply.send(Err(failed()))),
                    Write::Results { reply, .. } => drop(reply.send(Err(failed()))),
                    Write::UpdateJob(_, reply) => drop(reply.send(Err(failed()))),
                    Write::ReplaceResult(_, reply) => drop(reply.send(Err(failed()))),
                    Write::Quarantine { reply, .. } => drop(reply.send(Err(failed()))),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use grid_kernels::spec::PrimesParams;

    fn new_job() -> NewJob {
        NewJob {
            spec: KernelSpec::Primes(PrimesParams { start: 0, end: 100 }),
            tasks: 4,
            redundancy: 1,
            quorum: 1,
            max_replicas: 1,
            created_at: 1,
        }
    }

    #[tokio::test]
    async fn results_survive_reopening_and_are_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Durability::Full).unwrap();
        let job = store.insert_job(new_job()).await.unwrap();
        let row = |task, output: u64| ResultRow {
            job,
            task,
            donor: 9,
            output: Bytes::copy_from_slice(&output.to_le_bytes()),
        };
        let inserted = store
            .record(vec![row(0, 10), row(1, 7)], vec![])
            .await
            .unwrap();
        assert_eq!(inserted, vec![true, true]);
        // A second copy of task 1 is refused by the store itself.
        assert_eq!(
            store
                .record(vec![row(1, 99), row(2, 4)], vec![])
                .await
                .unwrap(),
            vec![false, true]
        );
        let epoch = store.epoch().unwrap();
        drop(store);

        let store = Store::open(dir.path(), Durability::Full).unwrap();
        assert_eq!(store.epoch().unwrap(), epoch + 1);
        let jobs = store.load_jobs().unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].state, JobState::Queued);
        let mut seen = Vec::new();
        store
            .for_each_result(job, |task, output| {
                seen.push((task, u64::from_le_bytes(output.try_into().unwrap())));
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, vec![(0, 10), (1, 7), (2, 4)]);
    }

    #[tokio::test]
    async fn concurrent_writes_share_commits_and_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Durability::Normal).unwrap();
        let job = store
            .insert_job(NewJob {
                tasks: 1000,
                ..new_job()
            })
            .await
            .unwrap();
        let writes = (0..1000u32).map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .record(
                        vec![ResultRow {
                            job,
                            task,
                            donor: 1,
                            output: Bytes::from(vec![0; 8]),
                        }],
                        vec![],
                    )
                    .await
                    .unwrap()
            })
        });
        for write in writes {
            assert_eq!(write.await.unwrap(), vec![true]);
        }
        assert_eq!(store.result_count(job).unwrap(), 1000);
    }

    #[tokio::test]
    async fn replicas_of_decided_tasks_are_not_restored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Durability::Full).unwrap();
        let job = store
            .insert_job(NewJob {
                redundancy: 2,
                quorum: 2,
                max_replicas: 4,
                ..new_job()
            })
            .await
            .unwrap();
        let replica = |task, donor| ReplicaRow {
            job,
            task,
            donor,
            digest: [task as u8; 32],
            output: Bytes::from(vec![1; 8]),
        };
        store
            .record(vec![], vec![replica(0, 1), replica(0, 2), replica(1, 1)])
            .await
            .unwrap();
        store
            .record(
                vec![ResultRow {
                    job,
                    task: 0,
                    donor: 1,
                    output: Bytes::from(vec![1; 8]),
                }],
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(store.replicas(job).unwrap(), vec![(1, 1, [1u8; 32])]);
    }

    #[tokio::test]
    async fn quarantines_survive_reopening_and_the_first_reason_stays() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Durability::Full).unwrap();
        store.remember_quarantine(7, "lied about task 3", 100);
        store.remember_quarantine(grid_kernels::MAX_SAFE_INTEGER, "fake nonce", 200);
        store.remember_quarantine(7, "lied again", 300);
        // A write after them, awaited: the writer commits in order.
        store
            .update_job(JobUpdate {
                job: 0,
                state: JobState::Queued,
                paused: false,
                started_at: None,
                finished_at: None,
                error: None,
                result: None,
            })
            .await
            .unwrap();
        drop(store);
        let store = Store::open(dir.path(), Durability::Full).unwrap();
        assert_eq!(
            store.quarantined().unwrap(),
            vec![
                (7, "lied about task 3".to_string()),
                (grid_kernels::MAX_SAFE_INTEGER, "fake nonce".to_string())
            ]
        );
    }

    #[test]
    fn an_unwritable_data_dir_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let err = Store::open(&file, Durability::Full).unwrap_err();
        assert!(
            err.to_string().contains("cannot create data directory"),
            "{err}"
        );
    }
}
