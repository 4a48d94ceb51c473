//! Who computes which task, as a pure state machine: no I/O, no clock, no
//! async. The coordinator feeds it events (a worker joined, a batch is wanted,
//! a result arrived, a connection dropped, time passed) and carries out the
//! [`Effect`]s it asks for (revoke a batch, collate a decided task, fail a job).
//!
//! The rules it owns:
//! - Jobs are served oldest first. A batch holds tasks of one job, sized so it
//!   takes about [`SchedulerConfig::target_batch_ms`] at the worker's measured
//!   speed, and shrinking near the end of a job so the tail spreads out.
//! - Every batch is a lease with a deadline; results extend it. A lease that
//!   expires, a worker that disconnects, returns tasks or fails one puts those
//!   tasks back to be issued again. A late result for a task still open is
//!   accepted.
//! - A task is decided when `quorum` replicas agree byte for byte (by digest).
//!   Replicas of one task never go to the same donor. Disagreement adds
//!   replicas up to `max_replicas`, then fails the task (and its job).
//! - A decided task is never decided again: later results are duplicates.
//! - When there is nothing left to issue, idle workers get speculative copies
//!   of tasks that other workers have held for a while; the first valid result
//!   wins and the other copies are revoked.
//! - Donors earn trust with results that agree with a quorum; a trusted
//!   donor's tasks are decided by its result alone except for a sampled
//!   fraction, which still get the full quorum (adaptive replication). A donor
//!   whose result disagrees with a quorum is quarantined: it gets no more
//!   work, and every task it decided on its own word is checked again.

mod job;
mod speed;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use grid_protocol::TaskRanges;

pub use crate::job::JobPlan;
use crate::job::{Holder, JobState};
use crate::speed::Speed;

pub type JobId = u64;
pub type WorkerId = u64;
pub type BatchId = u64;
/// Identifies a donor: one browser tab's workers share one, a native worker
/// has its own. Replicas of a task never go to the same donor twice.
pub type DonorId = u64;
/// SHA-256 of a task's output bytes.
pub type Digest = [u8; 32];

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// How long a batch should take at the worker's measured speed.
    pub target_batch_ms: u64,
    /// The shortest lease; leases are three times the expected batch time
    /// when that is longer.
    pub min_lease_ms: u64,
    /// Batches a worker holds at once, so it never waits between batches.
    pub pipeline: usize,
    /// The most tasks in one batch.
    pub max_batch_tasks: u32,
    /// A task that fails on this many workers fails its job.
    pub max_task_failures: u32,
    /// Copy tasks other workers have held at least this long to idle workers
    /// when nothing else is left.
    pub speculate_after_ms: Option<u64>,
    /// Closed batches remembered per worker, so that results racing a close
    /// (a revoke, a copy that won) are recognised as stale rather than
    /// counted as unleased.
    pub remembered_revokes: usize,
    /// Results agreeing with a quorum a donor needs before it is trusted
    /// (`None` turns adaptive replication off).
    pub trust_after: Option<u32>,
    /// The fraction of a trusted donor's tasks that still get the full
    /// quorum, as a spot check.
    pub spot_check_rate: f64,
    /// Keys the choice of spot-checked tasks, so that donors cannot predict
    /// it. The coordinator picks it at random.
    pub spot_check_seed: u64,
}

impl Default for SchedulerConfig {
    fn default() -> SchedulerConfig {
        SchedulerConfig {
            target_batch_ms: 2_000,
            min_lease_ms: 60_000,
            pipeline: 2,
            max_batch_tasks: 200_000,
            max_task_failures: 3,
            speculate_after_ms: Some(1_000),
            remembered_revokes: 64,
            trust_after: Some(20),
            spot_check_rate: 0.1,
            spot_check_seed: 0x9e37_79b9_7f4a_7c15,
        }
    }
}

/// A batch the scheduler wants sent to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub batch: BatchId,
    pub job: JobId,
    pub tasks: TaskRanges,
    pub lease_ms: u64,
    /// Whether these tasks are copies of tasks other workers still hold.
    pub speculative: bool,
}

/// Something the coordinator must do as a consequence of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Tell the worker to drop the batch; it is no longer leased.
    Revoke { worker: WorkerId, batch: BatchId },
    /// The task has its answer: the output whose digest this is.
    Decided {
        job: JobId,
        task: u32,
        digest: Digest,
    },
    /// The task cannot be completed; its job should fail with this reason.
    TaskFailed {
        job: JobId,
        task: u32,
        reason: String,
    },
    /// The donor's results disagreed with a quorum: it gets no more work.
    /// Tasks it decided on its own word were reopened for a second opinion.
    Quarantined {
        donor: DonorId,
        reason: String,
        reopened: Vec<(JobId, u32)>,
    },
}

/// How a result was classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Counted as a replica; `decided` when it completed the quorum;
    /// `recheck` when the task had been decided before and was reopened to
    /// check a distrusted donor's answer.
    Accepted { decided: bool, recheck: bool },
    /// The task already has its answer, or this donor already answered it.
    Duplicate,
    /// The batch was revoked or returned a moment ago; the result raced it.
    Stale,
    /// The worker was never leased this task.
    Rejected(Rejection),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    UnknownBatch,
    NotYourBatch,
    TaskNotInBatch,
}

impl Rejection {
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::UnknownBatch => "no such batch",
            Rejection::NotYourBatch => "the batch is leased to another worker",
            Rejection::TaskNotInBatch => "the task is not part of the batch",
        }
    }
}

/// Counters for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub batches_granted: u64,
    pub tasks_issued: u64,
    pub tasks_reissued: u64,
    pub tasks_speculative: u64,
    pub leases_expired: u64,
    pub results_accepted: u64,
    pub results_duplicate: u64,
    pub results_stale: u64,
    pub results_rejected: u64,
    pub quorum_disagreements: u64,
    pub donors_quarantined: u64,
    pub tasks_rechecked: u64,
    /// Tasks decided by one trusted donor without replicas.
    pub tasks_solo: u64,
}

/// What the scheduler knows of a donor's honesty.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DonorStanding {
    /// Results that matched a quorum of others.
    pub validated: u32,
    pub trusted: bool,
    pub quarantined: bool,
}

#[derive(Debug)]
struct WorkerState {
    donor: DonorId,
    threads: u32,
    paused: bool,
    /// Batches held, oldest first.
    batches: Vec<BatchId>,
    /// Measured speed per job.
    speed: HashMap<JobId, Speed>,
    /// When the worker last finished a batch: with pipelining, a batch's
    /// service time starts there, not at its grant.
    last_finish: u64,
    /// Its last closed batches (finished, revoked, returned) and their
    /// tasks: a result that races the close is stale, not unleased.
    recently_closed: VecDeque<(BatchId, TaskRanges)>,
}

#[derive(Debug)]
struct BatchState {
    worker: WorkerId,
    job: JobId,
    /// The tasks of the batch, ascending, and which still await a result.
    tasks: Vec<u32>,
    waiting: Vec<bool>,
    outstanding: u32,
    granted_at: u64,
    deadline: u64,
    lease_ms: u64,
    expired: bool,
}

impl BatchState {
    fn position(&self, task: u32) -> Option<usize> {
        self.tasks.binary_search(&task).ok()
    }
}

#[derive(Debug)]
pub struct Scheduler {
    config: SchedulerConfig,
    /// Jobs with work left, by id: ids rise with submission, so this is FIFO.
    jobs: BTreeMap<JobId, JobState>,
    workers: BTreeMap<WorkerId, WorkerState>,
    batches: BTreeMap<BatchId, BatchState>,
    next_batch: BatchId,
    effects: Vec<Effect>,
    counters: Counters,
    /// Grant-to-finish times of batches finished since the last drain, ms.
    batch_latencies: Vec<u64>,
    donors: HashMap<DonorId, DonorStanding>,
    /// Workers that could take a batch now (unpaused, not quarantined, room
    /// in their pipeline), kept up to date so that dispatch never scans every
    /// connection: a grid may hold thousands of idle donors.
    ready: BTreeSet<WorkerId>,
    /// Workers not paused.
    unpaused: usize,
}

impl Scheduler {
    pub fn new(config: SchedulerConfig) -> Scheduler {
        Scheduler {
            config,
            jobs: BTreeMap::new(),
            workers: BTreeMap::new(),
            batches: BTreeMap::new(),
            next_batch: 1,
            effects: Vec::new(),
            counters: Counters::default(),
            batch_latencies: Vec::new(),
            donors: HashMap::new(),
            ready: BTreeSet::new(),
            unpaused: 0,
        }
    }

    /// Batch ids start above `floor`, so they never repeat ones a previous run
    /// of the coordinator handed out.
    pub fn set_batch_floor(&mut self, floor: BatchId) {
        self.next_batch = self.next_batch.max(floor + 1);
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// How long each batch finished since the last call took from its grant
    /// to its last result, in milliseconds.
    pub fn take_batch_latencies(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.batch_latencies)
    }

    /// Effects produced since the last call.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// Checks the invariants that tie the scheduler's tables together: every
    /// batch is held by a live worker and belongs to a live job, its count of
    /// outstanding tasks matches its waiting ones, and the set of ready
    /// workers and the count of unpaused ones match a scan. Cheap enough for
    /// tests after every step; the coordinator runs it after recovering the
    /// lock from a panicking holder.
    pub fn check_consistency(&self) -> Result<(), String> {
        for (&id, batch) in &self.batches {
            let worker = self
                .workers
                .get(&batch.worker)
                .ok_or_else(|| format!("batch {id} is held by unknown worker {}", batch.worker))?;
            if !worker.batches.contains(&id) {
                return Err(format!(
                    "worker {} does not list its batch {id}",
                    batch.worker
                ));
            }
            if !self.jobs.contains_key(&batch.job) {
                return Err(format!("batch {id} belongs to unknown job {}", batch.job));
            }
            let waiting = batch.waiting.iter().filter(|w| **w).count() as u32;
            if waiting != batch.outstanding || batch.waiting.len() != batch.tasks.len() {
                return Err(format!(
                    "batch {id}: {} outstanding, {waiting} waiting",
                    batch.outstanding
                ));
            }
        }
        for (&id, worker) in &self.workers {
            if let Some(missing) = worker
                .batches
                .iter()
                .find(|b| !self.batches.contains_key(b))
            {
                return Err(format!(
                    "worker {id} lists batch {missing}, which is not live"
                ));
            }
            if worker.batches.len() > self.config.pipeline {
                return Err(format!(
                    "worker {id} holds {} batches",
                    worker.batches.len()
                ));
            }
        }
        let scanned: BTreeSet<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| {
                !w.paused
                    && w.batches.len() < self.config.pipeline
                    && !self.standing(w.donor).quarantined
            })
            .map(|(&id, _)| id)
            .collect();
        if scanned != self.ready {
            return Err(format!(
                "ready workers {:?}, by scan {scanned:?}",
                self.ready
            ));
        }
        let unpaused = self.workers.values().filter(|w| !w.paused).count();
        if unpaused != self.unpaused {
            return Err(format!(
                "{} unpaused workers counted, {unpaused} by scan",
                self.unpaused
            ));
        }
        Ok(())
    }

    // ---- jobs ---------------------------------------------------------------

    pub fn add_job(&mut self, plan: JobPlan) {
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

    // ---- workers ------------------------------------------------------------

    pub fn add_worker(&mut self, worker: WorkerId, donor: DonorId, threads: u32, now: u64) {
        self.workers.insert(
            worker,
            WorkerState {
                donor,
                threads: threads.max(1),
                paused: false,
                batches: Vec::new(),
                speed: HashMap::new(),
                last_finish: now,
                recently_closed: VecDeque::new(),
            },
        );
        self.unpaused += 1;
        self.refresh_ready(worker);
    }

    /// Keeps `ready` in step with one worker's state.
    fn refresh_ready(&mut self, worker: WorkerId) {
        let ready = self.workers.get(&worker).is_some_and(|w| {
            !w.paused
                && w.batches.len() < self.config.pipeline
                && !self.donors.get(&w.donor).is_some_and(|d| d.quarantined)
        });
        if ready {
            self.ready.insert(worker);
        } else {
            self.ready.remove(&worker);
        }
    }

    pub fn set_worker_paused(&mut self, worker: WorkerId, paused: bool) {
        if let Some(state) = self.workers.get_mut(&worker) {
            if state.paused != paused {
                state.paused = paused;
                if paused {
                    self.unpaused -= 1;
                } else {
                    self.unpaused += 1;
                }
            }
        }
        self.refresh_ready(worker);
    }

    /// A worker disconnected: every task it held goes back to be re-issued.
    pub fn remove_worker(&mut self, worker: WorkerId) {
        let Some(state) = self.workers.remove(&worker) else {
            return;
        };
        self.ready.remove(&worker);
        if !state.paused {
            self.unpaused -= 1;
        }
        for batch in state.batches {
            self.release_batch(batch);
        }
    }

    /// Workers that could take another batch now.
    pub fn idle_workers(&self) -> Vec<WorkerId> {
        self.ready.iter().copied().collect()
    }

    /// The job a live batch belongs to.
    pub fn batch_job(&self, batch: BatchId) -> Option<JobId> {
        self.batches.get(&batch).map(|b| b.job)
    }

    /// The job of `batch` if it is live and leased to `worker`: what a
    /// results frame from `worker` for it may be checked against.
    pub fn lease_of(&self, worker: WorkerId, batch: BatchId) -> Option<JobId> {
        self.batches
            .get(&batch)
            .filter(|b| b.worker == worker)
            .map(|b| b.job)
    }

    /// Whether `task` is one of the tasks of the live batch `batch`.
    pub fn in_batch(&self, batch: BatchId, task: u32) -> bool {
        self.batches
            .get(&batch)
            .is_some_and(|b| b.position(task).is_some())
    }

    /// Batches a worker holds.
    pub fn batches_of(&self, worker: WorkerId) -> usize {
        self.workers.get(&worker).map_or(0, |w| w.batches.len())
    }

    /// Tasks in flight to a worker, across its batches.
    pub fn tasks_held_by(&self, worker: WorkerId) -> u32 {
        self.workers.get(&worker).map_or(0, |w| {
            w.batches
                .iter()
                .filter_map(|b| self.batches.get(b))
                .map(|b| b.outstanding)
                .sum()
        })
    }

    // ---- granting -----------------------------------------------------------

    /// The next batch for `worker`, if it has room and there is work it may take.
    pub fn grant(&mut self, worker: WorkerId, now: u64) -> Option<Grant> {
        let state = self.workers.get(&worker)?;
        if state.paused || state.batches.len() >= self.config.pipeline {
            return None;
        }
        let donor = state.donor;
        let standing = self.standing(donor);
        if standing.quarantined {
            return None;
        }
        let (rate, seed) = (self.config.spot_check_rate, self.config.spot_check_seed);
        let job_ids: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, j)| !j.paused)
            .map(|(&id, _)| id)
            .collect();
        let active_workers = self.unpaused.max(1) as u64;
        for job in job_ids {
            let size = self.batch_size(worker, job, active_workers);
            let spot_check = |task: u32| spot_checked(seed, job, task, rate);
            let tasks = self.jobs.get_mut(&job).expect("listed").take_tasks(
                donor,
                size,
                standing.trusted,
                spot_check,
            );
            if !tasks.is_empty() {
                return Some(self.lease(worker, job, tasks, false, now));
            }
        }
        let after = self.config.speculate_after_ms?;
        self.speculate(worker, donor, now, after)
    }

    fn batch_size(&self, worker: WorkerId, job: JobId, active_workers: u64) -> u32 {
        let state = &self.workers[&worker];
        let job_state = &self.jobs[&job];
        let threads = u64::from(state.threads);
        let ms_per_task = state.speed.get(&job).map(|s| s.ms_per_task()).or_else(|| {
            job_state
                .ms_per_task_per_thread()
                .map(|ms| ms / threads as f64)
        });
        let mut size = match ms_per_task {
            Some(ms) => (self.config.target_batch_ms as f64 / ms.max(1e-6)) as u64,
            // Unknown speed: one task per thread, to measure.
            None => threads,
        };
        // Near the end, spread what is left instead of handing it to one worker.
        let left = job_state.issuable();
        size = size.min(left.div_ceil(2 * active_workers).max(threads.min(left)));
        size.clamp(1, u64::from(self.config.max_batch_tasks)) as u32
    }

    fn lease(
        &mut self,
        worker: WorkerId,
        job: JobId,
        tasks: Vec<u32>,
        speculative: bool,
        now: u64,
    ) -> Grant {
        let batch = self.next_batch;
        self.next_batch += 1;
        let state = self.workers.get_mut(&worker).expect("caller checked");
        let donor = state.donor;
        let expected_ms = state
            .speed
            .get(&job)
            .map(|s| s.ms_per_task() * tasks.len() as f64);
        let lease_ms = match expected_ms {
            Some(ms) => self.config.min_lease_ms.max((3.0 * ms) as u64),
            None => self.config.min_lease_ms,
        };
        state.batches.push(batch);
        self.refresh_ready(worker);
        let trusted = self.standing(donor).trusted;
        let job_state = self.jobs.get_mut(&job).expect("caller checked");
        let mut reissued = 0;
        for &task in &tasks {
            if job_state.add_holder(
                task,
                Holder {
                    worker,
                    donor,
                    batch,
                    active: true,
                },
                trusted,
            ) {
                reissued += 1;
            }
        }
        self.counters.batches_granted += 1;
        self.counters.tasks_issued += tasks.len() as u64;
        if speculative {
            self.counters.tasks_speculative += tasks.len() as u64;
        } else {
            self.counters.tasks_reissued += reissued;
        }
        let ranges = TaskRanges::from_indices(tasks.iter().copied());
        self.batches.insert(
            batch,
            BatchState {
                worker,
                job,
                waiting: vec![true; tasks.len()],
                outstanding: tasks.len() as u32,
                tasks,
                granted_at: now,
                deadline: now + lease_ms,
                lease_ms,
                expired: false,
            },
        );
        Grant {
            batch,
            job,
            tasks: ranges,
            lease_ms,
            speculative,
        }
    }

    /// Copies of tasks that other donors have held for at least `after` ms,
    /// oldest leases first, one extra copy per task at most.
    fn speculate(
        &mut self,
        worker: WorkerId,
        donor: DonorId,
        now: u64,
        after: u64,
    ) -> Option<Grant> {
        let threads = u64::from(self.workers[&worker].threads);
        let mut picked: Option<(JobId, Vec<u32>)> = None;
        for batch in self.batches.values() {
            if batch.worker == worker || now.saturating_sub(batch.granted_at) < after {
                continue;
            }
            if picked.as_ref().is_some_and(|(job, _)| *job != batch.job) {
                continue;
            }
            let Some(job) = self.jobs.get(&batch.job) else {
                continue;
            };
            if job.paused {
                continue;
            }
            let size = self.workers[&worker]
                .speed
                .get(&batch.job)
                .map_or(threads, |s| {
                    (self.config.target_batch_ms as f64 / s.ms_per_task().max(1e-6)) as u64
                })
                .clamp(1, u64::from(self.config.max_batch_tasks)) as usize;
            let entry = picked.get_or_insert_with(|| (batch.job, Vec::new()));
            for (i, &task) in batch.tasks.iter().enumerate() {
                if entry.1.len() >= size {
                    break;
                }
                if batch.waiting[i] && job.may_speculate(task, donor) && !entry.1.contains(&task) {
                    entry.1.push(task);
                }
            }
            if entry.1.len() >= size {
                break;
            }
        }
        let (job, mut tasks) = picked.filter(|(_, t)| !t.is_empty())?;
        tasks.sort_unstable();
        Some(self.lease(worker, job, tasks, true, now))
    }

    // ---- donors -------------------------------------------------------------

    /// A donor's standing (default for a donor never seen).
    pub fn standing(&self, donor: DonorId) -> DonorStanding {
        self.donors.get(&donor).copied().unwrap_or_default()
    }

    fn validate(&mut self, donor: DonorId) {
        let trust_after = self.config.trust_after;
        let standing = self.donors.entry(donor).or_default();
        if standing.quarantined {
            return;
        }
        standing.validated += 1;
        if trust_after.is_some_and(|n| standing.validated >= n) {
            standing.trusted = true;
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

    // ---- results ------------------------------------------------------------

    /// Classifies, without counting it, a result that was not leased to
    /// `worker` when its frame arrived (so its output was never checked):
    /// stale if it races the close of a batch that held the task, rejected
    /// otherwise, even if the batch has been granted to `worker` since.
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
                Some(b) if b.position(task).is_none() => {
                    Recorded::Rejected(Rejection::TaskNotInBatch)
                }
                _ => Recorded::Rejected(Rejection::UnknownBatch),
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
                recheck,
            } => {
                self.effects.push(Effect::Decided {
                    job: job_id,
                    task,
                    digest,
                });
                for other in others {
                    self.drop_task_from_batch(other, task);
                }
                if validated.is_empty() && self.jobs[&job_id].plan.redundancy > 1 {
                    self.counters.tasks_solo += 1;
                }
                for donor in validated {
                    self.validate(donor);
                }
                for dissenter in dissenters {
                    self.quarantine(
                        dissenter,
                        format!(
                            "its result for task {task} of job {job_id} disagreed with the quorum"
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
        let started = batch.granted_at.max(worker.last_finish);
        let elapsed = now.saturating_sub(started).max(1);
        worker.last_finish = now;
        let per_task = elapsed as f64 / batch.tasks.len() as f64;
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
        }
    }

    /// Ends a batch early. Its unanswered tasks go back to be issued again;
    /// with `revoke` the worker is told to drop it.
    fn close_batch(&mut self, batch_id: BatchId, revoke: bool) {
        let Some(batch) = self.batches.remove(&batch_id) else {
            return;
        };
        if let Some(worker) = self.workers.get_mut(&batch.worker) {
            worker.batches.retain(|&b| b != batch_id);
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
    fn release_batch(&mut self, batch_id: BatchId) {
        if let Some(batch) = self.batches.remove(&batch_id) {
            if let Some(job) = self.jobs.get_mut(&batch.job) {
                for &task in &batch.tasks {
                    job.remove_holder(task, batch_id);
                }
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
        for task in tasks.iter() {
            let Some(position) = batch.position(task) else {
                continue;
            };
            if batch.waiting[position] {
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

    // ---- time ---------------------------------------------------------------

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

fn remember_closed(worker: &mut WorkerState, batch: BatchId, tasks: &[u32], keep: usize) {
    worker
        .recently_closed
        .push_back((batch, TaskRanges::from_indices(tasks.iter().copied())));
    if worker.recently_closed.len() > keep {
        worker.recently_closed.pop_front();
    }
}

/// Whether a trusted donor's task still gets the full quorum: a keyed hash,
/// so the choice is stable for a task yet unpredictable without the seed.
fn spot_checked(seed: u64, job: JobId, task: u32, rate: f64) -> bool {
    if rate <= 0.0 {
        return false;
    }
    // SplitMix64 finaliser over the seed, job and task.
    let mut x = seed
        ^ job.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ u64::from(task).wrapping_mul(0xd1b5_4a32_d192_ed03);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    ((x >> 11) as f64 / (1u64 << 53) as f64) < rate
}

#[cfg(test)]
mod tests;
