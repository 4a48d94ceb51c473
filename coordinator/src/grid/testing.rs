//! What the coordinator's own tests share: a grid on a temporary store, a
//! worker admitted without a socket, the batch it is sent, a small job.

use super::*;
use grid_kernels::spec::PrimesParams;
use grid_protocol::PROTOCOL_VERSION;

/// A grid over a store in `dir`, committing without fsync.
pub(crate) async fn open_grid(dir: &std::path::Path) -> Arc<Grid> {
    open_grid_with(dir, |_| {}).await
}

/// [`open_grid`] with settings adjusted first.
pub(crate) async fn open_grid_with(
    dir: &std::path::Path,
    adjust: impl FnOnce(&mut ServerConfig),
) -> Arc<Grid> {
    let mut config = ServerConfig::new(dir.to_path_buf(), "token".into());
    config.durability = crate::store::Durability::Normal;
    adjust(&mut config);
    Grid::open(config).await.expect("the grid opens")
}

/// A new user `name` with default limits, added by the first admin, as a
/// caller holding its token.
pub(crate) async fn add_user(grid: &Grid, name: &str) -> crate::users::Caller {
    let request = grid_protocol::api::UserRequest {
        name: name.into(),
        admin: false,
        weight: None,
        limits: Default::default(),
    };
    let made = grid
        .add_user(&grid.first_admin(), request)
        .await
        .expect("the user is added");
    grid.authenticate(&made.token).expect("its token works")
}

/// A native worker's hello.
pub(crate) fn native_hello(threads: u32, session: Option<&str>) -> Hello {
    Hello {
        for_users: Vec::new(),
        holds: Vec::new(),
        protocol: PROTOCOL_VERSION,
        kind: WorkerKind::Native,
        threads,
        name: Some("test".into()),
        session: session.map(str::to_string),
        kernels: None,
    }
}

/// A worker admitted by the grid, with the receiving end of its outbox.
pub(crate) fn join(grid: &Grid, threads: u32) -> (Arc<WorkerConn>, mpsc::Receiver<Outbound>) {
    let (outbox, queue) = mpsc::channel(64);
    let worker = grid
        .register_worker(native_hello(threads, None), None, outbox)
        .expect("the worker is admitted");
    (worker, queue)
}

/// The next batch sent to a worker admitted by [`join`].
pub(crate) async fn next_batch(queue: &mut mpsc::Receiver<Outbound>) -> Batch {
    loop {
        match queue.recv().await.expect("the worker's outbox") {
            Outbound::Text(text) => {
                if let CoordinatorMessage::Batch(batch) = CoordinatorMessage::decode(&text).unwrap()
                {
                    return batch;
                }
            }
            Outbound::Close(code, reason) => panic!("closed: {code:?} {reason}"),
        }
    }
}

/// Counting the primes below 1000 in `tasks` tasks (168 in all).
pub(crate) fn primes_job(tasks: u32) -> JobRequest {
    JobRequest {
        tasks: Some(tasks),
        ..JobRequest::new(KernelSpec::Primes(PrimesParams {
            start: 0,
            end: 1000,
        }))
    }
}
