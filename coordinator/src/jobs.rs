//! A job as the coordinator holds it: one definition, fixed at submission
//! ([`JobDefinition`]), and one lifecycle ([`Lifecycle`]) that changes only
//! through [`Lifecycle::apply`], the single place that knows which moves
//! are legal:
//!
//! | from | transition | to | event |
//! |---|---|---|---|
//! | queued | `Start` (its first batch is sent) | running | `running` |
//! | queued, running | `Pause` / `Resume` | the same state, paused or not | `paused` / `resumed` |
//! | queued, running | `Finish` (every task decided) | done | `done` |
//! | queued, running | `Fail` (a task cannot be decided) | failed | `failed` |
//! | queued, running | `Cancel` | cancelled | `cancelled` |
//!
//! Anything else (finishing a cancelled job, cancelling a done one, starting
//! a running one) is refused and changes nothing. The store keeps exactly
//! these two structs, so a new field of a job is one field here and one
//! column there.

use std::sync::{Mutex, MutexGuard};

use grid_kernels::wasm::WasmInputs;
use grid_kernels::{Collator, ContentDigest, KernelKind, KernelSpec, ResultSummary};
use grid_protocol::{Hello, TaskInput};

use crate::inputs::TaskInputs;
use grid_protocol::api::{JobEvent, JobState, JobStatus, TaskCounts};
use grid_scheduler::{Capabilities, JobPlan, Replication};

/// What a job is, fixed when it is submitted.
#[derive(Debug, Clone, PartialEq)]
pub struct JobDefinition {
    pub spec: KernelSpec,
    pub tasks: u32,
    pub replication: Replication,
    /// Unix milliseconds.
    pub created_at: u64,
    /// Where a wasm job's tasks read their stdin; `None` for the built-in
    /// kernels and for wasm jobs whose tasks read nothing.
    pub inputs: Option<WasmInputs>,
    /// The user who submitted it.
    pub owner: crate::users::UserId,
    /// Among its owner's jobs, higher goes first.
    pub priority: i32,
}

impl JobDefinition {
    /// What the scheduler needs of the job, whose tasks read `inputs`.
    pub fn plan(&self, id: u64, inputs: Option<&TaskInputs>) -> JobPlan {
        let locality = match &self.spec {
            KernelSpec::Wasm(params) => params
                .files
                .iter()
                .map(|f| (crate::grid::locality_key(&f.blob), f.size))
                .collect(),
            _ => Vec::new(),
        };
        JobPlan {
            id,
            tasks: self.tasks,
            replication: self.replication,
            needs: kernel_bit(self.spec.kind()),
            max_batch_tasks: inputs.and_then(TaskInputs::batch_cap),
            locality,
            owner: self.owner,
            priority: self.priority,
        }
    }

    /// The longest output (its canonical bytes) one of the job's tasks can
    /// have, for a wasm job; None for built-in kernels, whose outputs
    /// always fit in a results frame.
    pub fn largest_output_bytes(&self) -> Option<u64> {
        match &self.spec {
            KernelSpec::Wasm(params) => Some(params.limits().max_outcome_bytes()),
            _ => None,
        }
    }

    /// Whether the job's batches carry a capability: its workers read some
    /// of [`Self::worker_blobs`], or may store outputs too large for a
    /// results frame.
    pub fn needs_capability(&self) -> bool {
        self.workers_read_blobs() || crate::grid::outputs_may_upload(self.largest_output_bytes())
    }

    /// Whether workers read some of [`Self::worker_blobs`] (its batches then
    /// carry a capability).
    pub fn workers_read_blobs(&self) -> bool {
        matches!(&self.spec, KernelSpec::Wasm(params) if !params.files.is_empty())
            || matches!(self.inputs, Some(WasmInputs::Files(_)))
    }

    /// The uploaded blobs a worker computing this job's tasks may read: its
    /// mounted files and the input files its tasks read (not the module as
    /// submitted, nor a lines input: those reach workers otherwise).
    pub fn worker_blobs(&self) -> Vec<ContentDigest> {
        let mut blobs: Vec<ContentDigest> = match &self.spec {
            KernelSpec::Wasm(params) => params.files.iter().map(|f| f.blob).collect(),
            _ => Vec::new(),
        };
        if let Some(WasmInputs::Files(files)) = &self.inputs {
            blobs.extend(files.iter().map(|f| f.blob));
        }
        blobs.sort_unstable_by_key(|d| d.0);
        blobs.dedup();
        blobs
    }

    /// Every uploaded blob the job uses: the module as submitted, its
    /// files and its inputs. None of them may go while the job exists.
    pub fn blobs(&self) -> Vec<ContentDigest> {
        let mut blobs = self.worker_blobs();
        if let KernelSpec::Wasm(params) = &self.spec {
            blobs.push(params.source);
        }
        if let Some(inputs) = &self.inputs {
            blobs.extend(inputs.blobs());
        }
        blobs.sort_unstable_by_key(|d| d.0);
        blobs.dedup();
        blobs
    }
}

/// Each kernel is one bit of the scheduler's capabilities.
fn kernel_bit(kind: KernelKind) -> Capabilities {
    let index = KernelKind::ALL
        .iter()
        .position(|k| *k == kind)
        .expect("ALL lists every kernel");
    Capabilities(1 << index)
}

/// What a worker offers: a bit for each kernel its hello says it runs.
pub fn offers(hello: &Hello) -> Capabilities {
    Capabilities(
        KernelKind::ALL
            .into_iter()
            .filter(|&kind| hello.runs(kind))
            .fold(0, |bits, kind| bits | kernel_bit(kind).0),
    )
}

/// The part of a job that changes, as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Lifecycle {
    pub state: JobState,
    /// A queued or running job whose tasks are held back.
    pub paused: bool,
    pub started_at: Option<u64>,
    pub finished_at: Option<u64>,
    /// Why a failed job failed.
    pub error: Option<String>,
    /// The result in brief, once done.
    pub result: Option<ResultSummary>,
    /// Bumped by every transition: the store writes a change only over an
    /// older one, so two transitions racing to the disk cannot leave the
    /// earlier one on it.
    pub version: u64,
    /// Answers a re-check replaced (decided on the word of a donor caught
    /// lying later).
    pub revised: u32,
}

/// A change asked of a job's lifecycle. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    Start {
        at: u64,
    },
    Pause,
    Resume,
    Finish {
        result: ResultSummary,
        at: u64,
    },
    Fail {
        reason: String,
        at: u64,
    },
    Cancel {
        at: u64,
    },
    /// A done job goes back to check answers of a donor caught lying.
    Recheck,
    /// A re-check replaced an answer.
    Revise,
}

/// A transition the job's state does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("job is already {0}")]
pub struct Refused(pub JobState);

impl Lifecycle {
    /// A job just submitted.
    pub fn queued() -> Lifecycle {
        Lifecycle {
            state: JobState::Queued,
            paused: false,
            started_at: None,
            finished_at: None,
            error: None,
            result: None,
            version: 0,
            revised: 0,
        }
    }

    /// Applies `transition` and names the event it is, or refuses it and
    /// changes nothing. `definition` supplies what a transition may need of
    /// the job itself (a job finished without ever starting in this run,
    /// restored complete after a restart, counts from its creation).
    pub fn apply(
        &mut self,
        transition: Transition,
        definition: &JobDefinition,
    ) -> Result<JobEvent, Refused> {
        let reopens = matches!(transition, Transition::Recheck) && self.state == JobState::Done;
        if self.state.is_finished() && !reopens {
            return Err(Refused(self.state));
        }
        let event = match transition {
            Transition::Recheck => {
                if !reopens {
                    return Err(Refused(self.state));
                }
                self.state = JobState::Rechecking;
                JobEvent::Rechecking
            }
            Transition::Revise => {
                self.revised += 1;
                JobEvent::Progress
            }
            Transition::Start { at } => {
                if self.state != JobState::Queued {
                    return Err(Refused(self.state));
                }
                self.state = JobState::Running;
                self.started_at = Some(at);
                JobEvent::Running
            }
            Transition::Pause => {
                self.paused = true;
                JobEvent::Paused
            }
            Transition::Resume => {
                self.paused = false;
                JobEvent::Resumed
            }
            Transition::Finish { result, at } => {
                self.state = JobState::Done;
                self.result = Some(result);
                self.finished_at = Some(at);
                self.started_at.get_or_insert(definition.created_at);
                JobEvent::Done
            }
            Transition::Fail { reason, at } => {
                self.state = JobState::Failed;
                self.error = Some(reason);
                self.finished_at = Some(at);
                JobEvent::Failed
            }
            // A job being rechecked was done: its answers are kept.
            Transition::Cancel { .. } if self.state == JobState::Rechecking => {
                return Err(Refused(self.state));
            }
            Transition::Cancel { at } => {
                self.state = JobState::Cancelled;
                self.finished_at = Some(at);
                JobEvent::Cancelled
            }
        };
        self.version += 1;
        Ok(event)
    }
}

/// A job in memory.
#[derive(Debug)]
pub struct Job {
    pub id: u64,
    pub definition: JobDefinition,
    /// A live wasm job's inputs, which its batches carry.
    pub inputs: Option<TaskInputs>,
    live: Mutex<JobLive>,
    /// Which replica sends each task in full (redundancy above 1).
    replicas: Mutex<crate::replicas::ReplicaOutputs>,
}

/// A job's changing part in memory: its lifecycle, and while it is live the
/// collator of its results.
#[derive(Debug)]
pub struct JobLive {
    pub lifecycle: Lifecycle,
    /// Tasks whose results are durable and collated.
    pub tasks_done: u32,
    /// Present while the job is live (not finished).
    pub collator: Option<Collator>,
}

impl Job {
    pub fn new(
        id: u64,
        definition: JobDefinition,
        inputs: Option<TaskInputs>,
        live: JobLive,
    ) -> Job {
        Job {
            id,
            definition,
            inputs,
            live: Mutex::new(live),
            replicas: Mutex::default(),
        }
    }

    /// The job's replica bookkeeping, locked (after the scheduler's lock,
    /// never before it).
    pub fn replicas(&self) -> MutexGuard<'_, crate::replicas::ReplicaOutputs> {
        crate::sync::lock(&self.replicas, "replicas")
    }

    /// Whether its replicas send digests (it runs at redundancy above 1).
    pub fn replicated(&self) -> bool {
        self.definition.replication.redundancy > 1
    }

    /// What the scheduler needs of the job.
    pub fn plan(&self) -> JobPlan {
        self.definition.plan(self.id, self.inputs.as_ref())
    }

    /// The inputs of `tasks`, as a batch carries them (none for a job whose
    /// tasks read nothing).
    pub fn batch_inputs(&self, tasks: &grid_protocol::TaskRanges) -> Vec<TaskInput> {
        match &self.inputs {
            Some(inputs) => tasks.iter().map(|t| inputs.input(t)).collect(),
            None => Vec::new(),
        }
    }

    /// The job's changing part, locked.
    pub fn live(&self) -> MutexGuard<'_, JobLive> {
        crate::sync::lock(&self.live, "job")
    }

    pub fn spec(&self) -> &KernelSpec {
        &self.definition.spec
    }

    pub fn tasks(&self) -> u32 {
        self.definition.tasks
    }

    pub fn state(&self) -> JobState {
        self.live().lifecycle.state
    }

    /// The job as its routes show it; `owner` is its owner's name.
    pub fn status(&self, now_unix_ms: u64, owner: String) -> JobStatus {
        let live = self.live();
        let lifecycle = &live.lifecycle;
        let elapsed_ms = lifecycle.started_at.map(|start| {
            lifecycle
                .finished_at
                .unwrap_or(now_unix_ms)
                .saturating_sub(start)
        });
        JobStatus {
            owner,
            priority: self.definition.priority,
            revised: lifecycle.revised,
            id: self.id,
            spec: self.definition.spec.clone(),
            state: lifecycle.state,
            paused: lifecycle.paused,
            tasks: TaskCounts {
                total: self.definition.tasks,
                done: live.tasks_done,
            },
            redundancy: self.definition.replication.redundancy,
            quorum: self.definition.replication.quorum,
            created_at: self.definition.created_at,
            started_at: lifecycle.started_at,
            finished_at: lifecycle.finished_at,
            elapsed_ms,
            result: lifecycle.result.clone(),
            partial: live
                .collator
                .as_ref()
                .filter(|c| c.collated() > 0)
                .map(|c| c.summary()),
            error: lifecycle.error.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use grid_kernels::spec::PrimesParams;

    fn definition() -> JobDefinition {
        JobDefinition {
            priority: 0,
            owner: crate::users::FIRST_ADMIN,
            spec: KernelSpec::Primes(PrimesParams { start: 0, end: 100 }),
            tasks: 4,
            replication: Replication::SINGLE,
            created_at: 10,
            inputs: None,
        }
    }

    #[test]
    fn a_worker_is_offered_the_kernels_its_hello_names() {
        let mut hello = crate::grid::testing::native_hello(1, None);
        let primes = definition().plan(1, None).needs;
        let wasm = kernel_bit(KernelKind::Wasm);
        assert!(offers(&hello).covers(primes));
        assert!(
            !offers(&hello).covers(wasm),
            "no kernels named: built-in only"
        );
        hello.kernels = Some(vec![KernelKind::Wasm, KernelKind::Primes]);
        assert!(offers(&hello).covers(wasm) && offers(&hello).covers(primes));
        assert!(!offers(&hello).covers(kernel_bit(KernelKind::Mandelbrot)));
    }

    #[test]
    fn a_job_runs_and_finishes_and_then_nothing_moves_it() {
        let def = definition();
        let mut life = Lifecycle::queued();
        assert_eq!(
            life.apply(Transition::Start { at: 20 }, &def),
            Ok(JobEvent::Running)
        );
        assert_eq!(
            life.apply(Transition::Start { at: 21 }, &def),
            Err(Refused(JobState::Running)),
            "a running job does not start again"
        );
        assert_eq!(life.apply(Transition::Pause, &def), Ok(JobEvent::Paused));
        assert!(life.paused);
        let result = ResultSummary::Primes { count: 25 };
        assert_eq!(
            life.apply(
                Transition::Finish {
                    result: result.clone(),
                    at: 30
                },
                &def
            ),
            Ok(JobEvent::Done)
        );
        assert_eq!(
            (life.state, life.started_at, life.finished_at),
            (JobState::Done, Some(20), Some(30))
        );
        assert_eq!(life.result, Some(result));
        let done = life.clone();
        for late in [
            Transition::Cancel { at: 40 },
            Transition::Fail {
                reason: "late".into(),
                at: 40,
            },
            Transition::Resume,
            Transition::Start { at: 40 },
        ] {
            assert_eq!(life.apply(late, &def), Err(Refused(JobState::Done)));
        }
        assert_eq!(life, done, "a refused transition changes nothing");
    }

    #[test]
    fn every_transition_bumps_the_version_and_unstarted_jobs_finish_from_creation() {
        let def = definition();
        let mut life = Lifecycle::queued();
        life.apply(Transition::Pause, &def).unwrap();
        life.apply(Transition::Resume, &def).unwrap();
        assert_eq!(life.version, 2);
        life.apply(
            Transition::Finish {
                result: ResultSummary::Primes { count: 1 },
                at: 50,
            },
            &def,
        )
        .unwrap();
        assert_eq!(
            life.started_at,
            Some(10),
            "restored complete: from creation"
        );
        let mut cancelled = Lifecycle::queued();
        cancelled.apply(Transition::Cancel { at: 5 }, &def).unwrap();
        assert_eq!(
            cancelled.apply(
                Transition::Finish {
                    result: ResultSummary::Primes { count: 1 },
                    at: 6
                },
                &def
            ),
            Err(Refused(JobState::Cancelled))
        );
    }
}
