//! Benchmark 6: WebAssembly in headless Chromium against native, per
//! kernel. The measuring is the browser engineer's `bench_wasm` binary
//! (`tests/src/bin/bench_wasm.rs`: the same tasks through the page's
//! `run_tasks` export and through `TaskRunner`, best of N after a warm-up,
//! outputs compared byte for byte); this runs it a few times and folds its
//! table into this one, with the spread across invocations.

use std::collections::BTreeMap;
use std::process::Command;

use anyhow::{Context, bail};
use serde_json::json;

use super::Ctx;
use super::env;
use super::report::{Goal, Row};
use super::throughput::load_note;

/// One row of `bench_wasm`'s table.
#[derive(Debug, Clone, PartialEq)]
struct KernelTiming {
    kernel: String,
    tasks: u32,
    native_ms: f64,
    wasm_ms: f64,
}

/// Reads `| kernel | tasks | native ms | wasm ms | wasm / native |` rows.
fn parse(table: &str) -> Vec<KernelTiming> {
    table
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line
                .trim()
                .strip_prefix('|')?
                .strip_suffix('|')?
                .split('|')
                .map(str::trim)
                .collect();
            if cells.len() < 4 {
                return None;
            }
            Some(KernelTiming {
                kernel: cells[0].to_string(),
                tasks: cells[1].parse().ok()?,
                native_ms: cells[2].parse().ok()?,
                wasm_ms: cells[3].parse().ok()?,
            })
        })
        .collect()
}

pub async fn wasm(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    let binary = std::env::current_exe()?
        .parent()
        .context("the benchmark's folder")?
        .join("bench_wasm");
    if !binary.is_file() {
        return Ok(vec![Row::missing(
            6,
            "wasm / native, per kernel",
            format!(
                "TODO: {} is not built (cargo build --release -p grid-tests --bin bench_wasm)",
                binary.display()
            ),
        )]);
    }
    let mut by_kernel: BTreeMap<String, Vec<KernelTiming>> = BTreeMap::new();
    let mut order = Vec::new();
    let mut loads = Vec::new();
    let mut footers = Vec::new();
    let mut instrumentation = Vec::new();
    let mut pathtracer = Vec::new();
    for i in 0..ctx.expensive_runs() {
        loads.push(env::load_average());
        let mut command = Command::new(&binary);
        command
            .args(["--repeat", "5"])
            .current_dir(env::repo_root());
        let output = tokio::task::spawn_blocking(move || command.output()).await??;
        if !output.status.success() {
            bail!(
                "bench_wasm failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let rows = parse(&stdout);
        if rows.is_empty() {
            bail!("bench_wasm printed no table: {stdout}");
        }
        eprintln!("  run {}: {} kernels", i + 1, rows.len());
        for row in rows {
            if !order.contains(&row.kernel) {
                order.push(row.kernel.clone());
            }
            by_kernel.entry(row.kernel.clone()).or_default().push(row);
        }
        footers.extend(
            stdout
                .lines()
                .find(|line| line.starts_with("Best of"))
                .map(str::to_string),
        );
        for line in stdout.lines() {
            if let Some(json) = line.strip_prefix("pathtracer: ") {
                let run: PathTracer = serde_json::from_str(json)
                    .with_context(|| format!("bench_wasm's path tracer line {json}"))?;
                pathtracer.push(run);
            }
            if let Some(json) = line.strip_prefix("instrumentation: ") {
                let rounds: Instrumentation = serde_json::from_str(json)
                    .with_context(|| format!("bench_wasm's instrumentation line {json}"))?;
                instrumentation.push(rounds);
            }
        }
    }
    let mut rows = Vec::new();
    let mut raw = serde_json::Map::new();
    for kernel in &order {
        let timings = &by_kernel[kernel];
        let ratio: Vec<f64> = timings.iter().map(|t| t.wasm_ms / t.native_ms).collect();
        let native: Vec<f64> = timings.iter().map(|t| t.native_ms).collect();
        let wasm: Vec<f64> = timings.iter().map(|t| t.wasm_ms).collect();
        let tasks = timings[0].tasks;
        let median = |v: &[f64]| super::env::Stat::of(v).map_or(f64::NAN, |s| s.median);
        rows.push(
            Row::new(
                6,
                &format!("wasm / native time, {kernel} ({tasks} tasks)"),
                "x",
                &ratio,
            )
            .note(format!(
                "native {:.1} ms, Chromium {:.1} ms (medians of best-of-5)",
                median(&native),
                median(&wasm)
            )),
        );
        raw.insert(
            kernel.clone(),
            json!({"tasks": tasks, "native_ms": native, "wasm_ms": wasm}),
        );
    }
    if let Some(first) = rows.first_mut() {
        first.note = format!("{}; {}", first.note, load_note(&loads));
    }
    rows.extend(instrumentation_rows(&instrumentation));
    rows.extend(pathtracer_rows(&pathtracer));
    ctx.raw.insert(
        "wasm".into(),
        json!({"bench_wasm": "--repeat 5", "kernels": raw, "footers": footers}),
    );
    Ok(rows)
}

/// The path tracer in Chromium, as one invocation of `bench_wasm` prints it:
/// one frame's task against the same prepared module on wasmtime (best of
/// N each), and frames per minute on one tab of two worker threads.
#[derive(Debug, Clone, serde::Deserialize)]
struct PathTracer {
    chromium_ms: f64,
    wasmtime_ms: f64,
    frames_per_minute: Vec<f64>,
}

/// Benchmark 7's path tracer rows in Chromium, over every invocation.
fn pathtracer_rows(runs: &[PathTracer]) -> Vec<Row> {
    if runs.is_empty() {
        return Vec::new();
    }
    let ratios: Vec<f64> = runs.iter().map(|r| r.chromium_ms / r.wasmtime_ms).collect();
    let frames: Vec<f64> = runs
        .iter()
        .flat_map(|r| r.frames_per_minute.iter().copied())
        .collect();
    let median = |v: Vec<f64>| super::env::Stat::of(&v).map_or(f64::NAN, |s| s.median);
    vec![
        Row::new(
            7,
            "path tracer, one frame in Chromium / on wasmtime, the same prepared module",
            "x",
            &ratios,
        )
        .goal(Goal::AtMost(1.3))
        .note(format!(
            "medians {:.1} ms in Chromium vs {:.1} ms on wasmtime, best of 5 each",
            median(runs.iter().map(|r| r.chromium_ms).collect()),
            median(runs.iter().map(|r| r.wasmtime_ms).collect())
        )),
        Row::new(
            7,
            "path tracer frames per minute, 320x240 x 16 spp in 24 strips, one Chromium tab x 2 worker threads",
            "frames/min",
            &frames,
        )
        .note("submission to the last strip collated, a fresh tab each run"),
    ]
}

/// One workload's rounds in Chromium, as `bench_wasm` prints them: users'
/// kernels as submitted and as prepared, timed in turn.
#[derive(Debug, Clone, serde::Deserialize)]
struct Instrumentation {
    what: Option<String>,
    #[serde(default)]
    ratios: Vec<f64>,
    #[serde(default)]
    original_ms: f64,
    #[serde(default)]
    prepared_ms: f64,
    #[serde(default)]
    same_stdout: bool,
    /// The example module that was not built.
    missing: Option<String>,
}

/// Benchmark 7's instrumentation figure in Chromium: every round of every
/// invocation, per workload, against the issue's 15 %.
fn instrumentation_rows(all: &[Instrumentation]) -> Vec<Row> {
    let mut by_what: BTreeMap<&str, Vec<&Instrumentation>> = BTreeMap::new();
    let mut rows = Vec::new();
    for rounds in all {
        match (&rounds.what, &rounds.missing) {
            (Some(what), _) => by_what.entry(what).or_default().push(rounds),
            (None, Some(path)) => rows.push(Row::missing(
                7,
                "prepared / original run time in Chromium",
                format!("{path} is missing (make examples)"),
            )),
            (None, None) => {}
        }
    }
    for (what, runs) in by_what {
        let ratios: Vec<f64> = runs.iter().flat_map(|r| r.ratios.iter().copied()).collect();
        let median = |v: Vec<f64>| super::env::Stat::of(&v).map_or(f64::NAN, |s| s.median);
        rows.push(
            Row::new(
                7,
                &format!("the same in Chromium's V8, {what}"),
                "x",
                &ratios,
            )
            .goal(Goal::AtMost(1.15))
            .note(format!(
                "medians {:.1} ms prepared vs {:.1} ms as submitted, through the worker's own code, {} rounds in {} invocations; same stdout: {}",
                median(runs.iter().map(|r| r.prepared_ms).collect()),
                median(runs.iter().map(|r| r.original_ms).collect()),
                ratios.len(),
                runs.len(),
                runs.iter().all(|r| r.same_stdout)
            )),
        );
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_the_path_tracer_lines() {
        let runs: Vec<PathTracer> = [
            r#"{"chromium_ms": 110.0, "wasmtime_ms": 100.0, "frames_per_minute": [300.0, 320.0]}"#,
            r#"{"chromium_ms": 90.0, "wasmtime_ms": 100.0, "frames_per_minute": [310.0]}"#,
        ]
        .iter()
        .map(|json| serde_json::from_str(json).unwrap())
        .collect();
        let rows = pathtracer_rows(&runs);
        let stat = |row: &Row| {
            let s = row.stat.as_ref().unwrap();
            (s.median, s.runs)
        };
        assert_eq!(stat(&rows[0]), (1.0, 2));
        assert_eq!(stat(&rows[1]), (310.0, 3));
        assert!(pathtracer_rows(&[]).is_empty());
    }

    #[test]
    fn folds_the_instrumentation_lines_per_workload() {
        let line = |json: &str| serde_json::from_str::<Instrumentation>(json).unwrap();
        let all = [
            line(
                r#"{"what": "w", "ratios": [1.0, 1.2], "original_ms": 5.0, "prepared_ms": 6.0, "same_stdout": true}"#,
            ),
            line(
                r#"{"what": "w", "ratios": [1.1], "original_ms": 5.0, "prepared_ms": 5.5, "same_stdout": true}"#,
            ),
            line(r#"{"missing": "examples/build/x.wasm"}"#),
        ];
        let rows = instrumentation_rows(&all);
        assert_eq!(rows.len(), 2);
        let row = rows
            .iter()
            .find(|r| r.figure.contains("Chromium's V8, w"))
            .unwrap();
        let stat = row.stat.as_ref().unwrap();
        assert_eq!(
            (stat.median, stat.min, stat.max, stat.runs),
            (1.1, 1.0, 1.2, 3)
        );
        assert!(
            row.note
                .contains("3 rounds in 2 invocations; same stdout: true"),
            "{}",
            row.note
        );
    }

    #[test]
    fn reads_the_wasm_table() {
        let table = "| kernel | tasks | native ms | wasm ms | wasm / native |\n\
                     |---|---:|---:|---:|---:|\n\
                     | primes | 10 | 12.5 | 15.0 | 1.20x |\n\
                     | mandelbrot | 48 | 100.0 | 150.0 | 1.50x |\n\
                     \n\
                     Best of 5 runs after a warm-up.";
        let rows = parse(table);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0],
            KernelTiming {
                kernel: "primes".into(),
                tasks: 10,
                native_ms: 12.5,
                wasm_ms: 15.0
            }
        );
    }
}
