//! Benchmark 1 (tiny-task throughput) and 4 (idle connections): the
//! 100,000-task primes job on a coordinator with two native worker
//! processes, end to end from the submit to the collated result, alone and
//! beside 10,000 idle worker connections.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use grid_kernels::ResultSummary;
use grid_protocol::api::{JobRequest, JobState, JobStatus};
use serde_json::{Value, json};

use super::Ctx;
use super::env::{self, Stat};
use super::procs::{Coordinator, Profiler, Workers};
use super::report::{Goal, Row};
use super::socket::IdleSwarm;

/// `grid submit primes --start 0 --end 10000000 --tasks 100000`.
pub fn primes_job() -> JobRequest {
    grid_tests::job(grid_tests::primes(0, 10_000_000), 100_000)
}

/// The primes below 10^7.
const PRIMES_BELOW_1E7: u64 = 664_579;

fn unix_ms_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// One job, measured.
#[derive(Debug, Clone)]
pub struct JobRun {
    /// From just before the submit request to the coordinator's
    /// `finished_at` (set when the last result is durable and collated).
    pub wall_s: f64,
    pub tasks: u64,
    pub coordinator_cpu_s: f64,
    pub workers_cpu_s: f64,
    pub status: JobStatus,
}

impl JobRun {
    pub fn tasks_per_s(&self) -> f64 {
        self.tasks as f64 / self.wall_s
    }

    pub fn json(&self) -> Value {
        json!({
            "wall_s": self.wall_s,
            "tasks": self.tasks,
            "tasks_per_s": self.tasks_per_s(),
            "coordinator_cpu_s": self.coordinator_cpu_s,
            "workers_cpu_s": self.workers_cpu_s,
            "result": self.status.result,
        })
    }
}

/// Submits `request` and waits until the job is done. The end is the
/// coordinator's own `finished_at` (milliseconds, same clock), so polling
/// every 20 ms costs the grid nothing and loses no precision.
pub async fn run_job(
    coordinator: &Coordinator,
    workers: &Workers,
    request: &JobRequest,
    timeout: Duration,
) -> anyhow::Result<JobRun> {
    let client = coordinator.client();
    let cpu_before = coordinator.cpu_seconds()?;
    let workers_before = workers.cpu_seconds();
    let submitted_ms = unix_ms_f64();
    let id = client.submit(request).await?.id;
    let deadline = tokio::time::Instant::now() + timeout;
    let status = loop {
        let status = client.status(id).await?;
        match status.state {
            JobState::Done => break status,
            JobState::Failed | JobState::Cancelled => {
                bail!("job {id} ended badly: {status:?}")
            }
            JobState::Queued | JobState::Running | JobState::Rechecking => {}
        }
        if tokio::time::Instant::now() > deadline {
            bail!("job {id} not done within {timeout:?}: {status:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let coordinator_cpu_s = coordinator.cpu_seconds()? - cpu_before;
    let workers_cpu_s = workers.cpu_seconds() - workers_before;
    let finished_ms = status
        .finished_at
        .context("a done job without finished_at")? as f64;
    Ok(JobRun {
        wall_s: (finished_ms - submitted_ms).max(1.0) / 1000.0,
        tasks: status.tasks.total.into(),
        coordinator_cpu_s,
        workers_cpu_s,
        status,
    })
}

/// A fresh coordinator with two native workers, ready for a job.
async fn fresh_grid(ctx: &Ctx) -> anyhow::Result<(Coordinator, Workers)> {
    let coordinator = Coordinator::start(&ctx.grid, &[]).await?;
    let workers = coordinator.start_workers(2).await?;
    Ok((coordinator, workers))
}

/// Runs the primes job once on a fresh grid and checks its answer.
async fn primes_once(ctx: &Ctx, profile: Option<&str>) -> anyhow::Result<JobRun> {
    let (coordinator, workers) = fresh_grid(ctx).await?;
    let profiler = match (profile, &ctx.perf_dir) {
        (Some(name), Some(dir)) => Some(Profiler::attach(
            coordinator.pid,
            dir.join(format!("{name}.perf.data")),
        )?),
        _ => None,
    };
    let run = run_job(
        &coordinator,
        &workers,
        &primes_job(),
        Duration::from_secs(600),
    )
    .await?;
    if let Some(profiler) = profiler {
        let file = profiler.stop()?;
        eprintln!("  profile written to {}", file.display());
    }
    check_primes(&run)?;
    Ok(run)
}

fn check_primes(run: &JobRun) -> anyhow::Result<()> {
    let result = &run.status.result;
    if *result
        != Some(ResultSummary::Primes {
            count: PRIMES_BELOW_1E7,
        })
    {
        bail!("wrong answer: {result:?} for the primes below 10^7, expected {PRIMES_BELOW_1E7}");
    }
    Ok(())
}

/// Benchmark 1. Returns its rows and the median tasks/s (for benchmark 2's
/// ratio).
pub async fn tiny_tasks(ctx: &mut Ctx) -> anyhow::Result<(Vec<Row>, f64)> {
    let mut runs = Vec::new();
    for i in 0..ctx.runs {
        let load = env::load_average();
        let run = primes_once(ctx, None).await?;
        eprintln!(
            "  run {}: {:.0} tasks/s, {:.2} s, coordinator CPU {:.2} s (load {load:.2})",
            i + 1,
            run.tasks_per_s(),
            run.wall_s,
            run.coordinator_cpu_s
        );
        runs.push((load, run));
    }
    let mut profiled = None;
    if ctx.perf_dir.is_some() {
        eprintln!("  profiled run (not counted):");
        let run = primes_once(ctx, Some("throughput")).await?;
        eprintln!("  {:.0} tasks/s under perf", run.tasks_per_s());
        profiled = Some(run.json());
    }
    // The same tasks in this process, one after another: what the work
    // itself costs, next to what the grid spends per task.
    let serial_us = tokio::task::spawn_blocking(|| {
        let request = primes_job();
        let grid_protocol::api::KernelRequest::BuiltIn(spec) = request.kernel else {
            unreachable!("primes is built in")
        };
        let tasks = request.tasks.expect("a task count");
        let mut runner = grid_kernels::TaskRunner::new();
        (0..5)
            .map(|_| {
                let started = std::time::Instant::now();
                for index in 0..tasks {
                    std::hint::black_box(
                        runner.run(&spec, tasks, index).expect("a built-in kernel"),
                    );
                }
                started.elapsed().as_secs_f64() * 1e6 / f64::from(tasks)
            })
            .collect::<Vec<f64>>()
    })
    .await?;
    let tps: Vec<f64> = runs.iter().map(|(_, r)| r.tasks_per_s()).collect();
    let wall: Vec<f64> = runs.iter().map(|(_, r)| r.wall_s).collect();
    let cpu_per_task: Vec<f64> = runs
        .iter()
        .map(|(_, r)| r.coordinator_cpu_s / r.tasks as f64 * 1e6)
        .collect();
    let worker_cpu_per_task: Vec<f64> = runs
        .iter()
        .map(|(_, r)| r.workers_cpu_s / r.tasks as f64 * 1e6)
        .collect();
    let loads: Vec<f64> = runs.iter().map(|(l, _)| *l).collect();
    ctx.raw.insert(
        "tiny_tasks".into(),
        json!({
            "job": primes_job(),
            "workers": "2 x grid worker --threads 1",
            "runs": runs.iter().map(|(load, r)| {
                let mut v = r.json();
                v["load_average"] = json!(load);
                v
            }).collect::<Vec<_>>(),
            "profiled_run": profiled,
            "in_process_us_per_task": serial_us,
        }),
    );
    let load_note = load_note(&loads);
    let median = Stat::of(&tps).map_or(f64::NAN, |s| s.median);
    let rows = vec![
        Row::new(
            1,
            "tiny-task throughput, 100,000 x 100-number primes tasks, 2 workers",
            "tasks/s",
            &tps,
        )
        .goal(Goal::AtLeast(100_000.0))
        .note(format!(
            "submit to collated result, --sync full; {load_note}"
        )),
        Row::new(1, "  wall time of the job", "s", &wall),
        Row::new(1, "  coordinator CPU per task", "us", &cpu_per_task)
            .note("user+system time of the coordinator process / tasks"),
        Row::new(
            1,
            "  worker CPU per task (both workers)",
            "us",
            &worker_cpu_per_task,
        ),
        Row::new(
            1,
            "  the task itself, in-process (TaskRunner)",
            "us",
            &serial_us,
        )
        .note("5 passes over the 100,000 tasks, one thread"),
    ];
    Ok((rows, median))
}

/// A note on how busy the machine was before the runs.
pub fn load_note(loads: &[f64]) -> String {
    match Stat::of(loads) {
        Some(s) => format!("load avg before runs {:.1}-{:.1}", s.min, s.max),
        None => String::new(),
    }
}

/// How long benchmark 4 watches the coordinator's CPU while the connections
/// idle: two heartbeat periods.
const IDLE_WINDOW: Duration = Duration::from_secs(20);

/// Benchmark 4: memory per idle connection, and the primes job beside them
/// against the same job on a grid without them.
pub async fn connections(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    let n = ctx.connections;
    // Each side of a loopback connection is one descriptor in its own
    // process: n here, n in the coordinator.
    let limit = env::raise_nofile((n + 2048) as u64)?;
    eprintln!("  open-files limit {limit} (inherited by the coordinator)");
    let mut per_conn = Vec::new();
    let mut client_per_conn = Vec::new();
    let mut idle_cpu = Vec::new();
    let mut with = Vec::new();
    let mut without = Vec::new();
    let mut ratio = Vec::new();
    let mut setup_rate = Vec::new();
    let mut raw_runs = Vec::new();
    let mut loads = Vec::new();
    let total = ctx.expensive_runs();
    for i in 0..total {
        let load = env::load_average();
        loads.push(load);
        // Without: a fresh grid, as in benchmark 1.
        let alone = primes_once(ctx, None).await?;

        // With: a fresh grid, then the idle connections, then the same job.
        let (coordinator, workers) = fresh_grid(ctx).await?;
        let child_limit = env::nofile_limit(coordinator.pid);
        // Let the coordinator settle, then take its baseline.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss_before = coordinator.rss_kib()?;
        let own_before = env::rss_kib(std::process::id())?;
        let started = tokio::time::Instant::now();
        let swarm = IdleSwarm::connect(&coordinator.url, n, 256, Duration::from_secs(10)).await?;
        let setup_s = started.elapsed().as_secs_f64();
        // Wait for the coordinator to list them all (every hello handled).
        let client = coordinator.client();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let listed = loop {
            let list = client.workers().await?;
            let paused = list.iter().filter(|w| w.paused).count();
            if paused >= n {
                break list.len();
            }
            if tokio::time::Instant::now() > deadline {
                bail!("only {paused} of {n} idle connections are listed as paused");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss_after = coordinator.rss_kib()?;
        let kib_per_conn = (rss_after as f64 - rss_before as f64) / n as f64;
        // The client ends of the same connections, in this process: the same
        // WebSocket stack but with a 4 KiB read buffer (see socket.rs).
        let own_kib_per_conn =
            (env::rss_kib(std::process::id())? as f64 - own_before as f64) / n as f64;
        // What holding them costs while nothing else happens: heartbeats
        // both ways, and the coordinator's once-a-second worker sampling.
        // Two whole heartbeat periods (10 s on each side), so that beats
        // sent in step cannot all fall outside the window.
        let idle_cpu_before = coordinator.cpu_seconds()?;
        tokio::time::sleep(IDLE_WINDOW).await;
        let idle_cpu_percent =
            (coordinator.cpu_seconds()? - idle_cpu_before) / IDLE_WINDOW.as_secs_f64() * 100.0;
        let profiler = match (&ctx.perf_dir, i == 0) {
            (Some(dir), true) => Some(Profiler::attach(
                coordinator.pid,
                dir.join("connections.perf.data"),
            )?),
            _ => None,
        };
        let beside = run_job(
            &coordinator,
            &workers,
            &primes_job(),
            Duration::from_secs(600),
        )
        .await?;
        if let Some(profiler) = profiler {
            let file = profiler.stop()?;
            eprintln!(
                "  profile written to {} (this run is counted too)",
                file.display()
            );
        }
        check_primes(&beside)?;
        let still_open = swarm.open();
        let rss_end = coordinator.rss_kib()?;
        swarm.close().await;
        drop(workers);
        drop(coordinator);

        eprintln!(
            "  run {}: {:.1} KiB/connection ({} -> {} KiB), {:.0} tasks/s beside {n} idle vs {:.0} alone, {:.0} connections/s to set up (load {load:.2})",
            i + 1,
            kib_per_conn,
            rss_before,
            rss_after,
            beside.tasks_per_s(),
            alone.tasks_per_s(),
            n as f64 / setup_s
        );
        per_conn.push(kib_per_conn);
        if i == 0 {
            // Later runs reuse memory this process freed, so only the first
            // one measures anything.
            client_per_conn.push(own_kib_per_conn);
        }
        idle_cpu.push(idle_cpu_percent);
        with.push(beside.tasks_per_s());
        without.push(alone.tasks_per_s());
        ratio.push(beside.tasks_per_s() / alone.tasks_per_s());
        setup_rate.push(n as f64 / setup_s);
        raw_runs.push(json!({
            "load_average": load,
            "connections": n,
            "listed_workers": listed,
            "still_open_after_job": still_open,
            "coordinator_nofile_limit": child_limit,
            "rss_before_kib": rss_before,
            "rss_after_kib": rss_after,
            "rss_after_job_kib": rss_end,
            "kib_per_connection": kib_per_conn,
            "client_kib_per_connection": own_kib_per_conn,
            "idle_cpu_percent_of_a_core": idle_cpu_percent,
            "setup_s": setup_s,
            "job_alone": alone.json(),
            "job_beside_idle": beside.json(),
        }));
    }
    ctx.raw.insert(
        "connections".into(),
        json!({"idle": "hello, then pause, then a heartbeat every 10 s", "runs": raw_runs}),
    );
    let load_note = load_note(&loads);
    Ok(vec![
        Row::new(
            4,
            &format!("coordinator memory per idle connection ({n} held)"),
            "KiB",
            &per_conn,
        )
        .goal(Goal::AtMost(20.0))
        .note(format!(
            "VmRSS delta / connections; idle = hello + pause + heartbeats; {load_note}"
        )),
        Row::new(
            4,
            "  the client ends, in the benchmark process",
            "KiB",
            &client_per_conn,
        )
        .note("first run only; same WebSocket stack with a 4 KiB read buffer, not 128 KiB"),
        Row::new(
            4,
            "  coordinator CPU while they idle",
            "% of a core",
            &idle_cpu,
        )
        .note("20 s with no job: heartbeats both ways (every 10 s), once-a-second sampling"),
        Row::new(
            4,
            &format!("  primes job beside {n} idle connections"),
            "tasks/s",
            &with,
        ),
        Row::new(
            4,
            "  the same job without them (paired fresh grid)",
            "tasks/s",
            &without,
        ),
        Row::new(4, "  throughput with / without", "x", &ratio)
            .goal(Goal::AtLeast(0.95))
            .note("goal: 'still runs at full speed', read as within 5 %"),
        Row::new(
            4,
            "  idle connections set up per second",
            "conn/s",
            &setup_rate,
        )
        .note("handshake + hello + welcome + pause, 256 at a time"),
    ])
}
