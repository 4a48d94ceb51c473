//! A worker's whole session with the coordinator, without I/O: no sockets, no
//! clock, no async. Events go in (the socket opened, a message arrived, it
//! closed, a task finished, a tick), frames to send and decisions come out.
//! Both workers are thin drivers of it: the browser's (`worker-wasm`, a Web
//! Worker and a browser WebSocket) and the native one (tokio and threads).
//!
//! Time is milliseconds as `u64` from any monotonic origin, passed into every
//! entry point that needs it; the browser passes `performance.now()`.
//!
//! The rules it owns (`PROTOCOL.md`, "Worker connection"):
//!
//! 1. On open it sends `hello`, and `pause` at once if the donor paused (or
//!    the worker is stopping) while it was offline.
//! 2. The first message must be `welcome` within [`WELCOME_TIMEOUT_MS`];
//!    anything else first, or a second welcome, is a [`Fault`].
//! 3. A connection that receives nothing for the welcome's `idle_timeout_ms`
//!    (at least [`MIN_IDLE_TIMEOUT_MS`]) is dead: [`WorkerSession::tick`]
//!    says so, and the driver closes it.
//! 4. Results of unfinished batches go out every [`FLUSH_MS`]; finished
//!    batches at the end of each compute turn. A `heartbeat` goes out when
//!    nothing was sent for the welcome's `heartbeat_ms`, and answers the
//!    coordinator's.
//! 5. Pause and stop send finished results, then `pause`, then `return` the
//!    unstarted tasks; a batch that crossed the pause goes straight back.
//!    Nothing new starts while paused or stopping.
//! 6. Nothing survives a reconnect but the figures and whether the donor
//!    paused: the coordinator re-issues a dropped connection's tasks. A task
//!    computed under an earlier connection is never recorded into a later
//!    one (the connection generation in [`TaskRef`]).
//! 7. After a close the worker dials again after a [`Backoff`] delay, which
//!    starts over when the connection was welcomed and lasted
//!    [`Backoff::STABLE_MS`]; it does not dial again after a close code that
//!    says it is unwelcome ([`CloseCode::should_reconnect`]), nor once it is
//!    stopping.
//!
//! Drivers call [`WorkerSession::tick`] every [`TICK_MS`], send what
//! [`WorkerSession::take_outgoing`] returns after every call that may queue
//! something, close the socket on a [`Fault`], and do what
//! [`WorkerSession::on_closed`] answers.

use std::collections::{BTreeSet, VecDeque};

use grid_kernels::{ContentDigest, KernelSpec, TaskOutput};

use crate::backoff::Backoff;
use crate::close::CloseCode;
use crate::messages::{CoordinatorMessage, Hello, MAX_HOLDINGS, WorkerMessage};
use crate::worker::{TaskRef, WorkerCore};

/// How often drivers call [`WorkerSession::tick`].
pub const TICK_MS: u64 = 200;
/// How often results of unfinished batches are flushed, so that leases see
/// progress and results are never held back for long.
pub const FLUSH_MS: u64 = 200;
/// How long to wait for the welcome after the socket opens.
pub const WELCOME_TIMEOUT_MS: u64 = 10_000;
/// How long a driver waits for a socket to open (TCP, TLS and the upgrade).
pub const CONNECT_TIMEOUT_MS: u64 = 10_000;
/// The longest error text sent in a `failed` message, in characters.
pub const MAX_ERROR_CHARS: usize = 1000;
/// The shortest heartbeat period taken from a welcome.
pub const MIN_HEARTBEAT_MS: u64 = 100;
/// The shortest idle timeout taken from a welcome.
pub const MIN_IDLE_TIMEOUT_MS: u64 = 1000;

/// One frame to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    Text(String),
    Binary(Vec<u8>),
}

/// Why the driver should drop the connection (and then tell
/// [`WorkerSession::on_closed`] with [`Ended::Fault`]).
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

/// How an open connection ended, as the driver saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The coordinator sent a close frame; `code` is `None` when it carried
    /// none (a browser reports that as 1005).
    Closed { code: Option<u16>, reason: String },
    /// The connection broke without a close frame (a browser reports that as
    /// 1006); the runtime's description, possibly empty.
    Dropped(String),
    /// This worker closed it because of a fault.
    Fault(Fault),
    /// This worker closed it after [`WorkerSession::stop`].
    Stopped,
}

impl Ended {
    /// The sentence for the donor page and the log.
    pub fn explain(&self) -> String {
        match self {
            Ended::Closed { code, reason } => {
                let known = code.and_then(CloseCode::from_code);
                match (code, known, reason.is_empty()) {
                    (Some(code), _, false) => {
                        format!("the coordinator closed the connection: {reason} ({code})")
                    }
                    (None, _, false) => {
                        format!("the coordinator closed the connection: {reason}")
                    }
                    (Some(code), Some(known), true) => {
                        format!("the connection closed: {} ({code})", known.name())
                    }
                    (Some(code), None, true) => format!("the connection closed ({code})"),
                    (None, _, true) => "the coordinator closed the connection".into(),
                }
            }
            Ended::Dropped(detail) if detail.is_empty() => "the connection dropped".into(),
            Ended::Dropped(detail) => format!("the connection dropped: {detail}"),
            Ended::Fault(fault) => fault.to_string(),
            Ended::Stopped => "the worker stopped".into(),
        }
    }

    /// The close code, if it says this worker is not welcome back.
    fn refusal(&self) -> Option<CloseCode> {
        match self {
            Ended::Closed {
                code: Some(code), ..
            } => CloseCode::from_code(*code).filter(|c| !c.should_reconnect()),
            _ => None,
        }
    }
}

/// What the driver does after a connection ended or a dial failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Dial again after this long.
    Reconnect { after_ms: u64 },
    /// The donor or operator stopped the worker: do not dial again.
    Stop,
    /// The coordinator refused this worker (close code 4001, 4008 or 4009);
    /// trying again as the same program is pointless. The sentence says why.
    Refused(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// No socket, or one that is not open yet.
    Offline,
    /// Hello sent, waiting for the welcome.
    Greeting { opened: u64 },
    Connected {
        opened: u64,
        worker: u64,
        heartbeat_ms: u64,
        idle_timeout_ms: u64,
    },
}

/// The protocol state of one worker: its current connection, if any, and
/// what carries over to the next.
#[derive(Debug)]
pub struct WorkerSession {
    hello: Hello,
    phase: Phase,
    core: WorkerCore,
    /// The generation of [`Self::core`], bumped for every new one.
    generation: u64,
    /// The donor paused (or the tab is hidden): no new work.
    paused: bool,
    /// The donor or operator stopped the worker: hand everything back and
    /// take nothing new.
    stopping: bool,
    outgoing: VecDeque<Outgoing>,
    last_sent: u64,
    last_received: u64,
    last_flush: u64,
    backoff: Backoff,
    tasks_done: u64,
    results_rejected: u64,
    error: Option<String>,
    refused: Option<String>,
    /// What the worker's cache holds, as the driver last said.
    holds: BTreeSet<ContentDigest>,
    /// What this connection's coordinator was told it holds.
    reported: BTreeSet<ContentDigest>,
}

impl WorkerSession {
    /// A session that introduces itself with `hello` on every connection.
    pub fn new(hello: Hello) -> WorkerSession {
        WorkerSession {
            hello,
            phase: Phase::Offline,
            core: WorkerCore::new(0),
            generation: 0,
            paused: false,
            stopping: false,
            outgoing: VecDeque::new(),
            last_sent: 0,
            last_received: 0,
            last_flush: 0,
            backoff: Backoff::new(),
            tasks_done: 0,
            results_rejected: 0,
            error: None,
            refused: None,
            holds: BTreeSet::new(),
            reported: BTreeSet::new(),
        }
    }

    pub fn hello(&self) -> &Hello {
        &self.hello
    }

    fn send(&mut self, message: &WorkerMessage) {
        self.outgoing.push_back(Outgoing::Text(message.encode()));
    }

    /// Frames to send, in order.
    pub fn take_outgoing(&mut self, now: u64) -> Vec<Outgoing> {
        if !self.outgoing.is_empty() {
            self.last_sent = now;
        }
        self.outgoing.drain(..).collect()
    }

    /// Forgets the connection: its batches, its unsent frames, its phase.
    fn reset_connection(&mut self, phase: Phase) {
        self.generation += 1;
        self.core = WorkerCore::new(self.generation);
        self.phase = phase;
        self.outgoing.clear();
    }

    /// What the worker's cache holds now, the blobs used last first. The
    /// first [`MAX_HOLDINGS`] go in every hello; while connected, a change
    /// is sent at once as a `holding` message with what was added and
    /// removed. Saying the same again sends nothing.
    pub fn set_holdings(&mut self, holds: impl IntoIterator<Item = ContentDigest>) {
        self.holds = holds.into_iter().take(MAX_HOLDINGS).collect();
        if matches!(self.phase, Phase::Offline) {
            return;
        }
        let added: Vec<ContentDigest> = self.holds.difference(&self.reported).copied().collect();
        let removed: Vec<ContentDigest> = self.reported.difference(&self.holds).copied().collect();
        if added.is_empty() && removed.is_empty() {
            return;
        }
        self.reported = self.holds.clone();
        self.send(&WorkerMessage::Holding { added, removed });
    }

    // --- The connection ---------------------------------------------------

    /// The socket opened: say hello (and, if the donor paused meanwhile,
    /// that this worker wants no work).
    pub fn on_open(&mut self, now: u64) {
        self.reset_connection(Phase::Greeting { opened: now });
        self.last_received = now;
        self.reported = self.holds.clone();
        let hello = WorkerMessage::Hello(Hello {
            holds: self.reported.iter().copied().collect(),
            ..self.hello.clone()
        });
        self.send(&hello);
        if self.paused || self.stopping {
            self.send(&WorkerMessage::Pause {});
        }
    }

    /// A text frame from the coordinator.
    pub fn on_text(&mut self, text: &str, now: u64) -> Result<(), Fault> {
        self.last_received = now;
        let message =
            CoordinatorMessage::decode(text).map_err(|e| Fault::Protocol(e.to_string()))?;
        match (message, &self.phase) {
            (
                CoordinatorMessage::Welcome {
                    worker,
                    heartbeat_ms,
                    idle_timeout_ms,
                    ..
                },
                &Phase::Greeting { opened },
            ) => {
                self.phase = Phase::Connected {
                    opened,
                    worker,
                    heartbeat_ms: heartbeat_ms.max(MIN_HEARTBEAT_MS),
                    idle_timeout_ms: idle_timeout_ms.max(MIN_IDLE_TIMEOUT_MS),
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
    pub fn on_binary(&self, len: usize) -> Fault {
        Fault::Protocol(format!(
            "the coordinator sent a {len}-byte binary frame; only workers send those"
        ))
    }

    /// The open connection ended. Held work is dropped (the coordinator
    /// re-issues a dropped connection's tasks); the answer says whether and
    /// when to dial again. `random` is uniform in [0, 1), for the jitter.
    pub fn on_closed(&mut self, ended: Ended, now: u64, random: f64) -> Next {
        let stable = match self.phase {
            Phase::Connected { opened, .. } => now.saturating_sub(opened) >= Backoff::STABLE_MS,
            _ => false,
        };
        self.reset_connection(Phase::Offline);
        if self.stopping || ended == Ended::Stopped {
            return Next::Stop;
        }
        let explanation = ended.explain();
        self.error = Some(explanation.clone());
        if ended.refusal().is_some() {
            self.refused = Some(explanation.clone());
            return Next::Refused(explanation);
        }
        if stable {
            self.backoff.reset();
        }
        Next::Reconnect {
            after_ms: self.backoff.next_delay(random),
        }
    }

    /// A dial failed before the socket opened; `error` is the driver's
    /// sentence for the page and the log.
    pub fn on_dial_failed(&mut self, error: String, random: f64) -> Next {
        self.reset_connection(Phase::Offline);
        if self.stopping {
            return Next::Stop;
        }
        self.error = Some(error);
        Next::Reconnect {
            after_ms: self.backoff.next_delay(random),
        }
    }

    /// Housekeeping, every [`TICK_MS`]: notice a coordinator that never
    /// welcomed or went silent, flush results, heartbeat when quiet.
    pub fn tick(&mut self, now: u64) -> Result<(), Fault> {
        match self.phase {
            Phase::Offline => Ok(()),
            Phase::Greeting { opened } => {
                if now.saturating_sub(opened) > WELCOME_TIMEOUT_MS {
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
                if now.saturating_sub(self.last_received) > idle_timeout_ms {
                    return Err(Fault::Silent(format!(
                        "nothing from the coordinator for {idle_timeout_ms} ms"
                    )));
                }
                if now.saturating_sub(self.last_flush) >= FLUSH_MS {
                    self.last_flush = now;
                    self.queue_frames(true);
                }
                if self.outgoing.is_empty() && now.saturating_sub(self.last_sent) >= heartbeat_ms {
                    self.send(&WorkerMessage::Heartbeat {});
                }
                Ok(())
            }
        }
    }

    // --- Work ---------------------------------------------------------------

    /// Whether [`Self::start_task`] would find a task.
    pub fn has_work(&self) -> bool {
        self.is_connected() && !self.paused && !self.stopping && self.core.queued_tasks() > 0
    }

    /// The next task to compute, if the worker is connected and working.
    pub fn start_task(&mut self) -> Option<TaskRef> {
        // Not `has_work`: counting the queued tasks costs more than looking
        // for the next one, on a path taken once per task.
        if !self.is_connected() || self.paused || self.stopping {
            return None;
        }
        self.core.next_task()
    }

    /// The kernel of the task [`Self::start_task`] would return, without
    /// starting it (`None` when it would return none).
    pub fn next_spec(&self) -> Option<&KernelSpec> {
        if !self.is_connected() || self.paused || self.stopping {
            return None;
        }
        self.core.next_spec()
    }

    /// Records a computed output. False if it was dropped: its batch was
    /// revoked, or it belongs to an earlier connection.
    pub fn finish_task(&mut self, task: &TaskRef, output: &TaskOutput) -> bool {
        let recorded = self.core.complete(task, output);
        if recorded {
            self.tasks_done += 1;
        }
        recorded
    }

    /// Records an output the driver stored as a blob first, because
    /// [`TaskRef::uploads`] said so; `sent` names it. False as for
    /// [`Self::finish_task`].
    pub fn finish_uploaded(&mut self, task: &TaskRef, sent: crate::frame::DigestOnly) -> bool {
        let recorded = self.core.complete_uploaded(task, sent);
        if recorded {
            self.tasks_done += 1;
        }
        recorded
    }

    /// Computing `task` failed (a kernel panicked): tell the coordinator
    /// which task and why, in at most [`MAX_ERROR_CHARS`] characters.
    pub fn fail_task(&mut self, task: &TaskRef, error: &str) {
        if let Some(failed) = self.core.fail(task, cut_error(error)) {
            self.send(&failed);
        }
    }

    /// A started task is abandoned unfinished (the donor paused while it
    /// ran): hand it back to the coordinator, which re-issues it without
    /// counting a failure. Call it after [`Self::pause`], so that `pause`
    /// reaches the coordinator before the task does and it is not given
    /// straight back.
    pub fn return_task(&mut self, task: &TaskRef) {
        if !self.is_connected() {
            return;
        }
        if let Some(returned) = self.core.give_back(task) {
            self.send(&returned);
        }
    }

    /// The end of a compute turn: finished batches (and full frames) go out
    /// at once; partial ones wait for the flush.
    pub fn end_turn(&mut self) {
        self.queue_frames(false);
    }

    /// Whether something waits to be sent without waiting for a flush: a
    /// finished batch, a full frame, a failure. A compute thread wakes its
    /// driver when this turns true, not after every task.
    pub fn has_ready_frames(&self) -> bool {
        !self.outgoing.is_empty() || self.core.has_ready_frames()
    }

    fn queue_frames(&mut self, flush: bool) {
        for frame in self.core.take_frames(flush) {
            self.outgoing.push_back(Outgoing::Binary(frame));
        }
    }

    // --- Control ------------------------------------------------------------

    /// Sends finished results, then `pause` (so the coordinator does not give
    /// the tasks straight back), then the unstarted tasks.
    fn hand_back(&mut self) {
        if !self.is_connected() {
            return;
        }
        let returns = self.core.hand_back_unstarted();
        self.queue_frames(true);
        self.send(&WorkerMessage::Pause {});
        for message in returns {
            self.send(&message);
        }
    }

    /// The donor paused: hand back what was not started, take nothing new.
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
        if self.is_connected() {
            self.send(&WorkerMessage::Resume {});
        }
    }

    /// The donor or operator stopped the worker: everything finished goes
    /// out, everything else back. The driver closes the socket once the
    /// outgoing frames are sent, and does not dial again.
    pub fn stop(&mut self) {
        if self.stopping {
            return;
        }
        if !self.paused {
            self.hand_back();
        }
        self.stopping = true;
    }

    // --- Figures --------------------------------------------------------------

    /// The connection's worker id, from the welcome.
    pub fn worker_id(&self) -> Option<u64> {
        match self.phase {
            Phase::Connected { worker, .. } => Some(worker),
            _ => None,
        }
    }

    /// Welcomed on the current connection.
    pub fn is_connected(&self) -> bool {
        matches!(self.phase, Phase::Connected { .. })
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping
    }

    /// Tasks computed and recorded, over all connections.
    pub fn tasks_done(&self) -> u64 {
        self.tasks_done
    }

    /// Results the coordinator rejected, over all connections.
    pub fn results_rejected(&self) -> u64 {
        self.results_rejected
    }

    /// Tasks received and not started.
    pub fn queued_tasks(&self) -> u64 {
        self.core.queued_tasks()
    }

    /// The job and kernel of the oldest batch held.
    pub fn current_job(&self) -> Option<(u64, &KernelSpec)> {
        self.core.current_job()
    }

    /// Whose job [`WorkerSession::current_job`] is, when the coordinator said.
    pub fn current_owner(&self) -> Option<&str> {
        self.core.current_owner()
    }

    /// The last connection problem, cleared by a welcome.
    pub fn last_error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Why the coordinator refused this worker, if it did.
    pub fn refused(&self) -> Option<&str> {
        self.refused.as_deref()
    }
}

/// `error` cut to [`MAX_ERROR_CHARS`] characters, with an ellipsis if cut.
fn cut_error(error: &str) -> String {
    match error.char_indices().nth(MAX_ERROR_CHARS) {
        Some((end, _)) => format!("{}…", &error[..end]),
        None => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Batch, PROTOCOL_VERSION, ResultsFrame, TaskRanges, WorkerKind};
    use grid_kernels::TaskRunner;
    use grid_kernels::spec::PrimesParams;

    fn welcome_with(heartbeat_ms: u64, idle_timeout_ms: u64) -> String {
        CoordinatorMessage::Welcome {
            worker: 7,
            heartbeat_ms,
            idle_timeout_ms,
            max_frame_bytes: 1 << 24,
        }
        .encode()
    }

    fn welcome() -> String {
        welcome_with(1000, 5000)
    }

    fn batch(id: u64, indices: &[u32]) -> String {
        CoordinatorMessage::Batch(Batch {
            owner: None,
            digest_only: None,
            capability: None,
            batch: id,
            job: 3,
            spec: KernelSpec::Primes(PrimesParams {
                start: 0,
                end: 1000,
            }),
            job_tasks: 10,
            tasks: TaskRanges::from_indices(indices.iter().copied()),
            lease_ms: 60_000,
            inputs: Vec::new(),
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

    fn browser(session: &str, name: Option<&str>) -> WorkerSession {
        WorkerSession::new(Hello {
            for_users: Vec::new(),
            holds: Vec::new(),
            protocol: PROTOCOL_VERSION,
            kind: WorkerKind::Browser,
            threads: 1,
            name: name.map(String::from),
            session: Some(session.into()),
            kernels: None,
        })
    }

    fn connected() -> WorkerSession {
        let mut worker = browser("tab-1", Some("kiosk"));
        worker.on_open(0);
        let hello = decoded(&worker.take_outgoing(0));
        assert_eq!(
            hello,
            [
                r#"{"type":"hello","protocol":5,"kind":"browser","threads":1,"name":"kiosk","session":"tab-1"}"#
            ]
        );
        worker.on_text(&welcome(), 1).unwrap();
        worker
    }

    /// What the donor page would show, from the accessors alone.
    fn state(worker: &WorkerSession) -> &'static str {
        match (
            worker.refused(),
            worker.is_stopping(),
            worker.is_connected(),
            worker.is_paused(),
        ) {
            (Some(_), _, _, _) => "refused",
            (_, true, _, _) => "stopped",
            (_, _, true, true) => "paused",
            (_, _, true, false) => "working",
            (_, _, false, _) => "offline",
        }
    }

    fn kernel(worker: &WorkerSession) -> Option<&'static str> {
        worker.current_job().map(|(_, spec)| spec.kind().name())
    }

    fn run_turn(worker: &mut WorkerSession, max_tasks: usize) -> usize {
        let mut runner = TaskRunner::new();
        let mut ran = 0;
        while ran < max_tasks {
            let Some(task) = worker.start_task() else {
                break;
            };
            let output = runner.run(&task.spec, task.job_tasks, task.index).unwrap();
            worker.finish_task(&task, &output);
            ran += 1;
        }
        worker.end_turn();
        ran
    }

    #[test]
    fn a_batch_is_computed_and_its_results_sent_in_one_frame() {
        let mut worker = connected();
        worker.on_text(&batch(1, &[0, 1, 2]), 2).unwrap();
        assert_eq!(worker.queued_tasks(), 3);
        assert_eq!(kernel(&worker), Some("primes"));
        assert_eq!(run_turn(&mut worker, 100), 3);
        let out = worker.take_outgoing(3);
        assert_eq!(decoded(&out), ["results 1 [0, 1, 2]"]);
        let Outgoing::Binary(bytes) = &out[0] else {
            panic!()
        };
        // Task 0 of 10 covers [0, 100): 25 primes.
        assert_eq!(
            ResultsFrame::decode(bytes).unwrap().results[0].output[..],
            25u64.to_le_bytes()
        );
        assert_eq!((state(&worker), worker.tasks_done()), ("working", 3));
        assert_eq!(worker.worker_id(), Some(7));
    }

    #[test]
    fn unfinished_batches_flush_on_the_tick_and_quiet_connections_heartbeat() {
        let mut worker = connected();
        worker.on_text(&batch(1, &[0, 1, 2]), 2).unwrap();
        run_turn(&mut worker, 1);
        assert!(worker.take_outgoing(3).is_empty());
        worker.tick(FLUSH_MS + 10).unwrap();
        assert_eq!(
            decoded(&worker.take_outgoing(FLUSH_MS + 10)),
            ["results 1 [0]"]
        );
        worker.on_text(r#"{"type":"heartbeat"}"#, 300).unwrap();
        assert_eq!(
            decoded(&worker.take_outgoing(300)),
            [r#"{"type":"heartbeat"}"#]
        );
        worker.tick(1_000).unwrap();
        assert!(worker.take_outgoing(1_000).is_empty());
        worker.tick(1_400).unwrap();
        assert_eq!(
            decoded(&worker.take_outgoing(1_400)),
            [r#"{"type":"heartbeat"}"#]
        );
        // Five seconds of silence from the coordinator is a dead connection.
        assert!(matches!(worker.tick(5_400), Err(Fault::Silent(_))));
    }

    #[test]
    fn pause_sends_results_then_pause_then_hands_back_and_resume_resumes() {
        let mut worker = connected();
        worker.on_text(&batch(1, &[0, 1, 2, 3]), 2).unwrap();
        run_turn(&mut worker, 1);
        worker.pause();
        assert_eq!(
            decoded(&worker.take_outgoing(3)),
            [
                "results 1 [0]",
                r#"{"type":"pause"}"#,
                r#"{"type":"return","batch":1,"tasks":[[1,4]]}"#
            ]
        );
        assert_eq!(state(&worker), "paused");
        assert!(worker.start_task().is_none());
        // A batch that crossed the pause goes straight back.
        worker.on_text(&batch(2, &[5, 6]), 4).unwrap();
        assert_eq!(
            decoded(&worker.take_outgoing(4)),
            [r#"{"type":"return","batch":2,"tasks":[[5,7]]}"#]
        );
        worker.resume();
        assert_eq!(decoded(&worker.take_outgoing(5)), [r#"{"type":"resume"}"#]);
        worker.on_text(&batch(3, &[1, 2, 3]), 6).unwrap();
        assert_eq!(run_turn(&mut worker, 100), 3);
    }

    #[test]
    fn a_task_abandoned_at_a_pause_goes_back_after_the_pause_and_its_batch_ends() {
        let mut worker = connected();
        worker.on_text(&batch(1, &[0, 1, 2]), 2).unwrap();
        let first = worker.start_task().unwrap();
        let second = worker.start_task().unwrap();
        worker.finish_task(&first, &TaskOutput::Count(7));
        worker.pause();
        worker.return_task(&second);
        assert_eq!(
            decoded(&worker.take_outgoing(3)),
            [
                "results 1 [0]",
                r#"{"type":"pause"}"#,
                r#"{"type":"return","batch":1,"tasks":[[2,3]]}"#,
                r#"{"type":"return","batch":1,"tasks":[[1,2]]}"#
            ]
        );
        // Nothing of batch 1 is left to send, and the task is not counted.
        assert_eq!(worker.tasks_done(), 1);
        worker.end_turn();
        assert!(worker.take_outgoing(4).is_empty());
        // Handing back twice, or a task of a revoked batch, sends nothing.
        worker.return_task(&second);
        worker.resume();
        worker.on_text(&batch(2, &[4]), 5).unwrap();
        let third = worker.start_task().unwrap();
        worker.on_text(r#"{"type":"revoke","batch":2}"#, 6).unwrap();
        worker.return_task(&third);
        assert_eq!(decoded(&worker.take_outgoing(7)), [r#"{"type":"resume"}"#]);
    }

    #[test]
    fn the_next_spec_is_shown_only_when_a_task_would_start() {
        let mut worker = connected();
        assert!(worker.next_spec().is_none());
        worker.on_text(&batch(1, &[0, 1]), 2).unwrap();
        assert_eq!(worker.next_spec().map(|s| s.kind().name()), Some("primes"));
        assert_eq!(worker.queued_tasks(), 2, "looking takes nothing");
        worker.pause();
        assert!(worker.next_spec().is_none());
        assert!(worker.start_task().is_none());
    }

    #[test]
    fn revoked_batches_are_dropped() {
        let mut worker = connected();
        worker.on_text(&batch(1, &[0, 1]), 2).unwrap();
        worker.on_text(&batch(2, &[5]), 2).unwrap();
        worker.on_text(r#"{"type":"revoke","batch":1}"#, 3).unwrap();
        assert_eq!(run_turn(&mut worker, 100), 1);
        assert_eq!(decoded(&worker.take_outgoing(4)), ["results 2 [5]"]);
    }

    #[test]
    fn stop_hands_everything_back_and_takes_nothing_new() {
        let mut worker = connected();
        worker.on_text(&batch(1, &[0, 1, 2]), 2).unwrap();
        run_turn(&mut worker, 2);
        worker.stop();
        assert_eq!(
            decoded(&worker.take_outgoing(3)),
            [
                "results 1 [0, 1]",
                r#"{"type":"pause"}"#,
                r#"{"type":"return","batch":1,"tasks":[[2,3]]}"#
            ]
        );
        assert!(worker.start_task().is_none());
        assert_eq!(state(&worker), "stopped");
        // The driver closes the socket and does not dial again.
        assert_eq!(worker.on_closed(Ended::Stopped, 4, 0.5), Next::Stop);
    }

    #[test]
    fn a_panic_fails_its_task_and_saves_the_rest() {
        let mut worker = connected();
        worker.on_text(&batch(4, &[0, 1, 2, 3]), 2).unwrap();
        run_turn(&mut worker, 1);
        let running = worker.start_task().unwrap();
        // What the browser's panic hook does: fail the task, then stop.
        worker.fail_task(
            &running,
            "panic: index out of bounds at kernels/src/primes.rs:10:5",
        );
        worker.stop();
        assert_eq!(
            decoded(&worker.take_outgoing(3)),
            [
                r#"{"type":"failed","batch":4,"task":1,"error":"panic: index out of bounds at kernels/src/primes.rs:10:5"}"#,
                "results 4 [0]",
                r#"{"type":"pause"}"#,
                r#"{"type":"return","batch":4,"tasks":[[2,4]]}"#
            ]
        );
    }

    #[test]
    fn a_long_error_is_cut_with_an_ellipsis() {
        let mut worker = connected();
        worker.on_text(&batch(4, &[0, 1]), 2).unwrap();
        let first = worker.start_task().unwrap();
        let second = worker.start_task().unwrap();
        worker.fail_task(&first, &"é".repeat(MAX_ERROR_CHARS + 5));
        worker.fail_task(&second, &"é".repeat(MAX_ERROR_CHARS));
        let expected = [
            format!(
                r#"{{"type":"failed","batch":4,"task":0,"error":"{}…"}}"#,
                "é".repeat(MAX_ERROR_CHARS)
            ),
            format!(
                r#"{{"type":"failed","batch":4,"task":1,"error":"{}"}}"#,
                "é".repeat(MAX_ERROR_CHARS)
            ),
        ];
        assert_eq!(decoded(&worker.take_outgoing(3)), expected);
    }

    #[test]
    fn a_reconnect_starts_clean_and_remembers_the_pause() {
        let mut worker = connected();
        worker.on_text(&batch(1, &[0, 1]), 2).unwrap();
        worker.pause();
        let next = worker.on_closed(Ended::Dropped(String::new()), 5, 0.5);
        assert_eq!(next, Next::Reconnect { after_ms: 250 });
        assert_eq!(state(&worker), "offline");
        assert_eq!(worker.last_error(), Some("the connection dropped"));
        worker.on_open(10);
        let out = decoded(&worker.take_outgoing(10));
        assert_eq!(out.len(), 2);
        assert_eq!(out[1], r#"{"type":"pause"}"#);
        assert_eq!(worker.queued_tasks(), 0);
    }

    #[test]
    fn holdings_go_in_every_hello_and_changes_go_at_once() {
        let [a, b, c] = [b"a", b"b", b"c"].map(|x| ContentDigest::of(x));
        let mut worker = browser("tab-1", None);
        worker.set_holdings([a, b]);
        assert!(worker.take_outgoing(0).is_empty(), "offline: nothing sent");
        worker.on_open(0);
        let hello = decoded(&worker.take_outgoing(0));
        let WorkerMessage::Hello(sent) = WorkerMessage::decode(&hello[0]).unwrap() else {
            panic!("{hello:?}")
        };
        let mut expected = vec![a, b];
        expected.sort_by_key(|d| d.0);
        assert_eq!(sent.holds, expected);
        worker.on_text(&welcome(), 1).unwrap();
        worker.set_holdings([b, a]);
        assert!(worker.take_outgoing(2).is_empty(), "no change, no message");
        worker.set_holdings([c, b]);
        let out = decoded(&worker.take_outgoing(3));
        assert_eq!(
            out.iter()
                .map(|t| WorkerMessage::decode(t).unwrap())
                .collect::<Vec<_>>(),
            [WorkerMessage::Holding {
                added: vec![c],
                removed: vec![a]
            }]
        );
        // A new connection is told everything again, in its hello.
        worker.on_closed(Ended::Dropped(String::new()), 4, 0.5);
        worker.on_open(10);
        let hello = decoded(&worker.take_outgoing(10));
        let WorkerMessage::Hello(sent) = WorkerMessage::decode(&hello[0]).unwrap() else {
            panic!("{hello:?}")
        };
        assert_eq!(sent.holds.len(), 2);
        assert!(sent.holds.contains(&c) && sent.holds.contains(&b));
        // Past the limit, the ones used last are kept.
        let many: Vec<ContentDigest> = (0..MAX_HOLDINGS as u32 + 10)
            .map(|i| ContentDigest::of(&i.to_le_bytes()))
            .collect();
        worker.set_holdings(many.iter().copied());
        let out = decoded(&worker.take_outgoing(11));
        let WorkerMessage::Holding { added, removed } = WorkerMessage::decode(&out[0]).unwrap()
        else {
            panic!("{out:?}")
        };
        assert_eq!(added.len(), MAX_HOLDINGS);
        assert!(!added.contains(&many[MAX_HOLDINGS]));
        assert_eq!(removed.len(), 2);
    }

    #[test]
    fn protocol_faults_are_reported_not_ignored() {
        let mut worker = browser("s", None);
        worker.on_open(0);
        assert!(matches!(
            worker.on_text(&batch(1, &[0]), 1),
            Err(Fault::Protocol(_))
        ));
        assert!(matches!(
            worker.on_text("not json", 1),
            Err(Fault::Protocol(_))
        ));
        assert!(matches!(worker.tick(20_000), Err(Fault::Silent(_))));
        let mut worker = connected();
        assert!(matches!(
            worker.on_text(&welcome(), 2),
            Err(Fault::Protocol(_))
        ));
        assert!(matches!(worker.on_binary(12), Fault::Protocol(_)));
    }

    #[test]
    fn a_coordinator_that_never_welcomes_is_left_after_the_welcome_timeout() {
        let mut worker = browser("s", None);
        worker.on_open(1_000);
        worker.take_outgoing(1_000);
        for now in (1_000..=1_000 + WELCOME_TIMEOUT_MS).step_by(TICK_MS as usize) {
            assert_eq!(worker.tick(now), Ok(()), "at {now} ms");
            assert!(
                worker.take_outgoing(now).is_empty(),
                "no heartbeat before the welcome"
            );
        }
        let fault = worker.tick(1_000 + WELCOME_TIMEOUT_MS + 1).unwrap_err();
        assert_eq!(fault, Fault::Silent("no welcome within 10000 ms".into()));
        let next = worker.on_closed(Ended::Fault(fault), 11_001, 0.5);
        assert_eq!(next, Next::Reconnect { after_ms: 250 });
        assert_eq!(worker.last_error(), Some("no welcome within 10000 ms"));
    }

    /// The browser's side of the silent coordinator (the native side is
    /// `tests/tests/e2e_silent_coordinator.rs`): welcomed, then nothing.
    #[test]
    fn a_silent_coordinator_is_left_after_the_idle_timeout_and_dialled_again() {
        let mut worker = browser("s", None);
        worker.on_open(0);
        worker.take_outgoing(0);
        worker.on_text(&welcome_with(400, 1000), 0).unwrap();
        let mut sent = Vec::new();
        let mut now = 0;
        let fault = loop {
            now += TICK_MS;
            match worker.tick(now) {
                Ok(()) => sent.extend(decoded(&worker.take_outgoing(now))),
                Err(fault) => break fault,
            }
        };
        // Heartbeats kept going out while it waited...
        assert_eq!(sent, vec![r#"{"type":"heartbeat"}"#; 2]);
        // ...and the first tick past idle_timeout_ms noticed the silence.
        assert_eq!(now, 1_200);
        assert_eq!(
            fault,
            Fault::Silent("nothing from the coordinator for 1000 ms".into())
        );
        let next = worker.on_closed(Ended::Fault(fault), now, 0.5);
        assert_eq!(next, Next::Reconnect { after_ms: 250 });
        assert!(worker.take_outgoing(now).is_empty());
        worker.on_open(now + 250);
        assert_eq!(
            decoded(&worker.take_outgoing(now + 250)),
            [r#"{"type":"hello","protocol":5,"kind":"browser","threads":1,"session":"s"}"#]
        );
    }

    #[test]
    fn an_idle_timeout_below_a_second_is_taken_as_a_second() {
        let mut worker = browser("s", None);
        worker.on_open(0);
        worker.on_text(&welcome_with(10, 10), 0).unwrap();
        assert_eq!(worker.tick(MIN_IDLE_TIMEOUT_MS), Ok(()));
        assert!(worker.tick(MIN_IDLE_TIMEOUT_MS + 1).is_err());
    }

    #[test]
    fn the_backoff_grows_until_a_welcomed_connection_lasts() {
        let mut worker = browser("s", None);
        let refused = || "cannot reach the coordinator at ws://h/ws/worker".to_string();
        // A coordinator that is down: 250, 500, 1000, 2000 ms (no jitter at 0.5).
        let delays: Vec<Next> = (0..4)
            .map(|_| worker.on_dial_failed(refused(), 0.5))
            .collect();
        let after = |after_ms| Next::Reconnect { after_ms };
        assert_eq!(delays, [after(250), after(500), after(1000), after(2000)]);
        assert_eq!(worker.last_error(), Some(refused().as_str()));
        // Welcomed, but dropped after 5 s: keep backing off.
        worker.on_open(10_000);
        worker.on_text(&welcome(), 10_001).unwrap();
        assert_eq!(worker.last_error(), None);
        let dropped = || Ended::Dropped(String::new());
        assert_eq!(worker.on_closed(dropped(), 15_000, 0.5), after(4000));
        // Open for 20 s without a welcome: still no reset.
        worker.on_open(20_000);
        assert_eq!(worker.on_closed(dropped(), 40_000, 0.5), after(8000));
        // Welcomed and open for 10 s: start over.
        worker.on_open(50_000);
        worker.on_text(&welcome(), 50_001).unwrap();
        for now in (50_200..60_000).step_by(200) {
            worker.on_text(r#"{"type":"heartbeat"}"#, now).unwrap();
        }
        assert_eq!(worker.on_closed(dropped(), 60_000, 0.5), after(250));
        assert_eq!(worker.on_dial_failed(refused(), 0.0), after(375));
        assert_eq!(worker.on_dial_failed(refused(), 0.5), after(1000));
        for _ in 0..3 {
            worker.on_dial_failed(refused(), 0.5);
        }
        assert_eq!(worker.on_dial_failed(refused(), 0.5), after(10_000));
    }

    #[test]
    fn every_close_code_either_reconnects_or_refuses() {
        for code in CloseCode::ALL {
            let mut worker = connected();
            let ended = Ended::Closed {
                code: Some(code.code()),
                reason: String::new(),
            };
            let explanation = format!("the connection closed: {} ({})", code.name(), code.code());
            let next = worker.on_closed(ended, 100, 0.5);
            if matches!(
                code,
                CloseCode::UnsupportedVersion | CloseCode::Quarantined | CloseCode::BadHello
            ) {
                assert_eq!(next, Next::Refused(explanation.clone()), "{code:?}");
                assert_eq!(worker.refused(), Some(explanation.as_str()));
                assert_eq!(state(&worker), "refused");
            } else {
                assert_eq!(next, Next::Reconnect { after_ms: 250 }, "{code:?}");
                assert_eq!(worker.refused(), None);
                assert_eq!(state(&worker), "offline");
            }
            assert_eq!(worker.last_error(), Some(explanation.as_str()));
        }
        // Codes outside the table, and closes without one, are reconnected.
        for ended in [
            Ended::Closed {
                code: Some(4999),
                reason: "later".into(),
            },
            Ended::Closed {
                code: None,
                reason: String::new(),
            },
            Ended::Dropped("connection reset".into()),
            Ended::Fault(Fault::Protocol("a second welcome".into())),
        ] {
            let mut worker = connected();
            assert_eq!(
                worker.on_closed(ended, 100, 0.5),
                Next::Reconnect { after_ms: 250 }
            );
        }
        // A stopped worker does not come back, whoever closed.
        let mut worker = connected();
        worker.stop();
        let refusal = Ended::Closed {
            code: Some(4008),
            reason: "quarantined".into(),
        };
        assert_eq!(worker.on_closed(refusal, 100, 0.5), Next::Stop);
        assert_eq!(worker.on_dial_failed("unreachable".into(), 0.5), Next::Stop);
    }

    #[test]
    fn the_close_explanation_says_who_closed_and_why() {
        let closed = |code, reason: &str| Ended::Closed {
            code,
            reason: reason.into(),
        };
        let cases = [
            (
                closed(Some(4009), "threads must be at least 1"),
                "the coordinator closed the connection: threads must be at least 1 (4009)",
            ),
            (
                closed(None, "bye"),
                "the coordinator closed the connection: bye",
            ),
            (
                closed(Some(1001), ""),
                "the connection closed: going_away (1001)",
            ),
            (closed(Some(3000), ""), "the connection closed (3000)"),
            (closed(None, ""), "the coordinator closed the connection"),
            (Ended::Dropped(String::new()), "the connection dropped"),
            (
                Ended::Dropped("connection reset by peer".into()),
                "the connection dropped: connection reset by peer",
            ),
            (
                Ended::Fault(Fault::Silent("nothing for 5 s".into())),
                "nothing for 5 s",
            ),
        ];
        for (ended, explanation) in cases {
            assert_eq!(ended.explain(), explanation);
        }
    }

    #[test]
    fn a_task_of_an_earlier_connection_is_dropped() {
        let mut worker = connected();
        worker.on_text(&batch(1, &[0, 1, 2]), 2).unwrap();
        let stale = worker.start_task().unwrap();
        let failing = worker.start_task().unwrap();
        worker.on_closed(Ended::Dropped(String::new()), 3, 0.5);
        // The next connection is given the same batch id and tasks.
        worker.on_open(300);
        worker.take_outgoing(300);
        worker.on_text(&welcome(), 301).unwrap();
        worker.on_text(&batch(1, &[0, 1, 2]), 302).unwrap();
        let fresh = worker.start_task().unwrap();
        assert_eq!((fresh.batch, fresh.index), (stale.batch, stale.index));
        let mut runner = TaskRunner::new();
        let output = runner
            .run(&stale.spec, stale.job_tasks, stale.index)
            .unwrap();
        assert!(!worker.finish_task(&stale, &output));
        worker.fail_task(&failing, "panic: late");
        worker.end_turn();
        worker.tick(302 + FLUSH_MS).unwrap();
        assert!(worker.take_outgoing(302 + FLUSH_MS).is_empty());
        assert_eq!(worker.tasks_done(), 0);
        // The fresh task still counts, once.
        assert!(worker.finish_task(&fresh, &output));
        worker.tick(302 + 2 * FLUSH_MS).unwrap();
        assert_eq!(
            decoded(&worker.take_outgoing(302 + 2 * FLUSH_MS)),
            ["results 1 [0]"]
        );
        assert_eq!(worker.tasks_done(), 1);
    }
}
