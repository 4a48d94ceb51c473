//! Benchmark 9 (fair share between users, the measure): on a fresh
//! coordinator with two native worker processes, bob's job of 100 tasks
//! alone, then alice's of 1,000,000 tasks and, a second later, bob's 100
//! again. Tasks are montecarlo-pi samples sized to a few milliseconds of
//! native work from an in-process calibration, the same kernel for both.
//! The figure is bob's time beside alice's job over his time alone, each
//! from just before the submit to the coordinator's `finished_at` (goal:
//! at most 3x), with alice's tasks done meanwhile to show her job kept
//! going. Both users are made through the API with the admin token.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use grid_cli::client::Client;
use grid_kernels::spec::MonteCarloParams;
use grid_kernels::{KernelSpec, TaskRunner};
use grid_protocol::api::{JobRequest, JobState, UserLimits, UserRequest};
use serde_json::json;

use super::Ctx;
use super::env;
use super::procs::Coordinator;
use super::report::{Goal, Row};
use super::throughput::load_note;

/// Each task's native work, ms.
const TASK_MS: f64 = 3.0;
const RUNS: usize = 3;

/// Montecarlo samples that take [`TASK_MS`] on one thread, from the best
/// of three timings.
fn samples_per_task() -> u64 {
    let samples = 1_000_000;
    let spec = KernelSpec::MontecarloPi(MonteCarloParams { samples, seed: 1 });
    let mut runner = TaskRunner::new();
    let ns = (0..3)
        .map(|_| {
            let started = Instant::now();
            std::hint::black_box(runner.run(&spec, 1, 0).expect("a built-in kernel"));
            started.elapsed().as_secs_f64() * 1e9 / samples as f64
        })
        .fold(f64::INFINITY, f64::min);
    (TASK_MS * 1e6 / ns).round().max(1.0) as u64
}

fn montecarlo(per_task: u64, tasks: u32, seed: u64) -> JobRequest {
    grid_tests::job(
        KernelSpec::MontecarloPi(MonteCarloParams {
            samples: per_task * u64::from(tasks),
            seed,
        }),
        tasks,
    )
}

async fn add_user(coordinator: &Coordinator, name: &str) -> anyhow::Result<Client> {
    let made = coordinator
        .client()
        .add_user(&UserRequest {
            name: name.to_string(),
            admin: false,
            weight: None,
            limits: UserLimits::default(),
        })
        .await?;
    Client::new(&coordinator.url, Some(made.token))
}

/// Submits `request` and waits for it: ms from just before the submit to
/// the coordinator's `finished_at` (same clock).
async fn time_job(client: &Client, request: &JobRequest) -> anyhow::Result<f64> {
    let submitted = super::unix_ms();
    let id = client.submit(request).await?.id;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        let status = client.status(id).await?;
        if status.state == JobState::Done {
            let finished = status
                .finished_at
                .context("a done job without finished_at")?;
            return Ok(finished.saturating_sub(submitted) as f64);
        }
        if status.state.is_finished() {
            bail!("job {id} ended badly: {status:?}");
        }
        if tokio::time::Instant::now() > deadline {
            bail!("job {id} not done in 300 s: {status:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One run: (bob alone ms, bob beside alice ms, alice's tasks done while
/// bob's second job ran).
async fn once(ctx: &Ctx, per_task: u64) -> anyhow::Result<(f64, f64, u32)> {
    let coordinator = Coordinator::start(&ctx.grid, &[]).await?;
    let _workers = coordinator.start_workers(2).await?;
    let alice = add_user(&coordinator, "alice").await?;
    let bob = add_user(&coordinator, "bob").await?;
    let alone = time_job(&bob, &montecarlo(per_task, 100, 1)).await?;
    let huge = alice.submit(&montecarlo(per_task, 1_000_000, 2)).await?.id;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = alice.status(huge).await?.tasks.done;
    let beside = time_job(&bob, &montecarlo(per_task, 100, 3)).await?;
    let after = alice.status(huge).await?;
    if after.state != JobState::Running {
        bail!("alice's job is no longer running: {after:?}");
    }
    alice.cancel(huge).await?;
    Ok((alone, beside, after.tasks.done.saturating_sub(before)))
}

pub async fn fair_share(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    let per_task = tokio::task::spawn_blocking(samples_per_task).await?;
    eprintln!("  fair share: {per_task} montecarlo samples a task ({TASK_MS} ms)");
    let (mut ratios, mut alone, mut beside, mut progress, mut loads) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut raw = Vec::new();
    for run in 0..RUNS.min(ctx.runs.max(1)) {
        let load = env::load_average();
        let (a, b, done) = once(ctx, per_task).await?;
        let ratio = b / a.max(1.0);
        eprintln!(
            "  fair share run {}: bob {b:.0} ms beside alice, {a:.0} ms alone: {ratio:.2}x; \
             alice {done} tasks meanwhile (load {load:.2})",
            run + 1
        );
        raw.push(json!({
            "alone_ms": a, "beside_ms": b, "ratio": ratio,
            "alice_tasks_meanwhile": done, "load": load,
        }));
        ratios.push(ratio);
        alone.push(a);
        beside.push(b);
        progress.push(f64::from(done));
        loads.push(load);
    }
    ctx.raw.insert(
        "fair_share".into(),
        json!({ "task_ms": TASK_MS, "samples_per_task": per_task, "runs": raw }),
    );
    let note = load_note(&loads);
    Ok(vec![
        Row::new(
            9,
            &format!("fair share: bob's 100 x {TASK_MS} ms tasks beside alice's 1,000,000 / alone, 2 workers"),
            "x",
            &ratios,
        )
        .goal(Goal::AtMost(3.0))
        .note(&note),
        Row::new(9, "bob's 100 tasks alone", "ms", &alone),
        Row::new(9, "bob's 100 tasks beside alice's job", "ms", &beside),
        Row::new(9, "alice's tasks done meanwhile", "tasks", &progress),
    ])
}
