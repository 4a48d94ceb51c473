//! Time, always passed in: leases past their deadline expire (their open
//! tasks may go to other workers, while late results for them still count),
//! and the earliest deadline tells the coordinator when to call again.

use crate::{BatchId, Scheduler};

impl Scheduler {
    /// Expires leases past their deadline. Their unanswered tasks can go to
    /// other workers; the batch stays with its worker, whose late results for
    /// still-open tasks are accepted. Returns the expired batches.
    pub fn expire(&mut self, now: u64) -> Vec<BatchId> {
        let expired: Vec<BatchId> = self
            .batches
            .iter()
            .filter(|(_, b)| !b.expired && b.deadline <= now)
            .map(|(&id, _)| id)
            .collect();
        for &batch_id in &expired {
            let batch = self.batches.get_mut(&batch_id).expect("listed");
            batch.expired = true;
            let job_id = batch.job;
            let waiting: Vec<u32> = batch
                .tasks
                .iter()
                .zip(&batch.waiting)
                .filter(|(_, w)| **w)
                .map(|(&t, _)| t)
                .collect();
            if let Some(job) = self.jobs.get_mut(&job_id) {
                for task in waiting {
                    job.deactivate_holder(task, batch_id);
                }
            }
        }
        self.counters.leases_expired += expired.len() as u64;
        expired
    }

    /// The earliest lease deadline, for the coordinator's timer.
    pub fn next_deadline(&self) -> Option<u64> {
        self.batches
            .values()
            .filter(|b| !b.expired)
            .map(|b| b.deadline)
            .min()
    }
}
