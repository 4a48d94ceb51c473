//! Donors as the protocol lets workers describe themselves, driven by
//! hand-written workers: a hello's session makes several connections one
//! donor (replicas of a task never go to two of them), `pause` and `resume`
//! stop and restart the flow of batches, and `failed` reports that fail a task
//! on every worker fail its job.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use grid_protocol::WorkerMessage;
use grid_protocol::api::JobState;
use grid_tests::raw::{HandWorker, accepted, hello, http};
use grid_tests::{
    TOKEN, TestGrid, assert_primes, grid_cli_async, job, primes, submit, total_tasks_done,
    wait_for_job, wait_for_workers, worker_info,
};

const TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_never_go_to_two_connections_of_one_session() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start_with(dir.path(), |config| {
        config.heartbeat = Duration::from_millis(200);
    })
    .await;
    let client = grid.client();
    // Two Web Workers of one browser tab, say: one session, one donor.
    let mut tab = Vec::new();
    for name in ["tab-worker-1", "tab-worker-2"] {
        let mut hello = hello(1, name);
        hello.session = Some("tab-1".into());
        let worker = HandWorker::join_with(&grid.url, hello).await;
        let given = Arc::new(Mutex::new(Vec::new()));
        tab.push((worker.serve(given.clone(), None), given));
    }
    let workers = client.workers().await.unwrap();
    assert_eq!(workers.len(), 2);
    assert_eq!(workers[0].session.as_deref(), Some("tab-1"));
    assert_eq!(workers[0].donor, workers[1].donor, "{workers:?}");

    let tasks = 12;
    let request = grid_protocol::api::JobRequest {
        redundancy: Some(2),
        ..job(primes(0, 10_000_000), tasks)
    };
    let id = submit(&client, &request).await;
    // The tab answers one replica of each task, then has nothing it may do.
    wait_for_workers(&client, "one replica of every task", |w| {
        total_tasks_done(w) >= u64::from(tasks) && w.iter().all(|w| w.tasks_in_flight == 0)
    })
    .await;
    let status = client.status(id).await.unwrap();
    assert_eq!(status.state, JobState::Running, "{status:?}");
    assert_eq!(status.tasks.done, 0, "{status:?}");

    // Another donor supplies the second replicas.
    let other = grid.worker(1, "another-donor");
    let status = wait_for_job(&client, id, TIMEOUT).await;
    assert_primes(&status, 664_579);
    let workers = client.workers().await.unwrap();
    assert_eq!(
        total_tasks_done(&workers),
        2 * u64::from(tasks),
        "{workers:?}"
    );

    let first: BTreeSet<u32> = tab[0].1.lock().unwrap().iter().copied().collect();
    let second: BTreeSet<u32> = tab[1].1.lock().unwrap().iter().copied().collect();
    let both: Vec<&u32> = first.intersection(&second).collect();
    assert!(
        both.is_empty(),
        "tasks leased to both connections of the tab: {both:?}"
    );
    assert_eq!(first.len() + second.len(), tasks as usize);

    for (serving, _) in tab {
        serving.abort();
    }
    other.stop().await;
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_worker_gets_no_batches_until_it_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start(dir.path()).await;
    let client = grid.client();
    let mut paused = HandWorker::join(&grid.url, 4).await;
    paused.socket.send_message(&WorkerMessage::Pause {}).await;
    wait_for_workers(&client, "the worker to be paused", |w| {
        w.len() == 1 && w[0].paused
    })
    .await;

    let native = grid.worker(1, "native");
    let first = submit(&client, &job(primes(0, 10_000_000), 20)).await;
    let status = wait_for_job(&client, first, TIMEOUT).await;
    assert_primes(&status, 664_579);
    let me = worker_info(&client, paused.id).await;
    assert_eq!(me.tasks_done, 0, "{me:?}");

    paused.socket.send_message(&WorkerMessage::Resume {}).await;
    wait_for_workers(&client, "the worker to resume", |w| {
        w.iter().any(|w| w.id == paused.id && !w.paused)
    })
    .await;
    let second = submit(&client, &job(primes(0, 1_000_000), 20)).await;
    // The first batch it ever receives is of the job submitted after resume.
    let batch = paused.next_batch().await;
    assert_eq!(batch.job, second, "a batch reached the worker while paused");
    let indices: Vec<u32> = batch.tasks.iter().collect();
    let frame = paused.frame(&batch, &indices);
    assert_eq!(
        paused.send(batch.batch, frame).await,
        accepted(indices.len() as u32)
    );
    let status = wait_for_job(&client, second, TIMEOUT).await;
    assert_primes(&status, 78_498);

    native.stop().await;
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_fails_everywhere_fails_its_job() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start_with(dir.path(), |config| {
        config.heartbeat = Duration::from_millis(200);
    })
    .await;
    let client = grid.client();
    let mut serving = Vec::new();
    for threads in [1, 2] {
        let worker = HandWorker::join(&grid.url, threads).await;
        serving.push(worker.serve(Arc::default(), Some(0)));
    }
    let id = submit(&client, &job(primes(0, 1_000_000), 6)).await;
    let status = wait_for_job(&client, id, TIMEOUT).await;
    assert_eq!(status.state, JobState::Failed, "{status:?}");
    let error = status.error.as_deref().unwrap_or_default();
    assert!(error.contains("task 0"), "{status:?}");
    assert!(status.result.is_none(), "{status:?}");
    for task in serving {
        task.abort();
    }

    // No results for a failed job; `grid watch` reports it with exit code 3.
    let answer = http(
        &grid.url,
        "GET",
        &format!("/api/jobs/{id}/results"),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(answer.status, 409, "{}", answer.text);
    answer.error();
    let (code, _, stderr) = grid_cli_async(&grid.url, &["watch", &id.to_string()]).await;
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("failed"), "{stderr}");

    // The grid carries on.
    let worker = grid.worker(1, "native");
    let next = submit(&client, &job(primes(0, 1_000_000), 6)).await;
    let status = wait_for_job(&client, next, TIMEOUT).await;
    assert_primes(&status, 78_498);
    worker.stop().await;
    grid.stop().await;
}
