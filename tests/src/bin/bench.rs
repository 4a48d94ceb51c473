//! The benchmarks of issue 6: what a grid costs next to the work it runs.
//! They report figures against goals; they never fail on speed.
//!
//! ```text
//! cargo build --release -p grid-cli
//! cargo run --release -p grid-tests --bin bench -- [--only NAME,...] [--runs N]
//! ```
//!
//! Names, in the order they run: `throughput` (1), `dask` (2), `efficiency`
//! (3), `connections` (4), `latency` (5), `wasm` (6), `kernels` (7, users'
//! kernels: what preparation costs, tiny wasm tasks), `data` (8, jobs'
//! files: blob bytes per task, blob serving, locality), `fair_share` (9, a
//! user's small job beside another's huge one), `fleet` (10, 1,000, 5,000
//! and 19,900 active connections from `loadgen`), `churn` (11, 1,000
//! connections arriving and leaving a second beside a job), `history` (12,
//! 1,000 and 100,000 finished jobs in the store: start-up, memory at rest,
//! size on disk, retention). Other options:
//! `--grid PATH` (the `grid` binary; default `target/release/grid`),
//! `--connections N` (default 10,000), `--dask-tasks N` (submit only N of the
//! 100,000 tasks to Dask and extrapolate), `--efficiency-work S` (seconds of
//! single-threaded work per efficiency job, default 16), `--perf DIR` (an
//! extra, uncounted run of benchmark 1, and the first run of benchmark 4,
//! under `perf record` on the coordinator).
//!
//! The grid runs as child processes: `grid serve` on a loopback port with a
//! fresh data directory under `target/bench/scratch` (so SQLite's commits
//! reach the real disk) and `grid worker --threads 1` processes. Results go
//! to standard output as a markdown table and to `target/bench/results.json`.

#[path = "../bench/dask.rs"]
mod dask;
#[path = "../bench/data.rs"]
mod data;
#[path = "../bench/efficiency.rs"]
mod efficiency;
#[path = "../bench/env.rs"]
mod env;
#[path = "../bench/fair_share.rs"]
mod fair_share;
#[path = "../bench/fleet.rs"]
mod fleet;
#[path = "../bench/history.rs"]
mod history;
#[path = "../bench/kernels.rs"]
mod kernels;
#[path = "../bench/latency.rs"]
mod latency;
#[path = "../bench/procs.rs"]
mod procs;
#[path = "../bench/report.rs"]
mod report;
#[path = "../bench/socket.rs"]
mod socket;
#[path = "../bench/throughput.rs"]
mod throughput;
#[path = "../bench/wasm.rs"]
mod wasm;
#[path = "../bench/workloads.rs"]
mod workloads;

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

use report::Row;

const NAMES: [&str; 12] = [
    "throughput",
    "dask",
    "efficiency",
    "connections",
    "latency",
    "wasm",
    "kernels",
    "data",
    "fair_share",
    "fleet",
    "churn",
    "history",
];

/// Settings and raw results shared by the benchmarks.
#[derive(Debug)]
pub struct Ctx {
    pub grid: PathBuf,
    pub runs: usize,
    pub connections: usize,
    pub dask_tasks: Option<usize>,
    pub efficiency_work_s: f64,
    pub perf_dir: Option<PathBuf>,
    pub raw: serde_json::Map<String, serde_json::Value>,
}

impl Ctx {
    /// Runs of the benchmarks that take minutes each: at most three.
    pub fn expensive_runs(&self) -> usize {
        self.runs.min(3)
    }
}

#[derive(Debug)]
struct Options {
    only: Vec<String>,
    runs: usize,
    grid: Option<PathBuf>,
    connections: usize,
    dask_tasks: Option<usize>,
    efficiency_work_s: f64,
    perf_dir: Option<PathBuf>,
    out: PathBuf,
}

fn parse_options() -> anyhow::Result<Options> {
    let mut options = Options {
        only: NAMES.iter().map(|s| s.to_string()).collect(),
        runs: 5,
        grid: None,
        connections: 10_000,
        dask_tasks: None,
        efficiency_work_s: 16.0,
        perf_dir: None,
        out: env::bench_dir().join("results.json"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} takes a value"));
        match arg.as_str() {
            "--only" => {
                options.only = value()?.split(',').map(|s| s.trim().to_string()).collect();
                if let Some(bad) = options.only.iter().find(|n| !NAMES.contains(&n.as_str())) {
                    bail!(
                        "unknown benchmark '{bad}'; the names are {}",
                        NAMES.join(", ")
                    );
                }
            }
            "--runs" => options.runs = value()?.parse().context("--runs takes a number")?,
            "--grid" => options.grid = Some(PathBuf::from(value()?)),
            "--connections" => {
                options.connections = value()?.parse().context("--connections takes a number")?
            }
            "--dask-tasks" => {
                options.dask_tasks = Some(value()?.parse().context("--dask-tasks takes a number")?)
            }
            "--efficiency-work" => {
                options.efficiency_work_s = value()?
                    .parse()
                    .context("--efficiency-work takes seconds")?
            }
            "--perf" => options.perf_dir = Some(PathBuf::from(value()?)),
            "--out" => options.out = PathBuf::from(value()?),
            "-h" | "--help" => {
                println!(
                    "bench [--only {}] [--runs N] [--grid PATH] [--connections N] \
                     [--dask-tasks N] [--efficiency-work S] [--perf DIR] [--out FILE]",
                    NAMES.join(",")
                );
                std::process::exit(0);
            }
            other => bail!("unknown option '{other}' (try --help)"),
        }
    }
    if options.runs == 0 {
        bail!("--runs must be at least 1");
    }
    Ok(options)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn bench() -> anyhow::Result<()> {
    let options = parse_options()?;
    let started_unix_ms = unix_ms();
    let machine = env::Machine::describe();
    let grid = procs::find_grid_binary(options.grid.as_deref())?;
    if let Some(dir) = &options.perf_dir {
        std::fs::create_dir_all(dir)?;
    }
    let mut ctx = Ctx {
        grid,
        runs: options.runs,
        connections: options.connections,
        dask_tasks: options.dask_tasks,
        efficiency_work_s: options.efficiency_work_s,
        perf_dir: options.perf_dir.clone(),
        raw: serde_json::Map::new(),
    };
    eprintln!(
        "machine: {}, {} cores, {:.1} GiB, Linux {}, {}; commit {}{}",
        machine.cpu,
        machine.cores,
        machine.ram_gib,
        machine.kernel,
        machine.rustc,
        machine.commit,
        if machine.dirty {
            " (+ local changes)"
        } else {
            ""
        }
    );

    let mut rows: Vec<Row> = Vec::new();
    let mut grid_tps = None;
    for name in NAMES
        .iter()
        .filter(|n| options.only.iter().any(|o| o == *n))
    {
        eprintln!("== {name}");
        let outcome = match *name {
            "throughput" => throughput::tiny_tasks(&mut ctx).await.map(|(rows, tps)| {
                grid_tps = Some(tps);
                rows
            }),
            "dask" => dask::dask(&mut ctx, grid_tps).await,
            "efficiency" => efficiency::efficiency(&mut ctx).await,
            "connections" => throughput::connections(&mut ctx).await,
            "latency" => latency::latency(&mut ctx).await,
            "wasm" => wasm::wasm(&mut ctx).await,
            "kernels" => kernels::kernels(&mut ctx).await,
            "data" => data::data(&mut ctx).await,
            "fair_share" => fair_share::fair_share(&mut ctx).await,
            "fleet" => fleet::fleet(&mut ctx).await,
            "churn" => fleet::churn(&mut ctx).await,
            "history" => history::history(&mut ctx).await,
            _ => unreachable!("names are checked"),
        };
        match outcome {
            Ok(new) => rows.extend(new),
            Err(error) => {
                eprintln!("  {name} failed: {error:#}");
                rows.push(Row::missing(
                    NAMES.iter().position(|n| n == name).unwrap_or(0) as u32 + 1,
                    name,
                    format!("failed: {error:#}"),
                ));
            }
        }
    }

    println!(
        "\nMachine: {}, {} cores, {:.1} GiB RAM, Linux {}, {}. Commit {}{}.\n",
        machine.cpu,
        machine.cores,
        machine.ram_gib,
        machine.kernel,
        machine.rustc,
        machine.commit,
        if machine.dirty {
            " with local changes"
        } else {
            ""
        }
    );
    print!("{}", report::table(&rows));
    let results = report::Results {
        machine: &machine,
        started_unix_ms,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        rows: &rows,
        raw: &ctx.raw,
    };
    if let Some(parent) = options.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&options.out, serde_json::to_string_pretty(&results)?)
        .with_context(|| format!("write {}", options.out.display()))?;
    eprintln!("\nraw results: {}", options.out.display());
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bench().await
}
