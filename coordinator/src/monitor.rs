//! The monitor hub: live events for dashboards, encoded once and fanned out
//! to every monitor connection ([`crate::socket::monitor`]). It knows
//! nothing of the grid: the grid publishes into it.
//!
//! Events are encoded once and fanned out through a bounded broadcast ring.
//! A client that falls behind does not slow anyone down: it misses events,
//! notices (the ring tells it how many), and is sent a fresh snapshot in their
//! place. Job progress is coalesced to a few updates a second; throughput and
//! worker figures are sampled once a second.
//!
//! Frames stay small however big the grid: workers go out summed up
//! ([`fleet`]), and a hashsearch job's nonces go out as what changed since
//! the hub's previous frame about the job ([`nonces`]), never the whole list
//! again. The hub keeps, per live hashsearch job, the list it last sent,
//! while anyone listens.

pub mod fleet;
pub mod nonces;
pub mod window;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::Mutex;

use grid_protocol::api::{MonitorEvent, ThroughputSample, WorkerSummary};
use tokio::sync::broadcast;

/// The first byte of a binary tile frame.
pub const TILE_FRAME: u8 = 0x02;
/// Events buffered for the slowest client before it must resynchronise.
const RING: usize = 1024;
/// Throughput samples kept for late joiners: ten minutes at one a second.
const HISTORY: usize = 600;

/// One encoded event, shared by every client.
#[derive(Debug, Clone)]
pub enum MonitorFrame {
    /// `owner`: the user whose job the frame is about, which only that
    /// user's and admins' channels pass on; None for what every user sees
    /// (workers, throughput).
    Text { text: Arc<str>, owner: Option<u64> },
    Binary {
        bytes: Arc<[u8]>,
        owner: Option<u64>,
    },
}

impl MonitorFrame {
    /// The user whose job the frame is about, if it is about a job.
    pub fn owner(&self) -> Option<u64> {
        match self {
            MonitorFrame::Text { owner, .. } | MonitorFrame::Binary { owner, .. } => *owner,
        }
    }
}

#[derive(Debug)]
pub struct Monitor {
    sender: broadcast::Sender<MonitorFrame>,
    dirty: Mutex<BTreeSet<u64>>,
    history: Mutex<VecDeque<ThroughputSample>>,
    previous: Mutex<Previous>,
    /// Per live hashsearch job, the nonces its last `job_nonces` frame
    /// left clients with.
    nonces_sent: Mutex<HashMap<u64, Vec<u64>>>,
    /// The last workers summary published, and when (the grid's
    /// milliseconds), for snapshots.
    summary: Mutex<Option<(u64, WorkerSummary)>>,
}

#[derive(Debug, Default)]
struct Previous {
    at_ms: u64,
    tasks: u64,
    per_worker: HashMap<u64, u64>,
}

impl Default for Monitor {
    fn default() -> Monitor {
        Monitor::new()
    }
}

impl Monitor {
    pub fn new() -> Monitor {
        let (sender, _) = broadcast::channel(RING);
        Monitor {
            sender,
            dirty: Mutex::new(BTreeSet::new()),
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
            previous: Mutex::new(Previous::default()),
            nonces_sent: Mutex::new(HashMap::new()),
            summary: Mutex::new(None),
        }
    }

    /// Whether anyone is listening; events are not built otherwise.
    pub fn active(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    pub fn subscribe(&self) -> broadcast::Receiver<MonitorFrame> {
        // Nobody listened: no frame about any job went out meanwhile, so
        // the lists last sent say nothing of what a newcomer knows.
        let mut sent = crate::sync::lock(&self.nonces_sent, "monitor");
        if !self.active() {
            sent.clear();
        }
        self.sender.subscribe()
    }

    /// An event every user's channel passes on.
    pub fn publish(&self, event: &MonitorEvent) {
        self.publish_for(None, event);
    }

    /// An event about a job of `owner` (None: for everyone). A hashsearch
    /// job's status goes out with its nonce lists empty, followed by a
    /// `job_nonces` frame with what changed since the last one.
    pub fn publish_for(&self, owner: Option<u64>, event: &MonitorEvent) {
        if !self.active() {
            return;
        }
        if let MonitorEvent::Job { event, job } = event
            && matches!(job.spec, grid_kernels::KernelSpec::Hashsearch(_))
        {
            let mut status = job.clone();
            let now = nonces::take_nonces(&mut status).unwrap_or_default();
            let stripped = MonitorEvent::Job {
                event: *event,
                job: status,
            };
            // One lock scope: two publishers of one job's frames send them
            // in the order their changes were computed.
            let mut sent = crate::sync::lock(&self.nonces_sent, "monitor");
            let change = match sent.get(&job.id) {
                Some(before) => nonces::change(job.id, before, &now),
                None => Some(nonces::first(job.id, &now)),
            };
            self.send_text(owner, &stripped);
            if let Some(change) = change {
                self.send_text(owner, &MonitorEvent::JobNonces(change));
            }
            if job.state.is_finished() {
                sent.remove(&job.id);
            } else {
                sent.insert(job.id, now);
            }
            return;
        }
        self.send_text(owner, event);
    }

    fn send_text(&self, owner: Option<u64>, event: &MonitorEvent) {
        let _ = self.sender.send(MonitorFrame::Text {
            text: Arc::from(event.encode()),
            owner,
        });
    }

    /// Publishes the once-a-second workers summary and keeps it for
    /// snapshots; `now_ms` is the grid's clock.
    pub fn publish_workers(&self, now_ms: u64, summary: WorkerSummary) {
        self.publish(&MonitorEvent::Workers {
            workers: summary.clone(),
        });
        *crate::sync::lock(&self.summary, "monitor") = Some((now_ms, summary));
    }

    /// The last summary published, if it is at most `max_age_ms` old.
    pub fn recent_workers(&self, now_ms: u64, max_age_ms: u64) -> Option<WorkerSummary> {
        crate::sync::lock(&self.summary, "monitor")
            .as_ref()
            .filter(|(at, _)| now_ms.saturating_sub(*at) <= max_age_ms)
            .map(|(_, summary)| summary.clone())
    }

    /// A finished band of a Mandelbrot image:
    /// `[0x02][job u64][first_row u32][rows u32][width u32][counts u32...]`,
    /// little-endian.
    pub fn publish_tile(&self, job: u64, owner: u64, first_row: u32, width: u32, counts: &[u32]) {
        if !self.active() {
            return;
        }
        let _ = self.sender.send(MonitorFrame::Binary {
            bytes: Arc::from(tile_frame(job, first_row, width, counts)),
            owner: Some(owner),
        });
    }

    /// Notes that a job's progress changed; [`Monitor::take_dirty`] collects
    /// them a few times a second.
    pub fn mark_progress(&self, job: u64) {
        if self.active() {
            crate::sync::lock(&self.dirty, "monitor").insert(job);
        }
    }

    pub fn take_dirty(&self) -> Vec<u64> {
        std::mem::take(&mut *crate::sync::lock(&self.dirty, "monitor"))
            .into_iter()
            .collect()
    }

    /// Records a throughput sample from the grid's running totals and returns
    /// it, with each worker's current rate.
    pub fn sample(
        &self,
        now_ms: u64,
        tasks_total: u64,
        workers: &[(u64, u64)],
        threads: u64,
    ) -> (ThroughputSample, HashMap<u64, f64>) {
        self.sample_with_count(now_ms, tasks_total, workers, workers.len(), threads)
    }

    /// [`Monitor::sample`] where `workers` may be left empty (no per-worker
    /// rates wanted) and `connected` says how many there are.
    pub fn sample_with_count(
        &self,
        now_ms: u64,
        tasks_total: u64,
        workers: &[(u64, u64)],
        connected: usize,
        threads: u64,
    ) -> (ThroughputSample, HashMap<u64, f64>) {
        let mut previous = crate::sync::lock(&self.previous, "monitor");
        let seconds = if previous.at_ms == 0 {
            1.0
        } else {
            (now_ms.saturating_sub(previous.at_ms)).max(1) as f64 / 1000.0
        };
        let tasks_per_s = if previous.at_ms == 0 {
            0.0
        } else {
            tasks_total.saturating_sub(previous.tasks) as f64 / seconds
        };
        let mut rates = HashMap::new();
        let mut per_worker = HashMap::new();
        for &(id, done) in workers {
            let before = previous.per_worker.get(&id).copied().unwrap_or(done);
            rates.insert(id, done.saturating_sub(before) as f64 / seconds);
            per_worker.insert(id, done);
        }
        *previous = Previous {
            at_ms: now_ms,
            tasks: tasks_total,
            per_worker,
        };
        let sample = ThroughputSample {
            t: crate::clock::unix_ms(),
            tasks_per_s,
            workers: connected as u64,
            threads,
        };
        let mut history = crate::sync::lock(&self.history, "monitor");
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(sample);
        (sample, rates)
    }

    pub fn history(&self) -> Vec<ThroughputSample> {
        crate::sync::lock(&self.history, "monitor")
            .iter()
            .copied()
            .collect()
    }
}

pub fn tile_frame(job: u64, first_row: u32, width: u32, counts: &[u32]) -> Vec<u8> {
    let rows = if width == 0 {
        0
    } else {
        (counts.len() / width as usize) as u32
    };
    let mut bytes = Vec::with_capacity(21 + 4 * counts.len());
    bytes.push(TILE_FRAME);
    bytes.extend_from_slice(&job.to_le_bytes());
    bytes.extend_from_slice(&first_row.to_le_bytes());
    bytes.extend_from_slice(&rows.to_le_bytes());
    bytes.extend_from_slice(&width.to_le_bytes());
    for count in counts {
        bytes.extend_from_slice(&count.to_le_bytes());
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use grid_kernels::spec::HashsearchParams;
    use grid_kernels::{KernelSpec, ResultSummary};
    use grid_protocol::api::{JobEvent, JobNonces, JobState, JobStatus, TaskCounts};

    #[test]
    fn tile_frames_have_the_documented_layout() {
        let frame = tile_frame(7, 3, 2, &[1, 2, 3, 4]);
        assert_eq!(frame[0], TILE_FRAME);
        assert_eq!(u64::from_le_bytes(frame[1..9].try_into().unwrap()), 7);
        assert_eq!(u32::from_le_bytes(frame[9..13].try_into().unwrap()), 3);
        assert_eq!(u32::from_le_bytes(frame[13..17].try_into().unwrap()), 2);
        assert_eq!(u32::from_le_bytes(frame[17..21].try_into().unwrap()), 2);
        assert_eq!(frame.len(), 21 + 16);
    }

    fn hashsearch_status(id: u64, state: JobState, nonces: Vec<u64>) -> JobStatus {
        let summary = Some(ResultSummary::Hashsearch { nonces });
        JobStatus {
            id,
            owner: "admin".into(),
            priority: 0,
            revised: 0,
            spec: KernelSpec::Hashsearch(HashsearchParams {
                prefix: "p".into(),
                difficulty: 4,
                start: 0,
                end: 1 << 40,
            }),
            state,
            paused: false,
            tasks: TaskCounts {
                total: 100,
                done: 50,
            },
            redundancy: 1,
            quorum: 1,
            created_at: 1,
            started_at: Some(2),
            finished_at: None,
            elapsed_ms: Some(3),
            result: if state.is_finished() {
                summary.clone()
            } else {
                None
            },
            partial: if state.is_finished() { None } else { summary },
            error: None,
        }
    }

    fn next_text(frames: &mut broadcast::Receiver<MonitorFrame>) -> String {
        match frames.try_recv().expect("a frame") {
            MonitorFrame::Text { text, .. } => text.to_string(),
            other => panic!("not text: {other:?}"),
        }
    }

    /// 100,000 nonces found, then 5 more: the second progress event's
    /// frames carry the 5, not the 100,005.
    #[test]
    fn progress_of_a_hashsearch_job_carries_only_the_new_nonces() {
        let monitor = Monitor::new();
        let mut frames = monitor.subscribe();
        let before: Vec<u64> = (0..100_000).map(|n| n * 17).collect();
        let mut after = before.clone();
        after.extend([1u64 << 30, (1 << 30) + 1, (1 << 30) + 2, (1 << 30) + 3]);
        after.insert(1, 5);
        let progress = |nonces: Vec<u64>, state| MonitorEvent::Job {
            event: JobEvent::Progress,
            job: Box::new(hashsearch_status(9, state, nonces)),
        };

        monitor.publish_for(Some(1), &progress(before, JobState::Running));
        let status = next_text(&mut frames);
        assert!(status.len() < 1024, "{} bytes: {status}", status.len());
        let MonitorEvent::JobNonces(first) = MonitorEvent::decode(&next_text(&mut frames)).unwrap()
        else {
            panic!("the nonces follow the status")
        };
        assert_eq!((first.job, first.count), (9, 100_000));
        assert_eq!(first.first.unwrap().len(), JobNonces::FIRST);

        monitor.publish_for(Some(1), &progress(after.clone(), JobState::Running));
        let status = next_text(&mut frames);
        assert!(status.len() < 1024, "{} bytes", status.len());
        let Ok(MonitorEvent::Job { job, .. }) = MonitorEvent::decode(&status) else {
            panic!("not a job event: {status}")
        };
        assert_eq!(
            job.partial,
            Some(ResultSummary::Hashsearch { nonces: vec![] })
        );
        let text = next_text(&mut frames);
        assert!(text.len() < 200, "{} bytes: {text}", text.len());
        let MonitorEvent::JobNonces(change) = MonitorEvent::decode(&text).unwrap() else {
            panic!("not a nonces event: {text}")
        };
        assert_eq!(change.count, 100_005);
        assert_eq!(
            change.added,
            [5, 1 << 30, (1 << 30) + 1, (1 << 30) + 2, (1 << 30) + 3]
        );
        assert!(change.removed.is_empty() && change.first.is_none());

        // Nothing new: no nonces frame. Done: the change, and the job's
        // list is let go.
        monitor.publish_for(Some(1), &progress(after.clone(), JobState::Running));
        next_text(&mut frames);
        assert!(frames.try_recv().is_err(), "no frame for no change");
        let mut done = after.clone();
        done.remove(1);
        monitor.publish_for(Some(1), &progress(done, JobState::Done));
        next_text(&mut frames);
        let MonitorEvent::JobNonces(last) = MonitorEvent::decode(&next_text(&mut frames)).unwrap()
        else {
            panic!("the last change")
        };
        assert_eq!((last.count, last.removed.as_slice()), (100_004, &[5][..]));
        assert!(crate::sync::lock(&monitor.nonces_sent, "test").is_empty());
    }

    #[test]
    fn samples_turn_totals_into_rates() {
        let monitor = Monitor::new();
        let (first, _) = monitor.sample(1_000, 100, &[(1, 50)], 1);
        assert_eq!(first.tasks_per_s, 0.0);
        let (second, rates) = monitor.sample(3_000, 300, &[(1, 150), (2, 10)], 2);
        assert_eq!(second.tasks_per_s, 100.0);
        assert_eq!(rates[&1], 50.0);
        assert_eq!(rates[&2], 0.0, "a new worker starts from its first sample");
        assert_eq!(monitor.history().len(), 2);
    }
}
