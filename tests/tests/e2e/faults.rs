//! Jobs survive faults with the exact answer and no task counted twice: a
//! worker killed mid-job, the coordinator stopped and restarted mid-job on the
//! same data directory, and the coordinator process killed with SIGKILL three
//! times during one job; replica votes and cancelled jobs survive a restart
//! too. Each interruption waits for the job to be partway
//! (by its progress, not by the clock); workers find the restarted
//! coordinator by themselves because it comes back on the same port.

use std::time::Duration;

use grid_kernels::spec::MonteCarloParams;
use grid_kernels::{JobResult, KernelKind, KernelSpec, ResultSummary};
use grid_protocol::api::JobState;
use grid_tests::{
    GridProcess, TestGrid, TestWorker, assert_primes, free_port, job, primes, submit, wait_for_job,
    wait_for_workers, wait_partway, wait_until,
};

const JOB_TIMEOUT: Duration = Duration::from_secs(120);

/// Prime counts from the tables of pi(x). The primes kernel does several
/// hundred million numbers a second per core here, so these jobs take a few
/// seconds: long enough to interrupt mid-way, several times.
const PI_2E9: u64 = 98_222_287;
const PI_4E9: u64 = 189_961_812;

fn primes_below(end: u64, tasks: u32) -> grid_protocol::api::JobRequest {
    job(primes(0, end), tasks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_loses_nothing_and_counts_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start(dir.path()).await;
    let doomed = grid.worker(1, "doomed");
    let survivor = grid.worker(1, "survivor");
    let client = grid.client();
    wait_for_workers(&client, "two workers", |w| w.len() == 2).await;

    let tasks = 1000;
    let id = submit(&client, &primes_below(2_000_000_000, tasks)).await;
    wait_partway(&client, id, 0.25).await;
    // Make sure the doomed worker holds work when it dies.
    wait_for_workers(&client, "work in flight on both workers", |w| {
        w.len() == 2 && w.iter().all(|w| w.tasks_in_flight > 0)
    })
    .await;
    doomed.kill();
    wait_for_workers(&client, "the killed worker to be gone", |w| {
        w.len() == 1 && w[0].name.as_deref() == Some("survivor")
    })
    .await;

    let status = wait_for_job(&client, id, JOB_TIMEOUT).await;
    assert_eq!(status.state, JobState::Done, "{status:?}");
    assert_primes(&status, PI_2E9);
    assert_eq!(status.tasks.done, tasks, "{status:?}");

    survivor.stop().await;
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_restarted_mid_job_finishes_the_same_job_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start(dir.path()).await;
    let port = grid.port();
    let url = grid.url.clone();
    let a = grid.worker(1, "a");
    let b = grid.worker(1, "b");
    let client = grid.client();

    // Montecarlo-pi: a task collated twice would show in `samples`, one lost
    // or recomputed differently in `inside`.
    let (seed, samples) = (77u64, 150_000_000u64);
    let request = job(
        KernelSpec::MontecarloPi(MonteCarloParams { samples, seed }),
        600,
    );
    let id = submit(&client, &request).await;
    let before = wait_partway(&client, id, 0.3).await;

    grid.stop().await;
    let grid = TestGrid::start_on(dir.path(), port, |_| {}).await;
    assert_eq!(grid.url, url);
    let client = grid.client();
    let restored = client.status(id).await.expect("the job survives a restart");
    assert_eq!(restored.id, id);
    assert_eq!(restored.spec.kind(), KernelKind::MontecarloPi);
    assert!(
        restored.tasks.done >= before.tasks.done,
        "durable progress was lost: {before:?} then {restored:?}"
    );

    let status = wait_for_job(&client, id, JOB_TIMEOUT).await;
    assert_eq!(status.state, JobState::Done, "{status:?}");
    assert_eq!(status.tasks.done, 600, "{status:?}");
    let inside = grid_kernels::montecarlo::count_inside(seed, 0, samples);
    let Some(ResultSummary::MontecarloPi {
        samples: got_samples,
        inside: got_inside,
        ..
    }) = status.result
    else {
        panic!("not a montecarlo-pi result: {status:?}")
    };
    assert_eq!(got_samples, samples, "{status:?}");
    assert_eq!(got_inside, inside, "{status:?}");
    let jobs = client.jobs().await.unwrap();
    assert_eq!(jobs.len(), 1, "the restart made no new job: {jobs:?}");
    assert_eq!(jobs[0].id, id);

    a.stop().await;
    b.stop().await;
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_votes_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // Full quorums only, so that half-voted tasks are certain at the restart.
    let strict = |config: &mut grid_coordinator::ServerConfig| {
        config.scheduler.trust_after = None;
    };
    let grid = TestGrid::start_with(dir.path(), strict).await;
    let port = grid.port();
    let a = grid.worker(1, "a");
    let b = grid.worker(1, "b");
    let client = grid.client();
    let tasks = 1000;
    let request = grid_protocol::api::JobRequest {
        redundancy: Some(2),
        ..primes_below(2_000_000_000, tasks)
    };
    let id = submit(&client, &request).await;
    let before = wait_partway(&client, id, 0.3).await;

    grid.stop().await;
    let grid = TestGrid::start_on(dir.path(), port, strict).await;
    let client = grid.client();
    let restored = client.status(id).await.unwrap();
    assert!(restored.tasks.done >= before.tasks.done, "{restored:?}");
    assert_eq!(restored.redundancy, 2);
    let status = wait_for_job(&client, id, JOB_TIMEOUT).await;
    assert_eq!(status.state, JobState::Done, "{status:?}");
    assert_primes(&status, PI_2E9);
    assert_eq!(status.tasks.done, tasks, "{status:?}");

    a.stop().await;
    b.stop().await;
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_job_stays_cancelled_and_ids_are_not_reused_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start(dir.path()).await;
    let client = grid.client();
    let cancelled = submit(&client, &primes_below(10_000_000, 10)).await;
    client.cancel(cancelled).await.unwrap();
    grid.stop().await;

    let grid = TestGrid::start(dir.path()).await;
    let client = grid.client();
    let worker = grid.worker(1, "a");
    let next = submit(&client, &primes_below(10_000_000, 10)).await;
    assert!(next > cancelled, "job id {next} reused after {cancelled}");
    let status = wait_for_job(&client, next, JOB_TIMEOUT).await;
    assert_primes(&status, 664_579);
    let status = client.status(cancelled).await.unwrap();
    assert_eq!(status.state, JobState::Cancelled, "{status:?}");
    assert_eq!(status.tasks.done, 0, "{status:?}");

    worker.stop().await;
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_killed_three_times_mid_job_finishes_it_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let mut process = GridProcess::serve_on(dir.path(), port, &[]).await.unwrap();
    let url = process.url.clone();
    let a = TestWorker::start(&url, 1, "a");
    let b = TestWorker::start(&url, 1, "b");
    let client = process.client();

    let tasks = 2000;
    let id = submit(&client, &primes_below(4_000_000_000, tasks)).await;
    for kill in 1..=3 {
        let before = wait_partway(&client, id, 0.2 * f64::from(kill)).await;
        process.kill();
        process = GridProcess::serve_on(dir.path(), port, &[])
            .await
            .unwrap_or_else(|e| panic!("restart {kill}: {e:#}"));
        let after = client.status(id).await.expect("the job survives SIGKILL");
        assert_eq!(after.id, id);
        assert!(
            after.tasks.done >= before.tasks.done,
            "kill {kill} lost acknowledged results: {before:?} then {after:?}"
        );
    }

    let status = wait_until(&client, id, JOB_TIMEOUT, "completion", |s| {
        s.state == JobState::Done
    })
    .await;
    assert_primes(&status, PI_4E9);
    assert_eq!(status.tasks.done, tasks, "{status:?}");
    let jobs = client.jobs().await.unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");

    // Finished is durable too: one more kill, and the job is still done with
    // its result served from the store.
    a.stop().await;
    b.stop().await;
    process.kill();
    let process = GridProcess::serve_on(dir.path(), port, &[]).await.unwrap();
    let status = client.status(id).await.unwrap();
    assert_eq!(status.state, JobState::Done, "{status:?}");
    assert_primes(&status, PI_4E9);
    assert_eq!(
        client.result(id).await.unwrap(),
        JobResult::Primes { count: PI_4E9 }
    );
    process.kill();
}
