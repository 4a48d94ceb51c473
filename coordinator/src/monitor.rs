//! The monitor hub: live events for dashboards, encoded once and fanned out
//! to every monitor connection ([`crate::socket::monitor`]). It knows
//! nothing of the grid: the grid publishes into it.
//!
//! Events are encoded once and fanned out through a bounded broadcast ring.
//! A client that falls behind does not slow anyone down: it misses events,
//! notices (the ring tells it how many), and is sent a fresh snapshot in their
//! place. Job progress is coalesced to a few updates a second; throughput and
//! worker figures are sampled once a second.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::Mutex;

use grid_protocol::api::{MonitorEvent, ThroughputSample};
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
        }
    }

    /// Whether anyone is listening; events are not built otherwise.
    pub fn active(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    pub fn subscribe(&self) -> broadcast::Receiver<MonitorFrame> {
        self.sender.subscribe()
    }

    /// An event every user's channel passes on.
    pub fn publish(&self, event: &MonitorEvent) {
        self.publish_for(None, event);
    }

    /// An event about a job of `owner` (None: for everyone).
    pub fn publish_for(&self, owner: Option<u64>, event: &MonitorEvent) {
        if self.active() {
            let _ = self.sender.send(MonitorFrame::Text {
                text: Arc::from(event.encode()),
                owner,
            });
        }
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
