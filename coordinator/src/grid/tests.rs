//! The grid driven directly, without sockets: interleavings that the network
//! makes possible but rare, replayed deterministically.

use super::*;
use grid_kernels::spec::PrimesParams;
use grid_protocol::{PROTOCOL_VERSION, TaskResult};

async fn open_grid(dir: &std::path::Path) -> Arc<Grid> {
    let mut config = ServerConfig::new(dir.to_path_buf(), "token".into());
    config.durability = crate::store::Durability::Normal;
    Grid::open(config).await.expect("the grid opens")
}

/// A worker admitted by the grid, with the receiving end of its outbox.
fn join(grid: &Grid, threads: u32) -> (Arc<WorkerConn>, mpsc::Receiver<Outbound>) {
    let (outbox, queue) = mpsc::channel(64);
    let hello = Hello {
        protocol: PROTOCOL_VERSION,
        kind: WorkerKind::Native,
        threads,
        name: None,
        session: None,
    };
    let worker = grid
        .register_worker(hello, None, outbox)
        .expect("the worker is admitted");
    (worker, queue)
}

fn primes_job(tasks: u32) -> JobRequest {
    JobRequest {
        tasks: Some(tasks),
        ..JobRequest::new(KernelSpec::Primes(PrimesParams { start: 0, end: 1000 }))
    }
}

/// A frame claiming task 0 of `batch` holds 25 primes (right for [0, 100)).
fn frame(batch: u64) -> ResultsFrame {
    ResultsFrame {
        batch,
        results: vec![TaskResult {
            task: 0,
            output: Bytes::copy_from_slice(&25u64.to_le_bytes()),
        }],
    }
}

/// A worker sends results for a batch id that does not exist yet (ids are
/// predictable); before the frame is recorded, dispatch grants that very id to
/// the same worker. The frame was looked up as unknown, so its outputs were
/// never checked: it must be refused, and nothing may panic under a lock.
#[tokio::test]
async fn results_for_a_batch_granted_while_the_frame_was_in_flight_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let grid = open_grid(dir.path()).await;
    let (worker, mut queue) = join(&grid, 1);
    let predicted = (grid.epoch << 32) + 1;

    let frame = frame(predicted);
    let resolved = grid
        .resolve_frame(&worker, &frame)
        .expect("not quarantined");
    // The interleaving: a job arrives and its first batch goes to this worker.
    grid.submit(primes_job(10))
        .await
        .expect("the job is accepted");
    let granted = loop {
        match queue.recv().await.expect("the worker's outbox") {
            Outbound::Text(text) => match CoordinatorMessage::decode(&text).unwrap() {
                CoordinatorMessage::Batch(batch) => break batch,
                _ => continue,
            },
            Outbound::Close(code, reason) => panic!("closed: {code:?} {reason}"),
        }
    };
    assert_eq!(granted.batch, predicted, "the grid grants the predicted id");

    let checked = grid
        .check_frame(&worker, &resolved, frame)
        .await
        .expect("nothing to check");
    let outcome = grid
        .record_frame(&worker, predicted, resolved, checked)
        .await
        .expect("the store works");
    assert_eq!(
        outcome,
        FrameOutcome {
            accepted: 0,
            duplicate: 0,
            rejected: 1
        }
    );
    // The scheduler lock is usable, and the job's tasks are all still to do.
    assert_eq!(grid.scheduler().progress(granted.job), Some((0, 10)));
    assert_eq!(grid.job_status(granted.job).unwrap().tasks.done, 0);
}

/// A panic while a lock is held (a bug, in some connection's task) costs that
/// task only: the next caller still gets the lock, and the grid goes on.
#[tokio::test]
async fn a_panic_under_the_scheduler_lock_does_not_stop_the_grid() {
    let dir = tempfile::tempdir().unwrap();
    let grid = open_grid(dir.path()).await;
    let victim = grid.clone();
    let panicked = std::thread::spawn(move || {
        let _scheduler = victim.scheduler();
        let _job = victim.jobs.len();
        panic!("a bug while holding the scheduler lock");
    })
    .join();
    assert!(panicked.is_err(), "the thread panicked");

    let (_worker, mut queue) = join(&grid, 1);
    let status = grid
        .submit(primes_job(4))
        .await
        .expect("the job is accepted");
    let batch = loop {
        if let Outbound::Text(text) = queue.recv().await.expect("the outbox") {
            if let CoordinatorMessage::Batch(batch) = CoordinatorMessage::decode(&text).unwrap() {
                break batch;
            }
        }
    };
    assert_eq!(batch.job, status.id);
    assert!(grid.metrics().contains("grid_tasks_issued_total"));
}
