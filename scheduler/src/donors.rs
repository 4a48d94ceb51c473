//! Donor standing. Results that agree with a quorum earn a donor trust; a
//! result that disagrees with one (or a wrong result the coordinator's own
//! checks catch) quarantines it: it gets no more work, loses what it holds,
//! and every task it decided on its own word is reopened for a second opinion.

use crate::{BatchId, DonorId, DonorStanding, Effect, Scheduler, WorkerId};

impl Scheduler {
    /// A donor's standing (default for a donor never seen).
    pub fn standing(&self, donor: DonorId) -> DonorStanding {
        self.donors.get(&donor).copied().unwrap_or_default()
    }

    pub(crate) fn validate(&mut self, donor: DonorId) {
        let trust_after = self.config.trust_after;
        let standing = self.donors.entry(donor).or_default();
        if standing.quarantined {
            return;
        }
        standing.validated += 1;
        if !standing.trusted && trust_after.is_some_and(|n| standing.validated >= n) {
            standing.trusted = true;
            self.effects.push(Effect::Trusted { donor });
        }
    }

    /// Restores a donor's trust after a restart (see [`Effect::Trusted`]):
    /// trusted, as if it had the validations trust asks for. Nothing for a
    /// quarantined donor, nor when trust is off.
    pub fn restore_trust(&mut self, donor: DonorId) {
        let Some(trust_after) = self.config.trust_after else {
            return;
        };
        let standing = self.donors.entry(donor).or_default();
        if !standing.quarantined {
            standing.trusted = true;
            standing.validated = standing.validated.max(trust_after);
        }
    }

    /// Stops giving a donor work, takes back what it holds, forgets its
    /// undecided votes and reopens every task it decided on its own word.
    /// Called when its results disagree with a quorum, and by the
    /// coordinator when its own checks catch a wrong result.
    pub fn quarantine(&mut self, donor: DonorId, reason: String) {
        let standing = self.donors.entry(donor).or_default();
        if standing.quarantined {
            return;
        }
        standing.quarantined = true;
        standing.trusted = false;
        self.counters.donors_quarantined += 1;
        let held: Vec<BatchId> = self
            .workers
            .values()
            .filter(|w| w.donor == donor)
            .flat_map(|w| w.batches.iter().copied())
            .collect();
        for batch in held {
            self.close_batch(batch, true);
        }
        let workers: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| w.donor == donor)
            .map(|(&id, _)| id)
            .collect();
        for worker in workers {
            self.refresh_ready(worker);
        }
        let mut reopened = Vec::new();
        for (&job_id, job) in self.jobs.iter_mut() {
            reopened.extend(job.distrust(donor).into_iter().map(|task| (job_id, task)));
        }
        self.effects.push(Effect::Quarantined {
            donor,
            reason,
            reopened,
        });
    }
}
