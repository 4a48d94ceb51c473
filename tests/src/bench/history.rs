//! Benchmark 12 (history that does not weigh, issue 14): a store holding
//! 1,000, then 100,000 finished jobs with their results, written through
//! the coordinator's own store (`Store::open`, `insert_job`, `record`,
//! `update_job`: the real schema and write path, not a copy of it). Each job
//! counts the primes below 100,000 in 10 tasks; its outputs and result are
//! the kernel's own, computed once here.
//!
//! For each size, `grid serve` is started on the filled data directory and
//! measured: start-up (from the spawn to the first `/api/health` answer),
//! RSS at rest (3 s later), a first page of `GET /api/jobs` and the oldest
//! job's status (both from the store), and the store's size on disk. Then,
//! in-process, the retention (`Grid::remove_finished_before`, what `grid
//! serve --keep-finished` runs) deletes the older half of the 100,000 and
//! vacuums: its time and the size after. The figure against the goal is
//! RSS at 100,000 over RSS at 1,000 (memory must not grow with history).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use grid_cli::client::Client;
use grid_coordinator::jobs::{JobDefinition, Lifecycle};
use grid_coordinator::store::{Durability, ResultRow, Store};
use grid_kernels::{Collator, ResultSummary, TaskRunner};
use grid_protocol::api::{JobQuery, JobState};

use super::Ctx;
use super::env;
use super::procs::TOKEN;
use super::report::{Goal, Row};

const BENCH: u32 = 12;
const TASKS: u32 = 10;
const SIZES: [usize; 2] = [1_000, 100_000];
/// Jobs written at once (their writes share the writer's group commits).
const IN_FLIGHT: usize = 500;

/// A finished job's definition, its results' bytes and its summary.
struct Template {
    definition: JobDefinition,
    outputs: Vec<Vec<u8>>,
    summary: ResultSummary,
}

fn template() -> anyhow::Result<Template> {
    let spec = grid_tests::primes(0, 100_000);
    let mut runner = TaskRunner::new();
    let mut collator = Collator::new(spec.clone(), TASKS);
    let mut outputs = Vec::new();
    for task in 0..TASKS {
        let output = runner.run(&spec, TASKS, task)?;
        collator.add(task, &output)?;
        outputs.push(output.to_bytes());
    }
    Ok(Template {
        definition: JobDefinition {
            spec,
            tasks: TASKS,
            replication: grid_scheduler::Replication::SINGLE,
            created_at: 0,
            inputs: None,
            owner: grid_coordinator::users::FIRST_ADMIN,
            priority: 0,
        },
        summary: collator.summary(),
        outputs,
    })
}

/// Writes `count` done jobs through the store under `data`; job `i`
/// finished at `base + i` ms. Seconds taken.
async fn fill(data: &Path, count: usize, base: u64) -> anyhow::Result<f64> {
    let template = std::sync::Arc::new(template()?);
    let store = Store::open(data, Durability::Normal)?;
    let started = Instant::now();
    let mut next = 0;
    while next < count {
        let group = (next..(next + IN_FLIGHT).min(count)).map(|i| {
            let (store, template) = (store.clone(), template.clone());
            tokio::spawn(async move {
                let at = base + i as u64;
                let definition = JobDefinition {
                    created_at: at.saturating_sub(1_000),
                    ..template.definition.clone()
                };
                let id = store.insert_job(definition).await?;
                let rows = template
                    .outputs
                    .iter()
                    .enumerate()
                    .map(|(task, output)| ResultRow {
                        job: id,
                        task: task as u32,
                        donor: 1 + (i as u64 % 50),
                        output: output.clone().into(),
                    })
                    .collect();
                store.record(rows, Vec::new()).await?;
                let lifecycle = Lifecycle {
                    state: JobState::Done,
                    started_at: Some(at.saturating_sub(500)),
                    finished_at: Some(at),
                    result: Some(template.summary.clone()),
                    version: 2,
                    ..Lifecycle::queued()
                };
                store.update_job(id, lifecycle).await
            })
        });
        for write in futures_util::future::join_all(group).await {
            write??;
        }
        next += IN_FLIGHT;
    }
    store.flush().await?;
    Ok(started.elapsed().as_secs_f64())
}

/// The store's files on disk (the database, its log and shared memory).
fn store_bytes(data: &Path) -> u64 {
    ["grid.sqlite3", "grid.sqlite3-wal", "grid.sqlite3-shm"]
        .iter()
        .filter_map(|name| std::fs::metadata(data.join(name)).ok())
        .map(|m| m.len())
        .sum()
}

/// What one coordinator start over a filled store measured.
struct Measured {
    startup_ms: f64,
    rss_mib: f64,
    page_ms: f64,
    oldest_ms: f64,
    disk_mib: f64,
}

/// Starts `grid serve` on `data` and measures it (see the header).
async fn measure(grid: &Path, data: &Path, log: &Path) -> anyhow::Result<Measured> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let client = Client::new(&url, Some(TOKEN.to_string()))?;
    let started = Instant::now();
    let mut child = Command::new(grid)
        .args(["serve", "--addr", &format!("127.0.0.1:{port}"), "--data"])
        .arg(data)
        .args(["--token", TOKEN])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .spawn()
        .with_context(|| format!("start {} serve", grid.display()))?;
    let outcome = async {
        loop {
            if client.health().await.is_ok() {
                break;
            }
            if let Some(status) = child.try_wait()? {
                bail!("grid serve exited early ({status}); see {}", log.display());
            }
            if started.elapsed() > Duration::from_secs(300) {
                bail!("grid serve never became healthy");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let startup_ms = started.elapsed().as_secs_f64() * 1e3;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let rss_mib = env::rss_kib(child.id())? as f64 / 1024.0;
        let asked = Instant::now();
        let (page, next) = client.jobs_page(&JobQuery::default()).await?;
        let page_ms = asked.elapsed().as_secs_f64() * 1e3;
        if page.len() != JobQuery::DEFAULT_LIMIT as usize || next.is_none() {
            bail!("the first page has {} jobs", page.len());
        }
        let asked = Instant::now();
        let oldest = client.status(1).await?;
        let oldest_ms = asked.elapsed().as_secs_f64() * 1e3;
        if oldest.state != JobState::Done || oldest.result.is_none() {
            bail!("job 1 is {} without its result", oldest.state);
        }
        Ok(Measured {
            startup_ms,
            rss_mib,
            page_ms,
            oldest_ms,
            disk_mib: store_bytes(data) as f64 / (1 << 20) as f64,
        })
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    outcome
}

pub async fn history(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    let scratch = env::bench_dir().join("scratch");
    std::fs::create_dir_all(&scratch)?;
    let mut rows = Vec::new();
    let mut rss = Vec::new();
    let mut raw = serde_json::Map::new();
    let base = super::unix_ms() - 200_000;
    for count in SIZES {
        let dir = tempfile::Builder::new()
            .prefix("history-")
            .tempdir_in(&scratch)?;
        let data = dir.path().join("data");
        let fill_s = fill(&data, count, base).await?;
        eprintln!("  {count} finished jobs written in {fill_s:.1} s");
        let mut measured = Vec::new();
        for run in 0..ctx.runs.min(3) {
            let m = measure(
                &ctx.grid,
                &data,
                &dir.path().join(format!("serve-{run}.log")),
            )
            .await?;
            eprintln!(
                "  {count} jobs: start-up {:.0} ms, RSS {:.1} MiB, page {:.1} ms, oldest {:.1} ms, store {:.1} MiB",
                m.startup_ms, m.rss_mib, m.page_ms, m.oldest_ms, m.disk_mib
            );
            measured.push(m);
        }
        let each = |f: fn(&Measured) -> f64| measured.iter().map(f).collect::<Vec<f64>>();
        let label = super::report::number(count as f64);
        rows.push(Row::new(
            BENCH,
            &format!("history: start-up until /api/health, {label} finished jobs"),
            "ms",
            &each(|m| m.startup_ms),
        ));
        rows.push(Row::new(
            BENCH,
            &format!("history: coordinator RSS at rest, {label} finished jobs"),
            "MiB",
            &each(|m| m.rss_mib),
        ));
        rows.push(Row::new(
            BENCH,
            &format!("history: GET /api/jobs (first 100), {label} finished jobs"),
            "ms",
            &each(|m| m.page_ms),
        ));
        rows.push(Row::new(
            BENCH,
            &format!("history: status of the oldest job, {label} finished jobs"),
            "ms",
            &each(|m| m.oldest_ms),
        ));
        rows.push(
            Row::new(
                BENCH,
                &format!("history: store on disk, {label} finished jobs"),
                "MiB",
                &each(|m| m.disk_mib),
            )
            .note(format!(
                "{TASKS} primes tasks a job; written through the store in {fill_s:.1} s"
            )),
        );
        rss.push(each(|m| m.rss_mib));
        raw.insert(
            count.to_string(),
            serde_json::json!({
                "fill_s": fill_s,
                "startup_ms": each(|m| m.startup_ms),
                "rss_mib": each(|m| m.rss_mib),
                "page_ms": each(|m| m.page_ms),
                "oldest_ms": each(|m| m.oldest_ms),
                "disk_mib": each(|m| m.disk_mib),
            }),
        );
        if count == SIZES[SIZES.len() - 1] {
            rows.extend(retention(&data, count, base, &mut raw).await?);
        }
    }
    let ratios: Vec<f64> = rss[1]
        .iter()
        .zip(&rss[0])
        .map(|(big, small)| big / small)
        .collect();
    rows.push(
        Row::new(
            BENCH,
            "history: RSS at rest with 100,000 finished jobs / with 1,000",
            "x",
            &ratios,
        )
        .goal(Goal::AtMost(1.1))
        .note("memory must not grow with history"),
    );
    ctx.raw
        .insert("history".into(), serde_json::Value::Object(raw));
    Ok(rows)
}

/// In-process, the retention over the filled store: the older half of the
/// jobs deleted and the file vacuumed, as `--keep-finished` does.
async fn retention(
    data: &Path,
    count: usize,
    base: u64,
    raw: &mut serde_json::Map<String, serde_json::Value>,
) -> anyhow::Result<Vec<Row>> {
    let before = store_bytes(data) as f64 / (1 << 20) as f64;
    let mut config = grid_coordinator::ServerConfig::new(data.to_path_buf(), TOKEN.to_string());
    config.durability = Durability::Full;
    let grid = grid_coordinator::grid::Grid::open(config).await?;
    let started = Instant::now();
    let retained = grid.remove_finished_before(base + count as u64 / 2).await?;
    let seconds = started.elapsed().as_secs_f64();
    grid.store().flush().await?;
    drop(grid);
    let after = store_bytes(data) as f64 / (1 << 20) as f64;
    eprintln!(
        "  retention: {} jobs deleted, {} vacuum steps in {seconds:.1} s; store {before:.1} -> {after:.1} MiB",
        retained.deleted, retained.vacuum_steps
    );
    raw.insert(
        "retention".into(),
        serde_json::json!({
            "deleted": retained.deleted,
            "vacuum_steps": retained.vacuum_steps,
            "seconds": seconds,
            "store_mib_before": before,
            "store_mib_after": after,
        }),
    );
    let label = super::report::number(retained.deleted as f64);
    Ok(vec![
        Row::new(
            BENCH,
            &format!("history: retention deletes {label} finished jobs and vacuums"),
            "s",
            &[seconds],
        )
        .note(format!(
            "groups of 64 jobs, then {} vacuum steps of 1 MiB",
            retained.vacuum_steps
        )),
        Row::new(
            BENCH,
            "history: store on disk after the retention",
            "MiB",
            &[after],
        )
        .note(format!("{before:.1} MiB before")),
    ])
}
