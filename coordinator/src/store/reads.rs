//! Reading the store back: the unfinished jobs at start-up, a finished job
//! or a page of them on demand, a job's results for export and collation,
//! replica votes, quarantined donors. Reads share one connection
//! of their own and never wait for the writer (WAL).

use grid_protocol::api::JobState;
use rusqlite::{Connection, OptionalExtension, params};

use super::{Store, StoreError, StoredJob};
use grid_scheduler::Replication;

use crate::jobs::{JobDefinition, Lifecycle};

#[derive(Debug, thiserror::Error)]
#[error("unknown job state {0:?}")]
struct UnknownState(String);

impl Store {
    /// Short reads (one job, a page) go over a connection of their own, so
    /// they never wait behind a long one (a job's results being exported).
    fn lookup<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = crate::sync::lock(&self.lookups, "store lookups");
        f(&conn)
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self.reader();
        f(&conn)
    }

    /// Quarantined donors whose answers in finished jobs are still to be
    /// looked at: a crash cut their recheck short.
    pub fn pending_rechecks(&self) -> Result<Vec<u64>, StoreError> {
        self.read(|conn| {
            let mut statement =
                conn.prepare_cached("SELECT donor FROM recheck_pending ORDER BY donor")?;
            let rows = statement.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
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

    /// The tasks of `job` whose stored answer came from one of `donors`.
    pub fn tasks_answered_by(&self, job: u64, donors: &[u64]) -> Result<Vec<u32>, StoreError> {
        self.read(|conn| {
            let mut statement = conn.prepare_cached(
                "SELECT task FROM results WHERE job_id = ?1 AND donor = ?2 ORDER BY task",
            )?;
            let mut tasks = Vec::new();
            for donor in donors {
                let rows = statement.query_map(rusqlite::params![job, donor], |r| r.get(0))?;
                for task in rows {
                    tasks.push(task?);
                }
            }
            tasks.sort_unstable();
            tasks.dedup();
            Ok(tasks)
        })
    }

    /// Every donor that earned trust and was not quarantined since.
    pub fn trusted(&self) -> Result<Vec<u64>, StoreError> {
        self.read(|conn| {
            let mut statement = conn.prepare(
                "SELECT donor FROM trust
                 WHERE donor NOT IN (SELECT donor FROM quarantine) ORDER BY donor",
            )?;
            let rows = statement.query_map([], |r| r.get::<_, u64>(0))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// Every user, by id.
    pub fn load_users(&self) -> Result<Vec<crate::users::User>, StoreError> {
        self.read(super::users::load)
    }

    /// Every stored job, finished or not, in id order.
    pub fn load_jobs(&self) -> Result<Vec<StoredJob>, StoreError> {
        self.read(load_jobs_from)
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

/// The columns [`job_row`] reads, in its order; the last is the count of
/// decided tasks (every task of a done job, the stored results of another).
const JOB_COLUMNS: &str = "id, spec, tasks, redundancy, quorum, max_replicas, state, paused,
    created_at, started_at, finished_at, error, result, version, inputs, owner, priority, revised,
    CASE WHEN state = 'done' THEN tasks
         ELSE (SELECT COUNT(*) FROM results WHERE results.job_id = jobs.id) END";

/// The finished states as SQL names, for `state IN (...)`.
const FINISHED: &str = "'done', 'failed', 'cancelled'";
/// The others (an `IN` that the index `jobs_by_state` answers, where a
/// `NOT IN` would read every job).
const UNFINISHED: &str = "'queued', 'running', 'rechecking'";

/// Every stored job, in id order, read over `conn` (the reader's, or the
/// writer's at start).
pub(super) fn load_jobs_from(conn: &Connection) -> Result<Vec<StoredJob>, StoreError> {
    select_jobs(conn, "ORDER BY id", [])
}

/// The jobs `tail` (a `WHERE`, an `ORDER BY`) selects, with `params`.
fn select_jobs(
    conn: &Connection,
    tail: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<StoredJob>, StoreError> {
    let mut statement = conn.prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs {tail}"))?;
    let rows = statement.query_map(params, job_row)?;
    rows.collect::<Result<Vec<_>, _>>()
        .map_err(|e| StoreError::Corrupt(format!("a job record: {e}")))
}

/// One row of [`JOB_COLUMNS`].
fn job_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredJob> {
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
    let state: String = r.get(6)?;
    let result: Option<String> = r.get(12)?;
    let inputs: Option<String> = r.get(14)?;
    Ok(StoredJob {
        id: r.get(0)?,
        definition: JobDefinition {
            spec: parsed(1, serde_json::from_str(&r.get::<_, String>(1)?))?,
            tasks: r.get(2)?,
            replication: Replication {
                redundancy: r.get(3)?,
                quorum: r.get(4)?,
                max_replicas: r.get(5)?,
            },
            created_at: r.get(8)?,
            inputs: parsed(14, inputs.map(|i| serde_json::from_str(&i)).transpose())?,
            owner: r.get(15)?,
            priority: r.get(16)?,
        },
        lifecycle: Lifecycle {
            state: parsed(6, JobState::from_name(&state).ok_or(UnknownState(state)))?,
            paused: r.get(7)?,
            started_at: r.get(9)?,
            finished_at: r.get(10)?,
            error: r.get(11)?,
            result: parsed(12, result.map(|r| serde_json::from_str(&r)).transpose())?,
            version: r.get(13)?,
            revised: r.get(17)?,
        },
        tasks_done: r.get(18)?,
    })
}

/// Which finished jobs a page of the store may hold.
#[derive(Debug, Clone, Default)]
pub struct FinishedPage {
    /// Only this user's jobs; `None` for everyone's.
    pub owner: Option<crate::users::UserId>,
    /// Only ids below this.
    pub before: Option<u64>,
    /// Only these states (finished ones; others are ignored); empty for
    /// every finished state.
    pub states: Vec<JobState>,
    pub limit: usize,
}

impl Store {
    /// The jobs not finished (queued, running, rechecking), in id order:
    /// what the coordinator holds in memory. Finished jobs stay on disk.
    pub fn load_unfinished_jobs(&self) -> Result<Vec<StoredJob>, StoreError> {
        self.lookup(|conn| {
            select_jobs(
                conn,
                &format!("WHERE state IN ({UNFINISHED}) ORDER BY id"),
                [],
            )
        })
    }

    /// One stored job, if there is one.
    pub fn stored_job(&self, id: u64) -> Result<Option<StoredJob>, StoreError> {
        self.lookup(|conn| Ok(select_jobs(conn, "WHERE id = ?1", [id])?.pop()))
    }

    /// A page of finished jobs, newest first, skipping those `skip` names
    /// (the jobs held in memory, which speak for themselves there).
    pub fn finished_jobs(
        &self,
        page: &FinishedPage,
        skip: impl Fn(u64) -> bool,
    ) -> Result<Vec<StoredJob>, StoreError> {
        let states: Vec<String> = if page.states.is_empty() {
            vec![FINISHED.to_string()]
        } else {
            page.states
                .iter()
                .filter(|s| s.is_finished())
                .map(|s| format!("'{}'", s.name()))
                .collect()
        };
        if states.is_empty() || page.limit == 0 {
            return Ok(Vec::new());
        }
        // Each shape walks an index in id order and stops at the page's
        // end: a user's jobs by `jobs_by_owner`, one state by
        // `jobs_by_state`, several by the ids themselves (`+state` keeps
        // SQLite from gathering and sorting every job of those states).
        let one_state = states.len() == 1 && !page.states.is_empty();
        let states = states.join(", ");
        let filter = match (page.owner, one_state) {
            (Some(_), _) => format!("owner = ?2 AND +state IN ({states})"),
            (None, true) => format!("state IN ({states}) AND ?2 IS NULL"),
            (None, false) => format!("+state IN ({states}) AND ?2 IS NULL"),
        };
        let sql =
            format!("SELECT {JOB_COLUMNS} FROM jobs WHERE {filter} AND id < ?1 ORDER BY id DESC");
        let before = page.before.unwrap_or(u64::MAX).min(i64::MAX as u64);
        self.lookup(|conn| {
            let mut statement = conn.prepare_cached(&sql)?;
            let mut rows = statement.query(params![before, page.owner])?;
            let mut jobs = Vec::new();
            while jobs.len() < page.limit
                && let Some(row) = rows.next()?
            {
                let id: u64 = row.get(0)?;
                if skip(id) {
                    continue;
                }
                jobs.push(
                    job_row(row).map_err(|e| StoreError::Corrupt(format!("a job record: {e}")))?,
                );
            }
            Ok(jobs)
        })
    }

    /// The done jobs with an answer stored from `donor`.
    pub fn done_jobs_answered_by(&self, donor: u64) -> Result<Vec<u64>, StoreError> {
        self.read(|conn| {
            let mut statement = conn.prepare_cached(
                "SELECT id FROM jobs WHERE state = 'done'
                   AND EXISTS (SELECT 1 FROM results WHERE job_id = jobs.id AND donor = ?1)
                 ORDER BY id",
            )?;
            let rows = statement.query_map([donor], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// How many stored jobs (of `owner`, or everyone's) are in each
    /// finished state. Counted in an index, not by reading the jobs.
    pub fn finished_counts(
        &self,
        owner: Option<crate::users::UserId>,
    ) -> Result<Vec<(JobState, u64)>, StoreError> {
        let sql = match owner {
            Some(_) => format!(
                "SELECT state, COUNT(*) FROM jobs WHERE owner = ?1 AND state IN ({FINISHED})
                 GROUP BY state"
            ),
            None => format!(
                "SELECT state, COUNT(*) FROM jobs WHERE ?1 IS NULL AND state IN ({FINISHED})
                 GROUP BY state"
            ),
        };
        self.lookup(|conn| {
            let mut statement = conn.prepare_cached(&sql)?;
            let rows = statement.query_map([owner], |r| Ok((r.get::<_, String>(0)?, r.get(1)?)))?;
            let mut counts = Vec::new();
            for row in rows {
                let (name, count) = row?;
                let state = JobState::from_name(&name)
                    .ok_or_else(|| StoreError::Corrupt(format!("unknown job state {name:?}")))?;
                counts.push((state, count));
            }
            Ok(counts)
        })
    }

    /// The bytes the store takes on disk: its file and its write-ahead log.
    pub fn disk_bytes(&self) -> u64 {
        let wal = self.path.with_extension("sqlite3-wal");
        [self.path.as_path(), wal.as_path()]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }
}
