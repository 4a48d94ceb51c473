//! Files for kernels, with native workers on a real coordinator: a job
//! mounts a file, each task reads a slice of it chosen by its input (the
//! `slicehash` example, built by a real toolchain) and prints the slice's
//! SHA-256, which this test computes itself. Each worker fetches the file
//! once for its cache, not once per task, and a worker started again on
//! the same cache directory fetches nothing; a copy corrupted in a
//! worker's cache is caught and fetched again, and a blob corrupted on the
//! coordinator's disk fails its tasks visibly, never silently wrong. The
//! blob capability opens only the blobs of a batch the worker holds.

use std::path::{Path, PathBuf};
use std::time::Duration;

use grid_kernels::KernelKind;
use grid_kernels::{ContentDigest, JobResult};
use grid_protocol::api::{JobState, JobStatus};
use grid_protocol::{TaskInput, WorkerMessage};
use grid_tests::raw::{self, RawSocket};
use grid_tests::slices::{data, expected, slicehash, slices, submit};
use grid_tests::{TestGrid, TestWorker, wait_for_job, wait_for_workers};
use grid_worker_native::CacheOptions;

async fn outputs(grid: &TestGrid, job: u64) -> Vec<String> {
    let JobResult::Wasm { tasks } = grid.client().result(job).await.unwrap() else {
        panic!("not a wasm result")
    };
    let mut out = Vec::new();
    for task in tasks {
        let bytes = grid.client().task_output(job, task.task).await.unwrap();
        out.push(String::from_utf8(bytes).unwrap());
    }
    out
}

/// A figure of the coordinator's `/metrics`, by its line's prefix.
async fn metric(grid: &TestGrid, name: &str) -> u64 {
    grid_tests::metric(&grid.url, name.trim_end()).await
}

/// The coordinator's count of blob bytes it sent.
async fn served(grid: &TestGrid) -> u64 {
    metric(grid, "grid_blob_bytes_served_total ").await
}

fn cached(dir: &Path) -> CacheOptions {
    CacheOptions {
        dir: Some(dir.to_path_buf()),
        bytes: 1 << 30,
    }
}

async fn done(grid: &TestGrid, job: u64) -> JobStatus {
    let status = wait_for_job(&grid.client(), job, Duration::from_secs(120)).await;
    assert_eq!(status.state, JobState::Done, "{status:?}");
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_file_is_fetched_once_per_worker_cache_and_read_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start(&dir.path().join("data")).await;
    let file = data(3 << 20, 1);
    let (digest, _) = grid.client().ensure_blob(file.clone()).await.unwrap();
    let caches = [dir.path().join("cache-a"), dir.path().join("cache-b")];
    let start = |caches: &[PathBuf; 2]| {
        [
            TestWorker::start_cached(&grid.url, 2, "a", cached(&caches[0])),
            TestWorker::start_cached(&grid.url, 2, "b", cached(&caches[1])),
        ]
    };
    let workers = start(&caches);
    wait_for_workers(&grid.client(), "two workers", |w| w.len() == 2).await;
    let before = served(&grid).await;

    // 60 tasks, each replicated on both workers: both must read the file.
    let cuts = slices(file.len(), 60, 0);
    let job = submit(&grid.client(), digest, &cuts, 2).await;
    done(&grid, job).await;
    assert_eq!(outputs(&grid, job).await, expected(&file, &cuts));
    let first = served(&grid).await - before;
    assert_eq!(
        first,
        2 * file.len() as u64,
        "the file should go once to each worker, not once per task or thread"
    );
    for cache in &caches {
        assert_eq!(
            std::fs::read(cache.join(digest.to_string())).unwrap(),
            file,
            "{} holds the checked file",
            cache.display()
        );
    }
    // One replica of a task sends its 86-byte outcome, the other a 52-byte
    // digest entry; once the donors are trusted (after 20 validated
    // results), most tasks are decided by one replica alone.
    let saved = metric(&grid, "grid_replica_bytes_saved_total ").await;
    assert!(
        saved.is_multiple_of(86 - 52) && (10 * (86 - 52)..=60 * (86 - 52)).contains(&saved),
        "{saved} bytes saved"
    );
    for worker in workers {
        worker.stop().await;
    }
    wait_for_workers(&grid.client(), "no workers", |w| w.is_empty()).await;

    // Started again on the same caches; one cached copy is corrupted.
    let mut corrupt = file.clone();
    corrupt[12_345] ^= 0x40;
    std::fs::write(caches[1].join(digest.to_string()), &corrupt).unwrap();
    let workers = start(&caches);
    wait_for_workers(&grid.client(), "two workers again", |w| w.len() == 2).await;
    // The workers said in their hello what they hold.
    let cuts = slices(file.len(), 40, 1);
    let job = submit(&grid.client(), digest, &cuts, 2).await;
    done(&grid, job).await;
    assert_eq!(outputs(&grid, job).await, expected(&file, &cuts));
    assert_eq!(
        served(&grid).await - before - first,
        file.len() as u64,
        "only the corrupted copy is fetched again"
    );
    assert!(
        metric(&grid, "grid_blob_cache_batches_total{result=\"hit\"}").await > 0,
        "batches went to workers that said they held the file"
    );
    assert_eq!(
        std::fs::read(caches[1].join(digest.to_string())).unwrap(),
        file,
        "the corrupt copy was replaced"
    );
    for worker in workers {
        worker.stop().await;
    }
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_corrupted_on_the_coordinator_fails_its_tasks_visibly() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start(&dir.path().join("data")).await;
    let file = data(1 << 20, 2);
    let (digest, _) = grid.client().ensure_blob(file.clone()).await.unwrap();
    // The disk now holds other bytes under the digest.
    let stored = dir.path().join("data/blobs").join(digest.to_string());
    let mut wrong = file.clone();
    wrong[0] ^= 1;
    std::fs::write(&stored, &wrong).unwrap();
    let _workers = [grid.worker(1, "a"), grid.worker(1, "b")];
    wait_for_workers(&grid.client(), "two workers", |w| w.len() == 2).await;
    let job = submit(&grid.client(), digest, &slices(file.len(), 4, 0), 1).await;
    let status = wait_for_job(&grid.client(), job, Duration::from_secs(60)).await;
    assert_eq!(status.state, JobState::Failed, "{status:?}");
    let error = status.error.clone().unwrap_or_default();
    assert!(
        error.contains(&digest.to_string()),
        "the failure names the blob: {error}"
    );
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capability_opens_only_the_blobs_of_a_batch_the_worker_holds() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start(&dir.path().join("data")).await;
    let ours = data(100_000, 3);
    let theirs = data(100_000, 4);
    let (ours, _) = grid.client().ensure_blob(ours).await.unwrap();
    let (theirs, _) = grid.client().ensure_blob(theirs).await.unwrap();
    let module = grid.client().ensure_blob(slicehash()).await.unwrap().0;
    let mut hello = raw::hello(1, "raw");
    hello.kernels = Some(vec![KernelKind::Wasm]);
    let (mut worker, _) = RawSocket::join_with(&grid.url, hello).await;
    let job = submit(&grid.client(), ours, &[(0, 10)], 1).await;
    let batch = worker.receive_batch().await;
    assert_eq!(batch.job, job);
    let capability = batch
        .capability
        .clone()
        .expect("a batch of a job with files");
    let http = reqwest::Client::new();
    let get = |digest: ContentDigest, capability: Option<String>| {
        let mut request = http.get(format!("{}/api/blobs/{digest}", grid.url));
        if let Some(capability) = capability {
            request = request.header("Grid-Capability", capability);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get(ours, Some(capability.clone())).await, 200);
    assert_eq!(
        get(theirs, Some(capability.clone())).await,
        404,
        "not this job's"
    );
    assert_eq!(
        get(module, Some(capability.clone())).await,
        404,
        "not a worker's to read"
    );
    assert_eq!(get(ours, None).await, 401, "no token, no capability");
    let forged = format!("{}.{}", batch.batch, "0".repeat(32));
    assert_eq!(get(ours, Some(forged)).await, 404);
    assert!(matches!(batch.inputs.first(), Some(TaskInput::Inline(_))));
    // Once the batch has ended, its capability opens nothing.
    worker
        .send_message(&WorkerMessage::Return {
            batch: batch.batch,
            tasks: batch.tasks.clone(),
        })
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(get(ours, Some(capability)).await, 404, "the lease ended");
    grid.stop().await;
}
