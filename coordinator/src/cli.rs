//! The command line: `grid serve`, `grid worker` and the client commands
//! (`submit`, `status`, `jobs`, `watch`, `results`, `cancel`, `workers`).
//!
//! Exit codes: 0 success; 1 an error (unreachable coordinator, refused token,
//! invalid request), with a one-line reason on stderr; 2 a malformed command
//! line; 3 the job failed or was cancelled (`--wait`, `watch`).

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::client::Client;
use crate::store::Durability;
use crate::worker::{self, WorkerOptions};
use crate::{ServerConfig, auth};
use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use grid_kernels::KernelSpec;
use grid_kernels::spec::{HashsearchParams, MandelbrotParams, MonteCarloParams, PrimesParams};
use grid_protocol::api::JobRequest;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use tokio::sync::watch;

/// Parses the command line, sets up logging, runs the command, and turns its
/// outcome into an exit code. The `grid` binary is this function.
pub fn main() -> ExitCode {
    let args = Cli::parse();
    let default_log = if args.command.is_long_running() {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(execute(args)) {
        Ok(code) => code,
        Err(error) => {
            // One line: the error and its causes.
            eprintln!("error: {error:#}");
            ExitCode::from(1)
        }
    }
}

/// The exit code for a job that failed or was cancelled.
const JOB_FAILED: u8 = 3;

#[derive(Debug, Parser)]
#[command(
    name = "grid",
    version,
    about = "browsergrid: a compute grid made of web browsers"
)]
pub struct Cli {
    /// The coordinator's URL.
    #[arg(
        long,
        global = true,
        env = "GRID_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// The API token. Default: the token file under ./grid-data, if present.
    /// For `serve`, replaces the token file.
    #[arg(long, global = true, env = "GRID_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Also trust the certificates in this PEM file, for a coordinator served
    /// over https with a private or self-signed certificate.
    #[arg(long, global = true, env = "GRID_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the coordinator.
    Serve(ServeArgs),
    /// Run a native worker that computes tasks for a coordinator.
    Worker(WorkerArgs),
    /// Submit a job.
    Submit(SubmitArgs),
    /// Show a job's status.
    Status {
        job: u64,
        /// Print the status object as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List jobs.
    Jobs {
        #[arg(long)]
        json: bool,
    },
    /// Follow a job with a progress bar until it finishes.
    Watch { job: u64 },
    /// Download a finished job's result.
    Results {
        job: u64,
        #[arg(long, value_enum, default_value_t = ExportFormat::Json)]
        format: ExportFormat,
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Cancel a job.
    Cancel {
        job: u64,
        #[arg(long)]
        json: bool,
    },
    /// Stop handing out a job's tasks (batches already out finish).
    Pause { job: u64 },
    /// Hand out a paused job's tasks again.
    Resume { job: u64 },
    /// List connected workers.
    Workers {
        #[arg(long)]
        json: bool,
    },
}

impl Command {
    pub fn is_long_running(&self) -> bool {
        matches!(self, Command::Serve(_) | Command::Worker(_))
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Json,
    Csv,
    Png,
}

impl ExportFormat {
    fn name(self) -> &'static str {
        match self {
            ExportFormat::Json => "json",
            ExportFormat::Csv => "csv",
            ExportFormat::Png => "png",
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SyncMode {
    /// fsync every commit (survives power loss).
    Full,
    /// fsync at checkpoints (survives a crash or kill of the process).
    Normal,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Data directory: the SQLite store and the token file.
    #[arg(long, default_value = "./grid-data")]
    pub data: PathBuf,
    /// Also run this many native workers in this process (one thread each).
    #[arg(long, default_value_t = 0)]
    pub local_workers: usize,
    /// Folder of static files served at / (default: the repository's www/).
    #[arg(long)]
    pub www: Option<PathBuf>,
    /// How commits reach the disk.
    #[arg(long, value_enum, default_value_t = SyncMode::Full)]
    pub sync: SyncMode,
    /// The most worker connections at once.
    #[arg(long, default_value_t = 20_000)]
    pub max_connections: usize,
    /// The most worker connections from one remote address (loopback is not limited).
    #[arg(long, default_value_t = 256)]
    pub max_connections_per_address: usize,
    /// Messages a worker may send per second before it is disconnected.
    #[arg(long, default_value_t = 100.0)]
    pub max_message_rate: f64,
    /// The fraction of results (0 to 1) the coordinator re-computes itself.
    #[arg(long, default_value_t = 0.0)]
    pub verify_rate: f64,
    /// Results agreeing with a quorum before a donor is trusted and its
    /// replicated tasks are only spot-checked; 0 turns adaptive replication off.
    #[arg(long, default_value_t = 20)]
    pub trust_after: u32,
    /// The fraction (0 to 1) of a trusted donor's tasks that still get every replica.
    #[arg(long, default_value_t = 0.1)]
    pub spot_check_rate: f64,
    /// Let replicas of a task run on the same remote address (by default they
    /// must come from different addresses; loopback is always allowed).
    #[arg(long)]
    pub same_address_replicas: bool,
    /// Behind a reverse proxy: the header carrying the client address, e.g.
    /// X-Forwarded-For. Only if the proxy always sets it.
    #[arg(long)]
    pub client_address_header: Option<String>,
    /// Serve https:// and wss:// with this PEM certificate chain (with --tls-key).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Compute threads (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// A name shown on the coordinator's worker list.
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SubmitArgs {
    #[command(subcommand)]
    pub kernel: Option<KernelArgs>,
    /// Submit the JSON job request in this file (the body of POST /api/jobs).
    #[arg(long)]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub common: CommonSubmit,
}

#[derive(Debug, Args, Clone)]
pub struct CommonSubmit {
    /// How many tasks to split the job into (default: chosen per kernel).
    #[arg(long, global = true)]
    pub tasks: Option<u32>,
    /// Run every task on this many different workers.
    #[arg(long, global = true)]
    pub redundancy: Option<u32>,
    /// How many of the replicas must agree (default: a majority).
    #[arg(long, global = true)]
    pub quorum: Option<u32>,
    /// Wait for the job to finish, with a progress bar.
    #[arg(long, global = true)]
    pub wait: bool,
    /// Print JSON: the job's id, or with --wait its final status.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum KernelArgs {
    /// Count the primes p with start <= p < end.
    Primes {
        #[arg(long)]
        start: u64,
        #[arg(long)]
        end: u64,
    },
    /// Render escape-time counts of the Mandelbrot set.
    Mandelbrot {
        #[arg(long, default_value_t = 800)]
        width: u32,
        #[arg(long, default_value_t = 600)]
        height: u32,
        #[arg(long, allow_negative_numbers = true, default_value_t = -2.5)]
        x_min: f64,
        #[arg(long, allow_negative_numbers = true, default_value_t = 1.0)]
        x_max: f64,
        #[arg(long, allow_negative_numbers = true, default_value_t = -1.3125)]
        y_min: f64,
        #[arg(long, allow_negative_numbers = true, default_value_t = 1.3125)]
        y_max: f64,
        #[arg(long, default_value_t = 500)]
        max_iter: u32,
    },
    /// Estimate pi from random points in the unit square.
    #[command(name = "montecarlo-pi")]
    MontecarloPi {
        #[arg(long)]
        samples: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Find nonces whose SHA-256 with a prefix has leading zero bits.
    Hashsearch {
        #[arg(long)]
        prefix: String,
        #[arg(long)]
        difficulty: u32,
        #[arg(long, default_value_t = 0)]
        start: u64,
        #[arg(long)]
        end: u64,
    },
}

impl KernelArgs {
    fn spec(&self) -> KernelSpec {
        match self {
            &KernelArgs::Primes { start, end } => KernelSpec::Primes(PrimesParams { start, end }),
            &KernelArgs::Mandelbrot {
                width,
                height,
                x_min,
                x_max,
                y_min,
                y_max,
                max_iter,
            } => KernelSpec::Mandelbrot(MandelbrotParams {
                width,
                height,
                x_min,
                x_max,
                y_min,
                y_max,
                max_iter,
            }),
            &KernelArgs::MontecarloPi { samples, seed } => {
                KernelSpec::MontecarloPi(MonteCarloParams { samples, seed })
            }
            KernelArgs::Hashsearch {
                prefix,
                difficulty,
                start,
                end,
            } => KernelSpec::Hashsearch(HashsearchParams {
                prefix: prefix.clone(),
                difficulty: *difficulty,
                start: *start,
                end: *end,
            }),
        }
    }
}

pub async fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Serve(args) => serve(&cli, args).await,
        Command::Worker(args) => run_worker(&cli, args).await,
        Command::Submit(args) => submit(&client(&cli)?, args).await,
        Command::Status { job, json } => {
            let status = client(&cli)?.status(*job).await?;
            if *json {
                print_json(&status);
            } else {
                print_status(&status);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Jobs { json } => {
            let jobs = client(&cli)?.jobs().await?;
            if *json {
                print_json(&Value::Array(jobs));
            } else {
                print_jobs(&jobs);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Watch { job } => {
            let status = watch_job(&client(&cli)?, *job).await?;
            print_status(&status);
            Ok(exit_for(&status))
        }
        Command::Results {
            job,
            format,
            output,
        } => results(&client(&cli)?, *job, *format, output.as_deref()).await,
        Command::Cancel { job, json } => {
            let status = client(&cli)?.cancel(*job).await?;
            if *json {
                print_json(&status);
            } else {
                println!("job {job} cancelled");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Pause { job } => {
            client(&cli)?.pause(*job).await?;
            println!("job {job} paused");
            Ok(ExitCode::SUCCESS)
        }
        Command::Resume { job } => {
            client(&cli)?.resume(*job).await?;
            println!("job {job} resumed");
            Ok(ExitCode::SUCCESS)
        }
        Command::Workers { json } => {
            let workers = client(&cli)?.workers().await?;
            if *json {
                print_json(&Value::Array(workers));
            } else {
                print_workers(&workers);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The token for client commands: `--token`, `GRID_TOKEN`, or ./grid-data/token.
fn client(cli: &Cli) -> anyhow::Result<Client> {
    let token = cli.token.clone().or_else(|| {
        std::fs::read_to_string(auth::token_path(Path::new("./grid-data")))
            .ok()
            .map(|t| t.trim().to_string())
    });
    Client::with_ca(&cli.url, token, cli.ca_cert.as_deref())
}

async fn serve(cli: &Cli, args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let (token, token_note) = match &cli.token {
        Some(token) if !token.trim().is_empty() => (
            token.trim().to_string(),
            "from --token / GRID_TOKEN".to_string(),
        ),
        Some(_) => bail!("the token must not be empty"),
        None => {
            let (token, created) = auth::load_or_create(&args.data)?;
            let path = auth::token_path(&args.data);
            (
                token,
                format!(
                    "{}{}",
                    path.display(),
                    if created { " (just created)" } else { "" }
                ),
            )
        }
    };
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    let local = listener.local_addr()?;
    let mut config = ServerConfig::new(args.data.clone(), token);
    if let Some(www) = &args.www {
        config.www_dir = www.clone();
    }
    config.durability = match args.sync {
        SyncMode::Full => Durability::Full,
        SyncMode::Normal => Durability::Normal,
    };
    for (name, rate) in [
        ("--verify-rate", args.verify_rate),
        ("--spot-check-rate", args.spot_check_rate),
    ] {
        if !(0.0..=1.0).contains(&rate) {
            bail!("{name} must be between 0 and 1, got {rate}");
        }
    }
    if args.max_message_rate <= 0.0
        || args.max_connections == 0
        || args.max_connections_per_address == 0
    {
        bail!("connection and message limits must be positive");
    }
    config.max_connections = args.max_connections;
    config.max_connections_per_address = args.max_connections_per_address;
    config.max_messages_per_second = args.max_message_rate;
    config.message_burst = args.max_message_rate * 4.0;
    config.verify_rate = args.verify_rate;
    config.scheduler.trust_after = (args.trust_after > 0).then_some(args.trust_after);
    config.scheduler.spot_check_rate = args.spot_check_rate;
    config.distinct_addresses = !args.same_address_replicas;
    config.client_address_header = args.client_address_header.clone();
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        config.tls = Some(crate::tls::acceptor(cert, key)?);
    }
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let base = format!("{scheme}://{local}");
    // Local workers reach the coordinator on loopback; over TLS by the name
    // a development certificate carries, trusting that certificate.
    let (local_url, local_ca) = match &args.tls_cert {
        Some(cert) => (
            format!("https://localhost:{}", local.port()),
            Some(cert.clone()),
        ),
        None => (base.clone(), None),
    };
    let token_for_url = config.token.clone();
    println!("browsergrid coordinator on {base}");
    println!("  donor page     {base}/");
    println!("  dashboard      {base}/dashboard#token={token_for_url}");
    println!("  API token      {token_note}");
    println!(
        "  data           {}",
        args.data.join("grid.sqlite3").display()
    );
    if args.local_workers > 0 {
        println!("  local workers  {}", args.local_workers);
    }
    let _ = std::io::stdout().flush();

    let (stop_workers, stopping) = watch::channel(false);
    let workers: Vec<_> = (0..args.local_workers)
        .map(|i| {
            let options = WorkerOptions {
                url: local_url.clone(),
                threads: 1,
                name: Some(format!("local-{}", i + 1)),
                ca_cert: local_ca.clone(),
            };
            let stopping = stopping.clone();
            tokio::spawn(async move {
                if let Err(error) = worker::run(options, stopping).await {
                    tracing::error!("local worker stopped: {error:#}");
                }
            })
        })
        .collect();
    // On a signal the local workers leave first (handing back their tasks),
    // then the coordinator closes.
    let signal = async move {
        crate::shutdown_signal().await;
        let _ = stop_workers.send(true);
        for worker in workers {
            let _ = tokio::time::timeout(Duration::from_secs(2), worker).await;
        }
    };
    crate::run(listener, config, signal).await?;
    Ok(ExitCode::SUCCESS)
}

async fn run_worker(cli: &Cli, args: &WorkerArgs) -> anyhow::Result<ExitCode> {
    let threads = match args.threads {
        Some(0) => bail!("--threads must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let options = WorkerOptions {
        url: cli.url.clone(),
        threads,
        name: args.name.clone(),
        ca_cert: cli.ca_cert.clone(),
    };
    worker::socket_url(&options.url)?;
    let (stop, stopping) = watch::channel(false);
    tokio::spawn(async move {
        crate::shutdown_signal().await;
        let _ = stop.send(true);
    });
    eprintln!("grid worker: {threads} thread(s), coordinator {}", cli.url);
    worker::run(options, stopping).await?;
    Ok(ExitCode::SUCCESS)
}

async fn submit(client: &Client, args: &SubmitArgs) -> anyhow::Result<ExitCode> {
    let mut request = match (&args.kernel, &args.file) {
        (Some(kernel), None) => JobRequest::new(kernel.spec()),
        (None, Some(file)) => {
            let body =
                std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            JobRequest::decode(&body)
                .with_context(|| format!("{} is not a job request", file.display()))?
        }
        (None, None) => bail!(
            "name a kernel (primes, mandelbrot, montecarlo-pi, hashsearch) or pass --file job.json"
        ),
        (Some(_), Some(_)) => bail!("pass either a kernel or --file, not both"),
    };
    // Command-line flags override the file.
    let common = &args.common;
    request.tasks = common.tasks.or(request.tasks);
    request.redundancy = common.redundancy.or(request.redundancy);
    request.quorum = common.quorum.or(request.quorum);
    let status = client.submit(&request).await?;
    let id = status
        .get("id")
        .and_then(Value::as_u64)
        .context("the coordinator's answer has no job id")?;
    if !args.common.wait {
        if args.common.json {
            print_json(&status);
        } else {
            println!("submitted job {id}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !args.common.json {
        eprintln!("submitted job {id}");
    }
    let status = watch_job(client, id).await?;
    if args.common.json {
        print_json(&status);
    } else {
        print_status(&status);
    }
    Ok(exit_for(&status))
}

fn exit_for(status: &Value) -> ExitCode {
    match status.get("state").and_then(Value::as_str) {
        Some("done") => ExitCode::SUCCESS,
        Some(state) => {
            let error = status.get("error").and_then(Value::as_str).unwrap_or("");
            eprintln!(
                "error: job {} {state}{}{error}",
                status["id"],
                if error.is_empty() { "" } else { ": " }
            );
            ExitCode::from(JOB_FAILED)
        }
        None => ExitCode::from(1),
    }
}

fn is_finished(status: &Value) -> bool {
    matches!(
        status.get("state").and_then(Value::as_str),
        Some("done" | "failed" | "cancelled")
    )
}

/// Polls a job until it finishes, drawing a progress bar on a terminal.
async fn watch_job(client: &Client, job: u64) -> anyhow::Result<Value> {
    let mut status = client.status(job).await?;
    let total = status["tasks"]["total"].as_u64().unwrap_or(0);
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{spinner} job {prefix} [{bar:32.cyan/blue}] {pos}/{len} tasks {percent}%  {per_sec}  ETA {eta}  {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("{job} {}", status["kernel"].as_str().unwrap_or("")));
    bar.enable_steady_tick(Duration::from_millis(120));
    let mut failures = 0;
    loop {
        bar.set_position(status["tasks"]["done"].as_u64().unwrap_or(0));
        bar.set_message(status["state"].as_str().unwrap_or("").to_string());
        if is_finished(&status) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        match client.status(job).await {
            Ok(next) => {
                status = next;
                failures = 0;
            }
            // Ride out a coordinator restart.
            Err(error) if failures < 120 => {
                failures += 1;
                bar.set_message(format!("waiting for the coordinator: {error}"));
            }
            Err(error) => return Err(error),
        }
    }
    bar.finish_and_clear();
    Ok(status)
}

async fn results(
    client: &Client,
    job: u64,
    format: ExportFormat,
    output: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let bytes = client.results(job, format.name()).await?;
    match output {
        Some(path) => {
            std::fs::write(path, &bytes)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {} ({} bytes)", path.display(), bytes.len());
        }
        None => {
            if matches!(format, ExportFormat::Png) && std::io::stdout().is_terminal() {
                bail!("a PNG is binary; write it to a file with -o FILE");
            }
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&bytes)?;
            if matches!(format, ExportFormat::Json) {
                stdout.write_all(b"\n")?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("JSON values print")
    );
}

fn seconds(ms: Option<u64>) -> String {
    ms.map_or_else(|| "-".into(), |ms| format!("{:.2} s", ms as f64 / 1000.0))
}

fn result_text(status: &Value) -> String {
    let result = &status["result"];
    if result.is_null() {
        return status["error"]
            .as_str()
            .map_or_else(|| "-".into(), |e| format!("error: {e}"));
    }
    match status["kernel"].as_str() {
        Some("primes") => format!("{} primes", result["count"]),
        Some("montecarlo-pi") => format!(
            "pi ~ {} ({} of {} inside)",
            result["estimate"], result["inside"], result["samples"]
        ),
        Some("hashsearch") => {
            let nonces = result["nonces"].as_array().map_or(0, Vec::len);
            format!("{nonces} nonces")
        }
        Some("mandelbrot") => format!(
            "{}x{} image (grid results {} --format png -o image.png)",
            result["width"], result["height"], status["id"]
        ),
        _ => result.to_string(),
    }
}

fn print_status(status: &Value) {
    println!(
        "job {}  {}  {}",
        status["id"],
        status["kernel"].as_str().unwrap_or("?"),
        status["state"].as_str().unwrap_or("?")
    );
    let (done, total) = (
        status["tasks"]["done"].as_u64().unwrap_or(0),
        status["tasks"]["total"].as_u64().unwrap_or(0),
    );
    println!("  tasks    {done}/{total}");
    println!("  elapsed  {}", seconds(status["elapsed_ms"].as_u64()));
    println!("  result   {}", result_text(status));
}

fn print_jobs(jobs: &[Value]) {
    if jobs.is_empty() {
        println!("no jobs");
        return;
    }
    println!(
        "{:>5}  {:<14} {:<10} {:>17}  {:>10}  RESULT",
        "ID", "KERNEL", "STATE", "TASKS", "ELAPSED"
    );
    for job in jobs {
        println!(
            "{:>5}  {:<14} {:<10} {:>17}  {:>10}  {}",
            job["id"].to_string(),
            job["kernel"].as_str().unwrap_or("?"),
            job["state"].as_str().unwrap_or("?"),
            format!("{}/{}", job["tasks"]["done"], job["tasks"]["total"]),
            seconds(job["elapsed_ms"].as_u64()),
            result_text(job),
        );
    }
}

fn print_workers(workers: &[Value]) {
    if workers.is_empty() {
        println!("no workers connected");
        return;
    }
    println!(
        "{:>5}  {:<8} {:>7}  {:>10}  NAME",
        "ID", "KIND", "THREADS", "TASKS DONE"
    );
    for w in workers {
        println!(
            "{:>5}  {:<8} {:>7}  {:>10}  {}",
            w["id"].to_string(),
            w["kind"].as_str().unwrap_or("?"),
            w["threads"].to_string(),
            w["tasks_done"].to_string(),
            w["name"].as_str().unwrap_or("")
        );
    }
}
