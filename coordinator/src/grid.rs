//! The coordinator's state and everything that changes it: jobs submitted,
//! cancelled, finished; workers joining and leaving; batches dispatched;
//! results checked, stored, acknowledged and collated. The HTTP API and the
//! worker sockets are thin layers over the operations here.
//!
//! Locking: the scheduler sits behind one mutex, held only for short,
//! synchronous decisions; each job's collator behind its own. No lock is held
//! across an `.await`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use dashmap::DashMap;
use grid_kernels::{Collator, JobResult, KernelSpec, OutputError, TaskOutput};
use grid_protocol::{
    Batch, CloseCode, CoordinatorMessage, Hello, ResultsFrame, TaskRanges, WorkerKind,
};
use grid_scheduler::{Effect, JobPlan, Recorded, Scheduler};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use crate::config::ServerConfig;
use crate::jobs::{Job, JobLive, JobState, JobStatus};
use crate::metrics::{Histogram, LATENCY_BOUNDS};
use crate::monitor::{Monitor, tile_frame};
use crate::store::{JobUpdate, NewJob, ReplicaRow, ResultRow, Store, StoreError};

/// Messages queued for one worker's socket.
#[derive(Debug)]
pub enum Outbound {
    Text(String),
    Close(CloseCode, String),
}

/// A connected worker.
#[derive(Debug)]
pub struct WorkerConn {
    pub id: u64,
    pub hello: Hello,
    pub donor: u64,
    pub addr: Option<SocketAddr>,
    pub connected_at: u64,
    outbox: mpsc::Sender<Outbound>,
    pub tasks_done: AtomicU64,
    pub results_rejected: AtomicU64,
    pub paused: AtomicBool,
}

impl WorkerConn {
    /// Queues a message without waiting. A worker whose queue is full is not
    /// reading; the message is dropped and false returned.
    pub fn send(&self, message: &CoordinatorMessage) -> bool {
        self.outbox
            .try_send(Outbound::Text(message.encode()))
            .is_ok()
    }

    pub fn close(&self, code: CloseCode, reason: impl Into<String>) {
        let _ = self.outbox.try_send(Outbound::Close(code, reason.into()));
    }
}

/// A worker as `GET /api/workers` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerInfo {
    pub id: u64,
    pub kind: WorkerKind,
    pub threads: u32,
    pub name: Option<String>,
    pub session: Option<String>,
    pub donor: u64,
    pub addr: Option<String>,
    pub connected_at: u64,
    pub paused: bool,
    pub tasks_done: u64,
    pub tasks_in_flight: u32,
    pub results_rejected: u64,
}

/// The body of `POST /api/jobs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    pub kernel: String,
    #[serde(default = "empty_object")]
    pub params: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redundancy: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replicas: Option<u32>,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

/// An error for an API caller, with the HTTP status it maps to.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        ApiError::Internal(e.to_string())
    }
}

/// What came of one results frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameOutcome {
    pub accepted: u32,
    pub duplicate: u32,
    pub rejected: u32,
}

/// A result whose output decoded and fits its task.
struct CheckedResult {
    task: u32,
    bytes: Vec<u8>,
    output: Option<TaskOutput>,
    digest: [u8; 32],
}

/// Counters that are not the scheduler's.
#[derive(Debug, Default)]
pub struct GridCounters {
    pub results_implausible: AtomicU64,
    pub connections_total: AtomicU64,
    pub closes: Mutex<HashMap<&'static str, u64>>,
}

#[derive(Debug)]
pub struct Grid {
    config: ServerConfig,
    scheduler: Mutex<Scheduler>,
    jobs: DashMap<u64, Arc<Job>>,
    workers: DashMap<u64, Arc<WorkerConn>>,
    store: Store,
    started: tokio::time::Instant,
    epoch: u64,
    next_worker: AtomicU64,
    pub counters: GridCounters,
    monitor: Monitor,
    /// Results made durable since the coordinator started.
    tasks_completed: AtomicU64,
    pub batch_latency: Histogram,
}

pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A stable 53-bit id from some bytes (so it is exact in JavaScript too).
fn id_from(parts: &[&[u8]]) -> u64 {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    let digest = hasher.finalize();
    u64::from_le_bytes(digest[..8].try_into().expect("8 bytes")) & grid_kernels::MAX_SAFE_INTEGER
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl Grid {
    /// Opens the store under the data directory and restores every job in it:
    /// finished jobs as records, unfinished ones back into the scheduler with
    /// their durable results collated, ready to carry on.
    pub async fn open(config: ServerConfig) -> anyhow::Result<Arc<Grid>> {
        let store = Store::open(&config.data_dir, config.durability)?;
        let epoch = store.epoch()?;
        let mut scheduler = Scheduler::new(config.scheduler.clone());
        // Batch ids of this run start above every earlier run's.
        scheduler.set_batch_floor(epoch << 32);
        let grid = Arc::new(Grid {
            scheduler: Mutex::new(scheduler),
            jobs: DashMap::new(),
            workers: DashMap::new(),
            store,
            started: tokio::time::Instant::now(),
            epoch,
            next_worker: AtomicU64::new(1),
            counters: GridCounters::default(),
            monitor: Monitor::new(),
            tasks_completed: AtomicU64::new(0),
            batch_latency: Histogram::new(LATENCY_BOUNDS),
            config,
        });
        let restore = grid.clone();
        let complete = tokio::task::spawn_blocking(move || restore.restore()).await??;
        for job in complete {
            grid.finish_job(&job).await;
        }
        Ok(grid)
    }

    fn restore(&self) -> anyhow::Result<Vec<Arc<Job>>> {
        let mut complete = Vec::new();
        let mut resumed = 0;
        for stored in self.store.load_jobs()? {
            let finished = stored.state.is_finished();
            let mut collator = None;
            let mut tasks_done = if stored.state == JobState::Done {
                stored.tasks
            } else {
                0
            };
            if !finished {
                let kind = stored.spec.kind();
                let mut c = Collator::new(stored.spec.clone(), stored.tasks);
                let mut scheduler = self.scheduler();
                scheduler.add_job(JobPlan {
                    id: stored.id,
                    tasks: stored.tasks,
                    redundancy: stored.redundancy,
                    quorum: stored.quorum,
                    max_replicas: stored.max_replicas,
                });
                self.store.for_each_result(stored.id, |task, bytes| {
                    let output = TaskOutput::decode(kind, bytes)
                        .and_then(|o| c.add(task, &o))
                        .map_err(|e| {
                            StoreError::Corrupt(format!("job {} task {task}: {e}", stored.id))
                        });
                    output?;
                    scheduler.restore_decided(stored.id, task);
                    Ok(())
                })?;
                for (task, donor, digest) in self.store.replicas(stored.id)? {
                    scheduler.restore_vote(stored.id, task, donor, digest);
                }
                scheduler.set_job_paused(stored.id, stored.paused);
                tasks_done = c.collated();
                collator = Some(c);
                resumed += 1;
            }
            let job = Arc::new(Job {
                id: stored.id,
                spec: stored.spec,
                tasks: stored.tasks,
                redundancy: stored.redundancy,
                quorum: stored.quorum,
                max_replicas: stored.max_replicas,
                created_at: stored.created_at,
                live: Mutex::new(JobLive {
                    state: stored.state,
                    paused: stored.paused,
                    started_at: stored.started_at,
                    finished_at: stored.finished_at,
                    error: stored.error,
                    tasks_done,
                    collator,
                    result: stored.result,
                }),
            });
            if !finished
                && job
                    .live
                    .lock()
                    .expect("job lock")
                    .collator
                    .as_ref()
                    .is_some_and(Collator::is_complete)
            {
                complete.push(job.clone());
            }
            self.jobs.insert(job.id, job);
        }
        tracing::info!(
            jobs = self.jobs.len(),
            resumed,
            epoch = self.epoch,
            "store opened"
        );
        Ok(complete)
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn monitor(&self) -> &Monitor {
        &self.monitor
    }

    /// Results made durable since the coordinator started.
    pub fn tasks_completed(&self) -> u64 {
        self.tasks_completed.load(Ordering::Relaxed)
    }

    /// Tells monitors about a job.
    fn job_event(&self, job: &Job, event: &str) {
        if self.monitor.active() {
            self.monitor.publish(
                &serde_json::json!({"type": "job", "event": event, "job": job.status(unix_ms())}),
            );
        }
    }

    fn scheduler(&self) -> MutexGuard<'_, Scheduler> {
        self.scheduler.lock().expect("scheduler lock")
    }

    /// Milliseconds since the coordinator started (monotonic).
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub fn scheduler_counters(&self) -> grid_scheduler::Counters {
        self.scheduler().counters().clone()
    }

    // ---- jobs ---------------------------------------------------------------

    pub async fn submit(&self, request: JobRequest) -> Result<JobStatus, ApiError> {
        let spec = KernelSpec::from_parts(&request.kernel, request.params)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
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
        self.job_event(&job, "submitted");
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

    pub async fn cancel(&self, id: u64) -> Result<JobStatus, ApiError> {
        let job = self
            .job(id)
            .ok_or_else(|| ApiError::NotFound(format!("no job {id}")))?;
        let update = {
            let mut live = job.live.lock().expect("job lock");
            if live.state.is_finished() {
                return Err(ApiError::Conflict(format!(
                    "job {id} is already {}",
                    live.state.name()
                )));
            }
            live.state = JobState::Cancelled;
            live.finished_at = Some(unix_ms());
            live.collator = None;
            update_of(&job, &live)
        };
        self.store.update_job(update).await?;
        self.remove_from_scheduler(id);
        tracing::info!(job = id, "job cancelled");
        self.job_event(&job, "cancelled");
        Ok(job.status(unix_ms()))
    }

    /// The result of a finished job, read back from the store.
    pub async fn results(&self, id: u64) -> Result<(Arc<Job>, JobResult), ApiError> {
        let job = self
            .job(id)
            .ok_or_else(|| ApiError::NotFound(format!("no job {id}")))?;
        let state = job.live.lock().expect("job lock").state;
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

    fn remove_from_scheduler(&self, job: u64) {
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
    async fn finish_job(&self, job: &Arc<Job>) {
        let update = {
            let mut live = job.live.lock().expect("job lock");
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
        self.job_event(job, "done");
        self.remove_from_scheduler(job.id);
    }

    async fn fail_job(&self, id: u64, reason: String) {
        let Some(job) = self.job(id) else { return };
        let update = {
            let mut live = job.live.lock().expect("job lock");
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
        self.job_event(&job, "failed");
        self.remove_from_scheduler(id);
    }

    /// Stops (or restarts) handing out a job's tasks. Batches already out
    /// finish.
    pub async fn set_job_paused(&self, id: u64, paused: bool) -> Result<JobStatus, ApiError> {
        let job = self
            .job(id)
            .ok_or_else(|| ApiError::NotFound(format!("no job {id}")))?;
        let update = {
            let mut live = job.live.lock().expect("job lock");
            if live.state.is_finished() {
                return Err(ApiError::Conflict(format!(
                    "job {id} is already {}",
                    live.state.name()
                )));
            }
            live.paused = paused;
            update_of(&job, &live)
        };
        self.store.update_job(update).await?;
        self.scheduler().set_job_paused(id, paused);
        tracing::info!(job = id, paused, "job pause changed");
        self.job_event(&job, if paused { "paused" } else { "resumed" });
        if !paused {
            self.dispatch();
        }
        Ok(job.status(unix_ms()))
    }

    /// Publishes coalesced job progress; with `sample`, also throughput and
    /// worker figures. Called on a timer.
    pub fn monitor_tick(&self, sample: bool) {
        if !self.monitor.active() {
            return;
        }
        for id in self.monitor.take_dirty() {
            if let Some(job) = self.job(id) {
                self.job_event(&job, "progress");
            }
        }
        if sample {
            let workers = self.workers();
            let totals: Vec<(u64, u64)> = workers.iter().map(|w| (w.id, w.tasks_done)).collect();
            let threads = workers.iter().map(|w| u64::from(w.threads)).sum();
            let (throughput, rates) =
                self.monitor
                    .sample(self.now_ms(), self.tasks_completed(), &totals, threads);
            self.monitor
                .publish(&serde_json::json!({"type": "throughput", "sample": throughput}));
            let stats: Vec<serde_json::Value> = workers
                .iter()
                .map(|w| {
                    serde_json::json!({
                        "id": w.id,
                        "tasks_done": w.tasks_done,
                        "tasks_in_flight": w.tasks_in_flight,
                        "rate": rates.get(&w.id).copied().unwrap_or(0.0),
                        "paused": w.paused,
                    })
                })
                .collect();
            self.monitor
                .publish(&serde_json::json!({"type": "workers", "workers": stats}));
        }
    }

    /// Tile frames for the parts of running Mandelbrot images finished so
    /// far, for a monitor that just connected.
    pub fn image_tiles_so_far(&self) -> Vec<Vec<u8>> {
        let mut tiles = Vec::new();
        for job in self.jobs.iter() {
            let KernelSpec::Mandelbrot(p) = &job.spec else {
                continue;
            };
            let live = job.live.lock().expect("job lock");
            let Some(collator) = live.collator.as_ref() else {
                continue;
            };
            let Some(image) = collator.image() else {
                continue;
            };
            let width = p.width as usize;
            // Runs of consecutive finished tasks are consecutive rows.
            let mut task = 0;
            while task < collator.tasks() {
                if !collator.contains(task) {
                    task += 1;
                    continue;
                }
                let start = task;
                while task < collator.tasks() && collator.contains(task) {
                    task += 1;
                }
                let first = row_of(&job.spec, job.tasks, start);
                let end = if task == job.tasks {
                    p.height
                } else {
                    row_of(&job.spec, job.tasks, task)
                };
                tiles.push(tile_frame(
                    job.id,
                    first,
                    p.width,
                    &image[first as usize * width..end as usize * width],
                ));
            }
        }
        tiles
    }

    /// Renders `GET /metrics`.
    pub fn metrics(&self) -> String {
        use crate::metrics::family;
        self.record_batch_latencies();
        let mut out = String::new();
        let mut states: HashMap<&'static str, f64> = HashMap::new();
        for job in self.jobs.iter() {
            *states
                .entry(job.live.lock().expect("job lock").state.name())
                .or_default() += 1.0;
        }
        let state_samples: Vec<(String, f64)> =
            ["queued", "running", "done", "failed", "cancelled"]
                .iter()
                .map(|s| {
                    (
                        format!("state=\"{s}\""),
                        states.get(s).copied().unwrap_or(0.0),
                    )
                })
                .collect();
        fn as_refs(v: &[(String, f64)]) -> Vec<(&str, f64)> {
            v.iter().map(|(l, x)| (l.as_str(), *x)).collect()
        }
        family(
            &mut out,
            "grid_jobs",
            "gauge",
            "Jobs by state.",
            &as_refs(&state_samples),
        );
        let c = self.scheduler_counters();
        family(
            &mut out,
            "grid_tasks_issued_total",
            "counter",
            "Tasks sent to workers, including re-issues and copies.",
            &[("", c.tasks_issued as f64)],
        );
        family(
            &mut out,
            "grid_tasks_reissued_total",
            "counter",
            "Tasks sent again after a lease was lost.",
            &[("", c.tasks_reissued as f64)],
        );
        family(
            &mut out,
            "grid_tasks_speculative_total",
            "counter",
            "Straggler copies sent to idle workers.",
            &[("", c.tasks_speculative as f64)],
        );
        family(
            &mut out,
            "grid_tasks_completed_total",
            "counter",
            "Task results made durable and collated.",
            &[("", self.tasks_completed() as f64)],
        );
        family(
            &mut out,
            "grid_leases_expired_total",
            "counter",
            "Batch leases that expired.",
            &[("", c.leases_expired as f64)],
        );
        family(
            &mut out,
            "grid_results_total",
            "counter",
            "Results received from workers, by outcome.",
            &[
                ("outcome=\"accepted\"", c.results_accepted as f64),
                (
                    "outcome=\"duplicate\"",
                    (c.results_duplicate + c.results_stale) as f64,
                ),
                ("outcome=\"rejected\"", c.results_rejected as f64),
                (
                    "outcome=\"implausible\"",
                    self.counters.results_implausible.load(Ordering::Relaxed) as f64,
                ),
            ],
        );
        family(
            &mut out,
            "grid_quorum_disagreements_total",
            "counter",
            "Tasks whose replicas disagreed.",
            &[("", c.quorum_disagreements as f64)],
        );
        let (mut native, mut browser) = (0.0, 0.0);
        for w in self.workers.iter() {
            match w.hello.kind {
                WorkerKind::Native => native += 1.0,
                WorkerKind::Browser => browser += 1.0,
            }
        }
        family(
            &mut out,
            "grid_workers",
            "gauge",
            "Connected workers by kind.",
            &[("kind=\"native\"", native), ("kind=\"browser\"", browser)],
        );
        family(
            &mut out,
            "grid_connections_total",
            "counter",
            "Worker connections accepted.",
            &[(
                "",
                self.counters.connections_total.load(Ordering::Relaxed) as f64,
            )],
        );
        let closes: Vec<(String, f64)> = self
            .counters
            .closes
            .lock()
            .expect("counter lock")
            .iter()
            .map(|(reason, n)| (format!("reason=\"{reason}\""), *n as f64))
            .collect();
        family(
            &mut out,
            "grid_connections_closed_total",
            "counter",
            "Worker connections the coordinator closed, by reason.",
            &as_refs(&closes),
        );
        self.batch_latency.render(
            &mut out,
            "grid_batch_latency_seconds",
            "Time from granting a batch to its last result.",
        );
        self.store.commit_latency().render(
            &mut out,
            "grid_store_commit_seconds",
            "Time to apply and commit one group of writes.",
        );
        out
    }

    // ---- workers --------------------------------------------------------------

    /// Admits a worker whose hello was valid.
    pub fn register_worker(
        &self,
        hello: Hello,
        addr: Option<SocketAddr>,
        outbox: mpsc::Sender<Outbound>,
    ) -> Arc<WorkerConn> {
        let id = self.next_worker.fetch_add(1, Ordering::Relaxed);
        // One donor per browser tab (session), else per connection; the epoch
        // keeps ids of this run apart from the donors of votes stored earlier.
        let donor = match &hello.session {
            Some(session) => id_from(&[b"session", session.as_bytes()]),
            None => id_from(&[b"connection", &self.epoch.to_le_bytes(), &id.to_le_bytes()]),
        };
        let worker = Arc::new(WorkerConn {
            id,
            donor,
            addr,
            connected_at: unix_ms(),
            outbox,
            tasks_done: AtomicU64::new(0),
            results_rejected: AtomicU64::new(0),
            paused: AtomicBool::new(false),
            hello,
        });
        self.scheduler()
            .add_worker(id, donor, worker.hello.threads, self.now_ms());
        self.workers.insert(id, worker.clone());
        self.counters
            .connections_total
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(worker = id, kind = worker.hello.kind.name(), threads = worker.hello.threads, name = ?worker.hello.name, "worker joined");
        if self.monitor.active() {
            if let Some(info) = self.workers().into_iter().find(|w| w.id == id) {
                self.monitor
                    .publish(&serde_json::json!({"type": "worker_joined", "worker": info}));
            }
        }
        worker
    }

    /// The worker's connection ended; its tasks go to others.
    pub fn unregister_worker(&self, id: u64) {
        if self.workers.remove(&id).is_none() {
            return;
        }
        self.scheduler().remove_worker(id);
        tracing::info!(worker = id, "worker left");
        self.monitor
            .publish(&serde_json::json!({"type": "worker_left", "worker": id}));
        self.dispatch();
    }

    pub fn workers(&self) -> Vec<WorkerInfo> {
        let scheduler = self.scheduler();
        let mut list: Vec<WorkerInfo> = self
            .workers
            .iter()
            .map(|w| WorkerInfo {
                id: w.id,
                kind: w.hello.kind,
                threads: w.hello.threads,
                name: w.hello.name.clone(),
                session: w.hello.session.clone(),
                donor: w.donor,
                addr: w.addr.map(|a| a.to_string()),
                connected_at: w.connected_at,
                paused: w.paused.load(Ordering::Relaxed),
                tasks_done: w.tasks_done.load(Ordering::Relaxed),
                tasks_in_flight: scheduler.tasks_held_by(w.id),
                results_rejected: w.results_rejected.load(Ordering::Relaxed),
            })
            .collect();
        list.sort_by_key(|w| w.id);
        list
    }

    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    pub fn set_worker_paused(&self, worker: &WorkerConn, paused: bool) {
        worker.paused.store(paused, Ordering::Relaxed);
        self.scheduler().set_worker_paused(worker.id, paused);
        if !paused {
            self.dispatch();
        }
    }

    pub fn on_return(&self, worker: &WorkerConn, batch: u64, tasks: &TaskRanges) {
        let returned = self.scheduler().return_tasks(worker.id, batch, tasks);
        tracing::debug!(worker = worker.id, batch, ?returned, "tasks returned");
        self.dispatch();
    }

    pub async fn on_failed(&self, worker: &WorkerConn, batch: u64, task: u32, error: &str) {
        tracing::warn!(
            worker = worker.id,
            batch,
            task,
            error,
            "worker could not compute a task"
        );
        let effects = {
            let mut scheduler = self.scheduler();
            let _ = scheduler.fail_task(worker.id, batch, task, self.now_ms());
            scheduler.take_effects()
        };
        self.apply_effects_async(effects).await;
        self.dispatch();
    }

    // ---- results ----------------------------------------------------------------

    /// Checks, stores and collates one results frame. Returns once every
    /// accepted result is durable; the caller then acknowledges the frame.
    pub async fn on_results(
        &self,
        worker: &WorkerConn,
        frame: ResultsFrame,
    ) -> Result<FrameOutcome, StoreError> {
        let now = self.now_ms();
        let job = self
            .scheduler()
            .batch_job(frame.batch)
            .and_then(|id| self.job(id));
        let mut outcome = FrameOutcome::default();

        // Decode and check outputs before taking the scheduler lock.
        let mut checked: Vec<CheckedResult> = Vec::with_capacity(frame.results.len());
        let mut implausible: Vec<(u32, OutputError)> = Vec::new();
        for result in frame.results {
            match &job {
                Some(job) => {
                    let decoded = TaskOutput::decode(job.spec.kind(), &result.output)
                        .and_then(|o| o.check(&job.spec, job.tasks, result.task).map(|()| o));
                    match decoded {
                        Ok(output) => {
                            let d = digest(&result.output);
                            checked.push(CheckedResult {
                                task: result.task,
                                bytes: result.output,
                                output: Some(output),
                                digest: d,
                            });
                        }
                        Err(error) => implausible.push((result.task, error)),
                    }
                }
                // An unknown batch: the scheduler will classify it.
                None => checked.push(CheckedResult {
                    task: result.task,
                    bytes: result.output,
                    output: None,
                    digest: [0; 32],
                }),
            }
        }

        let mut results = Vec::new();
        let mut replicas = Vec::new();
        let mut to_collate = Vec::new();
        let effects = {
            let mut scheduler = self.scheduler();
            for (task, error) in &implausible {
                tracing::warn!(worker = worker.id, batch = frame.batch, task, %error, "implausible result rejected");
                // Put the task back for someone else; the output is discarded.
                let _ = scheduler.return_tasks(
                    worker.id,
                    frame.batch,
                    &TaskRanges::from_indices([*task]),
                );
                outcome.rejected += 1;
            }
            for CheckedResult {
                task,
                bytes,
                output,
                digest: d,
            } in checked
            {
                match scheduler.record(worker.id, frame.batch, task, d, now) {
                    Recorded::Accepted { decided } => {
                        outcome.accepted += 1;
                        let job = job
                            .as_ref()
                            .expect("accepted results belong to a live batch");
                        if job.redundancy > 1 {
                            replicas.push(ReplicaRow {
                                job: job.id,
                                task,
                                donor: worker.donor,
                                digest: d,
                                output: bytes.clone(),
                            });
                        }
                        if decided {
                            results.push(ResultRow {
                                job: job.id,
                                task,
                                donor: worker.donor,
                                output: bytes,
                            });
                            to_collate.push((task, output.expect("accepted outputs were decoded")));
                        }
                    }
                    Recorded::Duplicate | Recorded::Stale => outcome.duplicate += 1,
                    Recorded::Rejected(why) => {
                        tracing::debug!(
                            worker = worker.id,
                            batch = frame.batch,
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
        if !implausible.is_empty() {
            self.counters
                .results_implausible
                .fetch_add(implausible.len() as u64, Ordering::Relaxed);
        }
        if outcome.rejected > 0 {
            worker
                .results_rejected
                .fetch_add(u64::from(outcome.rejected), Ordering::Relaxed);
        }

        let inserted = self.store.record(results, replicas).await?;
        worker
            .tasks_done
            .fetch_add(u64::from(outcome.accepted), Ordering::Relaxed);

        if let Some(job) = &job {
            let complete = {
                let mut live = job.live.lock().expect("job lock");
                if let Some(collator) = live.collator.as_mut() {
                    for ((task, output), new) in to_collate.iter().zip(&inserted) {
                        if *new {
                            if let Err(error) = collator.add(*task, output) {
                                tracing::error!(job = job.id, task, %error, "collation refused a stored result");
                                continue;
                            }
                            self.tasks_completed.fetch_add(1, Ordering::Relaxed);
                            if let (TaskOutput::Iterations(counts), KernelSpec::Mandelbrot(p)) =
                                (output, &job.spec)
                            {
                                if let grid_kernels::TaskDomain::Rows { first, .. } =
                                    job.spec.task(job.tasks, *task)
                                {
                                    self.monitor.publish_tile(job.id, first, p.width, counts);
                                }
                            }
                        }
                    }
                    live.tasks_done = collator.collated();
                    self.monitor.mark_progress(job.id);
                }
                live.collator.as_ref().is_some_and(Collator::is_complete)
            };
            if complete {
                self.finish_job(job).await;
            }
        }
        self.apply_effects_async(effects).await;
        self.dispatch();
        Ok(outcome)
    }

    /// Carries out revokes; returns the jobs that must fail, which need an
    /// `.await` to record.
    fn apply_effects(&self, effects: Vec<Effect>) -> Vec<(u64, String)> {
        let mut failed = Vec::new();
        for effect in effects {
            match effect {
                Effect::Revoke { worker, batch } => {
                    if let Some(w) = self.workers.get(&worker) {
                        w.send(&CoordinatorMessage::Revoke { batch });
                    }
                }
                // Decisions are stored and collated by the result that made them.
                Effect::Decided { .. } => {}
                Effect::TaskFailed { job, reason, .. } => failed.push((job, reason)),
            }
        }
        failed
    }

    async fn apply_effects_async(&self, effects: Vec<Effect>) {
        for (job, reason) in self.apply_effects(effects) {
            self.fail_job(job, reason).await;
        }
    }

    // ---- dispatching ----------------------------------------------------------------

    /// Offers work to every worker with room for another batch.
    pub fn dispatch(&self) {
        let now = self.now_ms();
        let grants = {
            let mut scheduler = self.scheduler();
            let mut grants = Vec::new();
            for worker in scheduler.idle_workers() {
                while let Some(grant) = scheduler.grant(worker, now) {
                    grants.push((worker, grant));
                }
            }
            grants
        };
        for (worker_id, grant) in grants {
            let Some(job) = self.job(grant.job) else {
                continue;
            };
            let sent = self.workers.get(&worker_id).is_some_and(|worker| {
                worker.send(&CoordinatorMessage::Batch(Batch {
                    batch: grant.batch,
                    job: grant.job,
                    spec: job.spec.clone(),
                    job_tasks: job.tasks,
                    tasks: grant.tasks.clone(),
                    lease_ms: grant.lease_ms,
                }))
            });
            if !sent {
                // The worker is not reading; let others have the tasks.
                let _ = self
                    .scheduler()
                    .return_tasks(worker_id, grant.batch, &grant.tasks);
                continue;
            }
            let update = {
                let mut live = job.live.lock().expect("job lock");
                if live.state == JobState::Queued {
                    live.state = JobState::Running;
                    live.started_at = Some(unix_ms());
                    Some(update_of(&job, &live))
                } else {
                    None
                }
            };
            if let Some(update) = update {
                tracing::info!(job = job.id, "job running");
                self.job_event(&job, "running");
                let store = self.store.clone();
                tokio::spawn(async move {
                    if let Err(error) = store.update_job(update).await {
                        tracing::error!(%error, "could not store a job's start");
                    }
                });
            }
        }
    }

    /// Expires overdue leases and offers their tasks to others. Called on a
    /// timer.
    pub fn tick(&self) {
        let expired = self.scheduler().expire(self.now_ms());
        self.record_batch_latencies();
        if !expired.is_empty() {
            tracing::info!(batches = ?expired, "leases expired; their tasks go to other workers");
        }
        self.dispatch();
    }

    fn record_batch_latencies(&self) {
        let latencies = self.scheduler().take_batch_latencies();
        for ms in latencies {
            self.batch_latency.observe_micros(ms * 1000);
        }
    }

    /// Counts a close the coordinator initiated, by reason.
    pub fn count_close(&self, code: CloseCode) {
        *self
            .counters
            .closes
            .lock()
            .expect("counter lock")
            .entry(code.name())
            .or_default() += 1;
    }

    /// Tells every worker the coordinator is going away.
    pub fn close_all_workers(&self) {
        for worker in self.workers.iter() {
            worker.close(CloseCode::GoingAway, "the coordinator is shutting down");
        }
    }
}

fn row_of(spec: &KernelSpec, tasks: u32, task: u32) -> u32 {
    match spec.task(tasks, task) {
        grid_kernels::TaskDomain::Rows { first, .. } => first,
        grid_kernels::TaskDomain::Range { .. } => 0,
    }
}

fn update_of(job: &Job, live: &JobLive) -> JobUpdate {
    JobUpdate {
        job: job.id,
        state: live.state,
        paused: live.paused,
        started_at: live.started_at,
        finished_at: live.finished_at,
        error: live.error.clone(),
        result: live.result.clone(),
    }
}
