//! Jobs computed by a real grid give the right answers, checked against values
//! known independently of the kernels under test: pi(10^7) from the literature,
//! a prime count from a plain sieve written here, a Mandelbrot image rendered
//! locally, a Monte Carlo count from the reference stream, and hashsearch
//! nonces from SHA-256 computed here. Also replicas: redundancy 2 spreads each
//! task over two workers, and cannot finish with only one.

use std::time::Duration;

use grid_cli::client::Client;
use grid_kernels::spec::{HashsearchParams, MandelbrotParams, MonteCarloParams};
use grid_kernels::{JobResult, KernelSpec, ResultSummary};
use grid_protocol::api::{JobRequest, JobState, JobStatus};
use grid_tests::{
    TestGrid, assert_primes, job, primes, submit, total_tasks_done, wait_for_job, wait_for_workers,
    wait_until,
};
use sha2::{Digest, Sha256};

const JOB_TIMEOUT: Duration = Duration::from_secs(60);

/// The primes in `start..end`, by a sieve of Eratosthenes over the segment
/// written here, independent of the kernel's segmented odd-only sieve.
fn reference_prime_count(start: u64, end: u64) -> u64 {
    let root = (end as f64).sqrt() as u64 + 1;
    let mut small = vec![true; root as usize + 1];
    let mut is_prime = vec![true; (end - start) as usize];
    for p in 2..=root {
        if !small[p as usize] {
            continue;
        }
        for m in (p * p..=root).step_by(p as usize) {
            small[m as usize] = false;
        }
        let first = (p * p).max(start.div_ceil(p) * p);
        for m in (first..end).step_by(p as usize) {
            is_prime[(m - start) as usize] = false;
        }
    }
    (start..end)
        .zip(&is_prime)
        .filter(|&(n, &prime)| prime && n >= 2)
        .count() as u64
}

/// The nonces in `start..end` whose SHA-256 after `prefix` starts with
/// `difficulty` zero bits, by brute force.
fn reference_nonces(prefix: &str, difficulty: u32, start: u64, end: u64) -> Vec<u64> {
    (start..end)
        .filter(|n| {
            let digest = Sha256::digest(format!("{prefix}{n}").as_bytes());
            let bits = u128::from_be_bytes(digest[..16].try_into().unwrap()).leading_zeros();
            bits >= difficulty
        })
        .collect()
}

async fn run(client: &Client, request: &JobRequest) -> JobStatus {
    let id = submit(client, request).await;
    let status = wait_for_job(client, id, JOB_TIMEOUT).await;
    assert_eq!(status.state, JobState::Done, "{status:?}");
    assert_eq!(status.tasks.done, status.tasks.total, "{status:?}");
    status
}

#[test]
fn the_reference_sieve_agrees_with_the_literature() {
    // Guards the guard: pi(10^5) = 9592, and 10^9 + 7 and + 9 are prime.
    assert_eq!(reference_prime_count(0, 100_000), 9592);
    assert_eq!(reference_prime_count(1_000_000_000, 1_000_000_010), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_kernels_give_independently_known_answers() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start(dir.path()).await;
    let a = grid.worker(1, "a");
    let b = grid.worker(1, "b");
    let client = grid.client();

    // primes: pi(10^7) is in every table.
    let status = run(&client, &job(primes(0, 10_000_000), 100)).await;
    assert_primes(&status, 664_579);

    // primes far from zero, against the sieve above.
    let (start, end) = (1_000_000_000u64, 1_001_000_000u64);
    let status = run(&client, &job(primes(start, end), 37)).await;
    assert_primes(&status, reference_prime_count(start, end));

    // mandelbrot: pixel for pixel against a local render.
    let params = MandelbrotParams {
        width: 123,
        height: 77,
        x_min: -2.0,
        x_max: 0.6,
        y_min: -1.2,
        y_max: 1.1,
        max_iter: 300,
    };
    let request = job(KernelSpec::Mandelbrot(params.clone()), 10);
    let id = run(&client, &request).await.id;
    let image = client.result(id).await.unwrap();
    let mut expected = Vec::new();
    grid_kernels::mandelbrot::render_rows(&params, 0, params.height, &mut expected);
    let JobResult::Mandelbrot {
        width: 123,
        height: 77,
        max_iter: 300,
        iterations: pixels,
    } = image
    else {
        panic!("not a 123x77 image of 300 iterations: {image:?}")
    };
    assert_eq!(pixels.len(), expected.len());
    let wrong = pixels.iter().zip(&expected).filter(|(a, b)| a != b).count();
    assert_eq!(wrong, 0, "{wrong} pixels differ from the local render");

    // montecarlo-pi: one seed, one answer, whatever the task count.
    let (seed, samples) = (20_240_917u64, 3_000_001u64);
    let inside = grid_kernels::montecarlo::count_inside(seed, 0, samples);
    for tasks in [3, 64] {
        let request = job(
            KernelSpec::MontecarloPi(MonteCarloParams { samples, seed }),
            tasks,
        );
        let status = run(&client, &request).await;
        let result = client.result(status.id).await.unwrap();
        let expected = (inside, samples, 4.0 * inside as f64 / samples as f64);
        let JobResult::MontecarloPi {
            inside: got_inside,
            samples: got_samples,
            estimate,
        } = result
        else {
            panic!("{tasks} tasks: not a montecarlo-pi result: {result:?}")
        };
        assert_eq!(
            (got_inside, got_samples, estimate),
            expected,
            "{tasks} tasks"
        );
        assert_eq!(
            status.result,
            Some(ResultSummary::MontecarloPi {
                inside: got_inside,
                samples: got_samples,
                estimate
            }),
            "the status shows the same result"
        );
    }

    // hashsearch: every qualifying nonce, and only those, in order.
    let (prefix, difficulty, start, end) = ("browsergrid-e2e/", 11, 5_000u64, 205_000u64);
    let expected = reference_nonces(prefix, difficulty, start, end);
    assert!(expected.len() > 20, "too few nonces to test with");
    let request = job(
        KernelSpec::Hashsearch(HashsearchParams {
            prefix: prefix.into(),
            difficulty,
            start,
            end,
        }),
        23,
    );
    let status = run(&client, &request).await;
    let result = client.result(status.id).await.unwrap();
    assert_eq!(result, JobResult::Hashsearch { nonces: expected });

    a.stop().await;
    b.stop().await;
    grid.stop().await;
}

fn replicated(redundancy: u32, tasks: u32) -> JobRequest {
    JobRequest {
        redundancy: Some(redundancy),
        ..job(primes(0, 10_000_000), tasks)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redundancy_two_puts_each_task_on_two_different_workers() {
    let dir = tempfile::tempdir().unwrap();
    // Every task gets its full quorum: no donor earns the trust that lets it
    // decide tasks alone.
    let grid = TestGrid::start_with(dir.path(), |config| {
        config.scheduler.trust_after = None;
    })
    .await;
    let workers = [
        grid.worker(1, "a"),
        grid.worker(1, "b"),
        grid.worker(1, "c"),
    ];
    let client = grid.client();
    wait_for_workers(&client, "three workers", |w| w.len() == 3).await;

    let tasks = 60;
    let status = run(&client, &replicated(2, tasks)).await;
    assert_primes(&status, 664_579);
    assert_eq!(status.redundancy, 2);
    assert_eq!(status.quorum, 2);

    // Each task was accepted exactly twice (quorum 2, agreeing replicas), and
    // never twice from one worker: nobody did more than one replica a task.
    let list = client.workers().await.unwrap();
    assert_eq!(total_tasks_done(&list), 2 * u64::from(tasks), "{list:?}");
    for worker in &list {
        assert!(
            worker.tasks_done <= u64::from(tasks),
            "a worker answered some task twice: {list:?}"
        );
    }

    for worker in workers {
        worker.stop().await;
    }
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adaptive_replication_saves_replicas_but_not_correctness() {
    let dir = tempfile::tempdir().unwrap();
    // The default: donors that keep agreeing with the quorum are trusted to
    // decide most of their tasks alone, with keyed spot checks.
    let grid = TestGrid::start(dir.path()).await;
    let workers = [
        grid.worker(1, "a"),
        grid.worker(1, "b"),
        grid.worker(1, "c"),
    ];
    let client = grid.client();
    wait_for_workers(&client, "three workers", |w| w.len() == 3).await;

    let tasks = 400;
    let request = JobRequest {
        redundancy: Some(2),
        ..job(primes(0, 100_000_000), tasks)
    };
    let status = run(&client, &request).await;
    assert_primes(&status, 5_761_455);

    let list = client.workers().await.unwrap();
    let done = total_tasks_done(&list);
    assert!(
        (u64::from(tasks)..=2 * u64::from(tasks)).contains(&done),
        "{done} results accepted for {tasks} tasks: {list:?}"
    );
    for worker in &list {
        assert!(worker.tasks_done <= u64::from(tasks));
        assert!(!worker.quarantined, "{list:?}");
    }

    for worker in workers {
        worker.stop().await;
    }
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redundancy_two_waits_for_a_second_worker() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start(dir.path()).await;
    let a = grid.worker(1, "a");
    let client = grid.client();
    let tasks = 40u64;
    let id = submit(&client, &replicated(2, tasks as u32)).await;

    // The lone worker answers one replica of every task, then has nothing it
    // may take: the other replica must come from someone else.
    wait_for_workers(&client, "one replica of every task", |w| {
        w.len() == 1 && w[0].tasks_done == tasks && w[0].tasks_in_flight == 0
    })
    .await;
    let status = client.status(id).await.unwrap();
    assert_eq!(status.state, JobState::Running, "{status:?}");
    assert_eq!(status.tasks.done, 0, "{status:?}");
    assert!(status.result.is_none(), "{status:?}");

    let b = grid.worker(1, "b");
    let status = wait_until(&client, id, JOB_TIMEOUT, "completion", |s| {
        s.state == JobState::Done
    })
    .await;
    assert_primes(&status, 664_579);
    assert_eq!(u64::from(status.tasks.done), tasks);
    let list = client.workers().await.unwrap();
    assert_eq!(total_tasks_done(&list), 2 * tasks, "{list:?}");

    a.stop().await;
    b.stop().await;
    grid.stop().await;
}
