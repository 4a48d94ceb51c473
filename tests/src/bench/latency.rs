//! Benchmark 5: latency, seen from hand-written workers that timestamp
//! what they receive.
//!
//! - Submit to first result: two idle workers are connected; a 2-task
//!   primes job is submitted; the times are from just before the HTTP
//!   request to its 201 answer, to the first batch arriving at a worker, and
//!   to the ack of that batch's results (which the coordinator sends only
//!   once they are durable).
//! - Disconnect to re-issue: worker A holds every task of a job; worker B
//!   joins, idle; A's connection is dropped without a word; the time is from
//!   the drop to B receiving a batch with A's tasks.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, bail};
use grid_protocol::api::{JobRequest, JobState};
use serde_json::json;
use tokio::time::Instant;

use super::Ctx;
use super::env;
use super::procs::Coordinator;
use super::report::{Goal, Row};
use super::socket::{Probe, Seen};
use super::throughput::load_note;

fn primes(end: u64, tasks: u32) -> JobRequest {
    grid_tests::job(grid_tests::primes(0, end), tasks)
}

fn ms(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64() * 1000.0
}

/// One submit, timed: (HTTP answered, first batch received, first ack), ms
/// after the request was sent.
async fn first_result(
    coordinator: &Coordinator,
    probes: &mut [Probe; 2],
) -> anyhow::Result<(f64, f64, f64)> {
    let client = coordinator.client();
    let request = primes(200, 2);
    let sent = Instant::now();
    client.submit(&request).await?;
    let answered = Instant::now();
    let (mut first_batch, mut first_ack) = (None::<Instant>, None::<Instant>);
    let mut accepted = 0;
    let deadline = sent + Duration::from_secs(10);
    let [a, b] = probes;
    while accepted < 2 {
        let seen = tokio::select! {
            seen = a.seen.recv() => seen,
            seen = b.seen.recv() => seen,
            _ = tokio::time::sleep_until(deadline) => bail!("the job's results were not acked within 10 s"),
        };
        match seen.context("a probe's connection ended")? {
            Seen::Batch { at, .. } => {
                first_batch.get_or_insert(at);
            }
            Seen::Ack {
                at, accepted: n, ..
            } => {
                if n > 0 {
                    first_ack.get_or_insert(at);
                }
                accepted += n;
            }
        }
    }
    Ok((
        ms(sent, answered),
        ms(sent, first_batch.context("a batch before its ack")?),
        ms(sent, first_ack.expect("acked")),
    ))
}

/// One drop, timed: ms from A's connection dropping to B's batch.
async fn reissue(coordinator: &Coordinator, round: usize) -> anyhow::Result<f64> {
    let client = coordinator.client();
    // 64 threads: an unknown-speed batch is one task per thread, so A is
    // leased the whole 64-task job at once, and so is B afterwards.
    let mut a = Probe::join(&coordinator.url, 64, &format!("holder-{round}"), false).await?;
    let job = client.submit(&primes(6_400, 64)).await?.id;
    let (_, held) = a.next_batch(Duration::from_secs(10)).await?;
    if held.job != job {
        bail!("A was given job {} instead of {job}", held.job);
    }
    let held_tasks: BTreeSet<u32> = held.tasks.iter().collect();
    // B joins while A's lease is young (copies to idle workers start after
    // a second), so B has nothing until A is gone.
    let mut b = Probe::join(&coordinator.url, 64, &format!("taker-{round}"), true).await?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    if let Ok(Some(seen)) = tokio::time::timeout(Duration::ZERO, b.seen.recv()).await {
        bail!("B was given work before A dropped: {seen:?}");
    }
    let dropped = Instant::now();
    a.kill();
    let mut received = BTreeSet::new();
    let mut first = None;
    while !held_tasks.is_subset(&received) {
        let (at, batch) = b.next_batch(Duration::from_secs(10)).await?;
        if batch.job == job {
            first.get_or_insert(at);
            received.extend(batch.tasks.iter());
        }
    }
    // Let B finish the job so the next round starts on an empty grid.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if client.status(job).await?.state == JobState::Done {
            break;
        }
        if Instant::now() > deadline {
            bail!("job {job} did not finish after the re-issue");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    b.kill();
    Ok(ms(dropped, first.expect("a batch")))
}

pub async fn latency(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    let samples = (ctx.runs * 4).max(20);
    let load = env::load_average();
    let coordinator = Coordinator::start(&ctx.grid, &[]).await?;
    let mut probes = [
        Probe::join(&coordinator.url, 1, "probe-1", true).await?,
        Probe::join(&coordinator.url, 1, "probe-2", true).await?,
    ];
    // One job first, untimed: connections and the store warm up.
    first_result(&coordinator, &mut probes).await?;
    let (mut http, mut batch, mut ack) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..samples {
        let (h, b, a) = first_result(&coordinator, &mut probes).await?;
        http.push(h);
        batch.push(b);
        ack.push(a);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(probes);
    drop(coordinator);

    let load2 = env::load_average();
    let coordinator = Coordinator::start(&ctx.grid, &[]).await?;
    let mut reissued = Vec::new();
    for round in 0..samples.min(10) {
        reissued.push(reissue(&coordinator, round).await?);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(coordinator);

    ctx.raw.insert(
        "latency".into(),
        json!({
            "job": primes(200, 2),
            "load_average": [load, load2],
            "submit_http_ms": http,
            "submit_to_batch_ms": batch,
            "submit_to_ack_ms": ack,
            "disconnect_to_reissue_ms": reissued,
        }),
    );
    let note = load_note(&[load, load2]);
    Ok(vec![
        Row::new(
            5,
            "submit to first result acked (2 idle hand-written workers)",
            "ms",
            &ack,
        )
        .goal(Goal::AtMost(50.0))
        .note(format!(
            "ack follows the durable commit (--sync full); {note}"
        )),
        Row::new(5, "  submit to first batch received", "ms", &batch),
        Row::new(5, "  submit to HTTP 201", "ms", &http)
            .note("the job row is committed before the answer"),
        Row::new(
            5,
            "disconnect to re-issue (dropped connection holding a batch)",
            "ms",
            &reissued,
        )
        .note("to the other worker receiving a batch with those tasks"),
    ])
}
