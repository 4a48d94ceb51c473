//! The browsergrid coordinator and its companions, as a library so that tests
//! start the real thing in-process:
//!
//! - [`run`] serves a grid on a bound listener until `shutdown` resolves.
//! - [`grid`] owns the coordinator's state: jobs, workers, dispatch, results.
//! - [`store`] keeps jobs and results durable in SQLite with group commits.
//! - [`api`] (HTTP routes) and [`socket`] (worker and monitor connections)
//!   are the edges; [`monitor`] is the hub that fans events out to
//!   dashboards.
//! - [`export`] renders results as JSON, CSV and PNG.

pub mod api;
pub mod auth;
pub mod blobs;
pub mod clock;
pub mod config;
pub mod export;
pub mod grid;
pub mod inputs;
pub mod jobs;
pub mod metrics;
pub mod monitor;
pub mod replicas;
pub mod server;
pub mod socket;
pub mod store;
pub mod sync;
pub mod tls;
pub mod upgrade;
pub mod users;
pub mod verify;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

pub use config::ServerConfig;
pub use grid::Grid;

/// Serves a grid on `listener` until `shutdown` resolves, then stops
/// accepting, tells every worker it is going away, waits for the connections
/// to end and for the store to settle, and returns.
pub async fn run(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let local = listener.local_addr()?;
    anyhow::ensure!(
        !config.token.trim().is_empty(),
        "the API token must not be empty"
    );
    tls::install_default_provider();
    let grid = Grid::open(config).await?;
    let (stop_connections, stopping) = watch::channel(false);
    let (done, mut all_done) = mpsc::channel::<()>(1);
    let shared = api::Shared {
        grid: grid.clone(),
        shutdown: stopping.clone(),
        connections: Arc::new(Semaphore::new(grid.config().max_connections)),
        monitors: Arc::new(Semaphore::new(grid.config().max_monitors)),
        done,
    };
    let routes = api::routes(shared.clone());

    let ticker = {
        let grid = grid.clone();
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(grid.config().tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut monitor = tokio::time::interval(grid.config().monitor_tick);
            monitor.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut ticks: u64 = 0;
            loop {
                tokio::select! {
                    _ = interval.tick() => grid.tick(),
                    _ = monitor.tick() => {
                        ticks += 1;
                        grid.monitor_tick(ticks.is_multiple_of(4));
                    }
                    _ = stopping.changed() => break,
                }
            }
        })
    };

    let retention = grid.spawn_blob_retention(stopping.clone());
    let history = grid.spawn_job_retention(stopping.clone());

    let (stop_accepting, accept_stopped) = oneshot::channel::<()>();
    let tls = grid.config().tls.clone().map(|t| t.0);
    let server = tokio::spawn(server::serve(listener, tls, routes, async move {
        let _ = accept_stopped.await;
    }));
    tracing::info!(%local, "coordinator ready");

    shutdown.await;
    tracing::info!("shutting down: closing worker connections");
    let _ = stop_connections.send(true);
    grid.close_all_workers();
    let _ = stop_accepting.send(());
    drop(shared);
    let drain = grid.config().drain_timeout;
    if tokio::time::timeout(drain, all_done.recv()).await.is_err() {
        tracing::warn!("some connections did not close in time");
    }
    let _ = ticker.await;
    let _ = retention.await;
    if let Some(history) = history {
        let _ = history.await;
    }
    if tokio::time::timeout(drain, server).await.is_err() {
        tracing::warn!("the HTTP server did not stop in time");
    }
    if let Err(error) = grid.store().flush().await {
        tracing::error!(%error, "the store could not commit its last writes");
    }
    tracing::info!("coordinator stopped");
    Ok(())
}
