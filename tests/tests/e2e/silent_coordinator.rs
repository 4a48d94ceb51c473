//! A native worker notices a coordinator that went silent: welcomed with
//! `idle_timeout_ms: 1000`, then sent nothing at all, it closes the
//! connection once a second has passed without a message and dials again,
//! as `PROTOCOL.md` says ("a connection that receives nothing for
//! idle_timeout_ms is dead"). The coordinator is fake, a loopback listener
//! that speaks the protocol by hand, so that it can fall silent while its
//! socket stays open. The browser worker's side of the same rule is the
//! session test `a_silent_coordinator_is_left_after_the_idle_timeout_and_dialled_again`
//! in `protocol/src/session.rs`; both workers drive that one session.
//!
//! The same fake coordinator also refuses a worker with close code 4009: the
//! native worker then gives up with the reason instead of dialling again.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use grid_protocol::{CloseCode, CoordinatorMessage, Hello, WorkerKind, WorkerMessage};
use grid_worker_native::{self as worker, WorkerOptions};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::timeout;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// The welcome's idle timeout, and the margin allowed on top of it: a tick
/// (200 ms) to notice, and the first reconnect delay (at most 312 ms).
const IDLE_TIMEOUT_MS: u64 = 1000;
const SECOND_CONNECTION_WITHIN: Duration = Duration::from_secs(3);
/// The session counts whole milliseconds.
const CLOCK_RESOLUTION: Duration = Duration::from_millis(1);

/// Accepts the worker's next connection and reads its hello.
async fn accept_hello(listener: &TcpListener) -> (WebSocketStream<TcpStream>, Hello) {
    let (tcp, _) = listener.accept().await.expect("a connection");
    let mut socket = tokio_tungstenite::accept_async(tcp)
        .await
        .expect("a WebSocket upgrade");
    let first = timeout(Duration::from_secs(5), socket.next())
        .await
        .expect("a hello within 5 s")
        .expect("a message")
        .expect("a readable message");
    let Message::Text(text) = first else {
        panic!("expected a hello, got {first:?}");
    };
    match WorkerMessage::decode(&text) {
        Ok(WorkerMessage::Hello(hello)) => (socket, hello),
        other => panic!("expected a hello, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_worker_leaves_a_silent_coordinator_and_dials_again() {
    grid_tests::init_logging();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let options = WorkerOptions {
        cache: Default::default(),
        for_users: Vec::new(),
        url: format!("http://{}", listener.local_addr().unwrap()),
        threads: 1,
        name: Some("patient".into()),
        ca_cert: None,
    };
    let (stop, stopping) = watch::channel(false);
    let worker = tokio::spawn(worker::run(options, stopping));

    let (mut first, hello) = accept_hello(&listener).await;
    assert_eq!(
        (hello.kind, hello.threads, hello.name.as_deref()),
        (WorkerKind::Native, 1, Some("patient"))
    );
    let welcome = CoordinatorMessage::Welcome {
        worker: 1,
        heartbeat_ms: 400,
        idle_timeout_ms: IDLE_TIMEOUT_MS,
        max_frame_bytes: 1 << 24,
    };
    // Taken before sending, so that the worker receives the welcome after it.
    let welcomed = Instant::now();
    first
        .send(Message::text(welcome.encode()))
        .await
        .expect("the welcome goes out");

    // From now on the coordinator only listens: what the worker sends on the
    // first connection is kept until the worker closes it.
    let listening = tokio::spawn(async move {
        let mut received = Vec::new();
        while let Some(Ok(message)) = first.next().await {
            let closed = message.is_close();
            received.push(message);
            if closed {
                break;
            }
        }
        (received, welcomed.elapsed())
    });

    let (mut second, hello) = timeout(SECOND_CONNECTION_WITHIN, accept_hello(&listener))
        .await
        .expect("the worker dials again within 3 s of the welcome");
    let redialled = welcomed.elapsed();
    assert_eq!(hello.name.as_deref(), Some("patient"));
    let (received, closed) = timeout(Duration::from_secs(1), listening)
        .await
        .expect("the first connection ended")
        .unwrap();

    // It waited the whole idle timeout (give or take the millisecond its
    // clock counts in), kept heartbeating meanwhile, and then said why it left.
    assert!(
        closed + CLOCK_RESOLUTION >= Duration::from_millis(IDLE_TIMEOUT_MS),
        "closed after {closed:?}, before the idle timeout"
    );
    assert!(closed <= redialled, "{closed:?} {redialled:?}");
    let heartbeat = Message::text(WorkerMessage::Heartbeat {}.encode());
    let (last, before) = received.split_last().expect("something before the close");
    assert!(
        !before.is_empty() && before.iter().all(|m| *m == heartbeat),
        "only heartbeats before the close: {received:?}"
    );
    let Message::Close(Some(frame)) = last else {
        panic!("the worker closed the first connection with a frame: {received:?}");
    };
    assert_eq!(frame.reason, "nothing from the coordinator for 1000 ms");
    tracing::info!(
        ?closed,
        ?redialled,
        "the worker left the silent coordinator"
    );

    // A worker stopped during the second greeting says goodbye and ends well.
    stop.send(true).unwrap();
    let goodbye = timeout(Duration::from_secs(5), second.next())
        .await
        .expect("a close within 5 s of the stop");
    assert!(
        matches!(&goodbye, Some(Ok(Message::Close(Some(frame)))) if frame.reason == "worker stopping"),
        "{goodbye:?}"
    );
    timeout(Duration::from_secs(5), worker)
        .await
        .expect("the worker stops")
        .unwrap()
        .expect("the worker stops without an error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_worker_refused_with_a_bad_hello_gives_up() {
    grid_tests::init_logging();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let options = WorkerOptions {
        cache: Default::default(),
        for_users: Vec::new(),
        url: format!("ws://{}", listener.local_addr().unwrap()),
        threads: 1,
        name: Some("unwelcome".into()),
        ca_cert: None,
    };
    let (_stop, stopping) = watch::channel(false);
    let worker = tokio::spawn(worker::run(options, stopping));

    let (mut socket, _) = accept_hello(&listener).await;
    let refusal = CloseFrame {
        code: CloseCode::BadHello.code().into(),
        reason: "names must be shorter".into(),
    };
    socket.send(Message::Close(Some(refusal))).await.unwrap();
    let error = timeout(Duration::from_secs(5), worker)
        .await
        .expect("the worker gives up at once")
        .unwrap()
        .expect_err("a refused worker ends with an error");
    assert_eq!(
        error.to_string(),
        "the coordinator closed the connection: names must be shorter (4009); not reconnecting"
    );
    // It does not dial again.
    assert!(
        timeout(Duration::from_secs(1), listener.accept())
            .await
            .is_err()
    );
}
