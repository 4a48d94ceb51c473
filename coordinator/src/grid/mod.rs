//! The coordinator's state and everything that changes it: jobs submitted,
//! cancelled, finished; workers joining and leaving; batches dispatched;
//! results checked, stored, acknowledged and collated. The HTTP API and the
//! worker sockets are thin layers over the operations here.
//!
//! Locking: the scheduler sits behind one mutex, held only for short,
//! synchronous decisions; each job's collator behind its own. No lock is held
//! across an `.await`.

mod audit;
mod blobs;
mod capability;
mod fuel;
mod history;
mod lifecycle;
mod observe;
mod outputs;
mod recheck;
mod results;
mod users;
mod wasm;
mod workers;

pub use fuel::FuelSummary;
pub use history::JobPage;
pub(crate) use outputs::outputs_may_upload;
pub use workers::{AddressSlot, locality_key};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use grid_kernels::{Collator, ContentDigest, JobResult, KernelSpec, TaskOutput};
use grid_protocol::{
    Batch, CloseCode, CoordinatorMessage, Hello, ResultsFrame, TaskRanges, WorkerKind,
};
use grid_scheduler::{Effect, Recorded, Scheduler};
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use crate::blobs::{BlobError, BlobStore};
use crate::config::ServerConfig;
use crate::jobs::{Job, JobDefinition, JobLive};
use crate::metrics::{Histogram, LATENCY_BOUNDS};
use crate::monitor::{Monitor, tile_frame};
use crate::store::{ReplicaRow, ResultRow, Store, StoreError, StoredJob};
use grid_protocol::api::{
    AuditAction, JobEvent, JobRequest, JobState, JobStatus, MonitorEvent, WorkerInfo,
};

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
    /// The fuel of its accepted wasm results ([`WorkerInfo::fuel_used`]).
    ///
    /// [`WorkerInfo::fuel_used`]: grid_protocol::api::WorkerInfo::fuel_used
    pub fuel_used: AtomicU64,
    pub results_rejected: AtomicU64,
    pub paused: AtomicBool,
    /// Its donor's results failed validation: the connection is closed with
    /// 4008 (see [`WorkerConn::quarantined`]).
    quarantined: AtomicBool,
    /// Rung when the connection must look at `quarantined`.
    kick: tokio::sync::Notify,
}

impl WorkerConn {
    /// Queues a message without waiting. A worker whose queue is full is not
    /// reading; the message is dropped and false returned.
    pub fn send(&self, message: &CoordinatorMessage) -> bool {
        self.outbox
            .try_send(Outbound::Text(message.encode()))
            .is_ok()
    }

    /// Queues a message that must not be dropped (an ack), waiting up to
    /// `wait` for room. False if the worker has not read for that long.
    pub async fn send_or_wait(&self, message: &CoordinatorMessage, wait: Duration) -> bool {
        self.outbox
            .send_timeout(Outbound::Text(message.encode()), wait)
            .await
            .is_ok()
    }

    pub fn close(&self, code: CloseCode, reason: impl Into<String>) {
        let _ = self.outbox.try_send(Outbound::Close(code, reason.into()));
    }

    /// Marks the connection's donor quarantined and wakes the connection,
    /// which closes itself with 4008 after what it is sending (the ack of
    /// the frame that caught the donor goes out first).
    fn quarantine(&self) {
        self.quarantined.store(true, Ordering::Relaxed);
        self.kick.notify_one();
    }

    /// Resolves once the connection's donor has been quarantined.
    pub async fn quarantined(&self) {
        loop {
            if self.quarantined.load(Ordering::Relaxed) {
                return;
            }
            self.kick.notified().await;
        }
    }
}

/// An error for an API caller, with the HTTP status it maps to.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// 403: credentials that do not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// 429: over one of the user's limits (the message names it).
    #[error("{0}")]
    LimitReached(String),
    #[error("{0}")]
    Conflict(String),
    /// 413: a body over its limit.
    #[error("{0}")]
    TooLarge(String),
    /// 507: the coordinator has no room to store it.
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<BlobError> for ApiError {
    fn from(error: BlobError) -> ApiError {
        match error {
            BlobError::Mismatch { .. } | BlobError::Incomplete { .. } => {
                ApiError::BadRequest(error.to_string())
            }
            BlobError::TooLarge { .. } => ApiError::TooLarge(error.to_string()),
            BlobError::DiskFull(_) => ApiError::Unavailable(error.to_string()),
            BlobError::Io(_) => ApiError::Internal(error.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            // A blob of the job was deleted while it was submitted.
            StoreError::BlobGone(_) => ApiError::Conflict(e.to_string()),
            StoreError::DiskFull(_) => ApiError::Unavailable(e.to_string()),
            _ => ApiError::Internal(e.to_string()),
        }
    }
}

/// What came of one results frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameOutcome {
    pub accepted: u32,
    pub duplicate: u32,
    pub rejected: u32,
}

/// Counters that are not the scheduler's.
#[derive(Debug, Default)]
pub struct GridCounters {
    pub results_implausible: AtomicU64,
    /// Fuel of the wasm tasks decided since the coordinator started: the
    /// compute users' kernels were given, in the unit every engine agrees on.
    pub fuel_used: AtomicU64,
    /// Sampled results the coordinator re-computed and found wrong.
    pub results_verified_wrong: AtomicU64,
    pub connections_total: AtomicU64,
    pub closes: Mutex<HashMap<&'static str, u64>>,
    /// Batches of jobs with files sent to a worker that said it holds them
    /// all (a cache hit its report told of), and to one that did not.
    pub blob_cache_hits: AtomicU64,
    pub blob_cache_misses: AtomicU64,
    /// Output bytes digest-only replicas kept from the network (their
    /// outputs' lengths less the digest entries sent instead).
    pub replica_bytes_saved: AtomicU64,
    /// Bytes of outputs workers stored as blobs rather than send in
    /// results frames.
    pub output_blob_bytes: AtomicU64,
}

#[derive(Debug)]
pub struct Grid {
    config: ServerConfig,
    scheduler: Mutex<Scheduler>,
    /// The jobs not finished (and a finished one until its last change is
    /// stored); finished jobs are read from the store (see `history`).
    jobs: DashMap<u64, Arc<Job>>,
    /// Re-checks of a liar's answers run one at a time, so two never make
    /// the same done job live twice.
    rechecks: tokio::sync::Mutex<()>,
    workers: DashMap<u64, Arc<WorkerConn>>,
    store: Store,
    /// What users upload: modules and inputs (token required to read).
    blobs: BlobStore,
    /// Prepared modules, which any worker may fetch by digest.
    modules: BlobStore,
    started: tokio::time::Instant,
    epoch: u64,
    next_worker: AtomicU64,
    pub counters: GridCounters,
    monitor: Monitor,
    /// Results made durable since the coordinator started.
    tasks_done: AtomicU64,
    pub batch_latency: Histogram,
    /// Keys which results the coordinator re-computes; random per run.
    verify_seed: u64,
    /// Re-computes them.
    verifier: Arc<crate::verify::Verifier>,
    /// Open worker connections per remote address (loopback not counted).
    per_address: DashMap<std::net::IpAddr, usize>,
    /// Keys the batches' blob capabilities; random per run.
    capability_secret: [u8; 32],
    /// Outputs stored as blobs and not yet named by a results frame.
    uploads: Mutex<outputs::UploadLedger>,
    /// Who may use the grid, found by token.
    users: Mutex<crate::users::Users>,
    /// Keys the tokens' hashes.
    token_key: crate::users::TokenKey,
    /// Bumped when a token stops working (see [`Grid::revocations`]).
    revocations: tokio::sync::watch::Sender<u64>,
}

pub use crate::clock::unix_ms;

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
    /// Opens the store under the data directory and restores the unfinished
    /// jobs in it back into the scheduler, with their durable results
    /// collated, ready to carry on. Finished jobs stay in the store.
    pub async fn open(config: ServerConfig) -> anyhow::Result<Arc<Grid>> {
        let store = Store::open(&config.data_dir, config.durability)?;
        let epoch = store.epoch()?;
        let open = |name| {
            BlobStore::open(&config.data_dir, name).map_err(|e| {
                anyhow::anyhow!("cannot open {}: {e}", config.data_dir.join(name).display())
            })
        };
        let (blobs, modules) = (open("blobs")?, open("modules")?);
        let token_key =
            crate::users::TokenKey::new(crate::auth::load_or_create_key(&config.data_dir)?);
        let (users, first_admin) =
            users::starting_users(store.load_users()?, &token_key, &config.token);
        store.change_user(first_admin).await?;
        let mut scheduler_config = config.scheduler.clone();
        scheduler_config.spot_check_seed = rand::random();
        let mut scheduler = Scheduler::new(scheduler_config);
        for user in users.all() {
            scheduler.set_user_weight(user.id, user.weight);
        }
        // Batch ids of this run start above every earlier run's.
        scheduler.set_batch_floor(epoch << 32);
        let grid = Arc::new(Grid {
            scheduler: Mutex::new(scheduler),
            jobs: DashMap::new(),
            rechecks: tokio::sync::Mutex::new(()),
            workers: DashMap::new(),
            store,
            verifier: Arc::new(crate::verify::Verifier::new(modules.clone(), blobs.clone())),
            blobs,
            modules,
            started: tokio::time::Instant::now(),
            epoch,
            next_worker: AtomicU64::new(1),
            counters: GridCounters::default(),
            monitor: Monitor::new(),
            tasks_done: AtomicU64::new(0),
            batch_latency: Histogram::new(LATENCY_BOUNDS),
            verify_seed: rand::random(),
            per_address: DashMap::new(),
            capability_secret: rand::random(),
            uploads: Mutex::new(outputs::UploadLedger::default()),
            users: Mutex::new(users),
            token_key,
            revocations: tokio::sync::watch::channel(0).0,
            config,
        });
        let restore = grid.clone();
        let complete = tokio::task::spawn_blocking(move || restore.restore()).await??;
        for job in complete {
            grid.finish_job(&job).await;
        }
        // A quarantine whose recheck a crash cut short: its done jobs may
        // still hold the liar's answers.
        for donor in grid.store.pending_rechecks()? {
            tracing::warn!(donor, "a quarantined donor's answers are looked at again");
            let grid = grid.clone();
            tokio::spawn(async move { grid.recheck_answers_of(donor).await });
        }
        Ok(grid)
    }

    fn restore(&self) -> anyhow::Result<Vec<Arc<Job>>> {
        let mut live = Vec::new();
        // Finished jobs stay on disk: they are read when asked for (see
        // `history`), so neither start-up nor memory grows with history.
        for StoredJob {
            id,
            definition,
            lifecycle,
            ..
        } in self.store.load_unfinished_jobs()?
        {
            let read = recheck::read_back(&self.store, &self.blobs, id, &definition)?;
            live.push(self.revive(id, definition, lifecycle, read));
        }
        let resumed = live.len();
        // After the votes: quarantining a donor again discards its stored
        // votes on the tasks still open. The scheduler has forgotten what
        // the donors decided alone before the restart: answers stored from
        // a quarantined donor in a live job are checked again.
        let quarantined = self.store.quarantined()?;
        let donors: Vec<u64> = quarantined.iter().map(|(donor, _)| *donor).collect();
        let mut complete = Vec::new();
        for (job, all_in) in live {
            let suspect = if donors.is_empty() {
                Vec::new()
            } else {
                self.store.tasks_answered_by(job.id, &donors)?
            };
            let reopened = self.scheduler().recheck(job.id, &suspect);
            if reopened > 0 {
                tracing::warn!(
                    job = job.id,
                    reopened,
                    "answers from quarantined donors are checked again"
                );
            } else if all_in {
                complete.push(job);
            }
        }
        let trusted = self.store.trusted()?;
        {
            let mut scheduler = self.scheduler();
            for &donor in &trusted {
                scheduler.restore_trust(donor);
            }
            for (donor, reason) in &quarantined {
                scheduler.quarantine(*donor, reason.clone());
            }
            // No worker is connected yet: there is nothing to revoke or
            // announce, and the store has these already.
            drop(scheduler.take_effects());
        }
        tracing::info!(
            jobs = self.jobs.len(),
            resumed,
            quarantined = quarantined.len(),
            trusted = trusted.len(),
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

    /// Users' uploads: modules and input files.
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// Prepared modules, served to workers.
    pub fn modules(&self) -> &BlobStore {
        &self.modules
    }

    pub fn monitor(&self) -> &Monitor {
        &self.monitor
    }

    /// Results made durable since the coordinator started.
    pub fn tasks_done(&self) -> u64 {
        self.tasks_done.load(Ordering::Relaxed)
    }

    /// Tells monitors about a job.
    fn job_event(&self, job: &Job, event: JobEvent) {
        if self.monitor.active() {
            self.monitor.publish_for(
                Some(job.definition.owner),
                &MonitorEvent::Job {
                    event,
                    job: Box::new(self.status_of(job)),
                },
            );
        }
    }

    /// The scheduler, locked. Hold it only for short synchronous decisions.
    /// If a task panicked while holding it, its state is checked before use.
    fn scheduler(&self) -> MutexGuard<'_, Scheduler> {
        let relocked = crate::sync::relock(&self.scheduler, "scheduler");
        if relocked.recovered
            && let Err(broken) = relocked.guard.check_consistency()
        {
            tracing::error!(%broken, "the scheduler's state is inconsistent after a panic");
        }
        relocked.guard
    }

    /// Milliseconds since the coordinator started (monotonic).
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub fn scheduler_counters(&self) -> grid_scheduler::Counters {
        self.scheduler().counters().clone()
    }

    /// Carries out revokes; returns the jobs that must fail and the donors
    /// just quarantined, which need an `.await` to act on.
    fn apply_effects(&self, effects: Vec<Effect>) -> (Vec<(u64, String)>, Vec<u64>) {
        let mut failed = Vec::new();
        let mut caught = Vec::new();
        for effect in effects {
            match effect {
                Effect::Revoke { worker, batch } => {
                    if let Some(w) = self.workers.get(&worker) {
                        w.send(&CoordinatorMessage::Revoke { batch });
                    }
                }
                Effect::TaskFailed { job, reason, .. } => failed.push((job, reason)),
                Effect::Trusted { donor } => {
                    tracing::info!(donor, "donor trusted");
                    self.store.remember_trust(donor, unix_ms());
                }
                Effect::Quarantined {
                    donor,
                    reason,
                    reopened,
                } => {
                    let mut ids = Vec::new();
                    for worker in self.workers.iter().filter(|w| w.donor == donor) {
                        worker.quarantine();
                        ids.push(worker.id);
                    }
                    tracing::warn!(donor, workers = ?ids, %reason, reopened = reopened.len(), "donor quarantined");
                    self.store.remember_quarantine(donor, &reason, unix_ms());
                    self.audit(
                        audit::COORDINATOR,
                        AuditAction::DonorQuarantined,
                        format!("donor {donor}"),
                        format!(
                            "{reason}; {} tasks it decided alone or held reopened",
                            reopened.len()
                        ),
                    );
                    self.monitor.publish(&MonitorEvent::WorkerQuarantined {
                        donor,
                        workers: ids,
                        reason,
                        reopened_tasks: reopened.len() as u64,
                    });
                    for (job, _) in reopened {
                        self.monitor.mark_progress(job);
                    }
                    caught.push(donor);
                }
            }
        }
        (failed, caught)
    }

    async fn apply_effects_async(&self, effects: Vec<Effect>) {
        let (failed, caught) = self.apply_effects(effects);
        for (job, reason) in failed {
            self.fail_job(job, reason).await;
        }
        for donor in caught {
            self.recheck_answers_of(donor).await;
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
                    let digest_only = self
                        .job(grant.job)
                        .filter(|job| job.replicated())
                        .map(|job| {
                            let mut replicas = job.replicas();
                            let tasks = grant.tasks.iter().filter(|&task| {
                                replicas.assign(task, grant.batch, |b| scheduler.awaits(b, task))
                            });
                            TaskRanges::from_indices(tasks.collect::<Vec<_>>())
                        })
                        .filter(|tasks| !tasks.is_empty());
                    grants.push((worker, grant, digest_only));
                }
            }
            grants
        };
        let mut sent_batches = Vec::with_capacity(grants.len());
        for (worker_id, grant, digest_only) in grants {
            let Some(job) = self.job(grant.job) else {
                continue;
            };
            let sent = self.workers.get(&worker_id).is_some_and(|worker| {
                worker.send(&CoordinatorMessage::Batch(Batch {
                    capability: job
                        .definition
                        .needs_capability()
                        .then(|| self.capability_for(grant.batch)),
                    batch: grant.batch,
                    job: grant.job,
                    spec: job.spec().clone(),
                    job_tasks: job.tasks(),
                    tasks: grant.tasks.clone(),
                    lease_ms: grant.lease_ms,
                    inputs: job.batch_inputs(&grant.tasks),
                    digest_only,
                    owner: self
                        .users()
                        .get(job.definition.owner)
                        .map(|user| user.name.clone()),
                }))
            });
            if !sent {
                // The worker is not reading; let others have the tasks.
                let _ = self
                    .scheduler()
                    .return_tasks(worker_id, grant.batch, &grant.tasks);
                continue;
            }
            sent_batches.push((worker_id, grant.batch));
            if job.definition.workers_read_blobs() {
                let counter = if grant.local {
                    &self.counters.blob_cache_hits
                } else {
                    &self.counters.blob_cache_misses
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
            self.start_job(&job);
        }
        // A batch closed between its grant and its sending (its job finished
        // or was cancelled) was revoked before the worker heard of it: revoke
        // it again, after it, so the worker does not compute it for nothing.
        if !sent_batches.is_empty() {
            let closed: Vec<(u64, u64)> = {
                let scheduler = self.scheduler();
                sent_batches
                    .into_iter()
                    .filter(|&(_, batch)| scheduler.batch_job(batch).is_none())
                    .collect()
            };
            for (worker_id, batch) in closed {
                if let Some(worker) = self.workers.get(&worker_id) {
                    worker.send(&CoordinatorMessage::Revoke { batch });
                }
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
        *crate::sync::lock(&self.counters.closes, "close counters")
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
        grid_kernels::TaskDomain::Range { .. } | grid_kernels::TaskDomain::Input { .. } => 0,
    }
}

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
