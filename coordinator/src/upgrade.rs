//! The WebSocket upgrade, done here rather than by warp's `ws()` so that each
//! connection's buffers can be sized: warp leaves tungstenite's 128 KiB read
//! buffer, which it zero-fills, on every connection; ten thousand idle donors
//! would hold 1.3 GB for nothing. Here a socket starts with 4 KiB and grows
//! only while a large frame is arriving.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use warp::http::{StatusCode, header};
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

/// A server-side WebSocket over an upgraded HTTP connection.
pub type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// A WebSocket handshake that passed its checks, ready to be answered.
#[derive(Debug)]
pub struct Handshake {
    accept: String,
    upgrade: OnUpgrade,
}

#[derive(Debug)]
struct NotAWebSocket(&'static str);
impl warp::reject::Reject for NotAWebSocket {}

/// Matches a WebSocket handshake (RFC 6455, 4.2.1).
pub fn handshake() -> impl Filter<Extract = (Handshake,), Error = Rejection> + Clone {
    warp::get()
        .and(warp::header::optional::<String>("connection"))
        .and(warp::header::optional::<String>("upgrade"))
        .and(warp::header::optional::<String>("sec-websocket-version"))
        .and(warp::header::optional::<String>("sec-websocket-key"))
        .and(warp::ext::optional::<OnUpgrade>())
        .and_then(
            |connection: Option<String>,
             upgrade_to: Option<String>,
             version: Option<String>,
             key: Option<String>,
             upgrade: Option<OnUpgrade>| async move {
                let wants_upgrade = connection.is_some_and(|c| {
                    c.split(',')
                        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
                });
                let to_websocket =
                    upgrade_to.is_some_and(|u| u.trim().eq_ignore_ascii_case("websocket"));
                if !wants_upgrade || !to_websocket {
                    return Err(warp::reject::custom(NotAWebSocket(
                        "this path takes WebSocket connections only",
                    )));
                }
                if version.as_deref().map(str::trim) != Some("13") {
                    return Err(warp::reject::custom(NotAWebSocket(
                        "only WebSocket version 13 is spoken",
                    )));
                }
                let (Some(key), Some(upgrade)) = (key, upgrade) else {
                    return Err(warp::reject::custom(NotAWebSocket(
                        "the WebSocket handshake is incomplete",
                    )));
                };
                Ok(Handshake {
                    accept: derive_accept_key(key.trim().as_bytes()),
                    upgrade,
                })
            },
        )
}

impl Handshake {
    /// Answers 101 Switching Protocols and hands the socket, once the client
    /// has it too, to `serve`. Frames (and so messages) may be up to
    /// `max_message` bytes.
    pub fn accept<F, Fut>(self, max_message: usize, serve: F) -> Response
    where
        F: FnOnce(Socket) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let Handshake { accept, upgrade } = self;
        tokio::spawn(async move {
            match upgrade.await {
                Ok(upgraded) => {
                    let config = WebSocketConfig::default()
                        .read_buffer_size(4 * 1024)
                        .write_buffer_size(0)
                        .max_message_size(Some(max_message))
                        .max_frame_size(Some(max_message));
                    let socket = WebSocketStream::from_raw_socket(
                        TokioIo::new(upgraded),
                        Role::Server,
                        Some(config),
                    )
                    .await;
                    serve(socket).await;
                }
                Err(error) => tracing::debug!(%error, "WebSocket upgrade failed"),
            }
        });
        let mut response = warp::reply::with_status(warp::reply(), StatusCode::SWITCHING_PROTOCOLS)
            .into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONNECTION,
            header::HeaderValue::from_static("upgrade"),
        );
        headers.insert(
            header::UPGRADE,
            header::HeaderValue::from_static("websocket"),
        );
        if let Ok(value) = header::HeaderValue::from_str(&accept) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, value);
        }
        response
    }
}

/// The reason a request to a WebSocket path was refused, if it was.
pub fn refusal(rejection: &Rejection) -> Option<&'static str> {
    rejection.find::<NotAWebSocket>().map(|n| n.0)
}
