//! Bad worker frames over a raw WebSocket, as a broken or hostile third-party
//! worker would send them: each connection is closed with the documented close
//! code and a reason, and a legitimate worker's job on the same coordinator
//! meanwhile completes with the exact answer.

use std::time::Duration;

use grid_protocol::api::JobState;
use grid_protocol::frame::ResultsFrameBuilder;
use grid_protocol::{CloseCode, PROTOCOL_VERSION, WorkerMessage};
use grid_tests::raw::{RawSocket, hello};
use grid_tests::{TestGrid, assert_primes, job, primes, submit, wait_for_job, wait_for_workers};

/// What a bad connection does after it opens.
enum Opening {
    /// Sends this text frame, without a hello first.
    Text(String),
    /// Sends this binary frame, without a hello first.
    Binary(Vec<u8>),
    /// Says a valid hello, then sends this text frame.
    HelloThenText(String),
    /// Says a valid hello, then sends this binary frame.
    HelloThenBinary(Vec<u8>),
    /// Sends nothing at all.
    Silence,
}

fn hello_text(protocol: u32, threads: u32, name: &str) -> String {
    let mut hello = hello(threads, name);
    hello.protocol = protocol;
    WorkerMessage::Hello(hello).encode()
}

fn cases() -> Vec<(&'static str, Opening, CloseCode)> {
    use Opening::*;
    let results_header = |kind: u8| {
        let mut bytes = ResultsFrameBuilder::new(1).finish();
        bytes[0] = kind;
        bytes
    };
    vec![
        (
            "not JSON before hello",
            Text("hello?".into()),
            CloseCode::MalformedFrame,
        ),
        (
            "a later protocol",
            Text(hello_text(PROTOCOL_VERSION + 1, 1, "future")),
            CloseCode::UnsupportedVersion,
        ),
        (
            "protocol 1, before users' kernels",
            Text(hello_text(1, 1, "past")),
            CloseCode::UnsupportedVersion,
        ),
        (
            "threads 0",
            Text(hello_text(PROTOCOL_VERSION, 0, "idle")),
            CloseCode::BadHello,
        ),
        (
            "name too long",
            Text(hello_text(PROTOCOL_VERSION, 1, &"n".repeat(65))),
            CloseCode::BadHello,
        ),
        (
            "hello missing its kind",
            Text(format!(
                r#"{{"type": "hello", "protocol": {PROTOCOL_VERSION}, "threads": 1}}"#
            )),
            CloseCode::MalformedFrame,
        ),
        (
            "heartbeat before hello",
            Text(r#"{"type": "heartbeat"}"#.into()),
            CloseCode::ProtocolViolation,
        ),
        (
            "binary before hello",
            Binary(vec![1, 2, 3]),
            CloseCode::ProtocolViolation,
        ),
        (
            "not JSON after hello",
            HelloThenText("{oops".into()),
            CloseCode::MalformedFrame,
        ),
        (
            "second hello",
            HelloThenText(hello_text(PROTOCOL_VERSION, 1, "again")),
            CloseCode::ProtocolViolation,
        ),
        (
            "return with backwards ranges",
            HelloThenText(r#"{"type": "return", "batch": 1, "tasks": [[5, 2]]}"#.into()),
            CloseCode::MalformedFrame,
        ),
        (
            "garbage binary after hello",
            HelloThenBinary(b"\xde\xad\xbe\xef garbage".to_vec()),
            CloseCode::MalformedFrame,
        ),
        (
            "unknown binary frame type",
            HelloThenBinary(results_header(0x02)),
            CloseCode::MalformedFrame,
        ),
        (
            "empty results frame",
            HelloThenBinary(results_header(0x01)),
            CloseCode::MalformedFrame,
        ),
        (
            "results frame cut short",
            HelloThenBinary({
                let mut builder = ResultsFrameBuilder::new(1);
                builder.push_bytes(0, &[1, 2, 3, 4, 5, 6, 7, 8]);
                let bytes = builder.finish();
                bytes[..bytes.len() - 3].to_vec()
            }),
            CloseCode::MalformedFrame,
        ),
        (
            "text frame over 64 KiB",
            HelloThenText(format!(
                r#"{{"type": "failed", "batch": 1, "task": 0, "error": "{}"}}"#,
                "x".repeat(70_000)
            )),
            CloseCode::FrameTooLarge,
        ),
        (
            "results frame over 16 MiB",
            HelloThenBinary({
                let mut bytes = vec![0u8; grid_protocol::MAX_RESULTS_FRAME_BYTES + 1];
                bytes[0] = 0x01;
                bytes
            }),
            CloseCode::FrameTooLarge,
        ),
        ("no hello in time", Silence, CloseCode::HelloTimeout),
    ]
}

/// Every case whose connection did not end with the expected code and a
/// reason, described.
async fn misclosed(url: &str, cases: Vec<(&'static str, Opening, CloseCode)>) -> Vec<String> {
    let mut failures = Vec::new();
    for (name, opening, expected) in cases {
        let mut socket = RawSocket::connect(url).await;
        match opening {
            Opening::Text(text) => socket.send_text(&text).await,
            Opening::Binary(bytes) => socket.send_binary(bytes).await,
            Opening::HelloThenText(text) => {
                socket
                    .send_text(&hello_text(PROTOCOL_VERSION, 1, name))
                    .await;
                socket.send_text(&text).await;
            }
            Opening::HelloThenBinary(bytes) => {
                socket
                    .send_text(&hello_text(PROTOCOL_VERSION, 1, name))
                    .await;
                socket.send_binary(bytes).await;
            }
            Opening::Silence => {}
        }
        match socket.close_frame().await {
            Ok(closed) if closed.code == expected.code() && !closed.reason.trim().is_empty() => {}
            Ok(closed) => failures.push(format!(
                "{name}: expected close {} with a reason, got {} '{}'",
                expected.code(),
                closed.code,
                closed.reason
            )),
            Err(error) => failures.push(format!("{name}: {error}")),
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_are_closed_with_their_codes_and_others_carry_on() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start_with(dir.path(), |config| {
        config.hello_timeout = Duration::from_millis(300);
    })
    .await;
    let legit = grid.worker(1, "legit");
    let client = grid.client();
    // pi(10^9) = 50,847,534: a job that runs all through the abuse below.
    let id = submit(&client, &job(primes(0, 1_000_000_000u64), 400)).await;

    let failures = misclosed(&grid.url, cases()).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The bad connections are gone; the legitimate worker is untouched.
    let workers = wait_for_workers(&client, "only the legitimate worker", |w| w.len() == 1).await;
    assert_eq!(workers[0].name.as_deref(), Some("legit"));
    assert_eq!(workers[0].results_rejected, 0);
    let status = wait_for_job(&client, id, Duration::from_secs(60)).await;
    assert_eq!(status.state, JobState::Done, "{status:?}");
    assert_primes(&status, 50_847_534);
    assert_eq!(status.tasks.done, 400, "{status:?}");

    legit.stop().await;
    grid.stop().await;
}

/// Frames whose decode error is long: serde lists every message type when
/// one is unknown, and quotes an unknown field's name whatever its length.
/// A close frame's reason has room for 123 bytes only (RFC 6455, 5.5).
fn long_error_cases() -> Vec<(&'static str, Opening, CloseCode)> {
    let long_field = format!(r#"{{"type": "heartbeat", "{}": 1}}"#, "x".repeat(200));
    vec![
        (
            "unknown type before hello",
            Opening::Text(r#"{"type": "launch"}"#.into()),
            CloseCode::MalformedFrame,
        ),
        (
            "unknown type after hello",
            Opening::HelloThenText(r#"{"type": "launch"}"#.into()),
            CloseCode::MalformedFrame,
        ),
        (
            "unknown field with a long name",
            Opening::HelloThenText(long_field),
            CloseCode::MalformedFrame,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_decode_errors_still_make_valid_close_frames() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start(dir.path()).await;
    let failures = misclosed(&grid.url, long_error_cases()).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_worker_is_closed_when_idle() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start_with(dir.path(), |config| {
        config.heartbeat = Duration::from_millis(100);
        config.idle_timeout = Duration::from_millis(500);
    })
    .await;
    let (mut socket, _) = RawSocket::join(&grid.url, 1, "silent").await;
    let closed = socket.expect_close().await;
    assert_eq!(closed.code, CloseCode::IdleTimeout.code(), "{closed:?}");
    assert!(!closed.reason.trim().is_empty());
    wait_for_workers(&grid.client(), "the silent worker to be gone", |w| {
        w.is_empty()
    })
    .await;
    grid.stop().await;
}
