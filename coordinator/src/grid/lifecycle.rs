//! A job's life: submitted, paused and resumed, cancelled, failed or done,
//! and its result read back from the store.

use super::*;

impl Grid {
    // ---- jobs ---------------------------------------------------------------

    pub async fn submit(&self, request: JobRequest) -> Result<JobStatus, ApiError> {
        let spec = request.spec;
        let tasks = request.tasks.unwrap_or_else(|| spec.default_tasks());
        spec.validate(tasks)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let redundancy = request.redundancy.unwrap_or(1);
        if redundancy == 0 || redundancy > self.config.max_redundancy {
            return Err(ApiError::BadRequest(format!(
                "redundancy must be between 1 and {}, got {redundancy}",
                self.config.max_redundancy
            )));
        }
        let quorum = request.quorum.unwrap_or(redundancy / 2 + 1);
        if quorum == 0 || quorum > redundancy {
            return Err(ApiError::BadRequest(format!(
                "quorum must be between 1 and the redundancy ({redundancy}), got {quorum}"
            )));
        }
        let max_replicas =
            request
                .max_replicas
                .unwrap_or(if redundancy > 1 { redundancy + 2 } else { 1 });
        if max_replicas < redundancy || max_replicas > 2 * self.config.max_redundancy {
            return Err(ApiError::BadRequest(format!(
                "max_replicas must be between the redundancy ({redundancy}) and {}, got {max_replicas}",
                2 * self.config.max_redundancy
            )));
        }
        let created_at = unix_ms();
        let id = self
            .store
            .insert_job(NewJob {
                spec: spec.clone(),
                tasks,
                redundancy,
                quorum,
                max_replicas,
                created_at,
            })
            .await?;
        let job = Arc::new(Job {
            id,
            spec: spec.clone(),
            tasks,
            redundancy,
            quorum,
            max_replicas,
            created_at,
            live: Mutex::new(JobLive {
                state: JobState::Queued,
                paused: false,
                started_at: None,
                finished_at: None,
                error: None,
                tasks_done: 0,
                collator: Some(Collator::new(spec, tasks)),
                result: None,
            }),
        });
        self.jobs.insert(id, job.clone());
        self.scheduler().add_job(JobPlan {
            id,
            tasks,
            redundancy,
            quorum,
            max_replicas,
        });
        tracing::info!(job = id, kernel = %job.spec.kind(), tasks, redundancy, "job submitted");
        self.job_event(&job, JobEvent::Submitted);
        self.dispatch();
        Ok(job.status(unix_ms()))
    }

    pub fn job(&self, id: u64) -> Option<Arc<Job>> {
        self.jobs.get(&id).map(|j| j.clone())
    }

    pub fn job_status(&self, id: u64) -> Result<JobStatus, ApiError> {
        self.job(id)
            .map(|j| j.status(unix_ms()))
            .ok_or_else(|| ApiError::NotFound(format!("no job {id}")))
    }

    pub fn list_jobs(&self) -> Vec<JobStatus> {
        let now = unix_ms();
        let mut jobs: Vec<JobStatus> = self.jobs.iter().map(|j| j.status(now)).collect();
        jobs.sort_by_key(|j| j.id);
        jobs
    }

    /// Applies `change` to a job that is not finished yet and stores the
    /// result; 404 for an unknown job, 409 for a finished one.
    async fn change_unfinished(
        &self,
        id: u64,
        change: impl FnOnce(&mut JobLive),
    ) -> Result<Arc<Job>, ApiError> {
        let job = self
            .job(id)
            .ok_or_else(|| ApiError::NotFound(format!("no job {id}")))?;
        let update = {
            let mut live = job.live();
            if live.state.is_finished() {
                return Err(ApiError::Conflict(format!(
                    "job {id} is already {}",
                    live.state.name()
                )));
            }
            change(&mut live);
            update_of(&job, &live)
        };
        self.store.update_job(update).await?;
        Ok(job)
    }

    pub async fn cancel(&self, id: u64) -> Result<JobStatus, ApiError> {
        let job = self
            .change_unfinished(id, |live| {
                live.state = JobState::Cancelled;
                live.finished_at = Some(unix_ms());
                live.collator = None;
            })
            .await?;
        self.remove_from_scheduler(id);
        tracing::info!(job = id, "job cancelled");
        self.job_event(&job, JobEvent::Cancelled);
        Ok(job.status(unix_ms()))
    }

    /// The result of a finished job, read back from the store.
    pub async fn results(&self, id: u64) -> Result<(Arc<Job>, JobResult), ApiError> {
        let job = self
            .job(id)
            .ok_or_else(|| ApiError::NotFound(format!("no job {id}")))?;
        let state = job.live().state;
        if state != JobState::Done {
            return Err(ApiError::Conflict(format!(
                "job {id} is {}; results are available once it is done",
                state.name()
            )));
        }
        let store = self.store.clone();
        let read = job.clone();
        let result = tokio::task::spawn_blocking(move || -> Result<JobResult, StoreError> {
            let kind = read.spec.kind();
            let mut collator = Collator::new(read.spec.clone(), read.tasks);
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
                    read.tasks
                )));
            }
            Ok(collator.result())
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
        Ok((job, result))
    }

    pub(super) fn remove_from_scheduler(&self, job: u64) {
        let effects = {
            let mut scheduler = self.scheduler();
            scheduler.remove_job(job);
            scheduler.take_effects()
        };
        // Removing a job only revokes batches; it never fails another job.
        let failed = self.apply_effects(effects);
        debug_assert!(failed.is_empty(), "{failed:?}");
        self.dispatch();
    }

    /// Marks a complete job done, stores its result summary, and releases it.
    pub(super) async fn finish_job(&self, job: &Arc<Job>) {
        let update = {
            let mut live = job.live();
            let Some(collator) = live.collator.as_ref().filter(|c| c.is_complete()) else {
                return;
            };
            if live.state.is_finished() {
                return;
            }
            live.result = Some(collator.summary());
            live.state = JobState::Done;
            live.finished_at = Some(unix_ms());
            live.started_at.get_or_insert(job.created_at);
            live.collator = None;
            update_of(job, &live)
        };
        if let Err(error) = self.store.update_job(update).await {
            tracing::error!(job = job.id, %error, "could not store a finished job; it will finish again on restart");
        }
        tracing::info!(job = job.id, "job done");
        self.job_event(job, JobEvent::Done);
        self.remove_from_scheduler(job.id);
    }

    pub(super) async fn fail_job(&self, id: u64, reason: String) {
        let Some(job) = self.job(id) else { return };
        let update = {
            let mut live = job.live();
            if live.state.is_finished() {
                return;
            }
            live.state = JobState::Failed;
            live.error = Some(reason.clone());
            live.finished_at = Some(unix_ms());
            live.collator = None;
            update_of(&job, &live)
        };
        if let Err(error) = self.store.update_job(update).await {
            tracing::error!(job = id, %error, "could not store a failed job");
        }
        tracing::warn!(job = id, %reason, "job failed");
        self.job_event(&job, JobEvent::Failed);
        self.remove_from_scheduler(id);
    }

    /// Stops (or restarts) handing out a job's tasks. Batches already out
    /// finish.
    pub async fn set_job_paused(&self, id: u64, paused: bool) -> Result<JobStatus, ApiError> {
        let job = self
            .change_unfinished(id, |live| live.paused = paused)
            .await?;
        self.scheduler().set_job_paused(id, paused);
        tracing::info!(job = id, paused, "job pause changed");
        self.job_event(
            &job,
            if paused {
                JobEvent::Paused
            } else {
                JobEvent::Resumed
            },
        );
        if !paused {
            self.dispatch();
        }
        Ok(job.status(unix_ms()))
    }
}
