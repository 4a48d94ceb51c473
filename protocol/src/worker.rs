//! The batches one worker connection holds, without I/O: which task to
//! compute next, and the results frames waiting to go out. The session
//! ([`crate::session::WorkerSession`]) makes one per connection; both workers,
//! native and WebAssembly, drive it through the session.
//!
//! A task computed under an earlier connection is never recorded into a later
//! one: each core has the generation of its connection, every [`TaskRef`]
//! carries the generation it came from, and [`WorkerCore::complete`] and
//! [`WorkerCore::fail`] drop a task of another generation.

use std::collections::VecDeque;
use std::sync::Arc;

use grid_kernels::{ContentDigest, KernelSpec, TaskOutput};

use crate::frame::{DIGEST_ONLY_MIN_BYTES, DigestOnly, ResultsFrameBuilder};
use crate::messages::{Batch, TaskInput, WorkerMessage};
use crate::tasks::TaskRanges;

/// A results frame is sent once it holds this many bytes, even if its batch is
/// not finished, so that big outputs stream rather than pile up.
pub const FLUSH_BYTES: usize = 1024 * 1024;
/// An output longer than this (its canonical encoding) does not travel in
/// a results frame when its batch has a capability: the worker stores it
/// as a blob first (`PUT /api/blobs/...` with `Grid-Capability`) and the
/// frame names it ([`TaskRef::uploads`], [`WorkerCore::complete_uploaded`]).
pub const OUTPUT_BLOB_BYTES: usize = FLUSH_BYTES;

/// One task to compute, with what computing it needs.
#[derive(Debug, Clone)]
pub struct TaskRef {
    pub batch: u64,
    pub job: u64,
    pub spec: Arc<KernelSpec>,
    pub job_tasks: u32,
    pub index: u32,
    /// The task's input (a wasm task's stdin); empty if the batch has none.
    pub input: TaskInput,
    /// The batch's capability for reading its job's blobs (and storing
    /// large outputs), if it has one.
    pub capability: Option<Arc<str>>,
    /// Whether its output goes as a digest (another replica sends it).
    pub digest_only: bool,
    /// The connection generation of the core that handed it out.
    pub generation: u64,
}

impl TaskRef {
    /// Whether an output of `len` bytes (its canonical encoding) must be
    /// stored as a blob before the task completes: it is over
    /// [`OUTPUT_BLOB_BYTES`], the batch has a capability to store it
    /// under, and it is not going as a digest anyway. The driver uploads
    /// it and calls [`WorkerCore::complete_uploaded`].
    pub fn uploads(&self, len: usize) -> bool {
        len > OUTPUT_BLOB_BYTES && self.capability.is_some() && !self.digest_only
    }
}

impl DigestOnly {
    /// What a digest entry says of `output`, whose encoding is `bytes`.
    pub fn of(output: &TaskOutput, bytes: &[u8]) -> DigestOnly {
        DigestOnly {
            digest: ContentDigest::of(bytes).0,
            len: bytes.len() as u32,
            fuel: match output {
                TaskOutput::Wasm(outcome) => outcome.fuel_used,
                _ => 0,
            },
        }
    }
}

/// How a completed task's output goes into its results frame.
enum Entry<'a> {
    Output(&'a TaskOutput),
    Uploaded(DigestOnly),
}

#[derive(Debug)]
struct HeldBatch {
    id: u64,
    job: u64,
    spec: Arc<KernelSpec>,
    job_tasks: u32,
    /// Tasks not started yet, as ranges, front first.
    todo: VecDeque<(u32, u32)>,
    /// Their inputs, in the same order (empty if the batch has none).
    inputs: VecDeque<TaskInput>,
    capability: Option<Arc<str>>,
    /// Whose job it is (a user's name), for display.
    owner: Option<Arc<str>>,
    /// Tasks whose outputs go as digests (another replica sends them).
    digest_only: TaskRanges,
    /// Tasks handed to a thread and not yet completed.
    running: u32,
    /// Finished outputs not yet sent.
    pending: Option<ResultsFrameBuilder>,
}

impl HeldBatch {
    fn is_finished(&self) -> bool {
        self.todo.is_empty() && self.running == 0
    }
}

/// The batches a worker connection holds. Create one per connection: nothing
/// survives a reconnect, because the coordinator re-issues a dropped
/// connection's tasks anyway.
#[derive(Debug, Default)]
pub struct WorkerCore {
    generation: u64,
    batches: VecDeque<HeldBatch>,
    ready: VecDeque<Vec<u8>>,
    tasks_done: u64,
    /// Tasks handed out so far, and when (by that count) a task of each
    /// job held last went to a thread: which job's turn it is. Jobs no
    /// longer held are forgotten as tasks are handed out.
    handed_out: u64,
    last_started: Vec<(u64, u64)>,
}

impl WorkerCore {
    /// The core of connection number `generation` (any number that differs
    /// from the previous connection's).
    pub fn new(generation: u64) -> WorkerCore {
        WorkerCore {
            generation,
            ..WorkerCore::default()
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether `task` was handed out by a core of the same connection.
    fn owns(&self, task: &TaskRef) -> bool {
        task.generation == self.generation
    }

    pub fn on_batch(&mut self, batch: Batch) {
        let todo: VecDeque<(u32, u32)> = batch.tasks.ranges().iter().copied().collect();
        self.batches.push_back(HeldBatch {
            id: batch.batch,
            job: batch.job,
            spec: Arc::new(batch.spec),
            job_tasks: batch.job_tasks,
            todo,
            inputs: batch.inputs.into_iter().collect(),
            capability: batch.capability.map(Arc::from),
            owner: batch.owner.map(Arc::from),
            digest_only: batch.digest_only.unwrap_or_default(),
            running: 0,
            pending: None,
        });
    }

    /// Drops a batch: its unstarted tasks are forgotten, and results of its
    /// running tasks will be discarded when they complete.
    pub fn on_revoke(&mut self, batch: u64) {
        self.batches.retain(|b| b.id != batch);
    }

    /// The kernel of the task [`Self::next_task`] would hand out, without
    /// taking it: a driver that must prepare something first (a user's
    /// module to fetch and compile) looks before it takes.
    pub fn next_spec(&self) -> Option<&KernelSpec> {
        self.next_batch().map(|i| self.batches[i].spec.as_ref())
    }

    /// Where the next task comes from: the jobs of the batches held take
    /// turns, the one with the fewest tasks running first, then the one
    /// served least recently; within a job, its oldest batch first. So a
    /// batch of a job that arrives while others are running gets the next
    /// free thread (the coordinator grants a newcomer's first batch beyond
    /// the pipeline for that), and jobs sharing the worker share its
    /// threads evenly; a core holding one job's batches goes oldest first.
    fn next_batch(&self) -> Option<usize> {
        let mut best: Option<((u32, u64), usize)> = None;
        for (i, held) in self.batches.iter().enumerate() {
            if held.todo.is_empty() {
                continue;
            }
            // Strictly less: a job's later batches never beat its first.
            let running = self
                .batches
                .iter()
                .filter(|b| b.job == held.job)
                .map(|b| b.running)
                .sum();
            let key = (running, self.last_started(held.job));
            if best.is_none_or(|(least, _)| key < least) {
                best = Some((key, i));
            }
        }
        best.map(|(_, i)| i)
    }

    /// When a task of `job` last went to a thread (0: never).
    fn last_started(&self, job: u64) -> u64 {
        self.last_started
            .iter()
            .find(|&&(j, _)| j == job)
            .map_or(0, |&(_, at)| at)
    }

    /// The next task to compute: the jobs held take turns (see
    /// `next_batch`), each job's oldest batch first.
    pub fn next_task(&mut self) -> Option<TaskRef> {
        let position = self.next_batch()?;
        self.handed_out += 1;
        let (job, now) = (self.batches[position].job, self.handed_out);
        let batches = &self.batches;
        self.last_started
            .retain(|&(j, _)| j != job && batches.iter().any(|b| b.job == j));
        self.last_started.push((job, now));
        let held = &mut self.batches[position];
        let range = held.todo.front_mut().expect("checked non-empty");
        let index = range.0;
        range.0 += 1;
        if range.0 == range.1 {
            held.todo.pop_front();
        }
        held.running += 1;
        Some(TaskRef {
            batch: held.id,
            job: held.job,
            spec: held.spec.clone(),
            job_tasks: held.job_tasks,
            index,
            input: held.inputs.pop_front().unwrap_or_default(),
            capability: held.capability.clone(),
            digest_only: held.digest_only.contains(index),
            generation: self.generation,
        })
    }

    /// Records a computed output. Returns false if the batch was revoked in
    /// the meantime or the task belongs to another connection (the output is
    /// dropped).
    pub fn complete(&mut self, task: &TaskRef, output: &TaskOutput) -> bool {
        self.record(task, Entry::Output(output))
    }

    /// Records an output the driver stored as a blob (see
    /// [`TaskRef::uploads`]); `sent` names it. False as for
    /// [`Self::complete`].
    pub fn complete_uploaded(&mut self, task: &TaskRef, sent: DigestOnly) -> bool {
        self.record(task, Entry::Uploaded(sent))
    }

    fn record(&mut self, task: &TaskRef, entry: Entry<'_>) -> bool {
        if !self.owns(task) {
            return false;
        }
        let Some(position) = self.batches.iter().position(|b| b.id == task.batch) else {
            return false;
        };
        let held = &mut self.batches[position];
        held.running -= 1;
        let entry_bytes = match entry {
            Entry::Output(output) => ResultsFrameBuilder::entry_bytes(output),
            Entry::Uploaded(_) => ResultsFrameBuilder::DIGEST_ENTRY_BYTES,
        };
        let builder = held
            .pending
            .get_or_insert_with(|| ResultsFrameBuilder::new(task.batch));
        if !builder.is_empty() && builder.len_bytes() + entry_bytes > FLUSH_BYTES {
            let full = held
                .pending
                .replace(ResultsFrameBuilder::new(task.batch))
                .expect("present");
            self.ready.push_back(full.finish());
        }
        let held = &mut self.batches[position];
        let builder = held.pending.as_mut().expect("present");
        match entry {
            Entry::Uploaded(sent) => builder.push_uploaded(task.index, sent),
            Entry::Output(output)
                if held.digest_only.contains(task.index)
                    && output.encoded_len() > DIGEST_ONLY_MIN_BYTES =>
            {
                builder.push_digest(task.index, DigestOnly::of(output, &output.to_bytes()));
            }
            Entry::Output(output) => builder.push(task.index, output),
        }
        self.tasks_done += 1;
        if held.is_finished() {
            let held = self.batches.remove(position).expect("present");
            if let Some(builder) = held.pending {
                self.ready.push_back(builder.finish());
            }
        }
        true
    }

    /// Gives a task back without a result (its computation failed) and
    /// returns the message that tells the coordinator so; `None` for a task
    /// of another connection, which this one's coordinator never gave out.
    pub fn fail(&mut self, task: &TaskRef, error: String) -> Option<WorkerMessage> {
        if !self.owns(task) {
            return None;
        }
        self.release(task);
        Some(WorkerMessage::Failed {
            batch: task.batch,
            task: task.index,
            error,
        })
    }

    /// Hands a started task back without a result (the donor paused while it
    /// ran, and its computation was abandoned) and returns the `return`
    /// message for it: unlike [`Self::fail`], the coordinator counts nothing
    /// against the task. `None` for a task of another connection, or of a
    /// batch revoked meanwhile (the coordinator no longer waits for it).
    pub fn give_back(&mut self, task: &TaskRef) -> Option<WorkerMessage> {
        if !self.owns(task) || !self.release(task) {
            return None;
        }
        let tasks = TaskRanges::from_ranges(vec![(task.index, task.index + 1)])
            .expect("one task is an ordered range");
        Some(WorkerMessage::Return {
            batch: task.batch,
            tasks,
        })
    }

    /// A started task of this connection ends without an output: its batch
    /// runs one task fewer, and a batch that is now finished goes out.
    /// False if the batch is gone (revoked).
    fn release(&mut self, task: &TaskRef) -> bool {
        let Some(position) = self.batches.iter().position(|b| b.id == task.batch) else {
            return false;
        };
        let held = &mut self.batches[position];
        held.running -= 1;
        if held.is_finished() {
            let held = self.batches.remove(position).expect("present");
            if let Some(builder) = held.pending {
                self.ready.push_back(builder.finish());
            }
        }
        true
    }

    /// Results frames ready to send. With `flush` true, outputs of unfinished
    /// batches are sent too (call it every few hundred milliseconds so leases
    /// see progress and results are not held back).
    pub fn take_frames(&mut self, flush: bool) -> Vec<Vec<u8>> {
        if flush {
            for held in &mut self.batches {
                if let Some(builder) = held.pending.take()
                    && !builder.is_empty()
                {
                    self.ready.push_back(builder.finish());
                }
            }
        }
        self.ready.drain(..).collect()
    }

    /// Takes every unstarted task out of every batch and returns the messages
    /// that hand them back. Running tasks stay; their results still go out.
    pub fn hand_back_unstarted(&mut self) -> Vec<WorkerMessage> {
        let mut messages = Vec::new();
        for held in &mut self.batches {
            if held.todo.is_empty() {
                continue;
            }
            let ranges: Vec<(u32, u32)> = held.todo.drain(..).collect();
            let tasks = TaskRanges::from_ranges(ranges)
                .expect("a batch's ranges stay ordered and disjoint");
            messages.push(WorkerMessage::Return {
                batch: held.id,
                tasks,
            });
        }
        let mut finished = Vec::new();
        self.batches.retain_mut(|held| {
            if held.is_finished() {
                finished.extend(held.pending.take());
                false
            } else {
                true
            }
        });
        self.ready.extend(
            finished
                .into_iter()
                .filter(|b| !b.is_empty())
                .map(ResultsFrameBuilder::finish),
        );
        messages
    }

    /// Whether finished frames wait to be taken (a batch finished, or a frame
    /// filled up), without flushing partial ones.
    pub fn has_ready_frames(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Tasks received and not started.
    pub fn queued_tasks(&self) -> u64 {
        self.batches
            .iter()
            .flat_map(|b| b.todo.iter())
            .map(|&(s, e)| u64::from(e - s))
            .sum()
    }

    /// Batches held (received and not finished).
    pub fn held_batches(&self) -> usize {
        self.batches.len()
    }

    /// The job of the oldest batch with work left, for display.
    pub fn current_job(&self) -> Option<(u64, &KernelSpec)> {
        self.batches.front().map(|b| (b.job, b.spec.as_ref()))
    }

    /// The name of the user whose job [`WorkerCore::current_job`] is, when
    /// the coordinator said.
    pub fn current_owner(&self) -> Option<&str> {
        self.batches.front().and_then(|b| b.owner.as_deref())
    }

    pub fn tasks_done(&self) -> u64 {
        self.tasks_done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::ResultsFrame;
    use bytes::Bytes;
    use grid_kernels::TaskRunner;
    use grid_kernels::spec::PrimesParams;

    fn batch(id: u64, indices: &[u32]) -> Batch {
        Batch {
            owner: None,
            digest_only: None,
            capability: None,
            batch: id,
            job: 1,
            spec: KernelSpec::Primes(PrimesParams {
                start: 0,
                end: 1000,
            }),
            job_tasks: 10,
            tasks: TaskRanges::from_indices(indices.iter().copied()),
            lease_ms: 1000,
            inputs: Vec::new(),
        }
    }

    fn run_all(core: &mut WorkerCore) -> Vec<u32> {
        let mut runner = TaskRunner::new();
        let mut done = Vec::new();
        while let Some(task) = core.next_task() {
            let output = runner.run(&task.spec, task.job_tasks, task.index).unwrap();
            assert!(core.complete(&task, &output));
            done.push(task.index);
        }
        done
    }

    #[test]
    fn the_current_owner_is_that_of_the_oldest_batch_held() {
        let mut core = WorkerCore::new(1);
        assert_eq!(core.current_owner(), None);
        core.on_batch(Batch {
            owner: Some("alice".into()),
            ..batch(1, &[0])
        });
        core.on_batch(Batch {
            owner: Some("bob".into()),
            ..batch(2, &[1])
        });
        assert_eq!(core.current_owner(), Some("alice"));
        core.on_revoke(1);
        assert_eq!(core.current_owner(), Some("bob"));
        core.on_revoke(2);
        assert_eq!(core.current_owner(), None);
    }

    #[test]
    fn the_next_spec_is_the_next_tasks_and_looking_takes_nothing() {
        let mut core = WorkerCore::new(1);
        assert!(core.next_spec().is_none());
        core.on_batch(batch(1, &[0]));
        core.on_batch(Batch {
            spec: KernelSpec::Primes(PrimesParams { start: 0, end: 10 }),
            ..batch(2, &[3])
        });
        let first = core.next_spec().cloned();
        assert_eq!(first, core.next_spec().cloned());
        assert_eq!(core.queued_tasks(), 2);
        let task = core.next_task().unwrap();
        assert_eq!(Some(task.spec.as_ref()), first.as_ref());
        // Batch 1 is running but has nothing left to start: batch 2 is next.
        assert_eq!(
            core.next_spec(),
            Some(&KernelSpec::Primes(PrimesParams { start: 0, end: 10 }))
        );
        assert_eq!(core.next_task().unwrap().batch, 2);
        assert!(core.next_spec().is_none());
    }

    #[test]
    fn a_newcomers_batch_gets_the_next_free_thread_and_jobs_take_turns() {
        let mut core = WorkerCore::new(1);
        // Two batches of job 1 fill the pipeline; two threads run its tasks.
        core.on_batch(batch(1, &[0, 1, 2]));
        core.on_batch(batch(2, &[3, 4, 5]));
        let a = core.next_task().unwrap();
        let b = core.next_task().unwrap();
        assert_eq!((a.batch, a.index, b.batch, b.index), (1, 0, 1, 1));
        // Job 2's batch arrives behind them; the next free thread takes it,
        // not job 1's remaining four tasks.
        core.on_batch(Batch {
            job: 2,
            ..batch(3, &[7, 8])
        });
        assert!(core.complete(&a, &TaskOutput::Count(25)));
        assert_eq!(core.next_spec(), Some(&*a.spec));
        let c = core.next_task().unwrap();
        assert_eq!((c.job, c.batch, c.index), (2, 3, 7));
        // Then job 1 (nothing of it running beside job 2's task), its
        // oldest batch first; then job 2 again, served less recently.
        assert!(core.complete(&b, &TaskOutput::Count(21)));
        let d = core.next_task().unwrap();
        assert_eq!((d.job, d.batch, d.index), (1, 1, 2));
        assert!(core.complete(&c, &TaskOutput::Count(1)));
        assert!(core.complete(&d, &TaskOutput::Count(1)));
        let order: Vec<(u64, u32)> = std::iter::from_fn(|| {
            let task = core.next_task()?;
            assert!(core.complete(&task, &TaskOutput::Count(1)));
            Some((task.job, task.index))
        })
        .collect();
        // One thread at a time now: the jobs alternate while both have work.
        assert_eq!(order, [(2, 8), (1, 3), (1, 4), (1, 5)]);
        assert_eq!(core.held_batches(), 0);
    }

    #[test]
    fn replicas_told_so_send_digests_of_long_outputs() {
        let mut core = WorkerCore::new(1);
        core.on_batch(Batch {
            digest_only: Some(TaskRanges::from_indices([1, 2])),
            ..batch(1, &[0, 1, 2])
        });
        let outcome = |stdout: Vec<u8>| {
            TaskOutput::Wasm(grid_kernels::wasm::WasmOutcome {
                trap: None,
                exit_code: 0,
                fuel_used: 77,
                stdout,
                stderr: Vec::new(),
            })
        };
        let outputs = [
            outcome(vec![1; 200]),
            outcome(vec![2; 200]),
            outcome(vec![3; 8]),
        ];
        while let Some(task) = core.next_task() {
            assert!(core.complete(&task, &outputs[task.index as usize]));
        }
        let frames = core.take_frames(false);
        let frame = crate::frame::ResultsFrame::decode(&frames[0]).unwrap();
        let long = outputs[1].to_bytes();
        assert_eq!(
            frame.results[0].output,
            outputs[0].to_bytes(),
            "not listed: in full"
        );
        assert_eq!(
            frame.results[1].digest_only,
            Some(DigestOnly {
                digest: ContentDigest::of(&long).0,
                len: long.len() as u32,
                fuel: 77
            })
        );
        assert_eq!(
            frame.results[2].output,
            outputs[2].to_bytes(),
            "a short output goes in full: a digest would be no smaller"
        );
        assert_eq!(frame.results[2].digest_only, None);
    }

    #[test]
    fn large_outputs_of_batches_with_a_capability_go_as_uploads() {
        let mut core = WorkerCore::new(1);
        core.on_batch(Batch {
            capability: Some("1.abc".into()),
            digest_only: Some(TaskRanges::from_indices([2])),
            ..batch(1, &[0, 1, 2])
        });
        core.on_batch(batch(2, &[3]));
        let tasks: Vec<TaskRef> = std::iter::from_fn(|| core.next_task()).collect();
        let big = OUTPUT_BLOB_BYTES + 1;
        assert!(
            !tasks[0].uploads(OUTPUT_BLOB_BYTES),
            "at the threshold: inline"
        );
        assert!(tasks[0].uploads(big));
        assert!(tasks[1].uploads(big));
        assert!(
            !tasks[2].uploads(big),
            "a digest-only replica sends a digest"
        );
        assert!(!tasks[3].uploads(big), "no capability, nowhere to store it");
        let sent = DigestOnly {
            digest: [7; 32],
            len: big as u32,
            fuel: 5,
        };
        assert!(core.complete_uploaded(&tasks[0], sent));
        assert!(core.complete(&tasks[1], &TaskOutput::Count(1)));
        assert!(core.complete(&tasks[2], &TaskOutput::Count(2)));
        let frames = core.take_frames(false);
        let frame = ResultsFrame::decode(&frames[0]).unwrap();
        assert_eq!(frame.results[0].uploaded, Some(sent));
        assert_eq!(frame.results[1].uploaded, None);
        assert_eq!(frame.results[1].output[..], 1u64.to_le_bytes());
        // A stale task is dropped, uploaded or not.
        let mut later = WorkerCore::new(2);
        later.on_batch(batch(1, &[0]));
        assert!(!later.complete_uploaded(&tasks[0], sent));
    }

    #[test]
    fn each_task_gets_its_own_input_across_ranges() {
        let mut core = WorkerCore::new(1);
        core.on_batch(Batch {
            inputs: [&b"zero"[..], b"one", b"five"]
                .map(|b| crate::TaskInput::Inline(Bytes::from_static(b)))
                .to_vec(),
            ..batch(1, &[0, 1, 5])
        });
        core.on_batch(batch(2, &[7]));
        let tasks: Vec<(u32, TaskInput)> = std::iter::from_fn(|| core.next_task())
            .map(|t| (t.index, t.input))
            .collect();
        let inline = |b: &'static [u8]| TaskInput::Inline(Bytes::from_static(b));
        assert_eq!(
            tasks,
            [
                (0, inline(b"zero")),
                (1, inline(b"one")),
                (5, inline(b"five")),
                (7, inline(b""))
            ]
        );
    }

    #[test]
    fn tasks_come_out_in_order_and_a_finished_batch_yields_one_frame() {
        let mut core = WorkerCore::new(1);
        core.on_batch(batch(1, &[0, 1, 5]));
        core.on_batch(batch(2, &[7]));
        assert_eq!(core.queued_tasks(), 4);
        assert_eq!(run_all(&mut core), vec![0, 1, 5, 7]);
        let frames: Vec<ResultsFrame> = core
            .take_frames(false)
            .iter()
            .map(|f| ResultsFrame::decode(f).unwrap())
            .collect();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].batch, 1);
        assert_eq!(
            frames[0].results.iter().map(|r| r.task).collect::<Vec<_>>(),
            vec![0, 1, 5]
        );
        // Task 0 covers [0, 100): 25 primes.
        assert_eq!(frames[0].results[0].output[..], 25u64.to_le_bytes());
        assert_eq!(core.held_batches(), 0);
        assert!(core.take_frames(true).is_empty());
    }

    #[test]
    fn revoked_batches_drop_their_work_and_late_outputs() {
        let mut core = WorkerCore::new(1);
        core.on_batch(batch(1, &[0, 1, 2]));
        let running = core.next_task().unwrap();
        core.on_revoke(1);
        assert!(core.next_task().is_none());
        assert!(!core.complete(&running, &TaskOutput::Count(25)));
        assert!(core.take_frames(true).is_empty());
    }

    #[test]
    fn handing_back_returns_unstarted_tasks_and_keeps_finished_results() {
        let mut core = WorkerCore::new(1);
        core.on_batch(batch(1, &[0, 1, 2, 3]));
        let first = core.next_task().unwrap();
        let second = core.next_task().unwrap();
        core.complete(&first, &TaskOutput::Count(25));
        let messages = core.hand_back_unstarted();
        assert_eq!(
            messages,
            vec![WorkerMessage::Return {
                batch: 1,
                tasks: TaskRanges::from_indices([2, 3])
            }]
        );
        assert!(core.next_task().is_none());
        // The running task still reports, and then the batch is finished.
        core.complete(&second, &TaskOutput::Count(21));
        let frames = core.take_frames(false);
        assert_eq!(frames.len(), 1);
        assert_eq!(ResultsFrame::decode(&frames[0]).unwrap().results.len(), 2);
    }

    #[test]
    fn partial_results_flush_on_request() {
        let mut core = WorkerCore::new(1);
        core.on_batch(batch(1, &[0, 1]));
        let first = core.next_task().unwrap();
        core.complete(&first, &TaskOutput::Count(25));
        assert!(core.take_frames(false).is_empty());
        let frames = core.take_frames(true);
        assert_eq!(frames.len(), 1);
        let _second = core.next_task().unwrap();
        assert_eq!(core.held_batches(), 1);
    }

    #[test]
    fn failures_release_the_task_and_say_so() {
        let mut core = WorkerCore::new(1);
        core.on_batch(batch(3, &[4]));
        let task = core.next_task().unwrap();
        let message = core.fail(&task, "panicked".into());
        assert_eq!(
            message,
            Some(WorkerMessage::Failed {
                batch: 3,
                task: 4,
                error: "panicked".into()
            })
        );
        assert_eq!(core.held_batches(), 0);
    }

    #[test]
    fn a_task_of_an_earlier_connection_is_dropped() {
        let mut old = WorkerCore::new(1);
        old.on_batch(batch(1, &[0, 1]));
        let stale = old.next_task().unwrap();
        let failing = old.next_task().unwrap();
        // The connection dropped; the coordinator happens to re-issue the
        // same batch id to the next one.
        let mut core = WorkerCore::new(2);
        core.on_batch(batch(1, &[0, 1]));
        let fresh = core.next_task().unwrap();
        assert_eq!((stale.batch, stale.index), (fresh.batch, fresh.index));
        assert!(!core.complete(&stale, &TaskOutput::Count(25)));
        assert_eq!(core.fail(&failing, "panicked".into()), None);
        assert!(core.take_frames(true).is_empty());
        // The batch still waits for its own two tasks.
        assert!(core.complete(&fresh, &TaskOutput::Count(25)));
        assert_eq!(core.held_batches(), 1);
        assert_eq!(core.queued_tasks(), 1);
    }
}
