//! A monitor connection driven through channels: the snapshot first, events
//! as the grid changes, and a close when the coordinator stops.

use std::time::Duration;

use futures_channel::mpsc as fmpsc;
use grid_kernels::KernelSpec;
use grid_kernels::spec::PrimesParams;
use grid_protocol::api::{JobEvent, JobRequest, MonitorEvent};
use tokio::sync::Semaphore;

use super::*;
use crate::grid::testing::open_grid;

async fn next_event(from_server: &mut fmpsc::Receiver<Message>) -> MonitorEvent {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), from_server.next())
            .await
            .expect("the monitor sends")
            .expect("the connection is open");
        if let Message::Text(text) = message {
            let event = MonitorEvent::decode(&text).expect("a monitor event");
            // Throughput samples come on their own clock; skip them.
            if !matches!(event, MonitorEvent::Throughput { .. }) {
                return event;
            }
        }
    }
}

#[tokio::test]
async fn a_snapshot_then_events_then_a_goodbye() {
    let dir = tempfile::tempdir().unwrap();
    let grid = open_grid(dir.path()).await;
    let request = JobRequest {
        tasks: Some(2),
        ..JobRequest::new(KernelSpec::Primes(PrimesParams { start: 0, end: 100 }))
    };
    let first = grid
        .submit(&grid.first_admin(), request.clone())
        .await
        .unwrap();

    let (mut to_server, stream) = fmpsc::channel::<Result<Message, WsError>>(16);
    let (sink, mut from_server) = fmpsc::channel(1024);
    let sink = sink.sink_map_err(|_| WsError::ConnectionClosed);
    let (stop, shutdown) = watch::channel(false);
    let permit = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
    let served = tokio::spawn(serve_monitor(
        grid.clone(),
        grid.first_admin(),
        sink,
        stream,
        shutdown,
        permit,
    ));

    match next_event(&mut from_server).await {
        MonitorEvent::Snapshot { jobs, workers, .. } => {
            assert_eq!(jobs.iter().map(|j| j.id).collect::<Vec<_>>(), [first.id]);
            assert_eq!(workers.connections, 0);
        }
        other => panic!("expected the snapshot first, got {other:?}"),
    }
    let second = grid.submit(&grid.first_admin(), request).await.unwrap();
    match next_event(&mut from_server).await {
        MonitorEvent::Job { event, job } => {
            assert_eq!((event, job.id), (JobEvent::Submitted, second.id));
        }
        other => panic!("expected the job event, got {other:?}"),
    }
    // What a monitor client sends is ignored.
    to_server.send(Ok(Message::text("hello?"))).await.unwrap();

    stop.send(true).unwrap();
    let close = loop {
        match from_server.next().await.expect("a close frame") {
            Message::Close(frame) => break frame.expect("a code"),
            _ => continue,
        }
    };
    assert_eq!(u16::from(close.code), CloseCode::GoingAway.code());
    to_server.send(Ok(Message::Close(None))).await.unwrap();
    tokio::time::timeout(Duration::from_secs(1), served)
        .await
        .expect("the connection ends once the client's close arrives")
        .unwrap();
}

/// A user's channel carries its own jobs only (an admin's, every job),
/// and closes with 1008 once its token is rotated.
#[tokio::test]
async fn a_users_channel_shows_its_own_jobs_and_closes_when_its_token_goes() {
    let dir = tempfile::tempdir().unwrap();
    let grid = open_grid(dir.path()).await;
    let admin = grid.first_admin();
    let alice = crate::grid::testing::add_user(&grid, "alice").await;
    let request = JobRequest {
        tasks: Some(2),
        ..JobRequest::new(KernelSpec::Primes(PrimesParams { start: 0, end: 100 }))
    };
    let admins = grid.submit(&admin, request.clone()).await.unwrap();
    let hers = grid.submit(&alice, request.clone()).await.unwrap();

    let (mut to_server, stream) = fmpsc::channel::<Result<Message, WsError>>(16);
    let (sink, mut from_server) = fmpsc::channel(1024);
    let sink = sink.sink_map_err(|_| WsError::ConnectionClosed);
    let (_stop, shutdown) = watch::channel(false);
    let permit = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
    let served = tokio::spawn(serve_monitor(
        grid.clone(),
        alice.clone(),
        sink,
        stream,
        shutdown,
        permit,
    ));
    match next_event(&mut from_server).await {
        MonitorEvent::Snapshot { jobs, .. } => {
            assert_eq!(jobs.iter().map(|j| j.id).collect::<Vec<_>>(), [hers.id]);
        }
        other => panic!("expected the snapshot first, got {other:?}"),
    }
    // The admin's new job is not hers: the next job event she sees is her own.
    assert_ne!(admins.id, hers.id);
    grid.submit(&admin, request.clone()).await.unwrap();
    let mine = grid.submit(&alice, request).await.unwrap();
    match next_event(&mut from_server).await {
        MonitorEvent::Job { job, .. } => assert_eq!(job.id, mine.id),
        other => panic!("expected her job's event, got {other:?}"),
    }

    grid.rotate_token(&admin, "alice").await.unwrap();
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(10), from_server.next())
            .await
            .expect("the monitor closes")
            .expect("a close frame")
        {
            Message::Close(frame) => break frame.expect("a code"),
            _ => continue,
        }
    };
    assert_eq!(u16::from(close.code), 1008);
    to_server.send(Ok(Message::Close(None))).await.unwrap();
    tokio::time::timeout(Duration::from_secs(1), served)
        .await
        .expect("the connection ends")
        .unwrap();
}
