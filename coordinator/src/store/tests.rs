//! The store on a real SQLite file in a temporary directory.

use super::*;
use crate::jobs::Lifecycle;
use grid_kernels::KernelSpec;
use grid_kernels::spec::PrimesParams;
use grid_protocol::api::JobState;
use grid_scheduler::Replication;

fn new_job() -> JobDefinition {
    JobDefinition {
        spec: KernelSpec::Primes(PrimesParams { start: 0, end: 100 }),
        tasks: 4,
        replication: Replication::SINGLE,
        created_at: 1,
        inputs: None,
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
    assert_eq!(jobs[0].lifecycle.state, JobState::Queued);
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
        .insert_job(JobDefinition {
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
        .insert_job(JobDefinition {
            replication: Replication {
                redundancy: 2,
                quorum: 2,
                max_replicas: 4,
            },
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
    store.update_job(0, Lifecycle::queued()).await.unwrap();
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

#[tokio::test]
async fn a_job_update_never_overwrites_a_later_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Durability::Normal).unwrap();
    let definition = new_job();
    let job = store.insert_job(definition.clone()).await.unwrap();
    let mut lifecycle = Lifecycle::queued();
    lifecycle
        .apply(crate::jobs::Transition::Pause, &definition)
        .unwrap();
    let paused = lifecycle.clone();
    lifecycle
        .apply(crate::jobs::Transition::Resume, &definition)
        .unwrap();
    // The resume reaches the disk first; the pause, older, must not undo it.
    store.update_job(job, lifecycle.clone()).await.unwrap();
    store.update_job(job, paused).await.unwrap();
    let stored = store.load_jobs().unwrap();
    assert_eq!(stored[0].lifecycle, lifecycle);
    assert!(!stored[0].lifecycle.paused);
    assert_eq!(stored[0].definition, definition);
}

/// A store written before jobs had a version opens, gains the column, and
/// keeps its jobs.
#[test]
fn a_store_from_before_versions_is_brought_up_to_date() {
    let dir = tempfile::tempdir().unwrap();
    {
        let conn = rusqlite::Connection::open(dir.path().join(STORE_FILE)).unwrap();
        conn.execute_batch(
            "CREATE TABLE jobs (
                id INTEGER PRIMARY KEY AUTOINCREMENT, spec TEXT NOT NULL,
                tasks INTEGER NOT NULL, redundancy INTEGER NOT NULL,
                quorum INTEGER NOT NULL, max_replicas INTEGER NOT NULL,
                state TEXT NOT NULL, paused INTEGER NOT NULL DEFAULT 0,
                created_at INTEGER NOT NULL, started_at INTEGER,
                finished_at INTEGER, error TEXT, result TEXT);
             INSERT INTO jobs (spec, tasks, redundancy, quorum, max_replicas, state, created_at)
             VALUES ('{\"kernel\":\"primes\",\"params\":{\"start\":0,\"end\":100}}',
                     4, 1, 1, 1, 'running', 7);",
        )
        .unwrap();
    }
    let store = Store::open(dir.path(), Durability::Full).unwrap();
    let jobs = store.load_jobs().unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].lifecycle.state, JobState::Running);
    assert_eq!(jobs[0].lifecycle.version, 0);
    assert_eq!(jobs[0].definition.created_at, 7);
}

/// A flush answers once what was queued before it is on disk, including
/// writes nobody waits for.
#[tokio::test]
async fn a_flush_waits_for_the_writes_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Durability::Normal).unwrap();
    store.remember_quarantine(5, "lied", 1);
    store.flush().await.unwrap();
    let reopened = Store::open(dir.path(), Durability::Normal).unwrap();
    assert_eq!(
        reopened.quarantined().unwrap(),
        vec![(5, "lied".to_string())]
    );
}
