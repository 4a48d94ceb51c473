//! The coordinator's settings, with the defaults `grid serve` uses.

use std::path::PathBuf;
use std::time::Duration;

use grid_scheduler::SchedulerConfig;

use crate::store::Durability;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where the SQLite store and the token file live.
    pub data_dir: PathBuf,
    /// The bearer token for the job API.
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
    /// The most worker connections at once.
    pub max_connections: usize,
    /// The largest HTTP request body.
    pub max_body_bytes: u64,
    /// How often leases are checked and idle workers offered work.
    pub tick: Duration,
    /// The most replicas a job may ask for.
    pub max_redundancy: u32,
    /// The most worker connections from one remote address (loopback is
    /// not limited).
    pub max_connections_per_address: usize,
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
}

impl ServerConfig {
    pub fn new(data_dir: PathBuf, token: String) -> ServerConfig {
        ServerConfig {
            data_dir,
            token,
            www_dir: default_www_dir(),
            durability: Durability::Full,
            scheduler: SchedulerConfig::default(),
            heartbeat: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            hello_timeout: Duration::from_secs(10),
            max_connections: 20_000,
            max_body_bytes: 64 * 1024,
            tick: Duration::from_millis(200),
            max_redundancy: 16,
            max_connections_per_address: 256,
            max_messages_per_second: 100.0,
            message_burst: 400.0,
            max_rejected_results: 64,
            verify_rate: 0.0,
            distinct_addresses: true,
            client_address_header: None,
            tls: None,
        }
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
