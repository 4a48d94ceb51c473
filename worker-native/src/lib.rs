//! The native worker (`grid worker`, and `grid serve --local-workers`), the
//! twin of `worker-wasm`: the tokio driver of the protocol session
//! ([`WorkerSession`], the same one the browser worker drives) over one
//! WebSocket at a time, and a pool of compute threads that take their tasks
//! from the session.
//!
//! The session decides everything the protocol asks: what to send and when,
//! when a connection is dead (no welcome, or a coordinator gone silent for
//! `idle_timeout_ms`), and whether and when to dial again. This crate only
//! dials, moves frames between the socket and the session, ticks it every
//! `TICK_MS` and runs the kernels:
//!
//! - [`pool`]: the session under one lock, shared with the compute threads.
//! - [`connection`]: dialling, one connection's life, and what comes after.
//! - [`tls`]: the roots a `wss://` coordinator is checked against.
//! - [`wasm`]: users' kernels, fetched, compiled once and run per task.
//! - [`blobs`]: their files and large inputs, fetched under the batch's
//!   capability, checked, and cached in memory and (`--cache`) on disk.

mod blobs;
mod connection;
mod pool;
pub mod tls;
mod wasm;

use std::sync::Arc;

use anyhow::{Context, bail};
use grid_kernels::KernelKind;
use grid_protocol::session::WorkerSession;
use grid_protocol::{Hello, PROTOCOL_VERSION, WORKER_PATH, WorkerKind};
use tokio::sync::watch;

pub use crate::blobs::{BlobCounters, CacheOptions};
use crate::pool::Pool;

/// How a native worker identifies itself and how hard it works.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The coordinator's base URL, `http://host:port` (or `ws://`).
    pub url: String,
    pub threads: usize,
    pub name: Option<String>,
    /// Extra roots to trust for a `wss://` coordinator with a private or
    /// self-signed certificate (see [`tls::client_config`]).
    pub ca_cert: Option<std::path::PathBuf>,
    /// Where jobs' files are cached, and how much.
    pub cache: CacheOptions,
    /// Work only for these users' jobs (by name); empty: anyone's.
    pub for_users: Vec<String>,
}

/// The worker's WebSocket URL for a coordinator base URL.
pub fn socket_url(base: &str) -> anyhow::Result<String> {
    let base = base.trim_end_matches('/');
    let rest = if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if base.starts_with("ws://") || base.starts_with("wss://") {
        base.to_string()
    } else {
        bail!(
            "the coordinator URL must start with http://, https://, ws:// or wss://, got '{base}'"
        );
    };
    Ok(if rest.ends_with(WORKER_PATH) {
        rest
    } else {
        format!("{rest}{WORKER_PATH}")
    })
}

/// Runs a worker until `shutdown` turns true. Connection failures are retried
/// with the session's backoff; a close that says the worker itself is not
/// acceptable (wrong protocol version, quarantined, a bad hello) ends it with
/// an error.
pub async fn run(
    options: WorkerOptions,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let url = socket_url(&options.url)?;
    let tls = tls::client_config(options.ca_cert.as_deref())?;
    let threads = options.threads.max(1);
    let hello = Hello {
        holds: Vec::new(),
        protocol: PROTOCOL_VERSION,
        kind: WorkerKind::Native,
        threads: u32::try_from(threads).context("too many threads")?,
        name: options.name.clone(),
        session: None,
        kernels: Some(KernelKind::ALL.to_vec()),
        for_users: options.for_users.clone(),
    };
    let wasm = Arc::new(wasm::WasmKernels::new(
        grid_protocol::http_base(&url),
        &tls,
        tokio::runtime::Handle::current(),
        &options.cache,
    )?);
    let mut session = WorkerSession::new(hello);
    session.set_holdings(wasm.blobs.holdings());
    let pool = Arc::new(Pool::new(session));
    let threads = pool::start_threads(&pool, &wasm, threads)?;
    let result = connection::drive(&url, &tls, &pool, &mut shutdown).await;
    pool.stop();
    // Threads finish their current task and exit; do not wait on a long one.
    drop(threads);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_urls_follow_the_coordinator_url() {
        assert_eq!(
            socket_url("http://127.0.0.1:8080").unwrap(),
            "ws://127.0.0.1:8080/ws/worker"
        );
        assert_eq!(
            socket_url("https://grid.example/").unwrap(),
            "wss://grid.example/ws/worker"
        );
        assert_eq!(
            socket_url("ws://h:1/ws/worker").unwrap(),
            "ws://h:1/ws/worker"
        );
        assert!(socket_url("ftp://h").is_err());
    }
}
