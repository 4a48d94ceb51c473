//! A job's life in the grid: submitted, started, paused and resumed,
//! cancelled, failed or done, and its result read back from the store.
//!
//! Every change goes through one path: [`Grid::apply`] asks the job's
//! [`Lifecycle`] (which refuses illegal moves) under the job's lock and keeps
//! the scheduler in step in the same scope, then [`Grid::commit`] stores the
//! new lifecycle, tells monitors, and releases a finished job's tasks. Locks
//! are taken job first, scheduler second, and never the other way round.

use super::*;
use crate::jobs::{JobDefinition, Lifecycle, Refused, Transition};
use crate::users::Caller;
use grid_protocol::api::KernelRequest;
use grid_scheduler::Replication;

/// A transition applied in memory, to be committed.
pub(super) struct Applied {
    event: JobEvent,
    lifecycle: Lifecycle,
}

impl Grid {
    /// A new job for `caller`, who owns it.
    pub async fn submit(
        &self,
        caller: &Caller,
        request: JobRequest,
    ) -> Result<JobStatus, ApiError> {
        let bad = |e: &dyn std::fmt::Display| ApiError::BadRequest(e.to_string());
        self.check_running_limit(caller)?;
        let (spec, inputs, task_inputs) = match request.kernel {
            KernelRequest::BuiltIn(KernelSpec::Wasm(_)) => {
                return Err(bad(
                    &"a wasm job names an uploaded module, not a prepared one",
                ));
            }
            KernelRequest::BuiltIn(spec) => (spec, None, None),
            KernelRequest::Wasm(wasm) => {
                let prepared = self.prepare_wasm(caller, wasm, request.tasks).await?;
                let task_inputs = prepared.inputs.is_some().then_some(prepared.tasks.clone());
                let tasks = prepared.tasks.len();
                (prepared.spec, prepared.inputs, Some((tasks, task_inputs)))
            }
        };
        let (tasks, task_inputs) = match task_inputs {
            Some((tasks, inputs)) => (tasks, inputs),
            None => (request.tasks.unwrap_or_else(|| spec.default_tasks()), None),
        };
        spec.validate(tasks).map_err(|e| bad(&e))?;
        self.check_queued_limit(caller, tasks)?;
        let replication = Replication::new(
            request.redundancy,
            request.quorum,
            request.max_replicas,
            self.config.max_redundancy,
        )
        .map_err(|e| bad(&e))?;
        let definition = JobDefinition {
            owner: caller.user,
            priority: request.priority.unwrap_or(0),
            spec,
            tasks,
            replication,
            created_at: unix_ms(),
            inputs,
        };
        let id = self.store.insert_job(definition.clone()).await?;
        let collator = Collator::new(definition.spec.clone(), tasks);
        let job = Arc::new(Job::new(
            id,
            definition,
            task_inputs,
            JobLive {
                lifecycle: Lifecycle::queued(),
                tasks_done: 0,
                collator: Some(collator),
            },
        ));
        self.jobs.insert(id, job.clone());
        self.scheduler().add_job(job.plan());
        tracing::info!(job = id, owner = %caller.name, kernel = %job.spec().kind(), tasks, redundancy = replication.redundancy, "job submitted");
        self.job_event(&job, JobEvent::Submitted);
        self.audit(
            &caller.name,
            grid_protocol::api::AuditAction::JobSubmitted,
            format!("job {id}"),
            format!(
                "{}, {tasks} tasks, redundancy {}, priority {}",
                job.spec().kind(),
                replication.redundancy,
                job.definition.priority
            ),
        );
        self.dispatch();
        Ok(self.status_of(&job))
    }

    /// 429 if `caller` has as many jobs queued or running as it may.
    fn check_running_limit(&self, caller: &Caller) -> Result<(), ApiError> {
        let Some(max) = self.limits_of(caller.user).max_running else {
            return Ok(());
        };
        let running = self
            .jobs
            .iter()
            .filter(|j| j.definition.owner == caller.user && !j.state().is_finished())
            .count();
        if running >= max as usize {
            return Err(ApiError::LimitReached(format!(
                "user {} has {running} jobs queued or running, its limit (max_running {max}); \
                 wait for one to finish or cancel one",
                caller.name
            )));
        }
        Ok(())
    }

    /// 429 if `tasks` more would put `caller` over its tasks not yet decided.
    fn check_queued_limit(&self, caller: &Caller, tasks: u32) -> Result<(), ApiError> {
        let Some(max) = self.limits_of(caller.user).max_queued else {
            return Ok(());
        };
        let queued: u64 = self
            .jobs
            .iter()
            .filter(|j| j.definition.owner == caller.user && !j.state().is_finished())
            .map(|j| u64::from(j.tasks()).saturating_sub(u64::from(j.live().tasks_done)))
            .sum();
        if queued + u64::from(tasks) > max {
            return Err(ApiError::LimitReached(format!(
                "user {} has {queued} tasks queued; {tasks} more would pass its limit \
                 (max_queued {max})",
                caller.name
            )));
        }
        Ok(())
    }

    pub(super) fn limits_of(&self, user: crate::users::UserId) -> grid_protocol::api::UserLimits {
        self.users().get(user).map(|u| u.limits).unwrap_or_default()
    }

    /// A job held in memory: one not finished (see [`Grid::job_for`] for
    /// any job).
    pub fn job(&self, id: u64) -> Option<Arc<Job>> {
        self.jobs.get(&id).map(|j| j.clone())
    }

    /// A job `caller` may see, from memory or, finished, from the store:
    /// another user's job is 404, exactly as one that does not exist.
    pub(super) fn job_for(&self, caller: &Caller, id: u64) -> Result<Arc<Job>, ApiError> {
        let job = match self.job(id) {
            Some(job) => Some(job),
            None => self.stored_job(id)?,
        };
        job.filter(|job| caller.may_see(job.definition.owner))
            .ok_or_else(|| ApiError::NotFound(format!("no job {id}")))
    }

    pub fn job_status(&self, caller: &Caller, id: u64) -> Result<JobStatus, ApiError> {
        self.job_for(caller, id).map(|j| self.status_of(&j))
    }

    /// Every job `caller` may see, by id, finished ones read from the
    /// store. It grows with history: prefer [`Grid::list_jobs_page`].
    pub fn list_jobs(&self, caller: &Caller) -> Vec<JobStatus> {
        let query = grid_protocol::api::JobQuery {
            limit: u32::MAX,
            ..Default::default()
        };
        let mut jobs = self.list_jobs_page(caller, &query).jobs;
        jobs.reverse();
        jobs
    }

    /// Applies `transition` to a job held locked as `live`: the lifecycle
    /// decides, a finished job drops its collator, and a pause or resume
    /// reaches the scheduler in the same lock scope, so the two never
    /// disagree. Nothing is stored or announced yet: see [`Grid::commit`].
    pub(super) fn apply(
        &self,
        job: &Job,
        live: &mut JobLive,
        transition: Transition,
    ) -> Result<Applied, Refused> {
        let event = live.lifecycle.apply(transition, &job.definition)?;
        if matches!(event, JobEvent::Paused | JobEvent::Resumed) {
            self.scheduler()
                .set_job_paused(job.id, live.lifecycle.paused);
        }
        if live.lifecycle.state.is_finished() {
            live.collator = None;
        }
        Ok(Applied {
            event,
            lifecycle: live.lifecycle.clone(),
        })
    }

    /// Stores an applied transition, tells monitors, and hands the
    /// scheduler what follows from it: a finished job's batches are revoked,
    /// a resumed job's tasks go out.
    pub(super) async fn commit(&self, job: &Job, applied: Applied) -> Result<(), StoreError> {
        let Applied { event, lifecycle } = applied;
        let finished = lifecycle.state.is_finished();
        let stored = self.store.update_job(job.id, lifecycle).await;
        if let Err(error) = &stored {
            tracing::error!(job = job.id, ?event, %error, "could not store a job's change; it holds until a restart");
        }
        tracing::info!(job = job.id, ?event, "job changed");
        self.job_event(job, event);
        if finished {
            if stored.is_ok() {
                // From here on the store speaks for it.
                self.jobs.remove(&job.id);
            }
            self.remove_from_scheduler(job.id);
        } else if event == JobEvent::Resumed {
            self.dispatch();
        }
        stored
    }

    /// [`Grid::apply`] then [`Grid::commit`], for a transition asked for by
    /// a user: 404 for an unknown job, 409 for one the transition does not
    /// fit.
    #[tracing::instrument(skip(self), fields(job = id))]
    async fn transition(
        &self,
        caller: &Caller,
        id: u64,
        transition: Transition,
    ) -> Result<JobStatus, ApiError> {
        let job = self.job_for(caller, id)?;
        let applied = {
            let mut live = job.live();
            self.apply(&job, &mut live, transition)
        };
        let applied = applied
            .map_err(|Refused(state)| ApiError::Conflict(format!("job {id} is already {state}")))?;
        let action = match applied.event {
            JobEvent::Paused => Some(grid_protocol::api::AuditAction::JobPaused),
            JobEvent::Resumed => Some(grid_protocol::api::AuditAction::JobResumed),
            JobEvent::Cancelled => Some(grid_protocol::api::AuditAction::JobCancelled),
            _ => None,
        };
        self.commit(&job, applied).await?;
        if let Some(action) = action {
            self.audit(&caller.name, action, format!("job {id}"), String::new());
        }
        Ok(self.status_of(&job))
    }

    pub async fn cancel(&self, caller: &Caller, id: u64) -> Result<JobStatus, ApiError> {
        self.transition(caller, id, Transition::Cancel { at: unix_ms() })
            .await
    }

    /// Stops (or restarts) handing out a job's tasks. Batches already out
    /// finish.
    pub async fn set_job_paused(
        &self,
        caller: &Caller,
        id: u64,
        paused: bool,
    ) -> Result<JobStatus, ApiError> {
        let transition = if paused {
            Transition::Pause
        } else {
            Transition::Resume
        };
        self.transition(caller, id, transition).await
    }

    /// A queued job whose first batch was just sent is running. Called by
    /// dispatch, which cannot wait: the change is stored in the background.
    pub(super) fn start_job(&self, job: &Arc<Job>) {
        let applied = {
            let mut live = job.live();
            if live.lifecycle.state != JobState::Queued {
                return;
            }
            self.apply(job, &mut live, Transition::Start { at: unix_ms() })
        };
        let Ok(Applied { event, lifecycle }) = applied else {
            return;
        };
        tracing::info!(job = job.id, "job running");
        self.job_event(job, event);
        let (store, id) = (self.store.clone(), job.id);
        tokio::spawn(async move {
            if let Err(error) = store.update_job(id, lifecycle).await {
                tracing::error!(job = id, %error, "could not store a job's start");
            }
        });
    }

    /// Marks a job done if every task is collated, with its result summary.
    pub(super) async fn finish_job(&self, job: &Arc<Job>) {
        let applied = {
            let mut live = job.live();
            let Some(result) = live
                .collator
                .as_ref()
                .filter(|c| c.is_complete())
                .map(Collator::summary)
            else {
                return;
            };
            self.apply(
                job,
                &mut live,
                Transition::Finish {
                    result,
                    at: unix_ms(),
                },
            )
        };
        if let Ok(applied) = applied {
            // A store error is logged; the job finishes again on restart.
            let _ = self.commit(job, applied).await;
        }
    }

    /// Fails a job that cannot be completed (a task without quorum, or one
    /// that failed on too many workers).
    pub(super) async fn fail_job(&self, id: u64, reason: String) {
        let Some(job) = self.job(id) else { return };
        tracing::warn!(job = id, %reason, "job failed");
        let applied = {
            let mut live = job.live();
            self.apply(
                &job,
                &mut live,
                Transition::Fail {
                    reason,
                    at: unix_ms(),
                },
            )
        };
        if let Ok(applied) = applied {
            let _ = self.commit(&job, applied).await;
        }
    }

    /// The result of a finished job, read back from the store.
    pub async fn results(
        &self,
        caller: &Caller,
        id: u64,
    ) -> Result<(Arc<Job>, JobResult), ApiError> {
        let job = self.job_for(caller, id)?;
        let state = job.state();
        // A job being rechecked has every answer; some may still change.
        if !matches!(state, JobState::Done | JobState::Rechecking) {
            return Err(ApiError::Conflict(format!(
                "job {id} is {state}; results are available once it is done"
            )));
        }
        let store = self.store.clone();
        let read = job.clone();
        let names = match job.definition.inputs {
            Some(_) => Some(self.task_names(&job).await?),
            None => None,
        };
        let result = tokio::task::spawn_blocking(move || -> Result<JobResult, StoreError> {
            let kind = read.spec().kind();
            let mut collator = Collator::for_export(read.spec().clone(), read.tasks());
            store.for_each_result(read.id, |task, bytes| {
                TaskOutput::decode(kind, bytes)
                    .and_then(|o| collator.add(task, &o))
                    .map_err(|e| StoreError::Corrupt(format!("job {} task {task}: {e}", read.id)))
            })?;
            if !collator.is_complete() {
                return Err(StoreError::Corrupt(format!(
                    "job {} is done but has {} of {} results",
                    read.id,
                    collator.collated(),
                    read.tasks()
                )));
            }
            let mut result = collator.result();
            if let (JobResult::Wasm { tasks }, Some(names)) = (&mut result, names) {
                for task in tasks {
                    if let Some(name) = names.get(task.task as usize) {
                        task.name.clone_from(name);
                    }
                }
            }
            Ok(result)
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
        Ok((job, result))
    }

    /// A wasm job's task names (line numbers or file names), from its
    /// inputs in memory or, for a finished job, from the blob store.
    async fn task_names(&self, job: &Arc<Job>) -> Result<Vec<String>, ApiError> {
        if let Some(inputs) = &job.inputs {
            return Ok(inputs.names().to_vec());
        }
        let definition = job.definition.clone();
        let blobs = self.blobs.clone();
        tokio::task::spawn_blocking(move || super::wasm::load_inputs(&blobs, &definition))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map(|inputs| inputs.map(|i| i.names().to_vec()).unwrap_or_default())
            .map_err(|e| ApiError::Internal(format!("job {}'s inputs: {e}", job.id)))
    }

    /// What task `task` of a wasm job wrote to stdout, once decided.
    pub async fn task_output(
        &self,
        caller: &Caller,
        id: u64,
        task: u32,
    ) -> Result<Vec<u8>, ApiError> {
        let job = self.job_for(caller, id)?;
        if job.spec().kind() != grid_kernels::KernelKind::Wasm {
            return Err(ApiError::BadRequest(format!(
                "job {id} runs {}; only wasm tasks have outputs of their own",
                job.spec().kind()
            )));
        }
        if task >= job.tasks() {
            return Err(ApiError::NotFound(format!(
                "job {id} has {} tasks; there is no task {task}",
                job.tasks()
            )));
        }
        let store = self.store.clone();
        let bytes = tokio::task::spawn_blocking(move || store.result_output(id, task))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??
            .ok_or_else(|| {
                ApiError::NotFound(format!("task {task} of job {id} is not done yet"))
            })?;
        match TaskOutput::decode(grid_kernels::KernelKind::Wasm, &bytes) {
            Ok(TaskOutput::Wasm(outcome)) => Ok(outcome.stdout),
            _ => Err(ApiError::Internal(format!(
                "job {id} task {task}: the stored output is not a wasm outcome"
            ))),
        }
    }

    pub(super) fn remove_from_scheduler(&self, job: u64) {
        let effects = {
            let mut scheduler = self.scheduler();
            scheduler.remove_job(job);
            scheduler.take_effects()
        };
        // Removing a job only revokes batches; it never fails another job.
        let (failed, _) = self.apply_effects(effects);
        debug_assert!(failed.is_empty(), "{failed:?}");
        self.dispatch();
    }
}
