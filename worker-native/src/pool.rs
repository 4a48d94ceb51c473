//! The session under one lock, shared by the connection and the compute
//! threads.
//!
//! No lock is held across an await: the connection takes what is queued,
//! lets go, then sends. A compute thread takes a task from the session,
//! computes it unlocked, and records the output (or the panic) under the
//! lock. It rings [`Pool::ready`] only when something waits to be sent at
//! once (a finished batch, a full frame, a failure); the connection's tick
//! flushes the rest. A task computed under an earlier connection is dropped
//! by the session, so a reconnect needs nothing from the threads. The lock
//! cannot be poisoned (parking_lot): a kernel's panic is caught and reported
//! as the task's failure, and nothing else runs under it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use grid_kernels::{ContentDigest, KernelSpec, TaskOutput, TaskRunner};
use grid_protocol::frame::DigestOnly;
use grid_protocol::session::WorkerSession;
use grid_protocol::worker::TaskRef;
use parking_lot::{Condvar, Mutex, MutexGuard};
use tokio::sync::Notify;

use crate::wasm::WasmKernels;

/// The session, shared by the connection and the compute threads.
pub(crate) struct Pool {
    session: Mutex<WorkerSession>,
    /// Rung when the session may have a task for an idle thread.
    pub(crate) work: Condvar,
    /// Rung by compute threads when something waits to be sent at once.
    pub(crate) ready: Notify,
    stop: AtomicBool,
}

impl Pool {
    pub(crate) fn new(session: WorkerSession) -> Pool {
        Pool {
            session: Mutex::new(session),
            work: Condvar::new(),
            ready: Notify::new(),
            stop: AtomicBool::new(false),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, WorkerSession> {
        self.session.lock()
    }

    /// Tells the threads to exit after their current task.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.work.notify_all();
    }
}

/// Starts `threads` compute threads on `pool`, with the stack wasmtime
/// needs to run users' kernels.
pub(crate) fn start_threads(
    pool: &Arc<Pool>,
    wasm: &Arc<WasmKernels>,
    threads: usize,
) -> anyhow::Result<Vec<std::thread::JoinHandle<()>>> {
    (0..threads)
        .map(|i| {
            let (pool, wasm) = (pool.clone(), wasm.clone());
            std::thread::Builder::new()
                .name(format!("grid-compute-{i}"))
                .stack_size(grid_wasm_runtime::THREAD_STACK)
                .spawn(move || compute_thread(pool, wasm))
                .context("cannot start a compute thread")
        })
        .collect()
}

fn compute_thread(pool: Arc<Pool>, wasm: Arc<WasmKernels>) {
    let mut runner = TaskRunner::new();
    let mut cache_version = wasm.blobs.version();
    loop {
        let task = {
            let mut session = pool.lock();
            loop {
                if pool.stop.load(Ordering::Relaxed) {
                    return;
                }
                if let Some(task) = session.start_task() {
                    break task;
                }
                pool.work.wait(&mut session);
            }
        };
        let output = catch_unwind(AssertUnwindSafe(|| match &*task.spec {
            KernelSpec::Wasm(params) => wasm.run(params, &task),
            spec => runner
                .run(spec, task.job_tasks, task.index)
                .map_err(|e| e.to_string()),
        }));
        // An output too large for a results frame is stored first, unlocked.
        let output = output.map(|run| run.and_then(|output| upload_if_large(&wasm, &task, output)));
        let mut session = pool.lock();
        let version = wasm.blobs.version();
        if version != cache_version {
            cache_version = version;
            session.set_holdings(wasm.blobs.holdings());
        }
        match output {
            Ok(Ok(Done::Output(output))) => {
                session.finish_task(&task, &output);
            }
            Ok(Ok(Done::Uploaded(sent))) => {
                session.finish_uploaded(&task, sent);
            }
            Ok(Err(error)) => session.fail_task(&task, &error),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "the kernel panicked".into());
                runner = TaskRunner::new();
                session.fail_task(&task, &format!("panic: {message}"));
            }
        }
        // Wake the connection only when there is something to send: a
        // finished batch, a full frame or a failure. The tick flushes partial
        // frames; waking per task would cost more than tiny tasks.
        let wake = session.has_ready_frames();
        drop(session);
        if wake {
            pool.ready.notify_one();
        }
    }
}

/// A computed task, as it goes into the session.
enum Done {
    Output(TaskOutput),
    /// Stored as a blob, which the results frame names.
    Uploaded(DigestOnly),
}

/// Stores `output` as a blob if the session would not send it in a results
/// frame ([`TaskRef::uploads`]); a failed upload fails the task.
fn upload_if_large(wasm: &WasmKernels, task: &TaskRef, output: TaskOutput) -> Result<Done, String> {
    if !task.uploads(output.encoded_len()) {
        return Ok(Done::Output(output));
    }
    let capability = task.capability.as_deref().expect("uploads() checked it");
    let bytes = output.to_bytes();
    let sent = DigestOnly::of(&output, &bytes);
    drop(output);
    wasm.blobs
        .upload(&ContentDigest(sent.digest), bytes, capability)?;
    Ok(Done::Uploaded(sent))
}
