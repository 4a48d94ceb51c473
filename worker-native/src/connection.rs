//! One connection at a time: dialling, moving frames between the socket and
//! the session, ticking the session, and asking it what to do when the
//! connection ends (dial again after its backoff, stop, or give up).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use grid_protocol::close::close_reason;
use grid_protocol::session::{CONNECT_TIMEOUT_MS, Ended, Next, Outgoing, TICK_MS};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::pool::Pool;

/// How long a close frame may take to go out to a peer that may be gone.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the log says how much was done.
const REPORT_EVERY: Duration = Duration::from_secs(10);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The session's clock: milliseconds since the worker started.
#[derive(Debug, Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now(self) -> u64 {
        u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Dials, converses and dials again, as the session says.
pub(crate) async fn drive(
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
