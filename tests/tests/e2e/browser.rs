//! The browser worker end to end: a real coordinator with no native workers,
//! the donor page in headless Chromium, and its Web Workers running the
//! WebAssembly worker. Answers are checked against native computation and
//! known values; WebAssembly output bytes against native bytes; and the page
//! must log no errors.
//!
//! Needs `/usr/bin/chromium` (installed by `scripts/install-chromium.sh` when
//! missing) and builds `www/pkg` with `scripts/build-wasm.sh` when it is
//! missing or stale. Also a quick parity check under Node, without a browser.
//! Each test runs in a [`BrowserTest`]: a coordinator and Chromium of its
//! own, and a last page that must have logged no error it did not expect.

use std::time::Duration;

use grid_cli::client::Client;
use grid_kernels::spec::{HashsearchParams, MandelbrotParams, MonteCarloParams, PrimesParams};
use grid_kernels::{Collator, JobResult, KernelSpec, TaskRunner};
use grid_protocol::WorkerKind;
use grid_protocol::api::JobState;
use grid_tests::browser::{BrowserTest, PAGE_TIMEOUT, ensure_wasm_built, exclusive, repo_root};
use grid_tests::{assert_primes, job, submit, wait_for_job, wait_for_workers, wait_partway};
use serde_json::{Value, json};

const JOB_TIMEOUT: Duration = Duration::from_secs(180);

/// One job of each kernel, small enough for two browser threads on a laptop.
fn every_kernel() -> Vec<(KernelSpec, u32)> {
    vec![
        (
            KernelSpec::Primes(PrimesParams {
                start: 0,
                end: 5_000_000,
            }),
            50,
        ),
        (
            KernelSpec::Mandelbrot(MandelbrotParams {
                width: 160,
                height: 120,
                x_min: -2.2,
                x_max: 0.8,
                y_min: -1.2,
                y_max: 1.2,
                max_iter: 500,
            }),
            24,
        ),
        (
            KernelSpec::MontecarloPi(MonteCarloParams {
                samples: 4_000_000,
                seed: 42,
            }),
            40,
        ),
        (
            KernelSpec::Hashsearch(HashsearchParams {
                prefix: "browsergrid".into(),
                difficulty: 12,
                start: 0,
                end: 200_000,
            }),
            40,
        ),
    ]
}

/// [`every_kernel`] and the cases where the browser's SIMD paths differ
/// from the plain ones: montecarlo-pi tasks that start and end inside a
/// group of 16 samples, and hashsearch with prefixes whose decimal spills
/// into a second final block, over a power of ten.
fn parity_cases() -> Vec<(KernelSpec, u32)> {
    let mut cases = every_kernel();
    cases.push((
        KernelSpec::MontecarloPi(MonteCarloParams {
            samples: 1_000_003,
            seed: 9_007_199_254_740_991,
        }),
        7,
    ));
    for prefix_len in [55, 60, 64, 100] {
        cases.push((
            KernelSpec::Hashsearch(HashsearchParams {
                prefix: "g".repeat(prefix_len),
                difficulty: 6,
                start: 999_000,
                end: 1_001_003,
            }),
            5,
        ));
    }
    cases
}

/// Waits for [`long_primes_job`] to finish and checks it finished whole and
/// exact.
async fn assert_long_primes_job_exact(client: &Client, id: u64) {
    let (_, tasks) = long_primes_job();
    let status = wait_for_job(client, id, JOB_TIMEOUT).await;
    assert_eq!(status.state, JobState::Done, "{status:?}");
    assert_eq!(status.tasks.done, tasks, "{status:?}");
    assert_primes(&status, PRIMES_BELOW_TEN_BILLION);
}

/// A primes job that keeps two browser threads busy for several seconds, in
/// tasks of a few tens of milliseconds.
fn long_primes_job() -> (KernelSpec, u32) {
    (
        KernelSpec::Primes(PrimesParams {
            start: 0,
            end: 10_000_000_000,
        }),
        1000,
    )
}

/// Submits [`long_primes_job`] and waits until a tenth of it is done.
async fn long_primes_job_partway(client: &Client) -> u64 {
    let (spec, tasks) = long_primes_job();
    let id = submit(client, &job(spec, tasks)).await;
    wait_partway(client, id, 0.1).await;
    id
}

/// pi(10^10), from the literature.
const PRIMES_BELOW_TEN_BILLION: u64 = 455_052_511;

/// The job's result computed here, natively, as the results endpoint shows it.
fn native_result(spec: &KernelSpec, tasks: u32) -> JobResult {
    let mut runner = TaskRunner::new();
    let mut collator = Collator::new(spec.clone(), tasks);
    for index in 0..tasks {
        collator
            .add(
                index,
                &runner.run(spec, tasks, index).expect("a built-in kernel"),
            )
            .expect("a fresh task");
    }
    collator.result()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_workers_compute_every_kernel_exactly() {
    let test = BrowserTest::start().await;
    let client = test.client();
    let page = test.open_donor_page(2).await;

    // The page says what it connects to and which session it is.
    assert_eq!(page.text("#coordinator").await.unwrap(), test.url());
    let session = page.text("#session").await.unwrap();
    assert!(!session.is_empty());

    // Record every job and kernel the page shows while the jobs run.
    page.eval::<bool>(
        "(() => { \
            window.shown = []; \
            const record = () => window.shown.push( \
                document.querySelector('#job').textContent + ' ' + \
                document.querySelector('#kernel').textContent); \
            for (const id of ['#job', '#kernel']) { \
                new MutationObserver(record).observe(document.querySelector(id), \
                    { childList: true, characterData: true, subtree: true }); \
            } \
            return true; \
        })()",
    )
    .await
    .unwrap();

    let jobs = every_kernel();
    let mut ids = Vec::new();
    for (spec, tasks) in &jobs {
        ids.push(submit(&client, &job(spec.clone(), *tasks)).await);
    }
    for ((spec, tasks), id) in jobs.iter().zip(&ids) {
        let status = wait_for_job(&client, *id, JOB_TIMEOUT).await;
        assert_eq!(status.state, JobState::Done, "{}: {status:?}", spec.kind());
        assert_eq!(status.tasks.done, *tasks, "{status:?}");
        let result = client.result(*id).await.expect("results");
        assert_eq!(
            result,
            native_result(spec, *tasks),
            "{} computed in the browser differs from native",
            spec.kind()
        );
    }
    // The page named the jobs it was working on, with their kernels.
    let shown: Vec<String> = page.eval("window.shown").await.unwrap();
    assert!(
        shown.iter().any(|s| {
            jobs.iter()
                .zip(&ids)
                .any(|((spec, _), id)| s == &format!("#{id} {}", spec.kind()))
        }),
        "the page never showed a running job: {shown:?}"
    );

    // pi(5 * 10^6), from the literature rather than from the kernel.
    assert_eq!(
        client.result(ids[0]).await.unwrap(),
        JobResult::Primes { count: 348_513 }
    );

    // Two browser worker connections, one donor session: this tab's.
    let workers = client.workers().await.unwrap();
    assert_eq!(workers.len(), 2, "{workers:#?}");
    for worker in &workers {
        assert_eq!(worker.kind, WorkerKind::Browser, "{worker:?}");
        assert_eq!(worker.threads, 1, "{worker:?}");
        assert_eq!(worker.session.as_ref(), Some(&session), "{worker:?}");
        assert!(worker.tasks_done > 0, "{worker:?}");
    }

    // The page's figures follow.
    page.wait_for(
        "Number(document.querySelector('#tasks-done').textContent) >= 154",
        PAGE_TIMEOUT,
    )
    .await
    .expect("the page counts the tasks");
    assert_ne!(page.text("#compute-time").await.unwrap(), "0 s");

    // The module the workers run gives native bytes, task by task.
    for (spec, tasks) in &jobs {
        for index in [0, tasks / 2, tasks - 1] {
            let wasm = page.run_task_in_wasm(spec, *tasks, index).await.unwrap();
            let mut native = Vec::new();
            TaskRunner::new()
                .run(spec, *tasks, index)
                .expect("a built-in kernel")
                .encode_into(&mut native);
            assert_eq!(wasm, native, "{} task {index}", spec.kind());
        }
    }

    test.finish(page).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume_from_the_page_lose_no_task() {
    let test = BrowserTest::start().await;
    let client = test.client();
    let page = test.open_donor_page(2).await;

    let id = long_primes_job_partway(&client).await;

    page.click("#pause").await.unwrap();
    page.wait_for(
        "document.body.dataset.state === 'paused' && \
         document.querySelector('#pause').textContent === 'Resume'",
        PAGE_TIMEOUT,
    )
    .await
    .expect("the page pauses");
    // Both connections paused, holding nothing: finished results were sent
    // and unstarted tasks handed back.
    wait_for_workers(&client, "paused workers holding no tasks", |workers| {
        workers.len() == 2 && workers.iter().all(|w| w.paused && w.tasks_in_flight == 0)
    })
    .await;
    let paused = client.status(id).await.unwrap();
    assert_eq!(paused.state, JobState::Running, "{paused:?}");
    assert!(paused.tasks.done < paused.tasks.total, "{paused:?}");

    page.click("#pause").await.unwrap();
    page.wait_for(
        "document.body.dataset.state === 'working' && \
         document.querySelector('#pause').textContent === 'Pause'",
        PAGE_TIMEOUT,
    )
    .await
    .expect("the page resumes");
    assert_long_primes_job_exact(&client, id).await;

    test.finish(page).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_closed_mid_batch_loses_no_task() {
    let test = BrowserTest::start().await;
    let client = test.client();
    let first = test.open_donor_page(2).await;

    let id = long_primes_job_partway(&client).await;
    let workers = client.workers().await.unwrap();
    assert!(
        workers.iter().any(|w| w.tasks_in_flight > 0),
        "the tab should hold tasks when it closes: {workers:#?}"
    );

    first.assert_no_errors();
    first.close().await.unwrap();
    wait_for_workers(&client, "the closed tab's workers to leave", |w| {
        w.is_empty()
    })
    .await;
    let orphaned = client.status(id).await.unwrap();
    assert_eq!(orphaned.state, JobState::Running, "{orphaned:?}");

    let second = test.open_donor_page(2).await;
    assert_long_primes_job_exact(&client, id).await;

    test.finish(second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_reconnects_when_the_coordinator_comes_back() {
    let mut test = BrowserTest::start().await;
    let client = test.client();
    let mut page = test.open_donor_page(2).await;
    // The browser reports the refused connections while the coordinator is
    // down; nothing else may be logged.
    page.expect_errors("WebSocket connection to");

    let id = long_primes_job_partway(&client).await;

    // A graceful restart: the workers are told "going away" and dial again
    // with backoff until the coordinator is back on the same port.
    test.stop_grid().await;
    page.wait_for(
        "document.body.dataset.state === 'reconnecting' && \
         document.querySelector('#connected-workers').textContent === '0'",
        PAGE_TIMEOUT,
    )
    .await
    .expect("the page notices the coordinator left");
    test.start_grid_again().await;
    let client = test.client();
    page.wait_for(
        "document.body.dataset.state === 'working' && \
         document.querySelector('#connected-workers').textContent === '2'",
        PAGE_TIMEOUT,
    )
    .await
    .expect("the page reconnects");
    assert_long_primes_job_exact(&client, id).await;
    let workers = client.workers().await.unwrap();
    assert_eq!(workers.len(), 2, "{workers:#?}");

    test.finish(page).await;
}

/// The CPU cap is a duty cycle the worker keeps, not a label: at 25% one
/// thread spends at most about a quarter of the wall time in kernels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cpu_cap_limits_compute_time() {
    let test = BrowserTest::start().await;
    let client = test.client();
    let page = test
        .open_donor_page_with("autostart=1&threads=1&cap=25")
        .await;
    page.wait_for("document.body.dataset.state === 'working'", PAGE_TIMEOUT)
        .await
        .expect("the page's worker connects");
    assert_eq!(page.text("#cap-value").await.unwrap(), "25%");

    let (spec, tasks) = long_primes_job();
    let id = submit(&client, &job(spec, tasks)).await;
    page.wait_for(
        "Number(document.querySelector('#compute-time').dataset.ms) > 0",
        PAGE_TIMEOUT,
    )
    .await
    .expect("the worker computes");
    let sample = "[performance.now(), Number(document.querySelector('#compute-time').dataset.ms)]";
    let (wall0, compute0): (f64, f64) = page.eval(sample).await.unwrap();
    // The window is the measurement itself: four seconds of wall time.
    page.wait_for(&format!("performance.now() > {wall0} + 4000"), PAGE_TIMEOUT)
        .await
        .unwrap();
    let (wall1, compute1): (f64, f64) = page.eval(sample).await.unwrap();
    let share = (compute1 - compute0) / (wall1 - wall0);
    eprintln!("compute share at a 25% cap: {:.1}%", share * 100.0);
    assert!(
        (0.05..=0.32).contains(&share),
        "at a 25% cap the worker computed {:.0}% of the time",
        share * 100.0
    );
    client.cancel(id).await.unwrap();

    test.finish(page).await;
}

/// Every kernel's tasks through the built module under Node, compared with
/// native bytes: the fast check, no browser needed.
#[tokio::test]
async fn wasm_outputs_match_native_under_node() {
    let _one = exclusive().await;
    ensure_wasm_built().expect("www/pkg builds");
    let node = std::env::var("NODE").unwrap_or_else(|_| "node".into());
    let dir = tempfile::tempdir().unwrap();
    // The web-target module is an ES module; Node wants the .mjs extension.
    let pkg = repo_root().join("www/pkg");
    std::fs::copy(
        pkg.join("grid_worker_wasm.js"),
        dir.path().join("grid_worker_wasm.mjs"),
    )
    .unwrap();
    std::fs::copy(
        pkg.join("grid_worker_wasm_bg.wasm"),
        dir.path().join("grid_worker_wasm_bg.wasm"),
    )
    .unwrap();
    let cases: Vec<Value> = parity_cases()
        .into_iter()
        .map(|(spec, tasks)| json!({"spec": serde_json::to_string(&spec).unwrap(), "tasks": tasks}))
        .collect();
    let script = r#"
        import { readFileSync } from "node:fs";
        import { initSync, run_tasks } from "./grid_worker_wasm.mjs";
        initSync({ module: readFileSync(new URL("./grid_worker_wasm_bg.wasm", import.meta.url)) });
        const cases = JSON.parse(readFileSync(0, "utf8"));
        const hex = (bytes) => Buffer.from(bytes).toString("hex");
        console.log(JSON.stringify(cases.map(({ spec, tasks }) => hex(run_tasks(spec, tasks, 0, tasks)))));
    "#;
    std::fs::write(dir.path().join("parity.mjs"), script).unwrap();
    let mut child = std::process::Command::new(&node)
        .arg(dir.path().join("parity.mjs"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {node} (Node.js is needed): {e}"));
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&cases).unwrap().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "node failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let outputs: Vec<String> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(outputs.len(), parity_cases().len(), "one output per case");
    for ((spec, tasks), wasm_hex) in parity_cases().iter().zip(outputs) {
        let mut runner = TaskRunner::new();
        let mut native = Vec::new();
        for index in 0..*tasks {
            runner
                .run(spec, *tasks, index)
                .expect("a built-in kernel")
                .encode_into(&mut native);
        }
        let native_hex: String = native.iter().map(|b| format!("{b:02x}")).collect();
        assert!(
            wasm_hex == native_hex,
            "{}: WebAssembly output ({} bytes) differs from native ({} bytes)",
            spec.kind(),
            wasm_hex.len() / 2,
            native.len()
        );
    }
}
