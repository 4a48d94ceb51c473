//! The grid under measurement, as child processes of the benchmark: a
//! coordinator (`grid serve` on a loopback port, with a fresh data directory
//! on the real disk so its SQLite commits really reach it) and native workers
//! (`grid worker --threads 1`). Also `perf record` attached to a process.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use grid_cli::client::Client;

use super::env;

/// The API token every benchmark coordinator uses.
pub const TOKEN: &str = "bench-token";

/// The `grid` binary: `--grid PATH`, else `GRID_BIN`, else `grid` beside
/// this executable (both live in `target/release`).
pub fn find_grid_binary(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match explicit {
        Some(path) => path.to_path_buf(),
        None => match std::env::var_os("GRID_BIN") {
            Some(path) => PathBuf::from(path),
            None => std::env::current_exe()?
                .parent()
                .context("the benchmark's folder")?
                .join("grid"),
        },
    };
    if !path.is_file() {
        bail!(
            "{} is missing: build it with `cargo build --release -p grid-cli`",
            path.display()
        );
    }
    Ok(path)
}

/// A port that was free a moment ago.
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// `grid serve` in a fresh data directory. Killed when dropped.
#[derive(Debug)]
pub struct Coordinator {
    child: Child,
    pub url: String,
    pub pid: u32,
    /// Kept for the log and the store until the coordinator is gone.
    pub dir: tempfile::TempDir,
    grid: PathBuf,
}

impl Coordinator {
    /// Starts `grid serve` with the default settings (durable store with
    /// `--sync full`, info logging to `serve.log`) plus `extra`.
    pub async fn start(grid: &Path, extra: &[&str]) -> anyhow::Result<Coordinator> {
        let scratch = env::bench_dir().join("scratch");
        std::fs::create_dir_all(&scratch)?;
        let dir = tempfile::Builder::new()
            .prefix("grid-")
            .tempdir_in(&scratch)
            .context("a scratch data directory")?;
        let port = free_port()?;
        let log = File::create(dir.path().join("serve.log"))?;
        let child = Command::new(grid)
            .args(["serve", "--addr", &format!("127.0.0.1:{port}"), "--data"])
            .arg(dir.path().join("data"))
            .args(["--token", TOKEN])
            .args(extra)
            .env_remove("RUST_LOG")
            .env_remove("GRID_URL")
            .env_remove("GRID_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {} serve", grid.display()))?;
        let pid = child.id();
        let mut coordinator = Coordinator {
            child,
            url: format!("http://127.0.0.1:{port}"),
            pid,
            dir,
            grid: grid.to_path_buf(),
        };
        let client = coordinator.client();
        for _ in 0..400 {
            if client.health().await.is_ok() {
                return Ok(coordinator);
            }
            if let Some(status) = coordinator.child.try_wait()? {
                bail!(
                    "grid serve exited early ({status}); see {}",
                    coordinator.dir.path().join("serve.log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        bail!("grid serve on {} never became healthy", coordinator.url)
    }

    pub fn client(&self) -> Client {
        Client::new(&self.url, Some(TOKEN.to_string())).expect("a valid URL")
    }

    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        env::rss_kib(self.pid)
    }

    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        env::cpu_seconds(self.pid)
    }

    /// Starts `n` native workers (`grid worker --threads 1`) and waits until
    /// the coordinator lists all of them.
    pub async fn start_workers(&self, n: usize) -> anyhow::Result<Workers> {
        let mut children = Vec::new();
        for i in 0..n {
            let log = File::create(self.dir.path().join(format!("worker-{i}.log")))?;
            let child = Command::new(&self.grid)
                .args(["--url", &self.url, "worker", "--threads", "1", "--name"])
                .arg(format!("bench-{i}"))
                .env_remove("RUST_LOG")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("start grid worker")?;
            children.push(child);
        }
        let workers = Workers { children };
        let client = self.client();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let joined = client
                .workers()
                .await
                .map(|list| {
                    list.iter()
                        .filter(|w| w.name.as_ref().is_some_and(|n| n.starts_with("bench-")))
                        .count()
                })
                .unwrap_or(0);
            if joined >= n {
                return Ok(workers);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("only {joined} of {n} workers joined within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Native worker processes. Killed when dropped.
#[derive(Debug)]
pub struct Workers {
    children: Vec<Child>,
}

impl Workers {
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    /// CPU time all of them have used so far, seconds.
    pub fn cpu_seconds(&self) -> f64 {
        self.pids()
            .into_iter()
            .filter_map(|pid| env::cpu_seconds(pid).ok())
            .sum()
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `perf record` sampling one process (CPU clock, DWARF call graphs) into
/// a file, until [`Profiler::stop`].
#[derive(Debug)]
pub struct Profiler {
    child: Child,
    pub output: PathBuf,
}

impl Profiler {
    pub fn attach(pid: u32, output: PathBuf) -> anyhow::Result<Profiler> {
        let child = Command::new("perf")
            .args(["record", "-q", "-e", "cpu-clock", "-F", "1999"])
            .args(["--call-graph", "dwarf,16384", "-p", &pid.to_string(), "-o"])
            .arg(&output)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start perf record (apt-get install linux-perf)")?;
        // perf needs a moment to attach to every thread.
        std::thread::sleep(Duration::from_millis(300));
        Ok(Profiler { child, output })
    }

    /// Stops recording (SIGINT, as perf expects) and waits for the file.
    pub fn stop(mut self) -> anyhow::Result<PathBuf> {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        self.child.wait()?;
        Ok(self.output.clone())
    }
}
