//! `loadgen`: an active fleet of worker connections in one process, for
//! benchmark 10 (`tests/src/bench/fleet.rs`) and for trying a coordinator
//! by hand.
//!
//! ```text
//! loadgen --url http://127.0.0.1:PORT --connections N [--task-ms 1000]
//!         [--spread 0.4] [--drops-per-hour 6] [--pauses-per-hour 6]
//!         [--churn R] [--handshakes 256] [--sieve N] [--seed S]
//! ```
//!
//! Each connection is a real worker: the protocol crate's
//! [`WorkerSession`] (hello, welcome, batches, flushes, heartbeats, pause
//! and hand-back, backoff) driven by a small async loop, one tokio task a
//! connection and no thread of its own. It computes each task of a
//! built-in kernel with [`TaskRunner`] (one per runtime thread, shared by
//! the connections on it), then holds the output until the task's paced
//! time is up: `--task-ms` scaled by the connection's speed (log-normal,
//! `--spread` its sigma, so that the fleet's mean rate is one task a
//! `--task-ms`) and a ±10 % jitter a task. So 20,000
//! connections at one task a second cost the coordinator what 20,000 slow
//! browsers would, while this process only does their bookkeeping.
//!
//! Now and then a connection drops without a close frame and comes back
//! after 1-5 s (`--drops-per-hour`, each), or pauses for 2-10 s, handing
//! its unstarted tasks back and the one it was computing too
//! (`--pauses-per-hour`). With `--churn R` (or `churn R` on standard
//! input), connections also leave for good, R a second on average (half
//! with a close frame after handing back, half dropped), and new ones
//! arrive to keep `--connections` open.
//!
//! **Checks.** Every results frame is acked, in order: the ack must name
//! the frame's batch and account for each of its results (accepted,
//! duplicate or rejected), and every result of an acked frame is compared
//! with a count of primes made here by a plain sieve of Eratosthenes, not
//! by the kernel ([`Sieve`]). Mismatches are counted in the report
//! (`wrong_answers`, `ack_mismatches`); the benchmark fails on them.
//!
//! **Figures.** Results acked, batches received, the time from a finished
//! batch's results frame going out to the next batch arriving (the
//! coordinator's refill; pipelined workers usually hold the next batch
//! already, so this is how fast a freed slot is filled, not a stall), the
//! fraction of connected, unpaused time a connection had no task to
//! compute, connections welcomed, drops and pauses, heartbeats received
//! and sent.
//!
//! **Control**, one command a line on standard input: `reset` (zero the
//! figures: a measurement window starts), `report` (print them as one JSON
//! line on standard output), `pace MS` (the task time from now on), `churn
//! R`, `stop` or end of input (every connection hands back and closes; a
//! last report). Once every first connection is welcomed, a line
//! `{"event":"ready",...}` is printed.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use grid_kernels::spec::KernelKind;
use grid_kernels::{KernelSpec, TaskDomain, TaskOutput, TaskRunner};
use grid_protocol::session::{Ended, Next, Outgoing, WorkerSession};
use grid_protocol::worker::TaskRef;
use grid_protocol::{CoordinatorMessage, Hello, PROTOCOL_VERSION, ResultsFrame, WORKER_PATH};
use serde_json::json;
use tokio::io::AsyncBufReadExt;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How often a connection wakes at the least, to tick its session
/// (flushes, heartbeats, the coordinator's silence). The shipped workers
/// tick every 200 ms; a task's end ticks too, which is when a flush is due.
const TICK: Duration = Duration::from_millis(1000);

#[derive(Debug, Clone)]
struct Options {
    url: String,
    connections: usize,
    task_ms: u64,
    spread: f64,
    drops_per_hour: f64,
    pauses_per_hour: f64,
    churn: u64,
    handshakes: usize,
    sieve: u64,
    seed: u64,
}

fn parse_options() -> anyhow::Result<Options> {
    let mut options = Options {
        url: String::new(),
        connections: 1000,
        task_ms: 1000,
        spread: 0.4,
        drops_per_hour: 6.0,
        pauses_per_hour: 6.0,
        churn: 0,
        handshakes: 256,
        sieve: 50_000_000,
        seed: 1,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{arg} takes a value (try --help)"))?;
        let number = || format!("{arg} takes a number, got '{value}'");
        match arg.as_str() {
            "--url" => options.url = value,
            "--connections" => options.connections = value.parse().with_context(number)?,
            "--task-ms" => options.task_ms = value.parse().with_context(number)?,
            "--spread" => options.spread = value.parse().with_context(number)?,
            "--drops-per-hour" => options.drops_per_hour = value.parse().with_context(number)?,
            "--pauses-per-hour" => options.pauses_per_hour = value.parse().with_context(number)?,
            "--churn" => options.churn = value.parse().with_context(number)?,
            "--handshakes" => options.handshakes = value.parse().with_context(number)?,
            "--sieve" => options.sieve = value.parse().with_context(number)?,
            "--seed" => options.seed = value.parse().with_context(number)?,
            _ => bail!(
                "unknown option '{arg}'; loadgen --url URL --connections N [--task-ms MS] \
                 [--spread SIGMA] [--drops-per-hour X] [--pauses-per-hour X] [--churn R] \
                 [--handshakes N] [--sieve LIMIT] [--seed S]"
            ),
        }
    }
    if options.url.is_empty() {
        bail!("--url is required (the coordinator's http://host:port)");
    }
    if options.connections == 0 || options.handshakes == 0 || options.task_ms == 0 {
        bail!("--connections, --handshakes and --task-ms must be at least 1");
    }
    Ok(options)
}

// --- Independent answers ------------------------------------------------------

/// Which numbers below a limit are prime, by the plain sieve of
/// Eratosthenes (a byte a number): the oracle the kernel's answers are
/// checked against. Numbers past the limit are tried by division.
struct Sieve {
    prime: Vec<bool>,
}

impl Sieve {
    fn new(limit: u64) -> Sieve {
        Sieve {
            prime: grid_tests::sieve::sieve(limit),
        }
    }

    fn is_prime(&self, n: u64) -> bool {
        if let Some(&p) = self.prime.get(n as usize) {
            return p;
        }
        if n.is_multiple_of(2) {
            return false;
        }
        let mut d = 3;
        while d * d <= n {
            if n.is_multiple_of(d) {
                return false;
            }
            d += 2;
        }
        true
    }

    fn count(&self, start: u64, end: u64) -> u64 {
        (start..end).filter(|&n| self.is_prime(n)).count() as u64
    }

    /// The independent answer of a task, if this loadgen knows its kernel.
    fn answer(&self, spec: &KernelSpec, tasks: u32, index: u32) -> Option<u64> {
        match (spec, spec.task(tasks, index)) {
            (KernelSpec::Primes(_), TaskDomain::Range { start, end }) => {
                Some(self.count(start, end))
            }
            _ => None,
        }
    }
}

// --- Figures ------------------------------------------------------------------

/// The process's figures since the last `reset`.
#[derive(Default)]
struct Stats {
    welcomed: AtomicU64,
    dial_failures: AtomicU64,
    closed_by_coordinator: AtomicU64,
    drops: AtomicU64,
    pauses: AtomicU64,
    leaves: AtomicU64,
    batches: AtomicU64,
    tasks_computed: AtomicU64,
    frames: AtomicU64,
    accepted: AtomicU64,
    duplicate: AtomicU64,
    rejected: AtomicU64,
    verified: AtomicU64,
    wrong_answers: AtomicU64,
    unchecked: AtomicU64,
    ack_mismatches: AtomicU64,
    waiting_us: AtomicU64,
    active_us: AtomicU64,
    heartbeats_received: AtomicU64,
    heartbeats_sent: AtomicU64,
    /// Finished batch (its results frame sent) to the next batch, µs.
    refill_us: Mutex<Vec<u32>>,
    /// Why connections closed, the first few distinct reasons.
    reasons: Mutex<Vec<String>>,
}

static COUNTERS: [&str; 20] = [
    "welcomed",
    "dial_failures",
    "closed_by_coordinator",
    "drops",
    "pauses",
    "leaves",
    "batches",
    "tasks_computed",
    "frames",
    "accepted",
    "duplicate",
    "rejected",
    "verified",
    "wrong_answers",
    "unchecked",
    "ack_mismatches",
    "waiting_us",
    "active_us",
    "heartbeats_received",
    "heartbeats_sent",
];

impl Stats {
    fn counters(&self) -> [&AtomicU64; 20] {
        [
            &self.welcomed,
            &self.dial_failures,
            &self.closed_by_coordinator,
            &self.drops,
            &self.pauses,
            &self.leaves,
            &self.batches,
            &self.tasks_computed,
            &self.frames,
            &self.accepted,
            &self.duplicate,
            &self.rejected,
            &self.verified,
            &self.wrong_answers,
            &self.unchecked,
            &self.ack_mismatches,
            &self.waiting_us,
            &self.active_us,
            &self.heartbeats_received,
            &self.heartbeats_sent,
        ]
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn reset(&self) {
        for counter in self.counters() {
            counter.store(0, Ordering::Relaxed);
        }
        lock(&self.refill_us).clear();
    }

    fn note_reason(&self, reason: String) {
        let mut reasons = lock(&self.reasons);
        if reasons.len() < 8 && !reasons.contains(&reason) {
            reasons.push(reason);
        }
    }

    fn report(&self, seconds: f64, open: usize) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for (name, counter) in COUNTERS.iter().zip(self.counters()) {
            out.insert(name.to_string(), json!(counter.load(Ordering::Relaxed)));
        }
        let mut refill = lock(&self.refill_us).clone();
        refill.sort_unstable();
        let quantile = |q: f64| -> Option<f64> {
            let last = refill.len().checked_sub(1)?;
            Some(f64::from(refill[((last as f64) * q).round() as usize]) / 1000.0)
        };
        let waiting = self.waiting_us.load(Ordering::Relaxed) as f64;
        let active = self.active_us.load(Ordering::Relaxed) as f64;
        out.insert("event".into(), json!("report"));
        out.insert("seconds".into(), json!(seconds));
        out.insert("open".into(), json!(open));
        out.insert("refills".into(), json!(refill.len()));
        out.insert("refill_p50_ms".into(), json!(quantile(0.5)));
        out.insert("refill_p99_ms".into(), json!(quantile(0.99)));
        out.insert("refill_max_ms".into(), json!(quantile(1.0)));
        out.insert(
            "waiting_fraction".into(),
            json!(if active > 0.0 { waiting / active } else { 0.0 }),
        );
        out.insert("reasons".into(), json!(lock(&self.reasons).clone()));
        serde_json::Value::Object(out)
    }
}

/// A lock that a panicking holder does not poison for everyone else.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

// --- Randomness (no dependency: the benchmark needs spread, not quality) ------

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn between(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let u = self.unit().max(1e-12);
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * self.unit()).cos()
    }

    /// Exponential with this mean.
    fn exponential(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }

    /// Whether an event of `per_hour` a connection happens within `dt`.
    fn happens(&mut self, per_hour: f64, dt: Duration) -> bool {
        per_hour > 0.0 && self.unit() < per_hour * dt.as_secs_f64() / 3600.0
    }
}

// --- The fleet ------------------------------------------------------------------

struct Shared {
    options: Options,
    sieve: Sieve,
    stats: Stats,
    /// The task time from now on, ms (`pace MS`).
    task_ms: AtomicU64,
    /// Connections leaving for good a second (`churn R`).
    churn: AtomicU64,
    /// Connections whose task is running (dialling, open, or waiting to
    /// come back).
    live: AtomicUsize,
    /// Connections open and welcomed now.
    open: AtomicUsize,
    /// The coordinator refused a connection for good (a close code that
    /// says not to come back): no new connections are made.
    refused: std::sync::atomic::AtomicBool,
    handshakes: Semaphore,
    stop: watch::Receiver<bool>,
}

/// Milliseconds since this process started: the session's clock.
fn now_ms() -> u64 {
    static ORIGIN: OnceLock<std::time::Instant> = OnceLock::new();
    ORIGIN
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

thread_local! {
    /// One runner a runtime thread: it keeps the kernels' tables (the base
    /// primes), which every connection on the thread shares.
    static RUNNER: RefCell<TaskRunner> = RefCell::new(TaskRunner::new());
}

/// A worker's heartbeat, as the session encodes it.
fn heartbeat_text() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| grid_protocol::WorkerMessage::Heartbeat {}.encode())
}

fn hello(name: &str) -> anyhow::Result<Hello> {
    // Through JSON, so that fields the protocol adds with a default need no
    // change here.
    Ok(serde_json::from_value(json!({
        "protocol": PROTOCOL_VERSION,
        "kind": "native",
        "threads": 1,
        "name": name,
    }))?)
}

/// A results frame sent and not yet acked: its batch and each result's
/// answer, checked when the ack comes.
struct Sent {
    batch: u64,
    /// The batch's kernel and task count, if it was held.
    job: Option<(Arc<KernelSpec>, u32)>,
    answers: Vec<(u32, Option<u64>)>,
}

/// What one connection knows of its current socket, beyond the session.
#[derive(Default)]
struct Book {
    /// Batches held: their kernel, task count and tasks not yet finished.
    held: HashMap<u64, (Arc<KernelSpec>, u32, u64)>,
    /// Batches finished and sent, waiting for a batch to take their place.
    awaiting: VecDeque<Instant>,
    /// Batches that just finished, sent with the next frames.
    finished: Vec<u64>,
    unacked: VecDeque<Sent>,
}

/// How a socket's life ended, as this connection chose or saw it.
enum Exit {
    /// Lost, or dropped on purpose: dial again after this long.
    Again(Duration),
    /// Left for good (churn), or the process is stopping.
    Leave,
}

/// One connection for as long as it lives: dial, work, and on a drop dial
/// again with the same session.
async fn connection(shared: Arc<Shared>, id: u64, mut rng: Rng) {
    let name = format!("fleet-{id}");
    let Ok(hello) = hello(&name) else {
        return;
    };
    let mut session = WorkerSession::new(hello);
    // This connection's task time, as a multiple of `--task-ms`:
    // log-normal, with a mean rate of one task a `--task-ms` over the
    // fleet (E[1/speed] = 1).
    let sigma = shared.options.spread;
    let speed = (sigma * rng.normal() + sigma * sigma / 2.0).exp();
    let url = format!(
        "{}{WORKER_PATH}",
        shared.options.url.replacen("http://", "ws://", 1)
    );
    loop {
        if *shared.stop.borrow() {
            break;
        }
        let socket = {
            let _turn = shared.handshakes.acquire().await;
            let config = WebSocketConfig::default().read_buffer_size(4096);
            tokio::time::timeout(
                Duration::from_secs(10),
                tokio_tungstenite::connect_async_with_config(&url, Some(config), true),
            )
            .await
        };
        let socket = match socket {
            Ok(Ok((socket, _))) => socket,
            failed => {
                Stats::add(&shared.stats.dial_failures, 1);
                let why = match failed {
                    Ok(Err(error)) => error.to_string(),
                    _ => "the dial timed out".into(),
                };
                shared.stats.note_reason(format!("dial: {why}"));
                match session.on_dial_failed(why, rng.unit()) {
                    Next::Reconnect { after_ms } => {
                        tokio::time::sleep(Duration::from_millis(after_ms)).await;
                        continue;
                    }
                    _ => break,
                }
            }
        };
        match serve(&shared, &mut session, socket, speed, &mut rng).await {
            Exit::Leave => break,
            Exit::Again(after) => tokio::time::sleep(after).await,
        }
    }
    if let Some(why) = session.refused() {
        shared.stats.note_reason(format!("refused: {why}"));
        shared.refused.store(true, Ordering::Relaxed);
    }
    shared.live.fetch_sub(1, Ordering::Relaxed);
}

/// Sends what the session queued; notes finished batches and frames to be
/// acked.
async fn flush(
    shared: &Shared,
    session: &mut WorkerSession,
    socket: &mut Socket,
    book: &mut Book,
) -> Result<(), ()> {
    let out = session.take_outgoing(now_ms());
    if out.is_empty() {
        return Ok(());
    }
    for frame in out {
        let message = match frame {
            Outgoing::Text(text) => {
                if text == heartbeat_text() {
                    Stats::add(&shared.stats.heartbeats_sent, 1);
                }
                Message::text(text)
            }
            Outgoing::Binary(bytes) => {
                if let Ok(frame) = ResultsFrame::decode(&bytes) {
                    let job = book
                        .held
                        .get(&frame.batch)
                        .map(|(spec, tasks, _)| (spec.clone(), *tasks));
                    let answers = frame
                        .results
                        .iter()
                        .map(|r| {
                            let count = match TaskOutput::decode(KernelKind::Primes, &r.output) {
                                Ok(TaskOutput::Count(count)) => Some(count),
                                _ => None,
                            };
                            (r.task, count)
                        })
                        .collect();
                    book.unacked.push_back(Sent {
                        batch: frame.batch,
                        job,
                        answers,
                    });
                }
                Stats::add(&shared.stats.frames, 1);
                Message::binary(bytes)
            }
        };
        socket.feed(message).await.map_err(|_| ())?;
    }
    socket.flush().await.map_err(|_| ())?;
    let now = Instant::now();
    for batch in std::mem::take(&mut book.finished) {
        book.held.remove(&batch);
        book.awaiting.push_back(now);
    }
    Ok(())
}

/// An ack for the oldest unacked frame: it must name that frame's batch and
/// account for each result; each answer is checked against the sieve.
fn check_ack(shared: &Shared, book: &mut Book, batch: u64, counts: [u32; 3]) {
    let stats = &shared.stats;
    let [accepted, duplicate, rejected] = counts;
    Stats::add(&stats.accepted, u64::from(accepted));
    Stats::add(&stats.duplicate, u64::from(duplicate));
    Stats::add(&stats.rejected, u64::from(rejected));
    let Some(sent) = book.unacked.pop_front() else {
        Stats::add(&stats.ack_mismatches, 1);
        return;
    };
    if sent.batch != batch || (accepted + duplicate + rejected) as usize != sent.answers.len() {
        Stats::add(&stats.ack_mismatches, 1);
    }
    for (task, answer) in sent.answers {
        let expected =
            (sent.job.as_ref()).and_then(|(spec, tasks)| shared.sieve.answer(spec, *tasks, task));
        match (answer, expected) {
            (Some(got), Some(want)) if got == want => Stats::add(&stats.verified, 1),
            (Some(_), Some(_)) => Stats::add(&stats.wrong_answers, 1),
            _ => Stats::add(&stats.unchecked, 1),
        }
    }
}

/// A task being computed: its output is ready, and is handed in when its
/// paced time is up.
struct Running {
    task: TaskRef,
    output: TaskOutput,
    due: Instant,
}

/// One open socket, from hello to its end.
async fn serve(
    shared: &Shared,
    session: &mut WorkerSession,
    mut socket: Socket,
    speed: f64,
    rng: &mut Rng,
) -> Exit {
    let stats = &shared.stats;
    let mut stop = shared.stop.clone();
    let mut book = Book::default();
    let mut open = Open {
        shared,
        counted: false,
    };
    // A pause does not outlive its socket here: a worker that comes back
    // comes back working.
    session.resume();
    session.on_open(now_ms());
    if flush(shared, session, &mut socket, &mut book)
        .await
        .is_err()
    {
        return lost(session, Ended::Dropped(String::new()), rng);
    }
    let mut running: Option<Running> = None;
    let mut paused_until: Option<Instant> = None;
    let mut leave_at: Option<Instant> = None;
    let mut welcomed = false;
    let mut last = Instant::now();
    // What this connection was doing since `last`: (working or able to,
    // waiting for a task).
    let mut doing = (false, false);
    let mut next_tick = last + TICK;
    let sleep = tokio::time::sleep_until(next_tick);
    tokio::pin!(sleep);
    loop {
        let now = Instant::now();
        if running.is_none()
            && let Some(task) = session.start_task()
        {
            let output =
                RUNNER.with(|r| r.borrow_mut().run(&task.spec, task.job_tasks, task.index));
            let Ok(output) = output else {
                session.fail_task(&task, "loadgen runs built-in kernels only");
                continue;
            };
            Stats::add(&stats.tasks_computed, 1);
            let ms = shared.task_ms.load(Ordering::Relaxed) as f64 * speed * rng.between(0.9, 1.1);
            running = Some(Running {
                task,
                output,
                due: now + Duration::from_secs_f64(ms / 1000.0),
            });
        }
        // Time since the last wake, by what this connection was doing.
        let dt = now.duration_since(last).as_micros() as u64;
        if doing.0 {
            Stats::add(&stats.active_us, dt);
        }
        if doing.1 {
            Stats::add(&stats.waiting_us, dt);
        }
        last = now;
        let able = session.is_connected() && !session.is_paused();
        doing = (able, able && running.is_none());
        let mut wake = next_tick;
        for at in [running.as_ref().map(|r| r.due), paused_until, leave_at]
            .into_iter()
            .flatten()
        {
            wake = wake.min(at);
        }
        if sleep.deadline() != wake {
            sleep.as_mut().reset(wake);
        }
        tokio::select! {
            _ = stop.changed() => {
                session.stop();
                if let Some(r) = running.take() {
                    session.return_task(&r.task);
                }
                let _ = flush(shared, session, &mut socket, &mut book).await;
                let _ = socket.close(None).await;
                session.on_closed(Ended::Stopped, now_ms(), 0.0);
                return Exit::Leave;
            }
            _ = &mut sleep => {}
            message = socket.next() => {
                let text = match message {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Binary(bytes))) => {
                        let fault = session.on_binary(bytes.len());
                        return fault_close(shared, session, socket, fault, rng).await;
                    }
                    Some(Ok(Message::Close(frame))) => {
                        Stats::add(&stats.closed_by_coordinator, 1);
                        let (code, reason) = frame
                            .map(|f| (Some(u16::from(f.code)), f.reason.to_string()))
                            .unwrap_or((None, String::new()));
                        stats.note_reason(format!("closed {code:?}: {reason}"));
                        return lost(session, Ended::Closed { code, reason }, rng);
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(error)) => {
                        return lost(session, Ended::Dropped(error.to_string()), rng);
                    }
                    None => return lost(session, Ended::Dropped(String::new()), rng),
                };
                match CoordinatorMessage::decode(&text) {
                    Ok(CoordinatorMessage::Batch(batch)) => {
                        Stats::add(&stats.batches, 1);
                        if let Some(finished) = book.awaiting.pop_front() {
                            let us = Instant::now().duration_since(finished).as_micros();
                            lock(&stats.refill_us).push(us.min(u128::from(u32::MAX)) as u32);
                        }
                        if !session.is_paused() {
                            book.held.insert(
                                batch.batch,
                                (Arc::new(batch.spec.clone()), batch.job_tasks, batch.tasks.len()),
                            );
                        }
                    }
                    Ok(CoordinatorMessage::Ack { batch, accepted, duplicate, rejected }) => {
                        check_ack(shared, &mut book, batch, [accepted, duplicate, rejected]);
                    }
                    Ok(CoordinatorMessage::Revoke { batch }) => {
                        book.held.remove(&batch);
                    }
                    Ok(CoordinatorMessage::Heartbeat {}) => {
                        Stats::add(&stats.heartbeats_received, 1);
                    }
                    _ => {}
                }
                if let Err(fault) = session.on_text(&text, now_ms()) {
                    return fault_close(shared, session, socket, fault, rng).await;
                }
                if !welcomed && session.is_connected() {
                    welcomed = true;
                    Stats::add(&stats.welcomed, 1);
                    open.count();
                }
            }
        }
        let now = Instant::now();
        if let Some(r) = running.take_if(|r| r.due <= now) {
            if session.finish_task(&r.task, &r.output)
                && let Some(held) = book.held.get_mut(&r.task.batch)
            {
                held.2 = held.2.saturating_sub(1);
                if held.2 == 0 {
                    book.finished.push(r.task.batch);
                }
            }
            session.end_turn();
        }
        if now >= next_tick || running.is_none() {
            if let Err(fault) = session.tick(now_ms()) {
                return fault_close(shared, session, socket, fault, rng).await;
            }
            next_tick = now + TICK;
        }
        if welcomed {
            // Behaviour: a pause ends, a pause begins, a drop, leaving.
            let dt = TICK.min(now.duration_since(last) + Duration::from_millis(1));
            if paused_until.is_some_and(|at| at <= now) {
                paused_until = None;
                session.resume();
            } else if paused_until.is_none() && rng.happens(shared.options.pauses_per_hour, dt) {
                Stats::add(&stats.pauses, 1);
                session.pause();
                if let Some(r) = running.take() {
                    session.return_task(&r.task);
                }
                // Results sent first (their answers are checked), then
                // nothing held is waited for.
                if flush(shared, session, &mut socket, &mut book)
                    .await
                    .is_err()
                {
                    return lost(session, Ended::Dropped("send failed".into()), rng);
                }
                book.held.clear();
                book.awaiting.clear();
                paused_until = Some(now + Duration::from_secs_f64(rng.between(2.0, 10.0)));
            }
            let churn = shared.churn.load(Ordering::Relaxed);
            if churn == 0 {
                leave_at = None;
            } else if leave_at.is_none() {
                let mean = shared.options.connections as f64 / churn as f64;
                leave_at = Some(now + Duration::from_secs_f64(rng.exponential(mean)));
            }
            let leaving = leave_at.is_some_and(|at| at <= now);
            if leaving || rng.happens(shared.options.drops_per_hour, dt) {
                if leaving {
                    Stats::add(&stats.leaves, 1);
                } else {
                    Stats::add(&stats.drops, 1);
                }
                if leaving && rng.unit() < 0.5 {
                    // Leaves politely: results out, the rest handed back.
                    session.stop();
                    if let Some(r) = running.take() {
                        session.return_task(&r.task);
                    }
                    let _ = flush(shared, session, &mut socket, &mut book).await;
                    let _ = socket.close(None).await;
                }
                // Otherwise dropped as a killed tab would be: no close frame.
                drop(socket);
                session.on_closed(Ended::Dropped("dropped on purpose".into()), now_ms(), 0.0);
                return if leaving {
                    Exit::Leave
                } else {
                    Exit::Again(Duration::from_secs_f64(rng.between(1.0, 5.0)))
                };
            }
        }
        if flush(shared, session, &mut socket, &mut book)
            .await
            .is_err()
        {
            return lost(session, Ended::Dropped("send failed".into()), rng);
        }
    }
}

/// Counts a welcomed socket in [`Shared::open`] until it ends.
struct Open<'a> {
    shared: &'a Shared,
    counted: bool,
}

impl Open<'_> {
    fn count(&mut self) {
        self.counted = true;
        self.shared.open.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        if self.counted {
            self.shared.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The coordinator closed or dropped the socket: what the session says.
fn lost(session: &mut WorkerSession, ended: Ended, rng: &mut Rng) -> Exit {
    match session.on_closed(ended, now_ms(), rng.unit()) {
        Next::Reconnect { after_ms } => Exit::Again(Duration::from_millis(after_ms)),
        Next::Stop | Next::Refused(_) => Exit::Leave,
    }
}

/// This worker closes the socket because of a fault.
async fn fault_close(
    shared: &Shared,
    session: &mut WorkerSession,
    mut socket: Socket,
    fault: grid_protocol::session::Fault,
    rng: &mut Rng,
) -> Exit {
    shared.stats.note_reason(format!("fault: {fault}"));
    let _ = socket.close(None).await;
    lost(session, Ended::Fault(fault), rng)
}

/// Keeps `--connections` running: the first ones, and new ones for those
/// that left.
async fn supervise(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut ids = 0u64;
    let mut seeds = Rng(shared.options.seed);
    loop {
        while shared.live.load(Ordering::Relaxed) < shared.options.connections
            && !shared.refused.load(Ordering::Relaxed)
        {
            shared.live.fetch_add(1, Ordering::Relaxed);
            ids += 1;
            let rng = Rng(seeds.next_u64());
            tokio::spawn(connection(shared.clone(), ids, rng));
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
}

fn print(value: &serde_json::Value) {
    println!("{value}");
}

async fn run() -> anyhow::Result<()> {
    let options = parse_options()?;
    let started = std::time::Instant::now();
    let sieve = tokio::task::spawn_blocking({
        let limit = options.sieve;
        move || Sieve::new(limit)
    })
    .await?;
    eprintln!(
        "loadgen: sieve to {} in {:.2} s; {} connections to {}",
        options.sieve,
        started.elapsed().as_secs_f64(),
        options.connections,
        options.url
    );
    let (stopper, stop) = watch::channel(false);
    let shared = Arc::new(Shared {
        sieve,
        stats: Stats::default(),
        task_ms: AtomicU64::new(options.task_ms),
        churn: AtomicU64::new(options.churn),
        live: AtomicUsize::new(0),
        open: AtomicUsize::new(0),
        refused: Default::default(),
        handshakes: Semaphore::new(options.handshakes),
        stop: stop.clone(),
        options,
    });
    let supervisor = tokio::spawn(supervise(shared.clone(), stop.clone()));

    // Ready once every first connection is welcomed.
    let ramp = std::time::Instant::now();
    let ready = tokio::spawn({
        let shared = shared.clone();
        async move {
            loop {
                let welcomed = shared.stats.welcomed.load(Ordering::Relaxed) as usize;
                if welcomed >= shared.options.connections {
                    print(&json!({
                        "event": "ready",
                        "connections": shared.options.connections,
                        "seconds": ramp.elapsed().as_secs_f64(),
                    }));
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });

    let mut window = std::time::Instant::now();
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let mut words = line.split_whitespace();
        match (words.next(), words.next().map(str::parse::<u64>)) {
            (Some("reset"), None) => {
                shared.stats.reset();
                window = std::time::Instant::now();
            }
            (Some("report"), None) => print(&shared.stats.report(
                window.elapsed().as_secs_f64(),
                shared.open.load(Ordering::Relaxed),
            )),
            (Some("pace"), Some(Ok(ms))) if ms > 0 => shared.task_ms.store(ms, Ordering::Relaxed),
            (Some("churn"), Some(Ok(rate))) => shared.churn.store(rate, Ordering::Relaxed),
            (Some("stop"), None) => break,
            (None, _) => {}
            _ => eprintln!(
                "loadgen: unknown command '{line}' (reset, report, pace MS, churn R, stop)"
            ),
        }
    }
    ready.abort();
    let _ = stopper.send(true);
    let _ = supervisor.await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while shared.live.load(Ordering::Relaxed) > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    print(&shared.stats.report(
        window.elapsed().as_secs_f64(),
        shared.open.load(Ordering::Relaxed),
    ));
    Ok(())
}

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}
