//! A worker written by hand from the protocol's message types, as a third
//! party would write one: hello, batches, outputs computed with
//! `grid_kernels::TaskRunner`, binary results frames built with
//! `ResultsFrameBuilder`, and the acks that answer them. Also what acks say
//! about results sent twice, results for batches never leased, and outputs
//! that cannot be right (their donor is quarantined); and what a hello's
//! session and the pause and resume messages do.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use grid_kernels::{KernelSpec, TaskOutput, TaskRunner};
use grid_protocol::frame::ResultsFrameBuilder;
use grid_protocol::{Batch, CoordinatorMessage, WorkerMessage};
use grid_tests::raw::{Ack, RawSocket, hello};
use grid_tests::{TestGrid, job, submit, total_tasks_done, wait_for_job, wait_for_workers};
use serde_json::json;
use sha2::{Digest, Sha256};

/// A hand-written worker: a raw socket, a task runner, and the batches
/// received but not yet worked on.
struct HandWorker {
    socket: RawSocket,
    id: u64,
    runner: TaskRunner,
    queue: VecDeque<Batch>,
}

impl HandWorker {
    async fn join(url: &str, threads: u32) -> HandWorker {
        let (socket, id) = RawSocket::join(url, threads, "by-hand").await;
        HandWorker {
            socket,
            id,
            runner: TaskRunner::new(),
            queue: VecDeque::new(),
        }
    }

    async fn next_batch(&mut self) -> Batch {
        match self.queue.pop_front() {
            Some(batch) => batch,
            None => self.socket.receive_batch().await,
        }
    }

    fn output(&mut self, batch: &Batch, task: u32) -> TaskOutput {
        self.runner.run(&batch.spec, batch.job_tasks, task)
    }

    /// A results frame for `tasks` of `batch`, computed for real.
    fn frame(&mut self, batch: &Batch, tasks: &[u32]) -> Vec<u8> {
        let mut builder = ResultsFrameBuilder::new(batch.batch);
        for &task in tasks {
            let output = self.output(batch, task);
            builder.push(task, &output);
        }
        builder.finish()
    }

    /// Sends a results frame naming `batch` and returns its ack. Batches that
    /// arrive meanwhile are kept for later.
    async fn send(&mut self, batch: u64, frame: Vec<u8>) -> Ack {
        self.socket.send_binary(frame).await;
        let (ack, batches) = self.socket.receive_ack(batch).await;
        self.queue.extend(batches);
        ack
    }

    /// Works on every batch it is given, in the background, until the task
    /// is aborted; the indices of the tasks it was given go to `given`. The
    /// coordinator must send heartbeats more often than every 10 s.
    fn serve(mut self, given: Arc<Mutex<Vec<u32>>>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let batch = self.next_batch().await;
                let indices: Vec<u32> = batch.tasks.iter().collect();
                given.lock().unwrap().extend(&indices);
                let frame = self.frame(&batch, &indices);
                self.send(batch.batch, frame).await;
            }
        })
    }

    /// Computes and sends whole batches until `answered` holds all `tasks`.
    async fn finish(&mut self, answered: &mut BTreeSet<u32>, tasks: u32) {
        while (answered.len() as u32) < tasks {
            let batch = self.next_batch().await;
            let indices: Vec<u32> = batch.tasks.iter().collect();
            let frame = self.frame(&batch, &indices);
            let ack = self.send(batch.batch, frame).await;
            assert_eq!(ack, accepted(indices.len() as u32), "batch {}", batch.batch);
            answered.extend(indices);
        }
    }
}

fn accepted(n: u32) -> Ack {
    Ack {
        accepted: n,
        duplicate: 0,
        rejected: 0,
    }
}

const TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_written_worker_computes_a_whole_job() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start(dir.path()).await;
    let client = grid.client();
    let mut worker = HandWorker::join(&grid.url, 2).await;
    let params = json!({"start": 0, "end": 10_000_000});
    let id = submit(&client, &job("primes", params.clone(), 16)).await;

    let first = worker.next_batch().await;
    assert_eq!(first.job, id);
    assert_eq!(first.job_tasks, 16);
    assert_eq!(
        first.spec,
        KernelSpec::from_parts("primes", params).unwrap()
    );
    assert!(!first.tasks.is_empty() && first.tasks.end() <= 16);
    assert!(first.lease_ms > 0);
    worker.queue.push_front(first);

    let mut answered = BTreeSet::new();
    worker.finish(&mut answered, 16).await;
    let status = wait_for_job(&client, id, TIMEOUT).await;
    assert_eq!(status["state"], "done", "{status}");
    assert_eq!(status["result"]["count"], 664_579);
    assert_eq!(status["tasks"]["done"], 16);

    let workers = client.workers().await.unwrap();
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0]["id"], worker.id);
    assert_eq!(workers[0]["name"], "by-hand");
    assert_eq!(workers[0]["kind"], "native");
    assert_eq!(workers[0]["threads"], 2);
    assert_eq!(workers[0]["tasks_done"], 16);
    assert_eq!(workers[0]["results_rejected"], 0);
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_tell_duplicates_from_results_never_leased() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start(dir.path()).await;
    let client = grid.client();
    let mut worker = HandWorker::join(&grid.url, 2).await;
    let tasks = 20;
    let id = submit(
        &client,
        &job("primes", json!({"start": 0, "end": 10_000_000}), tasks),
    )
    .await;

    let batch = worker.next_batch().await;
    let indices: Vec<u32> = batch.tasks.iter().collect();
    assert!(
        indices.len() >= 2,
        "a 2-thread worker's first batch: {batch:?}"
    );
    let (head, tail) = indices.split_at(1);

    // Part of the batch, then the same frame again: a duplicate.
    let frame = worker.frame(&batch, head);
    assert_eq!(worker.send(batch.batch, frame.clone()).await, accepted(1));
    let again = worker.send(batch.batch, frame).await;
    assert_eq!(
        again,
        Ack {
            accepted: 0,
            duplicate: 1,
            rejected: 0
        }
    );

    // Results for a batch id that was never leased, and for a task that is
    // not in the batch: rejected.
    let never = batch.batch + 1_000_000;
    let mut builder = ResultsFrameBuilder::new(never);
    builder.push(tail[0], &worker.output(&batch, tail[0]));
    builder.push(head[0], &worker.output(&batch, head[0]));
    let ack = worker.send(never, builder.finish()).await;
    assert_eq!(
        ack,
        Ack {
            accepted: 0,
            duplicate: 0,
            rejected: 2
        }
    );
    let outside = (0..tasks).find(|t| !batch.tasks.contains(*t)).unwrap();
    let mut builder = ResultsFrameBuilder::new(batch.batch);
    builder.push(outside, &worker.output(&batch, outside));
    let ack = worker.send(batch.batch, builder.finish()).await;
    assert_eq!(ack.rejected, 1, "task {outside} is not in {batch:?}");

    // Another worker's batch is not yours.
    let mut other = HandWorker::join(&grid.url, 1).await;
    let frame = other.frame(&batch, tail);
    let ack = other.send(batch.batch, frame).await;
    assert_eq!(ack.rejected, tail.len() as u32);
    assert_eq!(ack.accepted, 0);
    drop(other);

    // None of that disturbed the job.
    let frame = worker.frame(&batch, tail);
    assert_eq!(
        worker.send(batch.batch, frame).await,
        accepted(tail.len() as u32)
    );
    let mut answered: BTreeSet<u32> = indices.iter().copied().collect();
    worker.finish(&mut answered, tasks).await;
    let status = wait_for_job(&client, id, TIMEOUT).await;
    assert_eq!(status["result"]["count"], 664_579, "{status}");
    assert_eq!(status["tasks"]["done"], tasks);
    let workers = client.workers().await.unwrap();
    let me = workers.iter().find(|w| w["id"] == worker.id).unwrap();
    assert_eq!(me["results_rejected"], 3, "{workers:?}");
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "BUG: resending the results of a finished batch is acked as rejected (unknown batch), not duplicate, and over 64 of them quarantine an honest donor"]
async fn resending_a_whole_batch_is_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start(dir.path()).await;
    let client = grid.client();
    // 80 threads: a first batch of 80 tasks, more than `max_rejected_results`.
    let mut worker = HandWorker::join(&grid.url, 80).await;
    submit(
        &client,
        &job("primes", json!({"start": 0, "end": 10_000_000}), 1000),
    )
    .await;

    let batch = worker.next_batch().await;
    let indices: Vec<u32> = batch.tasks.iter().collect();
    let n = indices.len() as u32;
    assert!(n > 64, "{batch:?}");
    let frame = worker.frame(&batch, &indices);
    assert_eq!(worker.send(batch.batch, frame.clone()).await, accepted(n));
    // The worker missed the ack (say) and sends the frame again. Every task
    // in it was leased to this worker and already has its answer.
    let again = worker.send(batch.batch, frame).await;
    let workers = client.workers().await.unwrap();
    assert_eq!(
        again,
        Ack {
            accepted: 0,
            duplicate: n,
            rejected: 0
        },
        "{workers:?}"
    );
    assert_eq!(workers[0]["results_rejected"], 0, "{workers:?}");
    assert_eq!(workers[0]["quarantined"], false, "{workers:?}");
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impossible_output_quarantines_its_donor_and_others_redo_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start(dir.path()).await;
    let client = grid.client();
    let mut liar_hello = hello(1, "liar");
    liar_hello.session = Some("liar-tab".into());
    let (socket, id) = RawSocket::join_with(&grid.url, liar_hello.clone()).await;
    let mut liar = HandWorker {
        socket,
        id,
        runner: TaskRunner::new(),
        queue: VecDeque::new(),
    };
    let tasks = 4;
    let job_id = submit(
        &client,
        &job("primes", json!({"start": 0, "end": 1000}), tasks),
    )
    .await;

    // 251 primes in a task of 250 numbers cannot be right.
    let batch = liar.next_batch().await;
    let task = batch.tasks.iter().next().unwrap();
    let mut builder = ResultsFrameBuilder::new(batch.batch);
    builder.push(task, &TaskOutput::Count(251));
    let ack = liar.send(batch.batch, builder.finish()).await;
    assert_eq!(
        ack,
        Ack {
            accepted: 0,
            duplicate: 0,
            rejected: 1
        }
    );
    wait_for_workers(&client, "the liar to be quarantined", |w| {
        w.iter()
            .any(|w| w["id"] == liar.id && w["quarantined"] == true)
    })
    .await;

    // From now on even its right answers are refused, and its tab may not
    // come back.
    let frame = liar.frame(&batch, &[task]);
    assert_eq!(liar.send(batch.batch, frame).await.rejected, 1);
    let mut again = RawSocket::connect(&grid.url).await;
    again.send_message(&WorkerMessage::Hello(liar_hello)).await;
    let closed = again.expect_close().await;
    assert_eq!(closed.code, grid_protocol::CloseCode::Quarantined.code());
    assert!(!closed.reason.is_empty());

    // An honest worker does the whole job: pi(1000) = 168.
    let honest = grid.worker(1, "honest");
    let status = wait_for_job(&client, job_id, TIMEOUT).await;
    assert_eq!(status["result"]["count"], 168, "{status}");
    assert_eq!(status["tasks"]["done"], tasks);
    let workers = client.workers().await.unwrap();
    let me = workers.iter().find(|w| w["id"] == liar.id).unwrap();
    assert_eq!(me["tasks_done"], 0, "{workers:?}");

    honest.stop().await;
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_nonce_that_misses_the_difficulty_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start(dir.path()).await;
    let client = grid.client();
    let mut worker = HandWorker::join(&grid.url, 1).await;
    let (prefix, difficulty) = ("fake", 24);
    let id = submit(
        &client,
        &job(
            "hashsearch",
            json!({"prefix": prefix, "difficulty": difficulty, "start": 0, "end": 1000}),
            1,
        ),
    )
    .await;

    let batch = worker.next_batch().await;
    assert_eq!(batch.tasks.iter().collect::<Vec<_>>(), [0]);
    // Which nonces below 1000 truly qualify, by SHA-256 computed here.
    let genuine: Vec<u64> = (0..1000)
        .filter(|n| {
            let digest = Sha256::digest(format!("{prefix}{n}").as_bytes());
            u32::from_be_bytes(digest[..4].try_into().unwrap()).leading_zeros() >= difficulty
        })
        .collect();
    let fake = (0..1000).find(|n| !genuine.contains(n)).unwrap();
    let mut builder = ResultsFrameBuilder::new(batch.batch);
    builder.push(0, &TaskOutput::Nonces(vec![fake]));
    let ack = worker.send(batch.batch, builder.finish()).await;
    assert_eq!(
        ack,
        Ack {
            accepted: 0,
            duplicate: 0,
            rejected: 1
        },
        "a nonce that misses the difficulty was taken: {}",
        client.status(id).await.unwrap()
    );

    // An honest worker finds the genuine nonces, and only those.
    let honest = grid.worker(1, "honest");
    let status = wait_for_job(&client, id, TIMEOUT).await;
    assert_eq!(status["state"], "done", "{status}");
    let result: serde_json::Value =
        serde_json::from_slice(&client.results(id, "json").await.unwrap()).unwrap();
    assert_eq!(result["nonces"], json!(genuine));

    honest.stop().await;
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_written_worker_is_revoked_when_its_job_is_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start(dir.path()).await;
    let client = grid.client();
    let mut worker = HandWorker::join(&grid.url, 1).await;
    let id = submit(
        &client,
        &job("primes", json!({"start": 0, "end": 10_000_000}), 10),
    )
    .await;
    let batch = worker.next_batch().await;
    client.cancel(id).await.unwrap();
    loop {
        match worker.socket.receive().await {
            CoordinatorMessage::Revoke { batch: revoked } if revoked == batch.batch => break,
            _ => continue,
        }
    }
    // Results that race the revoke are neither counted nor held against the
    // worker.
    let indices: Vec<u32> = batch.tasks.iter().collect();
    let frame = worker.frame(&batch, &indices);
    let ack = worker.send(batch.batch, frame).await;
    assert_eq!(ack.accepted, 0);
    assert_eq!(ack.rejected, 0, "{ack:?}");
    let status = client.status(id).await.unwrap();
    assert_eq!(status["state"], "cancelled");
    assert_eq!(status["tasks"]["done"], 0);
    grid.stop().await;
}

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
        let (socket, id) = RawSocket::join_with(&grid.url, hello).await;
        let given = Arc::new(Mutex::new(Vec::new()));
        let worker = HandWorker {
            socket,
            id,
            runner: TaskRunner::new(),
            queue: VecDeque::new(),
        };
        tab.push((worker.serve(given.clone()), given));
    }
    let workers = client.workers().await.unwrap();
    assert_eq!(workers.len(), 2);
    assert_eq!(workers[0]["session"], "tab-1");
    assert_eq!(workers[0]["donor"], workers[1]["donor"], "{workers:?}");

    let tasks = 12;
    let request = grid_coordinator::grid::JobRequest {
        redundancy: Some(2),
        ..job("primes", json!({"start": 0, "end": 10_000_000}), tasks)
    };
    let id = submit(&client, &request).await;
    // The tab answers one replica of each task, then has nothing it may do.
    wait_for_workers(&client, "one replica of every task", |w| {
        total_tasks_done(w) >= u64::from(tasks) && w.iter().all(|w| w["tasks_in_flight"] == 0)
    })
    .await;
    let status = client.status(id).await.unwrap();
    assert_eq!(status["state"], "running", "{status}");
    assert_eq!(status["tasks"]["done"], 0, "{status}");

    // Another donor supplies the second replicas.
    let other = grid.worker(1, "another-donor");
    let status = wait_for_job(&client, id, TIMEOUT).await;
    assert_eq!(status["result"]["count"], 664_579, "{status}");
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
        w.len() == 1 && w[0]["paused"] == true
    })
    .await;

    let native = grid.worker(1, "native");
    let first = submit(
        &client,
        &job("primes", json!({"start": 0, "end": 10_000_000}), 20),
    )
    .await;
    let status = wait_for_job(&client, first, TIMEOUT).await;
    assert_eq!(status["result"]["count"], 664_579);
    let workers = client.workers().await.unwrap();
    let me = workers.iter().find(|w| w["id"] == paused.id).unwrap();
    assert_eq!(me["tasks_done"], 0, "{workers:?}");

    paused.socket.send_message(&WorkerMessage::Resume {}).await;
    wait_for_workers(&client, "the worker to resume", |w| {
        w.iter()
            .any(|w| w["id"] == paused.id && w["paused"] == false)
    })
    .await;
    let second = submit(
        &client,
        &job("primes", json!({"start": 0, "end": 1_000_000}), 20),
    )
    .await;
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
    assert_eq!(status["result"]["count"], 78_498);

    native.stop().await;
    grid.stop().await;
}
