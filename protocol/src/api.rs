//! The HTTP API and the monitor channel as types: what clients send
//! (`POST /api/jobs`), what the coordinator answers (status objects, worker
//! list entries, errors) and what it pushes to dashboards (`/ws/monitor`).
//! The coordinator serializes these, the CLI and the tests deserialize them,
//! and PROTOCOL.md documents the same JSON; a renamed field is a compile
//! error here rather than a silent `null` somewhere else.
//!
//! Requests are decoded strictly ([`JobRequest::decode`]: unknown fields are
//! errors, and a kernel's params are checked with messages that name the
//! field); answers are read leniently, so a client keeps working when a
//! newer coordinator adds a field.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use grid_kernels::wasm::WasmInputs;
use grid_kernels::{ContentDigest, KernelKind, KernelSpec, ResultSummary, SpecError};
use serde::{Deserialize, Serialize};

use crate::WorkerKind;

/// A job's lifecycle: `queued -> running -> done | failed | cancelled`,
/// and `done -> rechecking -> done` when answers it was done with came from
/// a donor caught lying since. A paused job keeps its state and sets
/// [`JobStatus::paused`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
    /// Done once, now computing again the tasks whose answers came from a
    /// donor caught lying since; done again when they are settled.
    Rechecking,
}

impl JobState {
    pub const ALL: [JobState; 6] = [
        JobState::Queued,
        JobState::Running,
        JobState::Done,
        JobState::Failed,
        JobState::Cancelled,
        JobState::Rechecking,
    ];

    pub fn name(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Rechecking => "rechecking",
        }
    }

    pub fn from_name(name: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Done, failed or cancelled: nothing about the job changes any more.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Failed | JobState::Cancelled
        )
    }
}

impl fmt::Display for JobState {
    /// The name, padded as the format asks (`{:<10}` lines up a table).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// The body of `POST /api/jobs` (and the file `grid submit --file` takes):
/// `{"kernel": ..., "params": {...}, "tasks"?, "redundancy"?, "quorum"?,
/// "max_replicas"?}`.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRequest {
    pub kernel: KernelRequest,
    /// How many tasks to split the job into; default: chosen per kernel.
    pub tasks: Option<u32>,
    /// Replicas per task; default 1.
    pub redundancy: Option<u32>,
    /// Agreeing replicas that decide a task; default a majority.
    pub quorum: Option<u32>,
    /// The most replicas a disagreement may add up to.
    pub max_replicas: Option<u32>,
    /// Among its owner's jobs, higher goes first; default 0.
    pub priority: Option<i32>,
}

/// What a job runs: a built-in kernel with its params, or a user's module,
/// which the coordinator prepares into a [`KernelSpec::Wasm`].
#[derive(Debug, Clone, PartialEq)]
pub enum KernelRequest {
    BuiltIn(KernelSpec),
    Wasm(WasmRequest),
}

impl From<KernelSpec> for KernelRequest {
    fn from(spec: KernelSpec) -> KernelRequest {
        KernelRequest::BuiltIn(spec)
    }
}

impl From<WasmRequest> for KernelRequest {
    fn from(request: WasmRequest) -> KernelRequest {
        KernelRequest::Wasm(request)
    }
}

impl KernelRequest {
    pub fn kind(&self) -> KernelKind {
        match self {
            KernelRequest::BuiltIn(spec) => spec.kind(),
            KernelRequest::Wasm(_) => KernelKind::Wasm,
        }
    }
}

/// The params of a `"kernel": "wasm"` request: a module uploaded with
/// `PUT /api/blobs/...`, where each task's stdin comes from, and the
/// options of `grid submit wasm`. Unset limits take
/// [`grid_kernels::wasm::WasmLimits::DEFAULT`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WasmRequest {
    /// The module as submitted (a WASI preview 1 command).
    pub module: ContentDigest,
    /// The tasks' inputs. Absent: `tasks` tasks (default 1) with empty stdin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<WasmInputs>,
    /// argv[0]; default `kernel.wasm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// argv[1..].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_bytes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_bytes: Option<u32>,
    /// Keys the tasks' `random_get` streams; default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Read-only files every task sees as `/data/<name>`: uploaded blobs,
    /// by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, ContentDigest>,
}

impl WasmRequest {
    /// A request for `module` with every option at its default.
    pub fn new(module: ContentDigest) -> WasmRequest {
        WasmRequest {
            module,
            inputs: None,
            name: None,
            args: Vec::new(),
            description: None,
            fuel: None,
            memory_mib: None,
            stdout_bytes: None,
            stderr_bytes: None,
            seed: None,
            files: BTreeMap::new(),
        }
    }
}

/// Why a job request body is not a job request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    /// Not JSON, an unknown or missing field, a field of the wrong type.
    #[error("invalid job request: {0}")]
    Json(String),
    /// An unknown kernel or bad params, named by the kernel's own checks.
    #[error(transparent)]
    Spec(#[from] SpecError),
}

/// The request exactly as it travels; the spec is built from `kernel` and
/// `params` afterwards so that its errors name the kernel.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobRequestWire {
    kernel: String,
    #[serde(default = "empty_object")]
    params: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tasks: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    redundancy: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    quorum: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_replicas: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    priority: Option<i32>,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

impl JobRequest {
    /// A request for `kernel` with every option at its default.
    pub fn new(kernel: impl Into<KernelRequest>) -> JobRequest {
        JobRequest {
            kernel: kernel.into(),
            tasks: None,
            redundancy: None,
            quorum: None,
            max_replicas: None,
            priority: None,
        }
    }

    /// Decodes a request body. The kernel's params are checked here, as far
    /// as their own types go; whether they make a job (ranges, task counts)
    /// is the coordinator's to say.
    pub fn decode(body: &[u8]) -> Result<JobRequest, RequestError> {
        let wire: JobRequestWire =
            serde_json::from_slice(body).map_err(|e| RequestError::Json(e.to_string()))?;
        let kernel = if wire.kernel == KernelKind::Wasm.name() {
            KernelRequest::Wasm(serde_json::from_value(wire.params).map_err(|e| {
                SpecError::BadParams {
                    kernel: KernelKind::Wasm,
                    message: e.to_string(),
                }
            })?)
        } else {
            KernelRequest::BuiltIn(KernelSpec::from_parts(&wire.kernel, wire.params)?)
        };
        Ok(JobRequest {
            kernel,
            tasks: wire.tasks,
            redundancy: wire.redundancy,
            quorum: wire.quorum,
            max_replicas: wire.max_replicas,
            priority: wire.priority,
        })
    }

    /// The JSON body, as [`JobRequest::decode`] reads it.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a job request is plain data")
    }

    fn wire(&self) -> JobRequestWire {
        JobRequestWire {
            kernel: self.kernel.kind().name().to_string(),
            params: match &self.kernel {
                KernelRequest::BuiltIn(spec) => spec.params_json(),
                KernelRequest::Wasm(request) => {
                    serde_json::to_value(request).expect("a wasm request is plain data")
                }
            },
            tasks: self.tasks,
            redundancy: self.redundancy,
            quorum: self.quorum,
            max_replicas: self.max_replicas,
            priority: self.priority,
        }
    }
}

impl Serialize for JobRequest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.wire().serialize(serializer)
    }
}

/// A job's task counts in a status object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCounts {
    pub total: u32,
    /// Tasks whose results are durable and collated.
    pub done: u32,
}

/// A job as `GET /api/jobs/{id}` shows it (and every job route answers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    pub id: u64,
    /// The name of the user who submitted it.
    #[serde(default)]
    pub owner: String,
    /// Among its owner's jobs, higher goes first.
    #[serde(default)]
    pub priority: i32,
    /// Answers replaced after the job had them: decided on the word of a
    /// donor caught lying later, and found wrong by a re-check.
    #[serde(default)]
    pub revised: u32,
    /// `kernel` and `params`, as in the request.
    #[serde(flatten)]
    pub spec: KernelSpec,
    pub state: JobState,
    /// Whether a queued or running job's tasks are held back.
    pub paused: bool,
    pub tasks: TaskCounts,
    pub redundancy: u32,
    pub quorum: u32,
    /// Unix milliseconds.
    pub created_at: u64,
    pub started_at: Option<u64>,
    pub finished_at: Option<u64>,
    /// Wall time from the first batch to the end (or to now).
    pub elapsed_ms: Option<u64>,
    /// The result once done.
    pub result: Option<ResultSummary>,
    /// While the job runs: the result over the tasks finished so far.
    pub partial: Option<ResultSummary>,
    /// Why a failed job failed.
    pub error: Option<String>,
}

/// A user's limits; `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserLimits {
    /// Jobs queued or running at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_running: Option<u32>,
    /// Bytes of uploads kept for the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_storage: Option<u64>,
    /// Tasks of its queued and running jobs not yet decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queued: Option<u64>,
}

/// `POST /api/users`: a new user (admins only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRequest {
    pub name: String,
    #[serde(default)]
    pub admin: bool,
    /// Its share of the workers against other users'; default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    #[serde(default)]
    pub limits: UserLimits,
}

/// A user as `GET /api/users` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub name: String,
    pub admin: bool,
    pub weight: u32,
    pub limits: UserLimits,
    /// Unix milliseconds.
    pub created_at: u64,
}

/// A new token, shown this once: the answer to creating a user or
/// rotating its token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserToken {
    pub user: UserInfo,
    pub token: String,
}

/// What an audit entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    UserAdded,
    UserRemoved,
    TokenRotated,
    JobSubmitted,
    JobCancelled,
    JobPaused,
    JobResumed,
    JobRemoved,
    AnswersRevised,
    DonorQuarantined,
    JobRechecking,
}

impl AuditAction {
    const ALL: [AuditAction; 11] = [
        AuditAction::UserAdded,
        AuditAction::UserRemoved,
        AuditAction::TokenRotated,
        AuditAction::JobSubmitted,
        AuditAction::JobCancelled,
        AuditAction::JobPaused,
        AuditAction::JobResumed,
        AuditAction::JobRemoved,
        AuditAction::AnswersRevised,
        AuditAction::DonorQuarantined,
        AuditAction::JobRechecking,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AuditAction::UserAdded => "user_added",
            AuditAction::UserRemoved => "user_removed",
            AuditAction::TokenRotated => "token_rotated",
            AuditAction::JobSubmitted => "job_submitted",
            AuditAction::JobCancelled => "job_cancelled",
            AuditAction::JobPaused => "job_paused",
            AuditAction::JobResumed => "job_resumed",
            AuditAction::JobRemoved => "job_removed",
            AuditAction::AnswersRevised => "answers_revised",
            AuditAction::DonorQuarantined => "donor_quarantined",
            AuditAction::JobRechecking => "job_rechecking",
        }
    }

    pub fn from_name(name: &str) -> Option<AuditAction> {
        AuditAction::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// One line of the audit trail (`GET /api/audit`, `grid audit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Unix milliseconds.
    pub at: u64,
    /// The user who did it, or `coordinator` for what the grid did itself.
    pub actor: String,
    pub action: AuditAction,
    /// What it was done to: `user alice`, `job 7`, `donor 12`.
    pub subject: String,
    /// The particulars, in a sentence (a quarantine's evidence).
    pub detail: String,
}

/// A worker connection as `GET /api/workers` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub id: u64,
    pub kind: WorkerKind,
    pub threads: u32,
    pub name: Option<String>,
    pub session: Option<String>,
    /// Opaque: compare for equality only.
    pub donor: u64,
    pub addr: Option<String>,
    /// Unix milliseconds.
    pub connected_at: u64,
    pub paused: bool,
    pub tasks_done: u64,
    /// The fuel of this connection's accepted results of users' kernels:
    /// the compute it donated, counted the same in every engine.
    #[serde(default)]
    pub fuel_used: u64,
    pub tasks_in_flight: u32,
    pub results_rejected: u64,
    /// Results of this donor that matched a quorum of others.
    pub validated: u32,
    /// Whether its replicated tasks are decided by its result alone.
    pub trusted: bool,
    pub quarantined: bool,
}

/// The formats a done job's result exports to (`?format=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    Json,
    Csv,
    Png,
}

impl ExportFormat {
    pub fn name(self) -> &'static str {
        match self {
            ExportFormat::Json => "json",
            ExportFormat::Csv => "csv",
            ExportFormat::Png => "png",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Json => "application/json",
            ExportFormat::Csv => "text/csv; charset=utf-8",
            ExportFormat::Png => "image/png",
        }
    }

    /// The file extension of the download's name.
    pub fn extension(self) -> &'static str {
        self.name()
    }
}

impl FromStr for ExportFormat {
    type Err = String;

    fn from_str(name: &str) -> Result<ExportFormat, String> {
        match name {
            "json" => Ok(ExportFormat::Json),
            "csv" => Ok(ExportFormat::Csv),
            "png" => Ok(ExportFormat::Png),
            other => Err(format!("unknown format '{other}' (use json, csv or png)")),
        }
    }
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// Every error answer: `{"error": "a sentence saying what is wrong"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// The answer to `PUT /api/blobs/{digest}`: the blob stored, and its size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobInfo {
    pub digest: ContentDigest,
    pub size: u64,
}

/// One stored blob as `GET /api/blobs` lists it (`grid blob ls`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobListing {
    pub digest: ContentDigest,
    pub size: u64,
    /// How many stored jobs (in any state, until `DELETE /api/jobs/{id}`)
    /// use the blob; a blob with references is never deleted.
    pub references: u64,
    /// Unix milliseconds: when it was uploaded (or found on disk).
    pub created_at: u64,
    /// Unix milliseconds: its last upload, submission of a job that uses
    /// it, release by a removed job, or download (downloads are recorded
    /// in batches, a few minutes late). An unreferenced blob goes once this
    /// is older than the coordinator's retention (`--blob-retention`).
    pub last_used_at: u64,
}

/// `GET /api/health`: `{"status": "ok"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
}

/// One throughput sample of the monitor channel.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ThroughputSample {
    /// Unix milliseconds.
    pub t: u64,
    /// Results made durable per second over the last interval.
    pub tasks_per_s: f64,
    pub workers: u64,
    pub threads: u64,
}

/// The connected workers in brief, in the monitor's snapshot and its
/// once-a-second `workers` event: totals, by kind, and the donors giving the
/// most. The size does not grow with the fleet; the full list is
/// `GET /api/workers`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerSummary {
    /// Worker connections.
    pub connections: u64,
    /// Distinct donors among them.
    pub donors: u64,
    pub threads: u64,
    /// Connections whose donor paused them.
    pub paused: u64,
    /// Connections of quarantined donors (closed at once, so few and brief).
    pub quarantined: u64,
    /// Donors whose replicated tasks are decided by their result alone.
    pub trusted_donors: u64,
    pub tasks_in_flight: u64,
    /// Tasks done by the connections now connected.
    pub tasks_done: u64,
    /// As in [`WorkerInfo::fuel_used`], summed.
    pub fuel_used: u64,
    /// Tasks per second of the connected workers over the last second (0 in
    /// a snapshot taken before the first sample).
    pub rate: f64,
    /// One entry per kind with connections, native first.
    pub by_kind: Vec<KindFigures>,
    /// The donors doing the most (by rate, then tasks done), at most
    /// [`WorkerSummary::TOP_DONORS`].
    pub top_donors: Vec<DonorFigures>,
}

impl WorkerSummary {
    /// How many donors `top_donors` names at most.
    pub const TOP_DONORS: usize = 20;
}

/// The workers of one kind, in a [`WorkerSummary`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindFigures {
    pub kind: WorkerKind,
    pub connections: u64,
    pub threads: u64,
    pub tasks_done: u64,
    pub rate: f64,
}

/// One donor's connections together, in a [`WorkerSummary`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DonorFigures {
    /// Opaque, as in [`WorkerInfo::donor`].
    pub donor: u64,
    /// The name its first connection gave, if any (at most 64 characters).
    pub name: Option<String>,
    pub kind: WorkerKind,
    pub connections: u64,
    pub threads: u64,
    pub tasks_done: u64,
    pub fuel_used: u64,
    pub tasks_in_flight: u64,
    /// Tasks per second over the last second.
    pub rate: f64,
    pub trusted: bool,
    pub quarantined: bool,
}

/// The jobs a snapshot does not list, which `GET /api/jobs` pages through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobsLeftOut {
    /// Queued, running or rechecking jobs beyond the snapshot's cap.
    pub live: u64,
    /// Finished jobs older than those listed.
    pub finished: u64,
}

/// Jobs by state, among those the channel's user may see.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCounts {
    pub queued: u64,
    pub running: u64,
    pub rechecking: u64,
    pub done: u64,
    pub failed: u64,
    pub cancelled: u64,
}

impl JobCounts {
    pub fn add(&mut self, state: JobState) {
        self.add_many(state, 1);
    }

    pub fn add_many(&mut self, state: JobState, count: u64) {
        *match state {
            JobState::Queued => &mut self.queued,
            JobState::Running => &mut self.running,
            JobState::Rechecking => &mut self.rechecking,
            JobState::Done => &mut self.done,
            JobState::Failed => &mut self.failed,
            JobState::Cancelled => &mut self.cancelled,
        } += count;
    }

    pub fn total(&self) -> u64 {
        self.queued + self.running + self.rechecking + self.done + self.failed + self.cancelled
    }
}

/// A hashsearch job's nonces on the monitor channel, which never carries
/// them inside a job's `result` or `partial` (those lists are sent empty).
/// In a snapshot: `count` and the smallest `first`. In a `job_nonces`
/// event: `count` after the change, and what changed since the previous
/// `job_nonces` of the job: `added`, `removed` (a re-check replaced an
/// answer), or `first` when the channel had sent none yet, which replaces
/// what a client knew.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobNonces {
    pub job: u64,
    /// How many nonces the job has found in all.
    pub count: u64,
    /// The smallest nonces, at most [`JobNonces::FIRST`], ascending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<Vec<u64>>,
    /// Ascending.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub added: Vec<u64>,
    /// Ascending.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<u64>,
}

impl JobNonces {
    /// How many nonces `first` holds at most.
    pub const FIRST: usize = 50;
}

/// What happened to a job, in a `job` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobEvent {
    Submitted,
    Running,
    /// Sent at most four times a second per job.
    Progress,
    Paused,
    Resumed,
    Done,
    Failed,
    Cancelled,
    /// A done job went back to check answers again (see
    /// [`JobState::Rechecking`]).
    Rechecking,
}

/// A text frame of the monitor channel, tagged by `type` like the worker
/// messages. The first frame a client receives is a [`MonitorEvent::Snapshot`];
/// every later snapshot (after the client fell behind) replaces what it knew.
/// Frames stay small at any size of grid: the snapshot lists a window of the
/// jobs and sums up the workers, and events carry what changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MonitorEvent {
    Snapshot {
        /// Unix milliseconds.
        time: u64,
        /// Live jobs (queued, running, rechecking), newest first, then the
        /// newest finished ones, newest first; at most
        /// [`MonitorEvent::SNAPSHOT_LIVE_JOBS`] and
        /// [`MonitorEvent::SNAPSHOT_FINISHED_JOBS`], fewer if their text
        /// would pass [`MonitorEvent::SNAPSHOT_JOBS_BYTES`]. Hashsearch
        /// nonce lists are empty: see `nonces`.
        jobs: Vec<JobStatus>,
        /// The jobs left out of `jobs`.
        #[serde(default)]
        jobs_left_out: JobsLeftOut,
        /// Every job the channel's user may see, by state.
        #[serde(default)]
        job_counts: JobCounts,
        /// The nonces of the hashsearch jobs in `jobs` (`count`, `first`).
        #[serde(default)]
        nonces: Vec<JobNonces>,
        workers: WorkerSummary,
        /// The last ten minutes, oldest first.
        throughput: Vec<ThroughputSample>,
    },
    /// The job's status after the change (a hashsearch job's nonce lists
    /// empty: a `job_nonces` event follows when they changed).
    Job {
        event: JobEvent,
        job: Box<JobStatus>,
    },
    /// A hashsearch job's nonces changed.
    JobNonces(JobNonces),
    WorkerJoined {
        worker: WorkerInfo,
    },
    WorkerLeft {
        worker: u64,
    },
    /// A donor was caught sending wrong results.
    WorkerQuarantined {
        donor: u64,
        /// Its connections at the time (they are closed with 4008).
        workers: Vec<u64>,
        reason: String,
        /// How many tasks it had decided alone that are computed again.
        reopened_tasks: u64,
    },
    /// Once a second while anyone watches.
    Workers {
        workers: WorkerSummary,
    },
    Throughput {
        sample: ThroughputSample,
    },
}

impl MonitorEvent {
    /// Live jobs a snapshot lists at most.
    pub const SNAPSHOT_LIVE_JOBS: usize = 100;
    /// Finished jobs a snapshot lists at most.
    pub const SNAPSHOT_FINISHED_JOBS: usize = 30;
    /// The text of a snapshot's jobs and nonces stays under this.
    pub const SNAPSHOT_JOBS_BYTES: usize = 160 * 1024;

    /// The event's text frame.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("monitor events are plain data")
    }

    pub fn decode(text: &str) -> Result<MonitorEvent, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// `GET /api/jobs?limit=N&before=ID&state=S[,S...]`: a page of jobs,
/// newest (highest id) first. The answer stays a JSON array; when more jobs
/// match, the header [`NEXT_BEFORE`] names the `before` of the next page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobQuery {
    /// At most this many jobs (1 to [`JobQuery::MAX_LIMIT`]).
    pub limit: u32,
    /// Only jobs with a smaller id.
    pub before: Option<u64>,
    /// Only jobs in one of these states; empty for every state.
    pub states: Vec<JobState>,
}

/// The response header that names the next page of `GET /api/jobs`.
pub const NEXT_BEFORE: &str = "x-next-before";
/// The response header that names the next page of `GET /api/workers`.
pub const NEXT_AFTER: &str = "x-next-after";

impl Default for JobQuery {
    fn default() -> JobQuery {
        JobQuery {
            limit: JobQuery::DEFAULT_LIMIT,
            before: None,
            states: Vec::new(),
        }
    }
}

/// `limit=N` of a page query, checked.
fn page_limit(value: &str, max: u32) -> Result<u32, String> {
    match value.parse::<u32>() {
        Ok(limit) if (1..=max).contains(&limit) => Ok(limit),
        _ => Err(format!(
            "limit must be a number from 1 to {max}, not '{value}'"
        )),
    }
}

/// An id in a page query (`before=`, `after=`), checked.
fn page_id(name: &str, value: &str) -> Result<u64, String> {
    value
        .parse::<u64>()
        .map_err(|_| format!("{name} must be an id (a whole number), not '{value}'"))
}

impl JobQuery {
    pub const DEFAULT_LIMIT: u32 = 100;
    pub const MAX_LIMIT: u32 = 1000;

    /// Reads a query string (without the `?`); an unknown parameter or a
    /// bad value is an error that says which and why.
    pub fn parse(query: &str) -> Result<JobQuery, String> {
        let mut parsed = JobQuery::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("limit", value)) => parsed.limit = page_limit(value, Self::MAX_LIMIT)?,
                Some(("before", value)) => parsed.before = Some(page_id("before", value)?),
                Some(("state", value)) => {
                    for name in value.split(',') {
                        let state = JobState::from_name(name).ok_or_else(|| {
                            let names: Vec<&str> = JobState::ALL.iter().map(|s| s.name()).collect();
                            format!("unknown job state '{name}' (states: {})", names.join(", "))
                        })?;
                        if !parsed.states.contains(&state) {
                            parsed.states.push(state);
                        }
                    }
                }
                _ => {
                    return Err(format!(
                        "unknown query parameter '{pair}' (accepted: limit, before, state)"
                    ));
                }
            }
        }
        Ok(parsed)
    }

    /// The query string (without the `?`) that [`JobQuery::parse`] reads back.
    pub fn to_query(&self) -> String {
        let mut parts = vec![format!("limit={}", self.limit)];
        if let Some(before) = self.before {
            parts.push(format!("before={before}"));
        }
        if !self.states.is_empty() {
            let names: Vec<&str> = self.states.iter().map(|s| s.name()).collect();
            parts.push(format!("state={}", names.join(",")));
        }
        parts.join("&")
    }

    /// Whether a job with this id and state belongs to the query (any page).
    pub fn admits(&self, id: u64, state: JobState) -> bool {
        self.before.is_none_or(|before| id < before)
            && (self.states.is_empty() || self.states.contains(&state))
    }
}

/// `GET /api/workers?limit=N&after=ID`: a page of worker connections, by
/// id ascending; the header [`NEXT_AFTER`] names the next page's `after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerQuery {
    pub limit: u32,
    /// Only connections with a larger id.
    pub after: Option<u64>,
}

impl Default for WorkerQuery {
    fn default() -> WorkerQuery {
        WorkerQuery {
            limit: WorkerQuery::DEFAULT_LIMIT,
            after: None,
        }
    }
}

impl WorkerQuery {
    pub const DEFAULT_LIMIT: u32 = 1000;
    pub const MAX_LIMIT: u32 = 10_000;

    /// Reads a query string (without the `?`), as [`JobQuery::parse`].
    pub fn parse(query: &str) -> Result<WorkerQuery, String> {
        let mut parsed = WorkerQuery::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("limit", value)) => parsed.limit = page_limit(value, Self::MAX_LIMIT)?,
                Some(("after", value)) => parsed.after = Some(page_id("after", value)?),
                _ => {
                    return Err(format!(
                        "unknown query parameter '{pair}' (accepted: limit, after)"
                    ));
                }
            }
        }
        Ok(parsed)
    }

    pub fn to_query(&self) -> String {
        match self.after {
            Some(after) => format!("limit={}&after={after}", self.limit),
            None => format!("limit={}", self.limit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_queries_read_back_what_they_write_and_refuse_bad_values() {
        let query = JobQuery {
            limit: 5,
            before: Some(1234),
            states: vec![JobState::Done, JobState::Failed],
        };
        assert_eq!(query.to_query(), "limit=5&before=1234&state=done,failed");
        assert_eq!(JobQuery::parse(&query.to_query()), Ok(query));
        assert_eq!(JobQuery::parse(""), Ok(JobQuery::default()));
        for bad in [
            "limit=0",
            "limit=1001",
            "limit=x",
            "before=-1",
            "state=finished",
            "state=done,",
            "colour=red",
        ] {
            assert!(JobQuery::parse(bad).is_err(), "{bad}");
        }
        assert!(
            JobQuery::parse("state=paused")
                .unwrap_err()
                .contains("queued, running, done")
        );
        let workers = WorkerQuery {
            limit: 2,
            after: Some(9),
        };
        assert_eq!(WorkerQuery::parse(&workers.to_query()), Ok(workers));
        assert!(WorkerQuery::parse("limit=10001").is_err());
        assert!(WorkerQuery::parse("before=3").is_err());
        let done_only = JobQuery::parse("state=done&before=10").unwrap();
        assert!(done_only.admits(9, JobState::Done));
        assert!(!done_only.admits(10, JobState::Done));
        assert!(!done_only.admits(9, JobState::Running));
    }
    use grid_kernels::spec::PrimesParams;

    fn primes() -> KernelSpec {
        KernelSpec::Primes(PrimesParams { start: 0, end: 100 })
    }

    #[test]
    fn requests_decode_strictly_with_errors_that_name_the_problem() {
        let request =
            JobRequest::decode(br#"{"kernel":"primes","params":{"start":0,"end":100},"tasks":4}"#)
                .unwrap();
        assert_eq!(request.kernel, KernelRequest::BuiltIn(primes()));
        assert_eq!(request.tasks, Some(4));
        assert_eq!(JobRequest::decode(&request.encode()).unwrap(), request);

        let unknown = JobRequest::decode(br#"{"kernel":"primes","color":"red"}"#).unwrap_err();
        assert!(
            unknown
                .to_string()
                .starts_with("invalid job request: unknown field `color`"),
            "{unknown}"
        );
        let kernel = JobRequest::decode(br#"{"kernel":"fibonacci"}"#).unwrap_err();
        assert!(
            kernel.to_string().starts_with("unknown kernel 'fibonacci'"),
            "{kernel}"
        );
        let params =
            JobRequest::decode(br#"{"kernel":"primes","params":{"start":1}}"#).unwrap_err();
        assert!(
            params.to_string().contains("missing field `end`"),
            "{params}"
        );
        assert!(matches!(
            JobRequest::decode(b"not json"),
            Err(RequestError::Json(_))
        ));
    }

    #[test]
    fn wasm_requests_name_an_uploaded_module_and_where_inputs_come_from() {
        let module = ContentDigest::of(b"module");
        let lines = ContentDigest::of(b"1\n2\n");
        let body = format!(
            r#"{{"kernel":"wasm","params":{{"module":"{module}","inputs":{{"lines":"{lines}"}},
               "args":["-v"],"fuel":1000}},"redundancy":2}}"#
        );
        let request = JobRequest::decode(body.as_bytes()).unwrap();
        let KernelRequest::Wasm(wasm) = &request.kernel else {
            panic!("{request:?}")
        };
        assert_eq!(wasm.module, module);
        assert_eq!(wasm.inputs, Some(WasmInputs::Lines(lines)));
        assert_eq!(
            (wasm.args.as_slice(), wasm.fuel),
            (&["-v".to_string()][..], Some(1000))
        );
        assert_eq!(request.redundancy, Some(2));
        assert_eq!(JobRequest::decode(&request.encode()).unwrap(), request);

        let typo = body.replace("\"fuel\"", "\"feul\"");
        let err = JobRequest::decode(typo.as_bytes()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid parameters for wasm: unknown field `feul`"),
            "{err}"
        );
        let short = JobRequest::decode(br#"{"kernel":"wasm","params":{"module":"sha256:00"}}"#)
            .unwrap_err();
        assert!(short.to_string().contains("sha256"), "{short}");
    }

    #[test]
    fn status_objects_keep_the_documented_shape_and_read_back() {
        let status = JobStatus {
            revised: 0,
            priority: 0,
            owner: "admin".into(),
            id: 3,
            spec: primes(),
            state: JobState::Done,
            paused: false,
            tasks: TaskCounts { total: 4, done: 4 },
            redundancy: 1,
            quorum: 1,
            created_at: 1,
            started_at: Some(2),
            finished_at: Some(5),
            elapsed_ms: Some(3),
            result: Some(ResultSummary::Primes { count: 25 }),
            partial: None,
            error: None,
        };
        let json: serde_json::Value = serde_json::to_value(&status).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "id": 3, "owner": "admin", "priority": 0, "revised": 0, "kernel": "primes", "params": {"start": 0, "end": 100},
                "state": "done", "paused": false, "tasks": {"total": 4, "done": 4},
                "redundancy": 1, "quorum": 1, "created_at": 1, "started_at": 2,
                "finished_at": 5, "elapsed_ms": 3, "result": {"count": 25},
                "partial": null, "error": null
            })
        );
        let back: JobStatus = serde_json::from_value(json).unwrap();
        assert_eq!(back, status);
    }

    #[test]
    fn monitor_events_are_tagged_by_type() {
        let event = MonitorEvent::WorkerLeft { worker: 12 };
        assert_eq!(event.encode(), r#"{"type":"worker_left","worker":12}"#);
        assert_eq!(MonitorEvent::decode(&event.encode()).unwrap(), event);
        let sample = ThroughputSample {
            t: 1,
            tasks_per_s: 2.5,
            workers: 3,
            threads: 6,
        };
        assert_eq!(
            MonitorEvent::Throughput { sample }.encode(),
            r#"{"type":"throughput","sample":{"t":1,"tasks_per_s":2.5,"workers":3,"threads":6}}"#
        );
    }

    #[test]
    fn nonce_changes_are_tagged_and_leave_out_what_is_empty() {
        let change = MonitorEvent::JobNonces(JobNonces {
            job: 7,
            count: 3,
            first: None,
            added: vec![5],
            removed: vec![],
        });
        assert_eq!(
            change.encode(),
            r#"{"type":"job_nonces","job":7,"count":3,"added":[5]}"#
        );
        assert_eq!(MonitorEvent::decode(&change.encode()).unwrap(), change);
        let window: JobNonces = serde_json::from_str(r#"{"job":7,"count":0,"first":[]}"#).unwrap();
        assert_eq!(window.first, Some(vec![]));
        assert!(window.added.is_empty() && window.removed.is_empty());
    }

    #[test]
    fn states_pad_like_strings() {
        assert_eq!(format!("[{:<8}]", JobState::Done), "[done    ]");
        assert_eq!(JobState::from_name("cancelled"), Some(JobState::Cancelled));
        assert!(JobState::Failed.is_finished() && !JobState::Running.is_finished());
    }

    #[test]
    fn export_formats_parse_their_names() {
        for format in [ExportFormat::Json, ExportFormat::Csv, ExportFormat::Png] {
            assert_eq!(format.name().parse::<ExportFormat>(), Ok(format));
        }
        assert!(
            "gif"
                .parse::<ExportFormat>()
                .unwrap_err()
                .contains("json, csv or png")
        );
    }
}
