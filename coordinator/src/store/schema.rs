//! The store's tables, and how a file written by an older coordinator is
//! brought up to date when it is opened. The file vacuums incrementally
//! (`auto_vacuum = INCREMENTAL`), so the pages of deleted jobs can be given
//! back in small steps.
//!
//! | table | holds |
//! |---|---|
//! | `meta` | `opened`: how many times the store was opened (the run epoch); `job_blobs`: set once the table below was filled for older jobs |
//! | `jobs` | one row a job: its definition and its lifecycle (indexed by state and by owner for pages of the job list, by `finished_at` for the retention) |
//! | `results` | a decided task's output, one row a task |
//! | `replicas` | replica votes of tasks waiting for their quorum |
//! | `quarantine` | donors caught sending wrong results |
//! | `recheck_pending` | quarantined donors whose answers in finished jobs are not all looked at yet (written with the quarantine, deleted when the recheck is done; a start repeats what a crash cut short) |
//! | `blobs` | one row an upload in `DATA/blobs/`: size, created, last used |
//! | `job_blobs` | one row for each upload a stored job uses: its references |

use std::path::Path;

use rusqlite::Connection;

use super::Durability;

/// The store's file name under the data directory.
pub const STORE_FILE: &str = "grid.sqlite3";

pub(super) const SCHEMA: &str = "
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
    result       TEXT,
    version      INTEGER NOT NULL DEFAULT 0,
    inputs       TEXT
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
CREATE TABLE IF NOT EXISTS recheck_pending (
    donor INTEGER PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS blobs (
    digest       TEXT PRIMARY KEY,
    size         INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS job_blobs (
    digest TEXT NOT NULL,
    job_id INTEGER NOT NULL REFERENCES jobs(id),
    PRIMARY KEY (digest, job_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS job_blobs_by_job ON job_blobs (job_id);
CREATE TABLE IF NOT EXISTS trust (
    donor INTEGER PRIMARY KEY,
    at    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS blob_owners (
    digest TEXT NOT NULL,
    user   INTEGER NOT NULL,
    PRIMARY KEY (digest, user)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS blob_owners_by_user ON blob_owners (user);
CREATE TABLE IF NOT EXISTS audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit (at);
CREATE TABLE IF NOT EXISTS users (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    admin      INTEGER NOT NULL,
    weight     INTEGER NOT NULL,
    limits     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    token_hash BLOB NOT NULL
);
";

/// Columns added since the first release, and their definitions: a file
/// that lacks one gets it, with its default.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("jobs", "version", "INTEGER NOT NULL DEFAULT 0"),
    ("jobs", "inputs", "TEXT"),
    // Jobs stored before users belong to the first admin.
    ("jobs", "owner", "INTEGER NOT NULL DEFAULT 1"),
    ("jobs", "priority", "INTEGER NOT NULL DEFAULT 0"),
    ("jobs", "revised", "INTEGER NOT NULL DEFAULT 0"),
];

fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    for (table, column, definition) in ADDED_COLUMNS {
        let mut columns =
            conn.prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?;
        let present = columns
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?
            .iter()
            .any(|name| name == column);
        if !present {
            conn.execute_batch(&format!(
                "ALTER TABLE {table} ADD COLUMN {column} {definition}"
            ))?;
        }
    }
    Ok(())
}

/// Makes the file give freed pages back in small steps
/// (`PRAGMA incremental_vacuum`, run by the retention off the hot path).
/// SQLite takes the mode only before the first table is created: a new file
/// gets it at once, an older one is rebuilt once (`VACUUM`) to take it.
fn incremental_vacuum(conn: &Connection) -> rusqlite::Result<()> {
    const INCREMENTAL: i64 = 2;
    let mode: i64 = conn.pragma_query_value(None, "auto_vacuum", |r| r.get(0))?;
    if mode == INCREMENTAL {
        return Ok(());
    }
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    let tables: i64 = conn.query_row("SELECT COUNT(*) FROM sqlite_schema", [], |r| r.get(0))?;
    if tables > 0 {
        tracing::info!("rebuilding the store once (VACUUM) so that deletions can shrink it");
        conn.execute_batch("VACUUM")?;
    }
    Ok(())
}

/// The writer's and the reader's connections to the store at `path`, with
/// the schema in place and the store proven writable.
pub(super) fn open_connections(
    path: &Path,
    durability: Durability,
) -> Result<(Connection, Connection), rusqlite::Error> {
    let writer = Connection::open(path)?;
    incremental_vacuum(&writer)?;
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
    migrate(&writer)?;
    // After `migrate`: `owner` may be a column it added. Pages of the job
    // list (by state, by owner) and the retention (by finish) read these.
    writer.execute_batch(
        "CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, id);
         CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs (owner, id);
         CREATE INDEX IF NOT EXISTS jobs_by_finished ON jobs (finished_at);
         CREATE INDEX IF NOT EXISTS jobs_by_owner_state ON jobs (owner, state);",
    )?;
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
