//! One worker's WebSocket connection: the per-connection state machine.
//!
//! A writer task owns the socket's sink and is fed by a bounded queue, so a
//! slow worker can never make the coordinator buffer without limit. The read
//! loop expects a hello first (within the hello timeout), then decodes every
//! frame at the edge into a typed message, hands it to the [`Grid`], and
//! closes the connection with a code and a reason on anything malformed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use grid_protocol::{
    CloseCode, CoordinatorMessage, MAX_RESULTS_FRAME_BYTES, ResultsFrame, WorkerMessage,
};
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;

use crate::upgrade::Socket;

use crate::grid::{AddressSlot, Grid, Outbound, WorkerConn};

/// Messages queued for one socket before the worker counts as not reading.
const OUTBOX: usize = 64;

/// Holds a connection slot and tells the server, by being dropped, that the
/// connection is over.
#[derive(Debug)]
pub struct ConnectionGuard {
    /// A slot under the total connection cap, if one was free.
    pub permit: Option<OwnedSemaphorePermit>,
    /// A slot under the per-address cap, if one was free.
    pub address: Option<AddressSlot>,
    pub _done: mpsc::Sender<()>,
}

/// A token bucket: `rate` messages a second on average, `burst` at once.
struct RateLimit {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl RateLimit {
    fn new(rate: f64, burst: f64) -> RateLimit {
        RateLimit {
            tokens: burst,
            rate,
            burst,
            last: Instant::now(),
        }
    }

    /// Takes a token; false when the peer is over its rate.
    fn allow(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

enum Step {
    Continue,
    Close(CloseCode, String),
}

pub async fn serve_worker(
    grid: Arc<Grid>,
    socket: Socket,
    addr: Option<SocketAddr>,
    mut shutdown: watch::Receiver<bool>,
    guard: ConnectionGuard,
) {
    let (mut sink, mut stream) = socket.split();
    let (outbox, mut queue) = mpsc::channel::<Outbound>(OUTBOX);
    let writer = tokio::spawn(async move {
        while let Some(out) = queue.recv().await {
            let message = match out {
                Outbound::Text(text) => Message::text(text),
                Outbound::Close(code, reason) => {
                    let _ = sink.send(close_message(code, reason)).await;
                    break;
                }
            };
            if sink.send(message).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });

    let close = |code: CloseCode, reason: String| {
        let outbox = outbox.clone();
        let grid = grid.clone();
        async move {
            grid.count_close(code);
            tracing::info!(?addr, code = code.code(), %reason, "closing worker connection");
            let _ = outbox.send(Outbound::Close(code, reason)).await;
        }
    };

    let refusal = if guard.permit.is_none() {
        Some("the coordinator has too many connections; try again later")
    } else if guard.address.is_none() {
        Some("too many connections from this address; try again later")
    } else {
        None
    };
    if let Some(reason) = refusal {
        close(CloseCode::TooManyConnections, reason.into()).await;
        finish(writer, outbox).await;
        return;
    }

    // ---- hello --------------------------------------------------------------
    let config = grid.config();
    let hello = match timeout(config.hello_timeout, stream.next()).await {
        Err(_) => {
            close(
                CloseCode::HelloTimeout,
                format!("no hello within {} ms", config.hello_timeout.as_millis()),
            )
            .await;
            None
        }
        Ok(None) | Ok(Some(Err(_))) => None,
        Ok(Some(Ok(Message::Text(text)))) => match WorkerMessage::decode(&text) {
            Ok(WorkerMessage::Hello(hello)) => match hello.validate() {
                Ok(()) => Some(hello),
                Err((code, reason)) => {
                    close(code, reason).await;
                    None
                }
            },
            Ok(_) => {
                close(
                    CloseCode::ProtocolViolation,
                    "the first message must be a hello".into(),
                )
                .await;
                None
            }
            Err(error) => {
                close(error.close_code(), error.to_string()).await;
                None
            }
        },
        Ok(Some(Ok(Message::Close(_)))) => None,
        Ok(Some(Ok(_))) => {
            close(
                CloseCode::ProtocolViolation,
                "the first message must be a hello text frame".into(),
            )
            .await;
            None
        }
    };
    let Some(hello) = hello else {
        finish(writer, outbox).await;
        return;
    };

    let worker = match grid.register_worker(hello, addr, outbox.clone()) {
        Ok(worker) => worker,
        Err((code, reason)) => {
            close(code, reason).await;
            finish(writer, outbox).await;
            return;
        }
    };
    worker.send(&CoordinatorMessage::Welcome {
        worker: worker.id,
        heartbeat_ms: config.heartbeat.as_millis() as u64,
        idle_timeout_ms: config.idle_timeout.as_millis() as u64,
        max_frame_bytes: MAX_RESULTS_FRAME_BYTES as u64,
    });
    grid.dispatch();

    // ---- the connection's life ---------------------------------------------------
    // A random phase: workers that joined together (a lab starting its
    // browsers at once) would otherwise get their heartbeats in one burst.
    let phase = config.heartbeat.mul_f64(0.5 + rand::random::<f64>());
    let mut heartbeat = tokio::time::interval_at(Instant::now() + phase, config.heartbeat);
    let mut idle_deadline = Instant::now() + config.idle_timeout;
    let mut rate = RateLimit::new(config.max_messages_per_second, config.message_burst);
    loop {
        let step = tokio::select! {
            _ = shutdown.changed() => Step::Close(CloseCode::GoingAway, "the coordinator is shutting down".into()),
            _ = heartbeat.tick() => {
                worker.send(&CoordinatorMessage::Heartbeat {});
                Step::Continue
            }
            _ = sleep_until(idle_deadline) => Step::Close(
                CloseCode::IdleTimeout,
                format!("nothing received for {} ms", config.idle_timeout.as_millis()),
            ),
            next = stream.next() => match next {
                None => break,
                                Some(Err(error)) => {
                    if let tokio_tungstenite::tungstenite::Error::Capacity(limit) = &error {
                        Step::Close(CloseCode::FrameTooLarge, format!("frame too large: {limit}"))
                    } else {
                        tracing::debug!(worker = worker.id, %error, "worker socket error");
                        break;
                    }
                }
                                Some(Ok(message)) if !rate.allow() => {
                    drop(message);
                    Step::Close(
                        CloseCode::RateLimited,
                        format!("more than {} messages a second", config.max_messages_per_second),
                    )
                }
                Some(Ok(message)) => {
                    idle_deadline = Instant::now() + config.idle_timeout;
                    handle(&grid, &worker, message).await
                }
            },
        };
        if let Step::Close(code, reason) = step {
            close(code, reason).await;
            break;
        }
    }
    grid.unregister_worker(worker.id);
    drop(worker);
    finish(writer, outbox).await;
    drop(guard);
}

async fn handle(grid: &Grid, worker: &Arc<WorkerConn>, message: Message) -> Step {
    let text = match message {
        Message::Close(_) => return Step::Close(CloseCode::Normal, "goodbye".into()),
        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return Step::Continue,
        Message::Binary(bytes) => return results(grid, worker, &bytes).await,
        Message::Text(text) => text,
    };
    match WorkerMessage::decode(&text) {
        Err(error) => Step::Close(error.close_code(), error.to_string()),
        Ok(WorkerMessage::Hello(_)) => Step::Close(
            CloseCode::ProtocolViolation,
            "hello was already received".into(),
        ),
        Ok(WorkerMessage::Heartbeat {}) => Step::Continue,
        Ok(WorkerMessage::Return { batch, tasks }) => {
            grid.on_return(worker, batch, &tasks);
            Step::Continue
        }
        Ok(WorkerMessage::Failed { batch, task, error }) => {
            grid.on_failed(worker, batch, task, &error).await;
            Step::Continue
        }
        Ok(WorkerMessage::Pause {}) => {
            grid.set_worker_paused(worker, true);
            Step::Continue
        }
        Ok(WorkerMessage::Resume {}) => {
            grid.set_worker_paused(worker, false);
            Step::Continue
        }
    }
}

async fn results(grid: &Grid, worker: &Arc<WorkerConn>, bytes: &bytes::Bytes) -> Step {
    let frame = match ResultsFrame::decode_shared(bytes) {
        Ok(frame) => frame,
        Err(error) => return Step::Close(error.close_code(), error.to_string()),
    };
    let batch = frame.batch;
    match grid.on_results(worker, frame).await {
        Ok(outcome) => {
            worker.send(&CoordinatorMessage::Ack {
                batch,
                accepted: outcome.accepted,
                duplicate: outcome.duplicate,
                rejected: outcome.rejected,
            });
            Step::Continue
        }
        Err(error) => {
            tracing::error!(worker = worker.id, %error, "results could not be stored");
            Step::Close(
                CloseCode::InternalError,
                "the coordinator could not store results".into(),
            )
        }
    }
}

/// A close frame with a code and a reason that fits.
pub fn close_message(code: CloseCode, reason: String) -> Message {
    Message::Close(Some(CloseFrame {
        code: WsCloseCode::from(code.code()),
        reason: grid_protocol::close::close_reason(reason).into(),
    }))
}

/// Lets the writer send what is queued (the close frame last), then stops it.
async fn finish(writer: tokio::task::JoinHandle<()>, outbox: mpsc::Sender<Outbound>) {
    drop(outbox);
    let abort = writer.abort_handle();
    if timeout(Duration::from_secs(2), writer).await.is_err() {
        abort.abort();
    }
}
