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
use super::report::Row;
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
        footers.extend(stdout.lines().last().map(str::to_string));
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
    ctx.raw.insert(
        "wasm".into(),
        json!({"bench_wasm": "--repeat 5", "kernels": raw, "footers": footers}),
    );
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

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
