//! The command line's shape: every command, flag and default of `grid`, as
//! clap types. Defaults of `grid serve` come from the coordinator's own
//! [`ServerConfig::default`], so there is one place for each.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use grid_coordinator::ServerConfig;
use grid_coordinator::config::DEFAULT_DATA_DIR;
use grid_kernels::KernelSpec;
use grid_kernels::spec::{HashsearchParams, MandelbrotParams, MonteCarloParams, PrimesParams};
use grid_protocol::api::ExportFormat;

fn defaults() -> ServerConfig {
    ServerConfig::default()
}

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
        #[arg(long, default_value_t = ExportFormat::Json)]
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
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
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
    #[arg(long, default_value_t = defaults().max_connections)]
    pub max_connections: usize,
    /// The most worker connections from one remote address (loopback is not limited).
    #[arg(long, default_value_t = defaults().max_connections_per_address)]
    pub max_connections_per_address: usize,
    /// Messages a worker may send per second before it is disconnected.
    #[arg(long, default_value_t = defaults().max_messages_per_second)]
    pub max_message_rate: f64,
    /// The fraction of results (0 to 1) the coordinator re-computes itself.
    #[arg(long, default_value_t = defaults().verify_rate)]
    pub verify_rate: f64,
    /// Results agreeing with a quorum before a donor is trusted and its
    /// replicated tasks are only spot-checked; 0 turns adaptive replication off.
    #[arg(long, default_value_t = defaults().scheduler.trust_after.unwrap_or(0))]
    pub trust_after: u32,
    /// The fraction (0 to 1) of a trusted donor's tasks that still get every replica.
    #[arg(long, default_value_t = defaults().scheduler.spot_check_rate)]
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
    /// The kernel and params this subcommand names.
    pub fn spec(&self) -> KernelSpec {
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
