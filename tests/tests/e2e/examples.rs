//! The example kernels (examples/, built by real toolchains: Rust for
//! wasm32-wasip1 and clang with wasi-libc, by `make examples`) on a real
//! grid with two native workers, each task replicated on both and decided
//! only when their outputs agree byte for byte. Answers are checked against
//! references computed here, independently of the kernels: the path
//! tracer's strips put together are the image `grid run` renders whole, the
//! C word counter agrees with a word count written in Rust, and the
//! parameter sweep prints, for each line, the JSON object an RK4 written
//! here computes from the random bytes it drew (which depend on the task and
//! the job's seed only), and its table script turns `grid results -o` into
//! those numbers, bit for bit.

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

    // The sweep: each line's JSON object, exactly as computed here from
    // the bytes it drew; the same seed draws the same bytes, another seed
    // others; and the table script gives back every number, bit for bit.
    let params_path = repo_root().join("examples/sweep/params.txt");
    let params_text = std::fs::read_to_string(&params_path).unwrap();
    let lines: Vec<[f64; 3]> = params_text
        .lines()
        .map(|line| {
            let v: Vec<f64> = line
                .split_whitespace()
                .map(|f| f.parse().unwrap())
                .collect();
            [v[0], v[1], v[2]]
        })
        .collect();
    let params = params_path.to_string_lossy();
    let sweep = example("sweep");
    let steps = 200;
    let mut drawn = Vec::new();
    let mut first = None;
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
                &format!("--steps {steps}"),
            ],
        )
        .await;
        no_failures(&status);
        let out = dir.path().join(format!("sweep-{}", status.id));
        let tasks = outputs(&grid, status.id, &out).await;
        assert_eq!(tasks.len(), lines.len());
        let mut randoms = Vec::new();
        for (task, &[a, b, c]) in tasks.iter().zip(&lines) {
            let got = std::fs::read_to_string(out.join(&task.name)).unwrap();
            let object: serde_json::Value = serde_json::from_str(&got).expect("one JSON object");
            let random = object["random"].as_str().expect("random bytes in hex");
            let expected = SweepLine::compute(a, b, c, steps, random);
            assert_eq!(got, expected.json(random), "task {}", task.name);
            randoms.push(random.to_string());
        }
        drawn.push(randoms);
        first.get_or_insert((out, tasks));
    }
    assert_eq!(drawn[0], drawn[1], "one seed, one answer");
    assert!(
        drawn[0].iter().zip(&drawn[2]).all(|(a, b)| a != b),
        "another seed draws other numbers for every task"
    );
    let (out, tasks) = first.unwrap();
    assert_sweep_table(&out, &tasks, &lines, steps, &drawn[0]);

    for worker in workers {
        worker.stop().await;
    }
    grid.stop().await;
}

/// One line of the sweep, computed here: the Duffing oscillator
/// `x'' + a x' + b x + c x^3 = 0` from `x = 1 + jitter`, `x' = 0`, by
/// classic RK4 with steps of 0.001, the jitter taken from the 8 random bytes
/// the kernel says it drew (their top 53 bits as a fraction `u` of one,
/// `(u - 0.5) * 1e-9`).
struct SweepLine {
    a: f64,
    b: f64,
    c: f64,
    steps: u32,
    x: f64,
    v: f64,
    energy: f64,
    peak: f64,
}

impl SweepLine {
    fn compute(a: f64, b: f64, c: f64, steps: u32, random_hex: &str) -> SweepLine {
        let random = u64::from_str_radix(random_hex, 16).unwrap().swap_bytes();
        let unit = (random >> 11) as f64 / (1u64 << 53) as f64;
        let h = 1e-3;
        let f = |x: f64, v: f64| -a * v - b * x - c * x * x * x;
        let (mut x, mut v) = (1.0 + (unit - 0.5) * 1e-9, 0.0f64);
        let mut peak = x.abs();
        for _ in 0..steps {
            let (k1x, k1v) = (v, f(x, v));
            let (k2x, k2v) = (v + 0.5 * h * k1v, f(x + 0.5 * h * k1x, v + 0.5 * h * k1v));
            let (k3x, k3v) = (v + 0.5 * h * k2v, f(x + 0.5 * h * k2x, v + 0.5 * h * k2v));
            let (k4x, k4v) = (v + h * k3v, f(x + h * k3x, v + h * k3v));
            x += h / 6.0 * (k1x + 2.0 * k2x + 2.0 * k3x + k4x);
            v += h / 6.0 * (k1v + 2.0 * k2v + 2.0 * k3v + k4v);
            peak = peak.max(x.abs());
        }
        let energy = 0.5 * v * v + 0.5 * b * x * x + 0.25 * c * x * x * x * x;
        SweepLine {
            a,
            b,
            c,
            steps,
            x,
            v,
            energy,
            peak,
        }
    }

    /// The kernel's output line: floats in Rust's shortest exponent form.
    fn json(&self, random_hex: &str) -> String {
        format!(
            "{{\"a\":{:e},\"b\":{:e},\"c\":{:e},\"steps\":{},\"dt\":1e-3,\"x\":{:e},\"v\":{:e},\"energy\":{:e},\"peak\":{:e},\"random\":\"{random_hex}\"}}\n",
            self.a, self.b, self.c, self.steps, self.x, self.v, self.energy, self.peak
        )
    }
}

/// `examples/sweep/table.py` over what `grid results -o` wrote: a CSV with
/// one row per task in task order, its fuel from index.json, and every
/// parameter and result reading back to the same f64 as computed here.
fn assert_sweep_table(
    out: &std::path::Path,
    tasks: &[grid_kernels::WasmTaskResult],
    lines: &[[f64; 3]],
    steps: u32,
    randoms: &[String],
) {
    let script = repo_root().join("examples/sweep/table.py");
    let ran = std::process::Command::new("python3")
        .arg(&script)
        .arg(out)
        .output()
        .expect("python3 runs examples/sweep/table.py");
    assert!(ran.status.success(), "{ran:?}");
    let csv = String::from_utf8(ran.stdout).unwrap();
    let mut rows = csv.lines();
    assert_eq!(
        rows.next(),
        Some("task,name,exit_code,trap,fuel_used,a,b,c,steps,dt,x,v,energy,peak,random")
    );
    let rows: Vec<Vec<&str>> = rows.map(|r| r.split(',').collect()).collect();
    assert_eq!(rows.len(), lines.len(), "{csv}");
    let bits = |cell: &str| cell.parse::<f64>().unwrap().to_bits();
    for (i, row) in rows.iter().enumerate() {
        let [a, b, c] = lines[i];
        let line = SweepLine::compute(a, b, c, steps, &randoms[i]);
        let task = &tasks[i];
        assert_eq!(
            row[..5],
            [
                &*i.to_string(),
                &*i.to_string(),
                "0",
                "",
                &*task.fuel_used.to_string()
            ],
            "{row:?}"
        );
        let numbers = [
            a,
            b,
            c,
            f64::from(steps),
            1e-3,
            line.x,
            line.v,
            line.energy,
            line.peak,
        ];
        for (cell, want) in row[5..14].iter().zip(numbers) {
            assert_eq!(
                bits(cell),
                want.to_bits(),
                "row {i}: {cell} is not {want:e}"
            );
        }
        assert_eq!(row[14], randoms[i]);
    }
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
