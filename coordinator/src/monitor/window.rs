//! Which jobs a monitor snapshot lists: every live job up to a cap, newest
//! first, then the newest finished ones, as long as their text stays within
//! a byte budget. The rest are counted, and `GET /api/jobs` pages through
//! them. Pure.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use grid_protocol::api::{JobNonces, JobStatus, MonitorEvent};

/// The ids a snapshot may list, in the order it lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    ids: Vec<u64>,
}

impl Window {
    /// The newest [`MonitorEvent::SNAPSHOT_LIVE_JOBS`] of `live` then the
    /// newest [`MonitorEvent::SNAPSHOT_FINISHED_JOBS`] of `finished`, each
    /// newest (highest id) first. The inputs may be in any order.
    pub fn choose(live: &[u64], finished: &[u64]) -> Window {
        let mut ids = newest(live, MonitorEvent::SNAPSHOT_LIVE_JOBS);
        ids.extend(newest(finished, MonitorEvent::SNAPSHOT_FINISHED_JOBS));
        Window { ids }
    }

    pub fn ids(&self) -> &[u64] {
        &self.ids
    }
}

/// The `k` highest of `ids`, highest first, without sorting them all.
fn newest(ids: &[u64], k: usize) -> Vec<u64> {
    let mut heap = BinaryHeap::with_capacity(k + 1);
    for &id in ids {
        heap.push(Reverse(id));
        if heap.len() > k {
            heap.pop();
        }
    }
    let mut kept: Vec<u64> = heap.into_iter().map(|Reverse(id)| id).collect();
    kept.sort_unstable_by(|a, b| b.cmp(a));
    kept
}

/// Statuses taken in order until the next would pass the budget; from then
/// on nothing more, so that what is listed is a prefix of the window.
#[derive(Debug)]
pub struct Fill {
    budget: usize,
    used: usize,
    full: bool,
    jobs: Vec<JobStatus>,
    nonces: Vec<JobNonces>,
}

impl Fill {
    pub fn new(budget: usize) -> Fill {
        Fill {
            budget,
            used: 0,
            full: false,
            jobs: Vec::new(),
            nonces: Vec::new(),
        }
    }

    /// Lists `status` (with its nonces) if it fits; whether it did.
    pub fn offer(&mut self, status: JobStatus, nonces: Option<JobNonces>) -> bool {
        if self.full {
            return false;
        }
        // Each entry's text plus a comma; close enough to the frame's.
        let size = serde_json::to_vec(&status).map_or(usize::MAX, |t| t.len() + 1)
            + nonces
                .as_ref()
                .and_then(|n| serde_json::to_vec(n).ok())
                .map_or(0, |t| t.len() + 1);
        if self.used.saturating_add(size) > self.budget {
            self.full = true;
            return false;
        }
        self.used += size;
        self.jobs.push(status);
        self.nonces.extend(nonces);
        true
    }

    pub fn finish(self) -> (Vec<JobStatus>, Vec<JobNonces>) {
        (self.jobs, self.nonces)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use grid_kernels::KernelSpec;
    use grid_kernels::spec::PrimesParams;
    use grid_protocol::api::{JobState, TaskCounts};

    fn status(id: u64, error: &str) -> JobStatus {
        JobStatus {
            id,
            owner: "admin".into(),
            priority: 0,
            revised: 0,
            spec: KernelSpec::Primes(PrimesParams { start: 0, end: 10 }),
            state: JobState::Failed,
            paused: false,
            tasks: TaskCounts { total: 1, done: 0 },
            redundancy: 1,
            quorum: 1,
            created_at: 0,
            started_at: None,
            finished_at: None,
            elapsed_ms: None,
            result: None,
            partial: None,
            error: Some(error.into()),
        }
    }

    #[test]
    fn live_jobs_come_first_then_the_newest_finished() {
        let live: Vec<u64> = (0..500).map(|i| i * 3).collect();
        let finished: Vec<u64> = (0..100_000).rev().map(|i| i * 3 + 1).collect();
        let window = Window::choose(&live, &finished);
        let ids = window.ids();
        assert_eq!(
            ids.len(),
            MonitorEvent::SNAPSHOT_LIVE_JOBS + MonitorEvent::SNAPSHOT_FINISHED_JOBS
        );
        assert_eq!(ids[0], 499 * 3);
        assert_eq!(ids[MonitorEvent::SNAPSHOT_LIVE_JOBS - 1], 400 * 3);
        assert_eq!(ids[MonitorEvent::SNAPSHOT_LIVE_JOBS], 99_999 * 3 + 1);
        assert_eq!(ids.last(), Some(&(99_970 * 3 + 1)));
        assert_eq!(Window::choose(&[2, 1], &[]).ids(), [2, 1]);
    }

    #[test]
    fn the_budget_stops_the_list_at_the_first_job_that_does_not_fit() {
        let mut fill = Fill::new(1000);
        assert!(fill.offer(status(3, "short"), None));
        assert!(!fill.offer(status(2, &"x".repeat(1000)), None));
        assert!(!fill.offer(status(1, "short"), None), "a prefix only");
        let (jobs, _) = fill.finish();
        assert_eq!(jobs.iter().map(|j| j.id).collect::<Vec<_>>(), [3]);
    }
}
