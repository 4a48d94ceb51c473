//! Benchmark: each kernel's tasks in WebAssembly in headless Chromium against
//! the same tasks natively, as markdown tables. It reports figures and checks
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
//!
//! Users' kernels (issue 11), with the path tracer from `make examples`
//! (`examples/build/pathtracer.wasm`; without it these rows say so):
//!
//! - One task, a whole 320x240 frame at 16 samples a pixel, of the module the
//!   coordinator prepared: in Chromium through the worker's `run_user_task`
//!   export (the kernel thread's own code: a fresh instance, WASI from
//!   `grid_wasi`), against wasmtime through `grid_wasm_runtime` as `grid run`
//!   and the native worker run it. Best of N after a warm-up each, and the
//!   outcomes must be the same bytes.
//! - Frames per minute on one Chromium tab with 2 worker threads against a
//!   real coordinator: the frame in 24 strips of 10 rows, each a task, from
//!   submission to the last strip collated, as benchmark 7 measures two
//!   native workers (`tests/src/bench/kernels.rs`); each run a fresh tab,
//!   whose workers fetch and compile the module.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use grid_cli::client::Client;
use grid_kernels::spec::{HashsearchParams, MandelbrotParams, MonteCarloParams, PrimesParams};
use grid_kernels::wasm::{WasmInputs, WasmOutcome, WasmParams};
use grid_kernels::{KernelSpec, TaskRunner};
use grid_protocol::WorkerKind;
use grid_protocol::api::{JobRequest, JobState, WasmRequest};
use grid_tests::TestGrid;
use grid_tests::browser::{PAGE_TIMEOUT, TestBrowser, TestPage, ensure_wasm_built, repo_root};
use grid_wasi::TaskConfig;
use serde::Deserialize;

#[path = "../bench/workloads.rs"]
mod workloads;

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
        if matches!(case.spec, KernelSpec::Hashsearch(_)) {
            hashsearch_without_sha_ni(count, wasm_best, repeat);
        }
    }
    println!();
    println!(
        "Best of {repeat} runs after a warm-up; outputs byte-identical. \
         {version}; worker module {wasm_bytes} bytes."
    );
    println!();
    users_kernels(&grid, &browser, &page, repeat).await?;
    instrumentation_in_chromium(&grid, &page).await?;
    let errors = page.console_errors();
    page.close().await?;
    browser.close().await;
    grid.stop().await;
    if !errors.is_empty() {
        bail!("the page logged errors: {errors:#?}");
    }
    Ok(())
}

/// The hashsearch case natively without SHA-NI, so that its ratio says
/// what it measures: the same nonces through sha2's portable code (the
/// `hashsearch_native` example built with `--cfg sha2_backend="soft"` into
/// `target/sha2-soft`, as `scripts/bench.sh` does) and through the
/// four-lane code the WebAssembly worker runs, compiled natively. Rows are
/// left out, with a note, when that build is missing.
fn hashsearch_without_sha_ni(count: u32, wasm_ms: f64, repeat: usize) {
    #[derive(Deserialize)]
    struct Native {
        sha2_ms: f64,
        four_lane_ms: f64,
    }
    let binary = grid_tests::browser::repo_root()
        .join("target/sha2-soft/release/examples/hashsearch_native");
    let run = std::process::Command::new(&binary)
        .args(["--repeat", &repeat.to_string()])
        .output();
    let native: Native = match run {
        Ok(output) if output.status.success() => match serde_json::from_slice(&output.stdout) {
            Ok(native) => native,
            Err(error) => {
                eprintln!("hashsearch_native printed something else: {error}");
                return;
            }
        },
        Ok(output) => {
            eprintln!(
                "{} failed: {}",
                binary.display(),
                String::from_utf8_lossy(&output.stderr)
            );
            return;
        }
        Err(error) => {
            eprintln!(
                "no hashsearch row without SHA-NI: {} ({error}; scripts/bench.sh builds it)",
                binary.display()
            );
            return;
        }
    };
    for (what, native_ms) in [
        ("hashsearch, native sha2 without SHA-NI", native.sha2_ms),
        (
            "hashsearch, native four-lane code as in wasm",
            native.four_lane_ms,
        ),
    ] {
        println!(
            "| {what} | {count} | {native_ms:.1} | {wasm_ms:.1} | {:.2}x |",
            wasm_ms / native_ms
        );
    }
}

/// What preparation costs in Chromium's V8: each example's workload
/// (`workloads.rs`, the same as benchmark 7's on wasmtime and in node) run
/// by the page through the worker's own code, as submitted
/// (`run_unprepared_task`) and as the coordinator prepared it
/// (`run_user_task`), in alternating rounds after three warm-ups, each a
/// fresh instance of a module compiled once; about 1.5 s of each, 5 to 200
/// rounds. Prints one line a workload, `instrumentation: {json}` with every
/// round's prepared / submitted ratio, which benchmark 6 folds into its
/// table; the stdouts of the two runs must agree.
async fn instrumentation_in_chromium(grid: &TestGrid, page: &TestPage) -> anyhow::Result<()> {
    #[derive(Deserialize)]
    struct Rounds {
        ratios: Vec<f64>,
        original_ms: f64,
        prepared_ms: f64,
        original: String,
        prepared: String,
    }
    let client = grid.client();
    for work in workloads::workloads() {
        let path = repo_root().join(format!("examples/build/{}.wasm", work.example));
        let Ok(module) = std::fs::read(&path) else {
            println!(
                "instrumentation: {{\"missing\": {:?}}}",
                path.display().to_string()
            );
            continue;
        };
        let (source, _) = client.ensure_blob(module).await?;
        let (stdin, _) = client.ensure_blob(work.stdin.clone()).await?;
        // A job of one task has the coordinator prepare the module; no
        // worker is connected, and it is cancelled.
        let mut job = JobRequest::new(WasmRequest {
            args: work.args.iter().map(|a| a.to_string()).collect(),
            ..WasmRequest::new(source)
        });
        job.tasks = Some(1);
        let status = client.submit(&job).await?;
        client.cancel(status.id).await?;
        let KernelSpec::Wasm(params) = status.spec else {
            bail!("not a wasm job: {status:?}")
        };
        let script = format!(
            "(async () => {{ \
                const wasm = await import('/pkg/grid_worker_wasm.js'); \
                await wasm.default(); \
                const auth = {{ headers: {{ authorization: 'Bearer {token}' }} }}; \
                const get = async (url, options) => \
                    new Uint8Array(await (await fetch(url, options)).arrayBuffer()); \
                const prepared = await WebAssembly.compile(await get('/api/modules/{module}')); \
                const original = await WebAssembly.compile(await get('/api/blobs/{source}', auth)); \
                const stdin = await get('/api/blobs/{stdin}', auth); \
                const params = {params}; \
                const timed = (run, module) => {{ \
                    const t0 = performance.now(); \
                    const bytes = run(module, params, 0, stdin); \
                    return [performance.now() - t0, bytes]; \
                }}; \
                const hex = (bytes) => Array.from(bytes, b => b.toString(16).padStart(2, '0')).join(''); \
                let [ms] = timed(wasm.run_user_task, prepared); \
                const rounds = Math.max(5, Math.min(200, Math.round(1500 / Math.max(ms, 0.1)))); \
                const ratios = [], originals = [], prepareds = []; \
                let o, p; \
                for (let i = 0; i < 3 + rounds; i++) {{ \
                    o = timed(wasm.run_unprepared_task, original); \
                    p = timed(wasm.run_user_task, prepared); \
                    if (i >= 3) {{ ratios.push(p[0] / o[0]); originals.push(o[0]); prepareds.push(p[0]); }} \
                }} \
                const median = (v) => v.slice().sort((a, b) => a - b)[v.length >> 1]; \
                return {{ ratios, original_ms: median(originals), prepared_ms: median(prepareds), \
                          original: hex(o[1]), prepared: hex(p[1]) }}; \
            }})()",
            token = grid_tests::TOKEN,
            module = params.module,
            params = serde_json::to_string(&serde_json::to_string(&params)?)?,
        );
        let rounds: Rounds = page.eval(&script).await?;
        let stdout = |hex: &str| -> anyhow::Result<Vec<u8>> {
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()?;
            Ok(WasmOutcome::decode(&bytes)?.stdout)
        };
        let same = stdout(&rounds.original)? == stdout(&rounds.prepared)?;
        println!(
            "instrumentation: {}",
            serde_json::json!({
                "what": work.what,
                "ratios": rounds.ratios,
                "original_ms": rounds.original_ms,
                "prepared_ms": rounds.prepared_ms,
                "same_stdout": same,
            })
        );
    }
    Ok(())
}

/// The path tracer's argv after its name: one 320x240 frame at 16 samples.
const PATHTRACER_ARGS: [&str; 6] = ["--width", "320", "--height", "240", "--samples", "16"];

/// The path tracer in Chromium against wasmtime, one task; then its frames
/// per minute on a Chromium tab of 2 worker threads.
async fn users_kernels(
    grid: &TestGrid,
    browser: &TestBrowser,
    page: &TestPage,
    repeat: usize,
) -> anyhow::Result<()> {
    let example = repo_root().join("examples/build/pathtracer.wasm");
    let Ok(module) = std::fs::read(&example) else {
        println!(
            "Users' kernels: not measured, {} is missing (run `make examples`).",
            example.display()
        );
        return Ok(());
    };
    let client = grid.client();
    let (module, _) = client.ensure_blob(module).await?;
    let request = || WasmRequest {
        args: PATHTRACER_ARGS.map(String::from).to_vec(),
        ..WasmRequest::new(module)
    };

    // One task of the module as the coordinator prepared it. No worker is
    // connected: the job only prepares the module, and is then cancelled.
    let mut job = JobRequest::new(request());
    job.tasks = Some(1);
    let status = client.submit(&job).await?;
    let KernelSpec::Wasm(params) = status.spec else {
        bail!("not a wasm job: {status:?}")
    };
    let prepared = std::fs::read(
        grid.data_dir
            .join("modules")
            .join(params.module.to_string()),
    )
    .context("the prepared module in the coordinator's store")?;
    let native_params = params.clone();
    let (native_ms, native_bytes) = std::thread::Builder::new()
        .stack_size(grid_wasm_runtime::THREAD_STACK)
        .spawn(move || pathtracer_natively(&prepared, &native_params, repeat))?
        .join()
        .map_err(|_| anyhow::anyhow!("the native run panicked"))??;
    let script = format!(
        "(async () => {{ \
            const wasm = await import('/pkg/grid_worker_wasm.js'); \
            await wasm.default(); \
            const response = await fetch('/api/modules/{module}'); \
            const module = await WebAssembly.compile(await response.arrayBuffer()); \
            const params = {params}; \
            let best = Infinity, bytes; \
            for (let i = 0; i <= {repeat}; i++) {{ \
                const t0 = performance.now(); \
                bytes = wasm.run_user_task(module, params, 0, new Uint8Array()); \
                const ms = performance.now() - t0; \
                if (i > 0) best = Math.min(best, ms); \
            }} \
            return {{ ms: best, hex: Array.from(bytes, b => b.toString(16).padStart(2, '0')).join('') }}; \
        }})()",
        module = params.module,
        params = serde_json::to_string(&serde_json::to_string(&params)?)?,
    );
    let chromium: WasmRun = page.eval(&script).await?;
    client.cancel(status.id).await?;
    if chromium.hex != hex(&native_bytes) {
        bail!("the path tracer's outcome in Chromium differs from wasmtime's");
    }

    let per_minute = frames_per_minute(grid, browser, &client, request, repeat.min(3)).await?;
    let median = {
        let mut sorted = per_minute.clone();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    };
    let (low, high) = per_minute
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));

    println!("| users' kernel: path tracer, 320x240 x 16 spp | figure |");
    println!("|---|---:|");
    println!(
        "| one task in Chromium / on wasmtime, same prepared module | {:.2}x ({:.1} / {native_ms:.1} ms) |",
        chromium.ms / native_ms,
        chromium.ms
    );
    println!(
        "| frames per minute, one Chromium tab x 2 worker threads, 24 strips | {median:.0} ({low:.0}-{high:.0}, {} runs) |",
        per_minute.len()
    );
    println!();
    println!(
        "One task: best of {repeat} after a warm-up on each side, outcomes byte-identical. \
         Frames: submission to the last strip collated, a fresh tab each run."
    );
    // The same figures for benchmark 6 to fold into `make bench`'s table.
    println!(
        "pathtracer: {}",
        serde_json::json!({
            "chromium_ms": chromium.ms,
            "wasmtime_ms": native_ms,
            "frames_per_minute": per_minute,
        })
    );
    Ok(())
}

/// The best of `repeat` runs (after a warm-up) of task 0 of the path
/// tracer's job on wasmtime, and its outcome's bytes. Needs a thread with
/// [`grid_wasm_runtime::THREAD_STACK`].
fn pathtracer_natively(
    prepared: &[u8],
    params: &WasmParams,
    repeat: usize,
) -> anyhow::Result<(f64, Vec<u8>)> {
    let engine = grid_wasm_runtime::Engine::new()?;
    let kernel = engine.compile(prepared)?;
    let limits = params.limits();
    let mut best = f64::MAX;
    let mut bytes = Vec::new();
    for i in 0..=repeat {
        let config = TaskConfig::of_task(params, 0, Vec::new());
        let started = Instant::now();
        let outcome = kernel.run(config, &limits)?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        if i > 0 {
            best = best.min(ms);
        }
        bytes.clear();
        outcome.encode_into(&mut bytes);
    }
    Ok((best, bytes))
}

/// Frames per minute of the path tracer in 24 strips on a fresh donor tab
/// with 2 worker threads, `runs` times.
async fn frames_per_minute(
    grid: &TestGrid,
    browser: &TestBrowser,
    client: &Client,
    request: impl Fn() -> WasmRequest,
    runs: usize,
) -> anyhow::Result<Vec<f64>> {
    let strips: String = (0..24).map(|i| format!("0 {} 320 10\n", i * 10)).collect();
    let (strips, _) = client.ensure_blob(strips.into_bytes()).await?;
    let mut per_minute = Vec::new();
    for _ in 0..runs {
        let tab = browser
            .open(&format!("{}/?autostart=1&threads=2", grid.url))
            .await?;
        let deadline = Instant::now() + PAGE_TIMEOUT;
        loop {
            let workers = client.workers().await?;
            if workers
                .iter()
                .filter(|w| w.kind == WorkerKind::Browser)
                .count()
                == 2
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("the tab's 2 workers did not connect: {workers:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let job = JobRequest::new(WasmRequest {
            inputs: Some(WasmInputs::Lines(strips)),
            ..request()
        });
        let submitted_ms = unix_ms();
        let id = client.submit(&job).await?.id;
        let status = grid_tests::wait_for_job(client, id, Duration::from_secs(600)).await;
        if status.state != JobState::Done {
            bail!("the frame's job ended badly: {status:?}");
        }
        let finished_ms = status
            .finished_at
            .context("a done job without finished_at")? as f64;
        per_minute.push(60_000.0 / (finished_ms - submitted_ms).max(1.0));
        let errors = tab.console_errors();
        tab.close().await?;
        if !errors.is_empty() {
            bail!("the donor tab logged errors: {errors:#?}");
        }
        // The tab's workers leave before the next run's arrive.
        let deadline = Instant::now() + PAGE_TIMEOUT;
        while client
            .workers()
            .await?
            .iter()
            .any(|w| w.kind == WorkerKind::Browser)
        {
            if Instant::now() > deadline {
                bail!("the closed tab's workers are still connected");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(per_minute)
}

fn unix_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
        * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bench().await
}
