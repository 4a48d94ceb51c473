//! Benchmark 2: the same 100,000 primes tasks on Dask distributed, in a
//! throwaway virtualenv (`target/bench/venv`, made on first use with
//! `python3 -m venv` and `pip install 'dask[distributed]'`), run by
//! `tests/bench/dask_primes.py`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::json;

use super::Ctx;
use super::env;
use super::report::{Goal, Row};
use super::throughput::load_note;

/// What `dask_primes.py` prints.
#[derive(Debug, Deserialize)]
struct DaskRun {
    tasks_total: u64,
    tasks_submitted: u64,
    extrapolated: bool,
    wall_s: f64,
    tasks_per_s: f64,
    count: u64,
    serial_compute_s: Option<f64>,
    dask: String,
    python: String,
}

fn venv_python() -> PathBuf {
    env::bench_dir().join("venv").join("bin").join("python")
}

fn has_dask(python: &PathBuf) -> bool {
    Command::new(python)
        .args(["-c", "import dask.distributed"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The virtualenv's python, making the virtualenv first if needed.
fn ensure_venv() -> anyhow::Result<PathBuf> {
    let python = venv_python();
    if python.is_file() && has_dask(&python) {
        return Ok(python);
    }
    let venv = env::bench_dir().join("venv");
    eprintln!(
        "  making a virtualenv with dask[distributed] in {}",
        venv.display()
    );
    std::fs::create_dir_all(env::bench_dir())?;
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .context("run python3 -m venv")?;
    if !status.success() {
        bail!("python3 -m venv failed ({status}); on Debian: apt-get install python3-venv");
    }
    let pip = venv.join("bin").join("pip");
    let status = Command::new(&pip)
        .args(["install", "--quiet", "dask[distributed]"])
        .status()
        .context("run pip")?;
    if !status.success() || !has_dask(&python) {
        bail!("pip install 'dask[distributed]' failed ({status})");
    }
    Ok(python)
}

/// Runs the Dask side; `grid_tasks_per_s` is benchmark 1's median from the
/// same invocation, for the ratio.
pub async fn dask(ctx: &mut Ctx, grid_tasks_per_s: Option<f64>) -> anyhow::Result<Vec<Row>> {
    let python = tokio::task::spawn_blocking(ensure_venv).await??;
    let script = env::repo_root()
        .join("tests")
        .join("bench")
        .join("dask_primes.py");
    let mut runs = Vec::new();
    let mut loads = Vec::new();
    for i in 0..ctx.expensive_runs() {
        let load = env::load_average();
        loads.push(load);
        let mut command = Command::new(&python);
        command
            .arg(&script)
            .args(["--start", "0", "--end", "10000000", "--tasks", "100000"])
            .args(["--workers", "2"]);
        if let Some(n) = ctx.dask_tasks {
            command.args(["--submit", &n.to_string()]);
        }
        if i > 0 {
            // The serial pass is the same every run; time it once.
            command.arg("--skip-serial");
        }
        let output = tokio::task::spawn_blocking(move || command.output()).await??;
        if !output.status.success() {
            bail!(
                "dask_primes.py failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout
            .lines()
            .last()
            .context("no output from dask_primes.py")?;
        let run: DaskRun = serde_json::from_str(line)
            .with_context(|| format!("unreadable output from dask_primes.py: {line}"))?;
        if !run.extrapolated && run.count != 664_579 {
            bail!("Dask counted {} primes below 10^7", run.count);
        }
        eprintln!(
            "  run {}: {:.0} tasks/s, {} tasks in {:.1} s (load {load:.2})",
            i + 1,
            run.tasks_per_s,
            run.tasks_submitted,
            run.wall_s
        );
        runs.push((serde_json::from_str::<serde_json::Value>(line)?, run));
    }
    let tps: Vec<f64> = runs.iter().map(|(_, r)| r.tasks_per_s).collect();
    let serial = runs.iter().find_map(|(_, r)| r.serial_compute_s);
    let first = &runs[0].1;
    let scale = first.tasks_total as f64 / first.tasks_submitted as f64;
    // Scheduling overhead: wall time less the pure-Python compute spread
    // over the two workers, per task.
    let overhead_us: Vec<f64> = match serial {
        Some(serial) => runs
            .iter()
            .map(|(_, r)| (r.wall_s - serial / 2.0) / r.tasks_submitted as f64 * 1e6)
            .collect(),
        None => Vec::new(),
    };
    ctx.raw.insert(
        "dask".into(),
        json!({
            "script": "tests/bench/dask_primes.py",
            "cluster": "LocalCluster(n_workers=2, threads_per_worker=1, processes=True)",
            "runs": runs.iter().map(|(v, _)| v.clone()).collect::<Vec<_>>(),
        }),
    );
    let extrapolated = if first.extrapolated {
        format!(
            "{} of the 100,000 tasks submitted, rate extrapolated; ",
            first.tasks_submitted
        )
    } else {
        String::new()
    };
    let mut rows = vec![
        Row::new(
            2,
            "Dask distributed, same 100,000 tasks, 2 single-threaded workers",
            "tasks/s",
            &tps,
        )
        .note(format!(
            "{extrapolated}client.map + gather; dask {}, Python {}; {}",
            first.dask,
            first.python,
            load_note(&loads)
        )),
    ];
    match grid_tasks_per_s {
        Some(grid) => {
            let ratios: Vec<f64> = tps.iter().map(|d| grid / d).collect();
            rows.push(
                Row::new(2, "  browsergrid / Dask tasks/s", "x", &ratios)
                    .goal(Goal::AtLeast(100.0))
                    .note("benchmark 1's median over each Dask run"),
            );
        }
        None => rows.push(Row::missing(
            2,
            "  browsergrid / Dask tasks/s",
            "benchmark 1 was not run in this invocation",
        )),
    }
    if let Some(serial) = serial {
        rows.push(
            Row::new(
                2,
                "  pure-Python compute of the 100,000 tasks, one process",
                "s",
                &[serial * scale],
            )
            .note("the per-task function alone, serially; Dask's floor is half of it"),
        );
        rows.push(
            Row::new(2, "  Dask scheduling overhead per task", "us", &overhead_us)
                .note("(wall - serial compute / 2) / tasks"),
        );
    }
    Ok(rows)
}
