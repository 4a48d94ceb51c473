//! The WebSocket connections the coordinator serves: worker connections
//! ([`worker`]) and monitor connections for dashboards ([`monitor`]). Each is
//! a state machine over a `Sink` and a `Stream` of WebSocket messages rather
//! than a concrete socket, so unit tests drive it through channels, with
//! tokio's paused clock for its timeouts; [`crate::api`] hands them the two
//! halves of an upgraded socket.
//!
//! Shared here: how a connection the coordinator closes is closed. RFC 6455
//! (7.1.1) asks the side that closes first to wait for the peer's close
//! frame before dropping the TCP connection; dropping it with input still
//! unread makes the kernel answer with a reset, which can destroy the close
//! frame before the peer reads it, so a flooding worker often never learned
//! its close code. [`linger`] reads and discards until the peer's close, the
//! end of the stream or a timeout.

pub mod monitor;
pub mod worker;

use std::time::Duration;

use futures_util::{Stream, StreamExt};
use grid_protocol::CloseCode;
use grid_protocol::close::close_reason;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;

pub use tokio_tungstenite::tungstenite::Error as WsError;

/// A close frame with a code and a reason that fits a control frame.
pub fn close_message(code: CloseCode, reason: String) -> Message {
    Message::Close(Some(CloseFrame {
        code: WsCloseCode::from(code.code()),
        reason: close_reason(reason).into(),
    }))
}

/// After our close frame went out: reads and discards what the peer still
/// sends, until its close frame, the end of the stream, or `timeout`.
pub async fn linger<R>(stream: &mut R, timeout: Duration)
where
    R: Stream<Item = Result<Message, WsError>> + Unpin,
{
    let drained = tokio::time::timeout(timeout, async {
        while let Some(Ok(message)) = stream.next().await {
            if message.is_close() {
                break;
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::debug!("the peer did not answer our close frame in time");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn linger_stops_at_the_peer_close_or_the_timeout() {
        let mut answered = futures_util::stream::iter(vec![
            Ok(Message::text("late")),
            Ok(Message::Close(None)),
            Ok(Message::text("never read")),
        ]);
        linger(&mut answered, Duration::from_secs(2)).await;
        assert_eq!(
            answered.next().await.unwrap().unwrap(),
            Message::text("never read"),
            "reading stopped at the close frame"
        );
        let mut silent = futures_util::stream::pending::<Result<Message, WsError>>();
        let started = tokio::time::Instant::now();
        linger(&mut silent, Duration::from_secs(2)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }
}
