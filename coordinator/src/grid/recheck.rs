//! Answers that stay right after a liar is caught late. When a donor is
//! quarantined, the scheduler reopens what it decided alone in the jobs it
//! holds in memory. This is the rest: every job with an answer stored from
//! that donor (a job that finished since, or one restored after a restart,
//! whose solo decisions the scheduler no longer remembers) has those tasks
//! computed again by other donors. A done job goes back to `rechecking`,
//! its answers readable meanwhile, and is `done` again once every such task
//! is settled; each answer found wrong is replaced in the store and the
//! result and counted in the job's `revised`.
//!
//! Done jobs are not held in memory: they are found in the store (a done
//! job with an answer from the donor), read back and made live again.
//! Re-checks run one at a time, so no done job is made live twice.
//!
//! Which tasks: those whose stored answer came from the donor. For a job at
//! redundancy 1 these are exactly what it decided on its own word; at
//! higher redundancy they may include tasks a quorum agreed on (the store
//! keeps no votes once a job is done), which costs a needless re-run and
//! never a wrong answer.

use super::*;
use crate::blobs::BlobStore;
use crate::inputs::TaskInputs;
use crate::jobs::{Lifecycle, Transition};

/// What the store holds of a job made live again.
pub(super) struct ReadBack {
    pub inputs: Option<TaskInputs>,
    pub collator: Collator,
    pub decided: Vec<u32>,
    pub votes: Vec<(u32, u64, [u8; 32])>,
}

/// Reads a job back from the store: its inputs, its stored results
/// collated, and the replica votes of its undecided tasks. Blocking.
pub(super) fn read_back(
    store: &Store,
    blobs: &BlobStore,
    id: u64,
    definition: &JobDefinition,
) -> anyhow::Result<ReadBack> {
    let inputs = super::wasm::load_inputs(blobs, definition)
        .map_err(|e| anyhow::anyhow!("cannot resume job {id}: {e}"))?;
    let kind = definition.spec.kind();
    let mut collator = Collator::new(definition.spec.clone(), definition.tasks);
    let mut decided = Vec::new();
    store.for_each_result(id, |task, bytes| {
        TaskOutput::decode(kind, bytes)
            .and_then(|o| collator.add(task, &o))
            .map_err(|e| StoreError::Corrupt(format!("job {id} task {task}: {e}")))?;
        decided.push(task);
        Ok(())
    })?;
    let votes = store.replicas(id)?;
    Ok(ReadBack {
        inputs,
        collator,
        decided,
        votes,
    })
}

impl Grid {
    /// Makes a job live from what the store holds: in the job table first
    /// (so a batch granted at once finds it), then in the scheduler with its
    /// stored answers decided. Whether its answers are all in already.
    pub(super) fn revive(
        &self,
        id: u64,
        definition: JobDefinition,
        lifecycle: Lifecycle,
        read: ReadBack,
    ) -> (Arc<Job>, bool) {
        let ReadBack {
            inputs,
            collator,
            decided,
            votes,
        } = read;
        let plan = definition.plan(id, inputs.as_ref());
        let paused = lifecycle.paused;
        let complete = collator.is_complete();
        let job = Arc::new(Job::new(
            id,
            definition,
            inputs,
            JobLive {
                lifecycle,
                tasks_done: collator.collated(),
                collator: Some(collator),
            },
        ));
        self.jobs.insert(id, job.clone());
        let mut scheduler = self.scheduler();
        scheduler.add_job(plan);
        for task in decided {
            scheduler.restore_decided(id, task);
        }
        for (task, donor, digest) in votes {
            scheduler.restore_vote(id, task, donor, digest);
        }
        scheduler.set_job_paused(id, paused);
        (job, complete)
    }

    /// After `donor` was quarantined: every done, running or rechecking job
    /// with answers stored from it has those tasks computed again. Once
    /// every job was looked at, the store forgets the recheck is pending
    /// (a crash before that has the next start do it again).
    pub(super) async fn recheck_answers_of(&self, donor: u64) {
        let _one_at_a_time = self.rechecks.lock().await;
        let mut looked_at_all = true;
        let mut jobs: Vec<Arc<Job>> = self
            .jobs
            .iter()
            .filter(|j| {
                matches!(
                    j.state(),
                    JobState::Done | JobState::Running | JobState::Rechecking
                )
            })
            .map(|j| j.clone())
            .collect();
        // Done jobs are in the store, not in memory.
        match self.stored_done_jobs_answered_by(donor).await {
            Ok(done) => jobs.extend(done.into_iter().filter(|j| !self.jobs.contains_key(&j.id))),
            Err(error) => {
                looked_at_all = false;
                tracing::error!(donor, %error, "cannot find the done jobs a liar answered in");
            }
        }
        for job in jobs {
            let (store, id) = (self.store.clone(), job.id);
            let tasks =
                match tokio::task::spawn_blocking(move || store.tasks_answered_by(id, &[donor]))
                    .await
                {
                    Ok(Ok(tasks)) => tasks,
                    Ok(Err(error)) => {
                        looked_at_all = false;
                        tracing::error!(job = id, donor, %error, "cannot find a liar's answers");
                        continue;
                    }
                    Err(error) => {
                        looked_at_all = false;
                        tracing::error!(job = id, donor, %error, "cannot find a liar's answers");
                        continue;
                    }
                };
            if tasks.is_empty() {
                continue;
            }
            let outcome = if job.state() == JobState::Done {
                self.reopen_done(&job, &tasks, donor).await
            } else {
                let reopened = self.scheduler().recheck(id, &tasks);
                tracing::warn!(
                    job = id,
                    donor,
                    reopened,
                    "a liar's answers are checked again"
                );
                Ok(())
            };
            if let Err(error) = outcome {
                looked_at_all = false;
                tracing::error!(job = id, donor, %error, "could not recheck a liar's answers");
            }
        }
        if looked_at_all {
            self.store.remember_rechecked(donor);
        }
        self.dispatch();
    }

    /// The done jobs of the store with an answer from `donor`.
    async fn stored_done_jobs_answered_by(&self, donor: u64) -> anyhow::Result<Vec<Arc<Job>>> {
        let store = self.store.clone();
        let jobs = tokio::task::spawn_blocking(move || {
            let mut jobs = Vec::new();
            for id in store.done_jobs_answered_by(donor)? {
                jobs.extend(store.stored_job(id)?);
            }
            Ok::<_, StoreError>(jobs)
        })
        .await??;
        Ok(jobs
            .into_iter()
            .map(super::history::job_from_store)
            .collect())
    }

    /// A done job with `tasks` answered by `donor`, caught lying since, goes
    /// back to rechecking them.
    async fn reopen_done(&self, old: &Arc<Job>, tasks: &[u32], donor: u64) -> anyhow::Result<()> {
        let mut lifecycle = old.live().lifecycle.clone();
        let event = lifecycle
            .apply(Transition::Recheck, &old.definition)
            .map_err(|refused| anyhow::anyhow!("{refused}"))?;
        let (store, blobs, id, definition) = (
            self.store.clone(),
            self.blobs.clone(),
            old.id,
            old.definition.clone(),
        );
        let read = tokio::task::spawn_blocking(move || read_back(&store, &blobs, id, &definition))
            .await??;
        // Nothing changed meanwhile: a second quarantine gets here only
        // after this one made it rechecking.
        if old.state() != JobState::Done {
            return Ok(());
        }
        let (job, _) = self.revive(id, old.definition.clone(), lifecycle.clone(), read);
        let reopened = self.scheduler().recheck(id, tasks);
        tracing::warn!(
            job = id,
            donor,
            reopened,
            "a done job's answers from a liar are checked again"
        );
        self.store.update_job(id, lifecycle).await?;
        self.job_event(&job, event);
        self.audit(
            super::audit::COORDINATOR,
            grid_protocol::api::AuditAction::JobRechecking,
            format!("job {id}"),
            format!("{reopened} answers came from donor {donor}, quarantined since; computing them again"),
        );
        if self.is_complete(&job) {
            self.finish_job(&job).await;
        }
        Ok(())
    }
}
