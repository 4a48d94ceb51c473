//! The messages between the donor page and one of its Web Workers, as types.
//! Both directions travel through `postMessage` as JSON text, decoded here at
//! the edge; `www/donor.js` is the other end.
//!
//! Page to worker: [`Command`]. Worker to page: [`Event`], whose
//! [`Status`] carries the figures the page shows.

use serde::{Deserialize, Serialize};

/// What the page asks of a worker.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Connect and work. Sent once, after the worker said [`Event::Ready`].
    Start {
        /// The coordinator's worker socket, `ws(s)://host/ws/worker`.
        url: String,
        /// The tab's donor session id, shared by all its workers.
        session: String,
        #[serde(default)]
        name: Option<String>,
        /// The CPU cap in percent.
        cap: u32,
        /// Start paused (the donor paused before this worker was added).
        #[serde(default)]
        paused: bool,
    },
    /// Hand back unstarted tasks and ask the coordinator for no more.
    Pause {},
    Resume {},
    /// Change the CPU cap.
    Cap {
        percent: u32,
    },
    /// Send finished results, hand back the rest and close the connection
    /// (the tab is closing, or the donor chose fewer threads).
    Stop {},
}

impl Command {
    pub fn decode(text: &str) -> Result<Command, String> {
        serde_json::from_str(text).map_err(|e| format!("bad command from the page: {e}"))
    }
}

/// Where a worker's connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Not started yet.
    Idle,
    /// Opening the socket or waiting for the welcome.
    Connecting,
    Working,
    Paused,
    /// The connection dropped; trying again after a backoff.
    Reconnecting,
    /// The coordinator refused this worker (wrong protocol version,
    /// quarantined); it does not try again.
    Refused,
    Stopped,
}

/// A worker's figures for the page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    pub state: State,
    /// The connection's worker id, from the welcome.
    pub worker: Option<u64>,
    /// Tasks computed and accepted into a results frame, over all
    /// connections of this worker.
    pub tasks_done: u64,
    /// Tasks per second over the last few seconds.
    pub rate: f64,
    /// The job and kernel of the oldest batch held.
    pub job: Option<u64>,
    pub kernel: Option<&'static str>,
    /// Milliseconds spent running kernels.
    pub compute_ms: f64,
    /// Tasks received and not started.
    pub queued: u64,
    /// The last connection problem, for the page to show.
    pub error: Option<String>,
}

/// What a worker tells the page.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The WebAssembly module is loaded; send [`Command::Start`].
    Ready {},
    Status(Status),
    /// A [`Command::Stop`] finished: the page may terminate the worker.
    Stopped {},
    /// The worker panicked. What could be saved was sent; the page should
    /// replace this Web Worker with a fresh one.
    Crashed {
        error: String,
    },
}

impl Event {
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("events are plain data")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_decode_from_the_pages_json() {
        assert_eq!(
            Command::decode(
                r#"{"type":"start","url":"ws://h/ws/worker","session":"ab12","name":null,"cap":80}"#
            ),
            Ok(Command::Start {
                url: "ws://h/ws/worker".into(),
                session: "ab12".into(),
                name: None,
                cap: 80,
                paused: false,
            })
        );
        assert_eq!(
            Command::decode(r#"{"type":"cap","percent":30}"#),
            Ok(Command::Cap { percent: 30 })
        );
        assert_eq!(Command::decode(r#"{"type":"stop"}"#), Ok(Command::Stop {}));
        assert!(Command::decode(r#"{"type":"explode"}"#).is_err());
        assert!(Command::decode(r#"{"type":"pause","now":true}"#).is_err());
    }

    #[test]
    fn events_encode_as_the_page_reads_them() {
        assert_eq!(Event::Ready {}.encode(), r#"{"type":"ready"}"#);
        let status = Event::Status(Status {
            state: State::Working,
            worker: Some(3),
            tasks_done: 7,
            rate: 1.5,
            job: Some(2),
            kernel: Some("primes"),
            compute_ms: 12.0,
            queued: 4,
            error: None,
        });
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&status.encode()).unwrap(),
            serde_json::json!({"type": "status", "state": "working", "worker": 3,
                "tasks_done": 7, "rate": 1.5, "job": 2, "kernel": "primes",
                "compute_ms": 12.0, "queued": 4, "error": null})
        );
    }
}
