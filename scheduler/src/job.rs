//! One job's tasks as the scheduler sees them: which were never issued (a
//! cursor), which are decided (a bitset), and for the tasks in between who
//! holds them, which replica results came in, and which need another copy.
//!
//! Adaptive replication lives here too: a task handed to a trusted donor may
//! be a *solo* task, decided by that donor's result alone. Any untrusted
//! donor touching a solo task turns it back into a full-quorum task.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use crate::replication::Replication;
use crate::speed::Speed;
use crate::{BatchId, Capabilities, Digest, DonorId, JobId, UserId, WorkerId};

/// Hashes task indices and donor ids by one multiplication: the keys are not
/// chosen by anyone who could aim for collisions (task indices are ours, donor
/// ids are digests), and SipHash was a tenth of the scheduler's time.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IntHasher(u64);

impl Hasher for IntHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;
pub(crate) type IntSet<K> = HashSet<K, BuildHasherDefault<IntHasher>>;

/// What the scheduler needs to know about a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobPlan {
    pub id: JobId,
    pub tasks: u32,
    pub replication: Replication,
    /// What a worker must offer to be given the job's tasks.
    pub needs: Capabilities,
    /// The most tasks in one of its batches, below the scheduler's own
    /// `max_batch_tasks` (a job whose tasks carry large inputs).
    pub max_batch_tasks: Option<u32>,
    /// What its tasks read from workers' caches (its files and module), as
    /// opaque keys with their sizes in bytes: workers that hold them are
    /// preferred (locality scheduling).
    pub locality: Vec<(u64, u64)>,
    /// The user who submitted it: workers are shared between users by
    /// weight ([`crate::Scheduler::set_user_weight`]).
    pub owner: UserId,
    /// Among its owner's jobs, higher goes first; equal, older first.
    pub priority: i32,
}

impl JobPlan {
    /// A plan with one replica per task, of user 0 at priority 0.
    pub fn single(id: JobId, tasks: u32) -> JobPlan {
        JobPlan {
            id,
            tasks,
            replication: Replication::SINGLE,
            needs: Capabilities::NONE,
            max_batch_tasks: None,
            locality: Vec::new(),
            owner: 0,
            priority: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Holder {
    pub worker: WorkerId,
    pub donor: DonorId,
    pub batch: BatchId,
    /// False once the lease expired: the worker may still answer, but
    /// another copy may be issued.
    pub active: bool,
}

#[derive(Debug, Default)]
struct LiveTask {
    holders: Vec<Holder>,
    votes: Vec<(DonorId, Digest)>,
    /// Replicas wanted; grows when replicas disagree.
    target: u32,
    failures: u32,
    /// Decided by one trusted donor's result (adaptive replication).
    solo: bool,
}

impl LiveTask {
    fn involves(&self, donor: DonorId) -> bool {
        self.holders.iter().any(|h| h.donor == donor) || self.votes.iter().any(|v| v.0 == donor)
    }

    fn active_holders(&self) -> u32 {
        self.holders.iter().filter(|h| h.active).count() as u32
    }

    fn wants_copy(&self) -> bool {
        self.active_holders() + (self.votes.len() as u32) < self.target
    }
}

pub(crate) enum Vote {
    /// Already decided, or this donor already answered.
    Duplicate,
    Counted,
    /// All wanted replicas answered and no quorum agrees: one more is wanted.
    Disagreement,
    /// The task has its answer.
    Decided {
        /// Other batches still holding the task.
        others: Vec<BatchId>,
        /// Donors whose results matched the answer, when more than one
        /// result decided it (a real validation).
        validated: Vec<DonorId>,
        /// Donors whose results differ from the answer, with the digests
        /// of their results.
        dissenters: Vec<(DonorId, Digest)>,
        /// The digest of the answer.
        answer: Digest,
        /// The task was decided before and re-checked.
        recheck: bool,
    },
    /// No quorum is reachable within the replica cap.
    Failed {
        reason: String,
        dissenters: Vec<DonorId>,
    },
}

#[derive(Debug)]
pub(crate) struct JobState {
    pub plan: JobPlan,
    pub paused: bool,
    decided: Vec<u64>,
    decided_count: u32,
    /// Tasks `fresh..plan.tasks` were never issued.
    fresh: u32,
    live: IntMap<u32, LiveTask>,
    /// Issued, undecided tasks that need another copy now.
    wanting: BTreeSet<u32>,
    /// Milliseconds per task on one thread.
    speed: Speed,
    /// Tasks each donor decided on its own word (one replica, or solo):
    /// what must be checked again if that donor turns out to lie.
    sole: IntMap<DonorId, Vec<u32>>,
    /// Decided tasks reopened for a second look.
    rechecking: IntSet<u32>,
    /// Batches of this job that are out (leased and not closed).
    pub batches_out: u32,
    /// Since when the job has had no batch out, if it has none and a grant
    /// has looked at it since (locality's patience counts from there).
    pub idle_since: Option<u64>,
}

impl JobState {
    pub fn new(plan: JobPlan) -> JobState {
        JobState {
            decided: vec![0; (plan.tasks as usize).div_ceil(64)],
            decided_count: 0,
            fresh: 0,
            live: IntMap::default(),
            wanting: BTreeSet::new(),
            speed: Speed::default(),
            paused: false,
            sole: IntMap::default(),
            rechecking: IntSet::default(),
            batches_out: 0,
            idle_since: None,
            plan,
        }
    }

    pub fn is_decided(&self, task: u32) -> bool {
        self.decided[task as usize / 64] & (1 << (task % 64)) != 0
    }

    fn mark_decided(&mut self, task: u32) {
        if !self.is_decided(task) {
            self.decided[task as usize / 64] |= 1 << (task % 64);
            self.decided_count += 1;
        }
    }

    pub fn decided_count(&self) -> u32 {
        self.decided_count
    }

    /// Tasks that could be handed out now (never issued, or wanting a copy).
    pub fn issuable(&self) -> u64 {
        u64::from(self.plan.tasks - self.fresh) + self.wanting.len() as u64
    }

    /// Issued, undecided tasks that need no other copy now: roughly the
    /// tasks its workers have out.
    pub fn in_flight(&self) -> u64 {
        (self.live.len() - self.wanting.len()) as u64
    }

    pub fn ms_per_task_per_thread(&self) -> Option<f64> {
        self.speed.known()
    }

    pub fn observe_speed(&mut self, ms_per_task_per_thread: f64) {
        self.speed.observe(ms_per_task_per_thread);
    }

    fn full_task(&self) -> LiveTask {
        LiveTask {
            target: self.plan.replication.redundancy,
            ..LiveTask::default()
        }
    }

    pub fn restore_decided(&mut self, task: u32) {
        if task < self.plan.tasks {
            self.mark_decided(task);
            self.live.remove(&task);
            self.wanting.remove(&task);
        }
    }

    pub fn restore_vote(&mut self, task: u32, donor: DonorId, digest: Digest) {
        if task >= self.plan.tasks || self.is_decided(task) {
            return;
        }
        // The task keeps its votes; the fresh cursor skips it when it gets there.
        let redundancy = self.plan.replication.redundancy;
        let max_replicas = self.plan.replication.max_replicas;
        let live = self.live.entry(task).or_default();
        live.target = live.target.max(redundancy);
        if !live.votes.iter().any(|v| v.0 == donor) {
            live.votes.push((donor, digest));
        }
        if live.votes.len() as u32 >= live.target && live.target < max_replicas {
            live.target += 1;
        }
        self.refresh(task);
    }

    /// Keeps `wanting` in step with one task's state.
    fn refresh(&mut self, task: u32) {
        let wants =
            !self.is_decided(task) && self.live.get(&task).is_some_and(LiveTask::wants_copy);
        if wants {
            self.wanting.insert(task);
        } else {
            self.wanting.remove(&task);
        }
    }

    /// Up to `size` tasks for `donor`: copies wanted first, then fresh tasks.
    /// A trusted donor's fresh tasks are solo unless `spot_check` picks them
    /// (only for jobs with more than one replica).
    pub fn take_tasks(
        &mut self,
        donor: DonorId,
        size: u32,
        trusted: bool,
        spot_check: impl Fn(u32) -> bool,
    ) -> Vec<u32> {
        let size = size as usize;
        let mut tasks: Vec<u32> = self
            .wanting
            .iter()
            .copied()
            .filter(|task| !self.live.get(task).is_some_and(|l| l.involves(donor)))
            .take(size)
            .collect();
        while tasks.len() < size && self.fresh < self.plan.tasks {
            let task = self.fresh;
            self.fresh += 1;
            // Decided or restored tasks are not fresh; restored ones are in
            // `wanting` and were considered above.
            if self.is_decided(task) || self.live.contains_key(&task) {
                continue;
            }
            let mut live = self.full_task();
            if trusted && self.plan.replication.redundancy > 1 && !spot_check(task) {
                live.solo = true;
                live.target = 1;
            }
            self.live.insert(task, live);
            tasks.push(task);
        }
        tasks.sort_unstable();
        tasks
    }

    /// Records that a batch holds a task; true if the task had been issued
    /// before to a donor that lost it (a re-issue).
    pub fn add_holder(&mut self, task: u32, holder: Holder, trusted: bool) -> bool {
        let redundancy = self.plan.replication.redundancy;
        let live = self.live.entry(task).or_insert_with(|| LiveTask {
            target: redundancy,
            ..LiveTask::default()
        });
        if live.solo && !trusted {
            // An untrusted donor's answer needs the full quorum.
            live.solo = false;
            live.target = live.target.max(redundancy);
        }
        let previously = live.holders.len() + live.votes.len();
        live.holders.push(holder);
        let reissue =
            previously >= live.target as usize || (previously == 0 && self.wanting.contains(&task));
        self.refresh(task);
        reissue
    }

    /// The batch no longer holds the task (finished, returned, lost).
    pub fn remove_holder(&mut self, task: u32, batch: BatchId) {
        if let Some(live) = self.live.get_mut(&task) {
            live.holders.retain(|h| h.batch != batch);
        }
        self.refresh(task);
    }

    /// The batch's lease expired: it still holds the task, but a copy may go
    /// elsewhere.
    pub fn deactivate_holder(&mut self, task: u32, batch: BatchId) {
        if let Some(live) = self.live.get_mut(&task) {
            for holder in live.holders.iter_mut().filter(|h| h.batch == batch) {
                holder.active = false;
            }
        }
        self.refresh(task);
    }

    pub fn record_failure(&mut self, task: u32) -> u32 {
        let failures = self.live.get_mut(&task).map_or(0, |l| {
            l.failures += 1;
            l.failures
        });
        self.refresh(task);
        failures
    }

    /// Whether `donor` may take a speculative copy of `task`.
    pub fn may_speculate(&self, task: u32, donor: DonorId) -> bool {
        !self.is_decided(task)
            && self.live.get(&task).is_some_and(|l| {
                !l.involves(donor)
                    && l.active_holders() >= 1
                    && l.active_holders() + (l.votes.len() as u32) < l.target + 1
            })
    }

    pub fn vote(
        &mut self,
        task: u32,
        batch: BatchId,
        donor: DonorId,
        digest: Digest,
        trusted: bool,
    ) -> Vote {
        if self.is_decided(task) {
            self.remove_holder(task, batch);
            return Vote::Duplicate;
        }
        let (quorum, max_replicas, redundancy) = (
            self.plan.replication.quorum,
            self.plan.replication.max_replicas,
            self.plan.replication.redundancy,
        );
        let Some(live) = self.live.get_mut(&task) else {
            return Vote::Duplicate;
        };
        live.holders.retain(|h| h.batch != batch);
        if live.votes.iter().any(|v| v.0 == donor) {
            self.refresh(task);
            return Vote::Duplicate;
        }
        live.votes.push((donor, digest));
        if live.solo && !trusted {
            live.solo = false;
            live.target = live.target.max(redundancy);
        }
        let agreeing = live.votes.iter().filter(|v| v.1 == digest).count() as u32;
        if agreeing >= quorum || live.solo {
            let others = live.holders.iter().map(|h| h.batch).collect();
            let agree: Vec<DonorId> = live
                .votes
                .iter()
                .filter(|v| v.1 == digest)
                .map(|v| v.0)
                .collect();
            let dissenters = live
                .votes
                .iter()
                .filter(|v| v.1 != digest)
                .copied()
                .collect();
            let validated = if agree.len() > 1 {
                agree.clone()
            } else {
                Vec::new()
            };
            if agree.len() == 1 {
                self.sole.entry(donor).or_default().push(task);
            }
            self.live.remove(&task);
            self.wanting.remove(&task);
            self.mark_decided(task);
            let recheck = !self.rechecking.is_empty() && self.rechecking.remove(&task);
            return Vote::Decided {
                others,
                validated,
                dissenters,
                answer: digest,
                recheck,
            };
        }
        let answered = live.votes.len() as u32;
        let outcome = if answered >= live.target {
            if live.target < max_replicas {
                live.target += 1;
                Vote::Disagreement
            } else if live.active_holders() == 0 {
                let distinct: BTreeSet<Digest> = live.votes.iter().map(|v| v.1).collect();
                Vote::Failed {
                    reason: format!(
                        "task {task} reached no quorum: {answered} replicas gave {} different results, {quorum} must agree",
                        distinct.len()
                    ),
                    dissenters: Vec::new(),
                }
            } else {
                Vote::Counted
            }
        } else {
            Vote::Counted
        };
        self.refresh(task);
        outcome
    }

    /// A donor was found lying: forget its undecided votes and reopen every
    /// task it decided on its own word. Returns the reopened tasks.
    pub fn distrust(&mut self, donor: DonorId) -> Vec<u32> {
        let undecided: Vec<u32> = self
            .live
            .iter()
            .filter(|(_, l)| l.votes.iter().any(|v| v.0 == donor))
            .map(|(&t, _)| t)
            .collect();
        for task in undecided {
            if let Some(live) = self.live.get_mut(&task) {
                live.votes.retain(|v| v.0 != donor);
                live.solo = false;
                live.target = live.target.max(self.plan.replication.redundancy);
            }
            self.refresh(task);
        }
        let reopened = self.sole.remove(&donor).unwrap_or_default();
        for &task in &reopened {
            self.recheck(task);
        }
        reopened
    }

    /// Reopens a decided task for a second opinion from another donor: the
    /// first answer stays stored until the new one replaces or confirms it
    /// (its result comes back as `Recorded::Accepted { recheck: true }`).
    /// Whether it had been decided.
    pub fn recheck(&mut self, task: u32) -> bool {
        let reopened = task < self.plan.tasks && self.reopen(task);
        if reopened {
            self.rechecking.insert(task);
        }
        reopened
    }

    /// Undoes a task's decision: it is open again and wants its replicas.
    /// Whether it had been decided.
    pub fn reopen(&mut self, task: u32) -> bool {
        if !self.is_decided(task) {
            return false;
        }
        self.decided[task as usize / 64] &= !(1 << (task % 64));
        self.decided_count -= 1;
        self.live.insert(
            task,
            LiveTask {
                target: self.plan.replication.redundancy.max(1),
                ..LiveTask::default()
            },
        );
        self.refresh(task);
        true
    }
}
