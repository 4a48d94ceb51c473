//! The coordinator's two edges spoken by hand: [`http`] sends any request,
//! with any token and any body, and returns the status and the body, which
//! the test reads as the API type it expects;
//! [`RawSocket`] is a worker connection on which the test chooses every frame,
//! built straight on tokio-tungstenite as a third-party worker would be; and
//! [`HandWorker`] is a whole worker written from the protocol's types on top
//! of it, computing real outputs with `grid_kernels::TaskRunner`.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use grid_kernels::{TaskOutput, TaskRunner};
use grid_protocol::api::ErrorBody;
use grid_protocol::frame::ResultsFrameBuilder;
use grid_protocol::{
    Batch, CoordinatorMessage, Hello, PROTOCOL_VERSION, WORKER_PATH, WorkerKind, WorkerMessage,
};
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a raw socket waits for the coordinator's next frame.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The answer to a raw HTTP request.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub text: String,
}

impl Answer {
    /// The body read as `T`, failing the test when it is not one.
    pub fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_str(&self.text).unwrap_or_else(|e| {
            panic!(
                "HTTP {}: the body is not a {} ({e}): {}",
                self.status,
                std::any::type_name::<T>(),
                self.text
            )
        })
    }

    /// The body's error sentence, if the body is an [`ErrorBody`] whose
    /// sentence is not blank.
    pub fn error_message(&self) -> Option<String> {
        serde_json::from_str::<ErrorBody>(&self.text)
            .ok()
            .map(|body| body.error)
            .filter(|error| !error.trim().is_empty())
    }

    /// The body's error sentence, asserting that there is one.
    pub fn error(&self) -> String {
        self.error_message().unwrap_or_else(|| {
            panic!(
                "HTTP {} without an error message: {}",
                self.status, self.text
            )
        })
    }
}

/// Sends `method path` to the coordinator at `base` with an optional bearer
/// token and body.
pub async fn http(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Vec<u8>>,
) -> Answer {
    // Plain HTTP only, but reqwest still wants a TLS setup: the coordinator's.
    let tls = grid_worker_native::tls::client_config(None).expect("a TLS client setup");
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured((*tls).clone())
        .build()
        .expect("an HTTP client");
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
    let mut request = client.request(method, format!("{base}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
    }
    let response = request.send().await.expect("the coordinator answers");
    let status = response.status().as_u16();
    let text = response.text().await.expect("a readable body");
    Answer { status, text }
}

/// What ended a raw connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    pub code: u16,
    pub reason: String,
}

/// A worker connection whose every frame the test writes.
#[derive(Debug)]
pub struct RawSocket {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl RawSocket {
    /// Opens a worker socket to the coordinator at `base` (`http://host:port`).
    pub async fn connect(base: &str) -> RawSocket {
        let url = format!("{}{WORKER_PATH}", base.replacen("http://", "ws://", 1));
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("the worker socket opens");
        RawSocket { socket }
    }

    /// Opens a worker socket as if through a reverse proxy that says the
    /// client is at `forwarded` (an `X-Forwarded-For` header).
    pub async fn connect_from(base: &str, forwarded: &str) -> RawSocket {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!("{}{WORKER_PATH}", base.replacen("http://", "ws://", 1));
        let mut request = url.into_client_request().expect("a valid URL");
        request.headers_mut().insert(
            "x-forwarded-for",
            forwarded.parse().expect("a valid header value"),
        );
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("the worker socket opens");
        RawSocket { socket }
    }

    /// Connects and says a valid hello; returns the socket and the worker id
    /// from the welcome.
    pub async fn join(base: &str, threads: u32, name: &str) -> (RawSocket, u64) {
        RawSocket::join_with(base, hello(threads, name)).await
    }

    /// Connects and says `hello`, which must be valid; returns the socket
    /// and the worker id from the welcome.
    pub async fn join_with(base: &str, hello: Hello) -> (RawSocket, u64) {
        let mut socket = RawSocket::connect(base).await;
        socket.send_message(&WorkerMessage::Hello(hello)).await;
        match socket.receive().await {
            CoordinatorMessage::Welcome { worker, .. } => (socket, worker),
            other => panic!("expected a welcome, got {other:?}"),
        }
    }

    pub async fn send_text(&mut self, text: &str) {
        self.socket
            .send(Message::text(text))
            .await
            .expect("send a text frame");
    }

    /// Sends a text frame, reporting rather than failing on a broken
    /// connection (for tests that go on talking after a close).
    pub async fn try_send_text(&mut self, text: &str) -> Result<(), String> {
        self.socket
            .send(Message::text(text))
            .await
            .map_err(|e| e.to_string())
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.socket
            .send(Message::binary(bytes))
            .await
            .expect("send a binary frame");
    }

    pub async fn send_message(&mut self, message: &WorkerMessage) {
        self.send_text(&message.encode()).await;
    }

    /// The coordinator's next message other than a heartbeat, or the close
    /// frame that ended the connection instead.
    pub async fn receive_or_close(&mut self) -> Result<CoordinatorMessage, Closed> {
        loop {
            let frame = tokio::time::timeout(RECEIVE_TIMEOUT, self.socket.next())
                .await
                .expect("a message from the coordinator in time");
            match frame {
                Some(Ok(Message::Text(text))) => {
                    match CoordinatorMessage::decode(&text).expect("a valid coordinator message") {
                        CoordinatorMessage::Heartbeat {} => continue,
                        message => return Ok(message),
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(Some(frame)))) => {
                    return Err(Closed {
                        code: u16::from(frame.code),
                        reason: frame.reason.to_string(),
                    });
                }
                other => panic!("expected a coordinator message or a close, got {other:?}"),
            }
        }
    }

    /// The coordinator's next message other than a heartbeat.
    pub async fn receive(&mut self) -> CoordinatorMessage {
        self.receive_or_close()
            .await
            .unwrap_or_else(|closed| panic!("expected a coordinator message, got {closed:?}"))
    }

    /// The next batch, skipping acks, revokes and heartbeats.
    pub async fn receive_batch(&mut self) -> Batch {
        loop {
            match self.receive().await {
                CoordinatorMessage::Batch(batch) => return batch,
                CoordinatorMessage::Welcome { .. } => panic!("a second welcome"),
                _ => continue,
            }
        }
    }

    /// The ack for `batch`, skipping anything else (such as further batches,
    /// which are returned so the caller can keep them).
    pub async fn receive_ack(&mut self, batch: u64) -> (Ack, Vec<Batch>) {
        let mut batches = Vec::new();
        loop {
            match self.receive().await {
                CoordinatorMessage::Ack {
                    batch: acked,
                    accepted,
                    duplicate,
                    rejected,
                } if acked == batch => {
                    let ack = Ack {
                        accepted,
                        duplicate,
                        rejected,
                    };
                    return (ack, batches);
                }
                CoordinatorMessage::Batch(b) => batches.push(b),
                _ => continue,
            }
        }
    }

    /// Reads until the coordinator closes the connection and returns the
    /// close frame's code and reason. Anything else it sends first is
    /// ignored; an end without a readable close frame is an error.
    pub async fn close_frame(&mut self) -> Result<Closed, String> {
        loop {
            let frame = tokio::time::timeout(RECEIVE_TIMEOUT, self.socket.next())
                .await
                .map_err(|_| "the coordinator did not close the connection in time")?;
            match frame {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return Ok(Closed {
                        code: u16::from(frame.code),
                        reason: frame.reason.to_string(),
                    });
                }
                Some(Ok(Message::Close(None))) => return Err("a close frame without a code".into()),
                Some(Ok(_)) => continue,
                Some(Err(error)) => {
                    return Err(format!(
                        "the connection broke without a close frame: {error}"
                    ));
                }
                None => return Err("the connection ended without a close frame".into()),
            }
        }
    }

    /// [`RawSocket::close_frame`], failing the test on an error.
    pub async fn expect_close(&mut self) -> Closed {
        self.close_frame().await.unwrap_or_else(|e| panic!("{e}"))
    }
}

/// What an ack said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub accepted: u32,
    pub duplicate: u32,
    pub rejected: u32,
}

/// A valid native hello.
pub fn hello(threads: u32, name: &str) -> Hello {
    Hello {
        holds: Vec::new(),
        for_users: Vec::new(),
        protocol: PROTOCOL_VERSION,
        kind: WorkerKind::Native,
        threads,
        name: Some(name.to_string()),
        session: None,
        kernels: None,
    }
}

/// An ack that accepted all `n` results.
pub fn accepted(n: u32) -> Ack {
    Ack {
        accepted: n,
        duplicate: 0,
        rejected: 0,
    }
}

#[derive(Debug)]
/// A hand-written worker: a raw socket, a task runner, and the batches
/// received but not yet worked on.
pub struct HandWorker {
    pub socket: RawSocket,
    /// The worker id from the welcome.
    pub id: u64,
    pub runner: TaskRunner,
    /// Batches received and not yet taken by [`HandWorker::next_batch`].
    pub queue: VecDeque<Batch>,
}

impl HandWorker {
    /// Joins with a valid hello named "by-hand".
    pub async fn join(url: &str, threads: u32) -> HandWorker {
        HandWorker::join_with(url, hello(threads, "by-hand")).await
    }

    /// Joins with `hello`, which must be valid.
    pub async fn join_with(url: &str, hello: Hello) -> HandWorker {
        let (socket, id) = RawSocket::join_with(url, hello).await;
        HandWorker {
            socket,
            id,
            runner: TaskRunner::new(),
            queue: VecDeque::new(),
        }
    }

    pub async fn next_batch(&mut self) -> Batch {
        match self.queue.pop_front() {
            Some(batch) => batch,
            None => self.socket.receive_batch().await,
        }
    }

    /// The next batch, or the close frame if the coordinator closes the
    /// connection first (as it does once the worker's donor is quarantined).
    pub async fn next_batch_or_close(&mut self) -> Result<Batch, Closed> {
        if let Some(batch) = self.queue.pop_front() {
            return Ok(batch);
        }
        loop {
            match self.socket.receive_or_close().await? {
                CoordinatorMessage::Batch(batch) => return Ok(batch),
                CoordinatorMessage::Welcome { .. } => panic!("a second welcome"),
                _ => continue,
            }
        }
    }

    pub fn output(&mut self, batch: &Batch, task: u32) -> TaskOutput {
        self.runner
            .run(&batch.spec, batch.job_tasks, task)
            .expect("a built-in kernel")
    }

    /// A results frame for `tasks` of `batch`, computed for real.
    pub fn frame(&mut self, batch: &Batch, tasks: &[u32]) -> Vec<u8> {
        let mut builder = ResultsFrameBuilder::new(batch.batch);
        for &task in tasks {
            let output = self.output(batch, task);
            builder.push(task, &output);
        }
        builder.finish()
    }

    /// Sends a results frame naming `batch` and returns its ack. Batches that
    /// arrive meanwhile are kept for later.
    pub async fn send(&mut self, batch: u64, frame: Vec<u8>) -> Ack {
        self.socket.send_binary(frame).await;
        let (ack, batches) = self.socket.receive_ack(batch).await;
        self.queue.extend(batches);
        ack
    }

    /// Works on every batch it is given, in the background, until the task
    /// is aborted; the indices of the tasks it was given go to `given`. Task
    /// `fail`, if given, it reports as failed instead. The coordinator must
    /// send heartbeats more often than every 10 s.
    pub fn serve(
        mut self,
        given: Arc<Mutex<Vec<u32>>>,
        fail: Option<u32>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let batch = self.next_batch().await;
                let mut indices: Vec<u32> = batch.tasks.iter().collect();
                given.lock().unwrap().extend(&indices);
                if let Some(task) = fail.filter(|t| indices.contains(t)) {
                    indices.retain(|&t| t != task);
                    let failed = WorkerMessage::Failed {
                        batch: batch.batch,
                        task,
                        error: "out of memory (on purpose)".into(),
                    };
                    self.socket.send_message(&failed).await;
                }
                if !indices.is_empty() {
                    let frame = self.frame(&batch, &indices);
                    self.send(batch.batch, frame).await;
                }
            }
        })
    }

    /// Computes and sends whole batches until `answered` holds all `tasks`.
    pub async fn finish(&mut self, answered: &mut BTreeSet<u32>, tasks: u32) {
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
