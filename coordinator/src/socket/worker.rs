//! One worker's connection: the coordinator's side of the worker protocol
//! for one socket, over any `Sink`/`Stream` of WebSocket messages.
//!
//! A writer task owns the sink and is fed by a bounded queue, so a slow
//! worker can never make the coordinator buffer without limit. The read loop
//! expects a hello first (within the hello timeout), then decodes every
//! frame at the edge into a typed message and hands it to the [`Grid`]; it
//! sends heartbeats, enforces the idle timeout and the message rate, and
//! closes the connection with a code and a reason on anything malformed (or
//! with 4008 once its donor is quarantined, after the ack that said so),
//! waiting for the worker's close frame before letting go (see
//! [`super::linger`]).
//!
//! The welcome is the first frame the worker receives: the writer holds
//! back whatever is queued until it has sent it, since once the worker is
//! registered another connection's dispatch may queue a batch for it.
//!
//! Heartbeats cost each side a wake, a frame and a system call or two, so
//! the coordinator sends one only to a connection it sent nothing else to
//! since the last heartbeat tick (a busy worker receives acks and batches,
//! which keep it as sure of the coordinator as a heartbeat would), and any
//! frame it receives counts as a sign of life. The timers a connection
//! waits on are made once and moved, not made again on every frame: the
//! idle deadline is checked lazily when its timer fires.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use grid_protocol::{
    CloseCode, CoordinatorMessage, Hello, MAX_RESULTS_FRAME_BYTES, ResultsFrame, WorkerMessage,
};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot, watch};
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::tungstenite::Message;
use tracing::Instrument;

use super::{WsError, close_message, linger};
use crate::grid::{AddressSlot, Grid, Outbound, WorkerConn};

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

/// How a connection's read loop ended.
enum End {
    /// The coordinator closes it, with this code and reason.
    Close(CloseCode, String),
    /// The worker closed it, or the transport broke: nothing to say.
    Gone,
}

enum Step {
    Continue,
    End(End),
}

/// Serves one worker connection until it ends.
pub async fn serve_worker<S, R>(
    grid: Arc<Grid>,
    sink: S,
    stream: R,
    addr: Option<SocketAddr>,
    shutdown: watch::Receiver<bool>,
    guard: ConnectionGuard,
) where
    S: Sink<Message, Error = WsError> + Send + Unpin + 'static,
    R: Stream<Item = Result<Message, WsError>> + Unpin,
{
    let span = tracing::debug_span!("worker", ?addr, id = tracing::field::Empty);
    serve(grid, sink, stream, addr, shutdown, guard)
        .instrument(span)
        .await
}

async fn serve<S, R>(
    grid: Arc<Grid>,
    sink: S,
    mut stream: R,
    addr: Option<SocketAddr>,
    mut shutdown: watch::Receiver<bool>,
    guard: ConnectionGuard,
) where
    S: Sink<Message, Error = WsError> + Send + Unpin + 'static,
    R: Stream<Item = Result<Message, WsError>> + Unpin,
{
    let (outbox, queue) = mpsc::channel::<Outbound>(grid.config().worker_outbox);
    let (welcome, first) = oneshot::channel();
    let quiet = Arc::new(Quiet::default());
    let writer = tokio::spawn(write_loop(sink, first, queue, quiet.clone()).in_current_span());

    let mut worker = None;
    let end = match admit(&grid, &mut stream, addr, &guard, &outbox, welcome).await {
        Err(end) => end,
        Ok(admitted) => {
            let end = connected(
                &grid,
                &admitted,
                &mut stream,
                &mut shutdown,
                &outbox,
                &quiet,
            )
            .await;
            worker = Some(admitted);
            end
        }
    };
    if let End::Close(code, reason) = &end {
        grid.count_close(*code);
        tracing::info!(code = code.code(), %reason, "closing worker connection");
        // A worker that stopped reading may leave no room: do not wait long.
        let close = Outbound::Close(*code, reason.clone());
        let _ = outbox.send_timeout(close, Duration::from_secs(2)).await;
    }
    if let Some(worker) = worker {
        grid.unregister_worker(worker.id);
    }
    finish(writer, outbox).await;
    if matches!(end, End::Close(..)) {
        linger(&mut stream, grid.config().close_linger).await;
    }
    drop(guard);
}

/// The one heartbeat frame, encoded once.
fn heartbeat_text() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| CoordinatorMessage::Heartbeat {}.encode())
}

/// Whether the connection needs a heartbeat: shared by the writer, which
/// notes every frame but a heartbeat, and the heartbeat tick, which asks.
#[derive(Debug, Default)]
struct Quiet {
    wrote: AtomicBool,
}

impl Quiet {
    /// The writer sent `text`.
    fn note(&self, text: &str) {
        if text != heartbeat_text() {
            self.wrote.store(true, Ordering::Relaxed);
        }
    }

    /// At a heartbeat tick: true if nothing but heartbeats went out since
    /// the last tick, so one is due.
    fn heartbeat_due(&self) -> bool {
        !self.wrote.swap(false, Ordering::Relaxed)
    }
}

/// Sends what the connection queues: `first` (the welcome) before anything
/// else, unless the connection ends before it has one; a close frame is
/// the last thing sent. Every frame is noted in `quiet`.
async fn write_loop<S>(
    mut sink: S,
    first: oneshot::Receiver<Outbound>,
    mut queue: mpsc::Receiver<Outbound>,
    quiet: Arc<Quiet>,
) where
    S: Sink<Message, Error = WsError> + Unpin,
{
    let mut next = first.await.ok();
    loop {
        let out = match next.take() {
            Some(out) => out,
            None => match queue.recv().await {
                Some(out) => out,
                None => break,
            },
        };
        let message = match out {
            Outbound::Text(text) => {
                quiet.note(&text);
                Message::text(text)
            }
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
}

/// The connection's first steps: a free slot, a valid hello in time, a donor
/// that is not quarantined. Then the welcome goes out.
async fn admit<R>(
    grid: &Arc<Grid>,
    stream: &mut R,
    addr: Option<SocketAddr>,
    guard: &ConnectionGuard,
    outbox: &mpsc::Sender<Outbound>,
    welcome: oneshot::Sender<Outbound>,
) -> Result<Arc<WorkerConn>, End>
where
    R: Stream<Item = Result<Message, WsError>> + Unpin,
{
    let full = |reason: &str| End::Close(CloseCode::TooManyConnections, reason.into());
    if guard.permit.is_none() {
        return Err(full(
            "the coordinator has too many connections; try again later",
        ));
    }
    if guard.address.is_none() {
        return Err(full(
            "too many connections from this address; try again later",
        ));
    }
    let config = grid.config();
    let hello = match timeout(config.hello_timeout, stream.next()).await {
        Err(_) => {
            return Err(End::Close(
                CloseCode::HelloTimeout,
                format!("no hello within {} ms", config.hello_timeout.as_millis()),
            ));
        }
        Ok(Some(Ok(Message::Text(text)))) => decode_hello(&text)?,
        Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => return Err(End::Gone),
        Ok(Some(Ok(_))) => {
            return Err(End::Close(
                CloseCode::ProtocolViolation,
                "the first message must be a hello text frame".into(),
            ));
        }
    };
    let worker = grid
        .register_worker(hello, addr, outbox.clone())
        .map_err(|(code, reason)| End::Close(code, reason))?;
    tracing::Span::current().record("id", worker.id);
    // Past the queue: a batch another connection's dispatch queued for this
    // worker since it was registered goes out after the welcome.
    let hello = CoordinatorMessage::Welcome {
        worker: worker.id,
        heartbeat_ms: config.heartbeat.as_millis() as u64,
        idle_timeout_ms: config.idle_timeout.as_millis() as u64,
        max_frame_bytes: MAX_RESULTS_FRAME_BYTES as u64,
    };
    let _ = welcome.send(Outbound::Text(hello.encode()));
    grid.dispatch();
    Ok(worker)
}

fn decode_hello(text: &str) -> Result<Hello, End> {
    match WorkerMessage::decode(text) {
        Ok(WorkerMessage::Hello(hello)) => {
            hello
                .validate()
                .map_err(|(code, reason)| End::Close(code, reason))?;
            Ok(hello)
        }
        Ok(_) => Err(End::Close(
            CloseCode::ProtocolViolation,
            "the first message must be a hello".into(),
        )),
        Err(error) => Err(End::Close(error.close_code(), error.to_string())),
    }
}

/// The connection's life after the welcome.
async fn connected<R>(
    grid: &Grid,
    worker: &Arc<WorkerConn>,
    stream: &mut R,
    shutdown: &mut watch::Receiver<bool>,
    outbox: &mpsc::Sender<Outbound>,
    quiet: &Quiet,
) -> End
where
    R: Stream<Item = Result<Message, WsError>> + Unpin,
{
    let config = grid.config();
    // A random phase: workers that joined together (a lab starting its
    // browsers at once) would otherwise get their heartbeats in one burst.
    let phase = config.heartbeat.mul_f64(0.5 + rand::random::<f64>());
    let mut heartbeat = tokio::time::interval_at(Instant::now() + phase, config.heartbeat);
    // The idle timer is moved only when it fires: a frame just notes when
    // it came, so a busy connection does not re-arm a timer per frame.
    let mut last_received = Instant::now();
    let idle = sleep_until(last_received + config.idle_timeout);
    let mut rate = RateLimit::new(config.max_messages_per_second, config.message_burst);
    // Made once: polled in every round, these stay registered with their
    // Notify rather than registering anew per message.
    let quarantined = worker.quarantined();
    let stopping = shutdown.changed();
    tokio::pin!(quarantined, stopping, idle);
    loop {
        let step = tokio::select! {
            _ = &mut stopping => Step::End(End::Close(
                CloseCode::GoingAway,
                "the coordinator is shutting down".into(),
            )),
            _ = heartbeat.tick() => {
                // Only to a connection sent nothing else since the last tick.
                if quiet.heartbeat_due() {
                    let _ = outbox.try_send(Outbound::Text(heartbeat_text().to_string()));
                }
                Step::Continue
            }
            _ = &mut quarantined => Step::End(End::Close(
                CloseCode::Quarantined,
                "this donor's results failed validation; it gets no more work".into(),
            )),
            _ = &mut idle => {
                let deadline = last_received + config.idle_timeout;
                if deadline > Instant::now() {
                    idle.as_mut().reset(deadline);
                    Step::Continue
                } else {
                    Step::End(End::Close(
                        CloseCode::IdleTimeout,
                        format!("nothing received for {} ms", config.idle_timeout.as_millis()),
                    ))
                }
            }
            next = stream.next() => match next {
                None => Step::End(End::Gone),
                Some(Err(WsError::Capacity(limit))) => Step::End(End::Close(
                    CloseCode::FrameTooLarge,
                    format!("frame too large: {limit}"),
                )),
                Some(Err(error)) => {
                    tracing::debug!(%error, "worker socket error");
                    Step::End(End::Gone)
                }
                Some(Ok(_)) if !rate.allow() => Step::End(End::Close(
                    CloseCode::RateLimited,
                    format!("more than {} messages a second", config.max_messages_per_second),
                )),
                Some(Ok(message)) => {
                    last_received = Instant::now();
                    // Boxed: the results pipeline's future is large, and an idle
                    // connection should not carry its room while it waits.
                    Box::pin(handle(grid, worker, message)).await
                }
            },
        };
        if let Step::End(end) = step {
            return end;
        }
    }
}

async fn handle(grid: &Grid, worker: &Arc<WorkerConn>, message: Message) -> Step {
    let text = match message {
        Message::Close(_) => return Step::End(End::Gone),
        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return Step::Continue,
        Message::Binary(bytes) => return results(grid, worker, &bytes).await,
        Message::Text(text) => text,
    };
    // The most common frame of an idle connection, recognised without JSON.
    if text.as_str() == heartbeat_text() {
        return Step::Continue;
    }
    match WorkerMessage::decode(&text) {
        Err(error) => Step::End(End::Close(error.close_code(), error.to_string())),
        Ok(WorkerMessage::Hello(_)) => Step::End(End::Close(
            CloseCode::ProtocolViolation,
            "hello was already received".into(),
        )),
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
        Ok(WorkerMessage::Holding { added, removed }) => {
            grid.on_holding(worker, &added, &removed);
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
        Err(error) => return Step::End(End::Close(error.close_code(), error.to_string())),
    };
    let batch = frame.batch;
    match grid.on_results(worker, frame).await {
        Ok(outcome) => {
            // Every frame gets its ack: wait for room rather than drop it.
            let ack = CoordinatorMessage::Ack {
                batch,
                accepted: outcome.accepted,
                duplicate: outcome.duplicate,
                rejected: outcome.rejected,
            };
            let wait = grid.config().idle_timeout;
            if worker.send_or_wait(&ack, wait).await {
                Step::Continue
            } else {
                Step::End(End::Close(
                    CloseCode::IdleTimeout,
                    format!("the worker read nothing for {} ms", wait.as_millis()),
                ))
            }
        }
        Err(error) => {
            tracing::error!(%error, "results could not be stored");
            Step::End(End::Close(
                CloseCode::InternalError,
                "the coordinator could not store results".into(),
            ))
        }
    }
}

/// Lets the writer send what is queued (the close frame last), then stops it.
async fn finish(writer: tokio::task::JoinHandle<()>, outbox: mpsc::Sender<Outbound>) {
    drop(outbox);
    let abort = writer.abort_handle();
    if timeout(Duration::from_secs(2), writer).await.is_err() {
        abort.abort();
    }
}

#[cfg(test)]
mod tests;
