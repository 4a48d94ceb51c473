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
            uploaded: None,
            digest_only: None,
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
    grid.submit(&grid.first_admin(), primes_job(10))
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
    assert_eq!(
        grid.job_status(&grid.first_admin(), granted.job)
            .unwrap()
            .tasks
            .done,
        0
    );
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
        .submit(&grid.first_admin(), primes_job(4))
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
    grid.submit(&grid.first_admin(), primes_job(10))
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
            uploaded: None,
            digest_only: None,
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
    grid.submit(&grid.first_admin(), primes_job(10))
        .await
        .expect("the job is accepted");
    let batch = next_batch(&mut queue).await;
    grid.quarantine(worker.donor, "caught by a test".into())
        .await;
    let right = ResultsFrame {
        batch: batch.batch,
        results: vec![TaskResult {
            uploaded: None,
            digest_only: None,
            task: 0,
            output: Bytes::copy_from_slice(&25u64.to_le_bytes()),
        }],
    };
    let outcome = grid.on_results(&worker, right).await.unwrap();
    assert_eq!(outcome.rejected, 1, "{outcome:?}");
    assert_eq!(
        grid.job_status(&grid.first_admin(), batch.job)
            .unwrap()
            .tasks
            .done,
        0
    );
}

/// Outputs of `batch`'s tasks as the kernel computes them: in full, or as
/// digests where the batch says so.
fn honest_frame(batch: &Batch, digests: bool) -> ResultsFrame {
    let mut runner = grid_kernels::TaskRunner::new();
    let mut builder = grid_protocol::frame::ResultsFrameBuilder::new(batch.batch);
    for task in batch.tasks.iter() {
        let output = runner.run(&batch.spec, batch.job_tasks, task).unwrap();
        let bytes = output.to_bytes();
        let told = batch.digest_only.as_ref().is_some_and(|d| d.contains(task));
        if digests && told {
            builder.push_digest(
                task,
                grid_protocol::DigestOnly {
                    digest: digest(&bytes),
                    len: bytes.len() as u32,
                    fuel: 0,
                },
            );
        } else {
            builder.push_bytes(task, &bytes);
        }
    }
    ResultsFrame::decode(&builder.finish()).unwrap()
}

fn mandelbrot_job(tasks: u32, redundancy: u32, quorum: u32) -> JobRequest {
    JobRequest {
        tasks: Some(tasks),
        redundancy: Some(redundancy),
        quorum: Some(quorum),
        ..JobRequest::new(KernelSpec::Mandelbrot(
            grid_kernels::spec::MandelbrotParams {
                width: 64,
                height: 40,
                max_iter: 50,
                x_min: -2.0,
                x_max: 1.0,
                y_min: -1.0,
                y_max: 1.0,
            },
        ))
    }
}

/// At redundancy 2 the first replica sends its outputs and the second only
/// their digests; the job's answer is the one computed alone.
#[tokio::test]
async fn the_second_replica_sends_digests_and_the_answer_is_whole() {
    let dir = tempfile::tempdir().unwrap();
    let grid = open_grid(dir.path()).await;
    let (first, mut first_queue) = join(&grid, 4);
    let (second, mut second_queue) = join(&grid, 4);
    let job = grid
        .submit(&grid.first_admin(), mandelbrot_job(4, 2, 2))
        .await
        .unwrap()
        .id;
    let a = next_batch(&mut first_queue).await;
    let b = next_batch(&mut second_queue).await;
    assert_eq!(a.tasks, b.tasks);
    assert_eq!(a.digest_only, None, "the first replica sends in full");
    assert_eq!(
        b.digest_only.as_ref(),
        Some(&b.tasks),
        "the second, digests"
    );

    // A digest where the output was asked for is refused, whole.
    let cheat = honest_frame(&b, true);
    let mut wrong = cheat.clone();
    wrong.batch = a.batch;
    // (digests first: the second replica's arrive before the first's bytes)
    let outcome = grid.on_results(&second, cheat).await.unwrap();
    assert_eq!(outcome.accepted, 4, "{outcome:?}");
    assert_eq!(
        grid.job_status(&grid.first_admin(), job)
            .unwrap()
            .tasks
            .done,
        0,
        "not decided yet"
    );
    let outcome = grid
        .on_results(&first, honest_frame(&a, false))
        .await
        .unwrap();
    assert_eq!(outcome.accepted, 4, "{outcome:?}");
    let status = grid.job_status(&grid.first_admin(), job).unwrap();
    assert_eq!(status.state, JobState::Done, "{status:?}");
    let saved = grid.counters.replica_bytes_saved.load(Ordering::Relaxed);
    let full: u64 = a
        .tasks
        .iter()
        .map(|t| {
            let mut runner = grid_kernels::TaskRunner::new();
            runner
                .run(&a.spec, a.job_tasks, t)
                .unwrap()
                .to_bytes()
                .len() as u64
        })
        .sum();
    assert_eq!(saved, full - 4 * 52);
    assert!(grid.on_results(&first, wrong).await.is_ok());
}

/// At redundancy 3, quorum 2, a liar sends the full output: the two honest
/// replicas agree by digest, and the coordinator, lacking their bytes, asks
/// for them again before it decides; the answer is the honest one.
#[tokio::test]
async fn digests_that_outvote_the_full_output_get_their_bytes_sent() {
    let dir = tempfile::tempdir().unwrap();
    let grid = open_grid(dir.path()).await;
    let (liar, mut liar_queue) = join(&grid, 1);
    let job = grid
        .submit(&grid.first_admin(), mandelbrot_job(1, 3, 2))
        .await
        .unwrap()
        .id;
    let a = next_batch(&mut liar_queue).await;
    assert_eq!(a.digest_only, None);
    let mut lie = honest_frame(&a, false);
    let mut bytes = lie.results[0].output.to_vec();
    bytes[4] ^= 1;
    lie.results[0].output = Bytes::from(bytes);
    assert_eq!(grid.on_results(&liar, lie).await.unwrap().accepted, 1);
    let (b_worker, mut b_queue) = join(&grid, 1);
    let (c_worker, mut c_queue) = join(&grid, 1);
    grid.dispatch();
    let b = next_batch(&mut b_queue).await;
    let c = next_batch(&mut c_queue).await;
    assert!(b.digest_only.is_some() && c.digest_only.is_some());
    grid.on_results(&b_worker, honest_frame(&b, true))
        .await
        .unwrap();
    grid.on_results(&c_worker, honest_frame(&c, true))
        .await
        .unwrap();
    // Decided by two digests, without bytes (the liar is quarantined for
    // its dissent): the task is open again, and one replica of it, the
    // first granted, sends in full.
    assert_ne!(
        grid.job_status(&grid.first_admin(), job).unwrap().state,
        JobState::Done
    );
    let b = next_batch(&mut b_queue).await;
    let c = next_batch(&mut c_queue).await;
    assert_eq!(
        [b.digest_only.is_none(), c.digest_only.is_none()]
            .iter()
            .filter(|full| **full)
            .count(),
        1,
        "one of them is asked for the output"
    );
    let d = if b.digest_only.is_none() {
        b.clone()
    } else {
        c.clone()
    };
    grid.on_results(&b_worker, honest_frame(&b, true))
        .await
        .unwrap();
    grid.on_results(&c_worker, honest_frame(&c, true))
        .await
        .unwrap();
    let status = grid.job_status(&grid.first_admin(), job).unwrap();
    assert_eq!(status.state, JobState::Done, "{status:?}");
    let mut runner = grid_kernels::TaskRunner::new();
    let right = runner.run(&d.spec, d.job_tasks, 0).unwrap().to_bytes();
    let (store, id) = (grid.store.clone(), job);
    let stored = tokio::task::spawn_blocking(move || store.result_output(id, 0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.as_deref(), Some(&right[..]));
}

/// Two workers answering in turn, batch after batch: every task's output
/// crosses once in full, and its second replica, if any, as a digest (once
/// the donors are trusted, most tasks are decided by one replica alone).
#[tokio::test]
async fn each_task_is_sent_in_full_once_while_leases_hold() {
    let dir = tempfile::tempdir().unwrap();
    let grid = open_grid(dir.path()).await;
    let (a, mut a_queue) = join(&grid, 2);
    let (b, mut b_queue) = join(&grid, 2);
    let job = grid
        .submit(&grid.first_admin(), mandelbrot_job(40, 2, 2))
        .await
        .unwrap()
        .id;
    let (mut full, mut digests) = (0, 0);
    let mut queues = [(a, &mut a_queue), (b, &mut b_queue)];
    let mut pending: [Vec<Batch>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..400 {
        if grid.job_status(&grid.first_admin(), job).unwrap().state == JobState::Done {
            break;
        }
        for (i, (worker, queue)) in queues.iter_mut().enumerate() {
            while let Ok(Outbound::Text(text)) = queue.try_recv() {
                if let Ok(CoordinatorMessage::Batch(batch)) = CoordinatorMessage::decode(&text) {
                    pending[i].push(batch);
                }
            }
            if pending[i].is_empty() {
                continue;
            }
            let batch = pending[i].remove(0);
            let frame = honest_frame(&batch, true);
            for result in &frame.results {
                if result.digest_only.is_some() {
                    digests += 1;
                } else {
                    full += 1;
                }
            }
            grid.on_results(worker, frame).await.unwrap();
        }
    }
    assert_eq!(
        grid.job_status(&grid.first_admin(), job).unwrap().state,
        JobState::Done
    );
    assert_eq!(full, 40, "each task once in full");
    let solo = grid.scheduler().counters().tasks_solo;
    assert_eq!(digests, 40 - solo, "every second replica a digest");
    assert!(digests >= 20, "{digests}");
}

/// Trust a donor earned survives a restart, as quarantine does; a donor
/// quarantined after it earned trust is not trusted again.
#[tokio::test]
async fn earned_trust_survives_a_restart_unless_the_donor_was_quarantined_since() {
    let dir = tempfile::tempdir().unwrap();
    let grid = open_grid(dir.path()).await;
    let _ = grid.apply_effects(vec![
        Effect::Trusted { donor: 42 },
        Effect::Trusted { donor: 43 },
    ]);
    grid.quarantine(43, "lied later".into()).await;
    grid.store.flush().await.unwrap();
    drop(grid);
    let grid = open_grid(dir.path()).await;
    assert!(grid.scheduler().standing(42).trusted);
    assert!(!grid.scheduler().standing(43).trusted);
    assert!(grid.scheduler().standing(43).quarantined);
    assert!(!grid.scheduler().standing(44).trusted, "never earned");
}
