//! Unit tests for the scheduling rules, and a property test that drives the
//! state machine through arbitrary interleavings of grants, results, returns,
//! failures, disconnects and lease expiries.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use proptest::prelude::*;

use super::*;
use crate::grant::spot_checked;

fn digest_of(job: JobId, task: u32) -> Digest {
    let mut d = [0u8; 32];
    d[..8].copy_from_slice(&job.to_le_bytes());
    d[8..12].copy_from_slice(&task.to_le_bytes());
    d
}

fn wrong_digest(job: JobId, task: u32) -> Digest {
    let mut d = digest_of(job, task);
    d[31] = 0xff;
    d
}

fn plan(id: JobId, tasks: u32, redundancy: u32) -> JobPlan {
    JobPlan {
        id,
        tasks,
        redundancy,
        quorum: redundancy / 2 + 1,
        max_replicas: redundancy + 2,
    }
}

fn config() -> SchedulerConfig {
    SchedulerConfig {
        speculate_after_ms: None,
        min_lease_ms: 1_000,
        ..SchedulerConfig::default()
    }
}

fn deliver_all(s: &mut Scheduler, worker: WorkerId, grant: &Grant, now: u64) -> Vec<Recorded> {
    grant
        .tasks
        .iter()
        .map(|t| s.record(worker, grant.batch, t, digest_of(grant.job, t), now))
        .collect()
}

fn decided(effects: &[Effect]) -> Vec<(JobId, u32)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Decided { job, task, .. } => Some((*job, *task)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_single_worker_completes_a_job_in_batches() {
    let mut s = Scheduler::new(config());
    s.add_job(JobPlan::single(1, 10));
    s.add_worker(7, 7, 2, 0);
    let mut now = 0;
    let mut done = BTreeSet::new();
    while let Some(grant) = s.grant(7, now) {
        assert_eq!(grant.job, 1);
        now += 10;
        for r in deliver_all(&mut s, 7, &grant, now) {
            assert_eq!(
                r,
                Recorded::Accepted {
                    decided: true,
                    recheck: false
                }
            );
        }
        done.extend(decided(&s.take_effects()).into_iter().map(|(_, t)| t));
    }
    assert_eq!(done, (0..10).collect());
    assert_eq!(s.progress(1), Some((10, 10)));
}

#[test]
fn the_first_batch_probes_one_task_per_thread_and_later_ones_follow_speed() {
    let mut s = Scheduler::new(config());
    s.add_job(JobPlan::single(1, 100_000));
    s.add_worker(1, 1, 4, 0);
    let probe = s.grant(1, 0).unwrap();
    assert_eq!(probe.tasks.len(), 4);
    // Four tasks took 40 ms: 10 ms a task for the whole worker, so a 2 s batch is 200 tasks.
    deliver_all(&mut s, 1, &probe, 40);
    let second = s.grant(1, 40).unwrap();
    assert_eq!(second.tasks.len(), 200);
    assert!(second.lease_ms >= 3 * 2_000, "{}", second.lease_ms);
}

#[test]
fn batches_pipeline_up_to_the_limit() {
    let mut s = Scheduler::new(config());
    s.add_job(JobPlan::single(1, 100));
    s.add_worker(1, 1, 1, 0);
    assert!(s.grant(1, 0).is_some());
    assert!(s.grant(1, 0).is_some());
    assert!(
        s.grant(1, 0).is_none(),
        "two batches in flight is the limit"
    );
    assert!(s.idle_workers().is_empty());
}

#[test]
fn a_disconnected_workers_tasks_go_to_another_worker() {
    let mut s = Scheduler::new(config());
    s.add_job(JobPlan::single(1, 3));
    s.add_worker(1, 1, 3, 0);
    let lost = s.grant(1, 0).unwrap();
    assert_eq!(lost.tasks.len(), 3);
    s.remove_worker(1);
    s.add_worker(2, 2, 3, 0);
    let again = s.grant(2, 1).unwrap();
    assert_eq!(again.tasks, lost.tasks);
    assert_eq!(s.counters().tasks_reissued, 3);
    // The old worker's results are not accepted from a new connection.
    assert_eq!(
        s.record(1, lost.batch, 0, digest_of(1, 0), 2),
        Recorded::Rejected(Rejection::UnknownBatch)
    );
}

#[test]
fn decisions_the_store_could_not_keep_are_reopened_for_any_worker() {
    let mut s = Scheduler::new(config());
    s.add_job(JobPlan::single(1, 3));
    s.add_worker(1, 1, 3, 0);
    let grant = s.grant(1, 0).unwrap();
    assert_eq!(grant.tasks.len(), 3);
    deliver_all(&mut s, 1, &grant, 1);
    assert_eq!(s.progress(1), Some((3, 3)));
    // The commit holding tasks 0 and 2 failed; task 1 was stored.
    assert_eq!(s.reopen_unstored(1, &[0, 2]), 2);
    assert_eq!(s.reopen_unstored(1, &[0]), 0, "already open");
    assert_eq!(s.reopen_unstored(99, &[0]), 0, "no such job");
    assert_eq!(s.progress(1), Some((1, 3)));
    s.remove_worker(1);
    s.add_worker(2, 2, 3, 0);
    let again = s.grant(2, 2).unwrap();
    assert_eq!(again.tasks.iter().collect::<Vec<_>>(), vec![0, 2]);
    for r in deliver_all(&mut s, 2, &again, 3) {
        assert!(
            matches!(r, Recorded::Accepted { decided: true, .. }),
            "{r:?}"
        );
    }
    assert_eq!(s.progress(1), Some((3, 3)));
    assert!(s.grant(2, 4).is_none());
}

#[test]
fn an_expired_lease_is_reissued_and_the_late_result_still_counts_once() {
    let mut s = Scheduler::new(config());
    s.add_job(JobPlan::single(1, 1));
    s.add_worker(1, 1, 1, 0);
    s.add_worker(2, 2, 1, 0);
    let slow = s.grant(1, 0).unwrap();
    assert!(s.grant(2, 0).is_none(), "nothing else to give");
    assert!(s.expire(slow.lease_ms - 1).is_empty());
    assert_eq!(s.expire(slow.lease_ms), vec![slow.batch]);
    let copy = s.grant(2, slow.lease_ms).unwrap();
    assert_eq!(copy.tasks, slow.tasks);
    // The slow worker answers late, while the task is still open: accepted.
    assert_eq!(
        s.record(1, slow.batch, 0, digest_of(1, 0), slow.lease_ms + 5),
        Recorded::Accepted {
            decided: true,
            recheck: false
        }
    );
    let effects = s.take_effects();
    assert_eq!(decided(&effects), vec![(1, 0)]);
    // The copy is revoked; its result, if it races the revoke, is stale.
    assert!(effects.contains(&Effect::Revoke {
        worker: 2,
        batch: copy.batch
    }));
    assert_eq!(
        s.record(2, copy.batch, 0, digest_of(1, 0), slow.lease_ms + 6),
        Recorded::Stale
    );
}

#[test]
fn duplicates_and_unleased_results_never_count() {
    let mut s = Scheduler::new(config());
    s.add_job(JobPlan::single(1, 4));
    s.add_worker(1, 1, 2, 0);
    s.add_worker(2, 2, 2, 0);
    let a = s.grant(1, 0).unwrap();
    let b = s.grant(2, 0).unwrap();
    let task = a.tasks.iter().next().unwrap();
    assert_eq!(
        s.record(1, a.batch, task, digest_of(1, task), 1),
        Recorded::Accepted {
            decided: true,
            recheck: false
        }
    );
    assert_eq!(
        s.record(1, a.batch, task, digest_of(1, task), 1),
        Recorded::Duplicate
    );
    let foreign = b.tasks.iter().next().unwrap();
    assert_eq!(
        s.record(1, a.batch, foreign, digest_of(1, foreign), 1),
        Recorded::Rejected(Rejection::TaskNotInBatch)
    );
    assert_eq!(
        s.record(1, b.batch, foreign, digest_of(1, foreign), 1),
        Recorded::Rejected(Rejection::NotYourBatch)
    );
    assert_eq!(
        s.record(1, 999, 0, digest_of(1, 0), 1),
        Recorded::Rejected(Rejection::UnknownBatch)
    );
    assert_eq!(decided(&s.take_effects()), vec![(1, task)]);
    assert_eq!(s.counters().results_rejected, 3);
}

#[test]
fn replicas_go_to_distinct_donors_and_agreement_decides() {
    let mut s = Scheduler::new(config());
    s.add_job(plan(1, 2, 2));
    // Workers 1 and 2 are two threads of one browser tab (donor 10).
    s.add_worker(1, 10, 2, 0);
    s.add_worker(2, 10, 2, 0);
    s.add_worker(3, 30, 2, 0);
    let first = s.grant(1, 0).unwrap();
    assert_eq!(first.tasks.len(), 2);
    assert!(
        s.grant(2, 0).is_none(),
        "the same donor must not get a second replica"
    );
    let second = s.grant(3, 0).unwrap();
    assert_eq!(second.tasks, first.tasks);
    deliver_all(&mut s, 1, &first, 5);
    assert!(
        decided(&s.take_effects()).is_empty(),
        "one replica is not a quorum of two"
    );
    deliver_all(&mut s, 3, &second, 6);
    assert_eq!(decided(&s.take_effects()), vec![(1, 0), (1, 1)]);
}

#[test]
fn disagreement_adds_a_replica_and_the_majority_wins() {
    let mut s = Scheduler::new(config());
    s.add_job(plan(1, 1, 2));
    s.add_worker(1, 1, 1, 0);
    s.add_worker(2, 2, 1, 0);
    s.add_worker(3, 3, 1, 0);
    let honest = s.grant(1, 0).unwrap();
    let liar = s.grant(2, 0).unwrap();
    assert!(s.grant(3, 0).is_none());
    s.record(1, honest.batch, 0, digest_of(1, 0), 1);
    assert_eq!(
        s.record(2, liar.batch, 0, wrong_digest(1, 0), 2),
        Recorded::Accepted {
            decided: false,
            recheck: false
        }
    );
    assert_eq!(s.counters().quorum_disagreements, 1);
    let tie_break = s.grant(3, 3).unwrap();
    assert_eq!(tie_break.tasks.iter().collect::<Vec<_>>(), vec![0]);
    assert_eq!(
        s.record(3, tie_break.batch, 0, digest_of(1, 0), 4),
        Recorded::Accepted {
            decided: true,
            recheck: false
        }
    );
    let effects = s.take_effects();
    assert_eq!(
        effects[0],
        Effect::Decided {
            job: 1,
            task: 0,
            digest: digest_of(1, 0)
        }
    );
    // The donor that disagreed with the quorum is quarantined.
    assert!(
        matches!(&effects[1], Effect::Quarantined { donor: 2, .. }),
        "{effects:?}"
    );
    assert!(s.standing(2).quarantined);
    assert_eq!(s.standing(1).validated, 1);
    assert_eq!(s.standing(3).validated, 1);
    s.add_job(plan(2, 4, 2));
    assert!(s.grant(2, 5).is_none(), "a quarantined donor gets no work");
}

/// Config with quick trust and no spot checks unless a test asks.
fn trusting(spot_check_rate: f64) -> SchedulerConfig {
    SchedulerConfig {
        trust_after: Some(1),
        spot_check_rate,
        ..config()
    }
}

/// Earns donors 1 and 2 one validated result each on a throwaway job.
fn earn_trust(s: &mut Scheduler) {
    s.add_job(plan(99, 1, 2));
    let a = s.grant(1, 0).unwrap();
    let b = s.grant(2, 0).unwrap();
    deliver_all(s, 1, &a, 1);
    deliver_all(s, 2, &b, 1);
    s.take_effects();
    assert!(s.standing(1).trusted && s.standing(2).trusted);
}

#[test]
fn a_trusted_donor_decides_its_tasks_alone_without_spot_checks() {
    let mut s = Scheduler::new(trusting(0.0));
    s.add_worker(1, 1, 4, 0);
    s.add_worker(2, 2, 4, 0);
    earn_trust(&mut s);
    s.add_job(plan(1, 4, 2));
    let solo = s.grant(1, 10).unwrap();
    assert_eq!(solo.tasks.len(), 4);
    assert!(s.grant(2, 10).is_none(), "solo tasks want no second copy");
    for r in deliver_all(&mut s, 1, &solo, 11) {
        assert_eq!(
            r,
            Recorded::Accepted {
                decided: true,
                recheck: false
            }
        );
    }
    assert_eq!(s.counters().tasks_solo, 4);
    assert_eq!(s.progress(1), Some((4, 4)));
}

#[test]
fn spot_checks_keep_the_full_quorum_for_a_sampled_fraction() {
    let mut s = Scheduler::new(trusting(1.0));
    s.add_worker(1, 1, 4, 0);
    s.add_worker(2, 2, 4, 0);
    earn_trust(&mut s);
    s.add_job(plan(1, 4, 2));
    let first = s.grant(1, 10).unwrap();
    let second = s.grant(2, 10).unwrap();
    assert_eq!(
        first.tasks, second.tasks,
        "every task is spot-checked at rate 1"
    );
    assert_eq!(s.counters().tasks_solo, 0);
    // At rate 0.25 about a quarter of many tasks are checked.
    let checked = (0..10_000).filter(|&t| spot_checked(7, 1, t, 0.25)).count();
    assert!((2_200..2_800).contains(&checked), "{checked}");
}

#[test]
fn an_untrusted_donor_taking_over_a_solo_task_needs_the_full_quorum() {
    let mut s = Scheduler::new(trusting(0.0));
    s.add_worker(1, 1, 1, 0);
    s.add_worker(2, 2, 1, 0);
    earn_trust(&mut s);
    s.add_job(plan(1, 1, 2));
    let solo = s.grant(1, 10).unwrap();
    s.remove_worker(1);
    s.add_worker(3, 3, 1, 10);
    let untrusted = s.grant(3, 11).unwrap();
    assert_eq!(untrusted.tasks, solo.tasks);
    assert_eq!(
        s.record(3, untrusted.batch, 0, digest_of(1, 0), 12),
        Recorded::Accepted {
            decided: false,
            recheck: false
        }
    );
    let trusted = s.grant(2, 12).unwrap();
    assert_eq!(
        s.record(2, trusted.batch, 0, digest_of(1, 0), 13),
        Recorded::Accepted {
            decided: true,
            recheck: false
        }
    );
}

#[test]
fn quarantine_takes_back_work_and_reopens_what_the_donor_decided_alone() {
    let mut s = Scheduler::new(config());
    s.add_job(JobPlan::single(1, 4));
    s.add_worker(1, 1, 2, 0);
    s.add_worker(2, 2, 2, 0);
    let a = s.grant(1, 0).unwrap();
    deliver_all(&mut s, 1, &a, 1);
    let held = s.grant(1, 1).unwrap();
    s.take_effects();
    // The coordinator's own check catches donor 1 lying.
    s.quarantine(1, "a re-computed result differed".into());
    let effects = s.take_effects();
    assert!(
        effects.contains(&Effect::Revoke {
            worker: 1,
            batch: held.batch
        }),
        "{effects:?}"
    );
    let reopened = effects
        .iter()
        .find_map(|e| match e {
            Effect::Quarantined {
                donor: 1, reopened, ..
            } => Some(reopened.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(reopened, a.tasks.iter().map(|t| (1, t)).collect::<Vec<_>>());
    assert_eq!(s.progress(1), Some((0, 4)));
    assert!(s.grant(1, 2).is_none());
    // Another donor computes everything again; the re-checked tasks say so.
    let mut rechecked = 0;
    while let Some(grant) = s.grant(2, 3) {
        for r in deliver_all(&mut s, 2, &grant, 4) {
            let Recorded::Accepted {
                decided: true,
                recheck,
            } = r
            else {
                panic!("{r:?}")
            };
            rechecked += usize::from(recheck);
        }
    }
    assert_eq!(rechecked, a.tasks.len() as usize);
    assert_eq!(s.progress(1), Some((4, 4)));
    assert_eq!(s.counters().tasks_rechecked, 2);
}

#[test]
fn a_task_without_quorum_within_the_cap_fails_visibly() {
    let mut s = Scheduler::new(config());
    s.add_job(JobPlan {
        id: 1,
        tasks: 1,
        redundancy: 2,
        quorum: 2,
        max_replicas: 2,
    });
    s.add_worker(1, 1, 1, 0);
    s.add_worker(2, 2, 1, 0);
    let a = s.grant(1, 0).unwrap();
    let b = s.grant(2, 0).unwrap();
    s.record(1, a.batch, 0, digest_of(1, 0), 1);
    s.record(2, b.batch, 0, wrong_digest(1, 0), 1);
    let effects = s.take_effects();
    assert!(
        matches!(&effects[..], [Effect::TaskFailed { job: 1, task: 0, reason }] if reason.contains("no quorum")),
        "{effects:?}"
    );
}

#[test]
fn stragglers_are_copied_to_idle_workers_and_the_first_result_wins() {
    let mut s = Scheduler::new(SchedulerConfig {
        speculate_after_ms: Some(500),
        ..config()
    });
    s.add_job(JobPlan::single(1, 2));
    s.add_worker(1, 1, 2, 0);
    let straggler = s.grant(1, 0).unwrap();
    s.add_worker(2, 2, 2, 0);
    assert!(s.grant(2, 100).is_none(), "too early to speculate");
    let copy = s.grant(2, 600).unwrap();
    assert!(copy.speculative);
    assert_eq!(copy.tasks, straggler.tasks);
    assert!(s.grant(3, 600).is_none(), "unknown worker");
    deliver_all(&mut s, 2, &copy, 700);
    let effects = s.take_effects();
    assert_eq!(decided(&effects).len(), 2);
    assert!(effects.contains(&Effect::Revoke {
        worker: 1,
        batch: straggler.batch
    }));
    assert_eq!(s.counters().tasks_speculative, 2);
}

#[test]
fn returned_tasks_are_reissued_and_failures_fail_the_job_after_the_limit() {
    let mut s = Scheduler::new(config());
    s.add_job(JobPlan::single(1, 4));
    s.add_worker(1, 1, 4, 0);
    let batch = s.grant(1, 0).unwrap();
    assert_eq!(
        s.return_tasks(1, batch.batch, &TaskRanges::from_indices([2, 3])),
        Ok(2)
    );
    assert_eq!(
        s.return_tasks(2, batch.batch, &TaskRanges::from_indices([0])),
        Err(Rejection::NotYourBatch)
    );
    let again = s.grant(1, 1).unwrap();
    assert_eq!(again.tasks.iter().collect::<Vec<_>>(), vec![2, 3]);
    // Task 0 fails three times, on three connections.
    s.fail_task(1, batch.batch, 0, 2).unwrap();
    for worker in [2, 3] {
        s.add_worker(worker, worker, 1, 2);
        let retry = s.grant(worker, 3).unwrap();
        assert!(retry.tasks.contains(0));
        s.fail_task(worker, retry.batch, 0, 4).unwrap();
    }
    assert!(s.take_effects().iter().any(|e| matches!(
        e,
        Effect::TaskFailed {
            job: 1,
            task: 0,
            ..
        }
    )));
}

#[test]
fn paused_jobs_and_workers_get_nothing_and_removed_jobs_revoke_their_batches() {
    let mut s = Scheduler::new(config());
    s.add_job(JobPlan::single(1, 10));
    s.add_job(JobPlan::single(2, 10));
    s.add_worker(1, 1, 1, 0);
    s.set_job_paused(1, true);
    let grant = s.grant(1, 0).unwrap();
    assert_eq!(grant.job, 2, "job 1 is paused");
    s.set_worker_paused(1, true);
    assert!(s.grant(1, 0).is_none());
    s.remove_job(2);
    assert_eq!(
        s.take_effects(),
        vec![Effect::Revoke {
            worker: 1,
            batch: grant.batch
        }]
    );
    assert_eq!(s.batches_of(1), 0);
}

#[test]
fn restored_state_is_not_issued_again() {
    let mut s = Scheduler::new(config());
    s.add_job(plan(1, 4, 2));
    for task in [0, 2] {
        s.restore_decided(1, task);
    }
    // Before the restart donor 5 answered task 1; it still needs one more agreeing copy.
    s.restore_vote(1, 1, 5, digest_of(1, 1));
    s.add_worker(1, 5, 8, 0);
    s.add_worker(2, 6, 8, 0);
    let a = s.grant(1, 0).unwrap();
    assert_eq!(
        a.tasks.iter().collect::<Vec<_>>(),
        vec![3],
        "donor 5 already answered task 1"
    );
    let b = s.grant(2, 0).unwrap();
    assert_eq!(b.tasks.iter().collect::<Vec<_>>(), vec![1, 3]);
    assert_eq!(
        s.record(2, b.batch, 1, digest_of(1, 1), 1),
        Recorded::Accepted {
            decided: true,
            recheck: false
        }
    );
}

// ---- property test --------------------------------------------------------

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

    fn digest(&self, donor: DonorId, job: JobId, task: u32) -> Digest {
        if Some(donor) == self.liar_donor {
            wrong_digest(job, task)
        } else {
            digest_of(job, task)
        }
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
                Effect::Decided { job, task, digest } => {
                    let again = self.reopened.remove(&(job, task));
                    assert!(
                        self.decided.insert((job, task), digest).is_none() || again,
                        "task {job}/{task} decided twice without being reopened"
                    );
                }
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
                    self.s
                        .add_worker(self.next_id, donor, 1 + u32::from(slot % 3), self.now);
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
                    if let Recorded::Accepted { .. } = recorded {
                        let donors = self.accepted_donors.entry((job, task)).or_default();
                        assert!(
                            !donors.contains(&donor),
                            "donor {donor} counted twice for {job}/{task}"
                        );
                        donors.push(donor);
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
                if let Some((grant, _)) = conn.batches.first() {
                    if !leased {
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
        jobs in proptest::collection::vec((1u32..30, 1u32..4), 1..3),
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
        let liar = liar.filter(|_| jobs.iter().all(|&(_, r)| r >= 2));
        for (i, &(tasks, redundancy)) in jobs.iter().enumerate() {
            s.add_job(plan(i as u64 + 1, tasks, redundancy));
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
        for (i, &(tasks, _)) in jobs.iter().enumerate() {
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

#[test]
fn a_late_answer_for_a_task_a_copy_won_is_stale_even_after_the_batch_finished() {
    let mut s = Scheduler::new(SchedulerConfig {
        speculate_after_ms: Some(0),
        ..config()
    });
    s.add_job(JobPlan::single(1, 2));
    s.add_worker(1, 1, 2, 0);
    let original = s.grant(1, 0).unwrap();
    s.add_worker(2, 2, 2, 0);
    let copy = s.grant(2, 10).unwrap();
    assert!(copy.speculative);
    // The copy answers task 1 first; the original then answers task 0, which
    // finishes its batch, and only then its own answer for task 1 arrives.
    assert!(matches!(
        s.record(2, copy.batch, 1, digest_of(1, 1), 11),
        Recorded::Accepted { decided: true, .. }
    ));
    assert!(matches!(
        s.record(1, original.batch, 0, digest_of(1, 0), 12),
        Recorded::Accepted { decided: true, .. }
    ));
    assert_eq!(
        s.record(1, original.batch, 1, digest_of(1, 1), 13),
        Recorded::Stale
    );
    // A task that was never in that batch is still refused.
    s.add_job(JobPlan::single(2, 4));
    assert_eq!(
        s.record(1, original.batch, 3, digest_of(1, 3), 14),
        Recorded::Rejected(Rejection::TaskNotInBatch)
    );
}
