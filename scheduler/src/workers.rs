//! Worker connections: one joins, pauses, resumes or leaves (and every task
//! it held goes back to be issued again). The set of ready workers is kept in
//! step here, one worker at a time, so dispatch never scans every connection.
//! Also the questions the coordinator asks about leases: which job a batch
//! belongs to, whether a task is in it, what a worker holds.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::state::WorkerState;
use crate::{BatchId, Capabilities, DonorId, JobId, Scheduler, WorkerId};

impl Scheduler {
    /// A worker joins, offering `offers`: it is only given tasks of jobs
    /// whose needs those cover.
    pub fn add_worker(
        &mut self,
        worker: WorkerId,
        donor: DonorId,
        threads: u32,
        offers: Capabilities,
        now: u64,
    ) {
        self.workers.insert(
            worker,
            WorkerState {
                donor,
                threads: threads.max(1),
                offers,
                paused: false,
                batches: Vec::new(),
                speed: HashMap::new(),
                last_finish: now,
                recently_closed: VecDeque::new(),
                holds: HashSet::new(),
            },
        );
        self.unpaused += 1;
        self.refresh_ready(worker);
    }

    /// Keeps `ready` in step with one worker's state.
    pub(crate) fn refresh_ready(&mut self, worker: WorkerId) {
        let ready = self.workers.get(&worker).is_some_and(|w| {
            !w.paused
                && w.batches.len() < self.config.pipeline
                && !self.donors.get(&w.donor).is_some_and(|d| d.quarantined)
        });
        if ready {
            self.ready.insert(worker);
        } else {
            self.ready.remove(&worker);
        }
    }

    /// The worker's cache gained `added` and lost `removed` (locality
    /// keys, as in [`crate::JobPlan::locality`]).
    pub fn update_holdings(&mut self, worker: WorkerId, added: &[u64], removed: &[u64]) {
        if let Some(state) = self.workers.get_mut(&worker) {
            for key in removed {
                state.holds.remove(key);
            }
            state.holds.extend(added.iter().copied());
        }
    }

    pub fn set_worker_paused(&mut self, worker: WorkerId, paused: bool) {
        if let Some(state) = self.workers.get_mut(&worker)
            && state.paused != paused
        {
            state.paused = paused;
            if paused {
                self.unpaused -= 1;
            } else {
                self.unpaused += 1;
            }
        }
        self.refresh_ready(worker);
    }

    /// A worker disconnected: every task it held goes back to be re-issued.
    pub fn remove_worker(&mut self, worker: WorkerId) {
        let Some(state) = self.workers.remove(&worker) else {
            return;
        };
        self.ready.remove(&worker);
        if !state.paused {
            self.unpaused -= 1;
        }
        for batch in state.batches {
            self.release_batch(batch);
        }
    }

    /// Workers that could take another batch now.
    pub fn idle_workers(&self) -> Vec<WorkerId> {
        self.ready.iter().copied().collect()
    }

    /// The job a live batch belongs to.
    pub fn batch_job(&self, batch: BatchId) -> Option<JobId> {
        self.batches.get(&batch).map(|b| b.job)
    }

    /// The job of a live batch and how many tasks it was granted.
    pub fn batch_tasks(&self, batch: BatchId) -> Option<(JobId, u32)> {
        self.batches
            .get(&batch)
            .map(|b| (b.job, b.tasks.len() as u32))
    }

    /// The job of `batch` if it is live and leased to `worker`: what a
    /// results frame from `worker` for it may be checked against.
    pub fn lease_of(&self, worker: WorkerId, batch: BatchId) -> Option<JobId> {
        self.batches
            .get(&batch)
            .filter(|b| b.worker == worker)
            .map(|b| b.job)
    }

    /// Whether the live batch `batch` holds `task` and still waits for its
    /// result (not answered, handed back or failed yet).
    pub fn awaits(&self, batch: BatchId, task: u32) -> bool {
        self.batches
            .get(&batch)
            .and_then(|b| b.position(task).map(|p| b.waiting[p]))
            .unwrap_or(false)
    }

    /// Batches a worker holds.
    pub fn batches_of(&self, worker: WorkerId) -> usize {
        self.workers.get(&worker).map_or(0, |w| w.batches.len())
    }

    /// Tasks in flight to a worker, across its batches.
    pub fn tasks_held_by(&self, worker: WorkerId) -> u32 {
        self.workers.get(&worker).map_or(0, |w| {
            w.batches
                .iter()
                .filter_map(|b| self.batches.get(b))
                .map(|b| b.outstanding)
                .sum()
        })
    }
}
