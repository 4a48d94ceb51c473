//! Tests of the scheduling rules, natively and without I/O: `rules` checks
//! one rule at a time on a small hand-built grid; `fair_share` checks the
//! rules between users, and the shares they give on a simulated grid with a
//! clock of its own; `model` drives the state
//! machine through thousands of random interleavings of grants, results,
//! returns, failures, disconnects and lease expiries, and checks that every
//! task is decided exactly once, with the right answer; `consistency` shows
//! that the self-check the model leans on catches a broken table. This file
//! holds what they share: a known right and wrong digest for every task, job
//! plans, and a config without speculation and with short leases.

mod consistency;
mod fair_share;
mod model;
mod rules;

use super::*;

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
        locality: Vec::new(),
        id,
        tasks,
        replication: Replication {
            redundancy,
            quorum: redundancy / 2 + 1,
            max_replicas: redundancy + 2,
        },
        needs: Capabilities::NONE,
        max_batch_tasks: None,
        owner: 0,
        priority: 0,
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
