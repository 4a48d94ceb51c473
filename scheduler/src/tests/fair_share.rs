//! Fair share between users: the rules one at a time (priority orders a
//! user's jobs, a worker that cannot take one user's work gets another's,
//! fairness picks the user and locality the job, a starving job is still
//! served, a full worker takes one extra batch for a newcomer and no more,
//! and only while it is one,
//! a first batch's charge is trued up, jobs sharing a worker each count the
//! time they had), and, on a simulated grid, the shares themselves: weights
//! 2:1 give 2:1 of the thread time, a user back from idle has banked
//! nothing, and the measure (a 100-task job beside a 1,000,000-task
//! one finishes within 3x its time alone, for tasks of 10 ms to 1 s). The
//! simulation is deterministic and its clock is a number; what it measures
//! (thread time granted and computed, finish times) it computes from its
//! own fixed task times, not from the scheduler's estimates.

use std::collections::{BTreeMap, VecDeque};

use super::*;

fn owned(id: JobId, tasks: u32, owner: UserId, priority: i32) -> JobPlan {
    JobPlan {
        owner,
        priority,
        ..plan(id, tasks, 1)
    }
}

#[test]
fn priority_orders_a_users_jobs_and_equal_priority_goes_oldest_first() {
    let mut s = Scheduler::new(SchedulerConfig {
        pipeline: 1,
        ..config()
    });
    s.add_job(owned(1, 2, 7, 0));
    s.add_job(owned(2, 2, 7, 5));
    s.add_job(owned(3, 2, 7, 5));
    s.add_job(owned(4, 2, 7, -1));
    s.add_worker(1, 1, 2, Capabilities::ALL, 0);
    let mut order = Vec::new();
    let mut now = 0;
    while let Some(grant) = s.grant(1, now) {
        order.push(grant.job);
        now += 10;
        deliver_all(&mut s, 1, &grant, now);
    }
    assert_eq!(order, [2, 3, 1, 4]);
    s.check_consistency().unwrap();
}

#[test]
fn priority_orders_only_its_owners_jobs_not_other_users() {
    let mut s = Scheduler::new(config());
    s.add_job(owned(1, 1_000, 1, 0));
    s.add_job(owned(2, 1_000, 2, 100));
    for worker in 1..=4 {
        s.add_worker(worker, worker, 1, Capabilities::ALL, 0);
    }
    // Equal weights and equal batches: the two users take turns, and user
    // 2's priority of 100 buys it nothing against user 1.
    let jobs: Vec<JobId> = (1..=4).map(|w| s.grant(w, 0).unwrap().job).collect();
    assert_eq!(jobs, [1, 2, 1, 2]);
}

#[test]
fn a_worker_limited_to_some_users_takes_only_their_jobs() {
    let mut s = Scheduler::new(SchedulerConfig {
        speculate_after_ms: Some(0),
        ..config()
    });
    s.add_job(owned(1, 1_000, 1, 0));
    s.add_job(owned(2, 4, 2, 0));
    s.add_worker(1, 1, 1, Capabilities::ALL, 0);
    s.limit_worker_to(1, &[2]);
    // Only user 2's job, though user 1's is older and has far more work;
    // and once user 2's tasks are all out, no copy of user 1's.
    let mut granted = Vec::new();
    while let Some(grant) = s.grant(1, 0) {
        granted.push(grant.job);
    }
    assert!(!granted.is_empty());
    assert!(granted.iter().all(|&job| job == 2), "{granted:?}");
    s.add_worker(2, 2, 1, Capabilities::ALL, 0);
    s.limit_worker_to(2, &[3]);
    assert_eq!(s.grant(2, 10), None, "nobody's job is user 3's");
    // Lifting the limit: anyone's.
    s.limit_worker_to(2, &[]);
    assert_eq!(s.grant(2, 10).map(|g| g.job), Some(1));
    s.check_consistency().unwrap();
}

#[test]
fn a_worker_that_cannot_take_one_users_job_gets_the_next_users() {
    let mut s = Scheduler::new(config());
    s.set_user_weight(1, 100);
    // User 1: a replicated job, and one for another kernel; user 2: one job.
    s.add_job(owned(1, 2, 1, 0));
    s.jobs.get_mut(&1).unwrap().plan.replication = Replication {
        redundancy: 2,
        quorum: 2,
        max_replicas: 3,
    };
    s.add_job(JobPlan {
        needs: Capabilities(0b10),
        ..owned(2, 100, 1, 0)
    });
    s.add_job(owned(3, 100, 2, 0));
    // Workers 1 and 3 are two threads of one tab (donor 1) and do not run
    // kernel 0b10; worker 2 has a donor of its own.
    s.add_worker(1, 1, 2, Capabilities(0b01), 0);
    s.add_worker(2, 2, 2, Capabilities(0b01), 0);
    s.add_worker(3, 1, 2, Capabilities(0b01), 0);
    s.add_worker(4, 4, 2, Capabilities(0b01), 0);
    // Both users at 0: user 1 first, its job 1 (job 2 needs 0b10).
    let first = s.grant(1, 0).unwrap();
    assert_eq!((first.job, first.tasks.len()), (1, 2));
    // User 1 was charged a hundredth of user 2's rate: user 2 is behind.
    assert_eq!(s.grant(2, 0).unwrap().job, 3);
    assert!(s.users[&1].pass < s.users[&2].pass);
    // User 1 goes first again, but its donor 1 holds both tasks of job 1
    // and cannot run job 2: worker 3 gets user 2's job rather than nothing.
    assert_eq!(s.grant(3, 0).unwrap().job, 3);
    // Another donor takes the replicas.
    assert_eq!(s.grant(4, 0).unwrap().job, 1);
    // A worker that runs 0b10 gets job 2: user 1 is still first.
    s.add_worker(5, 5, 2, Capabilities::ALL, 0);
    assert_eq!(s.grant(5, 0).unwrap().job, 2);
    // Paused, user 1's jobs make way too.
    s.set_job_paused(2, true);
    assert_eq!(s.grant(5, 0).unwrap().job, 3);
    s.check_consistency().unwrap();
}

#[test]
fn fairness_picks_the_user_and_locality_the_users_job() {
    let mut s = Scheduler::new(config());
    s.add_job(JobPlan {
        locality: vec![(11, 64 << 20)],
        ..owned(1, 100, 1, 0)
    });
    s.add_job(JobPlan {
        locality: vec![(12, 64 << 20)],
        ..owned(2, 100, 2, 0)
    });
    s.add_job(JobPlan {
        locality: vec![(13, 64 << 20)],
        ..owned(3, 100, 2, 0)
    });
    s.add_worker(1, 1, 1, Capabilities::ALL, 0);
    s.update_holdings(1, &[11, 13], &[]);
    // Both users at 0: user 1's job, whose file the worker holds.
    assert_eq!(s.grant(1, 0).map(|g| (g.job, g.local)), Some((1, true)));
    // User 2 is behind now: its job whose file the worker holds (3), not
    // its older one (2), nor user 1's again, whose file it also holds.
    assert_eq!(s.grant(1, 0).map(|g| (g.job, g.local)), Some((3, true)));
    s.check_consistency().unwrap();
}

#[test]
fn a_starving_job_is_served_after_the_patience_whatever_its_users_share() {
    let mut s = Scheduler::new(SchedulerConfig {
        pipeline: 1,
        locality_patience_ms: 1_000,
        ..config()
    });
    // User 1 has a thousand times user 2's weight and a job whose file both
    // workers hold (in batches of 2, so it lasts); user 2's job reads a
    // file neither holds.
    s.set_user_weight(1, 1_000);
    s.add_job(JobPlan {
        locality: vec![(11, 64 << 20)],
        max_batch_tasks: Some(2),
        ..owned(1, 100_000, 1, 0)
    });
    s.add_job(JobPlan {
        locality: vec![(12, 64 << 20)],
        ..owned(2, 100_000, 2, 0)
    });
    s.add_worker(1, 1, 1, Capabilities::ALL, 0);
    s.add_worker(2, 2, 1, Capabilities::ALL, 0);
    s.update_holdings(1, &[11], &[]);
    s.update_holdings(2, &[11], &[]);
    let mut now = 0;
    let mut on_job_2 = 0;
    for _ in 0..40 {
        for worker in [1, 2] {
            let grant = s.grant(worker, now).unwrap();
            if grant.job == 2 {
                on_job_2 += 1;
            }
            deliver_all(&mut s, worker, &grant, now + 100);
        }
        now += 200;
    }
    // By pass alone user 2 would get one batch of the 80 (its first costs
    // as much as a thousand of user 1's); the patience gives its job one a
    // second or so.
    assert!(on_job_2 >= 4, "job 2 starved: {on_job_2} batches");
    assert!(on_job_2 < 20, "job 2 got {on_job_2} of 80 batches");
    s.check_consistency().unwrap();
}

#[test]
fn a_full_worker_takes_one_extra_batch_for_a_newcomer_and_no_more() {
    let mut s = Scheduler::new(config());
    s.add_job(owned(1, 1_000_000, 1, 0));
    for worker in 1..=3 {
        s.add_worker(worker, worker, 2, Capabilities::ALL, 0);
        assert_eq!(s.grant(worker, 0).unwrap().job, 1);
        assert_eq!(s.grant(worker, 0).unwrap().job, 1);
    }
    // One user, a batch on every worker: the full workers are not offered,
    // and a grant to one finds nothing (user 1 already has a batch there).
    assert!(s.idle_workers().is_empty());
    assert!(s.grant(1, 0).is_none());
    // User 2 arrives: the full workers are offered again, and one takes an
    // extra batch of its job, but not a second.
    s.add_job(owned(2, 1_000_000, 2, 0));
    assert_eq!(s.idle_workers(), [1, 2, 3]);
    let extra = s.grant(1, 10).unwrap();
    assert_eq!((extra.job, s.batches_of(1)), (2, 3));
    assert!(s.grant(1, 10).is_none(), "one extra batch at most");
    // Nor a batch of the user's other job: it has a batch here.
    s.add_job(owned(3, 1_000_000, 2, 0));
    assert!(s.grant(1, 10).is_none());
    s.check_consistency().unwrap();
    // Unmeasured, that batch cost user 2 two tasks of 2 s: one quantum of a
    // 2-thread worker past user 1, still within stride's precision of its
    // share, so worker 2 takes one too; then it is two quanta past, and
    // worker 3 keeps to its pipeline.
    assert_eq!(s.grant(2, 10).unwrap().job, 2);
    assert!(s.grant(3, 10).is_none(), "user 2 is past its share");
    assert_eq!(s.batches_of(3), 2);
    s.check_consistency().unwrap();
}

#[test]
fn a_full_worker_is_offered_again_once_the_newcomers_batch_there_finishes() {
    let mut s = Scheduler::new(config());
    s.add_job(owned(1, 1_000_000, 1, 0));
    for worker in [1, 2] {
        s.add_worker(worker, worker, 1, Capabilities::ALL, 0);
        s.grant(worker, 0).unwrap();
        s.grant(worker, 0).unwrap();
    }
    // A small job: its batches shrink to spread it, so it stays at its share.
    s.add_job(owned(2, 100, 2, 0));
    let first = s.grant(1, 10).unwrap();
    assert_eq!(first.job, 2);
    deliver_all(&mut s, 1, &first, 20);
    assert_eq!(s.grant(2, 20).map(|g| g.job), Some(2));
    // Worker 1 finished its batch of user 2 while worker 2 computes one:
    // worker 1 is offered again, though user 2 has a batch out elsewhere.
    assert_eq!(s.idle_workers(), [1]);
    assert_eq!(s.grant(1, 20).map(|g| g.job), Some(2));
    s.check_consistency().unwrap();
}

#[test]
fn a_newcomer_is_one_only_until_the_pipelines_have_turned_over() {
    // User 1 fills worker 1; user 2, far behind its share (weight 1,000),
    // gets work at 0 and a batch on worker 2, which is then full too.
    let setup = || {
        let mut s = Scheduler::new(config());
        s.add_job(owned(1, 1_000_000, 1, 0));
        s.add_worker(1, 1, 2, Capabilities::ALL, 0);
        assert_eq!(s.grant(1, 0).unwrap().job, 1);
        assert_eq!(s.grant(1, 0).unwrap().job, 1);
        s.set_user_weight(2, 1_000);
        s.add_job(owned(2, 1_000_000, 2, 0));
        s.add_worker(2, 2, 2, Capabilities::ALL, 0);
        // Lifted to user 1's pass, user 2 comes second on the tie.
        assert_eq!(s.grant(2, 0).unwrap().job, 1);
        assert_eq!(s.grant(2, 0).unwrap().job, 2);
        s
    };
    // Within twice two batches' time (8 s), worker 1 takes an extra batch.
    let mut s = setup();
    assert!(s.idle_workers().contains(&1));
    assert_eq!(s.grant(1, 7_999).map(|g| g.job), Some(2));
    // After, it keeps to its pipeline: slots open to user 2 by its pass.
    let mut s = setup();
    // (A grant is how the scheduler hears the time; worker 2 is full and
    // holds user 2's batch, so it gets nothing.)
    assert!(s.grant(2, 8_000).is_none());
    assert!(!s.idle_workers().contains(&1));
    assert!(s.grant(1, 8_000).is_none());
    s.check_consistency().unwrap();
}

#[test]
fn a_first_batchs_charge_is_trued_up_once_its_speed_is_measured() {
    let mut s = Scheduler::new(config());
    s.add_job(owned(1, 1_000_000, 1, 0));
    s.add_job(owned(2, 100, 2, 0));
    s.add_worker(1, 1, 2, Capabilities::ALL, 0);
    let first = s.grant(1, 0).unwrap();
    let second = s.grant(1, 0).unwrap();
    assert_eq!((first.job, second.job), (1, 2));
    // Unmeasured, each was charged 2 s a task on one thread.
    let pass = |s: &Scheduler, user| s.users[&user].pass;
    assert_eq!(pass(&s, 2), 2 * 2_000_000);
    // Job 2's two tasks took 10 ms, half of it the worker's (job 1 ran
    // beside): 5 ms of its two threads, 5 ms of thread time a task, and
    // that is what user 2 pays in the end.
    deliver_all(&mut s, 1, &second, 10);
    assert_eq!(pass(&s, 2), 2 * 5_000);
    // Never below the floor: user 1, whose first batch took as long, paid
    // as little, but user 2's pass bounds it from below meanwhile.
    deliver_all(&mut s, 1, &first, 20);
    assert!(pass(&s, 1) >= s.pass_floor);
    s.check_consistency().unwrap();
}

#[test]
fn jobs_sharing_a_worker_each_count_the_time_they_had() {
    let mut s = Scheduler::new(SchedulerConfig {
        pipeline: 1,
        ..config()
    });
    s.add_job(owned(1, 1_000_000, 1, 0));
    s.add_job(owned(2, 1_000_000, 2, 0));
    s.add_worker(1, 1, 1, Capabilities::ALL, 0);
    let a = s.grant(1, 0).unwrap();
    let b = s.grant(1, 0).unwrap();
    assert_eq!((a.job, a.tasks.len(), b.job, b.tasks.len()), (1, 1, 2, 1));
    // One thread, the two jobs alternating (as WorkerCore does): a's task
    // ends at 100 ms, b's at 200. Each had the worker half the time while
    // both were held: a measures 50 ms, b 50 + 100 = 150 ms.
    deliver_all(&mut s, 1, &a, 100);
    deliver_all(&mut s, 1, &b, 200);
    let ms = |job| s.jobs[&job].ms_per_task_per_thread().unwrap();
    assert_eq!((ms(1), ms(2)), (50.0, 150.0));
}

/// A simulated grid of identical workers, each a pool of threads as the
/// real ones are (`grid_protocol::WorkerCore`'s order): a free thread takes
/// the next task of the job held with the fewest tasks running, then the
/// one served least recently, from that job's oldest batch; every task of a
/// job takes that job's fixed time, and its result is recorded when it is
/// done. Batches are asked for as the coordinator does: every worker
/// [`Scheduler::idle_workers`] lists, until it gets none. The clock jumps
/// from one task's end to the next.
struct Grid {
    s: Scheduler,
    now: u64,
    workers: BTreeMap<WorkerId, Pool>,
    /// Per job: its owner and task time, ms on one thread.
    jobs: BTreeMap<JobId, (UserId, u64)>,
    /// Thread milliseconds granted to each user, by the task times above.
    granted: BTreeMap<UserId, u64>,
    /// Thread milliseconds each user's tasks were computed for.
    computed: BTreeMap<UserId, u64>,
    /// When each job had its last task decided.
    finished: BTreeMap<JobId, u64>,
}

/// One worker: the tasks of its batches not started yet, oldest batch
/// first; per thread the task it runs (when it ends, batch, job, task);
/// and when each job last had a task started, by a count of tasks started.
#[derive(Default)]
struct Pool {
    queued: Vec<(BatchId, JobId, VecDeque<u32>)>,
    threads: Vec<Option<(u64, BatchId, JobId, u32)>>,
    started: u64,
    last_started: BTreeMap<JobId, u64>,
}

impl Pool {
    /// Where the next task comes from, as `WorkerCore::next_task` picks.
    fn next_batch(&self) -> Option<usize> {
        let running = |job: JobId| self.threads.iter().flatten().filter(|t| t.2 == job).count();
        (0..self.queued.len()).min_by_key(|&i| {
            let job = self.queued[i].1;
            let last = self.last_started.get(&job).copied().unwrap_or(0);
            (running(job), last, i)
        })
    }
}

impl Grid {
    fn new(workers: u64, threads: u32) -> Grid {
        let mut s = Scheduler::new(config());
        for worker in 1..=workers {
            s.add_worker(worker, worker, threads, Capabilities::ALL, 0);
        }
        let pool = || Pool {
            threads: vec![None; threads as usize],
            ..Pool::default()
        };
        Grid {
            s,
            now: 0,
            workers: (1..=workers).map(|w| (w, pool())).collect(),
            jobs: BTreeMap::new(),
            granted: BTreeMap::new(),
            computed: BTreeMap::new(),
            finished: BTreeMap::new(),
        }
    }

    fn submit(&mut self, id: JobId, tasks: u32, owner: UserId, task_ms: u64) {
        self.s.add_job(owned(id, tasks, owner, 0));
        self.jobs.insert(id, (owner, task_ms));
    }

    /// Workers that may take a batch ask for them; free threads start tasks.
    fn dispatch(&mut self) {
        for worker in self.s.idle_workers() {
            let pool = self.workers.get_mut(&worker).expect("simulated");
            while let Some(grant) = self.s.grant(worker, self.now) {
                let (owner, task_ms) = self.jobs[&grant.job];
                *self.granted.entry(owner).or_default() += grant.tasks.len() * task_ms;
                pool.queued
                    .push((grant.batch, grant.job, grant.tasks.iter().collect()));
            }
        }
        for pool in self.workers.values_mut() {
            while let Some(free) = pool.threads.iter().position(Option::is_none) {
                let Some(next) = pool.next_batch() else {
                    break;
                };
                let (batch, job, tasks) = &mut pool.queued[next];
                let (batch, job) = (*batch, *job);
                let task = tasks.pop_front().expect("batches queued have tasks");
                if tasks.is_empty() {
                    pool.queued.remove(next);
                }
                pool.started += 1;
                pool.last_started.insert(job, pool.started);
                pool.threads[free] = Some((self.now + self.jobs[&job].1, batch, job, task));
            }
        }
    }

    /// Runs until `until`, or until `job` (if given) is finished.
    fn run(&mut self, until: u64, job: Option<JobId>) {
        loop {
            self.dispatch();
            if job.is_some_and(|j| self.finished.contains_key(&j)) {
                return;
            }
            let next = self
                .workers
                .iter()
                .flat_map(|(&w, pool)| pool.threads.iter().enumerate().map(move |(i, t)| (t, w, i)))
                .filter_map(|(t, w, i)| t.map(|(at, ..)| (at, w, i)))
                .min();
            let Some((at, worker, thread)) = next.filter(|&(at, ..)| at <= until) else {
                self.now = until;
                return;
            };
            self.now = at;
            let slot = &mut self.workers.get_mut(&worker).unwrap().threads[thread];
            let (_, batch, job, task) = slot.take().unwrap();
            let (owner, task_ms) = self.jobs[&job];
            *self.computed.entry(owner).or_default() += task_ms;
            let recorded = self.s.record(worker, batch, task, digest_of(job, task), at);
            assert!(matches!(recorded, Recorded::Accepted { decided: true, .. }));
            if self.s.progress(job).is_some_and(|(d, t)| d == t) {
                self.finished.insert(job, at);
                self.s.remove_job(job);
            }
            assert_eq!(self.s.take_effects(), [], "nothing is revoked here");
        }
    }
}

#[test]
fn weights_two_to_one_give_two_to_one_of_the_thread_time() {
    let mut grid = Grid::new(4, 2);
    grid.s.set_user_weight(1, 2);
    // Thread time is the unit: user 1's tasks take 250 ms, user 2's 10 ms.
    grid.submit(1, 1_000_000, 1, 250);
    grid.submit(2, 1_000_000, 2, 10);
    grid.run(120_000, None);
    let ratio = grid.granted[&1] as f64 / grid.granted[&2] as f64;
    eprintln!("weights 2:1 gave {ratio:.3}:1 of the granted thread time");
    assert!((1.85..=2.15).contains(&ratio), "{ratio:.3}:1");
    grid.s.check_consistency().unwrap();
}

#[test]
fn a_user_back_from_idle_has_banked_nothing() {
    // User 1 works alone for a minute; user 2 then submits a job, either
    // for the first time or after a job it finished at the start. Had it
    // banked the minute, it would hold every worker for the next one.
    for earlier_job in [false, true] {
        let mut grid = Grid::new(4, 2);
        grid.submit(1, 1_000_000, 1, 100);
        if earlier_job {
            grid.submit(2, 8, 2, 100);
        }
        grid.run(60_000, None);
        assert_eq!(grid.finished.contains_key(&2), earlier_job);
        let before = grid.granted.clone();
        grid.submit(3, 1_000_000, 2, 100);
        grid.run(120_000, None);
        let since = |user| grid.granted[&user] - before.get(&user).copied().unwrap_or(0);
        let share = since(2) as f64 / (since(1) + since(2)) as f64;
        eprintln!(
            "user 2 back after a minute (earlier job: {earlier_job}): {share:.3} of the next minute"
        );
        assert!((0.4..=0.6).contains(&share), "{share:.3}");
        grid.s.check_consistency().unwrap();
    }
}

/// How long user 2's 100-task job, submitted at 1 s, takes on 4 workers of
/// 2 threads, beside user 1's 1,000,000-task job submitted at 0 (or alone),
/// every task taking `task_ms`; and user 1's share of the thread time
/// computed meanwhile (granted would say little over a window shorter than
/// a batch: user 1's batches were granted before).
fn small_job_beside_a_big_one(task_ms: u64, beside: bool) -> (u64, f64) {
    let mut grid = Grid::new(4, 2);
    if beside {
        grid.submit(1, 1_000_000, 1, task_ms);
    }
    grid.run(1_000, None);
    let before = grid.computed.clone();
    grid.submit(2, 100, 2, task_ms);
    grid.run(u64::MAX, Some(2));
    let took = grid.finished[&2] - 1_000;
    let since = |user| {
        grid.computed.get(&user).copied().unwrap_or(0) - before.get(&user).copied().unwrap_or(0)
    };
    let share = since(1) as f64 / (since(1) + since(2)) as f64;
    grid.s.check_consistency().unwrap();
    (took, share)
}

#[test]
fn a_small_job_beside_a_huge_one_finishes_within_three_times_its_time_alone() {
    // From tasks of 10 ms (a batch of 400 tasks, the small job a tenth of a
    // second of the grid's work) to tasks of a second (a batch of 4, the
    // small job 12.5 s). Without the newcomer's extra batch the small job
    // waited for a slot in some worker's pipeline (2 batches of up to 2 s
    // each), and for short tasks that wait, not the share, set the ratio.
    for task_ms in [10, 100, 250, 1_000] {
        let (alone, _) = small_job_beside_a_big_one(task_ms, false);
        let (beside, big_share) = small_job_beside_a_big_one(task_ms, true);
        let ratio = beside as f64 / alone as f64;
        eprintln!(
            "fair share, {task_ms} ms tasks: the 100-task job took {beside} ms beside the \
             1,000,000-task job, {alone} ms alone: {ratio:.2}x; the big job had {:.0}% of \
             the thread time meanwhile",
            big_share * 100.0
        );
        assert!(ratio <= 3.0, "{task_ms} ms tasks: {ratio:.2}x");
        // The big job keeps going: not a trickle.
        assert!(big_share >= 0.35, "{task_ms} ms tasks: {big_share:.3}");
    }
}
