//! A worker written by hand from the protocol's message types, as a third
//! party would write one ([`HandWorker`]): hello, batches, outputs computed
//! with `grid_kernels::TaskRunner`, binary results frames built with
//! `ResultsFrameBuilder`, and the acks that answer them. Also what acks say
//! about results sent twice, results for batches never leased, and outputs
//! that cannot be right (their donor is quarantined), and revokes.

use std::collections::BTreeSet;
use std::time::Duration;

use grid_kernels::spec::HashsearchParams;
use grid_kernels::{JobResult, KernelSpec, TaskOutput};
use grid_protocol::api::JobState;
use grid_protocol::frame::ResultsFrameBuilder;
use grid_protocol::{CoordinatorMessage, WorkerKind, WorkerMessage};
use grid_tests::raw::{Ack, HandWorker, RawSocket, accepted, hello};
use grid_tests::{
    TestGrid, assert_primes, job, primes, submit, wait_for_job, wait_for_workers, worker_info,
};
use sha2::{Digest, Sha256};

const TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_written_worker_computes_a_whole_job() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start(dir.path()).await;
    let client = grid.client();
    let mut worker = HandWorker::join(&grid.url, 2).await;
    let spec = primes(0, 10_000_000);
    let id = submit(&client, &job(spec.clone(), 16)).await;

    let first = worker.next_batch().await;
    assert_eq!(first.job, id);
    assert_eq!(first.job_tasks, 16);
    assert_eq!(first.spec, spec);
    assert!(!first.tasks.is_empty() && first.tasks.end() <= 16);
    assert!(first.lease_ms > 0);
    worker.queue.push_front(first);

    let mut answered = BTreeSet::new();
    worker.finish(&mut answered, 16).await;
    let status = wait_for_job(&client, id, TIMEOUT).await;
    assert_eq!(status.state, JobState::Done, "{status:?}");
    assert_primes(&status, 664_579);
    assert_eq!(status.tasks.done, 16);

    let workers = client.workers().await.unwrap();
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0].id, worker.id);
    assert_eq!(workers[0].name.as_deref(), Some("by-hand"));
    assert_eq!(workers[0].kind, WorkerKind::Native);
    assert_eq!(workers[0].threads, 2);
    assert_eq!(workers[0].tasks_done, 16);
    assert_eq!(workers[0].results_rejected, 0);
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_tell_duplicates_from_results_never_leased() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start(dir.path()).await;
    let client = grid.client();
    let mut worker = HandWorker::join(&grid.url, 2).await;
    let tasks = 20;
    let id = submit(&client, &job(primes(0, 10_000_000), tasks)).await;

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
    assert_primes(&status, 664_579);
    assert_eq!(status.tasks.done, tasks);
    let me = worker_info(&client, worker.id).await;
    assert_eq!(me.results_rejected, 3, "{me:?}");
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resending_a_whole_batch_is_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start(dir.path()).await;
    let client = grid.client();
    // 80 threads: a first batch of 80 tasks, more than `max_rejected_results`.
    let mut worker = HandWorker::join(&grid.url, 80).await;
    submit(&client, &job(primes(0, 10_000_000), 1000)).await;

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
    assert_eq!(workers[0].results_rejected, 0, "{workers:?}");
    assert!(!workers[0].quarantined, "{workers:?}");
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impossible_output_quarantines_its_donor_and_others_redo_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start(dir.path()).await;
    let client = grid.client();
    let mut liar_hello = hello(1, "liar");
    liar_hello.session = Some("liar-tab".into());
    let mut liar = HandWorker::join_with(&grid.url, liar_hello.clone()).await;
    let tasks = 4;
    let job_id = submit(&client, &job(primes(0, 1000), tasks)).await;

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
    // After that ack it is told, with 4008, and leaves the list; its tab
    // may not come back. (That even its right answers would be refused is
    // `a_quarantined_donors_frames_are_refused_unread` in the grid's tests.)
    let closed = liar.socket.expect_close().await;
    assert_eq!(closed.code, grid_protocol::CloseCode::Quarantined.code());
    wait_for_workers(&client, "the liar gone", |w| {
        w.iter().all(|w| w.id != liar.id)
    })
    .await;
    let mut again = RawSocket::connect(&grid.url).await;
    again.send_message(&WorkerMessage::Hello(liar_hello)).await;
    let closed = again.expect_close().await;
    assert_eq!(closed.code, grid_protocol::CloseCode::Quarantined.code());
    assert!(!closed.reason.is_empty());

    // An honest worker does the whole job: pi(1000) = 168.
    let honest = grid.worker(1, "honest");
    let status = wait_for_job(&client, job_id, TIMEOUT).await;
    assert_primes(&status, 168);
    assert_eq!(status.tasks.done, tasks);
    // Nothing of the liar's counted: the honest worker did every task.
    let workers = client.workers().await.unwrap();
    assert_eq!(
        grid_tests::total_tasks_done(&workers),
        u64::from(tasks),
        "{workers:?}"
    );

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
            KernelSpec::Hashsearch(HashsearchParams {
                prefix: prefix.into(),
                difficulty,
                start: 0,
                end: 1000,
            }),
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
        "a nonce that misses the difficulty was taken: {:?}",
        client.status(id).await.unwrap()
    );

    // An honest worker finds the genuine nonces, and only those.
    let honest = grid.worker(1, "honest");
    let status = wait_for_job(&client, id, TIMEOUT).await;
    assert_eq!(status.state, JobState::Done, "{status:?}");
    assert_eq!(
        client.result(id).await.unwrap(),
        JobResult::Hashsearch { nonces: genuine }
    );

    honest.stop().await;
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_written_worker_is_revoked_when_its_job_is_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start(dir.path()).await;
    let client = grid.client();
    let mut worker = HandWorker::join(&grid.url, 1).await;
    let id = submit(&client, &job(primes(0, 10_000_000), 10)).await;
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
    assert_eq!(status.state, JobState::Cancelled);
    assert_eq!(status.tasks.done, 0);
    grid.stop().await;
}
