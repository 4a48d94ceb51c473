//! Jobs coming and going: adding one, restoring its decided tasks and replica
//! votes after a restart, reopening decisions the store could not keep,
//! pausing it, its progress, and forgetting it, which revokes its batches.

use crate::job::JobState;
use crate::{BatchId, Digest, DonorId, JobId, JobPlan, Scheduler};

impl Scheduler {
    pub fn add_job(&mut self, plan: JobPlan) {
        self.users.entry(plan.owner).or_default();
        self.jobs.insert(plan.id, JobState::new(plan));
    }

    /// Marks a task decided while restoring state after a restart.
    pub fn restore_decided(&mut self, job: JobId, task: u32) {
        if let Some(state) = self.jobs.get_mut(&job) {
            state.restore_decided(task);
        }
    }

    /// Decisions the store failed to make durable: their tasks are open
    /// again, for any worker, as if never answered. Returns how many were
    /// decided.
    pub fn reopen_unstored(&mut self, job: JobId, tasks: &[u32]) -> usize {
        let Some(state) = self.jobs.get_mut(&job) else {
            return 0;
        };
        tasks.iter().filter(|&&task| state.reopen(task)).count()
    }

    /// Reopens decided tasks of `job` for a second opinion: their answers
    /// came from a donor caught lying since (in a job that had finished, or
    /// one restored after a restart, whose solo decisions the scheduler no
    /// longer remembers). Each answer that comes back is a recheck: it
    /// replaces or confirms the stored one. Returns how many were decided.
    pub fn recheck(&mut self, job: JobId, tasks: &[u32]) -> usize {
        let Some(state) = self.jobs.get_mut(&job) else {
            return 0;
        };
        tasks.iter().filter(|&&task| state.recheck(task)).count()
    }

    /// Restores a durable replica vote after a restart.
    pub fn restore_vote(&mut self, job: JobId, task: u32, donor: DonorId, digest: Digest) {
        if let Some(state) = self.jobs.get_mut(&job) {
            state.restore_vote(task, donor, digest);
        }
    }

    pub fn has_job(&self, job: JobId) -> bool {
        self.jobs.contains_key(&job)
    }

    /// Decided tasks and the job's task count.
    pub fn progress(&self, job: JobId) -> Option<(u32, u32)> {
        self.jobs
            .get(&job)
            .map(|j| (j.decided_count(), j.plan.tasks))
    }

    pub fn set_job_paused(&mut self, job: JobId, paused: bool) {
        if let Some(state) = self.jobs.get_mut(&job) {
            state.paused = paused;
        }
    }

    /// Forgets a job (finished, failed or cancelled) and revokes its batches.
    pub fn remove_job(&mut self, job: JobId) {
        if self.jobs.remove(&job).is_none() {
            return;
        }
        let batches: Vec<BatchId> = self
            .batches
            .iter()
            .filter(|(_, b)| b.job == job)
            .map(|(&id, _)| id)
            .collect();
        for batch in batches {
            self.close_batch(batch, true);
        }
    }
}
