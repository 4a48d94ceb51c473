//! The command line's shape: every command, flag and default of `grid`, as
//! clap types. Defaults of `grid serve` come from the coordinator's own
//! [`ServerConfig::default`], so there is one place for each.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

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
    /// List jobs, newest first, a page at a time (a line on stderr says how
    /// to get the next page).
    Jobs {
        #[arg(long)]
        json: bool,
        /// At most this many jobs (1 to 1000).
        #[arg(long, default_value_t = grid_protocol::api::JobQuery::DEFAULT_LIMIT,
              value_parser = clap::value_parser!(u32).range(1..=i64::from(grid_protocol::api::JobQuery::MAX_LIMIT)))]
        limit: u32,
        /// Only jobs with an id below this one (the next page).
        #[arg(long, value_name = "ID")]
        before: Option<u64>,
        /// Only jobs in these states, e.g. running or done,failed.
        #[arg(long, value_name = "STATE[,STATE...]", value_delimiter = ',', value_parser = job_state)]
        state: Vec<grid_protocol::api::JobState>,
    },
    /// Follow a job with a progress bar until it finishes.
    Watch { job: u64 },
    /// Download a finished job's result.
    Results {
        job: u64,
        #[arg(long, default_value_t = ExportFormat::Json)]
        format: ExportFormat,
        /// Write to this file instead of standard output (for a wasm job in
        /// JSON: a directory of each task's stdout, and index.json).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Export a job being rechecked anyway (some answers may still
        /// change); without it, such a job exits 4 and writes nothing.
        #[arg(long)]
        allow_partial: bool,
    },
    /// Cancel a job.
    Cancel {
        job: u64,
        #[arg(long)]
        json: bool,
    },
    /// Delete a finished (done, failed or cancelled) job and its results;
    /// the blobs it used are kept for the retention period, then swept
    /// unless another job uses them.
    Rm {
        job: u64,
        /// Export the job's results to this file first (as `grid results
        /// -o FILE`); the job is removed only if that succeeded.
        #[arg(long, value_name = "FILE")]
        export: Option<PathBuf>,
        /// The export's format.
        #[arg(long, default_value_t = ExportFormat::Json, requires = "export")]
        format: ExportFormat,
    },
    /// Upload, list and delete blobs (modules, input and mounted files).
    Blob {
        #[command(subcommand)]
        command: BlobCommand,
    },
    /// Add, list and remove users (admins only).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Tokens: `grid token rotate NAME` gives a user a new token (the old
    /// one stops working at once). Admins rotate anyone's, users their own.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Print the audit trail: who did what (admins only), oldest first.
    Audit {
        /// Entries of the last SPAN only (7d, 12h, 30m).
        #[arg(long)]
        since: Option<Span>,
        #[arg(long)]
        json: bool,
    },
    /// Stop handing out a job's tasks (batches already out finish).
    Pause { job: u64 },
    /// Hand out a paused job's tasks again.
    Resume { job: u64 },
    /// List connected workers by id, a page at a time.
    Workers {
        #[arg(long)]
        json: bool,
        /// At most this many workers (1 to 10000).
        #[arg(long, default_value_t = grid_protocol::api::WorkerQuery::DEFAULT_LIMIT,
              value_parser = clap::value_parser!(u32).range(1..=i64::from(grid_protocol::api::WorkerQuery::MAX_LIMIT)))]
        limit: u32,
        /// Only workers with an id above this one (the next page).
        #[arg(long, value_name = "ID")]
        after: Option<u64>,
    },
    /// Run one task of a wasm program here, exactly as a worker would (the
    /// same preparation, limits and WASI): stdin in, stdout out. Exits with
    /// the program's exit code, or 3 if it trapped.
    Run(RunArgs),
}

/// `grid blob ...`.
#[derive(Debug, Subcommand)]
pub enum BlobCommand {
    /// Upload files (only those the coordinator lacks) and print each one's
    /// digest on its own line: `D=$(grid blob put big.bin)`.
    Put {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List stored blobs: size, the jobs using each, last use.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Delete blobs no job uses (refused, naming the jobs, for one in use).
    Rm {
        #[arg(required = true)]
        digests: Vec<grid_kernels::ContentDigest>,
    },
}

/// `grid user ...`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user and print its token, once: it is stored hashed and cannot
    /// be shown again (`grid token rotate NAME` makes a new one).
    Add {
        name: String,
        /// May manage users and see and manage every user's jobs.
        #[arg(long)]
        admin: bool,
        /// Its share of the workers against other users' (default 1).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        weight: Option<u32>,
        /// The most jobs it may have queued or running at once.
        #[arg(long)]
        max_running: Option<u32>,
        /// The most bytes of uploads kept for it (e.g. 10G).
        #[arg(long, value_parser = parse_size)]
        max_storage: Option<u64>,
        /// The most tasks of its jobs not yet decided, all jobs together.
        #[arg(long)]
        max_queued: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// List users and their limits.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Remove a user: its token stops working at once (its jobs and uploads
    /// stay, an admin's to see and remove).
    Rm { name: String },
}

/// `grid token ...`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Give user NAME a new token and print it, once.
    Rotate {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

impl Command {
    pub fn is_long_running(&self) -> bool {
        matches!(self, Command::Serve(_) | Command::Worker(_))
    }
}

/// A job state by name, for `grid jobs --state`.
fn job_state(name: &str) -> Result<grid_protocol::api::JobState, String> {
    grid_protocol::api::JobState::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = grid_protocol::api::JobState::ALL
            .iter()
            .map(|s| s.name())
            .collect();
        format!("unknown job state '{name}' (states: {})", names.join(", "))
    })
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
    /// The fraction of results (0 to 1) the coordinator re-computes itself
    /// (wasm tasks too, at their full cost).
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
    /// How long a blob no job uses is kept after its last use (upload, a
    /// job's submission or removal, a download): a number and a unit, s, m,
    /// h or d (90s, 30m, 12h, 7d).
    #[arg(long, default_value_t = Span(defaults().blob_retention))]
    pub blob_retention: Span,
    /// Delete finished jobs (done, failed, cancelled) and their results this
    /// long after they finished (30d, 12h, 45m); by default they are kept
    /// until `grid rm`.
    #[arg(long, value_name = "SPAN")]
    pub keep_finished: Option<Span>,
    /// Serve https:// and wss:// with this PEM certificate chain (with --tls-key).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Who may show the donor page in a frame: the sources of its
    /// Content-Security-Policy frame-ancestors, e.g. 'none', or "'self'
    /// https://example.org" for a site that embeds it. The dashboard may
    /// never be framed.
    #[arg(
        long,
        value_name = "SOURCES",
        default_value_t = defaults().donor_frame_ancestors,
        value_parser = grid_coordinator::api::headers::frame_ancestors
    )]
    pub donor_frame_ancestors: String,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Compute threads (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// A name shown on the coordinator's worker list.
    #[arg(long)]
    pub name: Option<String>,
    /// Keep jobs' files in this directory across restarts (checked again
    /// when read back); without it they are kept in memory only.
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// The most the cache directory may hold (least recently used files go
    /// first), e.g. 512M or 10G.
    #[arg(long, value_name = "SIZE", default_value = "10G", value_parser = parse_size)]
    pub cache_size: u64,
    /// Work only for this user's jobs (repeat, or separate names with
    /// commas, for several); by default anyone's.
    #[arg(long = "for", value_name = "USER", value_delimiter = ',')]
    pub for_users: Vec<String>,
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
    /// Among your jobs, higher runs first (default 0; may be negative).
    #[arg(long, global = true, allow_negative_numbers = true)]
    pub priority: Option<i32>,
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
    /// Run your own WebAssembly program (a WASI preview 1 command) once per
    /// input: each line of --lines, or each file of --inputs, is one task's
    /// stdin; its stdout is the task's result (`grid results JOB -o DIR`).
    Wasm(WasmArgs),
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

/// `grid submit wasm`: the module, where its inputs come from, and its
/// limits (unset ones take the coordinator's defaults).
#[derive(Debug, Args, Clone)]
pub struct WasmArgs {
    /// The program: a .wasm file exporting _start and memory.
    #[arg(long)]
    pub module: PathBuf,
    /// One task per line of this file (the line, without its newline, is
    /// stdin; tasks are named by line number from 0).
    #[arg(long, conflicts_with = "inputs")]
    pub lines: Option<PathBuf>,
    /// One task per file in this directory (in byte order of their names;
    /// the file is stdin, its name the task's).
    #[arg(long)]
    pub inputs: Option<PathBuf>,
    /// The program's arguments (argv[1..]), split at whitespace.
    #[arg(long, allow_hyphen_values = true)]
    pub args: Option<String>,
    /// argv[0] (default: the module's file name).
    #[arg(long)]
    pub name: Option<String>,
    /// What the program does, for donors to read.
    #[arg(long)]
    pub description: Option<String>,
    /// A read-only file every task sees as /data/NAME (repeatable); it is
    /// uploaded once, and workers cache it.
    #[arg(long = "file", value_name = "NAME=PATH", value_parser = parse_mount)]
    pub files: Vec<(String, PathBuf)>,
    #[command(flatten)]
    pub limits: WasmLimitArgs,
}

/// `NAME=PATH`, for `--file`.
pub fn parse_mount(text: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = text
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=PATH, got '{text}'"))?;
    grid_kernels::wasm::check_file_name(name)?;
    if path.is_empty() {
        return Err(format!("no path after '{name}='"));
    }
    Ok((name.to_string(), PathBuf::from(path)))
}

/// A size in bytes: a number, optionally followed by K, M, G or T (powers
/// of 1024), as in `10G`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, shift) = match text.char_indices().last() {
        Some((at, unit)) if unit.is_ascii_alphabetic() => {
            let shift = match unit.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("unknown unit '{unit}' in '{text}' (K, M, G or T)")),
            };
            (&text[..at], shift)
        }
        _ => (text, 0),
    };
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is not a size such as 512M or 10G"))?;
    number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("'{text}' is too large"))
}

/// A wasm task's limits and seed, for `grid submit wasm` and `grid run`
/// alike (unset: the defaults of `WasmLimits::DEFAULT`).
#[derive(Debug, Args, Clone)]
pub struct WasmLimitArgs {
    /// The most fuel (about one unit a WebAssembly instruction) a task may use.
    #[arg(long)]
    pub fuel: Option<u64>,
    /// The most memory a task may have, MiB.
    #[arg(long = "memory")]
    pub memory_mib: Option<u32>,
    /// The most a task may write to stdout, bytes.
    #[arg(long)]
    pub stdout_bytes: Option<u32>,
    /// Keys every task's random_get stream.
    #[arg(long)]
    pub seed: Option<u64>,
}

/// `grid run`: one task of a wasm program, here, as a worker would run it.
#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// The program: a .wasm file exporting _start and memory.
    pub module: PathBuf,
    /// Its arguments (argv[1..]).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// argv[0] (default: the module's file name).
    #[arg(long)]
    pub name: Option<String>,
    /// The task's index, which keys its random_get stream.
    #[arg(long, default_value_t = 0)]
    pub task: u32,
    /// A read-only file the task sees as /data/NAME (repeatable).
    #[arg(long = "file", value_name = "NAME=PATH", value_parser = parse_mount)]
    pub files: Vec<(String, PathBuf)>,
    #[command(flatten)]
    pub limits: WasmLimitArgs,
}

impl KernelArgs {
    /// The kernel and params this subcommand names; `None` for `wasm`,
    /// whose module and inputs must be uploaded first.
    pub fn spec(&self) -> Option<KernelSpec> {
        Some(match self {
            KernelArgs::Wasm(_) => return None,
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
        })
    }
}

/// A duration on the command line: a whole number and a unit, `s`, `m`, `h`
/// or `d` (`90s`, `30m`, `12h`, `7d`); printed in the largest unit that
/// divides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span(pub Duration);

const UNITS: [(&str, u64); 4] = [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)];

impl FromStr for Span {
    type Err = String;

    fn from_str(text: &str) -> Result<Span, String> {
        let bad = || {
            format!("'{text}' is not a duration: write a number and s, m, h or d (7d, 12h, 90s)")
        };
        let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (number, unit) = text.split_at(split);
        let number: u64 = number.parse().map_err(|_| bad())?;
        let seconds = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, seconds)| *seconds)
            .ok_or_else(bad)?;
        let total = number.checked_mul(seconds).ok_or_else(bad)?;
        if total == 0 {
            return Err(format!("'{text}': a duration must be at least 1s"));
        }
        Ok(Span(Duration::from_secs(total)))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.0.as_secs();
        let (unit, size) = UNITS
            .iter()
            .find(|(_, size)| seconds > 0 && seconds.is_multiple_of(*size))
            .copied()
            .unwrap_or(("s", 1));
        write!(f, "{}{unit}", seconds / size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_mounts_parse_or_say_why_not() {
        assert_eq!(parse_size("1073741824"), Ok(1 << 30));
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("4K"), Ok(4096));
        for bad in ["", "G", "10X", "-1G", "1.5G", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_mount("scene.bin=/tmp/a=b.bin"),
            Ok(("scene.bin".into(), PathBuf::from("/tmp/a=b.bin")))
        );
        for bad in ["scene.bin", "=x", "a/b=x", "..=x", "name="] {
            assert!(parse_mount(bad).is_err(), "{bad:?}");
        }
        let cli = Cli::try_parse_from([
            "grid",
            "worker",
            "--cache",
            "/var/cache/grid",
            "--cache-size",
            "2G",
        ])
        .unwrap();
        let Command::Worker(args) = cli.command else {
            panic!("not a worker")
        };
        assert_eq!(
            (args.cache, args.cache_size),
            (Some(PathBuf::from("/var/cache/grid")), 2 << 30)
        );
    }

    #[test]
    fn spans_read_and_print_in_the_largest_unit() {
        for (text, seconds, printed) in [
            ("7d", 604_800, "7d"),
            ("36h", 129_600, "36h"),
            ("48h", 172_800, "2d"),
            ("90s", 90, "90s"),
            ("120s", 120, "2m"),
            ("1s", 1, "1s"),
        ] {
            let span: Span = text.parse().unwrap();
            assert_eq!(span.0, Duration::from_secs(seconds), "{text}");
            assert_eq!(span.to_string(), printed, "{text}");
        }
        for bad in [
            "",
            "7",
            "d",
            "7w",
            "1.5h",
            "-1s",
            "0s",
            " 7d",
            "99999999999999999999d",
        ] {
            assert!(bad.parse::<Span>().is_err(), "{bad:?}");
        }
        assert_eq!(
            Span(ServerConfig::default().blob_retention).to_string(),
            "7d"
        );
    }

    #[test]
    fn the_command_line_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["grid", "serve", "--blob-retention", "1s"]).unwrap();
        let Command::Serve(serve) = cli.command else {
            panic!("{cli:?}")
        };
        assert_eq!(serve.blob_retention.0, Duration::from_secs(1));
        let cli = Cli::try_parse_from(["grid", "blob", "rm", "sha1:abc"]);
        assert!(cli.is_err(), "a digest is checked on the command line");
    }
}
