//! Unit tests for the scheduling rules, one rule a test: batch sizing and
//! pipelining, re-issue after a disconnect, an expiry or a lost commit,
//! duplicates and unleased results, replicas and quorums, trust, spot checks
//! and quarantine, speculation, returns and failures, pauses, restored state.

use std::collections::BTreeSet;

use grid_protocol::TaskRanges;

use super::*;
use crate::grant::spot_checked;

/// The tasks of `grant` that the results `deliver_all` recorded for it
/// decided, in the grant's order.
fn decided(grant: &Grant, results: &[Recorded]) -> Vec<(JobId, u32)> {
    grant
        .tasks
        .iter()
        .zip(results)
        .filter(|(_, r)| matches!(r, Recorded::Accepted { decided: true, .. }))
        .map(|(task, _)| (grant.job, task))
        .collect()
}

#[test]
fn a_single_worker_completes_a_job_in_batches() {
    let mut s = Scheduler::new(config());
    s.add_job(JobPlan::single(1, 10));
    s.add_worker(7, 7, 2, Capabilities::ALL, 0);
    let mut now = 0;
    let mut done = BTreeSet::new();
    while let Some(grant) = s.grant(7, now) {
        assert_eq!(grant.job, 1);
        now += 10;
        let results = deliver_all(&mut s, 7, &grant, now);
        for r in &results {
            assert_eq!(
                *r,
                Recorded::Accepted {
                    decided: true,
                    recheck: false
                }
            );
        }
        done.extend(decided(&grant, &results).into_iter().map(|(_, t)| t));
    }
    assert_eq!(done, (0..10).collect());
    assert_eq!(s.progress(1), Some((10, 10)));
}

#[test]
fn a_worker_gets_only_the_jobs_it_can_run_even_as_copies() {
    let mut s = Scheduler::new(SchedulerConfig {
        speculate_after_ms: Some(100),
        ..config()
    });
    let wasm = Capabilities(0b10);
    s.add_job(JobPlan {
        needs: wasm,
        ..JobPlan::single(1, 4)
    });
    s.add_worker(1, 1, 4, Capabilities(0b01), 0);
    assert_eq!(s.grant(1, 0), None, "a worker without the kernel waits");
    s.add_job(JobPlan::single(2, 4));
    assert_eq!(
        s.grant(1, 0).map(|g| g.job),
        Some(2),
        "it takes what it can run"
    );
    s.add_worker(2, 2, 4, Capabilities(0b11), 0);
    let held = s.grant(2, 0).unwrap();
    assert_eq!(held.job, 1);
    // Worker 1 is idle and job 1's tasks have been held long: still no copies.
    assert!(s.grant(1, 10_000).is_none());
    assert_eq!(s.check_consistency(), Ok(()));
}

#[test]
fn a_jobs_own_batch_cap_holds_for_fresh_tasks_and_copies() {
    let mut s = Scheduler::new(SchedulerConfig {
        speculate_after_ms: Some(100),
        ..config()
    });
    s.add_job(JobPlan {
        max_batch_tasks: Some(3),
        ..JobPlan::single(1, 9)
    });
    s.add_worker(1, 1, 8, Capabilities::ALL, 0);
    let probe = s.grant(1, 0).unwrap();
    assert_eq!(
        probe.tasks.len(),
        3,
        "one task a thread, but no more than 3"
    );
    deliver_all(&mut s, 1, &probe, 3);
    // Fast: the speed says hundreds of tasks, the cap says 3.
    assert_eq!(s.grant(1, 3).unwrap().tasks.len(), 3);
    s.add_worker(2, 2, 8, Capabilities::ALL, 0);
    assert_eq!(s.grant(2, 3).unwrap().tasks.len(), 3);
    // Everything is held; an idle third worker gets copies, 3 at most.
    s.add_worker(3, 3, 8, Capabilities::ALL, 0);
    let copies = s.grant(3, 10_000).unwrap();
    assert!(copies.speculative);
    assert_eq!(copies.tasks.len(), 3);
}

#[test]
fn the_first_batch_probes_one_task_per_thread_and_later_ones_follow_speed() {
    let mut s = Scheduler::new(config());
    s.add_job(JobPlan::single(1, 100_000));
    s.add_worker(1, 1, 4, Capabilities::ALL, 0);
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
    s.add_worker(1, 1, 1, Capabilities::ALL, 0);
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
    s.add_worker(1, 1, 3, Capabilities::ALL, 0);
    let lost = s.grant(1, 0).unwrap();
    assert_eq!(lost.tasks.len(), 3);
    s.remove_worker(1);
    s.add_worker(2, 2, 3, Capabilities::ALL, 0);
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
    s.add_worker(1, 1, 3, Capabilities::ALL, 0);
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
    s.add_worker(2, 2, 3, Capabilities::ALL, 0);
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
    s.add_worker(1, 1, 1, Capabilities::ALL, 0);
    s.add_worker(2, 2, 1, Capabilities::ALL, 0);
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
    assert_eq!(s.progress(1), Some((1, 1)), "decided once");
    let effects = s.take_effects();
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
    s.add_worker(1, 1, 2, Capabilities::ALL, 0);
    s.add_worker(2, 2, 2, Capabilities::ALL, 0);
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
    assert_eq!(s.progress(1), Some((1, 4)), "only the first result decided");
    assert_eq!(s.counters().results_rejected, 3);
}

#[test]
fn replicas_go_to_distinct_donors_and_agreement_decides() {
    let mut s = Scheduler::new(config());
    s.add_job(plan(1, 2, 2));
    // Workers 1 and 2 are two threads of one browser tab (donor 10).
    s.add_worker(1, 10, 2, Capabilities::ALL, 0);
    s.add_worker(2, 10, 2, Capabilities::ALL, 0);
    s.add_worker(3, 30, 2, Capabilities::ALL, 0);
    let first = s.grant(1, 0).unwrap();
    assert_eq!(first.tasks.len(), 2);
    assert!(
        s.grant(2, 0).is_none(),
        "the same donor must not get a second replica"
    );
    let second = s.grant(3, 0).unwrap();
    assert_eq!(second.tasks, first.tasks);
    let results = deliver_all(&mut s, 1, &first, 5);
    assert!(
        decided(&first, &results).is_empty(),
        "one replica is not a quorum of two"
    );
    let results = deliver_all(&mut s, 3, &second, 6);
    assert_eq!(decided(&second, &results), vec![(1, 0), (1, 1)]);
}

#[test]
fn disagreement_adds_a_replica_and_the_majority_wins() {
    let mut s = Scheduler::new(config());
    s.add_job(plan(1, 1, 2));
    s.add_worker(1, 1, 1, Capabilities::ALL, 0);
    s.add_worker(2, 2, 1, Capabilities::ALL, 0);
    s.add_worker(3, 3, 1, Capabilities::ALL, 0);
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
    // The tie-break decides the task: its answer is the result just recorded,
    // the majority's digest.
    assert_eq!(
        s.record(3, tie_break.batch, 0, digest_of(1, 0), 4),
        Recorded::Accepted {
            decided: true,
            recheck: false
        }
    );
    let effects = s.take_effects();
    // The donor that disagreed with the quorum is quarantined, with both
    // digests as the evidence.
    assert!(
        matches!(&effects[0], Effect::Quarantined { donor: 2, .. }),
        "{effects:?}"
    );
    let Effect::Quarantined { reason, .. } = &effects[0] else {
        unreachable!()
    };
    let hex = |d: [u8; 32]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
    assert!(
        reason.contains(&format!("sha256:{}", hex(wrong_digest(1, 0))))
            && reason.contains(&format!("sha256:{}", hex(digest_of(1, 0)))),
        "{reason}"
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
    s.add_worker(1, 1, 4, Capabilities::ALL, 0);
    s.add_worker(2, 2, 4, Capabilities::ALL, 0);
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
    s.add_worker(1, 1, 4, Capabilities::ALL, 0);
    s.add_worker(2, 2, 4, Capabilities::ALL, 0);
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
    s.add_worker(1, 1, 1, Capabilities::ALL, 0);
    s.add_worker(2, 2, 1, Capabilities::ALL, 0);
    earn_trust(&mut s);
    s.add_job(plan(1, 1, 2));
    let solo = s.grant(1, 10).unwrap();
    s.remove_worker(1);
    s.add_worker(3, 3, 1, Capabilities::ALL, 10);
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
    s.add_worker(1, 1, 2, Capabilities::ALL, 0);
    s.add_worker(2, 2, 2, Capabilities::ALL, 0);
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
        locality: Vec::new(),
        id: 1,
        tasks: 1,
        replication: Replication {
            redundancy: 2,
            quorum: 2,
            max_replicas: 2,
        },
        needs: Capabilities::NONE,
        max_batch_tasks: None,
        owner: 0,
        priority: 0,
    });
    s.add_worker(1, 1, 1, Capabilities::ALL, 0);
    s.add_worker(2, 2, 1, Capabilities::ALL, 0);
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
    s.add_worker(1, 1, 2, Capabilities::ALL, 0);
    let straggler = s.grant(1, 0).unwrap();
    s.add_worker(2, 2, 2, Capabilities::ALL, 0);
    assert!(s.grant(2, 100).is_none(), "too early to speculate");
    let copy = s.grant(2, 600).unwrap();
    assert!(copy.speculative);
    assert_eq!(copy.tasks, straggler.tasks);
    assert!(s.grant(3, 600).is_none(), "unknown worker");
    let results = deliver_all(&mut s, 2, &copy, 700);
    assert_eq!(decided(&copy, &results).len(), 2);
    let effects = s.take_effects();
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
    s.add_worker(1, 1, 4, Capabilities::ALL, 0);
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
        s.add_worker(worker, worker, 1, Capabilities::ALL, 2);
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
    s.add_worker(1, 1, 1, Capabilities::ALL, 0);
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
    s.add_worker(1, 5, 8, Capabilities::ALL, 0);
    s.add_worker(2, 6, 8, Capabilities::ALL, 0);
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

#[test]
fn a_late_answer_for_a_task_a_copy_won_is_stale_even_after_the_batch_finished() {
    let mut s = Scheduler::new(SchedulerConfig {
        speculate_after_ms: Some(0),
        ..config()
    });
    s.add_job(JobPlan::single(1, 2));
    s.add_worker(1, 1, 2, Capabilities::ALL, 0);
    let original = s.grant(1, 0).unwrap();
    s.add_worker(2, 2, 2, Capabilities::ALL, 0);
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

#[test]
fn a_return_spanning_every_index_hands_back_the_batch_and_nothing_else() {
    let mut s = Scheduler::new(config());
    s.add_job(JobPlan::single(1, 10));
    s.add_worker(1, 1, 4, Capabilities::ALL, 0);
    let batch = s.grant(1, 0).unwrap();
    let held: Vec<u32> = batch.tasks.iter().collect();
    s.record(1, batch.batch, held[0], digest_of(1, held[0]), 1);
    // Four billion indices: the scheduler walks the batch, not the range.
    let everything = TaskRanges::from_ranges(vec![(0, u32::MAX)]).unwrap();
    assert_eq!(
        s.return_tasks(1, batch.batch, &everything),
        Ok(held.len() as u32 - 1)
    );
    assert_eq!(s.batches_of(1), 0, "nothing left waiting closes the batch");
    assert_eq!(s.progress(1), Some((1, 10)));
}

#[test]
fn results_nobody_awaited_are_never_accepted() {
    let mut s = Scheduler::new(config());
    s.add_job(JobPlan::single(1, 10));
    s.add_worker(1, 1, 2, Capabilities::ALL, 0);
    let batch = s.grant(1, 0).unwrap();
    let tasks: Vec<u32> = batch.tasks.iter().collect();
    assert!(s.awaits(batch.batch, tasks[0]));
    s.record(1, batch.batch, tasks[0], digest_of(1, tasks[0]), 1);
    assert!(!s.awaits(batch.batch, tasks[0]), "answered");
    assert_eq!(s.lease_of(1, batch.batch), Some(1));
    assert_eq!(s.lease_of(2, batch.batch), None, "not worker 2's");
    // Answered already: a duplicate. Still waiting, so the frame predates
    // the lease: rejected. Not in the batch, or not a batch: rejected.
    assert_eq!(s.refuse(1, batch.batch, tasks[0]), Recorded::Duplicate);
    assert_eq!(
        s.refuse(1, batch.batch, tasks[1]),
        Recorded::Rejected(Rejection::UnknownBatch)
    );
    assert_eq!(
        s.refuse(1, batch.batch, 9),
        Recorded::Rejected(Rejection::TaskNotInBatch)
    );
    assert_eq!(
        s.refuse(2, batch.batch, tasks[1]),
        Recorded::Rejected(Rejection::NotYourBatch)
    );
    assert_eq!(
        s.refuse(1, batch.batch + 100, 0),
        Recorded::Rejected(Rejection::UnknownBatch)
    );
    // Nothing of it counted: task 1 is still to be decided.
    assert_eq!(s.progress(1), Some((1, 10)));
    assert_eq!(s.counters().results_rejected, 4);
    assert_eq!(s.counters().results_duplicate, 1);
}

fn plan_reading(id: JobId, tasks: u32, file: u64) -> JobPlan {
    JobPlan {
        locality: vec![(file, 64 << 20)],
        ..plan(id, tasks, 1)
    }
}

#[test]
fn workers_get_the_jobs_whose_files_they_hold() {
    let mut s = Scheduler::new(config());
    for job in 1..=3 {
        s.add_job(plan_reading(job, 100, 10 + job));
    }
    for worker in 1..=3 {
        s.add_worker(worker, worker, 1, Capabilities::ALL, 0);
    }
    // Worker 3 holds job 3's file, worker 2 job 2's; worker 1 holds nothing.
    s.update_holdings(3, &[13], &[]);
    s.update_holdings(2, &[12, 99], &[]);
    let grant = s.grant(3, 0).unwrap();
    assert_eq!((grant.job, grant.local), (3, true));
    assert_eq!(s.grant(2, 0).unwrap().job, 2);
    // Nothing held: the oldest job nobody is on goes first, not a second
    // copy of a file another worker is already reading.
    let grant = s.grant(1, 0).unwrap();
    assert_eq!((grant.job, grant.local), (1, false));
    // A worker keeps to what it holds while there is work there.
    assert_eq!(s.grant(3, 1).unwrap().job, 3);
    // Holdings change: worker 2 dropped job 2's file and fetched job 1's.
    s.update_holdings(2, &[11], &[12]);
    assert_eq!(s.grant(2, 2).unwrap().job, 1);
    s.check_consistency().unwrap();
}

#[test]
fn with_locality_off_jobs_go_oldest_first_whatever_workers_hold() {
    let mut s = Scheduler::new(SchedulerConfig {
        locality: false,
        ..config()
    });
    s.add_job(plan_reading(1, 10, 11));
    s.add_job(plan_reading(2, 10, 12));
    s.add_worker(1, 1, 1, Capabilities::ALL, 0);
    s.update_holdings(1, &[12], &[]);
    let grant = s.grant(1, 0).unwrap();
    assert_eq!((grant.job, grant.local), (1, false));
}

#[test]
fn without_files_jobs_go_oldest_first_whatever_workers_hold() {
    let mut s = Scheduler::new(config());
    s.add_job(plan(1, 10, 1));
    s.add_job(plan(2, 10, 1));
    s.add_worker(1, 1, 1, Capabilities::ALL, 0);
    s.update_holdings(1, &[5], &[]);
    assert_eq!(s.grant(1, 0).unwrap().job, 1);
    assert_eq!(s.grant(1, 0).unwrap().job, 1);
}

#[test]
fn a_job_nobody_holds_is_served_after_the_patience_not_starved() {
    let mut s = Scheduler::new(SchedulerConfig {
        pipeline: 1,
        locality_patience_ms: 1_000,
        ..config()
    });
    s.add_job(plan_reading(1, 1_000, 11));
    s.add_job(plan_reading(2, 1_000, 12));
    s.add_worker(1, 1, 1, Capabilities::ALL, 0);
    s.add_worker(2, 2, 1, Capabilities::ALL, 0);
    s.update_holdings(1, &[11], &[]);
    s.update_holdings(2, &[11], &[]);
    // Both hold job 1's file: both work on job 1, and job 2 waits...
    let mut now = 0;
    let mut on_job_2 = 0;
    for _ in 0..20 {
        for worker in [1, 2] {
            let grant = s.grant(worker, now).unwrap();
            if grant.job == 2 {
                on_job_2 += 1;
            }
            deliver_all(&mut s, worker, &grant, now + 100);
        }
        now += 200;
    }
    // ...but not for longer than the patience: from then on it always
    // has a batch out.
    assert!(on_job_2 >= 1, "job 2 starved");
    assert!(
        on_job_2 < 20,
        "locality ignored: job 2 got {on_job_2} of 40 batches"
    );
    s.check_consistency().unwrap();
}

#[test]
fn a_worker_fetches_no_file_for_a_job_about_to_be_finished_by_its_workers() {
    // Worker 1 finishes its own job (1 task); worker 2, of 8 threads, is
    // on a job of `tasks` with a batch of 8 out (one a thread, its speed
    // unknown). What does worker 1 get next?
    let next_for_worker_1 = |tasks: u32| {
        let mut s = Scheduler::new(SchedulerConfig {
            pipeline: 1,
            ..config()
        });
        s.add_job(plan_reading(1, 1, 11));
        s.add_job(plan_reading(2, tasks, 12));
        s.add_worker(1, 1, 1, Capabilities::ALL, 0);
        s.add_worker(2, 2, 8, Capabilities::ALL, 0);
        s.update_holdings(1, &[11], &[]);
        s.update_holdings(2, &[12], &[]);
        let own = s.grant(1, 0).unwrap();
        assert_eq!(own.job, 1);
        deliver_all(&mut s, 1, &own, 10);
        let theirs = s.grant(2, 10).unwrap();
        assert_eq!((theirs.job, theirs.tasks.len()), (2, 8));
        let next = s.grant(1, 20);
        s.check_consistency().unwrap();
        next.map(|g| (g.job, g.local))
    };
    // 4 left to hand out, 8 out: worker 2's next round finishes the job.
    assert_eq!(next_for_worker_1(12), None);
    // 32 left: worth fetching the file.
    assert_eq!(next_for_worker_1(40), Some((2, false)));
}

#[test]
fn a_worker_keeps_to_the_job_whose_file_it_is_fetching() {
    let mut s = Scheduler::new(config());
    s.add_job(plan_reading(1, 100, 11));
    s.add_job(plan_reading(2, 100, 12));
    s.add_worker(1, 1, 1, Capabilities::ALL, 0);
    s.add_worker(2, 2, 1, Capabilities::ALL, 0);
    // No reports yet: each takes a job nobody is on, and its second batch
    // (the pipeline) is of the same job, whose file it is fetching.
    let first = s.grant(1, 0).unwrap();
    let second = s.grant(2, 0).unwrap();
    assert_ne!(first.job, second.job);
    assert_eq!(s.grant(1, 0).unwrap().job, first.job);
    assert_eq!(s.grant(2, 0).unwrap().job, second.job);
    s.check_consistency().unwrap();
}

#[test]
fn earned_trust_is_announced_once_and_restored_trust_holds_unless_quarantined() {
    let mut s = Scheduler::new(SchedulerConfig {
        trust_after: Some(2),
        ..config()
    });
    s.add_job(plan(1, 4, 2));
    s.add_worker(1, 1, 1, Capabilities::ALL, 0);
    s.add_worker(2, 2, 1, Capabilities::ALL, 0);
    let mut trusted = Vec::new();
    for now in 0..4 {
        for worker in [1, 2] {
            if let Some(grant) = s.grant(worker, now) {
                deliver_all(&mut s, worker, &grant, now);
            }
        }
        trusted.extend(s.take_effects().into_iter().filter_map(|e| match e {
            Effect::Trusted { donor } => Some(donor),
            _ => None,
        }));
    }
    trusted.sort_unstable();
    assert_eq!(trusted, [1, 2], "each donor announced once");
    // A fresh scheduler (a restart) restores it.
    let mut again = Scheduler::new(SchedulerConfig {
        trust_after: Some(2),
        ..config()
    });
    again.restore_trust(1);
    assert!(again.standing(1).trusted);
    assert_eq!(again.standing(1).validated, 2);
    again.quarantine(3, "lied".into());
    again.restore_trust(3);
    assert!(
        !again.standing(3).trusted,
        "a quarantined donor is never trusted"
    );
    let mut off = Scheduler::new(SchedulerConfig {
        trust_after: None,
        ..config()
    });
    off.restore_trust(1);
    assert!(!off.standing(1).trusted, "trust is off");
}

#[test]
fn rechecked_tasks_go_out_again_and_come_back_as_rechecks() {
    let mut s = Scheduler::new(config());
    s.add_job(plan(1, 4, 1));
    for task in 0..4 {
        s.restore_decided(1, task);
    }
    assert_eq!(s.progress(1), Some((4, 4)));
    assert_eq!(
        s.recheck(1, &[1, 3, 9, 1_000_000]),
        2,
        "tasks 9 and up are not its own"
    );
    assert_eq!(s.recheck(2, &[0]), 0, "no such job");
    assert_eq!(s.progress(1), Some((2, 4)));
    s.add_worker(1, 1, 4, Capabilities::ALL, 0);
    let grant = s.grant(1, 0).unwrap();
    assert_eq!(grant.tasks.iter().collect::<Vec<_>>(), [1, 3]);
    let recorded = deliver_all(&mut s, 1, &grant, 10);
    assert!(
        recorded.iter().all(|r| *r
            == Recorded::Accepted {
                decided: true,
                recheck: true
            }),
        "{recorded:?}"
    );
    assert_eq!(s.progress(1), Some((4, 4)));
    s.check_consistency().unwrap();
}
