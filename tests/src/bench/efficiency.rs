//! Benchmark 3: efficiency against task size. Montecarlo-pi tasks (whose
//! cost is the same for every sample, so every task of a job costs the
//! same) sized to about 1, 10 and 100 ms of native work, a job of each size
//! holding the same total work.
//!
//! Efficiency = useful compute time / (workers x grid wall time), where the
//! useful compute time is the same tasks run one after another in this
//! process with `grid_kernels::TaskRunner`, and the wall time is from the
//! submit to the collated result with two `grid worker --threads 1`.

use std::time::{Duration, Instant};

use anyhow::bail;
use grid_kernels::spec::MonteCarloParams;
use grid_kernels::{KernelSpec, ResultSummary, TaskOutput, TaskRunner};
use serde_json::json;

use super::Ctx;
use super::env;
use super::procs::Coordinator;
use super::report::{Goal, Row};
use super::throughput::{load_note, run_job};

const WORKERS: usize = 2;
const SEED: u64 = 7;

/// Nanoseconds per montecarlo sample on one thread, the best of three.
fn ns_per_sample() -> f64 {
    let samples = 4_000_000;
    let spec = KernelSpec::MontecarloPi(MonteCarloParams {
        samples,
        seed: SEED,
    });
    let mut runner = TaskRunner::new();
    (0..3)
        .map(|_| {
            let started = Instant::now();
            std::hint::black_box(runner.run(&spec, 1, 0).expect("a built-in kernel"));
            started.elapsed().as_secs_f64() * 1e9 / samples as f64
        })
        .fold(f64::INFINITY, f64::min)
}

/// Every task of the job, one after another on this thread: (seconds, the
/// total of `inside`, to check the grid's answer).
fn serial(spec: &KernelSpec, tasks: u32) -> (f64, u64) {
    let mut runner = TaskRunner::new();
    let started = Instant::now();
    let mut inside = 0;
    for index in 0..tasks {
        if let TaskOutput::Samples { inside: n, .. } =
            runner.run(spec, tasks, index).expect("a built-in kernel")
        {
            inside += n;
        }
    }
    (started.elapsed().as_secs_f64(), inside)
}

pub async fn efficiency(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    let ns = tokio::task::spawn_blocking(ns_per_sample).await?;
    eprintln!("  montecarlo: {ns:.2} ns per sample natively");
    let mut rows = Vec::new();
    let mut raw = Vec::new();
    for task_ms in [1.0, 10.0, 100.0] {
        let samples_per_task = (task_ms * 1e6 / ns).round() as u64;
        let tasks = (ctx.efficiency_work_s * 1000.0 / task_ms).round() as u32;
        let spec = KernelSpec::MontecarloPi(MonteCarloParams {
            samples: samples_per_task * u64::from(tasks),
            seed: SEED,
        });
        let request = grid_tests::job(spec.clone(), tasks);
        let load = env::load_average();
        let (serial_s, inside) = {
            let spec = spec.clone();
            tokio::task::spawn_blocking(move || serial(&spec, tasks)).await?
        };
        eprintln!(
            "  {task_ms} ms tasks: {tasks} tasks, {:.3} ms each in-process, {serial_s:.2} s serial (load {load:.2})",
            serial_s * 1000.0 / f64::from(tasks)
        );
        let mut effs = Vec::new();
        let mut walls = Vec::new();
        let mut shares = Vec::new();
        let mut loads = vec![load];
        for i in 0..ctx.expensive_runs() {
            let load = env::load_average();
            loads.push(load);
            let coordinator = Coordinator::start(&ctx.grid, &[]).await?;
            let workers = coordinator.start_workers(WORKERS).await?;
            let run = run_job(&coordinator, &workers, &request, Duration::from_secs(900)).await?;
            let got = match run.status.result {
                Some(ResultSummary::MontecarloPi { inside, .. }) => Some(inside),
                _ => None,
            };
            if got != Some(inside) {
                bail!("montecarlo answer {got:?} differs from the in-process {inside}");
            }
            let eff = serial_s / WORKERS as f64 / run.wall_s;
            eprintln!(
                "    run {}: {:.2} s wall, efficiency {:.1} %, workers' CPU {:.1} s (load {load:.2})",
                i + 1,
                run.wall_s,
                eff * 100.0,
                run.workers_cpu_s
            );
            effs.push(eff * 100.0);
            walls.push(run.wall_s);
            // How much of the two cores the workers actually got: below
            // 100 %, something else (the coordinator, other processes on the
            // machine) took CPU from them.
            shares.push(run.workers_cpu_s / WORKERS as f64 / run.wall_s * 100.0);
        }
        raw.push(json!({
            "task_ms_target": task_ms,
            "task_ms_measured": serial_s * 1000.0 / f64::from(tasks),
            "tasks": tasks,
            "samples_per_task": samples_per_task,
            "serial_s": serial_s,
            "wall_s": walls,
            "efficiency_percent": effs,
            "workers_cpu_share_percent": shares,
            "load_average": loads,
        }));
        let mut row = Row::new(
            3,
            &format!("efficiency, {task_ms} ms tasks ({tasks} tasks, 2 workers)"),
            "%",
            &effs,
        )
        .note(format!(
            "serial in-process {serial_s:.2} s; {}",
            load_note(&loads)
        ));
        if task_ms == 10.0 {
            row = row.goal(Goal::AtLeast(95.0));
        }
        rows.push(row);
        rows.push(
            Row::new(
                3,
                "  CPU time the two workers got / their wall time",
                "%",
                &shares,
            )
            .note("below 100 %: CPU taken by the coordinator or other processes"),
        );
    }
    ctx.raw.insert(
        "efficiency".into(),
        json!({"kernel": "montecarlo-pi", "ns_per_sample": ns, "sizes": raw}),
    );
    Ok(rows)
}
