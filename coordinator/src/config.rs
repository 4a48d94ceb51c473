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
