//! Jobs as the coordinator holds them in memory: their lifecycle state, the
//! collator of a live job, and the status object the API and CLI show.

use std::sync::Mutex;

use grid_kernels::{Collator, KernelSpec, ResultSummary};
use grid_protocol::api::{JobState, JobStatus, TaskCounts};

/// A job's fixed description.
#[derive(Debug)]
pub struct Job {
    pub id: u64,
    pub spec: KernelSpec,
    pub tasks: u32,
    pub redundancy: u32,
    pub quorum: u32,
    pub max_replicas: u32,
    pub created_at: u64,
    pub live: Mutex<JobLive>,
}

/// A job's changing part.
#[derive(Debug)]
pub struct JobLive {
    pub state: JobState,
    pub paused: bool,
    pub started_at: Option<u64>,
    pub finished_at: Option<u64>,
    pub error: Option<String>,
    /// Tasks whose results are durable and collated.
    pub tasks_done: u32,
    /// Present while the job is live.
    pub collator: Option<Collator>,
    /// The result summary once done.
    pub result: Option<ResultSummary>,
}

impl Job {
    /// The job's changing part, locked.
    pub fn live(&self) -> std::sync::MutexGuard<'_, JobLive> {
        crate::sync::lock(&self.live, "job")
    }

    pub fn status(&self, now_unix_ms: u64) -> JobStatus {
        let live = self.live();
        let elapsed_ms = live.started_at.map(|start| {
            live.finished_at
                .unwrap_or(now_unix_ms)
                .saturating_sub(start)
        });
        JobStatus {
            id: self.id,
            spec: self.spec.clone(),
            state: live.state,
            paused: live.paused,
            tasks: TaskCounts {
                total: self.tasks,
                done: live.tasks_done,
            },
            redundancy: self.redundancy,
            quorum: self.quorum,
            created_at: self.created_at,
            started_at: live.started_at,
            finished_at: live.finished_at,
            elapsed_ms,
            result: live.result.clone(),
            partial: live
                .collator
                .as_ref()
                .filter(|c| c.collated() > 0)
                .map(|c| c.summary()),
            error: live.error.clone(),
        }
    }
}
