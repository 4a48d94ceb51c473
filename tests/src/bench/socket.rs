//! Worker connections written by hand from the protocol's types, for the
//! benchmarks that need to see the protocol from a worker's side:
//!
//! - [`Probe`]: a worker that timestamps every batch it receives and every
//!   ack, and answers batches when told to (latency, re-issue).
//! - [`IdleSwarm`]: thousands of connections that say hello, then `pause`,
//!   and from then on only heartbeat (memory per connection).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use grid_kernels::TaskRunner;
use grid_protocol::frame::ResultsFrameBuilder;
use grid_protocol::{
    Batch, CoordinatorMessage, Hello, PROTOCOL_VERSION, WORKER_PATH, WorkerKind, WorkerMessage,
};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn worker_url(base: &str) -> String {
    format!("{}{WORKER_PATH}", base.replacen("http://", "ws://", 1))
}

fn hello(threads: u32, name: &str) -> Hello {
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

/// Opens a worker socket, says hello and waits for the welcome. A small read
/// buffer keeps thousands of client sockets cheap for the benchmark itself.
async fn join(base: &str, threads: u32, name: &str) -> anyhow::Result<(Socket, u64)> {
    let config = WebSocketConfig::default().read_buffer_size(4096);
    let (mut socket, _) =
        tokio_tungstenite::connect_async_with_config(worker_url(base), Some(config), true)
            .await
            .context("open a worker socket")?;
    let hello = WorkerMessage::Hello(hello(threads, name)).encode();
    socket.send(Message::text(hello)).await?;
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => match CoordinatorMessage::decode(&text)? {
                CoordinatorMessage::Welcome { worker, .. } => return Ok((socket, worker)),
                other => bail!("expected a welcome, got {other:?}"),
            },
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => bail!("expected a welcome, got {other:?}"),
        }
    }
}

/// What a probe saw, and when.
#[derive(Debug, Clone)]
pub enum Seen {
    Batch { at: Instant, batch: Box<Batch> },
    Ack { at: Instant, accepted: u32 },
}

/// A hand-written worker that reports every batch and ack with the instant
/// it arrived. With `answer` on, it computes each batch with
/// [`TaskRunner`] and sends its results in one frame at once.
#[derive(Debug)]
pub struct Probe {
    pub seen: mpsc::UnboundedReceiver<Seen>,
    task: JoinHandle<()>,
}

impl Probe {
    pub async fn join(base: &str, threads: u32, name: &str, answer: bool) -> anyhow::Result<Probe> {
        let (socket, _) = join(base, threads, name).await?;
        let (report, seen) = mpsc::unbounded_channel();
        let task = tokio::spawn(probe_loop(socket, report, answer));
        Ok(Probe { seen, task })
    }

    /// The next batch this probe receives, skipping acks.
    pub async fn next_batch(&mut self, within: Duration) -> anyhow::Result<(Instant, Batch)> {
        let deadline = Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.seen.recv()).await {
                Ok(Some(Seen::Batch { at, batch })) => return Ok((at, *batch)),
                Ok(Some(Seen::Ack { .. })) => continue,
                Ok(None) => bail!("the probe's connection ended"),
                Err(_) => bail!("no batch within {within:?}"),
            }
        }
    }

    /// Drops the connection at once, as a killed process would: the socket
    /// is closed without a close frame and without handing anything back.
    pub fn kill(self) {
        self.task.abort();
    }
}

async fn probe_loop(mut socket: Socket, report: mpsc::UnboundedSender<Seen>, answer: bool) {
    let mut runner = TaskRunner::new();
    let mut heartbeat = tokio::time::interval(Duration::from_secs(5));
    loop {
        let message = tokio::select! {
            _ = heartbeat.tick() => {
                let beat = WorkerMessage::Heartbeat {}.encode();
                if socket.send(Message::text(beat)).await.is_err() {
                    return;
                }
                continue;
            }
            message = socket.next() => message,
        };
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Binary(_))) => continue,
            _ => return,
        };
        let at = Instant::now();
        let Ok(message) = CoordinatorMessage::decode(&text) else {
            return;
        };
        match message {
            CoordinatorMessage::Batch(batch) => {
                let frame = answer.then(|| {
                    let mut frame = ResultsFrameBuilder::new(batch.batch);
                    for task in batch.tasks.iter() {
                        frame.push(
                            task,
                            &runner
                                .run(&batch.spec, batch.job_tasks, task)
                                .expect("a built-in kernel"),
                        );
                    }
                    frame.finish()
                });
                let _ = report.send(Seen::Batch {
                    at,
                    batch: Box::new(batch),
                });
                if let Some(frame) = frame
                    && socket.send(Message::binary(frame)).await.is_err()
                {
                    return;
                }
            }
            CoordinatorMessage::Ack { accepted, .. } => {
                let _ = report.send(Seen::Ack { at, accepted });
            }
            _ => {}
        }
    }
}

/// Many idle worker connections: each says hello, is welcomed, sends
/// `pause` (so it is never given work), then only heartbeats every
/// `heartbeat` and reads what the coordinator sends. Dropped connections are
/// counted, not replaced.
#[derive(Debug)]
pub struct IdleSwarm {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    pub ready: Arc<AtomicUsize>,
    pub ended: Arc<AtomicUsize>,
}

impl IdleSwarm {
    /// Opens `n` connections, at most `concurrency` handshakes at a time, and
    /// returns once every one is welcomed and paused (or failed).
    pub async fn connect(
        base: &str,
        n: usize,
        concurrency: usize,
        heartbeat: Duration,
    ) -> anyhow::Result<IdleSwarm> {
        let (stop, stopping) = watch::channel(false);
        let ready = Arc::new(AtomicUsize::new(0));
        let ended = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Semaphore::new(concurrency));
        let mut tasks = Vec::with_capacity(n);
        for i in 0..n {
            let base = base.to_string();
            let (ready, ended, failed, gate) =
                (ready.clone(), ended.clone(), failed.clone(), gate.clone());
            let mut stopping = stopping.clone();
            tasks.push(tokio::spawn(async move {
                let permit = gate.acquire_owned().await.expect("open semaphore");
                let joined = async {
                    let (mut socket, _) = join(&base, 1, &format!("idle-{i}")).await?;
                    socket
                        .send(Message::text(WorkerMessage::Pause {}.encode()))
                        .await?;
                    anyhow::Ok(socket)
                }
                .await;
                drop(permit);
                let mut socket = match joined {
                    Ok(socket) => socket,
                    Err(error) => {
                        if failed.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("an idle connection failed: {error:#}");
                        }
                        return;
                    }
                };
                ready.fetch_add(1, Ordering::Relaxed);
                let mut beat = tokio::time::interval(heartbeat);
                beat.tick().await;
                loop {
                    tokio::select! {
                        _ = stopping.changed() => break,
                        _ = beat.tick() => {
                            let text = WorkerMessage::Heartbeat {}.encode();
                            if socket.send(Message::text(text)).await.is_err() {
                                break;
                            }
                        }
                        message = socket.next() => match message {
                            Some(Ok(_)) => {}
                            _ => break,
                        },
                    }
                }
                ended.fetch_add(1, Ordering::Relaxed);
                let _ = socket.close(None).await;
            }));
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let done = ready.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed);
            if done >= n {
                break;
            }
            if Instant::now() > deadline {
                bail!("only {done} of {n} idle connections were set up in 120 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let failed = failed.load(Ordering::Relaxed);
        if failed > 0 {
            bail!("{failed} of {n} idle connections could not be set up");
        }
        Ok(IdleSwarm {
            stop,
            tasks,
            ready,
            ended,
        })
    }

    /// Connections still open.
    pub fn open(&self) -> usize {
        self.ready.load(Ordering::Relaxed) - self.ended.load(Ordering::Relaxed)
    }

    /// Closes every connection and waits for them.
    pub async fn close(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}
