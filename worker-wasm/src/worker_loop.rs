//! The browser worker's protocol loop without I/O: what to send on open, what
//! each coordinator message does, when to flush results and send heartbeats,
//! and what pause, resume and stop hand back. It wraps the shared
//! [`WorkerCore`] the native worker drives too, so both behave alike; the
//! glue in [`crate::web`] only moves bytes between it, a browser WebSocket,
//! timers and the page.
//!
//! Every entry point takes the current time (`performance.now()`, in ms) and
//! queues what must go out; the glue drains [`WorkerLoop::take_outgoing`].
//! Nothing here survives a reconnect except the donor's figures and whether
//! the donor paused: the coordinator re-issues a dropped connection's tasks.

use std::collections::VecDeque;

use grid_kernels::TaskOutput;
use grid_protocol::worker::{TaskRef, WorkerCore};
use grid_protocol::{
    CoordinatorMessage, DecodeError, Hello, PROTOCOL_VERSION, WorkerKind, WorkerMessage,
};

use crate::pacing::RateMeter;
use crate::page::{State, Status};

/// How often results of unfinished batches are flushed, so that leases see
/// progress and the donor's results are never held back for long.
pub const FLUSH_MS: f64 = 200.0;
/// How long to wait for the welcome after the socket opens.
pub const WELCOME_TIMEOUT_MS: f64 = 10_000.0;
/// The longest error text sent in a `failed` message.
const MAX_ERROR_CHARS: usize = 1000;

/// One frame to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    Text(String),
    Binary(Vec<u8>),
}

impl Outgoing {
    fn message(message: &WorkerMessage) -> Outgoing {
        Outgoing::Text(message.encode())
    }
}

/// Why the glue should drop the connection and dial again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The coordinator sent something that is not the protocol.
    Protocol(String),
    /// No welcome, or nothing at all, for too long.
    Silent(String),
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Protocol(reason) | Fault::Silent(reason) => f.write_str(reason),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// No socket, or one that is not open yet.
    Offline,
    /// Hello sent, waiting for the welcome.
    Greeting { since: f64 },
    Connected {
        worker: u64,
        heartbeat_ms: f64,
        idle_timeout_ms: f64,
    },
}

/// The protocol loop of one browser worker connection (and its successors
/// after reconnects).
#[derive(Debug)]
pub struct WorkerLoop {
    hello: Hello,
    phase: Phase,
    core: WorkerCore,
    /// Bumped for every new core.
    generation: u64,
    /// The donor paused (or the tab is hidden): no new work.
    paused: bool,
    /// The donor left: hand everything back and take nothing new.
    stopping: bool,
    outgoing: VecDeque<Outgoing>,
    last_sent: f64,
    last_received: f64,
    last_flush: f64,
    /// The task being computed, for a panic to name.
    current: Option<TaskRef>,
    tasks_done: u64,
    compute_ms: f64,
    rate: RateMeter,
    results_rejected: u64,
    error: Option<String>,
}

impl WorkerLoop {
    /// A loop for a browser worker of donor session `session`.
    pub fn new(session: String, name: Option<String>) -> WorkerLoop {
        WorkerLoop {
            hello: Hello {
                protocol: PROTOCOL_VERSION,
                kind: WorkerKind::Browser,
                threads: 1,
                name: name.filter(|n| !n.trim().is_empty()),
                session: Some(session),
            },
            phase: Phase::Offline,
            core: WorkerCore::new(0),
            generation: 0,
            paused: false,
            stopping: false,
            outgoing: VecDeque::new(),
            last_sent: 0.0,
            last_received: 0.0,
            last_flush: 0.0,
            current: None,
            tasks_done: 0,
            compute_ms: 0.0,
            rate: RateMeter::new(5_000.0),
            results_rejected: 0,
            error: None,
        }
    }

    pub fn hello(&self) -> &Hello {
        &self.hello
    }

    fn send(&mut self, message: &WorkerMessage) {
        self.outgoing.push_back(Outgoing::message(message));
    }

    /// Frames and messages to send, in order.
    pub fn take_outgoing(&mut self, now: f64) -> Vec<Outgoing> {
        if !self.outgoing.is_empty() {
            self.last_sent = now;
        }
        self.outgoing.drain(..).collect()
    }

    /// The socket opened: say hello (and, if the donor paused meanwhile,
    /// that this worker wants no work).
    fn new_core(&mut self) {
        self.generation += 1;
        self.core = WorkerCore::new(self.generation);
    }

    pub fn on_open(&mut self, now: f64) {
        self.new_core();
        self.current = None;
        self.phase = Phase::Greeting { since: now };
        self.last_received = now;
        self.outgoing.clear();
        let hello = WorkerMessage::Hello(self.hello.clone());
        self.send(&hello);
        if self.paused || self.stopping {
            self.send(&WorkerMessage::Pause {});
        }
    }

    /// The socket closed or failed. Held work is dropped: the coordinator
    /// re-issues a dropped connection's tasks.
    pub fn on_closed(&mut self, reason: Option<String>) {
        self.phase = Phase::Offline;
        self.new_core();
        self.current = None;
        self.outgoing.clear();
        if reason.is_some() {
            self.error = reason;
        }
    }

    /// A text frame from the coordinator.
    pub fn on_text(&mut self, text: &str, now: f64) -> Result<(), Fault> {
        self.last_received = now;
        let message = CoordinatorMessage::decode(text)
            .map_err(|e: DecodeError| Fault::Protocol(e.to_string()))?;
        match (message, &self.phase) {
            (
                CoordinatorMessage::Welcome {
                    worker,
                    heartbeat_ms,
                    idle_timeout_ms,
                    ..
                },
                Phase::Greeting { .. },
            ) => {
                self.phase = Phase::Connected {
                    worker,
                    heartbeat_ms: heartbeat_ms.max(100) as f64,
                    idle_timeout_ms: idle_timeout_ms.max(1000) as f64,
                };
                self.last_flush = now;
                self.error = None;
            }
            (_, Phase::Offline | Phase::Greeting { .. }) => {
                return Err(Fault::Protocol(
                    "the coordinator sent a message before its welcome".into(),
                ));
            }
            (CoordinatorMessage::Welcome { .. }, Phase::Connected { .. }) => {
                return Err(Fault::Protocol("a second welcome".into()));
            }
            (CoordinatorMessage::Batch(batch), Phase::Connected { .. }) => {
                if self.paused || self.stopping {
                    // Sent before our pause arrived: give it straight back.
                    self.send(&WorkerMessage::Return {
                        batch: batch.batch,
                        tasks: batch.tasks,
                    });
                } else {
                    self.core.on_batch(batch);
                }
            }
            (CoordinatorMessage::Revoke { batch }, Phase::Connected { .. }) => {
                self.core.on_revoke(batch)
            }
            (CoordinatorMessage::Ack { rejected, .. }, Phase::Connected { .. }) => {
                self.results_rejected += u64::from(rejected);
            }
            (CoordinatorMessage::Heartbeat {}, Phase::Connected { .. }) => {
                self.send(&WorkerMessage::Heartbeat {});
            }
        }
        Ok(())
    }

    /// A binary frame from the coordinator, which never sends one.
    pub fn on_binary(&mut self, len: usize) -> Fault {
        Fault::Protocol(format!(
            "the coordinator sent a {len}-byte binary frame; only workers send those"
        ))
    }

    /// Periodic housekeeping (every [`FLUSH_MS`] or so): flush results,
    /// heartbeat when quiet, notice a silent coordinator.
    pub fn tick(&mut self, now: f64) -> Result<(), Fault> {
        self.rate.record(now, self.tasks_done);
        match self.phase {
            Phase::Offline => Ok(()),
            Phase::Greeting { since } => {
                if now - since > WELCOME_TIMEOUT_MS {
                    Err(Fault::Silent(format!(
                        "no welcome within {WELCOME_TIMEOUT_MS} ms"
                    )))
                } else {
                    Ok(())
                }
            }
            Phase::Connected {
                heartbeat_ms,
                idle_timeout_ms,
                ..
            } => {
                if now - self.last_received > idle_timeout_ms {
                    return Err(Fault::Silent(format!(
                        "nothing from the coordinator for {idle_timeout_ms} ms"
                    )));
                }
                if now - self.last_flush >= FLUSH_MS {
                    self.last_flush = now;
                    self.queue_frames(true);
                }
                if self.outgoing.is_empty() && now - self.last_sent >= heartbeat_ms {
                    self.send(&WorkerMessage::Heartbeat {});
                }
                Ok(())
            }
        }
    }

    fn queue_frames(&mut self, flush: bool) {
        for frame in self.core.take_frames(flush) {
            self.outgoing.push_back(Outgoing::Binary(frame));
        }
    }

    /// Sends finished results, then `pause` (so the coordinator does not give
    /// the tasks straight back), then the unstarted tasks.
    fn hand_back(&mut self) {
        if !matches!(self.phase, Phase::Connected { .. }) {
            return;
        }
        let returns = self.core.hand_back_unstarted();
        self.queue_frames(true);
        self.send(&WorkerMessage::Pause {});
        for message in returns {
            self.send(&message);
        }
    }

    pub fn pause(&mut self) {
        if self.paused || self.stopping {
            return;
        }
        self.paused = true;
        self.hand_back();
    }

    pub fn resume(&mut self) {
        if !self.paused || self.stopping {
            return;
        }
        self.paused = false;
        if matches!(self.phase, Phase::Connected { .. }) {
            self.send(&WorkerMessage::Resume {});
        }
    }

    /// The donor left: everything finished goes out, everything else back.
    /// The glue closes the socket once the outgoing queue is sent.
    pub fn stop(&mut self) {
        if self.stopping {
            return;
        }
        if !self.paused {
            self.hand_back();
        }
        self.stopping = true;
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping
    }

    pub fn is_connected(&self) -> bool {
        matches!(self.phase, Phase::Connected { .. })
    }

    /// Whether a compute turn would find a task.
    pub fn has_work(&self) -> bool {
        self.is_connected() && !self.paused && !self.stopping && self.core.queued_tasks() > 0
    }

    /// The next task to compute, if the worker is working.
    pub fn start_task(&mut self) -> Option<TaskRef> {
        if !self.has_work() {
            return None;
        }
        let task = self.core.next_task()?;
        self.current = Some(task.clone());
        Some(task)
    }

    /// Records a computed output that took `elapsed_ms`.
    pub fn finish_task(&mut self, task: &TaskRef, output: &TaskOutput, elapsed_ms: f64) {
        self.current = None;
        self.compute_ms += elapsed_ms;
        if self.core.complete(task, output) {
            self.tasks_done += 1;
        }
    }

    /// The end of a compute turn: finished batches go out at once.
    pub fn end_turn(&mut self) {
        self.queue_frames(false);
    }

    /// The kernel panicked on the current task: tell the coordinator which
    /// task and why, send what is finished and hand back the rest. The glue
    /// then closes the connection (the WebAssembly instance is unusable after
    /// a panic) and the page starts a fresh Web Worker.
    pub fn on_panic(&mut self, message: &str) {
        let mut error: String = format!("panic: {message}")
            .chars()
            .take(MAX_ERROR_CHARS)
            .collect();
        if error.len() >= MAX_ERROR_CHARS {
            error.push('…');
        }
        if let Some(task) = self.current.take() {
            if self.is_connected() {
                if let Some(failed) = self.core.fail(&task, error.clone()) {
                    self.send(&failed);
                }
            }
        }
        self.stop();
        self.error = Some(error);
    }

    /// The figures for the page.
    pub fn status(&self, retrying: bool) -> Status {
        let state = match (&self.phase, self.stopping, self.paused) {
            (_, true, _) => State::Stopped,
            (Phase::Connected { .. }, _, true) => State::Paused,
            (Phase::Connected { .. }, _, false) => State::Working,
            (Phase::Greeting { .. }, _, _) => State::Connecting,
            (Phase::Offline, _, _) if retrying => State::Reconnecting,
            (Phase::Offline, _, _) => State::Connecting,
        };
        let worker = match self.phase {
            Phase::Connected { worker, .. } => Some(worker),
            _ => None,
        };
        let job = self.core.current_job();
        Status {
            state,
            worker,
            tasks_done: self.tasks_done,
            rate: self.rate.per_second(),
            job: job.map(|(id, _)| id),
            kernel: job.map(|(_, spec)| spec.kind().name()),
            compute_ms: self.compute_ms,
            queued: self.core.queued_tasks(),
            error: self.error.clone(),
        }
    }

    pub fn results_rejected(&self) -> u64 {
        self.results_rejected
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use grid_kernels::spec::PrimesParams;
    use grid_kernels::{KernelSpec, TaskRunner};
    use grid_protocol::{Batch, ResultsFrame, TaskRanges};

    fn welcome() -> String {
        CoordinatorMessage::Welcome {
            worker: 7,
            heartbeat_ms: 1000,
            idle_timeout_ms: 5000,
            max_frame_bytes: 1 << 24,
        }
        .encode()
    }

    fn batch(id: u64, indices: &[u32]) -> String {
        CoordinatorMessage::Batch(Batch {
            batch: id,
            job: 3,
            spec: KernelSpec::Primes(PrimesParams {
                start: 0,
                end: 1000,
            }),
            job_tasks: 10,
            tasks: TaskRanges::from_indices(indices.iter().copied()),
            lease_ms: 60_000,
        })
        .encode()
    }

    fn decoded(out: &[Outgoing]) -> Vec<String> {
        out.iter()
            .map(|o| match o {
                Outgoing::Text(t) => t.clone(),
                Outgoing::Binary(b) => {
                    let frame = ResultsFrame::decode(b).unwrap();
                    let tasks: Vec<u32> = frame.results.iter().map(|r| r.task).collect();
                    format!("results {} {:?}", frame.batch, tasks)
                }
            })
            .collect()
    }

    fn connected() -> WorkerLoop {
        let mut worker = WorkerLoop::new("tab-1".into(), Some("kiosk".into()));
        worker.on_open(0.0);
        let hello = decoded(&worker.take_outgoing(0.0));
        assert_eq!(
            hello,
            [
                r#"{"type":"hello","protocol":1,"kind":"browser","threads":1,"name":"kiosk","session":"tab-1"}"#
            ]
        );
        worker.on_text(&welcome(), 1.0).unwrap();
        worker
    }

    fn run_turn(worker: &mut WorkerLoop, max_tasks: usize) -> usize {
        let mut runner = TaskRunner::new();
        let mut ran = 0;
        while ran < max_tasks {
            let Some(task) = worker.start_task() else {
                break;
            };
            let output = runner.run(&task.spec, task.job_tasks, task.index);
            worker.finish_task(&task, &output, 1.0);
            ran += 1;
        }
        worker.end_turn();
        ran
    }

    #[test]
    fn a_batch_is_computed_and_its_results_sent_in_one_frame() {
        let mut worker = connected();
        worker.on_text(&batch(1, &[0, 1, 2]), 2.0).unwrap();
        assert_eq!(worker.status(false).queued, 3);
        assert_eq!(worker.status(false).kernel, Some("primes"));
        assert_eq!(run_turn(&mut worker, 100), 3);
        let out = worker.take_outgoing(3.0);
        assert_eq!(decoded(&out), ["results 1 [0, 1, 2]"]);
        let Outgoing::Binary(bytes) = &out[0] else {
            panic!()
        };
        // Task 0 of 10 covers [0, 100): 25 primes.
        assert_eq!(
            ResultsFrame::decode(bytes).unwrap().results[0].output[..],
            25u64.to_le_bytes()
        );
        let status = worker.status(false);
        assert_eq!((status.state, status.tasks_done), (State::Working, 3));
        assert_eq!(status.worker, Some(7));
    }

    #[test]
    fn unfinished_batches_flush_on_the_tick_and_quiet_connections_heartbeat() {
        let mut worker = connected();
        worker.on_text(&batch(1, &[0, 1, 2]), 2.0).unwrap();
        run_turn(&mut worker, 1);
        assert!(worker.take_outgoing(3.0).is_empty());
        worker.tick(FLUSH_MS + 10.0).unwrap();
        assert_eq!(
            decoded(&worker.take_outgoing(FLUSH_MS + 10.0)),
            ["results 1 [0]"]
        );
        worker.on_text(r#"{"type":"heartbeat"}"#, 300.0).unwrap();
        assert_eq!(
            decoded(&worker.take_outgoing(300.0)),
            [r#"{"type":"heartbeat"}"#]
        );
        worker.tick(1_000.0).unwrap();
        assert!(worker.take_outgoing(1_000.0).is_empty());
        worker.tick(1_400.0).unwrap();
        assert_eq!(
            decoded(&worker.take_outgoing(1_400.0)),
            [r#"{"type":"heartbeat"}"#]
        );
        // Five seconds of silence from the coordinator is a dead connection.
        assert!(matches!(worker.tick(5_400.0), Err(Fault::Silent(_))));
    }

    #[test]
    fn pause_sends_results_then_pause_then_hands_back_and_resume_resumes() {
        let mut worker = connected();
        worker.on_text(&batch(1, &[0, 1, 2, 3]), 2.0).unwrap();
        run_turn(&mut worker, 1);
        worker.pause();
        assert_eq!(
            decoded(&worker.take_outgoing(3.0)),
            [
                "results 1 [0]",
                r#"{"type":"pause"}"#,
                r#"{"type":"return","batch":1,"tasks":[[1,4]]}"#
            ]
        );
        assert_eq!(worker.status(false).state, State::Paused);
        assert!(worker.start_task().is_none());
        // A batch that crossed the pause goes straight back.
        worker.on_text(&batch(2, &[5, 6]), 4.0).unwrap();
        assert_eq!(
            decoded(&worker.take_outgoing(4.0)),
            [r#"{"type":"return","batch":2,"tasks":[[5,7]]}"#]
        );
        worker.resume();
        assert_eq!(
            decoded(&worker.take_outgoing(5.0)),
            [r#"{"type":"resume"}"#]
        );
        worker.on_text(&batch(3, &[1, 2, 3]), 6.0).unwrap();
        assert_eq!(run_turn(&mut worker, 100), 3);
    }

    #[test]
    fn revoked_batches_are_dropped() {
        let mut worker = connected();
        worker.on_text(&batch(1, &[0, 1]), 2.0).unwrap();
        worker.on_text(&batch(2, &[5]), 2.0).unwrap();
        worker
            .on_text(r#"{"type":"revoke","batch":1}"#, 3.0)
            .unwrap();
        assert_eq!(run_turn(&mut worker, 100), 1);
        assert_eq!(decoded(&worker.take_outgoing(4.0)), ["results 2 [5]"]);
    }

    #[test]
    fn stop_hands_everything_back_and_takes_nothing_new() {
        let mut worker = connected();
        worker.on_text(&batch(1, &[0, 1, 2]), 2.0).unwrap();
        run_turn(&mut worker, 2);
        worker.stop();
        assert_eq!(
            decoded(&worker.take_outgoing(3.0)),
            [
                "results 1 [0, 1]",
                r#"{"type":"pause"}"#,
                r#"{"type":"return","batch":1,"tasks":[[2,3]]}"#
            ]
        );
        assert!(worker.start_task().is_none());
        assert_eq!(worker.status(false).state, State::Stopped);
    }

    #[test]
    fn a_panic_fails_its_task_and_saves_the_rest() {
        let mut worker = connected();
        worker.on_text(&batch(4, &[0, 1, 2, 3]), 2.0).unwrap();
        run_turn(&mut worker, 1);
        let _running = worker.start_task().unwrap();
        worker.on_panic("index out of bounds at kernels/src/primes.rs:10:5");
        assert_eq!(
            decoded(&worker.take_outgoing(3.0)),
            [
                r#"{"type":"failed","batch":4,"task":1,"error":"panic: index out of bounds at kernels/src/primes.rs:10:5"}"#,
                "results 4 [0]",
                r#"{"type":"pause"}"#,
                r#"{"type":"return","batch":4,"tasks":[[2,4]]}"#
            ]
        );
    }

    #[test]
    fn a_reconnect_starts_clean_and_remembers_the_pause() {
        let mut worker = connected();
        worker.on_text(&batch(1, &[0, 1]), 2.0).unwrap();
        worker.pause();
        worker.on_closed(Some("the connection dropped".into()));
        assert_eq!(worker.status(true).state, State::Reconnecting);
        assert_eq!(
            worker.status(true).error.as_deref(),
            Some("the connection dropped")
        );
        worker.on_open(10.0);
        let out = decoded(&worker.take_outgoing(10.0));
        assert_eq!(out.len(), 2);
        assert_eq!(out[1], r#"{"type":"pause"}"#);
        assert_eq!(worker.status(false).queued, 0);
    }

    #[test]
    fn protocol_faults_are_reported_not_ignored() {
        let mut worker = WorkerLoop::new("s".into(), None);
        worker.on_open(0.0);
        assert!(matches!(
            worker.on_text(&batch(1, &[0]), 1.0),
            Err(Fault::Protocol(_))
        ));
        assert!(matches!(
            worker.on_text("not json", 1.0),
            Err(Fault::Protocol(_))
        ));
        assert!(matches!(worker.tick(20_000.0), Err(Fault::Silent(_))));
        let mut worker = connected();
        assert!(matches!(
            worker.on_text(&welcome(), 2.0),
            Err(Fault::Protocol(_))
        ));
    }
}
