//! Limits an operator sets on untrusted connections, and the coordinator's own
//! re-computation: connections per address (through a trusted proxy header),
//! connections in all, and sampled verification catching a liar that no
//! replica would have caught.

use std::time::Duration;

use grid_kernels::TaskOutput;
use grid_protocol::WorkerMessage;
use grid_protocol::api::WorkerInfo;
use grid_protocol::frame::ResultsFrameBuilder;
use grid_tests::raw::{HandWorker, RawSocket, hello};
use grid_tests::{TestGrid, assert_primes, job, primes, submit, wait_for_job, wait_for_workers};

const TIMEOUT: Duration = Duration::from_secs(60);

async fn join(socket: &mut RawSocket, name: &str) {
    socket
        .send_message(&WorkerMessage::Hello(hello(1, name)))
        .await;
    match socket.receive().await {
        grid_protocol::CoordinatorMessage::Welcome { .. } => {}
        other => panic!("expected a welcome, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_address_is_one_donor_with_a_capped_number_of_connections() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start_with(dir.path(), |c| {
        c.client_address_header = Some("X-Forwarded-For".into());
        c.max_connections_per_address = 2;
    })
    .await;
    let client = grid.client();
    let mut first = RawSocket::connect_from(&grid.url, "203.0.113.7, 10.0.0.1").await;
    join(&mut first, "lab-a").await;
    let mut second = RawSocket::connect_from(&grid.url, "203.0.113.7").await;
    join(&mut second, "lab-b").await;
    // A third connection from the same address is one too many.
    let mut third = RawSocket::connect_from(&grid.url, "203.0.113.7").await;
    third
        .send_message(&WorkerMessage::Hello(hello(1, "lab-c")))
        .await;
    let closed = third.expect_close().await;
    assert_eq!(closed.code, 4007, "{closed:?}");
    // Another address is welcome.
    let mut elsewhere = RawSocket::connect_from(&grid.url, "198.51.100.9").await;
    join(&mut elsewhere, "home").await;

    let workers = client.workers().await.unwrap();
    assert_eq!(workers.len(), 3, "{workers:?}");
    let named = |name: &str| -> &WorkerInfo {
        workers
            .iter()
            .find(|w| w.name.as_deref() == Some(name))
            .unwrap()
    };
    assert_eq!(
        named("lab-a").donor,
        named("lab-b").donor,
        "one address, one donor"
    );
    assert_ne!(named("lab-a").donor, named("home").donor);
    assert!(
        named("lab-a")
            .addr
            .as_deref()
            .is_some_and(|addr| addr.starts_with("203.0.113.7")),
        "{workers:?}"
    );
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_cap_new_workers_are_told_to_come_back_later() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start_with(dir.path(), |c| c.max_connections = 2).await;
    let (_a, _) = RawSocket::join(&grid.url, 1, "a").await;
    let (_b, _) = RawSocket::join(&grid.url, 1, "b").await;
    let mut c = RawSocket::connect(&grid.url).await;
    c.send_message(&WorkerMessage::Hello(hello(1, "c"))).await;
    let closed = c.expect_close().await;
    assert_eq!(closed.code, 4007, "{closed:?}");
    assert!(closed.reason.contains("too many connections"), "{closed:?}");
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampled_verification_catches_a_liar_that_has_no_replicas() {
    let dir = tempfile::tempdir().unwrap();
    // Every result is re-computed by the coordinator; no replicas at all.
    let grid = TestGrid::start_with(dir.path(), |c| c.verify_rate = 1.0).await;
    let client = grid.client();
    let mut liar = HandWorker::join(&grid.url, 1).await;
    let liar_id = liar.id;
    let id = submit(&client, &job(primes(0, 1_000_000), 10)).await;
    let batch = liar.next_batch().await;
    let mut builder = ResultsFrameBuilder::new(batch.batch);
    for task in batch.tasks.iter() {
        let TaskOutput::Count(n) = liar.output(&batch, task) else {
            unreachable!()
        };
        // Plausible: within the range, off by one.
        builder.push(task, &TaskOutput::Count(n.saturating_sub(1)));
    }
    let ack = liar.send(batch.batch, builder.finish()).await;
    assert_eq!(ack.accepted, 0, "{ack:?}");
    assert_eq!(ack.rejected, batch.tasks.len() as u32);
    // Quarantined, and told so after the ack.
    assert_eq!(liar.socket.expect_close().await.code, 4008);
    wait_for_workers(&client, "the liar gone", |list| {
        list.iter().all(|w| w.id != liar_id)
    })
    .await;

    let honest = grid.worker(1, "honest");
    let status = wait_for_job(&client, id, TIMEOUT).await;
    assert_primes(&status, 78_498);
    let metrics = grid_tests::metrics(&grid.url).await;
    assert!(
        metrics.contains("grid_results_verified_wrong_total 1"),
        "{metrics}"
    );
    honest.stop().await;
    grid.stop().await;
}
