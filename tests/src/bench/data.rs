//! Benchmark 8: data goes to the donors (issue 12). Three figures, each
//! from jobs whose every answer is checked against a SHA-256 computed here:
//!
//! 1. **A shared file.** A job of 400 `slicehash` tasks (each hashes a
//!    1 to 4 MiB slice of `/data/data.bin`) over one 64 MiB file, on
//!    2 native workers with disk caches, and again with 2 Chromium tabs of
//!    2 threads beside them (each tab in a browser of its own, with its
//!    own profile: two donors, and a tab in front, since the donor page
//!    pauses in a hidden one): the blob bytes the coordinator served
//!    (`grid_blob_bytes_served_total`), per task, and as whole-file
//!    fetches. Then a second job over the same file after the native
//!    workers restarted on their cache directories and the tabs reloaded:
//!    it should fetch nothing. Goal: one fetch per cache, not per task.
//! 2. **Blob serving.** A `grid serve` child (its data directory under
//!    `target/bench/scratch`, on the real disk) serves a 1 GiB blob to one
//!    client (MB/s, from the page cache and cold from disk) and to 100
//!    clients at once, while its VmRSS is sampled and its peak (VmHWM,
//!    reset just before) read from `/proc`; the same with a 64 MiB blob, to
//!    show the coordinator's memory does not grow with the blob's size.
//!    The blobs are generated, hashed (`sha256sum`) and uploaded (`PUT`)
//!    as streams: neither is ever whole in this process.
//! 3. **Locality.** 4 jobs of 200 tasks over 4 different 64 MiB files,
//!    submitted together to 4 native workers with a 256 MiB cache each
//!    (all four files fit in every cache): the blob bytes served with the
//!    scheduler's locality on and off (`SchedulerConfig::locality`). Goal:
//!    with locality each file goes to one worker.
//!
//! Figures 1 and 3 run the coordinator in this process ([`TestGrid`]), so
//! that locality can be switched off, and the native workers as `grid
//! worker --threads 1 --cache DIR --cache-size SIZE` processes. They count
//! bytes, not time, so their data and cache directories are in `/dev/shm`
//! (memory) to spare the disk; what the workers fetched (new files in the
//! caches, each tab's own figure) is a second count beside the
//! coordinator's, and the only one where the coordinator lacks its
//! counter.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use grid_cli::client::Client;
use grid_coordinator::store::Durability;
use grid_kernels::{ContentDigest, JobResult};
use grid_protocol::WorkerKind;
use grid_protocol::api::{JobState, JobStatus, WorkerInfo};
use grid_tests::browser::{PAGE_TIMEOUT, TestBrowser, TestPage, ensure_wasm_built, repo_root};
use grid_tests::{TestGrid, slices};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::Ctx;
use super::env;
use super::procs::{Coordinator, TOKEN};
use super::report::{Goal, Row};
use super::throughput::load_note;

const BENCH: u32 = 8;
const MIB: u64 = 1 << 20;
/// The size of each file the jobs mount.
const FILE_BYTES: u64 = 64 * MIB;
/// Tasks of each job of figure 1.
const SHARED_TASKS: u64 = 400;
/// Figure 3: jobs (one file each) and the tasks of each.
const LOCALITY_JOBS: u64 = 4;
const LOCALITY_TASKS: u64 = 200;
/// Each native worker's disk cache in figure 3: exactly four files.
const LOCALITY_QUOTA: u64 = 256 * MIB;
/// Figure 2: the large blob and the concurrent downloads.
const LARGE_BLOB: u64 = 1 << 30;
const DOWNLOADS: usize = 100;
/// Generated, hashed and sent in pieces of this many bytes (a multiple of 8).
const PIECE: usize = 1 << 20;
const JOB_TIMEOUT: Duration = Duration::from_secs(600);

pub async fn data(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (figure, outcome) in [
        ("shared file", shared_file(ctx).await),
        ("blob serving", serving(ctx).await),
        ("locality", locality(ctx).await),
    ] {
        match outcome {
            Ok(new) => rows.extend(new),
            Err(error) => {
                eprintln!("  {figure} failed: {error:#}");
                rows.push(Row::missing(BENCH, figure, format!("failed: {error:#}")));
            }
        }
    }
    Ok(rows)
}

// ---- the workload ----------------------------------------------------------

/// The tasks of one `slicehash` job over one file
/// ([`grid_tests::slices`]), with the SHA-256 each task's stdout must have.
#[derive(Debug)]
struct SliceJob {
    slices: Vec<(usize, usize)>,
    expected: Vec<ContentDigest>,
}

impl SliceJob {
    /// `tasks` slices of 1 to 4 MiB (about 10 ms of SHA-256 in WebAssembly,
    /// so that a job of 400 lasts long enough for tabs that join it to take
    /// part; the tests' slices are up to 50 KB) at offsets spread over the
    /// whole file (a splitmix of `seed` and the task).
    fn new(file: &[u8], tasks: u64, seed: u64) -> SliceJob {
        let len = file.len() as u64;
        let slices: Vec<(usize, usize)> = (0..tasks)
            .map(|i| {
                let mut x = seed.wrapping_add((i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                x ^= x >> 31;
                let length = MIB + x % (3 * MIB);
                (((x >> 24) % (len - length + 1)) as usize, length as usize)
            })
            .collect();
        let expected = slices::expected(file, &slices)
            .iter()
            .map(|line| ContentDigest::of(line.as_bytes()))
            .collect();
        SliceJob { slices, expected }
    }

    async fn submit(&self, client: &Client, file: ContentDigest) -> u64 {
        slices::submit(client, file, &self.slices, 1).await
    }

    /// Fails unless every task of `job` printed its slice's digest.
    async fn check(&self, client: &Client, job: u64) -> anyhow::Result<()> {
        let JobResult::Wasm { tasks } = client.result(job).await? else {
            bail!("job {job}: not a wasm job's result");
        };
        ensure!(
            tasks.len() == self.expected.len(),
            "job {job} has {} results for {} tasks",
            tasks.len(),
            self.expected.len()
        );
        let wrong: Vec<_> = tasks
            .iter()
            .filter(|t| self.expected.get(t.task as usize) != Some(&t.output_sha256))
            .collect();
        if let Some(first) = wrong.first() {
            bail!(
                "{} of {} answers of job {job} are not their slice's SHA-256; task {}: exit \
                 {}, trap {:?}, stderr {:?}",
                wrong.len(),
                tasks.len(),
                first.task,
                first.exit_code,
                first.trap,
                first.stderr
            );
        }
        Ok(())
    }
}

/// Fails, saying how to build it, without the `slicehash` example.
fn slicehash_built() -> anyhow::Result<()> {
    let path = repo_root().join("examples/build/slicehash.wasm");
    ensure!(
        path.is_file(),
        "{} is missing: run `make examples`",
        path.display()
    );
    Ok(())
}

/// Deterministic bytes for the blobs of 8b, which are never whole in
/// memory: xorshift64* words, little endian. Filled in multiples of 8
/// bytes, a stream is the same however it is cut into pieces.
#[derive(Debug, Clone)]
struct Noise {
    state: u64,
}

impl Noise {
    fn new(seed: u64) -> Noise {
        Noise {
            state: (seed ^ 0x243f_6a88_85a3_08d3).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
        }
    }

    fn fill(&mut self, buf: &mut [u8]) {
        debug_assert!(buf.len().is_multiple_of(8));
        for word in buf.chunks_exact_mut(8) {
            let mut x = self.state;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.state = x;
            word.copy_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
    }
}

// ---- talking to the grid ---------------------------------------------------

/// The coordinator's `grid_blob_bytes_served_total`, if it has one.
async fn bytes_served(url: &str) -> anyhow::Result<Option<u64>> {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .context("GET /metrics")?
        .text()
        .await?;
    let Some(value) = text
        .lines()
        .find_map(|l| l.strip_prefix("grid_blob_bytes_served_total "))
    else {
        return Ok(None);
    };
    let value: f64 = value
        .trim()
        .parse()
        .context("grid_blob_bytes_served_total")?;
    Ok(Some(value as u64))
}

async fn wait_done(client: &Client, job: u64) -> anyhow::Result<JobStatus> {
    let deadline = tokio::time::Instant::now() + JOB_TIMEOUT;
    loop {
        let status = client.status(job).await?;
        match status.state {
            JobState::Done => return Ok(status),
            JobState::Failed | JobState::Cancelled => bail!("job {job} ended badly: {status:?}"),
            JobState::Queued | JobState::Running | JobState::Rechecking => {}
        }
        if tokio::time::Instant::now() > deadline {
            bail!("job {job} not done within {JOB_TIMEOUT:?}: {status:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls the worker list until `until` holds.
async fn wait_workers(
    client: &Client,
    what: &str,
    until: impl Fn(&[WorkerInfo]) -> bool,
) -> anyhow::Result<Vec<WorkerInfo>> {
    let deadline = tokio::time::Instant::now() + PAGE_TIMEOUT;
    loop {
        let workers = client.workers().await?;
        if until(&workers) {
            return Ok(workers);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("no {what} within {PAGE_TIMEOUT:?}: {workers:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Tasks done by each native worker and by the tabs together, e.g.
/// `native-1 210, native-2 150, tabs 40`.
fn tasks_by_worker(workers: &[WorkerInfo]) -> String {
    let mut parts: Vec<String> = workers
        .iter()
        .filter(|w| w.kind == WorkerKind::Native)
        .map(|w| format!("{} {}", w.name.as_deref().unwrap_or("?"), w.tasks_done))
        .collect();
    parts.sort();
    let tabs: Vec<&WorkerInfo> = workers
        .iter()
        .filter(|w| w.kind == WorkerKind::Browser)
        .collect();
    if !tabs.is_empty() {
        parts.push(format!(
            "tabs {}",
            tabs.iter().map(|w| w.tasks_done).sum::<u64>()
        ));
    }
    parts.join(", ")
}

/// A scratch directory for figures 1 and 3, which count bytes, not time:
/// in `/dev/shm` (memory) where there is one, to spare the disk the
/// gigabyte the caches of figure 3 hold; else on the disk.
fn scratch(prefix: &str) -> anyhow::Result<tempfile::TempDir> {
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        env::bench_dir().join("scratch")
    };
    std::fs::create_dir_all(&dir)?;
    Ok(tempfile::Builder::new().prefix(prefix).tempdir_in(&dir)?)
}

/// The blob files in the native workers' cache directories, each with its
/// inode and size: a copy fetched again is a new file (the worker writes it
/// aside and renames it into place).
type Census = BTreeMap<PathBuf, (u64, u64)>;

fn census(dirs: &[PathBuf]) -> Census {
    let mut found = Census::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let is_blob = entry.file_name().to_string_lossy().starts_with("sha256:");
            if let (true, Ok(meta)) = (is_blob, entry.metadata()) {
                found.insert(entry.path(), (meta.ino(), meta.size()));
            }
        }
    }
    found
}

/// Bytes of the copies in `after` that were not in `before`.
fn fetched_into_caches(before: &Census, after: &Census) -> u64 {
    after
        .iter()
        .filter(|(path, copy)| before.get(*path) != Some(*copy))
        .map(|(_, &(_, size))| size)
        .sum()
}

/// A `grid worker` process; killed if it is still running when dropped.
#[derive(Debug)]
struct NativeWorker(Child);

impl Drop for NativeWorker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An in-process coordinator and the workers around it, stopped in order
/// (workers, tabs, browsers, coordinator) whatever happened in between.
#[derive(Debug)]
struct Rig {
    grid: TestGrid,
    /// The `grid` binary the native workers run.
    binary: PathBuf,
    natives: Vec<NativeWorker>,
    /// One cache directory per native worker, and the quota of each.
    caches: Vec<PathBuf>,
    cache_bytes: u64,
    /// One tab per browser: the donor page pauses in a tab that is not in
    /// front, and headless Chromium shows one tab at a time.
    browsers: Vec<TestBrowser>,
    tabs: Vec<TestPage>,
}

impl Rig {
    async fn start(binary: &Path, data_dir: &Path, locality: bool) -> Rig {
        let grid = TestGrid::start_with(data_dir, |config| {
            config.durability = Durability::Full;
            config.scheduler.locality = locality;
        })
        .await;
        Rig {
            grid,
            binary: binary.to_path_buf(),
            natives: Vec::new(),
            caches: Vec::new(),
            cache_bytes: 0,
            browsers: Vec::new(),
            tabs: Vec::new(),
        }
    }

    /// `grid worker --threads 1` processes named `native-1`..., each on its
    /// own cache directory (the same ones again after a restart); each
    /// logs to `worker-N.log` beside its cache.
    fn start_natives(&mut self) -> anyhow::Result<()> {
        for (i, dir) in (1..).zip(&self.caches) {
            let log = std::fs::File::options()
                .create(true)
                .append(true)
                .open(dir.with_file_name(format!("worker-{i}.log")))?;
            let child = Command::new(&self.binary)
                .args(["--url", &self.grid.url, "worker", "--threads", "1"])
                .arg("--name")
                .arg(format!("native-{i}"))
                .arg("--cache")
                .arg(dir)
                .args(["--cache-size", &self.cache_bytes.to_string()])
                .env_remove("RUST_LOG")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("start grid worker")?;
            self.natives.push(NativeWorker(child));
        }
        Ok(())
    }

    /// Stops the native workers as a signal would (SIGTERM: they hand back
    /// their work and leave), killing any still there after 5 s.
    async fn stop_natives(&mut self) {
        for worker in &self.natives {
            let _ = Command::new("kill")
                .args(["-TERM", &worker.0.id().to_string()])
                .status();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        for mut worker in self.natives.drain(..) {
            while matches!(worker.0.try_wait(), Ok(None)) && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    fn donor_url(&self) -> String {
        format!("{}/?autostart=1&threads=2", self.grid.url)
    }

    /// Waits until `tab` shows its 2 threads connected.
    async fn tab_connected(tab: &TestPage) -> anyhow::Result<()> {
        tab.wait_for(
            "document.body.dataset.state === 'working' && \
             document.querySelector('#connected-workers')?.textContent === '2'",
            PAGE_TIMEOUT,
        )
        .await
    }

    async fn shutdown(mut self) {
        self.stop_natives().await;
        for tab in self.tabs.drain(..) {
            let _ = tab.close().await;
        }
        for browser in self.browsers.drain(..) {
            browser.close().await;
        }
        self.grid.stop().await;
    }
}

// ---- 1. a shared file ------------------------------------------------------

/// One run of figure 1: what each of the two jobs cost in blob bytes.
#[derive(Debug, Serialize)]
struct SharedRun {
    /// Blob bytes the coordinator served for each job, by its counter.
    served: [Option<u64>; 2],
    /// What the workers say they fetched: bytes new in the native workers'
    /// cache directories, plus what each tab shows it fetched since its
    /// page loaded.
    fetched: [u64; 2],
    tasks: [String; 2],
}

impl SharedRun {
    /// Job `k`'s bytes: the coordinator's count, else the workers'.
    fn bytes(&self, k: usize) -> u64 {
        self.served[k].unwrap_or(self.fetched[k])
    }
}

async fn shared_run(
    binary: &Path,
    file: &[u8],
    jobs: &[SliceJob; 2],
    tabs: bool,
) -> anyhow::Result<SharedRun> {
    let dir = scratch("data-shared-")?;
    let mut rig = Rig::start(binary, &dir.path().join("data"), true).await;
    rig.caches = (1..=2)
        .map(|i| dir.path().join(format!("cache-{i}")))
        .collect();
    rig.cache_bytes = 1 << 30;
    let outcome = shared_jobs(&mut rig, file, jobs, tabs).await;
    let errors: Vec<String> = rig.tabs.iter().flat_map(|t| t.console_errors()).collect();
    rig.shutdown().await;
    if !errors.is_empty() {
        eprintln!("  the donor tabs logged errors: {errors:#?}");
    }
    outcome
}

async fn shared_jobs(
    rig: &mut Rig,
    file: &[u8],
    jobs: &[SliceJob; 2],
    tabs: bool,
) -> anyhow::Result<SharedRun> {
    let client = rig.grid.client();
    let (file_digest, _) = client.ensure_blob(file.to_vec()).await?;
    let expected_workers = if tabs { 2 + 4 } else { 2 };
    rig.start_natives()?;
    if tabs {
        for _ in 0..2 {
            let browser = TestBrowser::launch().await?;
            let tab = browser.open(&rig.donor_url()).await;
            rig.browsers.push(browser);
            let tab = tab?;
            Rig::tab_connected(&tab).await?;
            rig.tabs.push(tab);
        }
    }
    let mut seen = wait_workers(&client, "all workers", |w| w.len() == expected_workers).await?;
    let mut run = SharedRun {
        served: [None; 2],
        fetched: [0; 2],
        tasks: Default::default(),
    };
    for (k, job) in jobs.iter().enumerate() {
        if k == 1 {
            // The native workers start again on the same cache directories;
            // the tabs load the page again (the OPFS copy stays).
            rig.stop_natives().await;
            rig.start_natives()?;
            let url = rig.donor_url();
            for tab in &rig.tabs {
                tab.goto(&url).await?;
                Rig::tab_connected(tab).await?;
            }
            let old: Vec<u64> = seen.iter().map(|w| w.id).collect();
            seen = wait_workers(&client, "all workers back", |w| {
                w.len() == expected_workers && w.iter().all(|w| !old.contains(&w.id))
            })
            .await?;
        }
        let before = bytes_served(&rig.grid.url).await?;
        let caches_before = census(&rig.caches);
        let id = job.submit(&client, file_digest).await;
        wait_done(&client, id).await?;
        job.check(&client, id).await?;
        let after = bytes_served(&rig.grid.url).await?;
        run.served[k] = before.zip(after).map(|(before, after)| after - before);
        run.fetched[k] = fetched_into_caches(&caches_before, &census(&rig.caches));
        for tab in &rig.tabs {
            run.fetched[k] += tab_fetched(tab).await?;
        }
        run.tasks[k] = tasks_by_worker(&client.workers().await?);
    }
    Ok(run)
}

/// What a donor tab shows it fetched since its page loaded (the cache
/// card's `data-fetched-bytes`), once the figure has settled.
async fn tab_fetched(tab: &TestPage) -> anyhow::Result<u64> {
    let read = "Number(document.querySelector('#cache-summary')?.dataset.fetchedBytes)";
    let mut last = None;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now: Option<f64> = tab.eval(&format!("{read} ?? null")).await?;
        let now = now
            .filter(|n| n.is_finite())
            .context("the donor page shows no bytes fetched (#cache-summary)")?;
        if last == Some(now) {
            return Ok(now as u64);
        }
        last = Some(now);
    }
}

/// Why the donor page cannot take part, if it cannot: the worker must
/// build, and Chromium be there.
async fn tabs_unavailable() -> Option<String> {
    match tokio::task::spawn_blocking(ensure_wasm_built).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return Some(format!("www/pkg does not build: {error:#}")),
        Err(error) => return Some(format!("building www/pkg panicked: {error}")),
    }
    grid_tests::browser::ensure_chromium()
        .err()
        .map(|error| format!("no Chromium: {error:#}"))
}

/// `f` of each run, joined for a note: `2.00, 2.00, 3.00`.
fn each<T>(runs: &[T], f: impl Fn(&T) -> String) -> String {
    runs.iter().map(f).collect::<Vec<_>>().join(", ")
}

async fn shared_file(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    slicehash_built()?;
    let file = slices::data(FILE_BYTES as usize, 1);
    let jobs = [
        SliceJob::new(&file, SHARED_TASKS, 11),
        SliceJob::new(&file, SHARED_TASKS, 12),
    ];
    let mut rows = Vec::new();
    let mut raw = serde_json::Map::new();
    for tabs in [false, true] {
        // Each browser has its own profile, so an OPFS of its own.
        let (what, caches) = if tabs {
            ("2 native workers + 2 Chromium tabs x 2 threads", 4)
        } else {
            ("2 native workers", 2)
        };
        let figure = format!("shared 64 MiB file, {SHARED_TASKS} tasks, {what}");
        if tabs && let Some(why) = tabs_unavailable().await {
            rows.push(Row::missing(BENCH, &figure, why));
            continue;
        }
        let (mut runs, mut loads) = (Vec::new(), Vec::new());
        for i in 0..ctx.expensive_runs() {
            loads.push(env::load_average());
            let run = shared_run(&ctx.grid, &file, &jobs, tabs).await;
            eprintln!("  {what}, run {}: {run:?}", i + 1);
            match run {
                Ok(run) => runs.push(run),
                Err(error) => {
                    let why = match tabs {
                        true => format!("the donor page cannot run this job: {error:#}"),
                        false => format!("failed: {error:#}"),
                    };
                    rows.push(Row::missing(BENCH, &figure, why));
                    break;
                }
            }
        }
        if runs.len() < ctx.expensive_runs() {
            continue;
        }
        raw.insert(what.into(), json!(runs));
        let counted = runs.iter().all(|r| r.served.iter().all(Option::is_some));
        let source = match counted {
            true => "by grid_blob_bytes_served_total; the workers' own count agrees",
            false => {
                "by the workers (new files in the native caches, the tabs' own figure): \
                 the coordinator has no grid_blob_bytes_served_total yet"
            }
        };
        let agree = runs
            .iter()
            .all(|r| (0..2).all(|k| r.served[k].is_none_or(|s| s == r.fetched[k])));
        let source = match agree {
            true => source.to_string(),
            false => format!(
                "by grid_blob_bytes_served_total; the workers count {} and {} MiB",
                each(&runs, |r| format!(
                    "{:.0}",
                    r.fetched[0] as f64 / MIB as f64
                )),
                each(&runs, |r| format!(
                    "{:.0}",
                    r.fetched[1] as f64 / MIB as f64
                )),
            ),
        };
        for k in 0..2 {
            let mib: Vec<f64> = runs
                .iter()
                .map(|r| r.bytes(k) as f64 / MIB as f64)
                .collect();
            let per_task: Vec<f64> = runs
                .iter()
                .map(|r| r.bytes(k) as f64 / 1024.0 / SHARED_TASKS as f64)
                .collect();
            let (label, goal) = match (k, tabs) {
                (0, _) => ("job 1", caches as f64 * (FILE_BYTES / MIB) as f64),
                (_, false) => ("job 2, workers restarted on their caches", 0.0),
                (_, true) => ("job 2, natives restarted, tabs reloaded", 0.0),
            };
            rows.push(
                Row::new(
                    BENCH,
                    &format!("{figure}: blob MiB served, {label}"),
                    "MiB",
                    &mib,
                )
                .goal(Goal::AtMost(goal))
                .note(format!(
                    "whole-file fetches {}; tasks done {}; counted {source}; {}",
                    each(&runs, |r| format!(
                        "{:.2}",
                        r.bytes(k) as f64 / FILE_BYTES as f64
                    )),
                    each(&runs, |r| format!("({})", r.tasks[k])),
                    load_note(&loads)
                )),
            );
            rows.push(
                Row::new(
                    BENCH,
                    &format!("{figure}: blob bytes per task, {label}"),
                    "KiB/task",
                    &per_task,
                )
                .note("the file sent with every task would be 65,536 KiB a task"),
            );
        }
    }
    ctx.raw
        .insert("data_shared_file".into(), Value::Object(raw));
    Ok(rows)
}

// ---- 2. blob serving -------------------------------------------------------

/// The SHA-256 of `len` bytes of `Noise::new(seed)`, by `sha256sum`, the
/// bytes piped to it a piece at a time.
fn digest_of_stream(seed: u64, len: u64) -> anyhow::Result<ContentDigest> {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("run sha256sum")?;
    {
        let mut stdin = child.stdin.take().context("sha256sum's stdin")?;
        let mut noise = Noise::new(seed);
        let mut piece = vec![0u8; PIECE];
        let mut left = len;
        while left > 0 {
            let n = left.min(PIECE as u64) as usize;
            noise.fill(&mut piece[..n]);
            stdin.write_all(&piece[..n])?;
            left -= n as u64;
        }
    }
    let output = child.wait_with_output()?;
    ensure!(output.status.success(), "sha256sum failed");
    let text = String::from_utf8_lossy(&output.stdout);
    let hex = text.split_whitespace().next().unwrap_or_default();
    ContentDigest::from_hex(hex).with_context(|| format!("sha256sum printed {text:?}"))
}

/// Uploads `len` bytes of `Noise::new(seed)` with one `PUT
/// /api/blobs/sha256:...`, written to the socket a piece at a time.
async fn upload(base: &str, seed: u64, len: u64) -> anyhow::Result<ContentDigest> {
    let digest = tokio::task::spawn_blocking(move || digest_of_stream(seed, len)).await??;
    let addr = base.strip_prefix("http://").context("an http:// URL")?;
    let mut socket = tokio::net::TcpStream::connect(addr).await?;
    let head = format!(
        "PUT /api/blobs/{digest} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {len}\r\n\
         Connection: close\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await?;
    let mut noise = Noise::new(seed);
    let mut piece = vec![0u8; PIECE];
    let mut left = len;
    let mut sent = Ok(());
    while left > 0 {
        let n = left.min(PIECE as u64) as usize;
        noise.fill(&mut piece[..n]);
        if let Err(error) = socket.write_all(&piece[..n]).await {
            // The answer may say why the coordinator stopped reading.
            sent = Err(error);
            break;
        }
        left -= n as u64;
    }
    let mut answer = Vec::new();
    socket.read_to_end(&mut answer).await?;
    let answer = String::from_utf8_lossy(&answer);
    let status: u16 = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("PUT {digest}: no HTTP status in {answer:?}"))?;
    ensure!(
        status == 200 || status == 201,
        "PUT {digest}: {}",
        answer.lines().next().unwrap_or_default()
    );
    sent.context("the upload broke off")?;
    Ok(digest)
}

/// Reads a blob whole: its length. With `check`, compares every byte with
/// `Noise::new(check)` as it arrives.
async fn download(http: &reqwest::Client, url: &str, check: Option<u64>) -> anyhow::Result<u64> {
    let mut response = http.get(url).bearer_auth(TOKEN).send().await?;
    ensure!(
        response.status().is_success(),
        "GET {url}: {}",
        response.status()
    );
    let mut noise = check.map(Noise::new);
    let mut want = vec![0u8; 64 * 1024];
    let mut at = want.len();
    let mut n = 0u64;
    while let Some(chunk) = response.chunk().await? {
        if let Some(noise) = &mut noise {
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                if at == want.len() {
                    noise.fill(&mut want);
                    at = 0;
                }
                let k = rest.len().min(want.len() - at);
                ensure!(
                    rest[..k] == want[at..at + k],
                    "GET {url}: byte {} and on differ from what was uploaded",
                    n
                );
                rest = &rest[k..];
                at += k;
                n += k as u64;
            }
        } else {
            n += chunk.len() as u64;
        }
    }
    Ok(n)
}

/// A line of `/proc/PID/status`, in KiB (`VmRSS`, `VmHWM`).
fn status_kib(pid: u32, key: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no {key} in /proc/{pid}/status"))
}

/// Drops a file's pages from the page cache (GNU dd's `iflag=nocache`) and
/// says how many bytes of it `fincore` still finds resident.
fn evict(path: &Path) -> anyhow::Result<u64> {
    let dropped = Command::new("dd")
        .arg(format!("if={}", path.display()))
        .args(["iflag=nocache", "count=0", "status=none"])
        .status()?;
    ensure!(dropped.success(), "dd iflag=nocache failed");
    let resident = Command::new("fincore")
        .args(["--bytes", "--noheadings", "--output", "RES"])
        .arg(path)
        .output()?;
    String::from_utf8_lossy(&resident.stdout)
        .trim()
        .parse()
        .context("fincore's answer")
}

/// What the coordinator's memory did while it served many downloads.
#[derive(Debug)]
struct Crowd {
    before_kib: u64,
    samples_kib: Vec<u64>,
    /// VmHWM, reset just before the downloads (None: it could not be).
    peak_kib: Option<u64>,
    wall_s: f64,
}

impl Crowd {
    fn highest_kib(&self) -> u64 {
        self.samples_kib.iter().copied().max().unwrap_or(0)
    }

    /// The peak: VmHWM if it was reset, else the highest sample.
    fn peak_or_highest_kib(&self) -> u64 {
        self.peak_kib.unwrap_or_else(|| self.highest_kib())
    }
}

async fn crowd(
    coordinator: &Coordinator,
    http: &reqwest::Client,
    url: &str,
    size: u64,
) -> anyhow::Result<Crowd> {
    let pid = coordinator.pid;
    // Writing 5 to clear_refs resets the peak resident set (Linux 4.0+).
    let reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before_kib = env::rss_kib(pid)?;
    let (stop, mut stopping) = tokio::sync::watch::channel(false);
    let sampler = tokio::spawn(async move {
        let mut samples = Vec::new();
        loop {
            if let Ok(kib) = env::rss_kib(pid) {
                samples.push(kib);
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                _ = stopping.changed() => break,
            }
        }
        samples
    });
    let started = Instant::now();
    let mut downloads = tokio::task::JoinSet::new();
    for _ in 0..DOWNLOADS {
        let (http, url) = (http.clone(), url.to_string());
        downloads.spawn(async move { download(&http, &url, None).await });
    }
    let mut outcome = Ok(());
    while let Some(done) = downloads.join_next().await {
        match done.map_err(anyhow::Error::from).and_then(|r| r) {
            Ok(n) if n == size => {}
            Ok(n) => outcome = Err(anyhow::anyhow!("a download got {n} of {size} bytes")),
            Err(error) => outcome = Err(error),
        }
    }
    let wall_s = started.elapsed().as_secs_f64();
    let _ = stop.send(true);
    let samples_kib = sampler.await?;
    outcome?;
    let peak_kib = if reset {
        Some(status_kib(pid, "VmHWM")?)
    } else {
        None
    };
    Ok(Crowd {
        before_kib,
        samples_kib,
        peak_kib,
        wall_s,
    })
}

fn mib_of_kib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// How fast the disk itself reads `path` (`dd iflag=direct`, past the page
/// cache), MB/s.
fn disk_read_mb_s(path: &Path) -> anyhow::Result<f64> {
    let started = Instant::now();
    let read = Command::new("dd")
        .arg(format!("if={}", path.display()))
        .args(["of=/dev/null", "bs=4M", "iflag=direct", "status=none"])
        .status()?;
    ensure!(read.success(), "dd iflag=direct failed");
    Ok(std::fs::metadata(path)?.len() as f64 / 1e6 / started.elapsed().as_secs_f64())
}

async fn serving(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    // A client like the CLI's (rustls for https; the coordinator is http).
    let tls = grid_worker_native::tls::client_config(None)?;
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured((*tls).clone())
        .build()?;
    let coordinator = Coordinator::start(&ctx.grid, &[]).await?;
    let blobs_dir = coordinator.dir.path().join("data").join("blobs");
    // Both uploaded first, so that both crowds find the coordinator alike.
    let mut blobs = Vec::new();
    for (size, seed, what) in [(FILE_BYTES, 21, "64 MiB"), (LARGE_BLOB, 22, "1 GiB")] {
        let digest = upload(&coordinator.url, seed, size).await?;
        let url = format!("{}/api/blobs/{digest}", coordinator.url);
        // Once, untimed, every byte compared with what was uploaded.
        ensure!(download(&http, &url, Some(seed)).await? == size);
        blobs.push((size, what, digest, url));
    }
    let mut rows = Vec::new();
    let mut raw = serde_json::Map::new();
    for (size, what, digest, url) in &blobs {
        let (mut warm, mut cold, mut disk, mut loads) = (vec![], vec![], vec![], vec![]);
        for _ in 0..ctx.expensive_runs() {
            loads.push(env::load_average());
            let started = Instant::now();
            ensure!(download(&http, url, None).await? == *size);
            warm.push(*size as f64 / 1e6 / started.elapsed().as_secs_f64());
        }
        let path = blobs_dir.join(digest.to_string());
        for _ in 0..ctx.expensive_runs() {
            disk.push(disk_read_mb_s(&path)?);
            let resident = evict(&path)?;
            ensure!(
                resident == 0,
                "{resident} bytes of the blob stayed in the page cache"
            );
            let started = Instant::now();
            ensure!(download(&http, url, None).await? == *size);
            cold.push(*size as f64 / 1e6 / started.elapsed().as_secs_f64());
        }
        rows.push(
            Row::new(
                BENCH,
                &format!("serving a {what} blob to one client, from the page cache"),
                "MB/s",
                &warm,
            )
            .note(format!(
                "GET /api/blobs/sha256:... with the token; the client (reqwest, in the bench \
                 process) counts the bytes; {}",
                load_note(&loads)
            )),
        );
        rows.push(
            Row::new(
                BENCH,
                &format!("serving a {what} blob to one client, cold from disk"),
                "MB/s",
                &cold,
            )
            .note(format!(
                "its pages dropped first (dd iflag=nocache; fincore then finds none); the \
                 disk reads the file at {:.0} MB/s (dd iflag=direct bs=4M)",
                env::Stat::of(&disk).map_or(f64::NAN, |s| s.median)
            )),
        );
        raw.insert(
            what.to_string(),
            json!({
                "size": size,
                "digest": digest.to_string(),
                "one_client_warm_mb_s": warm,
                "one_client_cold_mb_s": cold,
                "disk_direct_mb_s": disk,
            }),
        );
    }
    let mut peaks = Vec::new();
    for (size, what, _, url) in &blobs {
        let load = env::load_average();
        let crowd = crowd(&coordinator, &http, url, *size).await?;
        let samples: Vec<f64> = crowd.samples_kib.iter().map(|&k| k as f64).collect();
        let median = env::Stat::of(&samples).map_or(0.0, |s| s.median) / 1024.0;
        let peak = crowd.peak_or_highest_kib();
        rows.push(
            Row::new(
                BENCH,
                &format!(
                    "coordinator VmRSS before {DOWNLOADS} concurrent downloads of the {what} blob"
                ),
                "MiB",
                &[mib_of_kib(crowd.before_kib)],
            )
            .note("idle, both blobs stored; VmHWM reset then"),
        );
        rows.push(
            Row::new(
                BENCH,
                &format!("coordinator peak VmHWM during {DOWNLOADS} concurrent downloads of the {what} blob"),
                "MiB",
                &[mib_of_kib(peak)],
            )
            .note(format!(
                "VmRSS every 20 ms: highest {:.1} MiB, median {median:.1} ({} samples); {:.0} \
                 KiB a download over the idle figure; all {DOWNLOADS} got every byte, in \
                 {:.1} s ({:.0} MB/s together); {}{}",
                mib_of_kib(crowd.highest_kib()),
                crowd.samples_kib.len(),
                peak.saturating_sub(crowd.before_kib) as f64 / DOWNLOADS as f64,
                crowd.wall_s,
                DOWNLOADS as f64 * *size as f64 / 1e6 / crowd.wall_s,
                load_note(&[load]),
                if crowd.peak_kib.is_none() {
                    "; VmHWM could not be reset: the highest sample instead"
                } else {
                    ""
                }
            )),
        );
        peaks.push(peak);
        raw[*what]["crowd"] = json!({
            "before_kib": crowd.before_kib,
            "peak_kib": crowd.peak_kib,
            "samples_kib": crowd.samples_kib,
            "wall_s": crowd.wall_s,
        });
    }
    if let [small, large] = peaks[..] {
        rows.push(
            Row::new(
                BENCH,
                "coordinator peak memory serving 100 downloads, of 1 GiB / of 64 MiB (16x the bytes)",
                "x",
                &[large as f64 / small as f64],
            )
            // A server whose memory followed the blob's size would be 16x.
            .goal(Goal::AtMost(1.25))
            .note("memory that followed the blob's size would be many times more"),
        );
    }
    ctx.raw.insert("data_serving".into(), Value::Object(raw));
    Ok(rows)
}

// ---- 3. locality -----------------------------------------------------------

#[derive(Debug, Serialize)]
struct LocalityRun {
    /// Blob bytes the coordinator served, by its counter.
    served: Option<u64>,
    /// The bytes of the files in the workers' caches at the end.
    fetched: u64,
    /// Which files each worker's cache holds at the end, e.g. `f2+f3`.
    holdings: Vec<String>,
    tasks: String,
    /// From the first submit to the last job done.
    wall_s: f64,
}

impl LocalityRun {
    fn bytes(&self) -> u64 {
        self.served.unwrap_or(self.fetched)
    }
}

async fn locality_run(
    binary: &Path,
    files: &[Vec<u8>],
    jobs: &[SliceJob],
    locality: bool,
) -> anyhow::Result<LocalityRun> {
    let dir = scratch("data-locality-")?;
    let mut rig = Rig::start(binary, &dir.path().join("data"), locality).await;
    rig.caches = (1..=4)
        .map(|i| dir.path().join(format!("cache-{i}")))
        .collect();
    rig.cache_bytes = LOCALITY_QUOTA;
    let outcome = locality_jobs(&mut rig, files, jobs).await;
    rig.shutdown().await;
    outcome
}

async fn locality_jobs(
    rig: &mut Rig,
    files: &[Vec<u8>],
    jobs: &[SliceJob],
) -> anyhow::Result<LocalityRun> {
    let client = rig.grid.client();
    let mut digests = Vec::new();
    for file in files {
        digests.push(client.ensure_blob(file.clone()).await?.0);
    }
    let before = bytes_served(&rig.grid.url).await?;
    // All four jobs are queued before any worker joins: submitted one by
    // one to idle workers, the first would go to all of them at once.
    let started = Instant::now();
    let mut ids = Vec::new();
    for (job, &file) in jobs.iter().zip(&digests) {
        ids.push(job.submit(&client, file).await);
    }
    rig.start_natives()?;
    for (job, &id) in jobs.iter().zip(&ids) {
        wait_done(&client, id).await?;
        job.check(&client, id).await?;
    }
    let wall_s = started.elapsed().as_secs_f64();
    let after = bytes_served(&rig.grid.url).await?;
    let held = census(&rig.caches);
    let holdings = rig
        .caches
        .iter()
        .map(|cache| {
            let names: Vec<String> = (1..)
                .zip(&digests)
                .filter(|(_, d)| held.contains_key(&cache.join(d.to_string())))
                .map(|(f, _)| format!("f{f}"))
                .collect();
            names.join("+")
        })
        .collect();
    Ok(LocalityRun {
        served: before.zip(after).map(|(before, after)| after - before),
        fetched: fetched_into_caches(&Census::new(), &held),
        holdings,
        tasks: tasks_by_worker(&client.workers().await?),
        wall_s,
    })
}

async fn locality(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    slicehash_built()?;
    let files: Vec<Vec<u8>> = (0..LOCALITY_JOBS)
        .map(|f| slices::data(FILE_BYTES as usize, 100 + f))
        .collect();
    let jobs: Vec<SliceJob> = (0..)
        .zip(&files)
        .map(|(f, file)| SliceJob::new(file, LOCALITY_TASKS, 200 + f))
        .collect();
    // Alternating, so that a change in the machine's load falls on both.
    let (mut on, mut off, mut loads) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..ctx.expensive_runs() {
        for locality in [true, false] {
            loads.push(env::load_average());
            let run = locality_run(&ctx.grid, &files, &jobs, locality).await?;
            eprintln!("  locality {locality}, run {}: {run:?}", i + 1);
            match locality {
                true => on.push(run),
                false => off.push(run),
            }
        }
    }
    let source = match on.iter().chain(&off).all(|r| r.served.is_some()) {
        true => "counted by grid_blob_bytes_served_total",
        false => {
            "counted in the workers' caches: the coordinator has no \
             grid_blob_bytes_served_total yet"
        }
    };
    let mib = |runs: &[LocalityRun]| -> Vec<f64> {
        runs.iter().map(|r| r.bytes() as f64 / MIB as f64).collect()
    };
    let describe = |runs: &[LocalityRun]| -> String {
        let run = |r: &LocalityRun| {
            format!(
                "{:.2} fetches in {:.1} s, caches hold {}, tasks done {}",
                r.bytes() as f64 / FILE_BYTES as f64,
                r.wall_s,
                r.holdings.join(", "),
                r.tasks
            )
        };
        runs.iter().map(run).collect::<Vec<_>>().join(" / ")
    };
    let figure = format!(
        "{LOCALITY_JOBS} jobs x {LOCALITY_TASKS} tasks over {LOCALITY_JOBS} files of 64 MiB, \
         4 native workers (256 MiB caches)"
    );
    let ratios: Vec<f64> = on
        .iter()
        .zip(&off)
        .map(|(on, off)| off.bytes() as f64 / on.bytes().max(1) as f64)
        .collect();
    ctx.raw
        .insert("data_locality".into(), json!({ "on": on, "off": off }));
    Ok(vec![
        Row::new(
            BENCH,
            &format!("{figure}: blob MiB served, locality on"),
            "MiB",
            &mib(&on),
        )
        .goal(Goal::AtMost((LOCALITY_JOBS * FILE_BYTES / MIB) as f64))
        .note(format!(
            "{}; {source}; {}",
            describe(&on),
            load_note(&loads)
        )),
        Row::new(
            BENCH,
            &format!("{figure}: blob MiB served, locality off"),
            "MiB",
            &mib(&off),
        )
        .note(describe(&off)),
        Row::new(BENCH, "locality: blob bytes served off / on", "x", &ratios),
    ])
}
