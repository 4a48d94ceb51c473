//! The grid driven directly, without sockets: interleavings that the network
//! makes possible but rare, replayed deterministically.

use super::testing::{join, native_hello, next_batch, open_grid, primes_job};
use super::*;
use grid_protocol::TaskResult;

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
    let granted = next_batch(&mut queue).await;
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
    let batch = next_batch(&mut queue).await;
    assert_eq!(batch.job, status.id);
    assert!(grid.metrics().contains("grid_tasks_issued_total"));
}

/// Donors are machines: an IPv4 peer seen through an IPv6 socket is the same
/// donor as seen through an IPv4 one once the edge canonicalises it, and
/// loopback stays loopback (each connection its own donor).
#[tokio::test]
async fn donors_are_addresses_and_loopback_connections_are_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let grid = open_grid(dir.path()).await;
    let hello = native_hello(1, None);
    let v4: SocketAddr = "192.0.2.7:4000".parse().unwrap();
    let mapped: SocketAddr = "[::ffff:192.0.2.7]:5000".parse().unwrap();
    let canonical = SocketAddr::new(mapped.ip().to_canonical(), mapped.port());
    assert_eq!(
        grid.donor_of(&hello, Some(v4), 1),
        grid.donor_of(&hello, Some(canonical), 2)
    );
    let loopback: SocketAddr = "[::ffff:127.0.0.1]:6000".parse().unwrap();
    let loopback = SocketAddr::new(loopback.ip().to_canonical(), 6000);
    assert_ne!(
        grid.donor_of(&hello, Some(loopback), 3),
        grid.donor_of(&hello, Some(loopback), 4),
        "on loopback, connections without a session are donors of their own"
    );
}

/// A result for a task the worker handed back is not checked: whatever it
/// holds, it is a duplicate, and it cannot get the donor quarantined.
#[tokio::test]
async fn results_for_returned_tasks_are_duplicates_and_never_checked() {
    let dir = tempfile::tempdir().unwrap();
    let grid = open_grid(dir.path()).await;
    let (worker, mut queue) = join(&grid, 2);
    grid.submit(primes_job(10))
        .await
        .expect("the job is accepted");
    let batch = next_batch(&mut queue).await;
    let tasks: Vec<u32> = batch.tasks.iter().collect();
    assert_eq!(tasks.len(), 2, "one task per thread to begin with");
    grid.on_return(&worker, batch.batch, &TaskRanges::from_indices([tasks[1]]));
    // A count larger than the task's range: impossible, were it checked.
    let impossible = ResultsFrame {
        batch: batch.batch,
        results: vec![TaskResult {
            task: tasks[1],
            output: Bytes::copy_from_slice(&u64::MAX.to_le_bytes()),
        }],
    };
    let outcome = grid.on_results(&worker, impossible).await.unwrap();
    assert_eq!(outcome.duplicate, 1, "{outcome:?}");
    assert!(!grid.scheduler().standing(worker.donor).quarantined);
}

/// Once its donor is quarantined, a worker's frames are refused whole and
/// unread, right answers included, until its connection is closed.
#[tokio::test]
async fn a_quarantined_donors_frames_are_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let grid = open_grid(dir.path()).await;
    let (worker, mut queue) = join(&grid, 1);
    grid.submit(primes_job(10))
        .await
        .expect("the job is accepted");
    let batch = next_batch(&mut queue).await;
    grid.quarantine(worker.donor, "caught by a test".into())
        .await;
    let right = ResultsFrame {
        batch: batch.batch,
        results: vec![TaskResult {
            task: 0,
            output: Bytes::copy_from_slice(&25u64.to_le_bytes()),
        }],
    };
    let outcome = grid.on_results(&worker, right).await.unwrap();
    assert_eq!(outcome.rejected, 1, "{outcome:?}");
    assert_eq!(grid.job_status(batch.job).unwrap().tasks.done, 0);
}
