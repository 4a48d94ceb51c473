//! A model-based property test: random interleavings of connects,
//! disconnects, grants, deliveries, replays, forged results, returns,
//! failures, pauses, lease expiries and users' weights changing, over jobs of
//! two users at mixed priorities, with an optional lying donor, checked
//! after every step (a donor never holds two copies of a task nor answers one
//! twice, no replay or forgery is accepted, the tables agree with a scan) and
//! at the end, once honest workers have drained what is left: every task of a
//! job that did not fail is decided exactly once (unless a quarantine reopened
//! it) and with the right digest.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use grid_protocol::TaskRanges;
use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Op {
    Connect(u8),
    Disconnect(u8),
    Grant(u8),
    /// Deliver up to n results of the worker's oldest batch.
    Deliver(u8, u8),
    /// Replay a result the worker already sent.
    Replay(u8),
    /// Send a result for a task the worker was never leased.
    Forge(u8, u32),
    Return(u8),
    Fail(u8),
    Tick(u16),
    /// The worker pauses (true) or resumes (false).
    Pause(u8, bool),
    /// The worker's cache gains (true) or loses (false) a job's file.
    Hold(u8, u8, bool),
    /// A user's weight changes.
    Weigh(u8, u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0u8..5).prop_map(Op::Connect),
        1 => (0u8..5).prop_map(Op::Disconnect),
        3 => (0u8..5).prop_map(Op::Grant),
        3 => (0u8..5, 1u8..20).prop_map(|(w, n)| Op::Deliver(w, n)),
        1 => (0u8..5).prop_map(Op::Replay),
        1 => (0u8..5, 0u32..40).prop_map(|(w, t)| Op::Forge(w, t)),
        1 => (0u8..5).prop_map(Op::Return),
        1 => (0u8..5).prop_map(Op::Fail),
        1 => (0u16..3000).prop_map(Op::Tick),
        1 => (0u8..5, any::<bool>()).prop_map(|(w, p)| Op::Pause(w, p)),
        1 => (0u8..5, 0u8..4, any::<bool>()).prop_map(|(w, f, h)| Op::Hold(w, f, h)),
        1 => (0u8..3, 0u8..4).prop_map(|(u, w)| Op::Weigh(u, w)),
    ]
}

/// What the test remembers of each worker connection.
#[derive(Default)]
struct Conn {
    id: WorkerId,
    donor: DonorId,
    batches: Vec<(Grant, Vec<u32>)>,
    sent: Vec<(BatchId, u32, JobId)>,
}

struct Harness {
    s: Scheduler,
    now: u64,
    conns: BTreeMap<u8, Conn>,
    next_id: WorkerId,
    liar_donor: Option<DonorId>,
    decided: HashMap<(JobId, u32), Digest>,
    accepted_donors: HashMap<(JobId, u32), Vec<DonorId>>,
    failed_jobs: BTreeSet<JobId>,
    /// Decided tasks reopened for a re-check; they may be decided again.
    reopened: BTreeSet<(JobId, u32)>,
}

impl Harness {
    fn donor_for(slot: u8) -> DonorId {
        // Slots 3 and 4 are two threads of one browser tab.
        if slot == 4 { 3 } else { u64::from(slot) }
    }

    /// The browser tab (slots 3 and 4) runs only the first kind of kernel;
    /// the others run everything.
    fn offers(slot: u8) -> Capabilities {
        if slot >= 3 {
            Capabilities(1)
        } else {
            Capabilities::ALL
        }
    }

    fn digest(&self, donor: DonorId, job: JobId, task: u32) -> Digest {
        if Some(donor) == self.liar_donor {
            wrong_digest(job, task)
        } else {
            digest_of(job, task)
        }
    }

    /// Notes a decision, as the coordinator does: the result that decided a
    /// task is its answer, so the task's answer is the digest it carried.
    fn note_decision(&mut self, job: JobId, task: u32, digest: Digest) {
        let again = self.reopened.remove(&(job, task));
        assert!(
            self.decided.insert((job, task), digest).is_none() || again,
            "task {job}/{task} decided twice without being reopened"
        );
    }

    fn apply_effects(&mut self) {
        // Removing a failed job revokes its batches: effects of effects.
        loop {
            let effects = self.s.take_effects();
            if effects.is_empty() {
                return;
            }
            self.apply(effects);
        }
    }

    fn apply(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Quarantined {
                    donor, reopened, ..
                } => {
                    assert_eq!(
                        Some(donor),
                        self.liar_donor,
                        "an honest donor was quarantined"
                    );
                    self.reopened.extend(reopened);
                }
                Effect::Revoke { worker, batch } => {
                    for conn in self.conns.values_mut().filter(|c| c.id == worker) {
                        conn.batches.retain(|(g, _)| g.batch != batch);
                    }
                }
                Effect::TaskFailed { job, .. } => {
                    self.failed_jobs.insert(job);
                    self.s.remove_job(job);
                }
                Effect::Trusted { donor } => {
                    assert!(self.s.standing(donor).trusted, "announced trust is held");
                }
            }
        }
    }

    fn check_grant(&self, conn: &Conn, grant: &Grant) {
        // A donor never holds two copies of a task, nor gets one it answered.
        for task in grant.tasks.iter() {
            let key = (grant.job, task);
            assert!(
                !self.decided.contains_key(&key),
                "decided task {key:?} granted again"
            );
            let held_elsewhere = self
                .conns
                .values()
                .filter(|c| c.donor == conn.donor)
                .any(|c| {
                    c.batches.iter().any(|(g, left)| {
                        g.job == grant.job && g.batch != grant.batch && left.contains(&task)
                    })
                });
            assert!(!held_elsewhere, "donor {} holds {key:?} twice", conn.donor);
            assert!(
                !self
                    .accepted_donors
                    .get(&key)
                    .is_some_and(|d| d.contains(&conn.donor)),
                "donor {} already answered {key:?}",
                conn.donor
            );
        }
    }

    fn step(&mut self, op: Op) {
        match op {
            Op::Connect(slot) => {
                if !self.conns.contains_key(&slot) {
                    self.next_id += 1;
                    let donor = Self::donor_for(slot);
                    let threads = 1 + u32::from(slot % 3);
                    let offers = Self::offers(slot);
                    self.s
                        .add_worker(self.next_id, donor, threads, offers, self.now);
                    self.conns.insert(
                        slot,
                        Conn {
                            id: self.next_id,
                            donor,
                            ..Conn::default()
                        },
                    );
                }
            }
            Op::Disconnect(slot) => {
                if let Some(conn) = self.conns.remove(&slot) {
                    self.s.remove_worker(conn.id);
                }
            }
            Op::Grant(slot) => {
                let Some(conn) = self.conns.get(&slot) else {
                    return;
                };
                if let Some(grant) = self.s.grant(conn.id, self.now) {
                    self.check_grant(conn, &grant);
                    let tasks = grant.tasks.iter().collect();
                    self.conns
                        .get_mut(&slot)
                        .expect("present")
                        .batches
                        .push((grant, tasks));
                }
            }
            Op::Deliver(slot, n) => {
                let Some(conn) = self.conns.get_mut(&slot) else {
                    return;
                };
                let Some((grant, left)) = conn.batches.first_mut() else {
                    return;
                };
                let (batch, job, id, donor) = (grant.batch, grant.job, conn.id, conn.donor);
                let take: Vec<u32> = left.drain(..left.len().min(n as usize)).collect();
                if left.is_empty() {
                    conn.batches.remove(0);
                }
                for task in take {
                    let digest = self.digest(donor, job, task);
                    let recorded = self.s.record(id, batch, task, digest, self.now);
                    if let Recorded::Accepted { decided, .. } = recorded {
                        let donors = self.accepted_donors.entry((job, task)).or_default();
                        assert!(
                            !donors.contains(&donor),
                            "donor {donor} counted twice for {job}/{task}"
                        );
                        donors.push(donor);
                        if decided {
                            self.note_decision(job, task, digest);
                        }
                    }
                    self.conns
                        .get_mut(&slot)
                        .expect("present")
                        .sent
                        .push((batch, task, job));
                    self.apply_effects();
                }
            }
            Op::Replay(slot) => {
                let Some(conn) = self.conns.get(&slot) else {
                    return;
                };
                let Some(&(batch, task, job)) = conn.sent.last() else {
                    return;
                };
                let digest = self.digest(conn.donor, job, task);
                let recorded = self.s.record(conn.id, batch, task, digest, self.now);
                assert!(
                    !matches!(recorded, Recorded::Accepted { .. }),
                    "a replay was accepted: {recorded:?}"
                );
            }
            Op::Forge(slot, task) => {
                let Some(conn) = self.conns.get(&slot) else {
                    return;
                };
                let leased = conn.batches.iter().any(|(g, _)| g.tasks.contains(task));
                if let Some((grant, _)) = conn.batches.first()
                    && !leased
                {
                    let recorded = self.s.record(
                        conn.id,
                        grant.batch,
                        task,
                        digest_of(grant.job, task),
                        self.now,
                    );
                    assert!(
                        matches!(recorded, Recorded::Rejected(_)),
                        "forged result: {recorded:?}"
                    );
                }
            }
            Op::Return(slot) => {
                let Some(conn) = self.conns.get_mut(&slot) else {
                    return;
                };
                let Some((grant, left)) = conn.batches.pop() else {
                    return;
                };
                let tasks = TaskRanges::from_indices(left);
                let _ = self.s.return_tasks(conn.id, grant.batch, &tasks);
            }
            Op::Fail(slot) => {
                let Some(conn) = self.conns.get_mut(&slot) else {
                    return;
                };
                let Some((grant, left)) = conn.batches.first_mut() else {
                    return;
                };
                let Some(task) = left.pop() else { return };
                let (batch, id) = (grant.batch, conn.id);
                if left.is_empty() {
                    conn.batches.remove(0);
                }
                let _ = self.s.fail_task(id, batch, task, self.now);
                self.apply_effects();
            }
            Op::Pause(slot, paused) => {
                if let Some(conn) = self.conns.get(&slot) {
                    self.s.set_worker_paused(conn.id, paused);
                }
            }
            Op::Tick(ms) => {
                self.now += u64::from(ms);
                self.s.expire(self.now);
            }
            Op::Hold(slot, file, held) => {
                if let Some(conn) = self.conns.get(&slot) {
                    let key = [u64::from(file)];
                    let (added, removed): (&[u64], &[u64]) =
                        if held { (&key, &[]) } else { (&[], &key) };
                    self.s.update_holdings(conn.id, added, removed);
                }
            }
            Op::Weigh(user, weight) => {
                self.s.set_user_weight(u64::from(user), u32::from(weight));
            }
        }
    }

    /// Honest, reliable workers finish whatever is left.
    fn drain(&mut self) {
        for slot in [0u8, 1, 2] {
            self.step(Op::Connect(slot));
            self.step(Op::Pause(slot, false));
        }
        for _ in 0..10_000 {
            self.now += 5_000;
            self.s.expire(self.now);
            let slots: Vec<u8> = self.conns.keys().copied().collect();
            for slot in slots {
                self.step(Op::Grant(slot));
                self.step(Op::Deliver(slot, u8::MAX));
            }
            if self.s.jobs.is_empty()
                || self
                    .s
                    .jobs
                    .values()
                    .all(|j| j.decided_count() == j.plan.tasks)
            {
                return;
            }
        }
        panic!(
            "the grid did not finish: {:?}",
            self.s
                .jobs
                .values()
                .map(|j| j.decided_count())
                .collect::<Vec<_>>()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn every_task_is_decided_exactly_once_and_correctly(
        jobs in proptest::collection::vec((1u32..30, 1u32..4, -1i32..2), 1..4),
        liar in proptest::option::of(0u64..4),
        speculate in any::<bool>(),
        trust_quickly in any::<bool>(),
        ops in proptest::collection::vec(op(), 0..120),
    ) {
        let mut s = Scheduler::new(SchedulerConfig {
            speculate_after_ms: speculate.then_some(200),
            min_lease_ms: 1_000,
            target_batch_ms: 50,
            // Trust after one validated result exercises solo tasks and spot checks.
            trust_after: if trust_quickly { Some(1) } else { None },
            spot_check_rate: 0.3,
            ..SchedulerConfig::default()
        });
        // A liar only makes sense where replicas can outvote it.
        let liar = liar.filter(|_| jobs.iter().all(|&(_, r, _)| r >= 2));
        for (i, &(tasks, redundancy, priority)) in jobs.iter().enumerate() {
            // Even jobs need a kernel the browser tab does not run.
            let id = i as u64 + 1;
            // Jobs read files 0 to 2 (job 4 reads none), for locality.
            let locality = if id.is_multiple_of(4) { Vec::new() } else { vec![(id % 4 - 1, 1 << 20)] };
            // Jobs 1 and 3 are user 1's, 2 is user 2's (fair share, priority).
            let owner = 2 - id % 2;
            s.add_job(JobPlan { needs: Capabilities(1 << (id % 2)), locality, owner, priority, ..plan(id, tasks, redundancy) });
        }
        let mut h = Harness {
            s, now: 0, conns: BTreeMap::new(), next_id: 0, liar_donor: liar,
            decided: HashMap::new(), accepted_donors: HashMap::new(), failed_jobs: BTreeSet::new(),
            reopened: BTreeSet::new(),
        };
        for op in ops {
            h.step(op);
            // The tables agree with each other (the ready set and the count
            // of unpaused workers equal a scan of them all) after every step.
            prop_assert_eq!(h.s.check_consistency(), Ok(()));
        }
        h.drain();
        for (i, &(tasks, _, _)) in jobs.iter().enumerate() {
            let job = i as u64 + 1;
            if h.failed_jobs.contains(&job) {
                continue;
            }
            for task in 0..tasks {
                prop_assert_eq!(h.decided.get(&(job, task)), Some(&digest_of(job, task)), "job {} task {}", job, task);
            }
        }
    }
}
