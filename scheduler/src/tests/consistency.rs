//! `Scheduler::check_consistency` can fail. The property test runs it after
//! every step and only ever sees it pass, which alone would not tell a check
//! that works from one that cannot fail. Each test here builds a small valid
//! grid, breaks one invariant through the private tables (a child module of
//! the crate may), and expects an error that names what broke.

use super::*;

/// One job and one worker holding one batch of three tasks: a valid grid.
fn one_batch() -> (Scheduler, Grant) {
    let mut s = Scheduler::new(config());
    s.add_job(JobPlan::single(1, 10));
    s.add_worker(1, 1, 3, Capabilities::ALL, 0);
    let grant = s.grant(1, 0).unwrap();
    assert_eq!(grant.tasks.len(), 3);
    assert_eq!(s.check_consistency(), Ok(()));
    (s, grant)
}

#[test]
fn a_batch_its_worker_does_not_list_is_caught() {
    let (mut s, grant) = one_batch();
    s.workers.get_mut(&1).unwrap().batches.clear();
    assert_eq!(
        s.check_consistency(),
        Err(format!("worker 1 does not list its batch {}", grant.batch))
    );
}

#[test]
fn a_batch_whose_outstanding_count_disagrees_with_its_waiting_flags_is_caught() {
    let (mut s, grant) = one_batch();
    let task = grant.tasks.iter().next().unwrap();
    s.record(1, grant.batch, task, digest_of(1, task), 1);
    assert_eq!(s.check_consistency(), Ok(()), "two tasks still wait");
    s.batches.get_mut(&grant.batch).unwrap().outstanding += 1;
    assert_eq!(
        s.check_consistency(),
        Err(format!("batch {}: 3 outstanding, 2 waiting", grant.batch))
    );
}

#[test]
fn a_ready_set_out_of_step_with_the_workers_is_caught() {
    let (mut s, _) = one_batch();
    // Worker 1 holds one batch of a pipeline of two: it is ready.
    s.ready.clear();
    assert_eq!(
        s.check_consistency(),
        Err("ready workers {}, by scan {1}".to_string())
    );
}

#[test]
fn a_count_of_unpaused_workers_out_of_step_with_the_workers_is_caught() {
    let (mut s, _) = one_batch();
    s.set_worker_paused(1, true);
    assert_eq!(s.check_consistency(), Ok(()));
    s.unpaused += 1;
    assert_eq!(
        s.check_consistency(),
        Err("1 unpaused workers counted, 0 by scan".to_string())
    );
}

#[test]
fn a_job_of_a_user_without_a_record_is_caught() {
    let (mut s, _) = one_batch();
    s.users.clear();
    assert_eq!(
        s.check_consistency(),
        Err("job 1 belongs to user 0, who has no record".to_string())
    );
}

#[test]
fn a_user_with_work_below_the_floor_is_caught() {
    let (mut s, _) = one_batch();
    // User 0 has work (seven tasks left) and was charged for the batch.
    let pass = s.users[&0].pass;
    assert!(s.users[&0].has_work && pass > 0);
    s.pass_floor = pass;
    assert_eq!(s.check_consistency(), Ok(()), "at the floor is fine");
    s.pass_floor = pass + 1;
    assert_eq!(
        s.check_consistency(),
        Err(format!(
            "user 0 has work and a pass of {pass}, below the floor {}",
            pass + 1
        ))
    );
}
