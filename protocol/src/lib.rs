//! The browsergrid wire protocol between workers and the coordinator, as
//! types. `PROTOCOL.md` at the top of the repository is the same contract in
//! prose, for people writing workers in other languages; keep the two in step.
//!
//! - [`messages`]: the JSON control messages, one enum per direction, decoded
//!   at the edge into types.
//! - [`frame`]: the binary results frame that carries task outputs.
//! - [`close`]: the WebSocket close codes and what each means.
//! - [`tasks`]: compact sets of task indices (half-open ranges).
//! - [`api`]: the HTTP API and the monitor channel: job requests, status
//!   objects, worker list entries, monitor events.
//! - [`session`]: a worker's whole session without I/O or a clock: hello and
//!   welcome, heartbeats, silence, flushes, pause and stop, and whether and
//!   when to reconnect. The native worker and the WebAssembly worker are
//!   thin drivers of it.
//! - [`worker`]: the batches one connection holds ([`worker::WorkerCore`]),
//!   inside the session.
//! - [`backoff`]: the delays between reconnection attempts.
//!
//! No I/O and no async runtime: this crate compiles for the host and for
//! `wasm32-unknown-unknown` alike.

pub mod api;
pub mod backoff;
pub mod cache;
pub mod close;
pub mod frame;
pub mod messages;
pub mod session;
pub mod tasks;
pub mod worker;

pub use close::CloseCode;
pub use frame::{DigestOnly, FrameError, ResultsFrame, TaskResult};
pub use messages::{
    Batch, CoordinatorMessage, DecodeError, Hello, TaskInput, WorkerKind, WorkerMessage,
};
pub use tasks::TaskRanges;

/// The protocol version this crate speaks. A hello with another version is
/// refused with [`CloseCode::UnsupportedVersion`].
pub const PROTOCOL_VERSION: u32 = 5;

/// The path workers connect to.
pub const WORKER_PATH: &str = "/ws/worker";

/// The coordinator's HTTP base for a worker's socket URL, where a worker
/// fetches prepared modules (`ws://h:p/ws/worker` gives `http://h:p`,
/// `wss://` gives `https://`).
pub fn http_base(socket_url: &str) -> String {
    let base = socket_url.strip_suffix(WORKER_PATH).unwrap_or(socket_url);
    if let Some(rest) = base.strip_prefix("wss://") {
        format!("https://{rest}")
    } else if let Some(rest) = base.strip_prefix("ws://") {
        format!("http://{rest}")
    } else {
        base.to_string()
    }
}

/// The largest text frame a peer may send: control messages are small.
pub const MAX_TEXT_FRAME_BYTES: usize = 64 * 1024;

/// The largest binary (results) frame a worker may send.
pub const MAX_RESULTS_FRAME_BYTES: usize = 16 * 1024 * 1024;

#[cfg(test)]
mod tests {
    #[test]
    fn the_http_base_follows_the_socket_url() {
        assert_eq!(
            super::http_base("ws://127.0.0.1:9/ws/worker"),
            "http://127.0.0.1:9"
        );
        assert_eq!(
            super::http_base("wss://grid.example/ws/worker"),
            "https://grid.example"
        );
    }
}
