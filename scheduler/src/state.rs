//! The private records behind the scheduler's tables: what it keeps per
//! worker connection (its donor, pipeline, measured speed and recently closed
//! batches) and per batch (its tasks, which still await a result, its lease).
//! Plain data: the rules that change them live with the events that do.

use std::collections::{HashMap, HashSet, VecDeque};

use grid_protocol::TaskRanges;

use crate::speed::{JobClocks, Speed};
use crate::{BatchId, Capabilities, DonorId, JobId, UserId, WorkerId};

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
    /// Its time, as given to each job it holds batches of: with
    /// pipelining, a batch's service time starts when its job's previous
    /// batch here finished, not at its grant.
    pub clocks: JobClocks,
    /// Its last closed batches (finished, revoked, returned) and their
    /// tasks: a result that races the close is stale, not unleased.
    pub recently_closed: VecDeque<(BatchId, TaskRanges)>,
    /// The locality keys of what its cache holds (`JobPlan::locality`).
    pub holds: HashSet<u64>,
    /// The users whose jobs alone it takes (`Scheduler::limit_worker_to`);
    /// `None`: anyone's.
    pub only_for: Option<std::sync::Arc<[UserId]>>,
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
    /// Its job's clock on its worker at the grant (`JobClocks`).
    pub started: f64,
    pub deadline: u64,
    pub lease_ms: u64,
    pub expired: bool,
    /// What its owner's pass was charged at the grant, when the job had
    /// no measured speed yet: trued up when the batch finishes (`users`).
    pub unmeasured_charge: Option<u64>,
}

impl BatchState {
    pub fn position(&self, task: u32) -> Option<usize> {
        self.tasks.binary_search(&task).ok()
    }
}
