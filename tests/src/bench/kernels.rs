//! Benchmark 7: users' kernels. What preparation costs (the time to prepare
//! the example modules, and how much slower a prepared module runs than the
//! module as submitted, both on wasmtime in this process: fuel, the stack
//! limit and NaN canonicalization are what the difference buys), and what
//! the grid does with tiny wasm tasks end to end (tasks per second through
//! a coordinator and two worker processes, each task a fresh instance).
//!
//! The examples come from `make examples` (examples/build); without them
//! their rows say so.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use grid_kernels::wasm::{WasmLimits, WasmOutcome};
use grid_protocol::api::{JobRequest, WasmRequest};
use grid_wasi::TaskConfig;
use serde_json::json;

use super::Ctx;
use super::procs::Coordinator;
use super::report::{Goal, Row};
use super::throughput::run_job;
use super::workloads::{Workload, workloads};

/// The example built for the host by scripts/bench.sh, if it was.
fn native_binary(name: &str) -> Option<PathBuf> {
    let path = grid_tests::browser::repo_root()
        .join("examples/target/release")
        .join(name);
    path.is_file().then_some(path)
}

/// Runs a natively built example on a workload: its stdout.
fn run_native(binary: &PathBuf, work: &Workload) -> anyhow::Result<Vec<u8>> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(binary)
        .args(work.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    child.stdin.take().expect("piped").write_all(&work.stdin)?;
    Ok(child.wait_with_output()?.stdout)
}

fn example_path(name: &str) -> PathBuf {
    grid_tests::browser::repo_root()
        .join("examples/build")
        .join(format!("{name}.wasm"))
}

/// One run of `kernel` on `work`: milliseconds, and the outcome.
fn time_run(
    kernel: &grid_wasm_runtime::Kernel,
    work: &Workload,
    module_sha256: &[u8; 32],
) -> anyhow::Result<(f64, WasmOutcome)> {
    let limits = WasmLimits::DEFAULT;
    let config = TaskConfig {
        files: Vec::new(),
        args: std::iter::once(work.example.as_bytes().to_vec())
            .chain(work.args.iter().map(|a| a.as_bytes().to_vec()))
            .collect(),
        stdin: work.stdin.clone(),
        seed: grid_wasi::random_seed(0, module_sha256, 0),
        limits,
    };
    let started = Instant::now();
    let outcome = kernel.run(config, &limits)?;
    Ok((started.elapsed().as_secs_f64() * 1000.0, outcome))
}

/// How many rounds to time a kernel that takes `ms` a run: about 1.5 s of
/// it, at least `runs` and 5 rounds, at most 200. The word counter's runs
/// are a few milliseconds long, and a busy machine's noise is not.
fn rounds(ms: f64, runs: usize) -> usize {
    ((1500.0 / ms.max(0.1)) as usize).clamp(runs.max(5), 200)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// Preparation time and the prepared/original run-time ratio per example,
/// and the raw figures.
fn instrumentation(runs: usize) -> anyhow::Result<(Vec<Row>, serde_json::Value)> {
    let engine = grid_wasm_runtime::Engine::new()?;
    let mut rows = Vec::new();
    let mut raw = Vec::new();
    for work in workloads() {
        let path = example_path(work.example);
        let Ok(source) = std::fs::read(&path) else {
            rows.push(Row::missing(
                7,
                &format!("prepared / original, {}", work.what),
                format!("{} is missing: run `make examples`", path.display()),
            ));
            continue;
        };
        let mut prepare_ms = Vec::new();
        let mut prepared = None;
        for _ in 0..5 {
            let started = Instant::now();
            prepared = Some(grid_wasm_prep::prepare(
                &source,
                &WasmLimits::DEFAULT,
                &grid_wasm_prep::Options::DEFAULT,
            )?);
            prepare_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        let prepared = prepared.expect("prepared");
        let digest = grid_kernels::ContentDigest::of(&prepared.bytes).0;
        let original = engine.compile_unprepared(&source)?;
        let metered = engine.compile(&prepared.bytes)?;
        // A warm-up of each, then rounds of one run of each in turn, so
        // that a change in the machine's load falls on both alike: the
        // figure is the median of the rounds' ratios.
        let (warm_ms, plain) = time_run(&original, &work, &digest)?;
        let (_, outcome) = time_run(&metered, &work, &digest)?;
        let same = plain.stdout == outcome.stdout;
        let rounds = rounds(warm_ms, runs);
        let (mut original_ms, mut prepared_ms, mut ratios) = (vec![], vec![], vec![]);
        for _ in 0..rounds {
            let (a, _) = time_run(&original, &work, &digest)?;
            let (b, _) = time_run(&metered, &work, &digest)?;
            original_ms.push(a);
            prepared_ms.push(b);
            ratios.push(b / a);
        }
        let (original_median, prepared_median) = (median(&original_ms), median(&prepared_ms));
        rows.push(
            Row::new(
                7,
                &format!("prepared / original run time, {}", work.what),
                "x",
                &ratios,
            )
            // Issue 11: instrumentation costs at most 15 %.
            .goal(Goal::AtMost(1.15))
            .note(format!(
                "medians {prepared_median:.1} ms vs {original_median:.1} ms on wasmtime, \
                 {rounds} rounds; {} fuel; same stdout: {same}",
                outcome.fuel_used
            )),
        );
        rows.push(in_v8(&work, &source, &prepared.bytes, rounds));
        if let Some(native) = native_binary(work.example) {
            let best_prepared = prepared_ms.iter().copied().fold(f64::INFINITY, f64::min);
            let mut best = f64::INFINITY;
            let mut same_as_native = false;
            for _ in 0..runs.max(3) + 1 {
                let started = Instant::now();
                let stdout = run_native(&native, &work)?;
                best = best.min(started.elapsed().as_secs_f64() * 1000.0);
                same_as_native = stdout == outcome.stdout;
            }
            rows.push(
                Row::new(
                    7,
                    &format!("prepared wasm / native build, {}", work.what),
                    "x",
                    &[best_prepared / best],
                )
                .goal(Goal::AtMost(1.15))
                .note(format!(
                    "best {best_prepared:.1} ms on wasmtime vs {best:.1} ms natively (the same \
                     source built for the host, process start included); same bytes: \
                     {same_as_native}"
                )),
            );
        }
        let kib = source.len() as f64 / 1024.0;
        rows.push(
            Row::new(
                7,
                &format!("preparing {}.wasm ({kib:.0} KiB)", work.example),
                "ms",
                &prepare_ms,
            )
            .note(format!(
                "{} -> {} bytes ({:+.0}%)",
                source.len(),
                prepared.bytes.len(),
                (prepared.bytes.len() as f64 / source.len() as f64 - 1.0) * 100.0
            )),
        );
        raw.push(json!({
            "example": work.example,
            "original_ms": original_ms,
            "prepared_ms": prepared_ms,
            "fuel_used": outcome.fuel_used,
            "same_stdout": same,
            "prepare_ms": prepare_ms,
            "source_bytes": source.len(),
            "prepared_bytes": prepared.bytes.len(),
        }));
    }
    Ok((rows, json!(raw)))
}

/// Times the module as submitted and as prepared in V8, in turn, `rounds`
/// times after three warm-ups each (V8 compiles with Liftoff first and
/// tiers hot functions up to TurboFan): each run a fresh instance of the
/// compiled module and a fresh `node:wasi`, timed around `_start`, after a
/// garbage collection. Prints
/// the times as JSON. `node:wasi` is not the grid's WASI (its `random_get`
/// is random), but both modules get the same one.
const V8_TIMER: &str = r#"
import { WASI } from 'node:wasi';
import fs from 'node:fs';
const [dir, rounds] = [process.argv[2], Number(process.argv[3])];
const args = JSON.parse(fs.readFileSync(`${dir}/args.json`, 'utf8'));
const compiled = {};
for (const name of ['original', 'prepared'])
  compiled[name] = new WebAssembly.Module(fs.readFileSync(`${dir}/${name}.wasm`));
function run(name) {
  // Node 20 crashes after a hundred or so runs if it has not collected
  // the earlier instances' memories (node --expose-gc).
  gc();
  const stdin = fs.openSync(`${dir}/stdin`, 'r');
  const stdout = fs.openSync(`${dir}/${name}.stdout`, 'w');
  const stderr = fs.openSync('/dev/null', 'w');
  const wasi = new WASI({ version: 'preview1', args, env: {}, stdin, stdout, stderr,
                          returnOnExit: true });
  const instance = new WebAssembly.Instance(compiled[name], wasi.getImportObject());
  const started = process.hrtime.bigint();
  wasi.start(instance);
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  for (const fd of [stdin, stdout, stderr]) fs.closeSync(fd);
  return ms;
}
const times = { original: [], prepared: [] };
for (let i = 0; i < 3 + rounds; i++)
  for (const name of ['original', 'prepared']) {
    const ms = run(name);
    if (i >= 3) times[name].push(ms);
  }
console.log(JSON.stringify(times));
"#;

/// The prepared / original ratio in V8 (Node's), if `node` is installed.
fn in_v8(work: &Workload, original: &[u8], prepared: &[u8], rounds: usize) -> Row {
    let figure = format!("the same in V8 (node), {}", work.what);
    match time_in_node(work, original, prepared, rounds) {
        Ok(Some((ratios, note))) => Row::new(7, &figure, "x", &ratios)
            .goal(Goal::AtMost(1.15))
            .note(note),
        Ok(None) => Row::missing(7, &figure, "`node` is not installed"),
        Err(e) => Row::missing(7, &figure, format!("failed: {e:#}")),
    }
}

fn time_in_node(
    work: &Workload,
    original: &[u8],
    prepared: &[u8],
    rounds: usize,
) -> anyhow::Result<Option<(Vec<f64>, String)>> {
    use std::process::Command;
    let Ok(version) = Command::new("node").arg("--version").output() else {
        return Ok(None);
    };
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    let scratch = super::env::bench_dir().join("scratch");
    std::fs::create_dir_all(&scratch)?;
    let dir = tempfile::Builder::new()
        .prefix("v8-")
        .tempdir_in(&scratch)?;
    let at = |name: &str| dir.path().join(name);
    std::fs::write(at("timer.mjs"), V8_TIMER)?;
    std::fs::write(at("original.wasm"), original)?;
    std::fs::write(at("prepared.wasm"), prepared)?;
    std::fs::write(at("stdin"), &work.stdin)?;
    let args: Vec<&str> = std::iter::once(work.example)
        .chain(work.args.iter().copied())
        .collect();
    std::fs::write(at("args.json"), serde_json::to_vec(&args)?)?;
    let ran = Command::new("node")
        .arg("--expose-gc")
        .arg(at("timer.mjs"))
        .arg(dir.path())
        .arg(rounds.to_string())
        .output()?;
    anyhow::ensure!(
        ran.status.success(),
        "node: {}",
        String::from_utf8_lossy(&ran.stderr).trim()
    );
    let times: serde_json::Value = serde_json::from_slice(&ran.stdout)?;
    let series = |name: &str| -> Vec<f64> {
        times[name]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
            .unwrap_or_default()
    };
    let (a, b) = (series("original"), series("prepared"));
    anyhow::ensure!(!a.is_empty() && a.len() == b.len(), "node gave no times");
    let ratios = a.iter().zip(&b).map(|(a, b)| b / a).collect();
    let same = std::fs::read(at("original.stdout"))? == std::fs::read(at("prepared.stdout"))?;
    let note = format!(
        "medians {:.1} ms vs {:.1} ms in node {version} (node:wasi), {rounds} rounds after \
         3 warm-ups; same stdout: {same}",
        median(&b),
        median(&a)
    );
    Ok(Some((ratios, note)))
}

/// Writes its task's four bytes of stdin back: about the least a task can do.
const TINY: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 64)) (i32.store (i32.const 4) (i32.const 16))
    (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
    (i32.store (i32.const 4) (i32.load (i32.const 8)))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

const TINY_TASKS: usize = 100_000;

/// Tiny wasm tasks through a coordinator and two worker processes.
async fn tiny_tasks(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    let mut rates = Vec::new();
    let mut raw = Vec::new();
    for _ in 0..ctx.expensive_runs() {
        let coordinator = Coordinator::start(&ctx.grid, &[]).await?;
        let workers = coordinator.start_workers(2).await?;
        let client = coordinator.client();
        let (module, _) = client.ensure_blob(wat::parse_str(TINY)?).await?;
        let lines: String = (0..TINY_TASKS).map(|i| format!("{i:03}\n")).collect();
        let (lines, _) = client.ensure_blob(lines.into_bytes()).await?;
        let request = JobRequest::new(WasmRequest {
            inputs: Some(grid_kernels::wasm::WasmInputs::Lines(lines)),
            ..WasmRequest::new(module)
        });
        let run = run_job(&coordinator, &workers, &request, Duration::from_secs(600)).await?;
        rates.push(run.tasks_per_s());
        raw.push(run.json());
    }
    ctx.raw.insert("kernels_tiny_tasks".into(), json!(raw));
    Ok(vec![
        Row::new(
            7,
            &format!("tiny wasm tasks through the grid ({TINY_TASKS} tasks, 2 workers x 1 thread)"),
            "tasks/s",
            &rates,
        )
        .goal(Goal::AtLeast(50_000.0))
        .note("each task a fresh instance of a prepared module, its input inline in the batch"),
    ])
}

/// The path tracer's frames per minute on two native workers: a 320x240
/// frame at 16 samples a pixel in 24 strips of 10 rows, each a task.
async fn frames(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    let figure = "path tracer frames per minute, 320x240 x 16 spp, 2 workers x 1 thread";
    let Ok(module) = std::fs::read(example_path("pathtracer")) else {
        return Ok(vec![Row::missing(7, figure, "run `make examples`")]);
    };
    let mut per_minute = Vec::new();
    for _ in 0..ctx.expensive_runs() {
        let coordinator = Coordinator::start(&ctx.grid, &[]).await?;
        let workers = coordinator.start_workers(2).await?;
        let client = coordinator.client();
        let (module, _) = client.ensure_blob(module.clone()).await?;
        let strips: String = (0..24).map(|i| format!("0 {} 320 10\n", i * 10)).collect();
        let (strips, _) = client.ensure_blob(strips.into_bytes()).await?;
        let request = JobRequest::new(WasmRequest {
            inputs: Some(grid_kernels::wasm::WasmInputs::Lines(strips)),
            args: ["--width", "320", "--height", "240", "--samples", "16"]
                .map(String::from)
                .to_vec(),
            ..WasmRequest::new(module)
        });
        let run = run_job(&coordinator, &workers, &request, Duration::from_secs(600)).await?;
        per_minute.push(60.0 / run.wall_s);
    }
    Ok(vec![Row::new(7, figure, "frames/min", &per_minute).note(
        "submit to the last strip collated, module fetched and compiled by each worker included",
    )])
}

pub async fn kernels(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    // wasmtime wants the stack a worker's compute thread has.
    let runs = ctx.runs;
    let (mut rows, raw) = std::thread::Builder::new()
        .stack_size(grid_wasm_runtime::THREAD_STACK)
        .spawn(move || instrumentation(runs))?
        .join()
        .map_err(|_| anyhow::anyhow!("the instrumentation benchmark panicked"))??;
    ctx.raw.insert("kernels_instrumentation".into(), raw);
    rows.extend(tiny_tasks(ctx).await?);
    rows.extend(frames(ctx).await?);
    Ok(rows)
}
