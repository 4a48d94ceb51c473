//! The results pipeline: every output is decoded and checked against its
//! task, verified where the coordinator can, recorded with the scheduler,
//! made durable, and only then collated and acknowledged.
//!
//! What the coordinator verifies itself: the shape and range of every output
//! (a count larger than its range, nonces outside it), every hashsearch nonce
//! a worker claims (re-hashed), and a sampled fraction of all outputs
//! (`verify_rate`, re-computed natively, wasm tasks too: see `verify.rs`).
//! A worker caught sending a wrong output is quarantined, and its frame is
//! discarded whole.
//!
//! Only results for tasks that a batch leased to the sender awaited when the
//! frame arrived are checked and counted; the rest are classified (duplicate,
//! stale or rejected) and never accepted, even if the batch is granted to the sender
//! while the frame is being checked (batch ids are predictable). The lookup
//! and the checks happen before the recording, outside the scheduler lock,
//! so a large frame never holds up dispatch.

use super::*;
use grid_protocol::DigestOnly;

/// One result of a frame after the checks.
pub(super) enum CheckedResult {
    /// A result for a task leased to the sender; its output decoded and fits
    /// the task.
    Leased {
        task: u32,
        bytes: Bytes,
        output: TaskOutput,
        digest: [u8; 32],
    },
    /// A digest-only result for a task leased to the sender, which was
    /// told to send one.
    Digest { task: u32, sent: DigestOnly },
    /// A result for a task the sender did not hold when the frame arrived:
    /// not checked, never counted.
    Unleased { task: u32 },
}

/// A frame's batch, looked up when the frame arrived.
pub(super) struct Resolved {
    /// The batch's job, if the batch was live and leased to the sender.
    job: Option<Arc<Job>>,
    /// For each result of the frame, whether the batch awaited its task.
    leased: Vec<bool>,
}

/// A re-check's answer for a task that had been decided before.
struct Recheck {
    task: u32,
    bytes: Bytes,
    output: TaskOutput,
}

impl Grid {
    /// Checks, stores and collates one results frame. Returns once every
    /// accepted result is durable; the caller then acknowledges the frame.
    #[tracing::instrument(level = "debug", skip_all, fields(batch = frame.batch, results = frame.results.len()))]
    pub async fn on_results(
        &self,
        worker: &WorkerConn,
        frame: ResultsFrame,
    ) -> Result<FrameOutcome, StoreError> {
        let resolved = match self.resolve_frame(worker, &frame) {
            Ok(resolved) => resolved,
            Err(outcome) => return Ok(outcome),
        };
        let batch = frame.batch;
        let checked = match self.check_frame(worker, &resolved, frame).await {
            Ok(checked) => checked,
            Err(outcome) => return Ok(outcome),
        };
        self.record_frame(worker, batch, resolved, checked).await
    }

    /// Finds the job a frame's batch belongs to. A quarantined donor's
    /// frames are refused whole, unread.
    pub(super) fn resolve_frame(
        &self,
        worker: &WorkerConn,
        frame: &ResultsFrame,
    ) -> Result<Resolved, FrameOutcome> {
        let count = frame.results.len() as u32;
        let scheduler = self.scheduler();
        if scheduler.standing(worker.donor).quarantined {
            drop(scheduler);
            // A quarantined donor's results are discarded unread.
            worker
                .results_rejected
                .fetch_add(u64::from(count), Ordering::Relaxed);
            return Err(FrameOutcome {
                rejected: count,
                ..FrameOutcome::default()
            });
        }
        let leased_job = scheduler.lease_of(worker.id, frame.batch);
        let leased = frame
            .results
            .iter()
            .map(|r| leased_job.is_some() && scheduler.awaits(frame.batch, r.task))
            .collect();
        drop(scheduler);
        Ok(Resolved {
            job: leased_job.and_then(|id| self.job(id)),
            leased,
        })
    }

    /// Checks a frame's outputs against its job; an output that cannot be
    /// right quarantines the donor and condemns the frame.
    pub(super) async fn check_frame(
        &self,
        worker: &WorkerConn,
        resolved: &Resolved,
        frame: ResultsFrame,
    ) -> Result<Vec<CheckedResult>, FrameOutcome> {
        let count = frame.results.len() as u32;
        match self
            .check_outputs(worker, frame.batch, resolved, frame.results)
            .await
        {
            Ok(checked) => Ok(checked),
            Err(reason) => {
                self.counters
                    .results_implausible
                    .fetch_add(u64::from(count), Ordering::Relaxed);
                worker
                    .results_rejected
                    .fetch_add(u64::from(count), Ordering::Relaxed);
                self.quarantine(worker.donor, reason).await;
                Err(FrameOutcome {
                    rejected: count,
                    ..FrameOutcome::default()
                })
            }
        }
    }

    /// Records checked results with the scheduler, stores what they decided,
    /// and collates it once durable.
    pub(super) async fn record_frame(
        &self,
        worker: &WorkerConn,
        batch: u64,
        resolved: Resolved,
        checked: Vec<CheckedResult>,
    ) -> Result<FrameOutcome, StoreError> {
        let now = self.now_ms();
        let job = resolved.job;
        let mut outcome = FrameOutcome::default();
        let mut results = Vec::new();
        let mut replicas = Vec::new();
        let mut to_collate = Vec::new();
        let mut rechecks = Vec::new();
        let mut fuel = 0u64;
        let effects = {
            let mut scheduler = self.scheduler();
            for result in checked {
                let (task, recorded, checked) = match (result, &job) {
                    (
                        CheckedResult::Leased {
                            task,
                            bytes,
                            output,
                            digest,
                        },
                        Some(job),
                    ) => (
                        task,
                        scheduler.record(worker.id, batch, task, digest, now),
                        Some((job, Some((bytes, output)), digest, 0, 0)),
                    ),
                    (CheckedResult::Digest { task, sent }, Some(job)) => (
                        task,
                        scheduler.record(worker.id, batch, task, sent.digest, now),
                        Some((job, None, sent.digest, sent.fuel, sent.len)),
                    ),
                    (
                        CheckedResult::Leased { task, .. }
                        | CheckedResult::Digest { task, .. }
                        | CheckedResult::Unleased { task },
                        _,
                    ) => (task, scheduler.refuse(worker.id, batch, task), None),
                };
                match (recorded, checked) {
                    (
                        Recorded::Accepted { decided, recheck },
                        Some((job, full, d, sent_fuel, sent_len)),
                    ) => {
                        outcome.accepted += 1;
                        let full = match full {
                            Some((bytes, output)) => {
                                if let TaskOutput::Wasm(run) = &output {
                                    fuel = fuel.saturating_add(run.fuel_used);
                                }
                                Some((bytes, output))
                            }
                            None => {
                                // A digest-only replica: its output stayed
                                // with the worker.
                                fuel = fuel.saturating_add(sent_fuel);
                                self.counters.replica_bytes_saved.fetch_add(
                                    u64::from(sent_len).saturating_sub(
                                        grid_protocol::frame::ResultsFrameBuilder::DIGEST_ENTRY_BYTES
                                            as u64,
                                    ),
                                    Ordering::Relaxed,
                                );
                                None
                            }
                        };
                        if job.replicated() {
                            replicas.push(ReplicaRow {
                                job: job.id,
                                task,
                                donor: worker.donor,
                                digest: d,
                                output: full.as_ref().map(|(b, _)| b.clone()).unwrap_or_default(),
                            });
                        }
                        // What the decision stands on: this result's bytes,
                        // or for a digest those of the replica sent in full.
                        let full = if !job.replicated() {
                            full
                        } else if !decided {
                            if let Some((bytes, _)) = &full {
                                job.replicas().keep(task, d, bytes.clone());
                            }
                            full
                        } else {
                            let mut outputs = job.replicas();
                            let found = full.or_else(|| {
                                let bytes = outputs.bytes_for(task, &d)?;
                                let output = TaskOutput::decode(job.spec().kind(), &bytes).ok()?;
                                Some((bytes, output))
                            });
                            if found.is_some() {
                                outputs.decided(task);
                            } else {
                                // Decided on digests alone: open the task again
                                // and have its next replica send the bytes.
                                outputs.ask_full(task);
                                scheduler.reopen_unstored(job.id, &[task]);
                                tracing::info!(
                                    job = job.id,
                                    task,
                                    "decided by digests without the output; asking for it"
                                );
                            }
                            found
                        };
                        let Some((bytes, output)) = full else {
                            continue;
                        };
                        if decided && recheck {
                            rechecks.push(Recheck {
                                task,
                                bytes,
                                output,
                            });
                        } else if decided {
                            results.push(ResultRow {
                                job: job.id,
                                task,
                                donor: worker.donor,
                                output: bytes,
                            });
                            to_collate.push((task, output));
                        }
                    }
                    (Recorded::Duplicate | Recorded::Stale, _) => outcome.duplicate += 1,
                    (Recorded::Accepted { .. }, None) => {
                        // `refuse` never accepts; counted as refused all the same.
                        outcome.rejected += 1;
                    }
                    (Recorded::Rejected(why), _) => {
                        tracing::debug!(
                            worker = worker.id,
                            batch,
                            task,
                            reason = why.reason(),
                            "result rejected"
                        );
                        outcome.rejected += 1;
                    }
                }
            }
            scheduler.take_effects()
        };
        if outcome.rejected > 0 {
            let total = worker
                .results_rejected
                .fetch_add(u64::from(outcome.rejected), Ordering::Relaxed)
                + u64::from(outcome.rejected);
            if total > self.config.max_rejected_results {
                let reason = format!("{total} results for tasks it was never leased");
                self.quarantine(worker.donor, reason).await;
            }
        }

        let inserted = match self.store.record(results, replicas).await {
            Ok(inserted) => inserted,
            Err(error) => {
                // Nothing of this frame is durable, so nothing of it is
                // acknowledged or collated: the tasks it decided are open
                // again, to be computed once the store can take them.
                if let Some(job) = &job {
                    let tasks: Vec<u32> = to_collate.iter().map(|(task, _)| *task).collect();
                    let reopened = self.scheduler().reopen_unstored(job.id, &tasks);
                    tracing::warn!(
                        job = job.id,
                        reopened,
                        "results not stored; their tasks are open again"
                    );
                }
                return Err(error);
            }
        };
        worker
            .tasks_done
            .fetch_add(u64::from(outcome.accepted), Ordering::Relaxed);
        worker.fuel_used.fetch_add(fuel, Ordering::Relaxed);
        if let Some(job) = &job {
            let to_collate: Vec<(u32, TaskOutput)> = to_collate
                .into_iter()
                .zip(inserted)
                .filter(|(_, new)| *new)
                .map(|(r, _)| r)
                .collect();
            self.collate(job, &to_collate);
            for recheck in rechecks {
                self.apply_recheck(job, recheck, worker.donor).await?;
            }
            if self.is_complete(job) {
                self.finish_job(job).await;
            }
        }
        self.apply_effects_async(effects).await;
        self.dispatch();
        Ok(outcome)
    }

    /// Decodes every output and checks it against its task. An output that
    /// cannot be right condemns the whole frame: the error names why.
    async fn check_outputs(
        &self,
        worker: &WorkerConn,
        batch: u64,
        resolved: &Resolved,
        results: Vec<grid_protocol::TaskResult>,
    ) -> Result<Vec<CheckedResult>, String> {
        let mut checked = Vec::with_capacity(results.len());
        let mut sampled = Vec::new();
        let Some(job) = resolved.job.as_deref() else {
            // Not a batch of the sender's: the scheduler classifies the results.
            return Ok(results
                .into_iter()
                .map(|r| CheckedResult::Unleased { task: r.task })
                .collect());
        };
        for (mut result, &leased) in results.into_iter().zip(&resolved.leased) {
            if !leased {
                checked.push(CheckedResult::Unleased { task: result.task });
                continue;
            }
            if let Some(sent) = result.digest_only {
                if !job.replicas().may_send_digest(result.task, batch) {
                    return Err(format!(
                        "task {} of job {}: a digest where the output was asked for",
                        result.task, job.id
                    ));
                }
                checked.push(CheckedResult::Digest {
                    task: result.task,
                    sent,
                });
                continue;
            }
            if let Some(sent) = result.uploaded {
                // From here on, as if the frame had carried it.
                result.output = self
                    .take_uploaded_output(batch, job, result.task, sent)
                    .await?;
            }
            let output = TaskOutput::decode(job.spec().kind(), &result.output)
                .and_then(|o| o.check(job.spec(), job.tasks(), result.task).map(|()| o))
                .map_err(|e| format!("task {} of job {}: {e}", result.task, job.id))?;
            if let (TaskOutput::Nonces(nonces), KernelSpec::Hashsearch(p)) = (&output, job.spec())
                && let Some(n) = nonces.iter().find(|&&n| {
                    !grid_kernels::hashsearch::meets(p.prefix.as_bytes(), n, p.difficulty)
                })
            {
                return Err(format!(
                    "task {} of job {}: nonce {n} does not have {} leading zero bits",
                    result.task, job.id, p.difficulty
                ));
            }
            if self.verify_sampled(job.id, result.task) {
                sampled.push(crate::verify::Sample {
                    task: result.task,
                    input: job
                        .inputs
                        .as_ref()
                        .map(|i| i.input(result.task))
                        .unwrap_or_default(),
                    output: result.output.clone(),
                });
            }
            checked.push(CheckedResult::Leased {
                task: result.task,
                // Digests only compare replicas; a single replica needs none.
                digest: if job.definition.replication.redundancy > 1 {
                    digest(&result.output)
                } else {
                    [0; 32]
                },
                bytes: result.output,
                output,
            });
        }
        if !sampled.is_empty() {
            let spec = job.spec().clone();
            let (tasks, job_id) = (job.tasks(), job.id);
            let verifier = self.verifier.clone();
            let verdict = tokio::task::spawn_blocking(move || {
                match verifier.first_wrong(&spec, tasks, sampled) {
                    Ok(Some(task)) => Err(format!(
                        "task {task} of job {job_id}: the coordinator's own computation differs"
                    )),
                    Ok(None) => Ok(()),
                    // The coordinator could not run it: nothing is judged.
                    Err(error) => {
                        tracing::warn!(job = job_id, %error, "sampled results not verified");
                        Ok(())
                    }
                }
            })
            .await
            .map_err(|e| format!("verification did not finish: {e}"))?;
            if let Err(reason) = verdict {
                self.counters
                    .results_verified_wrong
                    .fetch_add(1, Ordering::Relaxed);
                return Err(reason);
            }
            tracing::debug!(worker = worker.id, batch, "sampled results verified");
        }
        Ok(checked)
    }

    /// Whether the coordinator re-computes this task itself: a keyed hash, so
    /// a worker cannot tell which of its results will be checked.
    fn verify_sampled(&self, job: u64, task: u32) -> bool {
        let rate = self.config.verify_rate;
        if rate <= 0.0 {
            return false;
        }
        let key = id_from(&[
            &self.verify_seed.to_le_bytes(),
            &job.to_le_bytes(),
            &task.to_le_bytes(),
        ]);
        (key as f64 / grid_kernels::MAX_SAFE_INTEGER as f64) < rate
    }

    /// Folds newly stored outputs into the job's result.
    fn collate(&self, job: &Job, outputs: &[(u32, TaskOutput)]) {
        let mut live = job.live();
        let Some(collator) = live.collator.as_mut() else {
            return;
        };
        for (task, output) in outputs {
            if let Err(error) = collator.add(*task, output) {
                tracing::error!(job = job.id, task, %error, "collation refused a stored result");
                continue;
            }
            self.tasks_done.fetch_add(1, Ordering::Relaxed);
            if let TaskOutput::Wasm(outcome) = output {
                self.counters
                    .fuel_used
                    .fetch_add(outcome.fuel_used, Ordering::Relaxed);
            }
            if let (TaskOutput::Iterations(counts), KernelSpec::Mandelbrot(p)) =
                (output, job.spec())
            {
                self.monitor.publish_tile(
                    job.id,
                    job.definition.owner,
                    row_of(job.spec(), job.tasks(), *task),
                    p.width,
                    counts,
                );
            }
        }
        live.tasks_done = collator.collated();
        self.monitor.mark_progress(job.id);
    }

    /// A task decided on a distrusted donor's word has a second answer. If
    /// it differs, it replaces the first in the store and in the result.
    async fn apply_recheck(
        &self,
        job: &Job,
        recheck: Recheck,
        donor: u64,
    ) -> Result<(), StoreError> {
        let Recheck {
            task,
            bytes,
            output,
        } = recheck;
        let (store, job_id) = (self.store.clone(), job.id);
        let old = tokio::task::spawn_blocking(move || store.result_output(job_id, task))
            .await
            .map_err(|e| StoreError::Io(e.to_string()))??;
        if old.as_deref() == Some(&bytes[..]) {
            tracing::info!(job = job.id, task, "re-check confirmed the first answer");
            return Ok(());
        }
        self.store
            .replace_result(ResultRow {
                job: job.id,
                task,
                donor,
                output: bytes,
            })
            .await?;
        // Under the job's lock, never across an await.
        let revised = {
            let mut live = job.live();
            let Some(collator) = live.collator.as_mut() else {
                return Ok(());
            };
            let replaced = match old
                .as_deref()
                .map(|b| TaskOutput::decode(job.spec().kind(), b))
            {
                Some(Ok(old)) => collator.replace(task, &old, &output),
                _ => collator.add(task, &output),
            };
            live.tasks_done = collator.collated();
            match replaced {
                Ok(()) => {
                    tracing::warn!(job = job.id, task, "re-check corrected a wrong answer");
                    self.audit(
                        super::audit::COORDINATOR,
                        grid_protocol::api::AuditAction::AnswersRevised,
                        format!("job {}", job.id),
                        format!(
                            "task {task}: a re-check by donor {donor} differed from the stored \
                             answer, decided on the word of a donor caught lying since, and \
                             replaced it"
                        ),
                    );
                    self.apply(job, &mut live, crate::jobs::Transition::Revise)
                        .ok()
                }
                Err(error) => {
                    tracing::error!(job = job.id, task, %error, "could not replace a re-checked result");
                    None
                }
            }
        };
        if let (TaskOutput::Iterations(counts), KernelSpec::Mandelbrot(p)) = (&output, job.spec()) {
            self.monitor.publish_tile(
                job.id,
                job.definition.owner,
                row_of(job.spec(), job.tasks(), task),
                p.width,
                counts,
            );
        }
        self.monitor.mark_progress(job.id);
        if let Some(revised) = revised {
            // The count of revisions is part of the job's history.
            self.commit(job, revised).await?;
        }
        Ok(())
    }

    /// Whether every task of a live job is decided and collated.
    pub(super) fn is_complete(&self, job: &Job) -> bool {
        let collated = job
            .live()
            .collator
            .as_ref()
            .is_some_and(Collator::is_complete);
        collated
            && self
                .scheduler()
                .progress(job.id)
                .is_none_or(|(decided, total)| decided == total)
    }

    /// Stops giving a donor work: its results disagreed with a quorum or
    /// failed the coordinator's own checks.
    pub async fn quarantine(&self, donor: u64, reason: String) {
        let effects = {
            let mut scheduler = self.scheduler();
            scheduler.quarantine(donor, reason);
            scheduler.take_effects()
        };
        self.apply_effects_async(effects).await;
        self.dispatch();
    }
}
