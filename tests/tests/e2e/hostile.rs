//! Hostile workers, written from PROTOCOL.md with the raw message types: a
//! liar with plausible wrong answers, a liar that earns trust first, a
//! replayer, a claimer of tasks it was never given, a flooder and a sender of
//! giant frames. Honest workers compute beside them; every job still comes
//! back exact, and the liars end up quarantined: closed with 4008 and
//! refused when they come back.

use std::time::Duration;

use grid_kernels::{JobResult, TaskOutput};
use grid_protocol::api::JobState;
use grid_protocol::frame::ResultsFrameBuilder;
use grid_protocol::{Batch, WorkerMessage};
use grid_tests::raw::{Closed, HandWorker, RawSocket, hello};
use grid_tests::{
    TestGrid, assert_primes, job, primes, submit, wait_for_job, wait_for_workers, worker_info,
};

const TIMEOUT: Duration = Duration::from_secs(60);

/// pi(2_000_000) - pi(0): the answer every primes job below must reach.
const PRIMES_BELOW_2M: u64 = 148_933;

fn primes_job(redundancy: u32, tasks: u32) -> grid_protocol::api::JobRequest {
    let mut request = job(primes(0, 2_000_000), tasks);
    request.redundancy = Some(redundancy);
    request
}

/// A plausible wrong answer: the true count plus one (still within range).
fn lie(worker: &mut HandWorker, batch: &Batch, task: u32) -> TaskOutput {
    match worker.output(batch, task) {
        TaskOutput::Count(n) => TaskOutput::Count(n + 1),
        other => other,
    }
}

/// Answers every batch it gets, with plausible lies for the jobs `lies_on`
/// picks and honestly for the others, until the coordinator closes its
/// connection: then it ends with the close frame.
fn liar(
    mut worker: HandWorker,
    lies_on: impl Fn(u64) -> bool + Send + 'static,
) -> tokio::task::JoinHandle<Closed> {
    tokio::spawn(async move {
        loop {
            let batch = match worker.next_batch_or_close().await {
                Ok(batch) => batch,
                Err(closed) => return closed,
            };
            let mut builder = ResultsFrameBuilder::new(batch.batch);
            for task in batch.tasks.iter() {
                let output = if lies_on(batch.job) {
                    lie(&mut worker, &batch, task)
                } else {
                    worker.output(&batch, task)
                };
                builder.push(task, &output);
            }
            worker.socket.send_binary(builder.finish()).await;
        }
    })
}

/// Waits for a liar to be told it is quarantined: closed with 4008.
async fn quarantined(lying: tokio::task::JoinHandle<Closed>) {
    let closed = tokio::time::timeout(TIMEOUT, lying)
        .await
        .expect("the liar is closed in time")
        .expect("the liar's task");
    assert_eq!(closed.code, 4008, "{closed:?}");
    assert!(closed.reason.contains("failed validation"), "{closed:?}");
}

async fn metric(url: &str, name: &str) -> f64 {
    let text = grid_tests::metrics(url).await;
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {name} in the metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_liar_among_honest_workers_is_outvoted_and_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start_with(dir.path(), |c| c.scheduler.trust_after = None).await;
    let client = grid.client();
    let honest = [grid.worker(1, "honest-1"), grid.worker(1, "honest-2")];
    let liar_worker = HandWorker::join(&grid.url, 1).await;
    let liar_id = liar_worker.id;
    let lying = liar(liar_worker, |_| true);

    let id = submit(&client, &primes_job(2, 200)).await;
    let status = wait_for_job(&client, id, TIMEOUT).await;
    assert_eq!(status.state, JobState::Done, "{status:?}");
    assert_primes(&status, PRIMES_BELOW_2M);

    quarantined(lying).await;
    assert!(metric(&grid.url, "grid_donors_quarantined_total").await >= 1.0);
    for entry in client
        .workers()
        .await
        .unwrap()
        .iter()
        .filter(|w| w.id != liar_id)
    {
        assert!(
            !entry.quarantined,
            "an honest worker was quarantined: {entry:?}"
        );
    }
    // A quarantined worker is gone: it gets no more work.
    wait_for_workers(&client, "the liar gone", |list| {
        list.iter().all(|w| w.id != liar_id)
    })
    .await;
    let next = submit(&client, &primes_job(1, 50)).await;
    assert_primes(&wait_for_job(&client, next, TIMEOUT).await, PRIMES_BELOW_2M);

    for worker in honest {
        worker.stop().await;
    }
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_liar_that_earned_trust_is_caught_by_a_spot_check_and_its_work_redone() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start_with(dir.path(), |c| {
        c.scheduler.trust_after = Some(5);
        c.scheduler.spot_check_rate = 0.5;
    })
    .await;
    let client = grid.client();
    // First the sneaky worker and one honest worker earn trust on job 1,
    // where the sneaky one tells the truth.
    let honest = grid.worker(1, "honest-1");
    let sneaky = HandWorker::join(&grid.url, 1).await;
    let sneaky_id = sneaky.id;
    let lying = liar(sneaky, |job| job != 1);
    let warmup = submit(&client, &primes_job(2, 20)).await;
    assert_primes(
        &wait_for_job(&client, warmup, TIMEOUT).await,
        PRIMES_BELOW_2M,
    );
    assert!(worker_info(&client, sneaky_id).await.trusted);
    honest.stop().await;

    // On job 2, alone, it lies on everything. Its solo tasks are decided by
    // its word; the spot-checked half waits for a second donor, so the job
    // cannot finish on lies alone.
    let id = submit(&client, &primes_job(2, 200)).await;
    let partway = grid_tests::wait_until(&client, id, TIMEOUT, "the liar's solo answers", |s| {
        s.tasks.done >= 50
    })
    .await;
    assert_ne!(partway.state, JobState::Done, "{partway:?}");

    // Honest donors arrive, settle a spot-checked task against the liar, and
    // everything it decided alone is computed again.
    let honest = [grid.worker(1, "honest-2"), grid.worker(1, "honest-3")];
    let status = wait_for_job(&client, id, TIMEOUT).await;
    assert_eq!(status.state, JobState::Done, "{status:?}");
    // A lie that survived would show in the count.
    assert_primes(&status, PRIMES_BELOW_2M);
    quarantined(lying).await;
    // At least the 50 tasks it was seen deciding alone were checked again
    // (job 1's solo tasks, decided honestly, are not: that job had ended).
    let rechecked = metric(&grid.url, "grid_tasks_rechecked_total").await;
    assert!(
        rechecked >= 50.0,
        "only {rechecked} of the liar's tasks were checked again"
    );
    // The stored results agree with the result: the lies were replaced.
    assert_eq!(
        client.result(id).await.unwrap(),
        JobResult::Primes {
            count: PRIMES_BELOW_2M
        }
    );
    // The audit trail has the quarantine, with the task and job that caught
    // it, and the answers it revised in job 2.
    let trail = client.audit(0).await.unwrap();
    use grid_protocol::api::AuditAction;
    let caught = trail
        .iter()
        .find(|e| e.action == AuditAction::DonorQuarantined)
        .expect("the quarantine is in the trail");
    assert!(
        caught.detail.contains(&format!("of job {id}")) && caught.actor == "coordinator",
        "{caught:?}"
    );
    let revised = trail
        .iter()
        .filter(|e| e.action == AuditAction::AnswersRevised && e.subject == format!("job {id}"))
        .count();
    assert!(revised >= 1, "no revision in {trail:?}");

    for worker in honest {
        worker.stop().await;
    }
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_and_claims_of_unleased_tasks_never_count() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start_with(dir.path(), |c| c.max_rejected_results = 10).await;
    let client = grid.client();
    let tasks = 20;
    let id = submit(&client, &job(primes(0, 2_000_000), tasks)).await;

    // The replayer answers a batch honestly, then sends the same frame again.
    let mut replayer = HandWorker::join(&grid.url, 1).await;
    let batch = replayer.next_batch().await;
    let indices: Vec<u32> = batch.tasks.iter().collect();
    let frame = replayer.frame(&batch, &indices);
    let first = replayer.send(batch.batch, frame.clone()).await;
    assert_eq!(first.accepted, indices.len() as u32);
    let again = replayer.send(batch.batch, frame).await;
    assert_eq!(again.accepted, 0, "a replay counted: {again:?}");

    // The claimer sends results for batches and tasks it was never given.
    let mut claimer = HandWorker::join(&grid.url, 1).await;
    let claimer_id = claimer.id;
    let mut rejected = 0;
    for fake_batch in [1u64, 999, batch.batch] {
        let mut builder = ResultsFrameBuilder::new(fake_batch);
        for task in 0..4 {
            builder.push(task, &TaskOutput::Count(1));
        }
        let ack = claimer.send(fake_batch, builder.finish()).await;
        assert_eq!(ack.accepted, 0, "a claim counted: {ack:?}");
        rejected += ack.rejected;
    }
    assert_eq!(rejected, 12);
    // Past ten rejected results the claimer is quarantined, and told so.
    assert_eq!(claimer.socket.expect_close().await.code, 4008);
    wait_for_workers(&client, "the claimer gone", |list| {
        list.iter().all(|w| w.id != claimer_id)
    })
    .await;

    // An honest worker finishes; nothing was counted twice.
    let honest = grid.worker(1, "honest");
    let status = wait_for_job(&client, id, TIMEOUT).await;
    assert_primes(&status, PRIMES_BELOW_2M);
    assert_eq!(status.tasks.done, tasks);
    honest.stop().await;
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooder_and_a_giant_frame_are_closed_and_the_grid_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start_with(dir.path(), |c| {
        c.max_messages_per_second = 50.0;
        c.message_burst = 100.0;
    })
    .await;
    let client = grid.client();
    let honest = grid.worker(1, "honest");
    let id = submit(&client, &primes_job(1, 100)).await;

    // The flooder sends heartbeats as fast as it can.
    let (mut flooder, _) = RawSocket::join(&grid.url, 1, "flooder").await;
    for _ in 0..1_000 {
        flooder.send_message(&WorkerMessage::Heartbeat {}).await;
    }
    let closed = flooder.expect_close().await;
    assert_eq!(closed.code, 4006, "{closed:?}");

    // One binary frame over 16 MiB, one text frame over 64 KiB.
    let (mut giant, _) = RawSocket::join_with(&grid.url, hello(1, "giant")).await;
    giant.send_binary(vec![1u8; 17 * 1024 * 1024]).await;
    assert_eq!(giant.expect_close().await.code, 4003);
    let (mut chatty, _) = RawSocket::join(&grid.url, 1, "chatty").await;
    chatty
        .send_text(&format!(
            r#"{{"type":"failed","batch":1,"task":1,"error":"{}"}}"#,
            "x".repeat(100_000)
        ))
        .await;
    assert_eq!(chatty.expect_close().await.code, 4003);

    let status = wait_for_job(&client, id, TIMEOUT).await;
    assert_primes(&status, PRIMES_BELOW_2M);
    assert!(
        metric(
            &grid.url,
            "grid_connections_closed_total{reason=\"rate_limited\"}"
        )
        .await
            >= 1.0
    );
    assert!(
        metric(
            &grid.url,
            "grid_connections_closed_total{reason=\"frame_too_large\"}"
        )
        .await
            >= 2.0
    );
    honest.stop().await;
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantined_donor_cannot_come_back_under_a_new_connection_nor_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start_with(dir.path(), |c| c.scheduler.trust_after = None).await;
    let client = grid.client();
    let honest = [grid.worker(1, "honest-1"), grid.worker(1, "honest-2")];
    // One browser tab (a session) that lies.
    let mut tab_hello = hello(1, "tab");
    tab_hello.kind = grid_protocol::WorkerKind::Browser;
    tab_hello.session = Some("lying-tab".into());
    let liar_worker = HandWorker::join_with(&grid.url, tab_hello.clone()).await;
    let liar_id = liar_worker.id;
    let lying = liar(liar_worker, |_| true);
    let id = submit(&client, &primes_job(2, 100)).await;
    quarantined(lying).await;
    wait_for_workers(&client, "the liar gone", |list| {
        list.iter().all(|w| w.id != liar_id)
    })
    .await;
    assert_primes(&wait_for_job(&client, id, TIMEOUT).await, PRIMES_BELOW_2M);
    // The same tab reconnecting is refused with 4008.
    let mut again = RawSocket::connect(&grid.url).await;
    again
        .send_message(&WorkerMessage::Hello(tab_hello.clone()))
        .await;
    assert_eq!(again.expect_close().await.code, 4008);
    for worker in honest {
        worker.stop().await;
    }
    grid.stop().await;

    // A restart on the same data directory does not forgive it; another tab
    // is still welcome.
    let grid = TestGrid::start_with(dir.path(), |c| c.scheduler.trust_after = None).await;
    let mut after_restart = RawSocket::connect(&grid.url).await;
    after_restart
        .send_message(&WorkerMessage::Hello(tab_hello.clone()))
        .await;
    let closed = after_restart.expect_close().await;
    assert_eq!(closed.code, 4008, "{}", closed.reason);
    let mut other_tab = tab_hello;
    other_tab.session = Some("honest-tab".into());
    let (_socket, other_id) = RawSocket::join_with(&grid.url, other_tab).await;
    let workers = grid.client().workers().await.unwrap();
    assert!(
        workers.iter().any(|w| w.id == other_id && !w.quarantined),
        "{workers:?}"
    );
    grid.stop().await;
}

/// Five flooders at once, each sending 1,000 heartbeats as fast as it can
/// and only then reading: every one of them reads its close code. The
/// coordinator reads what a flooder still sends after its close frame,
/// waiting for the flooder's close, instead of dropping the socket with
/// unread input (which made the kernel reset the connection and lose the
/// close frame: a Python worker saw 4006 in 0 to 4 of 5 such floods).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flooder_reads_its_close_code() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start_with(dir.path(), |c| {
        c.max_messages_per_second = 50.0;
        c.message_burst = 100.0;
    })
    .await;
    let floods: Vec<_> = (0..5)
        .map(|i| {
            let url = grid.url.clone();
            tokio::spawn(async move {
                let (mut flooder, _) = RawSocket::join(&url, 1, &format!("flooder-{i}")).await;
                for _ in 0..1_000 {
                    flooder.send_message(&WorkerMessage::Heartbeat {}).await;
                }
                // Still talking, slowly, for a while before it reads.
                for _ in 0..30 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    let _ = flooder.try_send_text(r#"{"type":"heartbeat"}"#).await;
                }
                flooder.close_frame().await
            })
        })
        .collect();
    for flood in floods {
        let closed = flood.await.unwrap().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(closed.code, 4006, "{closed:?}");
        assert_eq!(closed.reason, "more than 50 messages a second");
    }
    grid.stop().await;
}

/// A donor lies on a job that finishes on its word alone (redundancy 1, no
/// one else connected), and is caught in a later job (an impossible answer
/// there). The finished job goes back to `rechecking`, exports only with
/// `--allow-partial` meanwhile (exit 4 without), and is done again with the
/// exact answer once an honest worker recomputes what the liar answered,
/// every one of those answers counted as revised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_job_is_corrected_when_its_liar_is_caught_later() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start(dir.path()).await;
    let client = grid.client();
    let mut sneaky = HandWorker::join(&grid.url, 1).await;
    let first = submit(&client, &primes_job(1, 8)).await;
    let caught_on = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX));
    let later = caught_on.clone();
    let lying = tokio::spawn(async move {
        loop {
            let batch = match sneaky.next_batch_or_close().await {
                Ok(batch) => batch,
                Err(closed) => return closed,
            };
            let mut builder = ResultsFrameBuilder::new(batch.batch);
            for task in batch.tasks.iter() {
                let output = if batch.job == later.load(std::sync::atomic::Ordering::Relaxed) {
                    TaskOutput::Count(u64::MAX)
                } else {
                    lie(&mut sneaky, &batch, task)
                };
                builder.push(task, &output);
            }
            sneaky.socket.send_binary(builder.finish()).await;
        }
    });
    let done = wait_for_job(&client, first, TIMEOUT).await;
    assert_eq!(done.state, JobState::Done);
    let JobResult::Primes { count } = client.result(first).await.unwrap() else {
        panic!("not a primes result")
    };
    assert_eq!(
        count,
        PRIMES_BELOW_2M + 8,
        "eight plausible lies, unchecked"
    );

    // A later job catches it.
    let second_request = primes_job(1, 4);
    caught_on.store(
        // The next job's id: the ids count up.
        first + 1,
        std::sync::atomic::Ordering::Relaxed,
    );
    let second = submit(&client, &second_request).await;
    assert_eq!(second, first + 1);
    quarantined(lying).await;
    let rechecking = grid_tests::wait_until(&client, first, TIMEOUT, "job 1 rechecking", |s| {
        s.state == JobState::Rechecking
    })
    .await;
    assert_eq!(rechecking.revised, 0);
    let url = grid.url.clone();
    let id = first.to_string();
    let (code, out, err) =
        tokio::task::spawn_blocking(move || grid_tests::grid_cli(&url, &["results", &id]))
            .await
            .unwrap();
    assert_eq!(code, 4, "{out} {err}");
    assert!(
        out.is_empty() && err.contains("being rechecked"),
        "{out} {err}"
    );
    let (url, id) = (grid.url.clone(), first.to_string());
    let (code, out, _) = tokio::task::spawn_blocking(move || {
        grid_tests::grid_cli(&url, &["results", &id, "--allow-partial"])
    })
    .await
    .unwrap();
    assert_eq!(code, 0);
    assert!(out.contains(&(PRIMES_BELOW_2M + 8).to_string()), "{out}");

    // An honest worker recomputes the liar's answers: exact again.
    let honest = grid.worker(1, "honest");
    let corrected = wait_for_job(&client, first, TIMEOUT).await;
    assert_eq!(corrected.state, JobState::Done, "{corrected:?}");
    assert_primes(&corrected, PRIMES_BELOW_2M);
    assert_eq!(corrected.revised, 8, "every lie replaced and counted");
    assert_eq!(
        client.result(first).await.unwrap(),
        JobResult::Primes {
            count: PRIMES_BELOW_2M
        }
    );
    let trail = client.audit(0).await.unwrap();
    use grid_protocol::api::AuditAction;
    assert!(
        trail
            .iter()
            .any(|e| e.action == AuditAction::JobRechecking && e.subject == format!("job {first}")),
        "{trail:?}"
    );
    honest.stop().await;
    grid.stop().await;
}
