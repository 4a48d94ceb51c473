//! Helpers for the end-to-end tests: a real coordinator on a loopback port
//! with a temporary data directory, in-process ([`TestGrid`]) or as a separate
//! process ([`GridProcess`]), native workers attached to it ([`TestWorker`]),
//! the `grid` command line ([`grid_cli`]), and polling helpers that wait for a
//! job to reach a state rather than for a fixed time. Everything the API
//! answers is read as its type from `grid_protocol::api`.
//!
//! [`raw`] speaks HTTP and the worker protocol by hand, the way a third-party
//! client would, for tests that send what the typed clients never would.
//!
//! All end-to-end tests run in one process. Browser tests keep both cores
//! busy and time what a page does, so each has the machine to itself
//! ([`browser::exclusive`]); the coordinators of all other tests hold a
//! shared turn while they run ([`TURNS`]).

pub mod browser;
pub mod browser_cache;
pub mod dashboard;
pub mod disk;
pub mod raw;
pub mod sieve;
pub mod slices;

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use grid_cli::client::Client;
use grid_coordinator::ServerConfig;
use grid_kernels::spec::PrimesParams;
use grid_kernels::{KernelSpec, ResultSummary};
use grid_protocol::api::{JobRequest, JobState, JobStatus, WorkerInfo};
use grid_worker_native::{self as worker, WorkerOptions};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// The token every test coordinator uses.
pub const TOKEN: &str = "test-token";

/// [`TOKEN`] as the monitor channel's token subprotocol, in base64url as
/// PROTOCOL.md spells it for this very token.
pub const TOKEN_PROTOCOL: &str = "browsergrid.token.dGVzdC10b2tlbg";

/// An upgrade request for the monitor channel of the coordinator at `addr`
/// that offers `protocols` (`Sec-WebSocket-Protocol`, none if empty), as
/// `tokio_tungstenite::connect_async` takes it.
pub fn monitor_request(
    addr: SocketAddr,
    protocols: &str,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{addr}/ws/monitor")
        .into_client_request()
        .expect("a WebSocket URL");
    if !protocols.is_empty() {
        request.headers_mut().insert(
            "sec-websocket-protocol",
            protocols.parse().expect("a header value"),
        );
    }
    request
}

/// Turns on the machine: a browser test takes it whole (write), every
/// [`TestGrid`] and [`GridProcess`] of other tests a share of it (read), held
/// until the coordinator stops. Fair: a browser test waiting for its turn
/// holds back coordinators that start after it asked, so a test stops one
/// coordinator before it starts the next (as restarts do anyway); starting a
/// second beside the first could wait for ever.
pub(crate) static TURNS: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

type SharedTurn = tokio::sync::RwLockReadGuard<'static, ()>;

/// Logs to the test's output when `RUST_LOG` is set.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A coordinator running in this process on a loopback listener.
#[derive(Debug)]
pub struct TestGrid {
    pub addr: SocketAddr,
    pub url: String,
    pub data_dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    /// None in a browser test, which has the machine to itself.
    _turn: Option<SharedTurn>,
}

impl TestGrid {
    /// Starts a coordinator on `data_dir` with the default test settings.
    pub async fn start(data_dir: &Path) -> TestGrid {
        TestGrid::start_with(data_dir, |_| {}).await
    }

    /// Starts a coordinator on a port-0 listener, letting the test adjust its
    /// configuration.
    pub async fn start_with(data_dir: &Path, adjust: impl FnOnce(&mut ServerConfig)) -> TestGrid {
        TestGrid::start_on(data_dir, 0, adjust).await
    }

    /// Starts a coordinator on a given port, so that a restarted coordinator
    /// is found again by workers that knew the old one (port 0: any port).
    pub async fn start_on(
        data_dir: &Path,
        port: u16,
        adjust: impl FnOnce(&mut ServerConfig),
    ) -> TestGrid {
        let turn = TURNS.read().await;
        TestGrid::launch(data_dir, port, adjust, Some(turn)).await
    }

    /// [`TestGrid::start_on`] for a test that holds a turn already: a
    /// browser test's, which is the whole machine.
    pub(crate) async fn launch(
        data_dir: &Path,
        port: u16,
        adjust: impl FnOnce(&mut ServerConfig),
        turn: Option<SharedTurn>,
    ) -> TestGrid {
        init_logging();
        let listener = bind_loopback(port).await;
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
            _turn: turn,
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

    pub fn port(&self) -> u16 {
        self.addr.port()
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

/// Binds a loopback port. A fixed port that a stopped coordinator held a
/// moment ago may take a little while to be free again.
async fn bind_loopback(port: u16) -> tokio::net::TcpListener {
    let mut attempts = 0;
    loop {
        match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            Ok(listener) => return listener,
            Err(error) if port != 0 && attempts < 200 => {
                attempts += 1;
                tracing::debug!(port, %error, "port busy; retrying");
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Err(error) => panic!("cannot bind 127.0.0.1:{port}: {error}"),
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
        TestWorker::start_cached(url, threads, name, Default::default())
    }

    /// A worker that caches jobs' files as `cache` says.
    pub fn start_cached(
        url: &str,
        threads: usize,
        name: &str,
        cache: worker::CacheOptions,
    ) -> TestWorker {
        let (stop, stopping) = watch::channel(false);
        let options = WorkerOptions {
            cache,
            ca_cert: None,
            url: url.to_string(),
            threads,
            name: Some(name.to_string()),
            for_users: Vec::new(),
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
    pub port: u16,
    _turn: SharedTurn,
}

impl GridProcess {
    /// Runs `grid serve` on a free loopback port over `data_dir`.
    pub async fn serve(data_dir: &Path, extra: &[&str]) -> anyhow::Result<GridProcess> {
        GridProcess::serve_on(data_dir, free_port()?, extra).await
    }

    /// Runs `grid serve` on `port` over `data_dir`. Restarting on the same
    /// port lets workers of the previous process find this one. Its log goes
    /// to `data_dir/serve.log`, appended across restarts.
    pub async fn serve_on(
        data_dir: &Path,
        port: u16,
        extra: &[&str],
    ) -> anyhow::Result<GridProcess> {
        let turn = TURNS.read().await;
        std::fs::create_dir_all(data_dir)?;
        let log = File::options()
            .create(true)
            .append(true)
            .open(data_dir.join("serve.log"))
            .context("open serve.log")?;
        let url = format!("http://127.0.0.1:{port}");
        let child = Command::new(grid_binary())
            .args(["serve", "--addr", &format!("127.0.0.1:{port}"), "--data"])
            .arg(data_dir)
            .args(["--token", TOKEN])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("start grid serve")?;
        let mut process = GridProcess {
            child,
            url,
            port,
            _turn: turn,
        };
        let client = process.client();
        for _ in 0..400 {
            if client.health().await.is_ok() {
                return Ok(process);
            }
            if let Some(status) = process.child.try_wait()? {
                bail!("grid serve on port {port} exited early: {status}");
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
    grid_cli_with(url, Some(TOKEN), args)
}

/// Runs the `grid` command line with `token` (none: no `--token` at all) and
/// returns (exit code, stdout, stderr). The environment cannot leak a URL,
/// a token or a log filter into it.
pub fn grid_cli_with(url: &str, token: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let mut command = Command::new(grid_binary());
    command.args(["--url", url]);
    if let Some(token) = token {
        command.args(["--token", token]);
    }
    let output = command
        .args(args)
        .env_remove("GRID_URL")
        .env_remove("GRID_TOKEN")
        .env_remove("RUST_LOG")
        .output()
        .expect("run the grid binary");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// [`grid_cli`] off the async runtime, so that an in-process coordinator keeps
/// its threads while the command waits on it.
pub async fn grid_cli_async(url: &str, args: &[&str]) -> (i32, String, String) {
    let url = url.to_string();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        grid_cli(&url, &args)
    })
    .await
    .expect("the grid command's thread")
}

/// The coordinator at `url`'s Prometheus text (`GET /metrics`).
pub async fn metrics(url: &str) -> String {
    reqwest::get(format!("{url}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("the metrics text")
}

/// One figure of the coordinator at `url`'s `/metrics`, by its
/// sample's name, labels included: `grid_x_total` or `grid_x_total{a="b"}`.
pub async fn metric(url: &str, name: &str) -> u64 {
    let text = metrics(url).await;
    let prefix = format!("{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}")) as u64
}

/// `grid run ARGS...` (one wasm task, run locally) with `stdin`: (exit
/// code, stdout, stderr).
pub fn grid_run(args: &[&str], stdin: &[u8]) -> (i32, Vec<u8>, String) {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(grid_binary())
        .arg("run")
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the grid binary");
    let mut input = child.stdin.take().expect("a piped stdin");
    // A kernel that does not read all of stdin closes it early: not an error.
    let _ = input.write_all(stdin);
    drop(input);
    let output = child.wait_with_output().expect("the grid binary's output");
    (
        output.status.code().unwrap_or(-1),
        output.stdout,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A job request for `spec` in `tasks` tasks, with the default redundancy.
pub fn job(spec: KernelSpec, tasks: u32) -> JobRequest {
    JobRequest {
        tasks: Some(tasks),
        ..JobRequest::new(spec)
    }
}

/// Count the primes in `start..end`.
pub fn primes(start: u64, end: u64) -> KernelSpec {
    KernelSpec::Primes(PrimesParams { start, end })
}

/// Fails unless `status` is of a primes job that counted `count` primes (a
/// status has a result once its job is done).
#[track_caller]
pub fn assert_primes(status: &JobStatus, count: u64) {
    assert_eq!(
        status.result,
        Some(ResultSummary::Primes { count }),
        "{status:?}"
    );
}

/// Submits a job and returns its id.
pub async fn submit(client: &Client, request: &JobRequest) -> u64 {
    client
        .submit(request)
        .await
        .expect("the job is accepted")
        .id
}

/// Polls a job until `until` holds for its status, and returns that status.
/// Errors reaching the coordinator are ridden out (it may be restarting);
/// the job finishing in another way than `until` wants is a failure.
pub async fn wait_until(
    client: &Client,
    job: u64,
    timeout: Duration,
    what: &str,
    until: impl Fn(&JobStatus) -> bool,
) -> JobStatus {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match client.status(job).await {
            Ok(status) => {
                if until(&status) {
                    return status;
                }
                if matches!(status.state, JobState::Failed | JobState::Cancelled) {
                    panic!("job {job} ended while waiting for {what}: {status:?}");
                }
                format!("{status:?}")
            }
            Err(error) => error.to_string(),
        };
        if tokio::time::Instant::now() > deadline {
            panic!("job {job}: no {what} within {timeout:?}; last seen: {last}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until at least `fraction` of a job's tasks are done, but it is not
/// finished: the moment to interrupt something mid-job.
pub async fn wait_partway(client: &Client, job: u64, fraction: f64) -> JobStatus {
    let status = wait_until(client, job, Duration::from_secs(60), "progress", |s| {
        f64::from(s.tasks.done) >= fraction * f64::from(s.tasks.total) || s.state == JobState::Done
    })
    .await;
    assert_ne!(
        status.state,
        JobState::Done,
        "job {job} finished before it could be interrupted; make it bigger: {status:?}"
    );
    status
}

/// Polls a job until it is done, failed or cancelled.
pub async fn wait_for_job(client: &Client, job: u64, timeout: Duration) -> JobStatus {
    wait_until(client, job, timeout, "end", |s| s.state.is_finished()).await
}

/// Polls the worker list until `until` holds for it.
pub async fn wait_for_workers(
    client: &Client,
    what: &str,
    until: impl Fn(&[WorkerInfo]) -> bool,
) -> Vec<WorkerInfo> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(workers) = client.workers().await {
            if until(&workers) {
                return workers;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("no {what} within 30 s: {workers:?}");
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Worker `id`'s entry in the worker list; failing the test when it is not
/// listed.
pub async fn worker_info(client: &Client, id: u64) -> WorkerInfo {
    let workers = client.workers().await.expect("the worker list");
    match workers.iter().find(|w| w.id == id) {
        Some(worker) => worker.clone(),
        None => panic!("worker {id} is not listed: {workers:?}"),
    }
}

/// The sum of `tasks_done` over a worker list.
pub fn total_tasks_done(workers: &[WorkerInfo]) -> u64 {
    workers.iter().map(|w| w.tasks_done).sum()
}
