//! The native worker (`grid worker`, and `grid serve --local-workers`): the
//! tokio driver of the protocol session ([`WorkerSession`], the same one the
//! browser worker drives) over one WebSocket at a time, and a pool of compute
//! threads that take their tasks from the session.
//!
//! The session decides everything the protocol asks: what to send and when,
//! when a connection is dead (no welcome, or a coordinator gone silent for
//! `idle_timeout_ms`), and whether and when to dial again. This file only
//! dials, moves frames between the socket and the session, ticks it every
//! [`TICK_MS`] and runs the kernels:
//!
//! - The session lives under one mutex, shared by the driver and the compute
//!   threads. No lock is held across an await: the driver takes what is
//!   queued, lets go, then sends.
//! - A compute thread takes a task from the session, computes it unlocked,
//!   and records the output (or the panic) under the lock. It rings
//!   [`Pool::ready`] only when something waits to be sent at once (a
//!   finished batch, a full frame, a failure); the tick flushes the rest.
//! - A task computed under an earlier connection is dropped by the session,
//!   so a reconnect needs nothing from the threads.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use grid_kernels::TaskRunner;
use grid_protocol::close::close_reason;
use grid_protocol::session::{CONNECT_TIMEOUT_MS, Ended, Next, Outgoing, TICK_MS, WorkerSession};
use grid_protocol::{Hello, PROTOCOL_VERSION, WORKER_PATH, WorkerKind};
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How a native worker identifies itself and how hard it works.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The coordinator's base URL, `http://host:port` (or `ws://`).
    pub url: String,
    pub threads: usize,
    pub name: Option<String>,
    /// Extra roots to trust for a `wss://` coordinator with a private or
    /// self-signed certificate (see [`crate::tls::client_config`]).
    pub ca_cert: Option<std::path::PathBuf>,
}

/// The worker's WebSocket URL for a coordinator base URL.
pub fn socket_url(base: &str) -> anyhow::Result<String> {
    let base = base.trim_end_matches('/');
    let rest = if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if base.starts_with("ws://") || base.starts_with("wss://") {
        base.to_string()
    } else {
        bail!(
            "the coordinator URL must start with http://, https://, ws:// or wss://, got '{base}'"
        );
    };
    Ok(if rest.ends_with(WORKER_PATH) {
        rest
    } else {
        format!("{rest}{WORKER_PATH}")
    })
}

/// How long a close frame may take to go out to a peer that may be gone.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the log says how much was done.
const REPORT_EVERY: Duration = Duration::from_secs(10);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The session, shared by the connection and the compute threads.
struct Pool {
    session: Mutex<WorkerSession>,
    /// Rung when the session may have a task for an idle thread.
    work: Condvar,
    /// Rung by compute threads when something waits to be sent at once.
    ready: Notify,
    stop: AtomicBool,
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, WorkerSession> {
        crate::sync::lock(&self.session, "worker session")
    }
}

fn compute_thread(pool: Arc<Pool>) {
    let mut runner = TaskRunner::new();
    loop {
        let task = {
            let mut session = pool.lock();
            loop {
                if pool.stop.load(Ordering::Relaxed) {
                    return;
                }
                if let Some(task) = session.start_task() {
                    break task;
                }
                session = crate::sync::wait(&pool.work, session);
            }
        };
        let output = catch_unwind(AssertUnwindSafe(|| {
            runner.run(&task.spec, task.job_tasks, task.index)
        }));
        let mut session = pool.lock();
        match output {
            Ok(output) => {
                session.finish_task(&task, &output);
            }
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "the kernel panicked".into());
                runner = TaskRunner::new();
                session.fail_task(&task, &format!("panic: {message}"));
            }
        }
        // Wake the connection only when there is something to send: a
        // finished batch, a full frame or a failure. The tick flushes partial
        // frames; waking per task would cost more than tiny tasks.
        let wake = session.has_ready_frames();
        drop(session);
        if wake {
            pool.ready.notify_one();
        }
    }
}

/// The session's clock: milliseconds since the worker started.
#[derive(Debug, Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now(self) -> u64 {
        u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Runs a worker until `shutdown` turns true. Connection failures are retried
/// with the session's backoff; a close that says the worker itself is not
/// acceptable (wrong protocol version, quarantined, a bad hello) ends it with
/// an error.
pub async fn run(
    options: WorkerOptions,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let url = socket_url(&options.url)?;
    let tls = crate::tls::client_config(options.ca_cert.as_deref())?;
    let threads = options.threads.max(1);
    let hello = Hello {
        protocol: PROTOCOL_VERSION,
        kind: WorkerKind::Native,
        threads: u32::try_from(threads).context("too many threads")?,
        name: options.name.clone(),
        session: None,
    };
    let pool = Arc::new(Pool {
        session: Mutex::new(WorkerSession::new(hello)),
        work: Condvar::new(),
        ready: Notify::new(),
        stop: AtomicBool::new(false),
    });
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let pool = pool.clone();
            std::thread::Builder::new()
                .name(format!("grid-compute-{i}"))
                .spawn(move || compute_thread(pool))
                .context("cannot start a compute thread")
        })
        .collect::<Result<_, _>>()?;

    let result = drive(&url, &tls, &pool, &mut shutdown).await;
    pool.stop.store(true, Ordering::Relaxed);
    pool.work.notify_all();
    // Threads finish their current task and exit; do not wait on a long one.
    drop(handles);
    result
}

/// Dials, converses and dials again, as the session says.
async fn drive(
    url: &str,
    tls: &Arc<rustls::ClientConfig>,
    pool: &Pool,
    shutdown: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let clock = Clock(Instant::now());
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let dialled = tokio::select! {
            _ = shutdown.changed() => return Ok(()),
            dialled = dial(url, tls) => dialled,
        };
        let next = match dialled {
            Ok(socket) => {
                let ended = converse(socket, url, pool, shutdown, clock).await;
                pool.lock().on_closed(ended, clock.now(), rand::random())
            }
            Err(error) => pool.lock().on_dial_failed(
                format!("cannot reach the coordinator at {url}: {error:#}"),
                rand::random(),
            ),
        };
        match next {
            Next::Stop => return Ok(()),
            Next::Refused(reason) => bail!("{reason}; not reconnecting"),
            Next::Reconnect { after_ms } => {
                let error = pool.lock().last_error().map(String::from);
                tracing::warn!(
                    after_ms,
                    "{}; reconnecting",
                    error.as_deref().unwrap_or("the connection ended")
                );
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(after_ms)) => {}
                    _ = shutdown.changed() => return Ok(()),
                }
            }
        }
    }
}

async fn dial(url: &str, tls: &Arc<rustls::ClientConfig>) -> anyhow::Result<Socket> {
    let (socket, _) = tokio::time::timeout(
        Duration::from_millis(CONNECT_TIMEOUT_MS),
        tokio_tungstenite::connect_async_tls_with_config(
            url,
            None,
            true,
            Some(tokio_tungstenite::Connector::Rustls(tls.clone())),
        ),
    )
    .await
    .context("connection timed out")?
    .context("connection failed")?;
    Ok(socket)
}

/// What woke the connection.
enum Wake {
    Shutdown,
    Ready,
    Tick,
    Report,
    Received(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
}

/// Runs one open connection until it ends, and says how.
async fn converse(
    socket: Socket,
    url: &str,
    pool: &Pool,
    shutdown: &mut watch::Receiver<bool>,
    clock: Clock,
) -> Ended {
    let (mut sink, mut stream) = socket.split();
    pool.lock().on_open(clock.now());
    let mut tick = tokio::time::interval(Duration::from_millis(TICK_MS));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut report = tokio::time::interval(REPORT_EVERY);
    let mut reported = pool.lock().tasks_done();
    let mut worker: Option<u64> = None;
    loop {
        let outgoing = pool.lock().take_outgoing(clock.now());
        if let Err(error) = send_all(&mut sink, outgoing).await {
            return Ended::Dropped(error.to_string());
        }
        let wake = tokio::select! {
            _ = shutdown.changed() => Wake::Shutdown,
            _ = pool.ready.notified() => Wake::Ready,
            _ = tick.tick() => Wake::Tick,
            _ = report.tick() => Wake::Report,
            message = stream.next() => Wake::Received(message),
        };
        let fault = match wake {
            Wake::Shutdown => {
                // Results out, then `pause`, then the unstarted tasks back.
                let outgoing = {
                    let mut session = pool.lock();
                    session.stop();
                    session.take_outgoing(clock.now())
                };
                if send_all(&mut sink, outgoing).await.is_ok() {
                    close(&mut sink, "worker stopping").await;
                }
                return Ended::Stopped;
            }
            Wake::Ready => {
                pool.lock().end_turn();
                continue;
            }
            Wake::Tick => match pool.lock().tick(clock.now()) {
                Ok(()) => continue,
                Err(fault) => fault,
            },
            Wake::Report => {
                let done = pool.lock().tasks_done();
                if done != reported {
                    let rate = (done - reported) / REPORT_EVERY.as_secs();
                    tracing::info!(worker, tasks_done = done, rate, "working");
                    reported = done;
                }
                continue;
            }
            Wake::Received(Some(Ok(Message::Text(text)))) => {
                let mut session = pool.lock();
                let rejected = session.results_rejected();
                let received = session.on_text(&text, clock.now());
                let (has_work, welcomed) = (session.has_work(), session.worker_id());
                let rejected = session.results_rejected() - rejected;
                drop(session);
                match received {
                    Ok(()) => {
                        if has_work {
                            pool.work.notify_all();
                        }
                        if worker.is_none() && welcomed.is_some() {
                            worker = welcomed;
                            tracing::info!(worker, "connected to {url}");
                        }
                        if rejected > 0 {
                            tracing::warn!(worker, rejected, "the coordinator rejected results");
                        }
                        continue;
                    }
                    Err(fault) => fault,
                }
            }
            Wake::Received(Some(Ok(Message::Binary(bytes)))) => pool.lock().on_binary(bytes.len()),
            Wake::Received(Some(Ok(Message::Close(frame)))) => {
                return match frame {
                    Some(frame) => Ended::Closed {
                        code: Some(u16::from(frame.code)),
                        reason: frame.reason.to_string(),
                    },
                    None => Ended::Closed {
                        code: None,
                        reason: String::new(),
                    },
                };
            }
            // Pings are answered by tungstenite; nothing else is protocol.
            Wake::Received(Some(Ok(_))) => continue,
            Wake::Received(Some(Err(error))) => return Ended::Dropped(error.to_string()),
            Wake::Received(None) => return Ended::Dropped(String::new()),
        };
        tracing::warn!(worker, "dropping the connection: {fault}");
        close(&mut sink, &fault.to_string()).await;
        return Ended::Fault(fault);
    }
}

async fn send_all<S>(sink: &mut S, outgoing: Vec<Outgoing>) -> Result<(), S::Error>
where
    S: SinkExt<Message> + Unpin,
{
    for frame in outgoing {
        let message = match frame {
            Outgoing::Text(text) => Message::text(text),
            Outgoing::Binary(bytes) => Message::binary(bytes),
        };
        sink.send(message).await?;
    }
    Ok(())
}

/// Sends a close frame, giving up after [`CLOSE_TIMEOUT`]: the peer may be
/// the reason for closing.
async fn close<S>(sink: &mut S, reason: &str)
where
    S: SinkExt<Message> + Unpin,
{
    let frame = CloseFrame {
        code: WsCloseCode::Normal,
        reason: close_reason(reason.to_string()).into(),
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_urls_follow_the_coordinator_url() {
        assert_eq!(
            socket_url("http://127.0.0.1:8080").unwrap(),
            "ws://127.0.0.1:8080/ws/worker"
        );
        assert_eq!(
            socket_url("https://grid.example/").unwrap(),
            "wss://grid.example/ws/worker"
        );
        assert_eq!(
            socket_url("ws://h:1/ws/worker").unwrap(),
            "ws://h:1/ws/worker"
        );
        assert!(socket_url("ftp://h").is_err());
    }
}
