//! The coordinator's settings and their defaults, in one place:
//! [`ServerConfig::default`] is what `grid serve` uses for every flag left
//! out, and what its `--help` prints.

use std::path::PathBuf;
use std::time::Duration;

use grid_scheduler::SchedulerConfig;

use crate::store::Durability;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where the SQLite store and the token file live.
    pub data_dir: PathBuf,
    /// The bearer token for the job API; [`crate::run`] refuses an empty one.
    pub token: String,
    /// The static files served at `/` (the donor page).
    pub www_dir: PathBuf,
    pub durability: Durability,
    pub scheduler: SchedulerConfig,
    /// How often each side sends a heartbeat when otherwise quiet.
    pub heartbeat: Duration,
    /// A worker that sends nothing for this long is disconnected.
    pub idle_timeout: Duration,
    /// A worker must say hello within this long of connecting.
    pub hello_timeout: Duration,
    /// After sending a close frame, how long to read (and discard) what the
    /// peer still sends, waiting for its close frame, before dropping the
    /// socket: dropping it with unread input makes the kernel answer with a
    /// reset, and the peer may never see the close code.
    pub close_linger: Duration,
    /// The most worker connections at once.
    pub max_connections: usize,
    /// The most worker connections from one remote address (loopback is
    /// not limited).
    pub max_connections_per_address: usize,
    /// Messages queued for one worker's socket before it counts as not
    /// reading (a batch sent to a full queue goes to someone else).
    pub worker_outbox: usize,
    /// The most monitor (dashboard) connections at once.
    pub max_monitors: usize,
    /// The largest frame a monitor client may send (it only listens).
    pub max_monitor_frame_bytes: usize,
    /// How often job progress is pushed to monitors; throughput and worker
    /// figures go every fourth tick.
    pub monitor_tick: Duration,
    /// The largest HTTP request body (blob uploads excepted).
    pub max_body_bytes: u64,
    /// The largest blob (`PUT /api/blobs/...`): a module or an input file.
    pub max_blob_bytes: u64,
    /// How long an uploaded blob that no stored job uses is kept after its
    /// last use (see `grid::blobs`); a blob some job uses is always kept.
    pub blob_retention: Duration,
    /// How long a finished job (done, failed, cancelled) is kept after it
    /// finished, results and all (see `grid::history`); `None` keeps
    /// every job until `grid rm`.
    pub keep_finished: Option<Duration>,
    /// How often leases are checked and idle workers offered work.
    pub tick: Duration,
    /// How long shutdown waits for connections to close and for the HTTP
    /// server to stop.
    pub drain_timeout: Duration,
    /// The most replicas a job may ask for.
    pub max_redundancy: u32,
    /// Messages a worker may send per second, on average...
    pub max_messages_per_second: f64,
    /// ...and in a burst.
    pub message_burst: f64,
    /// Results for tasks never leased a worker may send before its donor is
    /// quarantined.
    pub max_rejected_results: u64,
    /// The fraction of results the coordinator re-computes itself.
    pub verify_rate: f64,
    /// Replicas of a task go to different remote addresses (loopback
    /// excepted), not only different connections and browser tabs.
    pub distinct_addresses: bool,
    /// Behind a reverse proxy: the header holding the client's address
    /// (e.g. X-Forwarded-For; its first entry is used). Only set this when
    /// the proxy overwrites the header, or clients could choose their address.
    pub client_address_header: Option<String>,
    /// Serve HTTPS and WSS with this certificate (see [`crate::tls::acceptor`]).
    pub tls: Option<crate::tls::ServerTls>,
    /// Who may show the donor page in a frame: the sources of its
    /// Content-Security-Policy `frame-ancestors` (checked by
    /// [`crate::api::headers::frame_ancestors`]). The dashboard may never be
    /// framed.
    pub donor_frame_ancestors: String,
}

/// The data directory when none is named.
pub const DEFAULT_DATA_DIR: &str = "./grid-data";

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            token: String::new(),
            www_dir: default_www_dir(),
            durability: Durability::Full,
            scheduler: SchedulerConfig::default(),
            heartbeat: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            hello_timeout: Duration::from_secs(10),
            close_linger: Duration::from_secs(2),
            max_connections: 20_000,
            max_connections_per_address: 256,
            worker_outbox: 64,
            max_monitors: 256,
            max_monitor_frame_bytes: 64 * 1024,
            monitor_tick: Duration::from_millis(250),
            // A wasm job's request lists its input files: about 9,000 fit.
            max_body_bytes: 1024 * 1024,
            max_blob_bytes: 1 << 30,
            blob_retention: Duration::from_secs(7 * 24 * 3600),
            keep_finished: None,
            tick: Duration::from_millis(200),
            drain_timeout: Duration::from_secs(5),
            max_redundancy: 16,
            max_messages_per_second: 100.0,
            message_burst: 400.0,
            max_rejected_results: 64,
            verify_rate: 0.0,
            distinct_addresses: true,
            client_address_header: None,
            tls: None,
            donor_frame_ancestors: "'self'".to_string(),
        }
    }
}

impl ServerConfig {
    /// The defaults, with a data directory and a token.
    pub fn new(data_dir: PathBuf, token: String) -> ServerConfig {
        ServerConfig {
            data_dir,
            token,
            ..ServerConfig::default()
        }
    }

    /// The largest frame a worker may send: a little more than the largest
    /// results frame, so that an oversized one is ours to refuse with a close
    /// code rather than the transport's.
    pub fn max_worker_frame_bytes(&self) -> usize {
        grid_protocol::MAX_RESULTS_FRAME_BYTES + 1024 * 1024
    }
}

/// `./www` when run from a checkout's root, otherwise the `www` folder of the
/// source tree the binary was built from.
pub fn default_www_dir() -> PathBuf {
    let local = PathBuf::from("www");
    if local.join("index.html").is_file() {
        return local;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("www")
}
