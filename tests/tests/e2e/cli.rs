//! The `grid` command line's contract, run as a real process against a real
//! coordinator: what `submit`, `status`, `jobs`, `results` and `cancel` print
//! (JSON a script can parse, CSV, a PNG of the right size), and how they fail:
//! a non-zero exit code with one line on stderr, and exit code 3 when a job
//! being waited for is cancelled. What the commands print as JSON is read
//! back as the API's types, as a script in Rust would.

use std::time::Duration;

use grid_kernels::spec::{MandelbrotParams, MonteCarloParams};
use grid_kernels::{JobResult, KernelKind, KernelSpec, ResultSummary};
use grid_protocol::api::{JobRequest, JobState, JobStatus};
use grid_tests::{
    TOKEN, TestGrid, assert_primes, free_port, grid_cli_async, grid_cli_with, job, primes, submit,
    wait_for_job, wait_for_workers,
};
use serde::de::DeserializeOwned;

/// Parses a command's stdout as JSON of type `T`, naming the command on
/// failure.
fn parse<T: DeserializeOwned>(what: &str, stdout: &str) -> T {
    serde_json::from_str(stdout).unwrap_or_else(|e| {
        panic!(
            "{what} printed no {} ({e}): {stdout}",
            std::any::type_name::<T>()
        )
    })
}

/// Asserts that a command failed with `code` and one line on stderr, and
/// returns that line.
fn one_line_failure(what: &str, outcome: &(i32, String, String), code: i32) -> String {
    let (exit, stdout, stderr) = outcome;
    assert_eq!(
        *exit, code,
        "{what}: exit code; stdout {stdout:?} stderr {stderr:?}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{what}: stderr is not one line: {stderr:?}");
    lines[0].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_status_jobs_and_results_print_what_scripts_parse() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start(dir.path()).await;
    let worker = grid.worker(1, "a");
    let url = &grid.url;

    // submit --wait --json: the final status.
    let out = grid_cli_async(
        url,
        &[
            "submit", "primes", "--start", "0", "--end", "1000000", "--wait", "--json",
        ],
    )
    .await;
    assert_eq!(out.0, 0, "{out:?}");
    let status: JobStatus = parse("submit --wait --json", &out.1);
    assert_eq!(status.state, JobState::Done, "{status:?}");
    assert_primes(&status, 78_498);
    let waited = status.id;

    // submit --json without waiting: at least the id.
    let out = grid_cli_async(
        url,
        &[
            "submit", "primes", "--start", "0", "--end", "100000", "--tasks", "4", "--json",
        ],
    )
    .await;
    assert_eq!(out.0, 0, "{out:?}");
    let id = parse::<JobStatus>("submit --json", &out.1).id;
    assert_ne!(id, waited);
    wait_for_job(&grid.client(), id, Duration::from_secs(30)).await;

    // status --json is the API's status object.
    let out = grid_cli_async(url, &["status", &id.to_string(), "--json"]).await;
    assert_eq!(out.0, 0, "{out:?}");
    let status: JobStatus = parse("status --json", &out.1);
    assert_eq!(status.id, id);
    assert_eq!(status.state, JobState::Done);
    assert_eq!(status.spec.kind(), KernelKind::Primes);
    assert_eq!(status.tasks.total, 4);
    assert_primes(&status, 9592);

    // jobs --json lists both, newest first; a page of one says where the
    // next begins.
    let out = grid_cli_async(url, &["jobs", "--json"]).await;
    assert_eq!(out.0, 0, "{out:?}");
    let jobs: Vec<JobStatus> = parse("jobs --json", &out.1);
    let ids: Vec<u64> = jobs.iter().map(|j| j.id).collect();
    assert_eq!(ids, [id, waited]);
    let out = grid_cli_async(url, &["jobs", "--json", "--limit", "1"]).await;
    assert_eq!(out.0, 0, "{out:?}");
    let jobs: Vec<JobStatus> = parse("jobs --json --limit 1", &out.1);
    assert_eq!(jobs.iter().map(|j| j.id).collect::<Vec<_>>(), [id]);
    assert!(
        out.2
            .contains(&format!("more: grid jobs --before {id} --limit 1")),
        "{out:?}"
    );

    // results: JSON by default, CSV on request.
    let out = grid_cli_async(url, &["results", &id.to_string()]).await;
    assert_eq!(out.0, 0, "{out:?}");
    assert_eq!(
        parse::<JobResult>("results", &out.1),
        JobResult::Primes { count: 9592 }
    );
    let out = grid_cli_async(url, &["results", &id.to_string(), "--format", "csv"]).await;
    assert_eq!(out.0, 0, "{out:?}");
    assert_eq!(out.1.lines().collect::<Vec<_>>(), ["count", "9592"]);

    worker.stop().await;
    grid.stop().await;
}

/// Width and height from a PNG's IHDR chunk, which must come first.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&bytes[12..16], b"IHDR", "the first chunk is not IHDR");
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mandelbrot_results_export_as_csv_and_png() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start(dir.path()).await;
    let worker = grid.worker(1, "a");
    let url = &grid.url;
    let params = MandelbrotParams {
        width: 64,
        height: 40,
        x_min: -2.5,
        x_max: 1.0,
        y_min: -1.3125,
        y_max: 1.3125,
        max_iter: 120,
    };
    let out = grid_cli_async(
        url,
        &[
            "submit",
            "mandelbrot",
            "--width",
            "64",
            "--height",
            "40",
            "--max-iter",
            "120",
            "--tasks",
            "5",
            "--wait",
            "--json",
        ],
    )
    .await;
    assert_eq!(out.0, 0, "{out:?}");
    let status: JobStatus = parse("submit mandelbrot", &out.1);
    assert_eq!(status.spec, KernelSpec::Mandelbrot(params.clone()));
    let id = status.id.to_string();

    let mut expected = Vec::new();
    grid_kernels::mandelbrot::render_rows(&params, 0, params.height, &mut expected);
    let out = grid_cli_async(url, &["results", &id, "--format", "csv"]).await;
    assert_eq!(out.0, 0, "{out:?}");
    let mut lines = out.1.lines();
    assert_eq!(lines.next(), Some("x,y,iterations"));
    let mut rows = 0;
    for line in lines {
        let fields: Vec<u32> = line.split(',').map(|f| f.parse().unwrap()).collect();
        let [x, y, n] = fields[..] else {
            panic!("not x,y,iterations: {line}")
        };
        assert_eq!(
            n,
            expected[(y * params.width + x) as usize],
            "pixel {x},{y}"
        );
        rows += 1;
    }
    assert_eq!(rows, 64 * 40);

    let png = dir.path().join("image.png");
    let out = grid_cli_async(
        url,
        &[
            "results",
            &id,
            "--format",
            "png",
            "-o",
            png.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(out.0, 0, "{out:?}");
    assert_eq!(png_size(&std::fs::read(&png).unwrap()), (64, 40));

    worker.stop().await;
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_file_takes_the_api_json() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start(dir.path()).await;
    let worker = grid.worker(1, "a");
    let (seed, samples) = (4242u64, 1_000_003u64);
    let request = job(
        KernelSpec::MontecarloPi(MonteCarloParams { samples, seed }),
        9,
    );
    let file = dir.path().join("job.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&request).unwrap()).unwrap();

    let out = grid_cli_async(
        &grid.url,
        &[
            "submit",
            "--file",
            file.to_str().unwrap(),
            "--wait",
            "--json",
        ],
    )
    .await;
    assert_eq!(out.0, 0, "{out:?}");
    let status: JobStatus = parse("submit --file", &out.1);
    assert_eq!(status.spec.kind(), KernelKind::MontecarloPi);
    assert_eq!(status.tasks.total, 9);
    let inside = grid_kernels::montecarlo::count_inside(seed, 0, samples);
    assert!(
        matches!(
            status.result,
            Some(ResultSummary::MontecarloPi { inside: i, samples: s, .. }) if i == inside && s == samples
        ),
        "{status:?}"
    );

    worker.stop().await;
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_running_job_and_a_waiting_submit_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start(dir.path()).await;
    let client = grid.client();
    let url = grid.url.clone();

    // No worker yet: a waiting submit waits until the job is cancelled.
    let waiting = tokio::spawn({
        let url = url.clone();
        async move {
            grid_cli_async(
                &url,
                &[
                    "submit", "primes", "--start", "0", "--end", "1000000", "--wait", "--json",
                ],
            )
            .await
        }
    });
    let id = loop {
        if let Some(job) = client.jobs().await.unwrap().first() {
            break job.id;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    client.cancel(id).await.unwrap();
    let out = waiting.await.unwrap();
    let line = one_line_failure("submit --wait of a cancelled job", &out, 3);
    assert!(line.contains("cancelled"), "{line}");
    let status: JobStatus = parse("submit --wait --json of a cancelled job", &out.1);
    assert_eq!(status.id, id);
    assert_eq!(status.state, JobState::Cancelled);

    // A job that stays running: two replicas, and only one worker to give
    // them. Cancel it with the command line.
    let worker = grid.worker(1, "a");
    let request = JobRequest {
        redundancy: Some(2),
        ..job(primes(0, 1_000_000), 8)
    };
    let running = submit(&client, &request).await;
    wait_for_workers(&client, "a replica of every task", |w| {
        w.len() == 1 && w[0].tasks_done == 8
    })
    .await;
    assert_eq!(
        client.status(running).await.unwrap().state,
        JobState::Running
    );
    let id = running.to_string();
    let out = grid_cli_async(&url, &["cancel", &id]).await;
    assert_eq!(out.0, 0, "{out:?}");
    let out = grid_cli_async(&url, &["status", &id, "--json"]).await;
    assert_eq!(out.0, 0, "{out:?}");
    assert_eq!(
        parse::<JobStatus>("status", &out.1).state,
        JobState::Cancelled
    );

    // Cancelling it again is refused (409), in one line.
    let out = grid_cli_async(&url, &["cancel", &id]).await;
    one_line_failure("a second cancel", &out, 1);

    worker.stop().await;
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_exit_non_zero_with_one_line_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start(dir.path()).await;
    let url = grid.url.clone();
    let cli = move |url: String, token: Option<&'static str>, args: &'static [&'static str]| {
        tokio::task::spawn_blocking(move || grid_cli_with(&url, token, args))
    };
    let submit: &'static [&'static str] = &["submit", "primes", "--start", "0", "--end", "1000"];

    let closed = format!("http://127.0.0.1:{}", free_port().unwrap());
    let out = cli(closed, Some(TOKEN), submit).await.unwrap();
    let line = one_line_failure("an unreachable coordinator", &out, 1);
    assert!(line.contains("cannot reach"), "{line}");

    let out = cli(url.clone(), Some("not-the-token"), submit)
        .await
        .unwrap();
    let line = one_line_failure("a bad token", &out, 1);
    assert!(line.contains("token"), "{line}");

    let out = cli(url.clone(), None, &["jobs"]).await.unwrap();
    one_line_failure("no token", &out, 1);

    let backwards = &["submit", "primes", "--start", "1000", "--end", "10"];
    let out = cli(url.clone(), Some(TOKEN), backwards).await.unwrap();
    let line = one_line_failure("invalid parameters", &out, 1);
    assert!(line.contains("start"), "{line}");

    let out = cli(url.clone(), Some(TOKEN), &["status", "424242"])
        .await
        .unwrap();
    one_line_failure("an unknown job", &out, 1);

    // A malformed command line is clap's: exit code 2.
    let out = cli(
        url.clone(),
        Some(TOKEN),
        &["submit", "primes", "--start", "0"],
    )
    .await
    .unwrap();
    assert_eq!(out.0, 2, "{out:?}");

    // None of these made a job.
    assert!(grid.client().jobs().await.unwrap().is_empty());
    grid.stop().await;
}
