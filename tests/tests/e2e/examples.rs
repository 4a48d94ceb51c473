//! The example kernels (examples/, built by real toolchains: Rust for
//! wasm32-wasip1 and clang with wasi-libc, by `make examples`) on a real
//! grid with two native workers, each task replicated on both and decided
//! only when their outputs agree byte for byte. Answers are checked against
//! references computed here, independently of the kernels: the path
//! tracer's strips put together are the image `grid run` renders whole, the
//! C word counter agrees with a word count written in Rust, and the
//! parameter sweep's random draws depend on the task and the job's seed
//! only.

use std::collections::HashMap;
use std::path::PathBuf;

use grid_kernels::{JobResult, ResultSummary};
use grid_protocol::api::{JobState, JobStatus};
use grid_tests::browser::repo_root;
use grid_tests::{TestGrid, grid_cli_async, grid_run, wait_for_workers};

/// A built example, or a failure that says how to build it.
fn example(name: &str) -> String {
    let path: PathBuf = repo_root()
        .join("examples/build")
        .join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run `make examples` (make test does)",
        path.display()
    );
    path.to_string_lossy().into_owned()
}

/// Submits with `args` plus `--redundancy 2 --quorum 2 --wait --json` and
/// returns the final status, which must be done.
async fn run_job(grid: &TestGrid, args: &[&str]) -> JobStatus {
    let mut all = vec!["submit", "wasm"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--redundancy", "2", "--quorum", "2", "--wait", "--json"]);
    let out = grid_cli_async(&grid.url, &all).await;
    assert_eq!(out.0, 0, "{out:?}");
    let status: JobStatus = serde_json::from_str(&out.1).expect("a status");
    assert_eq!(status.state, JobState::Done, "{status:?}");
    status
}

/// Downloads a job's outputs into a fresh directory.
async fn outputs(
    grid: &TestGrid,
    job: u64,
    dir: &std::path::Path,
) -> Vec<grid_kernels::WasmTaskResult> {
    let got = grid_cli_async(
        &grid.url,
        &["results", &job.to_string(), "-o", &dir.to_string_lossy()],
    )
    .await;
    assert_eq!(got.0, 0, "{got:?}");
    let index: JobResult =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let JobResult::Wasm { tasks } = index else {
        panic!("{index:?}")
    };
    tasks
}

fn no_failures(status: &JobStatus) {
    match &status.result {
        Some(ResultSummary::Wasm { tasks_failed, .. }) => {
            assert_eq!(*tasks_failed, 0, "{status:?}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_kernels_agree_across_workers_and_with_their_references() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start(&dir.path().join("data")).await;
    let workers = [grid.worker(1, "a"), grid.worker(1, "b")];
    wait_for_workers(&grid.client(), "two workers", |w| w.len() == 2).await;

    // The path tracer in full-width strips: put together, the whole image.
    let (width, height, strip) = (48, 36, 6);
    let strips: String = (0..height / strip)
        .map(|i| format!("0 {} {width} {strip}\n", i * strip))
        .collect();
    let lines = dir.path().join("strips.txt");
    std::fs::write(&lines, &strips).unwrap();
    let pathtracer = example("pathtracer");
    let args = format!("--width {width} --height {height} --samples 4");
    let status = run_job(
        &grid,
        &[
            "--module",
            &pathtracer,
            "--lines",
            &lines.to_string_lossy(),
            "--args",
            &args,
        ],
    )
    .await;
    no_failures(&status);
    let out = dir.path().join("image");
    let tasks = outputs(&grid, status.id, &out).await;
    let mut image = Vec::new();
    for task in &tasks {
        image.extend(std::fs::read(out.join(&task.name)).unwrap());
    }
    let argv: Vec<&str> = args.split(' ').collect();
    let mut whole_args = vec![pathtracer.as_str()];
    whole_args.extend(&argv);
    let (code, whole, stderr) = grid_run(&whole_args, b"");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(image.len(), width * height * 3);
    assert!(image == whole, "the strips differ from the whole image");

    // The C word counter, one task per file, against a count made here.
    let texts = repo_root().join("examples/wordfreq/texts");
    let status = run_job(
        &grid,
        &[
            "--module",
            &example("wordfreq"),
            "--inputs",
            &texts.to_string_lossy(),
        ],
    )
    .await;
    no_failures(&status);
    let out = dir.path().join("words");
    let tasks = outputs(&grid, status.id, &out).await;
    assert_eq!(tasks.len(), std::fs::read_dir(&texts).unwrap().count());
    for task in &tasks {
        let text = std::fs::read_to_string(texts.join(&task.name)).unwrap();
        let got = std::fs::read_to_string(out.join(&task.name)).unwrap();
        assert_eq!(got, top_words(&text, 10), "{}", task.name);
    }

    // The sweep: the same seed draws the same bytes, another seed others.
    let params = repo_root().join("examples/sweep/params.txt");
    let params = params.to_string_lossy();
    let sweep = example("sweep");
    let mut drawn = Vec::new();
    for seed in ["1", "1", "2"] {
        let status = run_job(
            &grid,
            &[
                "--module",
                &sweep,
                "--lines",
                &params,
                "--seed",
                seed,
                "--args",
                "--steps 200",
            ],
        )
        .await;
        no_failures(&status);
        let out = dir.path().join(format!("sweep-{}", status.id));
        let tasks = outputs(&grid, status.id, &out).await;
        drawn.push(tasks.iter().map(|t| t.output_sha256).collect::<Vec<_>>());
    }
    assert_eq!(drawn[0], drawn[1], "one seed, one answer");
    assert!(
        drawn[0].iter().zip(&drawn[2]).all(|(a, b)| a != b),
        "another seed draws other numbers for every task"
    );
    for worker in workers {
        worker.stop().await;
    }
    grid.stop().await;
}

/// The `count word` lines of the `top` most frequent words (ASCII letters,
/// case-folded), by count and then word: what wordfreq.c prints.
fn top_words(text: &str, top: usize) -> String {
    let mut counts: HashMap<String, u64> = HashMap::new();
    for word in text
        .split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| !w.is_empty())
    {
        *counts.entry(word.to_ascii_lowercase()).or_default() += 1;
    }
    let mut counts: Vec<(String, u64)> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts
        .iter()
        .take(top)
        .map(|(word, n)| format!("{n} {word}\n"))
        .collect()
}
