//! Helpers for the end-to-end tests: a real coordinator on a loopback port
//! with a temporary data directory, in-process or as a separate process, and
//! native workers attached to it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use grid_coordinator::ServerConfig;
use grid_coordinator::client::Client;
use grid_coordinator::worker::{self, WorkerOptions};
use serde_json::Value;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// The token every test coordinator uses.
pub const TOKEN: &str = "test-token";

/// Logs to the test's output when `RUST_LOG` is set.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A coordinator running in this process on a port-0 listener.
#[derive(Debug)]
pub struct TestGrid {
    pub addr: SocketAddr,
    pub url: String,
    pub data_dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestGrid {
    /// Starts a coordinator on `data_dir` with the default test settings.
    pub async fn start(data_dir: &Path) -> TestGrid {
        TestGrid::start_with(data_dir, |_| {}).await
    }

    /// Starts a coordinator, letting the test adjust its configuration.
    pub async fn start_with(data_dir: &Path, adjust: impl FnOnce(&mut ServerConfig)) -> TestGrid {
        init_logging();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let mut config = ServerConfig::new(data_dir.to_path_buf(), TOKEN.to_string());
        // Tests favour speed over surviving power loss.
        config.durability = grid_coordinator::store::Durability::Normal;
        adjust(&mut config);
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(grid_coordinator::run(listener, config, async move {
            let _ = stopped.await;
        }));
        let url = format!("http://{addr}");
        let grid = TestGrid {
            addr,
            url,
            data_dir: data_dir.to_path_buf(),
            stop: Some(stop),
            server: Some(server),
        };
        grid.wait_healthy().await;
        grid
    }

    async fn wait_healthy(&self) {
        let client = self.client();
        for _ in 0..200 {
            if client.health().await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the coordinator at {} never became healthy", self.url);
    }

    /// A client with the right token.
    pub fn client(&self) -> Client {
        Client::new(&self.url, Some(TOKEN.to_string())).expect("a valid URL")
    }

    /// A native worker with `threads` threads connected to this grid.
    pub fn worker(&self, threads: usize, name: &str) -> TestWorker {
        TestWorker::start(&self.url, threads, name)
    }

    /// Stops the coordinator gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("the server task")
                .expect("the server stops cleanly");
        }
    }
}

/// A native worker running in this process.
#[derive(Debug)]
pub struct TestWorker {
    stop: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl TestWorker {
    pub fn start(url: &str, threads: usize, name: &str) -> TestWorker {
        let (stop, stopping) = watch::channel(false);
        let options = WorkerOptions {
            url: url.to_string(),
            threads,
            name: Some(name.to_string()),
        };
        let task = tokio::spawn(worker::run(options, stopping));
        TestWorker { stop, task }
    }

    /// Asks the worker to hand back its work and leave.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }

    /// Drops the worker's connection at once, without handing anything back.
    pub fn kill(self) {
        self.task.abort();
    }
}

/// The `grid` binary as a child process (killable with SIGKILL).
#[derive(Debug)]
pub struct GridProcess {
    pub child: Child,
    pub url: String,
}

impl GridProcess {
    /// Runs `grid serve` on a free loopback port over `data_dir`.
    pub async fn serve(data_dir: &Path, extra: &[&str]) -> anyhow::Result<GridProcess> {
        let port = free_port()?;
        let url = format!("http://127.0.0.1:{port}");
        let child = Command::new(grid_binary())
            .args(["serve", "--addr", &format!("127.0.0.1:{port}"), "--data"])
            .arg(data_dir)
            .args(["--token", TOKEN])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start grid serve")?;
        let process = GridProcess { child, url };
        let client = process.client();
        for _ in 0..400 {
            if client.health().await.is_ok() {
                return Ok(process);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        bail!("grid serve on {} never became healthy", process.url)
    }

    pub fn client(&self) -> Client {
        Client::new(&self.url, Some(TOKEN.to_string())).expect("a valid URL")
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for GridProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `grid-under-test` binary. Cargo builds it before the integration tests
/// of this package and puts it beside their `deps` folder.
pub fn grid_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("GRID_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let binary = dir.join(format!("grid-under-test{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.is_file(),
        "{} is missing: run the tests with cargo",
        binary.display()
    );
    binary
}

/// A port that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Runs the `grid` command line with the test token and returns (exit code,
/// stdout, stderr).
pub fn grid_cli(url: &str, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(grid_binary())
        .args(["--url", url, "--token", TOKEN])
        .args(args)
        .env_remove("GRID_URL")
        .env_remove("GRID_TOKEN")
        .output()
        .expect("run the grid binary");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Polls a job until it is done, failed or cancelled.
pub async fn wait_for_job(client: &Client, job: u64, timeout: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let status = client.status(job).await.expect("job status");
        if matches!(
            status["state"].as_str(),
            Some("done" | "failed" | "cancelled")
        ) {
            return status;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("job {job} did not finish in {timeout:?}: {status}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
