//! The dashboard at fleet size (BENCHMARKS.md, "Dashboard at fleet size"):
//! headless Chromium opens the dashboard of a coordinator holding
//! `--workers N` worker connections (default 20,000) that churn
//! (`--churn R` of them leave and come back a second, default 1,000), with
//! two real workers computing a long primes job beside them, so that
//! progress, throughput, worker summaries and joins and leaves all flow.
//! It reports, as figures and never as pass or fail:
//!
//! - first contentful paint (the page's shell) and the moment live data was
//!   first on screen (`live-data-painted`, which the dashboard marks in a
//!   task queued from the frame after it applied its first snapshot), in ms
//!   since navigation;
//! - how long applying the snapshot took (`snapshot`, measured by the page);
//! - the main thread's long tasks (over 50 ms, the Long Tasks API) during a
//!   `--window S` second window of churn (default 30): the longest, how
//!   many, their total;
//! - the same while the full list of connections is fetched and drawn after
//!   a click on "List all connections" (the drill-down).
//!
//! The coordinator runs in this process, beside the connections' client
//! ends and the CDP driver; Chromium is its own processes. All share the
//! machine's cores, so the load average is printed with the figures.
//!
//! cargo run --release -p grid-tests --bin bench_dashboard -- [--workers N] [--churn R] [--window S]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use grid_protocol::{CoordinatorMessage, Hello, PROTOCOL_VERSION, WorkerKind, WorkerMessage};
use grid_tests::browser::TestBrowser;
use grid_tests::{TOKEN, TestGrid, job, primes};
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

struct Options {
    workers: usize,
    churn_per_s: f64,
    window: Duration,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        workers: 20_000,
        churn_per_s: 1_000.0,
        window: Duration::from_secs(30),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--workers" => options.workers = value.parse()?,
            "--churn" => options.churn_per_s = value.parse()?,
            "--window" => options.window = Duration::from_secs(value.parse()?),
            other => bail!("unknown flag {other} (--workers N, --churn R, --window S)"),
        }
    }
    Ok(options)
}

/// Raises this process's open-files limit: both ends of every connection
/// live here.
fn raise_nofile(wanted: u64) {
    let pid = std::process::id().to_string();
    let _ = std::process::Command::new("prlimit")
        .args(["--pid", &pid, &format!("--nofile={wanted}:{wanted}")])
        .status();
}

/// A connection's lifetime in ms: uniform from 0 to twice `mean_ms` (so
/// the churn starts at once), from a small generator seeded per
/// connection.
fn lifetime_ms(seed: &mut u64, mean_ms: f64) -> u64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let unit = (*seed >> 11) as f64 / (1u64 << 53) as f64;
    (mean_ms * 2.0 * unit) as u64
}

/// Churning connections: each says hello, pauses (so it takes no work),
/// stays for a random while, closes, and comes back at once.
struct Swarm {
    stop: watch::Sender<bool>,
    connected: Arc<AtomicUsize>,
    joins: Arc<AtomicU64>,
    failures: Arc<AtomicU64>,
}

impl Swarm {
    fn start(base: &str, n: usize, churn_per_s: f64) -> Swarm {
        let (stop, stopping) = watch::channel(false);
        let connected = Arc::new(AtomicUsize::new(0));
        let joins = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(AtomicU64::new(0));
        // At the rate asked, each connection lives n / rate seconds on average.
        let mean_ms = if churn_per_s > 0.0 {
            n as f64 / churn_per_s * 1000.0
        } else {
            f64::INFINITY
        };
        let gate = Arc::new(Semaphore::new(256));
        let url = format!("{}/ws/worker", base.replacen("http://", "ws://", 1));
        for i in 0..n {
            let (url, gate, mut stopping) = (url.clone(), gate.clone(), stopping.clone());
            let (connected, joins, failures) = (connected.clone(), joins.clone(), failures.clone());
            tokio::spawn(async move {
                let mut seed = i as u64 + 1;
                while !*stopping.borrow() {
                    let permit = gate.clone().acquire_owned().await.expect("open");
                    let joined = join(&url, i).await;
                    drop(permit);
                    let mut socket = match joined {
                        Ok(socket) => socket,
                        Err(_) => {
                            failures.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            continue;
                        }
                    };
                    connected.fetch_add(1, Ordering::Relaxed);
                    joins.fetch_add(1, Ordering::Relaxed);
                    let stay = if mean_ms.is_finite() {
                        Duration::from_millis(lifetime_ms(&mut seed, mean_ms))
                    } else {
                        Duration::MAX
                    };
                    let leave = tokio::time::sleep(stay);
                    tokio::pin!(leave);
                    let mut beat = tokio::time::interval(Duration::from_secs(10));
                    loop {
                        tokio::select! {
                            _ = &mut leave => break,
                            _ = stopping.changed() => break,
                            _ = beat.tick() => {
                                let text = WorkerMessage::Heartbeat {}.encode();
                                if socket.send(Message::text(text)).await.is_err() {
                                    break;
                                }
                            }
                            message = socket.next() => match message {
                                Some(Ok(_)) => {}
                                _ => break,
                            },
                        }
                    }
                    connected.fetch_sub(1, Ordering::Relaxed);
                    // A close waits for the coordinator's; a leaving
                    // browser would not wait long either.
                    let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
                }
            });
        }
        Swarm {
            stop,
            connected,
            joins,
            failures,
        }
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn join(url: &str, i: usize) -> anyhow::Result<Socket> {
    let config = WebSocketConfig::default().read_buffer_size(4096);
    let (mut socket, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
        .await
        .context("open a worker socket")?;
    let hello = Hello {
        holds: Vec::new(),
        for_users: Vec::new(),
        protocol: PROTOCOL_VERSION,
        kind: if i.is_multiple_of(4) {
            WorkerKind::Native
        } else {
            WorkerKind::Browser
        },
        threads: 4,
        name: Some(format!("churn-{i}")),
        // Browser tabs of four connections each.
        session: (!i.is_multiple_of(4)).then(|| format!("tab-{}", i / 4)),
        kernels: None,
    };
    socket
        .send(Message::text(WorkerMessage::Hello(hello).encode()))
        .await?;
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => match CoordinatorMessage::decode(&text)? {
                CoordinatorMessage::Welcome { .. } => break,
                other => bail!("expected a welcome, got {other:?}"),
            },
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => bail!("expected a welcome, got {other:?}"),
        }
    }
    socket
        .send(Message::text(WorkerMessage::Pause {}.encode()))
        .await?;
    Ok(socket)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// Starts collecting the page's long tasks afresh.
const WATCH_LONG_TASKS: &str = "(() => { window.__longTasks = []; \
    if (!window.__longTaskObserver) { \
      window.__longTaskObserver = new PerformanceObserver((list) => { \
        for (const e of list.getEntries()) window.__longTasks.push(e.duration); }); \
      window.__longTaskObserver.observe({ type: 'longtask' }); } \
    return true; })()";

/// [longest, count, total] of the long tasks since [`WATCH_LONG_TASKS`].
const LONG_TASKS: &str = "[window.__longTasks.reduce((a, b) => Math.max(a, b), 0), \
    window.__longTasks.length, window.__longTasks.reduce((a, b) => a + b, 0)]";

/// What the browser side measured.
#[derive(Debug, Default)]
struct Figures {
    fcp_ms: f64,
    live_ms: f64,
    snapshot_ms: f64,
    shown_workers: String,
    longest_ms: f64,
    long_tasks: u64,
    long_total_ms: f64,
    snapshots_in_window: u64,
    list_drawn_s: Option<f64>,
    list_longest_ms: f64,
    list_long_tasks: u64,
}

/// Drives Chromium on `url` (the dashboard with its token): load, then a
/// window of churn, then the drill-down. Runs on a runtime of its own, so
/// that the coordinator and the connections (the other runtime) cannot
/// starve the DevTools connection.
async fn measure(url: String, window: Duration) -> anyhow::Result<Figures> {
    let browser = TestBrowser::launch().await?;
    let page = browser.open(&url).await?;
    page.wait_for(
        "performance.getEntriesByName('live-data-painted').length > 0",
        Duration::from_secs(120),
    )
    .await?;
    let mut figures = Figures::default();
    (figures.fcp_ms, figures.live_ms, figures.snapshot_ms) = page
        .eval(
            "[performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? -1, \
              performance.getEntriesByName('live-data-painted')[0].startTime, \
              performance.getEntriesByName('snapshot')[0].duration]",
        )
        .await?;
    figures.shown_workers = page.text("#worker-count").await?;

    let _: bool = page.eval(WATCH_LONG_TASKS).await?;
    let snapshots_before: u64 = page
        .eval("performance.getEntriesByName('snapshot').length")
        .await?;
    tokio::time::sleep(window).await;
    (
        figures.longest_ms,
        figures.long_tasks,
        figures.long_total_ms,
    ) = page.eval(LONG_TASKS).await?;
    let snapshots: u64 = page
        .eval("performance.getEntriesByName('snapshot').length")
        .await?;
    figures.snapshots_in_window = snapshots - snapshots_before;

    // The drill-down: every connection, fetched and drawn (a small fleet's
    // list is there already, with no button).
    let hidden: bool = page
        .eval("document.querySelector('#list-workers').hidden")
        .await?;
    if !hidden {
        let _: bool = page.eval(WATCH_LONG_TASKS).await?;
        let clicked = tokio::time::Instant::now();
        page.click("#list-workers").await?;
        page.wait_for(
            "document.querySelectorAll('#workers tr').length > 0",
            Duration::from_secs(120),
        )
        .await?;
        figures.list_drawn_s = Some(clicked.elapsed().as_secs_f64());
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (longest, count, _): (f64, u64, f64) = page.eval(LONG_TASKS).await?;
        (figures.list_longest_ms, figures.list_long_tasks) = (longest, count);
    }
    let _ = page.close().await;
    browser.close().await;
    Ok(figures)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let options = options()?;
    raise_nofile((options.workers as u64) * 2 + 4096);
    let dir = tempfile::tempdir()?;
    let grid = TestGrid::start_with(dir.path(), |c| {
        c.max_connections = 1_000_000;
    })
    .await;
    let _worker = grid.worker(2, "native-1");
    let client = grid.client();
    let long_job = client
        .submit(&job(primes(0, 40_000_000_000u64), 400_000))
        .await?
        .id;

    // The fleet: every connection comes and goes, `--churn` a second in
    // all; the page opens once each has joined and nine in ten are in.
    let swarm = Swarm::start(&grid.url, options.workers, options.churn_per_s);
    let started = tokio::time::Instant::now();
    while swarm.joins.load(Ordering::Relaxed) < options.workers as u64
        || swarm.connected.load(Ordering::Relaxed) < options.workers * 9 / 10
    {
        if started.elapsed() > Duration::from_secs(300) {
            bail!(
                "only {} of {} connections after 300 s ({} failures)",
                swarm.connected.load(Ordering::Relaxed),
                options.workers,
                swarm.failures.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "{} connections in {:.1} s",
        swarm.connected.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(5)).await;

    // What the monitor channel carries meanwhile: frames and bytes a
    // second by type, over five seconds, from a plain client.
    let request = grid_tests::monitor_request(
        grid.addr,
        &format!("browsergrid.monitor, {}", grid_tests::TOKEN_PROTOCOL),
    );
    let (mut monitor, _) = tokio_tungstenite::connect_async(request).await?;
    let mut by_type: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    let first = tokio::time::Instant::now();
    while first.elapsed() < Duration::from_secs(5) {
        let Ok(Some(Ok(message))) =
            tokio::time::timeout(Duration::from_secs(1), monitor.next()).await
        else {
            continue;
        };
        let (kind, bytes) = match &message {
            Message::Text(text) => (
                serde_json::from_str::<serde_json::Value>(text)?["type"]
                    .as_str()
                    .unwrap_or("?")
                    .to_string(),
                text.len() as u64,
            ),
            Message::Binary(bytes) => ("tile".to_string(), bytes.len() as u64),
            _ => continue,
        };
        let entry = by_type.entry(kind).or_default();
        entry.0 += 1;
        entry.1 += bytes;
    }
    drop(monitor);
    let channel: Vec<String> = by_type
        .iter()
        .map(|(kind, (n, bytes))| {
            format!(
                "{kind} {:.1}/s {:.1} KiB/s",
                *n as f64 / 5.0,
                *bytes as f64 / 5120.0
            )
        })
        .collect();
    eprintln!("monitor channel: {}", channel.join(", "));

    let load_before = load_average();
    let joins_before = swarm.joins.load(Ordering::Relaxed);
    let measured_at = tokio::time::Instant::now();
    let url = format!("{}/dashboard#token={TOKEN}", grid.url);
    let window = options.window;
    let browser = std::thread::spawn(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(measure(url, window))
    });
    let figures = tokio::task::spawn_blocking(move || browser.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the browser thread panicked"))??;
    let joins = swarm.joins.load(Ordering::Relaxed) - joins_before;
    let load_after = load_average();

    let job_status = client.status(long_job).await?;
    println!(
        "dashboard at fleet size: {} connections open, {:.0} joins a second while measured \
         ({} failed joins in all), job #{long_job} at {} / {} tasks",
        swarm.connected.load(Ordering::Relaxed),
        joins as f64 / measured_at.elapsed().as_secs_f64(),
        swarm.failures.load(Ordering::Relaxed),
        job_status.tasks.done,
        job_status.tasks.total,
    );
    let f = figures;
    println!(
        "  the monitor channel over 5 s (the first frame is the snapshot): {}",
        channel.join(", ")
    );
    println!("  the page showed {} workers", f.shown_workers);
    println!(
        "  first contentful paint: {:.0} ms; live data painted: {:.0} ms; snapshot applied in {:.1} ms (load {load_before})",
        f.fcp_ms, f.live_ms, f.snapshot_ms
    );
    println!(
        "  during {} s of churn: longest main-thread task {:.0} ms, {} tasks over 50 ms, {:.0} ms in them; {} snapshots (load {load_after})",
        options.window.as_secs(),
        f.longest_ms,
        f.long_tasks,
        f.long_total_ms,
        f.snapshots_in_window,
    );
    match f.list_drawn_s {
        Some(s) => println!(
            "  listing every connection: drawn {s:.1} s after the click; longest task {:.0} ms, {} over 50 ms",
            f.list_longest_ms, f.list_long_tasks
        ),
        None => println!("  the list of connections was shown without asking (a small fleet)"),
    }
    let _ = swarm.stop.send(true);
    grid.stop().await;
    Ok(())
}
