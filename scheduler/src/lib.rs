//! Who computes which task, as a pure state machine: no I/O, no clock, no
//! async. The coordinator feeds it events (a worker joined, a batch is wanted,
//! a result arrived, a connection dropped, time passed) and carries out the
//! [`Effect`]s it asks for (revoke a batch, fail a job, shut out a donor).
//! Whether a result decided its task is in what [`Scheduler::record`]
//! returns: the coordinator stores and collates the result that decided it.
//!
//! The rules it owns:
//! - Workers are shared between the users with work by weight
//!   ([`Scheduler::set_user_weight`], 1 unless set), by stride scheduling
//!   over the thread time granted (Waldspurger and Weihl, 1995); a user idle
//!   meanwhile banks nothing. A user's jobs go by priority, higher first,
//!   then oldest first, except that a worker is given those whose blobs its
//!   cache holds first (locality, BOINC's "locality scheduling"), within a
//!   patience after which any job left without a batch is served, whatever
//!   its user. A worker that can take nothing of the first job in that order
//!   gets the next, so a job never waits for a worse one. A batch holds
//!   tasks of one job, sized so it takes about
//!   [`SchedulerConfig::target_batch_ms`] at the worker's measured speed, and
//!   shrinking near the end of a job so the tail spreads out.
//! - A worker holds up to [`SchedulerConfig::pipeline`] batches, plus one
//!   for a newcomer: a user that got work less than twice `pipeline`
//!   batches' time ago, has no batch on it and is at its fair share (within one
//!   batch's cost of the least pass). The worker computes the
//!   jobs it holds in turn (`grid_protocol::worker`), so a job that arrives
//!   while others fill every pipeline starts within about a task's time,
//!   and batches stay sized for everyone. A job's speed is measured over
//!   the share of the worker's time it had, and a first batch charged
//!   before its job had a speed is charged again at the measured one when
//!   it finishes.
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
//!
//! This file holds the public types and the [`Scheduler`]'s tables; each
//! child module adds the methods for one concern:
//! - `jobs`: jobs added, restored after a restart, paused, removed.
//! - `workers`: connections joining, pausing, leaving; the ready set.
//! - `grant`: the order jobs are offered in, batch sizing, leases,
//!   speculative copies, spot checks.
//! - `users`: fair share between users (weights, passes, stride's floor).
//! - `donors`: trust earned, quarantine and the re-checks it causes.
//! - `results`: results classified and voted on; batches finished, closed,
//!   released; tasks returned or failed.
//! - `time`: lease expiry and the next deadline.
//! - `state`: the per-worker and per-batch records behind the tables.
//! - `job`: one job's tasks: issue cursor, holders, votes, decided bitset.
//! - `speed`: measured milliseconds per task, over the time a worker gave
//!   each job it held.

mod donors;
mod grant;
mod job;
mod jobs;
mod replication;
mod results;
mod speed;
mod state;
mod time;
mod users;
mod workers;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use grid_protocol::TaskRanges;

pub use crate::job::JobPlan;
use crate::job::{IntMap, JobState};
pub use crate::replication::{Replication, ReplicationError};
use crate::state::{BatchState, WorkerState};
use crate::users::UserState;

pub type JobId = u64;
pub type WorkerId = u64;
pub type BatchId = u64;
/// Who submitted a job: workers are shared between users by weight.
pub type UserId = u64;
/// Identifies a donor: one browser tab's workers share one, a native worker
/// has its own. Replicas of a task never go to the same donor twice.
pub type DonorId = u64;
/// SHA-256 of a task's output bytes.
pub type Digest = [u8; 32];

/// What a worker can run, or what a job's tasks need, as a set of bits the
/// scheduler does not interpret (the coordinator gives each kernel a bit).
/// A worker gets a job's tasks only if it offers every bit the job needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Capabilities(pub u64);

impl Capabilities {
    pub const NONE: Capabilities = Capabilities(0);
    pub const ALL: Capabilities = Capabilities(u64::MAX);

    /// Whether every bit of `needs` is in `self`.
    pub fn covers(self, needs: Capabilities) -> bool {
        needs.0 & !self.0 == 0
    }
}

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// How long a batch should take at the worker's measured speed.
    pub target_batch_ms: u64,
    /// The shortest lease; leases are three times the expected batch time
    /// when that is longer.
    pub min_lease_ms: u64,
    /// Batches a worker holds at once, so it never waits between batches
    /// (one more for a newcomer, see `grant`).
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
    /// Locality scheduling: prefer workers that hold a job's blobs. Off,
    /// jobs go oldest first whatever workers hold (for measuring it).
    pub locality: bool,
    /// Locality scheduling: how long a job with work left may go without a
    /// batch out before any worker takes it, whatever it holds.
    pub locality_patience_ms: u64,
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
            locality: true,
            locality_patience_ms: 5_000,
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
    /// Whether the worker holds every blob the job's tasks read (always
    /// true for a job that reads none).
    pub local: bool,
}

/// Something the coordinator must do as a consequence of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Tell the worker to drop the batch; it is no longer leased.
    Revoke { worker: WorkerId, batch: BatchId },
    /// The task cannot be completed; its job should fail with this reason.
    TaskFailed {
        job: JobId,
        task: u32,
        reason: String,
    },
    /// The donor just earned trust (its replicated tasks are decided by its
    /// result alone, spot checks aside): remembered, so a restart keeps it.
    Trusted { donor: DonorId },
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
    /// Counted as a replica; `decided` when it completed the quorum (the
    /// task's answer is then this result's output; no [`Effect`] announces it);
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
    /// Workers whose pipeline is exactly full (unpaused, not quarantined):
    /// those that may take one extra batch for a newcomer (see `grant`).
    /// Dispatch is offered those on which a newcomer lacks a batch.
    full: BTreeSet<WorkerId>,
    /// Workers not paused.
    unpaused: usize,
    /// Every user that has had a job or a weight: its weight and pass.
    /// Looked up for every job on every grant, hence hashed.
    users: IntMap<UserId, UserState>,
    /// Stride's global pass: no user with work has a lower pass, and a user
    /// back from idle starts here (see `users`).
    pass_floor: u64,
    /// The latest time a grant was asked for at: how `idle_workers`, which
    /// is not told the time, knows whether a newcomer is still one.
    last_grant: u64,
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
            full: BTreeSet::new(),
            unpaused: 0,
            users: IntMap::default(),
            pass_floor: 0,
            last_grant: 0,
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
    /// outstanding tasks matches its waiting ones, the set of ready workers
    /// and the count of unpaused ones match a scan, every job's owner has a
    /// user record, and no user with work has a pass below the floor (so
    /// none banked credit while idle); the set of full workers and the bound
    /// of `pipeline` + 1 batches a worker are checked too. Cheap enough for
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
            let Some(job) = self.jobs.get(&batch.job) else {
                return Err(format!("batch {id} belongs to unknown job {}", batch.job));
            };
            if !worker.offers.covers(job.plan.needs) {
                return Err(format!(
                    "batch {id} of job {} went to worker {}, which cannot run it",
                    batch.job, batch.worker
                ));
            }
            let waiting = batch.waiting.iter().filter(|w| **w).count() as u32;
            let out = self.batches.values().filter(|b| b.job == batch.job).count() as u32;
            if out != job.batches_out {
                return Err(format!(
                    "job {} counts {} batches out, {out} by scan",
                    batch.job, job.batches_out
                ));
            }
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
            if worker.batches.len() > self.config.pipeline + 1 {
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
        let full: BTreeSet<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| {
                !w.paused
                    && w.batches.len() == self.config.pipeline
                    && !self.standing(w.donor).quarantined
            })
            .map(|(&id, _)| id)
            .collect();
        if full != self.full {
            return Err(format!("full workers {:?}, by scan {full:?}", self.full));
        }
        let unpaused = self.workers.values().filter(|w| !w.paused).count();
        if unpaused != self.unpaused {
            return Err(format!(
                "{} unpaused workers counted, {unpaused} by scan",
                self.unpaused
            ));
        }
        if let Some(job) = self
            .jobs
            .values()
            .find(|j| !self.users.contains_key(&j.plan.owner))
        {
            return Err(format!(
                "job {} belongs to user {}, who has no record",
                job.plan.id, job.plan.owner
            ));
        }
        if let Some((id, user)) = self
            .users
            .iter()
            .find(|(_, u)| u.has_work && u.pass < self.pass_floor)
        {
            return Err(format!(
                "user {id} has work and a pass of {}, below the floor {}",
                user.pass, self.pass_floor
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
