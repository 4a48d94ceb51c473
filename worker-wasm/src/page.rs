//! The messages between the donor page and one of its Web Workers, as types.
//! Both directions travel through `postMessage` as JSON text, decoded here at
//! the edge; `www/donor.js` is the other end.
//!
//! Page to worker: [`Command`]. Worker to page: [`Event`], whose
//! [`Status`] carries the figures the page shows, read from the worker's
//! [`WorkerSession`] plus the browser's own figures.
//!
//! The tab's blob cache is the page's ([`crate::blob_cache`]): a worker
//! asks it for a job's file with [`Event::FetchBlob`], and the page answers
//! with the one message that is not JSON, because it carries a `Blob`:
//! `{type: "blob", blob: "sha256:...", data: Blob}`, or `{type: "blob",
//! blob, error: "..."}` (decoded in [`crate::web`]). The page tells every
//! worker what the tab holds ([`Command::Start`]'s `holds`, then
//! [`Command::Holdings`] at each change), for its hellos and `holding`
//! messages.

use grid_kernels::{ContentDigest, KernelSpec};
use grid_protocol::session::WorkerSession;
use serde::{Deserialize, Serialize};

/// What the page asks of a worker.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Connect and work. Sent once, after the worker said [`Event::Ready`].
    Start(Start),
    /// What the tab's cache holds changed: used last first.
    Holdings {
        blobs: Vec<ContentDigest>,
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

/// [`Command::Start`]: where to connect, as whom, and how hard to work.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Start {
    /// The coordinator's worker socket, `ws(s)://host/ws/worker`.
    pub url: String,
    /// The tab's donor session id, shared by all its workers.
    pub session: String,
    #[serde(default)]
    pub name: Option<String>,
    /// The CPU cap in percent.
    pub cap: u32,
    /// Start paused (the donor paused before this worker was added).
    #[serde(default)]
    pub paused: bool,
    /// How long a user's task may run before it is stopped as a host
    /// fault, instead of the limit worked out from its fuel
    /// ([`grid_kernels::wasm::WasmLimits::time_limit_ms`]): the page's
    /// `?task_limit_ms=` parameter, for tests.
    #[serde(default)]
    pub task_limit_ms: Option<u64>,
    /// What the tab's cache holds, used last first.
    #[serde(default)]
    pub holds: Vec<ContentDigest>,
    /// Work only for these users' jobs: the page's `?for=` names. Empty:
    /// anyone's.
    #[serde(default, rename = "for")]
    pub for_users: Vec<String>,
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

impl State {
    /// Where `session` stands; `retrying` says a reconnect is scheduled.
    pub fn of(session: &WorkerSession, retrying: bool) -> State {
        if session.refused().is_some() {
            State::Refused
        } else if session.is_stopping() {
            State::Stopped
        } else if session.is_connected() {
            if session.is_paused() {
                State::Paused
            } else {
                State::Working
            }
        } else if retrying {
            State::Reconnecting
        } else {
            State::Connecting
        }
    }
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
    /// For a wasm job: which program it is, for the donor to see.
    pub program: Option<Program>,
    /// Whose job it is (a user's name), when the coordinator says.
    pub owner: Option<String>,
    /// Milliseconds spent running kernels.
    pub compute_ms: f64,
    /// Tasks received and not started.
    pub queued: u64,
    /// The last connection problem, for the page to show.
    pub error: Option<String>,
    /// Tasks failed because a file or input they read could not be had
    /// with the right bytes.
    pub blob_failures: u64,
}

impl Status {
    /// The figures of `session`, with the ones only the browser keeps: time
    /// spent in kernels and the recent task rate (`blob_failures` starts at
    /// 0; the driver counts them).
    pub fn of(session: &WorkerSession, retrying: bool, compute_ms: f64, rate: f64) -> Status {
        let job = session.current_job();
        Status {
            state: State::of(session, retrying),
            worker: session.worker_id(),
            tasks_done: session.tasks_done(),
            rate,
            job: job.map(|(id, _)| id),
            kernel: job.map(|(_, spec)| spec.kind().name()),
            program: job.and_then(|(_, spec)| match spec {
                KernelSpec::Wasm(p) => Some(Program {
                    name: p.name.clone(),
                    module: p.module.to_string(),
                    description: p.description.clone(),
                }),
                _ => None,
            }),
            owner: session.current_owner().map(String::from),
            compute_ms,
            queued: session.queued_tasks(),
            error: session.last_error().map(String::from),
            blob_failures: 0,
        }
    }
}

/// The user's program a wasm job runs: its name (argv[0]), the digest of
/// the prepared module every worker runs, and what its submitter says it
/// does.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Program {
    pub name: String,
    pub module: String,
    pub description: Option<String>,
}

/// What a worker tells the page.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The WebAssembly module is loaded; send [`Command::Start`].
    Ready {},
    Status(Status),
    /// The tab's cache should get this file of a job (checked against its
    /// digest) and answer with its `Blob`; `capability` is the batch's, for
    /// the coordinator.
    FetchBlob {
        blob: ContentDigest,
        size: u64,
        capability: Option<String>,
    },
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
    use grid_kernels::KernelSpec;
    use grid_kernels::spec::PrimesParams;
    use grid_protocol::session::{Ended, Next};
    use grid_protocol::{CoordinatorMessage, Hello, PROTOCOL_VERSION, WorkerKind};

    fn session() -> WorkerSession {
        WorkerSession::new(Hello {
            holds: Vec::new(),
            for_users: Vec::new(),
            protocol: PROTOCOL_VERSION,
            kind: WorkerKind::Browser,
            threads: 1,
            name: None,
            session: Some("tab".into()),
            kernels: None,
        })
    }

    /// Batch 1 of `job`: its first `tasks` tasks (written as the wire has
    /// it, so fields the protocol adds later take their defaults).
    fn batch(job: u64, spec: &KernelSpec, tasks: u32) -> String {
        serde_json::json!({
            "type": "batch", "batch": 1, "job": job, "spec": spec,
            "job_tasks": tasks, "tasks": [[0, tasks]], "lease_ms": 60_000
        })
        .to_string()
    }

    fn welcome() -> String {
        CoordinatorMessage::Welcome {
            worker: 7,
            heartbeat_ms: 1000,
            idle_timeout_ms: 5000,
            max_frame_bytes: 1 << 24,
        }
        .encode()
    }

    #[test]
    fn the_state_follows_the_session() {
        let mut worker = session();
        assert_eq!(State::of(&worker, false), State::Connecting);
        worker.on_open(0);
        assert_eq!(State::of(&worker, false), State::Connecting);
        worker.on_text(&welcome(), 1).unwrap();
        assert_eq!(State::of(&worker, false), State::Working);
        worker.pause();
        assert_eq!(State::of(&worker, false), State::Paused);
        let next = worker.on_closed(Ended::Dropped(String::new()), 2, 0.5);
        assert!(matches!(next, Next::Reconnect { .. }));
        assert_eq!(State::of(&worker, true), State::Reconnecting);
        assert_eq!(State::of(&worker, false), State::Connecting);
        worker.on_open(300);
        worker.on_text(&welcome(), 301).unwrap();
        assert_eq!(State::of(&worker, false), State::Paused);
        worker.stop();
        assert_eq!(State::of(&worker, false), State::Stopped);

        let mut refused = session();
        refused.on_open(0);
        let quarantined = Ended::Closed {
            code: Some(4008),
            reason: "quarantined".into(),
        };
        assert!(matches!(
            refused.on_closed(quarantined, 1, 0.5),
            Next::Refused(_)
        ));
        assert_eq!(State::of(&refused, false), State::Refused);
    }

    #[test]
    fn the_status_reads_the_session_and_the_browsers_figures() {
        let mut worker = session();
        worker.on_open(0);
        worker.on_text(&welcome(), 1).unwrap();
        let spec = KernelSpec::Primes(PrimesParams {
            start: 0,
            end: 1000,
        });
        worker.on_text(&batch(3, &spec, 3), 2).unwrap();
        let task = worker.start_task().unwrap();
        assert!(worker.finish_task(&task, &grid_kernels::TaskOutput::Count(25)));
        assert_eq!(
            Status::of(&worker, false, 12.0, 1.5),
            Status {
                state: State::Working,
                worker: Some(7),
                tasks_done: 1,
                rate: 1.5,
                job: Some(3),
                kernel: Some("primes"),
                program: None,
                owner: None,
                compute_ms: 12.0,
                queued: 2,
                error: None,
                blob_failures: 0,
            }
        );
        worker.on_closed(Ended::Dropped(String::new()), 3, 0.5);
        let status = Status::of(&worker, true, 12.0, 0.0);
        assert_eq!(status.state, State::Reconnecting);
        assert_eq!(status.error.as_deref(), Some("the connection dropped"));
        assert_eq!((status.worker, status.queued, status.job), (None, 0, None));
    }

    #[test]
    fn the_donor_sees_whose_job_it_computes() {
        let mut worker = session();
        worker.on_open(0);
        worker.on_text(&welcome(), 1).unwrap();
        let spec = KernelSpec::Primes(PrimesParams { start: 0, end: 100 });
        worker.on_text(&batch(4, &spec, 2), 2).unwrap();
        assert_eq!(Status::of(&worker, false, 0.0, 0.0).owner, None);
        let mut owned: serde_json::Value = serde_json::from_str(&batch(5, &spec, 2)).unwrap();
        owned["batch"] = 2.into();
        owned["owner"] = "alice".into();
        worker.on_text(&owned.to_string(), 3).unwrap();
        // The oldest batch held is job 4's, which named nobody.
        assert_eq!(Status::of(&worker, false, 0.0, 0.0).owner, None);
        worker
            .on_text(&CoordinatorMessage::Revoke { batch: 1 }.encode(), 4)
            .unwrap();
        let status = Status::of(&worker, false, 0.0, 0.0);
        assert_eq!(
            (status.job, status.owner.as_deref()),
            (Some(5), Some("alice"))
        );
    }

    #[test]
    fn a_wasm_jobs_program_is_named_for_the_donor() {
        let mut worker = session();
        worker.on_open(0);
        worker.on_text(&welcome(), 1).unwrap();
        let digest = grid_kernels::ContentDigest::of(b"prepared");
        let params = grid_kernels::wasm::WasmParams {
            module: digest,
            source: digest,
            name: "sweep.wasm".into(),
            args: Vec::new(),
            fuel: 1000,
            memory_mib: 1,
            stdout_bytes: 10,
            stderr_bytes: 10,
            seed: 0,
            description: Some("an oscillator sweep".into()),
            files: Vec::new(),
        };
        worker
            .on_text(&batch(4, &KernelSpec::Wasm(params), 2), 2)
            .unwrap();
        let status = Status::of(&worker, false, 0.0, 0.0);
        assert_eq!(
            (status.job, status.kernel, status.program),
            (
                Some(4),
                Some("wasm"),
                Some(Program {
                    name: "sweep.wasm".into(),
                    module: digest.to_string(),
                    description: Some("an oscillator sweep".into()),
                })
            )
        );
    }

    #[test]
    fn commands_decode_from_the_pages_json() {
        assert_eq!(
            Command::decode(
                r#"{"type":"start","url":"ws://h/ws/worker","session":"ab12","name":null,"cap":80}"#
            ),
            Ok(Command::Start(Start {
                url: "ws://h/ws/worker".into(),
                session: "ab12".into(),
                name: None,
                cap: 80,
                paused: false,
                task_limit_ms: None,
                holds: Vec::new(),
                ..Start::default()
            }))
        );
        assert_eq!(
            Command::decode(
                r#"{"type":"start","url":"ws://h/ws/worker","session":"ab12","cap":80,"task_limit_ms":1500}"#
            ),
            Ok(Command::Start(Start {
                url: "ws://h/ws/worker".into(),
                session: "ab12".into(),
                name: None,
                cap: 80,
                paused: false,
                task_limit_ms: Some(1500),
                holds: Vec::new(),
                ..Start::default()
            }))
        );
        assert_eq!(
            Command::decode(
                r#"{"type":"start","url":"ws://h/ws/worker","session":"ab12","cap":80,"for":["alice","bob"]}"#
            ),
            Ok(Command::Start(Start {
                url: "ws://h/ws/worker".into(),
                session: "ab12".into(),
                cap: 80,
                for_users: vec!["alice".into(), "bob".into()],
                ..Start::default()
            }))
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
            kernel: Some("wasm"),
            program: Some(Program {
                name: "sweep.wasm".into(),
                module: "sha256:ab".into(),
                description: Some("an oscillator sweep".into()),
            }),
            owner: Some("alice".into()),
            compute_ms: 12.0,
            queued: 4,
            error: None,
            blob_failures: 1,
        });
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&status.encode()).unwrap(),
            serde_json::json!({"type": "status", "state": "working", "worker": 3,
                "tasks_done": 7, "rate": 1.5, "job": 2, "kernel": "wasm",
                "program": {"name": "sweep.wasm", "module": "sha256:ab",
                            "description": "an oscillator sweep"},
                "owner": "alice",
                "compute_ms": 12.0, "queued": 4, "error": null, "blob_failures": 1})
        );
        let digest = grid_kernels::ContentDigest::of(b"scene");
        let fetch = Event::FetchBlob {
            blob: digest,
            size: 5,
            capability: Some("cap".into()),
        };
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&fetch.encode()).unwrap(),
            serde_json::json!({"type": "fetch_blob", "blob": digest.to_string(),
                "size": 5, "capability": "cap"})
        );
    }

    #[test]
    fn the_tabs_holdings_decode() {
        let a = grid_kernels::ContentDigest::of(b"a");
        let b = grid_kernels::ContentDigest::of(b"b");
        assert_eq!(
            Command::decode(&format!(
                r#"{{"type":"start","url":"ws://h/ws/worker","session":"s","cap":100,"holds":["{a}","{b}"]}}"#
            )),
            Ok(Command::Start(Start {
                url: "ws://h/ws/worker".into(),
                session: "s".into(),
                name: None,
                cap: 100,
                paused: false,
                task_limit_ms: None,
                holds: vec![a, b],
                ..Start::default()
            }))
        );
        assert_eq!(
            Command::decode(&format!(r#"{{"type":"holdings","blobs":["{b}"]}}"#)),
            Ok(Command::Holdings { blobs: vec![b] })
        );
        assert!(Command::decode(r#"{"type":"holdings","blobs":["sha256:zz"]}"#).is_err());
    }
}
