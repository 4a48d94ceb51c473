//! The private records behind the scheduler's tables: what it keeps per
//! worker connection (its donor, pipeline, measured speed and recently closed
//! batches) and per batch (its tasks, which still await a result, its lease).
//! Plain data: the rules that change them live with the events that do.

use std::collections::{HashMap, HashSet, VecDeque};

use grid_protocol::TaskRanges;

use crate::speed::Speed;
use crate::{BatchId, Capabilities, DonorId, JobId, WorkerId};

#[derive(Debug)]
pub(crate) struct WorkerState {
    pub donor: DonorId,
    pub threads: u32,
    /// What it can run.
    pub offers: Capabilities,
    pub paused: bool,
    /// Batches held, oldest first.
    pub batches: Vec<BatchId>,
    /// Measured speed per job.
    pub speed: HashMap<JobId, Speed>,
    /// When the worker last finished a batch: with pipelining, a batch's
    /// service time starts there, not at its grant.
    pub last_finish: u64,
    /// Its last closed batches (finished, revoked, returned) and their
    /// tasks: a result that races the close is stale, not unleased.
    pub recently_closed: VecDeque<(BatchId, TaskRanges)>,
    /// The locality keys of what its cache holds (`JobPlan::locality`).
    pub holds: HashSet<u64>,
}

#[derive(Debug)]
pub(crate) struct BatchState {
    pub worker: WorkerId,
    pub job: JobId,
    /// The tasks of the batch, ascending, and which still await a result.
    pub tasks: Vec<u32>,
    pub waiting: Vec<bool>,
    pub outstanding: u32,
    pub granted_at: u64,
    pub deadline: u64,
    pub lease_ms: u64,
    pub expired: bool,
}

impl BatchState {
    pub fn position(&self, task: u32) -> Option<usize> {
        self.tasks.binary_search(&task).ok()
    }
}
