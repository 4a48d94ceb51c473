//! Fair share between users: workers are divided between the users with
//! work to hand out in proportion to their weights, by stride scheduling
//! (C. A. Waldspurger and W. E. Weihl, "Stride Scheduling: Deterministic
//! Proportional-Share Resource Management", MIT/LCS/TM-528, 1995).
//!
//! Each user has a *pass*: the thread time it was granted, in microseconds,
//! divided by its weight. A grant goes to the user with the least pass that
//! has a job the worker may take (`grant.rs` orders the jobs so), and every
//! batch leased, speculative copies included, is charged to its job's owner:
//! its tasks times the job's measured milliseconds per task on one thread,
//! or, before the job has a measurement, `target_batch_ms` a task (a job's
//! first batch holds one task a thread, so it costs about what any later,
//! speed-sized batch costs); when that batch finishes, its owner is charged
//! again at the speed then measured (a newcomer's first batch of tiny tasks
//! would otherwise cost it a whole batch's worth of its share, and keep it
//! from the extra batch below). Thread time makes a batch of a million tiny
//! tasks and one of four long ones comparable, so a user's share does not
//! depend on how fast its kernel is.
//!
//! Why stride and not deficit round robin (Shreedhar and Varghese, 1995):
//! a grant is one decision for one worker that asks, and the worker may be
//! unable to take the next user's work (capabilities, replicas that must go
//! to other donors); with a pass per user the choice is "the least pass that
//! has something for this worker", and a user skipped keeps its place by
//! itself, where round robin would need its round pointer and deficits
//! reworked. A batch's size is known only at the grant and varies by worker;
//! stride charges what was granted, a fractional quantum in the paper's terms,
//! where round robin needs a quantum at least the largest batch to stay O(1).
//!
//! Idle time earns nothing (the paper's global pass, as in its dynamic
//! participation): a user that had no task to hand out at the last grant and
//! has one now starts no lower than [`Scheduler`]'s floor, the least pass among
//! the users that kept work between two grants (never lowered). Otherwise a
//! user back after an hour away would hold every worker until its pass caught
//! up. Its own pass is kept when higher, so leaving for a moment does not
//! clear what it was given; once the others overtake it, that is forgotten.
//! A user whose jobs no worker can take keeps work and a low pass, and so
//! holds the floor down; users joining meanwhile start as low.
//!
//! Stride picks who gets a slot in a pipeline, and slots open only as
//! batches finish, every `target_batch_ms` or so a worker: a user whose job
//! arrives while others fill every pipeline would wait that long for its
//! first task, however little work it brings. So a worker whose pipeline
//! is full takes one extra batch for a user with no batch on it whose pass
//! is within one quantum (one speed-sized batch on that worker) of the
//! least: at its fair share to stride's own precision (`grant.rs`,
//! `newcomers_only`), and only while it is a newcomer, for twice `pipeline`
//! times `target_batch_ms` after it got work (the batches ahead of it run at
//! about half speed beside its own): by then every pipeline has turned
//! over, and users sharing a grid steadily keep to their pipelines. The worker computes its jobs in turn, so that batch
//! starts when a thread frees up, and the users' passes still decide how
//! much each gets.
//!
//! All of it is O(users) a grant on top of the job scan the grant already does.

use crate::{Scheduler, UserId};

/// What the scheduler keeps per user.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct UserState {
    /// Its share of the workers, relative to other users'; at least 1.
    pub weight: u32,
    /// Thread-microseconds granted divided by `weight`, lifted to the floor
    /// when it comes back from idle.
    pub pass: u64,
    /// Whether it had a task to hand out at the last grant.
    pub has_work: bool,
    /// `has_work` of the grant before, while a grant looks at the jobs.
    pub had_work: bool,
    /// When it last got work after having none (ms): for a while after,
    /// it is a newcomer, which a full worker takes an extra batch for.
    pub arrived: u64,
}

impl Default for UserState {
    fn default() -> UserState {
        UserState {
            weight: 1,
            pass: 0,
            has_work: false,
            had_work: false,
            arrived: 0,
        }
    }
}

impl Scheduler {
    /// Sets a user's share of the workers relative to other users' (a user
    /// never set has weight 1; 0 counts as 1). It applies to what the user is
    /// granted from now on.
    pub fn set_user_weight(&mut self, user: UserId, weight: u32) {
        self.users.entry(user).or_default().weight = weight.max(1);
    }

    pub fn user_weight(&self, user: UserId) -> u32 {
        self.users.get(&user).map_or(1, |u| u.weight)
    }

    /// Charges `user` for `tasks` tasks of a job whose tasks take
    /// `task_ms` on one thread (`None`: not measured yet). Returns what its
    /// pass went up by.
    pub(crate) fn charge(&mut self, user: UserId, tasks: usize, task_ms: Option<f64>) -> u64 {
        let task_ms = task_ms.unwrap_or(self.config.target_batch_ms as f64);
        let user = self.users.entry(user).or_default();
        let thread_us = tasks as f64 * task_ms * 1_000.0;
        let charge = (thread_us / f64::from(user.weight)).ceil() as u64;
        user.pass = user.pass.saturating_add(charge);
        charge
    }

    /// A batch charged `charged` before its job had a measured speed has
    /// finished, and its `tasks` tasks take `task_ms` on one thread after
    /// all: its owner's pass is corrected to what they cost, but not below
    /// the floor. A newcomer's first batch of tiny tasks would otherwise
    /// cost it `target_batch_ms` a task, a whole batch's worth of its share.
    pub(crate) fn true_up(&mut self, user: UserId, charged: u64, tasks: usize, task_ms: f64) {
        let floor = self.pass_floor;
        let Some(user) = self.users.get_mut(&user) else {
            return;
        };
        let thread_us = tasks as f64 * task_ms * 1_000.0;
        let cost = (thread_us / f64::from(user.weight)).ceil() as u64;
        user.pass =
            (user.pass.saturating_sub(charged).saturating_add(cost)).max(floor.min(user.pass));
    }

    /// Before a grant looks at the jobs, which sets `has_work` again for the
    /// owner of every unpaused job with a task to hand out.
    pub(crate) fn users_before_scan(&mut self) {
        for user in self.users.values_mut() {
            user.had_work = user.has_work;
            user.has_work = false;
        }
    }

    /// After the scan: the floor rises to the least pass among users that
    /// kept work, and users back from idle start no lower. Whether a pass
    /// was lifted.
    pub(crate) fn users_after_scan(&mut self, now: u64) -> bool {
        self.last_grant = self.last_grant.max(now);
        let kept = self
            .users
            .values()
            .filter(|user| user.has_work && user.had_work)
            .map(|user| user.pass)
            .min();
        if let Some(least) = kept {
            self.pass_floor = self.pass_floor.max(least);
        }
        let mut lifted = false;
        for user in self.users.values_mut() {
            if user.has_work && !user.had_work {
                user.arrived = now;
                if user.pass < self.pass_floor {
                    user.pass = self.pass_floor;
                    lifted = true;
                }
            }
        }
        lifted
    }

    /// How long a user that got work is a newcomer: until every pipeline
    /// has turned over, and slots open to it by its pass alone; twice
    /// `pipeline` batches' time, as the batches ahead of it run at about
    /// half speed beside its own.
    pub(crate) fn newcomer_ms(&self) -> u64 {
        2 * self.config.target_batch_ms * self.config.pipeline as u64
    }

    /// Whether `user` is a newcomer at `now`; one whose work no grant has
    /// seen yet (`has_work` false) is one.
    pub(crate) fn is_newcomer(&self, user: UserId, now: u64) -> bool {
        self.users
            .get(&user)
            .is_none_or(|u| !u.has_work || now.saturating_sub(u.arrived) < self.newcomer_ms())
    }
}
