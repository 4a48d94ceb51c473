//! One monitor (dashboard) connection, over any `Sink`/`Stream` of
//! WebSocket messages: a snapshot of the grid ([`Grid::monitor_snapshot`]:
//! a window of the jobs, the workers summed up), the tiles of the listed
//! images in progress, then every event the [`crate::monitor`] hub fans out. A client
//! that falls behind the hub's ring is sent a fresh snapshot in place of
//! what it missed. The channel is one-way: what the client sends is read
//! (so its close is seen) and ignored.

use std::sync::Arc;

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use grid_protocol::CloseCode;
use tokio::sync::{OwnedSemaphorePermit, broadcast, watch};
use tokio_tungstenite::tungstenite::Message;
use tracing::Instrument;

use super::{WsError, close_message, linger};
use crate::grid::Grid;
use crate::monitor::MonitorFrame;
use crate::users::Caller;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;

/// Serves one monitor client, `caller`, until it leaves, the coordinator
/// stops, or its token stops working (its user removed or the token
/// rotated: closed with 1008). It is sent what `caller` may see: its own
/// jobs (every job for an admin), and the workers, which all users share.
pub async fn serve_monitor<S, R>(
    grid: Arc<Grid>,
    caller: Caller,
    mut sink: S,
    mut stream: R,
    mut shutdown: watch::Receiver<bool>,
    permit: OwnedSemaphorePermit,
) where
    S: Sink<Message, Error = WsError> + Unpin,
    R: Stream<Item = Result<Message, WsError>> + Unpin,
{
    async move {
        // Subscribe before the snapshot so nothing between the two is missed.
        let mut events = grid.monitor().subscribe();
        let mut revocations = grid.revocations();
        if send_snapshot(&grid, &caller, &mut sink).await.is_err() {
            return;
        }
        loop {
            tokio::select! {
                _ = revocations.changed() => {
                    if !grid.is_current(&caller) {
                        let revoked = Message::Close(Some(CloseFrame {
                            code: WsCloseCode::Policy,
                            reason: "this token no longer works (its user was removed or the token rotated)".into(),
                        }));
                        if sink.send(revoked).await.is_ok() {
                            linger(&mut stream, grid.config().close_linger).await;
                        }
                        break;
                    }
                }
                _ = shutdown.changed() => {
                    let goodbye = close_message(
                        CloseCode::GoingAway,
                        "the coordinator is shutting down".into(),
                    );
                    if sink.send(goodbye).await.is_ok() {
                        linger(&mut stream, grid.config().close_linger).await;
                    }
                    break;
                }
                incoming = stream.next() => match incoming {
                    // Clients only listen; anything but a close is ignored.
                    Some(Ok(message)) if message.is_close() => break,
                    Some(Ok(_)) => {}
                    _ => break,
                },
                event = events.recv() => {
                    let sent = match event {
                        Ok(frame) if frame.owner().is_some_and(|owner| !caller.may_see(owner)) => Ok(()),
                        Ok(MonitorFrame::Text { text, .. }) => sink.send(Message::text(text.as_ref())).await,
                        Ok(MonitorFrame::Binary { bytes, .. }) => sink.send(Message::binary(bytes.to_vec())).await,
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            tracing::debug!(missed, "monitor client fell behind; resending a snapshot");
                            send_snapshot(&grid, &caller, &mut sink).await
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    };
                    if sent.is_err() {
                        break;
                    }
                }
            }
        }
        // The connection's room is free before the client hears the end:
        // one that reconnects at once finds it.
        drop(permit);
        let _ = sink.close().await;
    }
    .instrument(tracing::debug_span!("monitor"))
    .await
}

async fn send_snapshot<S>(grid: &Grid, caller: &Caller, sink: &mut S) -> Result<(), WsError>
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    let (snapshot, listed) = grid.monitor_snapshot(caller);
    sink.send(Message::text(snapshot.encode())).await?;
    for tile in grid.image_tiles_so_far(caller, &listed) {
        sink.send(Message::binary(tile)).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
