//! The store on a real SQLite file in a temporary directory.

use super::*;
use crate::jobs::Lifecycle;
use grid_kernels::spec::PrimesParams;
use grid_kernels::{ContentDigest, KernelSpec};
use grid_protocol::api::JobState;
use grid_scheduler::Replication;

fn new_job() -> JobDefinition {
    JobDefinition {
        priority: 0,
        owner: crate::users::FIRST_ADMIN,
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
    drop(store);
    // The old file was rebuilt once to vacuum incrementally.
    let conn = rusqlite::Connection::open(dir.path().join(STORE_FILE)).unwrap();
    let mode: i64 = conn
        .pragma_query_value(None, "auto_vacuum", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, 2, "auto_vacuum = INCREMENTAL");
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

// ---- blobs ----------------------------------------------------------------

/// A wasm job that uses `source` as its module and `files` as mounted files.
fn job_using(source: ContentDigest, files: &[ContentDigest]) -> JobDefinition {
    use grid_kernels::wasm::{MountedFile, WasmLimits, WasmParams};
    let limits = WasmLimits::DEFAULT;
    JobDefinition {
        priority: 0,
        owner: crate::users::FIRST_ADMIN,
        spec: KernelSpec::Wasm(WasmParams {
            module: ContentDigest::of(b"prepared"),
            source,
            name: "k.wasm".into(),
            args: Vec::new(),
            fuel: limits.fuel,
            memory_mib: limits.memory_mib,
            stdout_bytes: limits.stdout_bytes,
            stderr_bytes: limits.stderr_bytes,
            seed: 0,
            description: None,
            files: files
                .iter()
                .enumerate()
                .map(|(i, blob)| MountedFile {
                    name: format!("f{i}"),
                    blob: *blob,
                    size: 1,
                })
                .collect(),
        }),
        tasks: 1,
        replication: Replication::SINGLE,
        created_at: 1_000,
        inputs: None,
    }
}

/// Writes a blob file as an upload would leave it, and its digest.
fn blob_file(dir: &std::path::Path, bytes: &[u8]) -> ContentDigest {
    let digest = ContentDigest::of(bytes);
    let blobs = dir.join(crate::blobs::UPLOADS);
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(crate::blobs::blob_path(&blobs, &digest), bytes).unwrap();
    digest
}

fn on_disk(dir: &std::path::Path, digest: &ContentDigest) -> bool {
    crate::blobs::blob_path(&dir.join(crate::blobs::UPLOADS), digest).is_file()
}

fn row(store: &Store, digest: &ContentDigest) -> Option<BlobRow> {
    store
        .blobs(None)
        .unwrap()
        .into_iter()
        .find(|b| b.digest == *digest)
}

/// References are the stored jobs that use a blob; a referenced blob is
/// never deleted, by a user or the sweep; removing the last job releases
/// it (a use), and the sweep takes it once that use is old enough.
#[tokio::test]
async fn blobs_used_by_jobs_stay_until_the_jobs_go() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Durability::Normal).unwrap();
    let module = blob_file(dir.path(), b"module");
    let file = blob_file(dir.path(), b"file");
    let spare = blob_file(dir.path(), b"spare");
    for (digest, size) in [(module, 6), (file, 4), (spare, 5)] {
        assert!(store.record_upload(digest, size, 500, None).await.unwrap());
    }
    let first = store.insert_job(job_using(module, &[file])).await.unwrap();
    let second = store.insert_job(job_using(module, &[])).await.unwrap();
    let listed = store.blobs(None).unwrap();
    let references: Vec<(ContentDigest, u64)> =
        listed.iter().map(|b| (b.digest, b.references)).collect();
    let mut expected = vec![(module, 2), (file, 1), (spare, 0)];
    expected.sort_by_key(|(d, _)| d.to_string());
    assert_eq!(references, expected);
    let module_row = row(&store, &module).unwrap();
    assert_eq!((module_row.size, module_row.created_at), (6, 500));
    assert_eq!(module_row.last_used_at, 1_000, "a submission is a use");
    assert_eq!(store.blob_totals().unwrap(), (3, 15));

    assert_eq!(
        store.delete_blob(module, None).await.unwrap(),
        BlobDeletion::Referenced(vec![first, second])
    );
    // Everything is old: only the unreferenced blob goes.
    let swept = store.sweep_blobs(Vec::new(), u64::MAX).await.unwrap();
    assert_eq!(swept, vec![(spare, 5)]);
    assert!(!on_disk(dir.path(), &spare), "its file went after its row");
    assert!(on_disk(dir.path(), &module) && on_disk(dir.path(), &file));

    // Removing the first job releases the file (a use at 2,000).
    assert!(store.delete_job(first, 2_000).await.unwrap());
    assert!(!store.delete_job(first, 2_000).await.unwrap(), "once");
    assert_eq!(row(&store, &file).unwrap().references, 0);
    assert_eq!(row(&store, &file).unwrap().last_used_at, 2_000);
    assert!(
        store
            .sweep_blobs(Vec::new(), 2_000)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.sweep_blobs(Vec::new(), 2_001).await.unwrap(),
        vec![(file, 4)]
    );
    assert_eq!(row(&store, &module).unwrap().references, 1);
    assert_eq!(
        store.delete_blob(file, None).await.unwrap(),
        BlobDeletion::Absent,
        "swept already"
    );
    assert_eq!(store.load_jobs().unwrap().len(), 1);
}

/// Downloads are recorded by the sweep before it decides; a user's
/// deletion takes an unused blob at once, row then file.
#[tokio::test]
async fn a_download_counts_as_a_use_and_an_unused_blob_can_be_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Durability::Normal).unwrap();
    let served = blob_file(dir.path(), b"served");
    let idle = blob_file(dir.path(), b"idle");
    for digest in [served, idle] {
        assert!(store.record_upload(digest, 6, 100, None).await.unwrap());
    }
    let swept = store.sweep_blobs(vec![(served, 900)], 500).await.unwrap();
    assert_eq!(swept, vec![(idle, 6)]);
    assert_eq!(row(&store, &served).unwrap().last_used_at, 900);
    // An older use never moves it back.
    store.sweep_blobs(vec![(served, 300)], 0).await.unwrap();
    assert_eq!(row(&store, &served).unwrap().last_used_at, 900);
    assert_eq!(
        store.delete_blob(served, None).await.unwrap(),
        BlobDeletion::Deleted { size: 6 }
    );
    assert!(!on_disk(dir.path(), &served));
    assert!(row(&store, &served).is_none());
    assert!(
        !store.record_upload(served, 6, 1_000, None).await.unwrap(),
        "no file, no row"
    );
    assert!(store.blobs(None).unwrap().is_empty());
}

/// A job whose blob was deleted a moment before is refused with a
/// sentence, and nothing of it is stored; other writes of its group stand.
#[tokio::test]
async fn a_job_is_not_stored_when_its_blob_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Durability::Normal).unwrap();
    let module = blob_file(dir.path(), b"module");
    assert!(store.record_upload(module, 6, 1, None).await.unwrap());
    // The deletion and the submission race; the writer orders them.
    let (deleted, inserted) = tokio::join!(
        store.delete_blob(module, None),
        store.insert_job(job_using(module, &[]))
    );
    assert_eq!(deleted.unwrap(), BlobDeletion::Deleted { size: 6 });
    let error = inserted.unwrap_err();
    assert!(
        matches!(error, StoreError::BlobGone(d) if d == module),
        "{error}"
    );
    assert!(error.to_string().contains("upload it again"), "{error}");
    assert!(store.load_jobs().unwrap().is_empty());
    // A blob never uploaded is refused alike.
    let never = ContentDigest::of(b"never");
    assert!(matches!(
        store.insert_job(job_using(never, &[])).await,
        Err(StoreError::BlobGone(d)) if d == never
    ));
    // And the store goes on.
    assert_eq!(store.insert_job(new_job()).await.unwrap(), 1);
}

/// A job's removal takes its results and votes; results still queued for
/// it are dropped without failing the writes committed with them.
#[tokio::test]
async fn a_removed_job_takes_its_results_and_late_ones_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Durability::Normal).unwrap();
    let gone = store.insert_job(new_job()).await.unwrap();
    let kept = store.insert_job(new_job()).await.unwrap();
    let result = |job, task| ResultRow {
        job,
        task,
        donor: 1,
        output: Bytes::from(vec![task as u8; 8]),
    };
    store.record(vec![result(gone, 0)], vec![]).await.unwrap();
    assert!(store.delete_job(gone, 5).await.unwrap());
    assert_eq!(store.result_count(gone).unwrap(), 0);
    let late = store
        .record(vec![result(gone, 1), result(kept, 0)], vec![])
        .await
        .unwrap();
    assert_eq!(late, vec![false, true]);
    assert_eq!(store.result_count(gone).unwrap(), 0);
    assert!(!store.job_exists(gone).unwrap());
    assert!(store.job_exists(kept).unwrap());
}

/// At start the rows follow the files: a blob file from before the table
/// gains a row (and a full retention), a row whose file is gone and that
/// no job uses is dropped, and jobs stored before `job_blobs` get their
/// references.
#[tokio::test]
async fn opening_brings_the_blob_rows_in_line_with_the_files_and_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let module = blob_file(dir.path(), b"module");
    let vanished = blob_file(dir.path(), b"vanished");
    std::fs::create_dir_all(dir.path().join("blobs/tmp")).unwrap();
    std::fs::write(dir.path().join("blobs/not-a-blob"), b"x").unwrap();
    let job = {
        let store = Store::open(dir.path(), Durability::Normal).unwrap();
        let job = store.insert_job(job_using(module, &[])).await.unwrap();
        // An older coordinator's store: no references, no rows.
        let conn = rusqlite::Connection::open(dir.path().join(STORE_FILE)).unwrap();
        conn.execute_batch(
            "DELETE FROM job_blobs; DELETE FROM blobs; DELETE FROM meta WHERE key = 'job_blobs';",
        )
        .unwrap();
        job
    };
    let before = crate::clock::unix_ms();
    let store = Store::open(dir.path(), Durability::Normal).unwrap();
    let rows = store.blobs(None).unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let adopted = row(&store, &module).unwrap();
    assert_eq!(adopted.references, 1);
    assert_eq!(adopted.size, 6);
    assert!(adopted.last_used_at >= before);
    assert_eq!(
        store.delete_blob(module, None).await.unwrap(),
        BlobDeletion::Referenced(vec![job])
    );
    drop(store);

    std::fs::remove_file(crate::blobs::blob_path(
        &dir.path().join("blobs"),
        &vanished,
    ))
    .unwrap();
    let store = Store::open(dir.path(), Durability::Normal).unwrap();
    assert!(row(&store, &vanished).is_none());
    assert_eq!(row(&store, &module).unwrap().references, 1);
}

/// A finished lifecycle at `at` (Unix ms).
fn finished(state: JobState, at: u64) -> Lifecycle {
    Lifecycle {
        state,
        finished_at: Some(at),
        started_at: Some(at),
        version: 1,
        ..Lifecycle::queued()
    }
}

/// Jobs of 4 tasks, each task's output `bytes` long, finished at `at`.
async fn finished_jobs(store: &Store, count: usize, bytes: usize, at: u64) -> Vec<u64> {
    let mut ids = Vec::new();
    for _ in 0..count {
        let job = store.insert_job(new_job()).await.unwrap();
        let rows = (0..4)
            .map(|task| ResultRow {
                job,
                task,
                donor: 5,
                output: Bytes::from(vec![task as u8; bytes]),
            })
            .collect();
        store.record(rows, vec![]).await.unwrap();
        store
            .update_job(job, finished(JobState::Done, at))
            .await
            .unwrap();
        ids.push(job);
    }
    ids
}

/// The retention deletes the finished jobs before its cutoff and nothing
/// else, and its vacuum steps give the space back: the file shrinks.
#[tokio::test]
async fn deleting_finished_jobs_before_a_cutoff_shrinks_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Durability::Normal).unwrap();
    let old = finished_jobs(&store, 120, 16 * 1024, 1_000).await;
    let recent = finished_jobs(&store, 2, 16 * 1024, 5_000).await;
    let live = store.insert_job(new_job()).await.unwrap();
    let cancelled = store.insert_job(new_job()).await.unwrap();
    store
        .update_job(cancelled, finished(JobState::Cancelled, 10))
        .await
        .unwrap();
    store.vacuum_step(1).await.unwrap(); // checkpoints: the log is in the file
    let before = std::fs::metadata(store.path()).unwrap().len();
    assert!(before > 120 * 4 * 16 * 1024, "{before} bytes");

    let mut deleted = 0;
    loop {
        let group = store.delete_finished(2_000, 9_000, 50).await.unwrap();
        deleted += group;
        if group < 50 {
            break;
        }
    }
    assert_eq!(deleted, 121, "the old done jobs and the cancelled one");
    let mut steps = 0;
    while store.vacuum_step(64).await.unwrap() > 0 {
        steps += 1;
        assert!(steps < 10_000, "the free pages run out");
    }
    assert!(steps > 1, "in small steps: {steps}");
    let after = std::fs::metadata(store.path()).unwrap().len();
    assert!(
        after < before / 4,
        "the file shrank from {before} to {after} bytes"
    );
    for id in old.iter().chain([&cancelled]) {
        assert!(store.stored_job(*id).unwrap().is_none(), "job {id}");
        assert_eq!(store.result_count(*id).unwrap(), 0);
    }
    for id in recent.iter().chain([&live]) {
        assert!(store.stored_job(*id).unwrap().is_some(), "job {id}");
    }
    assert_eq!(store.result_count(recent[0]).unwrap(), 4);
}

/// Pages of finished jobs: newest first, by owner, by state, below an id,
/// skipping what the caller holds; unfinished jobs are loaded, never paged.
#[tokio::test]
async fn finished_jobs_are_paged_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Durability::Normal).unwrap();
    let done = finished_jobs(&store, 3, 8, 100).await;
    let bobs = store
        .insert_job(JobDefinition {
            owner: 7,
            ..new_job()
        })
        .await
        .unwrap();
    store
        .update_job(bobs, finished(JobState::Failed, 100))
        .await
        .unwrap();
    let live = store.insert_job(new_job()).await.unwrap();
    let page = |page: FinishedPage, skip: &[u64]| -> Vec<u64> {
        store
            .finished_jobs(&page, |id| skip.contains(&id))
            .unwrap()
            .iter()
            .map(|j| j.id)
            .collect()
    };
    let all = FinishedPage {
        limit: 10,
        ..Default::default()
    };
    assert_eq!(page(all.clone(), &[]), [bobs, done[2], done[1], done[0]]);
    assert_eq!(page(all.clone(), &[done[1]]), [bobs, done[2], done[0]]);
    let two = FinishedPage {
        limit: 2,
        before: Some(bobs),
        ..all.clone()
    };
    assert_eq!(page(two, &[]), [done[2], done[1]]);
    let bob = FinishedPage {
        owner: Some(7),
        ..all.clone()
    };
    assert_eq!(page(bob, &[]), [bobs]);
    let failed = FinishedPage {
        states: vec![JobState::Failed, JobState::Running],
        ..all.clone()
    };
    assert_eq!(page(failed, &[]), [bobs]);
    let running = FinishedPage {
        states: vec![JobState::Running],
        ..all
    };
    assert_eq!(page(running, &[]), Vec::<u64>::new());
    let loaded: Vec<u64> = store
        .load_unfinished_jobs()
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(loaded, [live]);
    let stored = store.stored_job(done[0]).unwrap().unwrap();
    assert_eq!(
        (stored.lifecycle.state, stored.tasks_done),
        (JobState::Done, 4)
    );
    assert_eq!(store.done_jobs_answered_by(5).unwrap(), done);
    assert!(store.done_jobs_answered_by(6).unwrap().is_empty());
    let mut counts = store.finished_counts(None).unwrap();
    counts.sort_by_key(|(s, _)| s.name());
    assert_eq!(counts, [(JobState::Done, 3), (JobState::Failed, 1)]);
    assert_eq!(
        store.finished_counts(Some(7)).unwrap(),
        [(JobState::Failed, 1)]
    );
}
