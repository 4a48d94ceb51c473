//! A worker connection driven through channels in place of a socket, on
//! tokio's paused clock: what it sends back for each thing a worker does,
//! frame by frame, with no network and no waiting for real timeouts.

use std::time::Duration;

use futures_channel::mpsc as fmpsc;
use futures_util::{SinkExt, StreamExt};
use grid_kernels::spec::PrimesParams;
use grid_kernels::{KernelSpec, TaskRunner};
use grid_protocol::Batch;
use grid_protocol::api::JobRequest;
use grid_protocol::frame::ResultsFrameBuilder;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::error::CapacityError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;

use super::*;
use crate::grid::testing::{native_hello, open_grid, open_grid_with};

/// The worker's end of a connection under test.
struct Peer {
    to_server: fmpsc::Sender<Result<Message, WsError>>,
    from_server: fmpsc::Receiver<Message>,
    served: tokio::task::JoinHandle<()>,
    /// Kept so the connection does not see a shutdown.
    _shutdown: watch::Sender<bool>,
}

impl Peer {
    fn connect(grid: &Arc<Grid>) -> Peer {
        Peer::connect_reading(grid, 4096)
    }

    /// A peer whose end holds at most about `buffer` unread messages.
    fn connect_reading(grid: &Arc<Grid>, buffer: usize) -> Peer {
        let (to_server, stream) = fmpsc::channel(4096);
        let (sink, from_server) = fmpsc::channel(buffer);
        let sink = sink.sink_map_err(|_| WsError::ConnectionClosed);
        let (shutdown_tx, shutdown) = watch::channel(false);
        let guard = ConnectionGuard {
            permit: Arc::new(Semaphore::new(1)).try_acquire_owned().ok(),
            address: grid.open_address_slot(None),
            _done: mpsc::channel(1).0,
        };
        let served = tokio::spawn(serve_worker(
            grid.clone(),
            sink,
            stream,
            None,
            shutdown,
            guard,
        ));
        Peer {
            to_server,
            from_server,
            served,
            _shutdown: shutdown_tx,
        }
    }

    async fn send(&mut self, message: Message) {
        self.to_server
            .send(Ok(message))
            .await
            .expect("the server reads");
    }

    async fn send_text(&mut self, message: &WorkerMessage) {
        self.send(Message::text(message.encode())).await;
    }

    /// Says hello and reads the welcome.
    async fn join(grid: &Arc<Grid>, threads: u32) -> Peer {
        Peer::join_as(grid, threads, None).await
    }

    /// Says hello as part of donor session `session`, and reads the welcome.
    async fn join_as(grid: &Arc<Grid>, threads: u32, session: Option<&str>) -> Peer {
        let mut peer = Peer::connect(grid);
        peer.hello(threads, session).await;
        peer
    }

    async fn hello(&mut self, threads: u32, session: Option<&str>) {
        self.send_text(&WorkerMessage::Hello(native_hello(threads, session)))
            .await;
        match self.next_message().await {
            CoordinatorMessage::Welcome {
                max_frame_bytes, ..
            } => {
                assert_eq!(max_frame_bytes, MAX_RESULTS_FRAME_BYTES as u64)
            }
            other => panic!("expected a welcome, got {other:?}"),
        }
    }

    async fn next(&mut self) -> Message {
        tokio::time::timeout(Duration::from_secs(120), self.from_server.next())
            .await
            .expect("the server answers")
            .expect("the connection is open")
    }

    /// The next control message, skipping heartbeats.
    async fn next_message(&mut self) -> CoordinatorMessage {
        loop {
            match self.next().await {
                Message::Text(text) => match CoordinatorMessage::decode(&text).unwrap() {
                    CoordinatorMessage::Heartbeat {} => continue,
                    message => return message,
                },
                other => panic!("expected a text message, got {other:?}"),
            }
        }
    }

    /// Reads until the close frame; its code and reason.
    async fn expect_close(&mut self) -> (u16, String) {
        loop {
            if let Message::Close(frame) = self.next().await {
                let frame = frame.expect("a close code");
                return (u16::from(frame.code), frame.reason.to_string());
            }
        }
    }

    /// Answers the server's close frame and waits for the connection to end.
    async fn close_and_wait(mut self) {
        self.send(Message::Close(Some(CloseFrame {
            code: WsCloseCode::Normal,
            reason: "bye".into(),
        })))
        .await;
        tokio::time::timeout(Duration::from_millis(500), self.served)
            .await
            .expect("the connection ends as soon as the worker's close arrives")
            .expect("the connection task");
    }
}

use tokio_tungstenite::tungstenite::protocol::CloseFrame;

#[tokio::test(start_paused = true)]
async fn no_hello_in_time_is_closed_with_4004() {
    let dir = tempfile::tempdir().unwrap();
    let grid = open_grid(dir.path()).await;
    let mut peer = Peer::connect(&grid);
    let (code, reason) = peer.expect_close().await;
    assert_eq!(code, CloseCode::HelloTimeout.code());
    assert_eq!(reason, "no hello within 10000 ms");
    peer.close_and_wait().await;
    assert_eq!(grid.worker_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_first_message_that_is_not_a_hello_is_a_protocol_violation() {
    let dir = tempfile::tempdir().unwrap();
    let grid = open_grid(dir.path()).await;
    let mut peer = Peer::connect(&grid);
    peer.send_text(&WorkerMessage::Heartbeat {}).await;
    assert_eq!(
        peer.expect_close().await,
        (
            CloseCode::ProtocolViolation.code(),
            "the first message must be a hello".into()
        )
    );
    let mut peer = Peer::connect(&grid);
    peer.send(Message::text("{not json")).await;
    assert_eq!(
        peer.expect_close().await.0,
        CloseCode::MalformedFrame.code()
    );
}

#[tokio::test(start_paused = true)]
async fn a_worker_over_its_message_rate_is_closed_with_4006_and_heard_out() {
    let dir = tempfile::tempdir().unwrap();
    let grid = open_grid(dir.path()).await;
    let mut peer = Peer::join(&grid, 1).await;
    assert_eq!(grid.worker_count(), 1);
    // No time passes: the burst of 400 is all there is.
    for _ in 0..1000 {
        peer.send_text(&WorkerMessage::Heartbeat {}).await;
    }
    let (code, reason) = peer.expect_close().await;
    assert_eq!(code, CloseCode::RateLimited.code());
    assert_eq!(reason, "more than 100 messages a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !peer.served.is_finished(),
        "the connection waits for the worker's close frame"
    );
    peer.close_and_wait().await;
    assert_eq!(grid.worker_count(), 0, "the worker left the grid");
}

#[tokio::test(start_paused = true)]
async fn an_oversized_frame_is_closed_with_4003_and_a_second_hello_with_4002() {
    let dir = tempfile::tempdir().unwrap();
    let grid = open_grid(dir.path()).await;
    let mut peer = Peer::join(&grid, 1).await;
    let too_long = CapacityError::MessageTooLong {
        size: 20 << 20,
        max_size: 17 << 20,
    };
    peer.to_server
        .send(Err(WsError::Capacity(too_long)))
        .await
        .unwrap();
    let (code, reason) = peer.expect_close().await;
    assert_eq!(code, CloseCode::FrameTooLarge.code());
    assert!(reason.starts_with("frame too large"), "{reason}");

    let mut peer = Peer::join(&grid, 1).await;
    peer.send_text(&WorkerMessage::Hello(native_hello(1, None)))
        .await;
    assert_eq!(
        peer.expect_close().await,
        (
            CloseCode::ProtocolViolation.code(),
            "hello was already received".into()
        )
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_worker_is_closed_with_4005_after_heartbeats() {
    let dir = tempfile::tempdir().unwrap();
    let grid = open_grid(dir.path()).await;
    let mut peer = Peer::join(&grid, 1).await;
    let mut heartbeats = 0;
    let code = loop {
        match peer.next().await {
            Message::Text(text) => {
                assert_eq!(
                    CoordinatorMessage::decode(&text).unwrap(),
                    CoordinatorMessage::Heartbeat {}
                );
                heartbeats += 1;
            }
            Message::Close(frame) => break u16::from(frame.unwrap().code),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(code, CloseCode::IdleTimeout.code());
    // A 10 s heartbeat with a random phase of 5 to 15 s, over 60 s of silence.
    assert!((4..=6).contains(&heartbeats), "{heartbeats} heartbeats");
}

/// One ack per results frame, in the order the frames came, whatever each
/// frame holds. (On the real clock: acks wait for the store's commits, which
/// run on a thread of their own, and a paused clock would jump meanwhile.)
#[tokio::test]
async fn acks_follow_the_order_of_the_frames() {
    let dir = tempfile::tempdir().unwrap();
    let grid = open_grid(dir.path()).await;
    let mut peer = Peer::join(&grid, 2).await;
    let spec = KernelSpec::Primes(PrimesParams {
        start: 0,
        end: 1000,
    });
    grid.submit(
        &grid.first_admin(),
        JobRequest {
            tasks: Some(10),
            ..JobRequest::new(spec.clone())
        },
    )
    .await
    .unwrap();
    let batch: Batch = match peer.next_message().await {
        CoordinatorMessage::Batch(batch) => batch,
        other => panic!("expected a batch, got {other:?}"),
    };
    let mut runner = TaskRunner::new();
    let mut frame = ResultsFrameBuilder::new(batch.batch);
    for task in batch.tasks.iter() {
        frame.push(task, &runner.run(&spec, 10, task).unwrap());
    }
    let unknown = {
        let mut frame = ResultsFrameBuilder::new(7);
        frame.push(0, &runner.run(&spec, 10, 0).unwrap());
        frame.finish()
    };
    peer.send(Message::binary(unknown.clone())).await;
    peer.send(Message::binary(frame.finish())).await;
    peer.send(Message::binary(unknown)).await;
    let mut acks = Vec::new();
    while acks.len() < 3 {
        if let CoordinatorMessage::Ack {
            batch,
            accepted,
            duplicate,
            rejected,
        } = peer.next_message().await
        {
            acks.push((batch, accepted, duplicate, rejected));
        }
    }
    assert_eq!(
        acks,
        vec![
            (7, 0, 0, 1),
            (batch.batch, batch.tasks.len() as u32, 0, 0),
            (7, 0, 0, 1)
        ]
    );
}

/// A grid whose worker outbox holds two messages, and that never
/// quarantines for unleased results.
async fn small_outbox_grid(dir: &std::path::Path) -> Arc<Grid> {
    open_grid_with(dir, |c| {
        c.worker_outbox = 2;
        c.max_rejected_results = u64::MAX;
    })
    .await
}

/// Sends one results frame for each of `batches` (none exists: each is
/// acked as rejected).
async fn send_frames(peer: &mut Peer, batches: &[u64]) {
    for &batch in batches {
        let mut frame = ResultsFrameBuilder::new(batch);
        frame.push_bytes(0, &0u64.to_le_bytes());
        peer.send(Message::binary(frame.finish())).await;
    }
}

/// A slow reader still gets one ack per frame, in order: acks wait for room
/// in the connection's outbox instead of being dropped when it is full.
#[tokio::test(start_paused = true)]
async fn acks_wait_for_a_slow_reader_and_none_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let grid = small_outbox_grid(dir.path()).await;
    let mut peer = Peer::connect_reading(&grid, 0);
    peer.hello(1, None).await;
    let frames: Vec<u64> = (100..140).collect();
    send_frames(&mut peer, &frames).await;
    // The worker reads nothing for a while, then everything.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut acked = Vec::new();
    while acked.len() < frames.len() {
        if let CoordinatorMessage::Ack { batch, .. } = peer.next_message().await {
            acked.push(batch);
        }
    }
    assert_eq!(acked, frames);
}

/// A worker that never reads again is closed (4005) after the idle
/// timeout; the acks it was sent before are an unbroken prefix.
#[tokio::test(start_paused = true)]
async fn a_worker_that_stops_reading_is_closed_after_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let grid = small_outbox_grid(dir.path()).await;
    let mut peer = Peer::connect_reading(&grid, 0);
    peer.hello(1, None).await;
    let frames: Vec<u64> = (100..140).collect();
    send_frames(&mut peer, &frames).await;
    tokio::time::timeout(Duration::from_secs(300), &mut peer.served)
        .await
        .expect("the connection ends")
        .unwrap();
    assert_eq!(grid.worker_count(), 0);
    assert!(
        grid.metrics()
            .contains("grid_connections_closed_total{reason=\"idle_timeout\"} 1")
    );
    let mut acked = Vec::new();
    while let Ok(message) = peer.from_server.try_recv() {
        if let Message::Text(text) = message
            && let Ok(CoordinatorMessage::Ack { batch, .. }) = CoordinatorMessage::decode(&text)
        {
            acked.push(batch);
        }
    }
    assert!(acked.len() < frames.len(), "the coordinator had to wait");
    assert_eq!(acked, frames[..acked.len()], "no ack skipped");
}

/// A worker caught with an impossible output hears it: the ack that rejects
/// the frame, then a close with 4008. Another connection of the same donor is
/// closed too.
#[tokio::test]
async fn a_worker_whose_donor_is_quarantined_is_told_with_4008() {
    let dir = tempfile::tempdir().unwrap();
    let grid = open_grid(dir.path()).await;
    let mut liar = Peer::join_as(&grid, 1, Some("tab")).await;
    let mut same_tab = Peer::join_as(&grid, 1, Some("tab")).await;
    let spec = KernelSpec::Primes(PrimesParams {
        start: 0,
        end: 1000,
    });
    grid.submit(
        &grid.first_admin(),
        JobRequest {
            tasks: Some(10),
            ..JobRequest::new(spec)
        },
    )
    .await
    .unwrap();
    let batch: Batch = match liar.next_message().await {
        CoordinatorMessage::Batch(batch) => batch,
        other => panic!("expected a batch, got {other:?}"),
    };
    let task = batch.tasks.iter().next().unwrap();
    let mut frame = ResultsFrameBuilder::new(batch.batch);
    frame.push_bytes(task, &u64::MAX.to_le_bytes());
    liar.send(Message::binary(frame.finish())).await;
    // Its batches are revoked, then the frame is acked, then it is closed.
    let ack = loop {
        match liar.next_message().await {
            CoordinatorMessage::Batch(_) | CoordinatorMessage::Revoke { .. } => continue,
            message => break message,
        }
    };
    assert_eq!(
        ack,
        CoordinatorMessage::Ack {
            batch: batch.batch,
            accepted: 0,
            duplicate: 0,
            rejected: 1
        }
    );
    let (code, reason) = liar.expect_close().await;
    assert_eq!(code, CloseCode::Quarantined.code());
    assert!(reason.contains("failed validation"), "{reason}");
    assert_eq!(
        same_tab.expect_close().await.0,
        CloseCode::Quarantined.code()
    );
    liar.close_and_wait().await;
    same_tab.close_and_wait().await;
    assert_eq!(grid.worker_count(), 0);
}

/// The heartbeat tick asks for a heartbeat only when nothing but
/// heartbeats went out since it last asked.
#[test]
fn a_heartbeat_is_due_only_after_a_quiet_period() {
    let quiet = Quiet::default();
    assert!(quiet.heartbeat_due(), "nothing sent yet");
    quiet.note(heartbeat_text());
    assert!(quiet.heartbeat_due(), "a heartbeat is not something else");
    let ack = CoordinatorMessage::Ack {
        batch: 1,
        accepted: 2,
        duplicate: 0,
        rejected: 0,
    };
    quiet.note(&ack.encode());
    assert!(
        !quiet.heartbeat_due(),
        "an ack went out since the last tick"
    );
    assert!(quiet.heartbeat_due(), "and nothing since");
}

/// The welcome is the first frame even when something (a batch from
/// another connection's dispatch) was queued before it.
#[tokio::test]
async fn the_writer_sends_the_welcome_before_anything_queued() {
    let (sink, mut sent) = fmpsc::channel(16);
    let sink = sink.sink_map_err(|_| WsError::ConnectionClosed);
    let (outbox, queue) = mpsc::channel(16);
    let (welcome, first) = oneshot::channel();
    let quiet = Arc::new(Quiet::default());
    let writer = tokio::spawn(write_loop(sink, first, queue, quiet.clone()));
    outbox.send(Outbound::Text("a batch".into())).await.unwrap();
    tokio::task::yield_now().await;
    welcome.send(Outbound::Text("the welcome".into())).unwrap();
    drop(outbox);
    writer.await.unwrap();
    let mut frames = Vec::new();
    while let Some(message) = sent.next().await {
        frames.push(message);
    }
    assert_eq!(
        frames,
        [Message::text("the welcome"), Message::text("a batch")]
    );
    assert!(!quiet.heartbeat_due(), "the writer noted what it sent");

    // A connection that ends before its welcome still sends what it queued
    // (its close frame).
    let (sink, mut sent) = fmpsc::channel(16);
    let sink = sink.sink_map_err(|_| WsError::ConnectionClosed);
    let (outbox, queue) = mpsc::channel(16);
    let (welcome, first) = oneshot::channel::<Outbound>();
    drop(welcome);
    outbox
        .send(Outbound::Close(CloseCode::HelloTimeout, "late".into()))
        .await
        .unwrap();
    write_loop(sink, first, queue, Arc::new(Quiet::default())).await;
    assert!(matches!(sent.next().await, Some(Message::Close(Some(_)))));
}
