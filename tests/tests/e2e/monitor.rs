//! The monitor channel and metrics: token checks on the upgrade, a snapshot
//! first, then job events and Mandelbrot tiles that add up to the image.
//! Text frames are read with `MonitorEvent::decode`, as the dashboard's
//! types would be; tile frames byte by byte, as PROTOCOL.md lays them out.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::StreamExt;
use grid_kernels::spec::{HashsearchParams, MandelbrotParams};
use grid_kernels::{KernelSpec, ResultSummary};
use grid_protocol::api::{JobEvent, JobRequest, MonitorEvent};
use grid_tests::{TOKEN_PROTOCOL, TestGrid, assert_primes, monitor_request, primes, wait_for_job};
use tokio_tungstenite::tungstenite::Message;

fn mandelbrot(width: u32, height: u32, tasks: u32) -> JobRequest {
    grid_tests::job(
        KernelSpec::Mandelbrot(MandelbrotParams {
            width,
            height,
            x_min: -2.0,
            x_max: 1.0,
            y_min: -1.0,
            y_max: 1.0,
            max_iter: 200,
        }),
        tasks,
    )
}

fn decode(text: &str) -> MonitorEvent {
    MonitorEvent::decode(text).unwrap_or_else(|e| panic!("not a monitor event ({e}): {text}"))
}

/// Whether `event` is the `job` event `what` of job `id`.
fn is_job_event(event: &MonitorEvent, what: JobEvent, id: u64) -> bool {
    matches!(event, MonitorEvent::Job { event, job } if *event == what && job.id == id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_refuses_missing_and_wrong_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start(dir.path()).await;
    let base = format!("ws://{}/ws/monitor", grid.addr);
    for url in [
        base.clone(),
        format!("{base}?token=wrong"),
        format!("{base}?token="),
    ] {
        let error = tokio_tungstenite::connect_async(&url)
            .await
            .expect_err("the upgrade must be refused");
        match error {
            tokio_tungstenite::tungstenite::Error::Http(response) => {
                assert_eq!(response.status(), 401, "{url}")
            }
            other => panic!("{url}: expected an HTTP 401, got {other}"),
        }
    }
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_sees_a_snapshot_then_the_job_and_its_tiles() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start(dir.path()).await;
    let client = grid.client();
    // A job that is already done appears in the snapshot.
    let earlier = client
        .submit(&grid_tests::job(primes(0, 1000), 1))
        .await
        .unwrap();
    let worker = grid.worker(2, "painter");
    wait_for_job(&client, earlier.id, Duration::from_secs(30)).await;

    let request = monitor_request(grid.addr, &format!("browsergrid.monitor, {TOKEN_PROTOCOL}"));
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let first = socket.next().await.unwrap().unwrap();
    let MonitorEvent::Snapshot { jobs, workers, .. } = decode(first.to_text().unwrap()) else {
        panic!("the first frame is not a snapshot: {first:?}")
    };
    assert_primes(&jobs[0], 168);
    assert_eq!(workers.connections, 1);

    let (width, height) = (64, 48);
    let job = client
        .submit(&mandelbrot(width, height, 12))
        .await
        .unwrap()
        .id;
    let mut rows = BTreeSet::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !events.iter().any(|e| is_job_event(e, JobEvent::Done, job)) {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .expect("events keep coming until the job is done")
            .unwrap()
            .unwrap();
        match message {
            Message::Text(text) => events.push(decode(&text)),
            Message::Binary(bytes) => {
                assert_eq!(bytes[0], 0x02, "tile frame type");
                assert_eq!(u64::from_le_bytes(bytes[1..9].try_into().unwrap()), job);
                let first_row = u32::from_le_bytes(bytes[9..13].try_into().unwrap());
                let count = u32::from_le_bytes(bytes[13..17].try_into().unwrap());
                assert_eq!(u32::from_le_bytes(bytes[17..21].try_into().unwrap()), width);
                assert_eq!(bytes.len(), 21 + 4 * (width * count) as usize);
                rows.extend(first_row..first_row + count);
            }
            _ => {}
        }
    }
    assert_eq!(
        rows,
        (0..height).collect::<BTreeSet<_>>(),
        "tiles cover every row exactly"
    );
    assert!(
        events
            .iter()
            .any(|e| is_job_event(e, JobEvent::Submitted, job))
    );
    let done = events
        .iter()
        .find_map(|e| match e {
            MonitorEvent::Job {
                event: JobEvent::Done,
                job,
            } => Some(job),
            _ => None,
        })
        .unwrap();
    assert_eq!(done.tasks.done, 12);
    assert!(
        matches!(done.result, Some(ResultSummary::Mandelbrot { width: w, .. }) if w == width),
        "{done:?}"
    );

    // Throughput and worker figures arrive once a second.
    let mut saw = (false, false);
    while saw != (true, true) {
        let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Message::Text(text) = message {
            match decode(&text) {
                MonitorEvent::Throughput { sample } => {
                    assert!(sample.tasks_per_s.is_finite(), "{sample:?}");
                    saw.0 = true;
                }
                MonitorEvent::Workers { workers } => {
                    assert_eq!(workers.tasks_done, 13);
                    assert_eq!(workers.top_donors[0].tasks_done, 13);
                    saw.1 = true;
                }
                _ => {}
            }
        }
    }
    worker.stop().await;
    grid.stop().await;
}

/// A hashsearch job watched from its submission: its status events carry
/// no nonces, and its `job_nonces` events, applied in order (`first`
/// replaces, `added` and `removed` change), end with exactly the nonces the
/// job's status gives over HTTP. No event repeats one already sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hashsearch_jobs_nonces_arrive_as_changes_that_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start(dir.path()).await;
    let client = grid.client();
    let request = monitor_request(grid.addr, &format!("browsergrid.monitor, {TOKEN_PROTOCOL}"));
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let first = socket.next().await.unwrap().unwrap();
    assert!(matches!(
        decode(first.to_text().unwrap()),
        MonitorEvent::Snapshot { .. }
    ));

    let _worker = grid.worker(2, "searcher");
    let spec = KernelSpec::Hashsearch(HashsearchParams {
        prefix: "browsergrid".into(),
        difficulty: 8,
        start: 0,
        end: 1_000_000,
    });
    let job = client.submit(&grid_tests::job(spec, 100)).await.unwrap().id;
    let mut known = BTreeSet::new();
    let mut sent = 0;
    let mut changes = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    // The `job_nonces` frame of a change follows its status: after `done`,
    // the last one comes at once if there is one.
    let mut done = false;
    loop {
        let wait = if done {
            tokio::time::Instant::now() + Duration::from_secs(2)
        } else {
            deadline
        };
        let message = match tokio::time::timeout_at(wait, socket.next()).await {
            Ok(message) => message.unwrap().unwrap(),
            Err(_) if done => break,
            Err(_) => panic!("events keep coming until the job is done"),
        };
        let Message::Text(text) = message else {
            continue;
        };
        match decode(&text) {
            MonitorEvent::Job { event, job: status } if status.id == job => {
                for summary in [&status.result, &status.partial].into_iter().flatten() {
                    assert_eq!(summary, &ResultSummary::Hashsearch { nonces: vec![] });
                }
                done = event == JobEvent::Done;
            }
            MonitorEvent::JobNonces(change) if change.job == job => {
                if let Some(first) = &change.first {
                    known = first.iter().copied().collect();
                    sent += first.len();
                }
                for nonce in &change.added {
                    assert!(known.insert(*nonce), "{nonce} was sent before");
                }
                for nonce in &change.removed {
                    assert!(known.remove(nonce), "{nonce} was never sent");
                }
                sent += change.added.len();
                changes += 1;
                assert_eq!(change.count, known.len() as u64);
                if done {
                    break;
                }
            }
            _ => {}
        }
    }
    let status = client.status(job).await.unwrap();
    let Some(ResultSummary::Hashsearch { nonces }) = status.result else {
        panic!("{status:?}")
    };
    assert!(
        nonces.len() > 1000,
        "enough nonces to matter: {}",
        nonces.len()
    );
    assert_eq!(known.into_iter().collect::<Vec<_>>(), nonces);
    assert_eq!(
        sent,
        nonces.len(),
        "each nonce sent once over {changes} events"
    );
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_jobs_tasks_and_workers() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start(dir.path()).await;
    let worker = grid.worker(1, "counted");
    let client = grid.client();
    let job = client.submit(&mandelbrot(16, 16, 4)).await.unwrap().id;
    wait_for_job(&client, job, Duration::from_secs(30)).await;
    let text = grid_tests::metrics(&grid.url).await;
    let value = |line: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(line).map(|v| v.trim().parse().unwrap()))
            .unwrap_or_else(|| panic!("no {line} in\n{text}"))
    };
    assert_eq!(value("grid_jobs{state=\"done\"}"), 1.0);
    assert_eq!(value("grid_tasks_completed_total"), 4.0);
    assert_eq!(value("grid_workers{kind=\"native\"}"), 1.0);
    assert!(value("grid_batch_latency_seconds_count") >= 1.0);
    assert!(value("grid_store_commit_seconds_count") >= 2.0);
    worker.stop().await;
    grid.stop().await;
}
