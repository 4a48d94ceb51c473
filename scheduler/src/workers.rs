//! Worker connections: one joins, pauses, resumes or leaves (and every task
//! it held goes back to be issued again). The set of ready workers is kept in
//! step here, one worker at a time, so dispatch never scans every connection.
//! Also the questions the coordinator asks about leases: which job a batch
//! belongs to, whether a task is in it, what a worker holds.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::speed::JobClocks;
use crate::state::WorkerState;
use crate::{BatchId, Capabilities, DonorId, JobId, Scheduler, UserId, WorkerId};

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
                clocks: JobClocks::new(now),
                recently_closed: VecDeque::new(),
                holds: HashSet::new(),
                only_for: None,
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
        let full = self.workers.get(&worker).is_some_and(|w| {
            !w.paused
                && w.batches.len() == self.config.pipeline
                && !self.donors.get(&w.donor).is_some_and(|d| d.quarantined)
        });
        if full {
            self.full.insert(worker);
        } else {
            self.full.remove(&worker);
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

    /// From now on `worker` takes tasks only of jobs `users` own (all
    /// jobs again if `users` is empty). Batches it holds are kept.
    pub fn limit_worker_to(&mut self, worker: WorkerId, users: &[UserId]) {
        if let Some(state) = self.workers.get_mut(&worker) {
            state.only_for = (!users.is_empty()).then(|| users.into());
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
        self.full.remove(&worker);
        if !state.paused {
            self.unpaused -= 1;
        }
        for batch in state.batches {
            self.release_batch(batch);
        }
    }

    /// Workers that could take another batch now: those with room in
    /// their pipeline, and the full workers on which a newcomer with work
    /// has no batch, which [`Scheduler::grant`] gives one extra batch for
    /// it if it is at its fair share. Without a newcomer (twice `pipeline`
    /// batches' time after a user gets work) that is O(ready workers), as
    /// before; with one, O(jobs + full workers).
    pub fn idle_workers(&self) -> Vec<WorkerId> {
        let mut idle: Vec<WorkerId> = self.ready.iter().copied().collect();
        let newcomers = self.newcomers_with_work();
        if !newcomers.is_empty() {
            idle.extend(self.full.iter().copied().filter(|&worker| {
                let here = self.users_on(worker);
                newcomers.iter().any(|user| !here.contains(user))
            }));
        }
        idle
    }

    /// The owners of the jobs `worker` holds batches of.
    pub(crate) fn users_on(&self, worker: WorkerId) -> Vec<UserId> {
        self.workers.get(&worker).map_or_else(Vec::new, |state| {
            state
                .batches
                .iter()
                .filter_map(|b| self.batches.get(b))
                .filter_map(|b| self.jobs.get(&b.job))
                .map(|job| job.plan.owner)
                .collect()
        })
    }

    /// The newcomers with a task to hand out.
    fn newcomers_with_work(&self) -> Vec<UserId> {
        let mut newcomers = Vec::new();
        if self.full.is_empty() {
            return newcomers;
        }
        for job in self.jobs.values() {
            let owner = job.plan.owner;
            if !job.paused
                && job.issuable() > 0
                && !newcomers.contains(&owner)
                && self.is_newcomer(owner, self.last_grant)
            {
                newcomers.push(owner);
            }
        }
        newcomers
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
