//! The shortest end-to-end path: a coordinator, two native workers, one job.

use std::time::Duration;

use grid_protocol::api::JobState;
use grid_tests::{
    TestGrid, assert_primes, primes, total_tasks_done, wait_for_job, wait_for_workers,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_count_the_primes_below_ten_million() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start(dir.path()).await;
    let a = grid.worker(1, "a");
    let b = grid.worker(1, "b");
    let client = grid.client();
    // Both connected first: a job this short could otherwise finish on the
    // first before the second has said hello.
    wait_for_workers(&client, "both workers", |w| w.len() == 2).await;
    let request = grid_tests::job(primes(0, 10_000_000), 200);
    let submitted = client.submit(&request).await.unwrap();
    let status = wait_for_job(&client, submitted.id, Duration::from_secs(60)).await;
    assert_eq!(status.state, JobState::Done, "{status:?}");
    assert_primes(&status, 664_579);
    assert_eq!(status.tasks.done, 200);
    let workers = client.workers().await.unwrap();
    assert_eq!(workers.len(), 2);
    assert_eq!(total_tasks_done(&workers), 200, "{workers:?}");
    a.stop().await;
    b.stop().await;
    grid.stop().await;
}
