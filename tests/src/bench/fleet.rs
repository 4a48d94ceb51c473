//! Benchmark 10 (`fleet`, an active fleet) and 11 (`churn`), with the load
//! generator `loadgen` (`tests/src/bin/loadgen.rs`) as a child process:
//! one async process holding every worker connection, each computing real
//! primes tasks at a paced one a second (speeds spread log-normally), some
//! dropping and coming back or pausing and handing back, every acked
//! answer checked against a sieve of its own.
//!
//! **fleet**: for 1,000, 5,000 and 19,900 connections (20,000 and the
//! coordinator's own files pass this machine's open-files limit, see
//! [`SIZES`]), each on a fresh
//! coordinator (`grid serve`, default `--sync full`, `--max-connections`
//! raised above the fleet): the connections open, 15 s of warm-up, then a
//! 30 s window in which the coordinator's and the generator's CPU
//! (`/proc/PID/stat`, user + system) and RSS are read at both ends and the
//! generator counts results acked, refill times and time spent waiting.
//! The two processes share the machine's two cores; the generator's CPU is
//! reported beside the coordinator's, so the coordinator's share of the
//! machine is plain. Memory per connection is the coordinator's RSS at the
//! window's end less its RSS before the first connection, over the
//! connections. Goal (issue 14): 20,000 connections at a task a second
//! served with the coordinator under one core and the refill p99 under
//! 50 ms.
//!
//! **churn**: 1,000 connections, tasks paced at 250 ms, while a job of
//! 200,000 tasks runs: for 60 s connections leave (half handing back
//! with a close frame, half dropped) and new ones arrive, 1,000 a second
//! each way. Then the churn stops and the pace quickens until the job is
//! done. A correctness check, not a speed one: the job must finish with
//! every task counted once and the count of primes a sieve here gives
//! (the bench fails otherwise). Figures: connections welcomed a second
//! during the minute, and the coordinator's CPU.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use grid_kernels::ResultSummary;
use grid_protocol::api::JobState;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::Ctx;
use super::env;
use super::procs::Coordinator;
use super::report::{Goal, Row};

/// The fleets measured, side by side. The issue asks for 20,000; this
/// machine's hard limit of open files is 20,000 a process (and the
/// container may not raise it), and the coordinator needs a few for its
/// listener, store and runtime beside one a connection: 19,900 is the
/// largest fleet both processes can hold.
const SIZES: [usize; 3] = [1_000, 5_000, 19_900];
const WARMUP: Duration = Duration::from_secs(15);
const WINDOW: Duration = Duration::from_secs(30);
/// Numbers a task counts primes among: small, so the generator's work is
/// bookkeeping and a job of 1,000,000 tasks spans 10,000,000 numbers.
const NUMBERS_PER_TASK: u64 = 10;
/// The most tasks one job may have.
const MAX_JOB_TASKS: u64 = 1_000_000;

/// The load generator beside the bench binary (both in `target/release`).
fn loadgen_binary() -> anyhow::Result<std::path::PathBuf> {
    let path = std::env::current_exe()?
        .parent()
        .context("the benchmark's folder")?
        .join("loadgen");
    if !path.is_file() {
        bail!(
            "{} is missing: build it with `cargo build --release -p grid-tests --bin loadgen`",
            path.display()
        );
    }
    Ok(path)
}

/// A running `loadgen`, driven through its standard input.
struct Loadgen {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    pid: u32,
}

impl Loadgen {
    fn start(url: &str, args: &[String]) -> anyhow::Result<Loadgen> {
        let mut child = Command::new(loadgen_binary()?)
            .args(["--url", url])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("start loadgen")?;
        let pid = child.id().context("loadgen's pid")?;
        let stdin = child.stdin.take().context("loadgen's stdin")?;
        let stdout = child.stdout.take().context("loadgen's stdout")?;
        Ok(Loadgen {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
            pid,
        })
    }

    async fn send(&mut self, command: &str) -> anyhow::Result<()> {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .context("write to loadgen")
    }

    /// The next JSON line whose `event` is `event`.
    async fn wait_for(&mut self, event: &str, within: Duration) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.next_line())
                .await
                .with_context(|| format!("no '{event}' from loadgen within {within:?}"))??
                .with_context(|| format!("loadgen ended before '{event}'"))?;
            let value: Value =
                serde_json::from_str(&line).with_context(|| format!("loadgen printed '{line}'"))?;
            if value["event"] == event {
                return Ok(value);
            }
        }
    }

    async fn report(&mut self) -> anyhow::Result<Value> {
        self.send("report").await?;
        self.wait_for("report", Duration::from_secs(30)).await
    }

    /// Every connection hands back and closes; the last report.
    async fn stop(mut self) -> anyhow::Result<Value> {
        self.send("stop").await?;
        let last = self.wait_for("report", Duration::from_secs(60)).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        last
    }

    fn cpu_seconds(&self) -> anyhow::Result<f64> {
        env::cpu_seconds(self.pid)
    }
}

fn counter(report: &Value, name: &str) -> u64 {
    report[name].as_u64().unwrap_or(0)
}

fn figure(report: &Value, name: &str) -> f64 {
    report[name].as_f64().unwrap_or(f64::NAN)
}

/// Fails on anything the generator found wrong: an answer that differs from
/// the sieve's, an ack that does not match its frame, a rejected result.
fn check(report: &Value, what: &str) -> anyhow::Result<()> {
    let wrong = counter(report, "wrong_answers");
    let mismatched = counter(report, "ack_mismatches");
    let rejected = counter(report, "rejected");
    if wrong + mismatched + rejected > 0 {
        bail!(
            "{what}: {wrong} wrong answers, {mismatched} acks that did not match their frame, \
             {rejected} results rejected: {report}"
        );
    }
    Ok(())
}

/// What one fleet size measured.
#[derive(Debug, Clone, Copy, Default)]
struct Fleet {
    results_per_s: f64,
    coordinator_core_percent: f64,
    cpu_us_per_result: f64,
    cpu_us_per_connection_s: f64,
    loadgen_core_percent: f64,
    kib_per_connection: f64,
    refill_p50_ms: f64,
    refill_p99_ms: f64,
    waiting_percent: f64,
    open_at_end: u64,
    setup_s: f64,
}

async fn one_fleet(ctx: &Ctx, n: usize) -> anyhow::Result<(Fleet, Value)> {
    let max = (n + n / 4 + 100).to_string();
    let coordinator = Coordinator::start(&ctx.grid, &["--max-connections", &max]).await?;
    // Enough tasks for the whole run at one a second per connection.
    let tasks_needed = (n as u64) * 120;
    let jobs = tasks_needed.div_ceil(MAX_JOB_TASKS);
    let per_job = tasks_needed.div_ceil(jobs);
    let client = coordinator.client();
    for k in 0..jobs {
        let start = k * per_job * NUMBERS_PER_TASK;
        let end = start + per_job * NUMBERS_PER_TASK;
        let request = grid_tests::job(grid_tests::primes(start, end), per_job as u32);
        client.submit(&request).await?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = coordinator.rss_kib()?;
    let sieve = jobs * per_job * NUMBERS_PER_TASK;
    let args = [
        "--connections".to_string(),
        n.to_string(),
        "--sieve".into(),
        sieve.to_string(),
    ];
    let started = Instant::now();
    let mut loadgen = Loadgen::start(&coordinator.url, &args)?;
    loadgen.wait_for("ready", Duration::from_secs(300)).await?;
    let setup_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(WARMUP).await;
    loadgen.send("reset").await?;
    let (cpu0, gen0, t0) = (
        coordinator.cpu_seconds()?,
        loadgen.cpu_seconds()?,
        Instant::now(),
    );
    tokio::time::sleep(WINDOW).await;
    let (cpu1, gen1, seconds) = (
        coordinator.cpu_seconds()?,
        loadgen.cpu_seconds()?,
        t0.elapsed().as_secs_f64(),
    );
    let rss_after = coordinator.rss_kib()?;
    let report = loadgen.report().await?;
    let last = loadgen.stop().await?;
    check(&report, &format!("{n} connections"))?;
    check(&last, &format!("{n} connections, stopping"))?;
    let accepted = counter(&report, "accepted") as f64;
    let cpu = cpu1 - cpu0;
    let fleet = Fleet {
        results_per_s: accepted / seconds,
        coordinator_core_percent: cpu / seconds * 100.0,
        cpu_us_per_result: cpu / accepted.max(1.0) * 1e6,
        cpu_us_per_connection_s: cpu / seconds / n as f64 * 1e6,
        loadgen_core_percent: (gen1 - gen0) / seconds * 100.0,
        kib_per_connection: (rss_after as f64 - rss_before as f64) / n as f64,
        refill_p50_ms: figure(&report, "refill_p50_ms"),
        refill_p99_ms: figure(&report, "refill_p99_ms"),
        waiting_percent: figure(&report, "waiting_fraction") * 100.0,
        open_at_end: counter(&report, "open"),
        setup_s,
    };
    eprintln!(
        "  {n} connections ({} open at the end, set up in {setup_s:.1} s): {:.0} results/s, \
         coordinator {:.1} % of a core ({:.1} us a result, {:.2} us/s a connection), \
         loadgen {:.1} %, {:.2} KiB a connection, refill p50 {:.2} ms p99 {:.2} ms, \
         waiting {:.2} %",
        fleet.open_at_end,
        fleet.results_per_s,
        fleet.coordinator_core_percent,
        fleet.cpu_us_per_result,
        fleet.cpu_us_per_connection_s,
        fleet.loadgen_core_percent,
        fleet.kib_per_connection,
        fleet.refill_p50_ms,
        fleet.refill_p99_ms,
        fleet.waiting_percent,
    );
    let raw = json!({
        "connections": n, "seconds": seconds, "setup_s": setup_s,
        "coordinator_cpu_s": cpu, "loadgen_cpu_s": gen1 - gen0,
        "rss_before_kib": rss_before, "rss_after_kib": rss_after,
        "load": env::load_average(), "report": report, "last": last,
    });
    Ok((fleet, raw))
}

pub async fn fleet(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    let biggest = SIZES.iter().copied().max().unwrap_or(0);
    // One descriptor a connection in each process, and a few to spare.
    let limit = env::raise_nofile((biggest + 64) as u64)?;
    eprintln!("  open-files limit {limit} (inherited by the coordinator and loadgen)");
    let mut rows = Vec::new();
    let mut raw = Vec::new();
    for n in SIZES {
        let (f, run) = match one_fleet(ctx, n).await {
            Ok(measured) => measured,
            Err(error) => {
                eprintln!("  {n} connections failed: {error:#}");
                rows.push(Row::missing(
                    10,
                    &format!("fleet of {n}"),
                    format!("failed: {error:#}"),
                ));
                raw.push(json!({ "connections": n, "error": format!("{error:#}") }));
                continue;
            }
        };
        raw.push(run);
        let last = n == biggest;
        let goal = |row: Row, goal: Goal| if last { row.goal(goal) } else { row };
        let open = format!("{} of {n} open at the end", f.open_at_end);
        rows.extend([
            Row::new(
                10,
                &format!("fleet {n}: results acked a second (1 task/s a connection)"),
                "results/s",
                &[f.results_per_s],
            )
            .note(format!("{open}; all connected in {:.1} s", f.setup_s)),
            goal(
                Row::new(
                    10,
                    &format!("fleet {n}: coordinator CPU"),
                    "% of a core",
                    &[f.coordinator_core_percent],
                ),
                Goal::AtMost(100.0),
            )
            .note(format!(
                "loadgen beside it: {:.1} % (2 cores shared)",
                f.loadgen_core_percent
            )),
            Row::new(
                10,
                &format!("fleet {n}: coordinator CPU a result"),
                "us",
                &[f.cpu_us_per_result],
            ),
            Row::new(
                10,
                &format!("fleet {n}: coordinator CPU a connection"),
                "us/s",
                &[f.cpu_us_per_connection_s],
            ),
            Row::new(
                10,
                &format!("fleet {n}: coordinator memory a connection"),
                "KiB",
                &[f.kib_per_connection],
            ),
            Row::new(
                10,
                &format!("fleet {n}: finished batch to next batch, p50"),
                "ms",
                &[f.refill_p50_ms],
            ),
            goal(
                Row::new(
                    10,
                    &format!("fleet {n}: finished batch to next batch, p99"),
                    "ms",
                    &[f.refill_p99_ms],
                ),
                Goal::AtMost(50.0),
            ),
            Row::new(
                10,
                &format!("fleet {n}: worker time waiting for work"),
                "%",
                &[f.waiting_percent],
            ),
        ]);
    }
    ctx.raw.insert(
        "fleet".into(),
        json!({ "warmup_s": WARMUP.as_secs(), "window_s": WINDOW.as_secs(), "runs": raw }),
    );
    Ok(rows)
}

/// Connections in the churn benchmark, and how many leave (and arrive) a
/// second.
const CHURN_CONNECTIONS: usize = 1_000;
const CHURN_PER_S: u64 = 1_000;
const CHURN_FOR: Duration = Duration::from_secs(60);
const CHURN_TASKS: u64 = 200_000;

pub async fn churn(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    env::raise_nofile((CHURN_CONNECTIONS * 4) as u64)?;
    let coordinator = Coordinator::start(&ctx.grid, &[]).await?;
    let client = coordinator.client();
    let end = CHURN_TASKS * NUMBERS_PER_TASK;
    let expected =
        tokio::task::spawn_blocking(move || grid_tests::sieve::primes_below(end)).await?;
    let job = client
        .submit(&grid_tests::job(
            grid_tests::primes(0, end),
            CHURN_TASKS as u32,
        ))
        .await?
        .id;
    let args = [
        "--connections".to_string(),
        CHURN_CONNECTIONS.to_string(),
        "--task-ms".into(),
        "250".into(),
        "--sieve".into(),
        end.to_string(),
    ];
    let mut loadgen = Loadgen::start(&coordinator.url, &args)?;
    loadgen.wait_for("ready", Duration::from_secs(120)).await?;
    loadgen.send(&format!("churn {CHURN_PER_S}")).await?;
    loadgen.send("reset").await?;
    let (cpu0, gen0, t0) = (
        coordinator.cpu_seconds()?,
        loadgen.cpu_seconds()?,
        Instant::now(),
    );
    tokio::time::sleep(CHURN_FOR).await;
    let report = loadgen.report().await?;
    let seconds = t0.elapsed().as_secs_f64();
    let (cpu1, gen1) = (coordinator.cpu_seconds()?, loadgen.cpu_seconds()?);
    let during = client.status(job).await?;
    // The rest of the job, steadily and quickly.
    loadgen.send("churn 0").await?;
    loadgen.send("pace 5").await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        let status = client.status(job).await?;
        if status.state.is_finished() {
            break status;
        }
        if Instant::now() > deadline {
            bail!("the churned job is not done after 600 s: {status:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let last = loadgen.stop().await?;
    check(&report, "churn")?;
    check(&last, "churn, finishing")?;
    // The correctness check: every task counted once, the right answer.
    if status.state != JobState::Done
        || u64::from(status.tasks.done) != CHURN_TASKS
        || status.result != Some(ResultSummary::Primes { count: expected })
    {
        bail!(
            "the churned job ended wrong: expected {CHURN_TASKS} tasks done and {expected} \
             primes, got {status:?}"
        );
    }
    let welcomed = counter(&report, "welcomed") as f64;
    let leaves = counter(&report, "leaves") as f64;
    let reconnects = welcomed / seconds;
    let core = (cpu1 - cpu0) / seconds * 100.0;
    let running = during.state == JobState::Running;
    eprintln!(
        "  churn: {reconnects:.0} connections welcomed/s, {:.0} left/s, {} open at the end of \
         the minute; coordinator {core:.1} % of a core, loadgen {:.1} %; job {} tasks done \
         during the minute ({:?} at its end), then done with {expected} primes",
        leaves / seconds,
        counter(&report, "open"),
        (gen1 - gen0) / seconds * 100.0,
        during.tasks.done,
        during.state,
    );
    ctx.raw.insert(
        "churn".into(),
        json!({
            "connections": CHURN_CONNECTIONS, "churn_per_s": CHURN_PER_S,
            "seconds": seconds, "coordinator_cpu_s": cpu1 - cpu0, "loadgen_cpu_s": gen1 - gen0,
            "tasks_done_in_minute": during.tasks.done, "job_running_at_minute_end": running,
            "expected_primes": expected, "report": report, "last": last,
        }),
    );
    let note = if running {
        "the job ran throughout; it then finished with every task once and the sieve's count"
    } else {
        "the job finished within the minute (every task once, the sieve's count)"
    };
    Ok(vec![
        Row::new(
            11,
            "churn: connections welcomed a second, 1,000 leaving a second",
            "/s",
            &[reconnects],
        )
        .note(note),
        Row::new(11, "churn: coordinator CPU", "% of a core", &[core]),
        Row::new(
            11,
            "churn: results acked a second meanwhile",
            "results/s",
            &[counter(&report, "accepted") as f64 / seconds],
        ),
    ])
}
