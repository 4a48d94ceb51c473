//! What comes back from workers, and how batches end. A result is classified
//! (accepted, duplicate, stale, rejected) and counted; an accepted one is a
//! replica vote that may decide its task, validate the donors that agreed and
//! quarantine those that did not. A batch finishes when its last task is
//! answered (its timing feeds the worker's speed), closes early when it is
//! revoked or everything in it was answered elsewhere, and is released when
//! its worker leaves. Workers may also hand tasks back or report one failed.

use grid_protocol::TaskRanges;

use crate::state::WorkerState;
use crate::{BatchId, Digest, Effect, Recorded, Rejection, Scheduler, WorkerId, job};

impl Scheduler {
    /// Classifies a result that no batch of `worker` awaited when its frame
    /// arrived (so its output was never checked), without ever accepting it:
    /// stale if it races the close of a batch that held the task, duplicate if
    /// its batch is live but the task was answered or handed back already,
    /// rejected otherwise, even if the batch was granted to `worker` since.
    pub fn refuse(&mut self, worker: WorkerId, batch: BatchId, task: u32) -> Recorded {
        let closed = self
            .workers
            .get(&worker)
            .and_then(|w| w.recently_closed.iter().find(|(id, _)| *id == batch));
        let outcome = match closed {
            Some((_, tasks)) if tasks.contains(task) => Recorded::Stale,
            Some(_) => Recorded::Rejected(Rejection::TaskNotInBatch),
            None => match self.batches.get(&batch) {
                Some(b) if b.worker != worker => Recorded::Rejected(Rejection::NotYourBatch),
                Some(b) => match b.position(task) {
                    None => Recorded::Rejected(Rejection::TaskNotInBatch),
                    // Answered or handed back since: nothing to count.
                    Some(position) if !b.waiting[position] => Recorded::Duplicate,
                    // Still waiting, so leased after the frame was sent.
                    Some(_) => Recorded::Rejected(Rejection::UnknownBatch),
                },
                None => Recorded::Rejected(Rejection::UnknownBatch),
            },
        };
        self.count(&outcome);
        outcome
    }

    fn count(&mut self, outcome: &Recorded) {
        match outcome {
            Recorded::Accepted { .. } => self.counters.results_accepted += 1,
            Recorded::Duplicate => self.counters.results_duplicate += 1,
            Recorded::Stale => self.counters.results_stale += 1,
            Recorded::Rejected(_) => self.counters.results_rejected += 1,
        }
    }

    /// Records one result. Call it in the order results arrive.
    pub fn record(
        &mut self,
        worker: WorkerId,
        batch: BatchId,
        task: u32,
        digest: Digest,
        now: u64,
    ) -> Recorded {
        let outcome = self.classify_and_record(worker, batch, task, digest, now);
        self.count(&outcome);
        outcome
    }

    fn classify_and_record(
        &mut self,
        worker: WorkerId,
        batch_id: BatchId,
        task: u32,
        digest: Digest,
        now: u64,
    ) -> Recorded {
        let Some(batch) = self.batches.get(&batch_id) else {
            let closed = self
                .workers
                .get(&worker)
                .and_then(|w| w.recently_closed.iter().find(|(id, _)| *id == batch_id));
            return match closed {
                Some((_, tasks)) if tasks.contains(task) => Recorded::Stale,
                Some(_) => Recorded::Rejected(Rejection::TaskNotInBatch),
                None => Recorded::Rejected(Rejection::UnknownBatch),
            };
        };
        if batch.worker != worker {
            return Recorded::Rejected(Rejection::NotYourBatch);
        }
        let Some(position) = batch.position(task) else {
            return Recorded::Rejected(Rejection::TaskNotInBatch);
        };
        if !batch.waiting[position] {
            return Recorded::Duplicate;
        }
        let job_id = batch.job;
        let donor = self.workers[&worker].donor;
        // Progress renews the lease.
        let batch = self.batches.get_mut(&batch_id).expect("present");
        batch.deadline = now + batch.lease_ms;
        batch.waiting[position] = false;
        batch.outstanding -= 1;
        let batch_done = batch.outstanding == 0;

        let job = self
            .jobs
            .get_mut(&job_id)
            .expect("a batch's job is live until its batches are closed");
        let trusted = self.donors.get(&donor).is_some_and(|d| d.trusted);
        let outcome = job.vote(task, batch_id, donor, digest, trusted);
        let result = match outcome {
            job::Vote::Duplicate => Recorded::Duplicate,
            job::Vote::Counted => Recorded::Accepted {
                decided: false,
                recheck: false,
            },
            job::Vote::Disagreement => {
                self.counters.quorum_disagreements += 1;
                Recorded::Accepted {
                    decided: false,
                    recheck: false,
                }
            }
            job::Vote::Decided {
                others,
                validated,
                dissenters,
                answer,
                recheck,
            } => {
                for other in others {
                    self.drop_task_from_batch(other, task);
                }
                if validated.is_empty() && self.jobs[&job_id].plan.replication.redundancy > 1 {
                    self.counters.tasks_solo += 1;
                }
                for donor in validated {
                    self.validate(donor);
                }
                for (dissenter, theirs) in dissenters {
                    // The evidence: both digests, in full.
                    self.quarantine(
                        dissenter,
                        format!(
                            "its result for task {task} of job {job_id} disagreed with the quorum: \
                             sha256:{} against the quorum's sha256:{}",
                            hex(&theirs),
                            hex(&answer)
                        ),
                    );
                }
                if recheck {
                    self.counters.tasks_rechecked += 1;
                }
                Recorded::Accepted {
                    decided: true,
                    recheck,
                }
            }
            job::Vote::Failed { reason, dissenters } => {
                for dissenter in dissenters {
                    self.quarantine(dissenter, reason.clone());
                }
                self.effects.push(Effect::TaskFailed {
                    job: job_id,
                    task,
                    reason,
                });
                Recorded::Accepted {
                    decided: false,
                    recheck: false,
                }
            }
        };
        if batch_done && self.batches.contains_key(&batch_id) {
            self.finish_batch(batch_id, now);
        }
        result
    }

    /// Another copy of `task` won: the batch need not wait for it any more.
    fn drop_task_from_batch(&mut self, batch_id: BatchId, task: u32) {
        let Some(batch) = self.batches.get_mut(&batch_id) else {
            return;
        };
        let Some(position) = batch.position(task) else {
            return;
        };
        if batch.waiting[position] {
            batch.waiting[position] = false;
            batch.outstanding -= 1;
            if batch.outstanding == 0 {
                // Everything it holds was answered elsewhere: stop the work.
                self.close_batch(batch_id, true);
            }
        }
    }

    fn finish_batch(&mut self, batch_id: BatchId, now: u64) {
        let batch = self.batches.remove(&batch_id).expect("present");
        self.batch_closed(batch.job, Some(now));
        let Some(worker) = self.workers.get_mut(&batch.worker) else {
            return;
        };
        worker.batches.retain(|&b| b != batch_id);
        remember_closed(
            worker,
            batch_id,
            &batch.tasks,
            self.config.remembered_revokes,
        );
        if self.batch_latencies.len() < 100_000 {
            self.batch_latencies
                .push(now.saturating_sub(batch.granted_at));
        }
        let elapsed = worker
            .clocks
            .finished(batch.job, batch.started, now)
            .max(1.0);
        let per_task = elapsed / batch.tasks.len() as f64;
        worker.speed.entry(batch.job).or_default().observe(per_task);
        let threads = worker.threads;
        self.refresh_ready(batch.worker);
        if let Some(job) = self.jobs.get_mut(&batch.job) {
            job.observe_speed(per_task * f64::from(threads));
            for &task in &batch.tasks {
                // A decided task has no holders left to forget.
                if !job.is_decided(task) {
                    job.remove_holder(task, batch_id);
                }
            }
            let (owner, task_ms) = (job.plan.owner, job.ms_per_task_per_thread());
            if let (Some(charged), Some(task_ms)) = (batch.unmeasured_charge, task_ms) {
                self.true_up(owner, charged, batch.tasks.len(), task_ms);
            }
        }
    }

    /// Ends a batch early. Its unanswered tasks go back to be issued again;
    /// with `revoke` the worker is told to drop it.
    pub(crate) fn close_batch(&mut self, batch_id: BatchId, revoke: bool) {
        let Some(batch) = self.batches.remove(&batch_id) else {
            return;
        };
        self.batch_closed(batch.job, None);
        if let Some(worker) = self.workers.get_mut(&batch.worker) {
            worker.batches.retain(|&b| b != batch_id);
            worker.clocks.dropped(batch.job);
            remember_closed(
                worker,
                batch_id,
                &batch.tasks,
                self.config.remembered_revokes,
            );
            if revoke {
                self.effects.push(Effect::Revoke {
                    worker: batch.worker,
                    batch: batch_id,
                });
            }
            self.refresh_ready(batch.worker);
        }
        if let Some(job) = self.jobs.get_mut(&batch.job) {
            for &task in &batch.tasks {
                job.remove_holder(task, batch_id);
            }
        }
    }

    /// The worker is gone: its batches' tasks are re-issued.
    pub(crate) fn release_batch(&mut self, batch_id: BatchId) {
        if let Some(batch) = self.batches.remove(&batch_id)
            && let Some(job) = {
                self.batch_closed(batch.job, None);
                self.jobs.get_mut(&batch.job)
            }
        {
            for &task in &batch.tasks {
                job.remove_holder(task, batch_id);
            }
        }
    }

    /// The worker hands back tasks it will not compute.
    pub fn return_tasks(
        &mut self,
        worker: WorkerId,
        batch_id: BatchId,
        tasks: &TaskRanges,
    ) -> Result<u32, Rejection> {
        let batch = self
            .batches
            .get_mut(&batch_id)
            .ok_or(Rejection::UnknownBatch)?;
        if batch.worker != worker {
            return Err(Rejection::NotYourBatch);
        }
        let mut returned = 0;
        let job = batch.job;
        // Walk the batch, not the ranges: a range may span four billion
        // indices, a batch holds at most `max_batch_tasks`.
        for position in 0..batch.tasks.len() {
            let task = batch.tasks[position];
            if batch.waiting[position] && tasks.contains(task) {
                batch.waiting[position] = false;
                batch.outstanding -= 1;
                returned += 1;
                if let Some(job) = self.jobs.get_mut(&job) {
                    job.remove_holder(task, batch_id);
                }
            }
        }
        if self.batches[&batch_id].outstanding == 0 {
            self.close_batch(batch_id, false);
        }
        Ok(returned)
    }

    /// The worker could not compute a task.
    pub fn fail_task(
        &mut self,
        worker: WorkerId,
        batch_id: BatchId,
        task: u32,
        now: u64,
    ) -> Result<(), Rejection> {
        let batch = self
            .batches
            .get_mut(&batch_id)
            .ok_or(Rejection::UnknownBatch)?;
        if batch.worker != worker {
            return Err(Rejection::NotYourBatch);
        }
        let position = batch.position(task).ok_or(Rejection::TaskNotInBatch)?;
        if !batch.waiting[position] {
            return Ok(());
        }
        batch.waiting[position] = false;
        batch.outstanding -= 1;
        let done = batch.outstanding == 0;
        let job_id = batch.job;
        let max_failures = self.config.max_task_failures;
        if let Some(job) = self.jobs.get_mut(&job_id) {
            job.remove_holder(task, batch_id);
            let failures = job.record_failure(task);
            if failures >= max_failures {
                self.effects.push(Effect::TaskFailed {
                    job: job_id,
                    task,
                    reason: format!("task {task} failed on {failures} workers"),
                });
            }
        }
        if done {
            self.finish_batch(batch_id, now);
        }
        Ok(())
    }
}

fn remember_closed(worker: &mut WorkerState, batch: BatchId, tasks: &[u32], keep: usize) {
    worker
        .recently_closed
        .push_back((batch, TaskRanges::from_indices(tasks.iter().copied())));
    if worker.recently_closed.len() > keep {
        worker.recently_closed.pop_front();
    }
}

/// A digest in lowercase hex.
fn hex(digest: &crate::Digest) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
