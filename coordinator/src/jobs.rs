//! Jobs as the coordinator holds them in memory: their lifecycle state, the
//! collator of a live job, and the status object the API and CLI show.

use std::sync::Mutex;

use grid_kernels::{Collator, KernelSpec};
use serde::Serialize;

/// A job's lifecycle. `queued -> running -> done | failed | cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn name(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn from_name(name: &str) -> Option<JobState> {
        [
            JobState::Queued,
            JobState::Running,
            JobState::Done,
            JobState::Failed,
            JobState::Cancelled,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }

    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Failed | JobState::Cancelled
        )
    }
}

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
    pub result: Option<serde_json::Value>,
}

/// The status object of the API and of `grid status --json`.
#[derive(Debug, Clone, Serialize)]
pub struct JobStatus {
    pub id: u64,
    pub kernel: &'static str,
    pub params: serde_json::Value,
    pub state: JobState,
    pub paused: bool,
    pub tasks: TaskCounts,
    pub redundancy: u32,
    pub quorum: u32,
    pub created_at: u64,
    pub started_at: Option<u64>,
    pub finished_at: Option<u64>,
    /// Wall time from the first batch to the end (or to now).
    pub elapsed_ms: Option<u64>,
    /// The result once done (for mandelbrot, its dimensions; the image comes
    /// from the results endpoint).
    pub result: Option<serde_json::Value>,
    /// While the job runs: the result over the tasks finished so far (a
    /// running count, estimate or nonce list; for mandelbrot the dimensions).
    pub partial: Option<serde_json::Value>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskCounts {
    pub total: u32,
    pub done: u32,
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
            kernel: self.spec.kind().name(),
            params: self.spec.params_json(),
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
