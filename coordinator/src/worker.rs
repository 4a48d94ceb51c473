//! The native worker (`grid worker`, and `grid serve --local-workers`): one
//! WebSocket connection, a pool of compute threads, and the shared
//! [`WorkerCore`] state machine between them. It reconnects with backoff when
//! the coordinator goes away and comes back.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use grid_kernels::TaskRunner;
use grid_protocol::worker::{TaskRef, WorkerCore};
use grid_protocol::{
    CloseCode, CoordinatorMessage, Hello, PROTOCOL_VERSION, WORKER_PATH, WorkerKind, WorkerMessage,
};
use tokio::sync::{Notify, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;

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

/// State shared by the connection and the compute threads.
struct Pool {
    state: Mutex<PoolState>,
    work: Condvar,
    /// Rung when outputs or failures are ready to send.
    ready: Notify,
    stop: AtomicBool,
    tasks_done: AtomicU64,
}

struct PoolState {
    core: WorkerCore,
    /// Bumped on every new connection, so a task from an old connection
    /// never completes into the new one's state.
    generation: u64,
    failures: Vec<WorkerMessage>,
    running: usize,
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        crate::sync::lock(&self.state, "worker pool")
    }
}

fn compute_thread(pool: Arc<Pool>) {
    let mut runner = TaskRunner::new();
    loop {
        let (task, generation): (TaskRef, u64) = {
            let mut state = pool.lock();
            loop {
                if pool.stop.load(Ordering::Relaxed) {
                    return;
                }
                if let Some(task) = state.core.next_task() {
                    state.running += 1;
                    break (task, state.generation);
                }
                state = crate::sync::wait(&pool.work, state);
            }
        };
        let output = catch_unwind(AssertUnwindSafe(|| {
            runner.run(&task.spec, task.job_tasks, task.index)
        }));
        let mut state = pool.lock();
        state.running -= 1;
        if state.generation == generation {
            match output {
                Ok(output) => {
                    if state.core.complete(&task, &output) {
                        pool.tasks_done.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(panic) => {
                    let message = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "the kernel panicked".into());
                    runner = TaskRunner::new();
                    let failure = state.core.fail(&task, format!("panic: {message}"));
                    state.failures.extend(failure);
                }
            }
        }
        // Wake the connection only when there is something to send: a
        // finished batch, a full frame or a failure. The flush timer sends
        // partial frames; waking per task would cost more than tiny tasks.
        let wake = !state.failures.is_empty() || state.core.has_ready_frames();
        drop(state);
        if wake {
            pool.ready.notify_one();
        }
    }
}

enum SessionEnd {
    Shutdown,
    /// The coordinator closed the connection with this code and reason.
    Closed(Option<u16>, String),
}

/// Runs a worker until `shutdown` turns true. Connection failures are retried
/// with exponential backoff; a close that says the worker itself is not
/// acceptable (wrong protocol version, quarantined) ends it with an error.
pub async fn run(
    options: WorkerOptions,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let url = socket_url(&options.url)?;
    let tls = crate::tls::client_config(options.ca_cert.as_deref())?;
    let threads = options.threads.max(1);
    let pool = Arc::new(Pool {
        state: Mutex::new(PoolState {
            core: WorkerCore::new(0),
            generation: 0,
            failures: Vec::new(),
            running: 0,
        }),
        work: Condvar::new(),
        ready: Notify::new(),
        stop: AtomicBool::new(false),
        tasks_done: AtomicU64::new(0),
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

    let mut delay = Duration::from_millis(250);
    let result = loop {
        if *shutdown.borrow() {
            break Ok(());
        }
        let mut welcomed = false;
        match session(
            &url,
            &tls,
            &options,
            threads,
            &pool,
            &mut shutdown,
            &mut welcomed,
        )
        .await
        {
            Ok(SessionEnd::Shutdown) => break Ok(()),
            Ok(SessionEnd::Closed(code, reason)) => {
                let known = code.and_then(CloseCode::from_code);
                if known.is_some_and(|c| !c.should_reconnect()) {
                    break Err(anyhow::anyhow!(
                        "the coordinator refused this worker: {reason} (close code {})",
                        code.unwrap_or(0)
                    ));
                }
                tracing::warn!(code, %reason, "the coordinator closed the connection; reconnecting");
            }
            Err(error) => tracing::warn!(
                "cannot reach the coordinator at {url}: {error:#}; retrying in {delay:?}"
            ),
        }
        // A coordinator that welcomed us was reachable: start over from the
        // shortest delay; only repeated failures back off further.
        if welcomed {
            delay = Duration::from_millis(250);
        }
        let jitter = 0.75 + rand::random::<f64>() * 0.5;
        tokio::select! {
            _ = tokio::time::sleep(delay.mul_f64(jitter)) => {}
            _ = shutdown.changed() => break Ok(()),
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    };
    pool.stop.store(true, Ordering::Relaxed);
    pool.work.notify_all();
    // Threads finish their current task and exit; do not wait on a long one.
    drop(handles);
    result
}

async fn session(
    url: &str,
    tls: &Arc<rustls::ClientConfig>,
    options: &WorkerOptions,
    threads: usize,
    pool: &Arc<Pool>,
    shutdown: &mut watch::Receiver<bool>,
    welcomed: &mut bool,
) -> anyhow::Result<SessionEnd> {
    let (socket, _) = tokio::time::timeout(
        Duration::from_secs(10),
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
    let (mut sink, mut stream) = socket.split();
    let hello = WorkerMessage::Hello(Hello {
        protocol: PROTOCOL_VERSION,
        kind: WorkerKind::Native,
        threads: threads as u32,
        name: options.name.clone(),
        session: None,
    });
    sink.send(Message::text(hello.encode())).await?;

    let welcome = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .context("no welcome from the coordinator")?;
    let (worker_id, heartbeat_ms) = match welcome {
        Some(Ok(Message::Text(text))) => match CoordinatorMessage::decode(&text)? {
            CoordinatorMessage::Welcome {
                worker,
                heartbeat_ms,
                ..
            } => (worker, heartbeat_ms),
            other => bail!("expected a welcome, got {other:?}"),
        },
        Some(Ok(Message::Close(frame))) => return Ok(closed(frame)),
        Some(Ok(other)) => bail!("expected a welcome, got {other:?}"),
        Some(Err(e)) => return Err(e.into()),
        None => bail!("the coordinator closed the connection before its welcome"),
    };
    {
        let mut state = pool.lock();
        state.generation += 1;
        state.core = WorkerCore::new(state.generation);
        state.failures.clear();
    }
    *welcomed = true;
    tracing::info!(worker = worker_id, threads, "connected to {url}");

    let mut flush = tokio::time::interval(Duration::from_millis(200));
    let mut heartbeat = tokio::time::interval(Duration::from_millis(heartbeat_ms.max(100)));
    let mut report = tokio::time::interval(Duration::from_secs(10));
    let mut reported = pool.tasks_done.load(Ordering::Relaxed);
    loop {
        tokio::select! {
            _ = shutdown.changed() => {
                // Hand back what was not started, send what is finished.
                let (returns, frames) = {
                    let mut state = pool.lock();
                    let returns = state.core.hand_back_unstarted();
                    (returns, state.core.take_frames(true))
                };
                for frame in frames {
                    sink.send(Message::binary(frame)).await?;
                }
                for message in returns {
                    sink.send(Message::text(message.encode())).await?;
                }
                let _ = sink
                    .send(Message::Close(Some(CloseFrame { code: WsCloseCode::Normal, reason: "worker stopping".into() })))
                    .await;
                return Ok(SessionEnd::Shutdown);
            }
            _ = pool.ready.notified() => send_ready(pool, &mut sink, false).await?,
            _ = flush.tick() => send_ready(pool, &mut sink, true).await?,
            _ = heartbeat.tick() => sink.send(Message::text(WorkerMessage::Heartbeat {}.encode())).await?,
            _ = report.tick() => {
                let done = pool.tasks_done.load(Ordering::Relaxed);
                if done != reported {
                    tracing::info!(worker = worker_id, tasks_done = done, rate = (done - reported) / 10, "working");
                    reported = done;
                }
            }
            message = stream.next() => match message {
                Some(Ok(Message::Text(text))) => match CoordinatorMessage::decode(&text)? {
                    CoordinatorMessage::Batch(batch) => {
                        tracing::debug!(batch = batch.batch, job = batch.job, tasks = batch.tasks.len(), "batch received");
                        pool.lock().core.on_batch(batch);
                        pool.work.notify_all();
                    }
                    CoordinatorMessage::Revoke { batch } => pool.lock().core.on_revoke(batch),
                    CoordinatorMessage::Ack { batch, rejected, .. } => {
                        if rejected > 0 {
                            tracing::warn!(batch, rejected, "the coordinator rejected results");
                        }
                    }
                    CoordinatorMessage::Heartbeat {} | CoordinatorMessage::Welcome { .. } => {}
                },
                Some(Ok(Message::Close(frame))) => return Ok(closed(frame)),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => bail!("the connection dropped"),
            },
        }
    }
}

fn closed(frame: Option<CloseFrame>) -> SessionEnd {
    match frame {
        Some(frame) => SessionEnd::Closed(Some(u16::from(frame.code)), frame.reason.to_string()),
        None => SessionEnd::Closed(None, "closed without a reason".into()),
    }
}

async fn send_ready<S>(pool: &Pool, sink: &mut S, flush: bool) -> anyhow::Result<()>
where
    S: SinkExt<Message> + Unpin,
    S::Error: std::error::Error + Send + Sync + 'static,
{
    let (frames, failures) = {
        let mut state = pool.lock();
        let failures = std::mem::take(&mut state.failures);
        (state.core.take_frames(flush), failures)
    };
    for frame in frames {
        sink.send(Message::binary(frame)).await?;
    }
    for failure in failures {
        sink.send(Message::text(failure.encode())).await?;
    }
    Ok(())
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
