//! Benchmark: each kernel's tasks in WebAssembly in headless Chromium against
//! the same tasks natively, as a markdown table. It reports figures and checks
//! that the bytes agree; it never fails on speed.
//!
//! ```text
//! cargo run --release -p grid-tests --bin bench_wasm [-- --repeat N]
//! ```
//!
//! The WebAssembly side is `www/pkg` (built by `scripts/build-wasm.sh` if
//! missing or stale), served by an in-process coordinator and called through
//! its `run_tasks` export on the page; each figure is the best of N runs after
//! a warm-up, timed with `performance.now()` around the call on one side and
//! `Instant` around the same loop over `TaskRunner` on the other.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use grid_kernels::spec::{HashsearchParams, MandelbrotParams, MonteCarloParams, PrimesParams};
use grid_kernels::{KernelSpec, TaskRunner};
use grid_tests::TestGrid;
use grid_tests::browser::{TestBrowser, ensure_wasm_built};
use serde::Deserialize;

/// A run of consecutive tasks of one job.
struct Case {
    spec: KernelSpec,
    tasks: u32,
    first: u32,
    count: u32,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            spec: KernelSpec::Primes(PrimesParams {
                start: 0,
                end: 1_000_000_000,
            }),
            tasks: 100,
            first: 0,
            count: 10,
        },
        Case {
            spec: KernelSpec::Mandelbrot(MandelbrotParams {
                width: 1024,
                height: 768,
                x_min: -2.2,
                x_max: 0.8,
                y_min: -1.2,
                y_max: 1.2,
                max_iter: 1000,
            }),
            tasks: 48,
            first: 0,
            count: 48,
        },
        Case {
            spec: KernelSpec::MontecarloPi(MonteCarloParams {
                samples: 200_000_000,
                seed: 2024,
            }),
            tasks: 100,
            first: 0,
            count: 10,
        },
        Case {
            spec: KernelSpec::Hashsearch(HashsearchParams {
                prefix: "browsergrid".into(),
                difficulty: 20,
                start: 0,
                end: 2_000_000,
            }),
            tasks: 100,
            first: 0,
            count: 20,
        },
    ]
}

fn native(case: &Case) -> (Duration, Vec<u8>) {
    let mut runner = TaskRunner::new();
    let mut bytes = Vec::new();
    let started = Instant::now();
    for index in case.first..case.first + case.count {
        runner
            .run(&case.spec, case.tasks, index)
            .expect("a built-in kernel")
            .encode_into(&mut bytes);
    }
    (started.elapsed(), bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Deserialize)]
struct WasmRun {
    ms: f64,
    hex: String,
}

async fn bench() -> anyhow::Result<()> {
    let repeat: usize = match std::env::args().skip_while(|a| a != "--repeat").nth(1) {
        Some(n) => n.parse().context("--repeat takes a number")?,
        None => 5,
    };
    ensure_wasm_built()?;
    let dir = tempfile::tempdir()?;
    let grid = TestGrid::start(dir.path()).await;
    let browser = TestBrowser::launch().await?;
    // The donor page without autostart: it only loads; nothing connects.
    let page = browser.open(&format!("{}/", grid.url)).await?;
    let version: String = page.eval("navigator.userAgent").await?;
    let wasm_bytes = std::fs::metadata(grid_tests::browser::wasm_module())?.len();

    println!("| kernel | tasks | native ms | wasm ms | wasm / native |");
    println!("|---|---:|---:|---:|---:|");
    for case in cases() {
        let spec = serde_json::to_string(&serde_json::to_string(&case.spec)?)?;
        let (tasks, first, count) = (case.tasks, case.first, case.count);
        let script = format!(
            "(async () => {{ \
                const wasm = await import('/pkg/grid_worker_wasm.js'); \
                await wasm.default(); \
                const t0 = performance.now(); \
                const bytes = wasm.run_tasks({spec}, {tasks}, {first}, {count}); \
                const ms = performance.now() - t0; \
                return {{ ms, hex: Array.from(bytes, b => b.toString(16).padStart(2, '0')).join('') }}; \
            }})()"
        );
        // One warm-up each, then the best of `repeat`.
        let (_, expected) = native(&case);
        let _: WasmRun = page.eval(&script).await?;
        let mut native_best = Duration::MAX;
        let mut wasm_best = f64::MAX;
        for _ in 0..repeat {
            let (elapsed, bytes) = native(&case);
            native_best = native_best.min(elapsed);
            assert_eq!(bytes, expected);
            let run: WasmRun = page.eval(&script).await?;
            if run.hex != hex(&expected) {
                bail!(
                    "{}: WebAssembly and native outputs differ",
                    case.spec.kind()
                );
            }
            wasm_best = wasm_best.min(run.ms);
        }
        let native_ms = native_best.as_secs_f64() * 1000.0;
        println!(
            "| {} | {count} | {native_ms:.1} | {wasm_best:.1} | {:.2}x |",
            case.spec.kind(),
            wasm_best / native_ms
        );
    }
    println!();
    println!(
        "Best of {repeat} runs after a warm-up; outputs byte-identical. \
         {version}; worker module {wasm_bytes} bytes."
    );
    let errors = page.console_errors();
    page.close().await?;
    browser.close().await;
    grid.stop().await;
    if !errors.is_empty() {
        bail!("the page logged errors: {errors:#?}");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bench().await
}
