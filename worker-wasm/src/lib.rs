//! The browsergrid browser worker, compiled to WebAssembly. One instance runs
//! in each dedicated module Web Worker of the donor page (`www/worker.js`
//! loads it and calls [`run`]); each is one worker connection to the
//! coordinator, with one compute thread. Users' kernels run on a kernel
//! thread of its own, a nested Web Worker where `www/kernel.js` loads this
//! same module and calls [`run_kernel_thread`].
//!
//! - [`pacing`]: the CPU cap as a duty cycle, and the task rate.
//! - [`page`]: the messages between the donor page and its Web Workers, and
//!   the page's figures read from the session.
//! - [`ledger`]: the bookkeeping of the tab's blob cache (quota, least
//!   recently used first out, what was checked, what to show), without I/O.
//! - [`job_files`]: a session's files of the job it works on, without I/O:
//!   each asked of the page once, sent to the kernel thread once.
//! - [`blob_cache`] (wasm only): the tab's blob cache on the page's main
//!   thread, exported to `www/donor.js`: the origin private file system,
//!   one fetch per blob, every blob hashed before use.
//! - [`fetch`] (wasm only): getting blobs from the coordinator and checking
//!   them against their digest, in any global.
//! - [`user_kernel`] (wasm only): users' kernels fetched, compiled with the
//!   browser's own WebAssembly engine and run one instance a task, WASI
//!   answered by [`grid_wasi`].
//! - [`kernel_thread`] (wasm only): the nested Web Worker that runs them,
//!   its messages, and the session's handle on it.
//! - [`web`] (wasm only): the driver of the protocol session
//!   ([`grid_protocol::session::WorkerSession`], shared with the native
//!   worker) over a browser WebSocket, timers, the page and the panic hook.
//!
//! The kernels are [`grid_kernels`], the very code the native worker runs, so
//! a task's output is byte-identical in a browser and natively. [`run_task`]
//! and [`run_tasks`] expose them directly for parity checks and benchmarks,
//! and `run_user_task` a user's kernel's task as the kernel thread runs it.

#[cfg(target_arch = "wasm32")]
pub mod blob_cache;
#[cfg(target_arch = "wasm32")]
pub mod fetch;
pub mod job_files;
#[cfg(target_arch = "wasm32")]
pub mod kernel_thread;
pub mod ledger;
pub mod pacing;
pub mod page;
#[cfg(target_arch = "wasm32")]
pub mod user_kernel;
#[cfg(target_arch = "wasm32")]
pub mod web;

use grid_kernels::{KernelSpec, TaskRunner};
#[cfg(target_arch = "wasm32")]
use user_kernel::Preparation;
use wasm_bindgen::prelude::*;

/// Starts the worker in the current Web Worker: listens for the page's
/// commands and tells the page it is ready.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen]
pub fn run() {
    web::run();
}

/// Starts a kernel thread in the current Web Worker: runs the users' tasks
/// its session sends, one at a time.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen]
pub fn run_kernel_thread() {
    kernel_thread::serve();
}

/// Runs task `index` of a wasm job whose params are `params_json` (the
/// job's `WasmParams`, without files), with its compiled prepared `module`
/// and `input` as stdin, on the calling thread, and returns the outcome's
/// bytes: what the kernel thread does for a task, for parity checks and
/// benchmarks. An error is the host fault.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen]
pub fn run_user_task(
    module: &js_sys::WebAssembly::Module,
    params_json: &str,
    index: u32,
    input: Vec<u8>,
) -> Result<Vec<u8>, JsError> {
    task_bytes(module, Preparation::Prepared, params_json, index, input)
}

/// [`run_user_task`] for the module as it was submitted, unprepared and
/// unmetered: for measuring what preparation costs in this engine, never
/// for a task.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen]
pub fn run_unprepared_task(
    module: &js_sys::WebAssembly::Module,
    params_json: &str,
    index: u32,
    input: Vec<u8>,
) -> Result<Vec<u8>, JsError> {
    task_bytes(module, Preparation::AsSubmitted, params_json, index, input)
}

/// [`user_kernel::run`] with the job's `WasmParams` decoded from JSON, its
/// outcome encoded.
#[cfg(target_arch = "wasm32")]
fn task_bytes(
    module: &js_sys::WebAssembly::Module,
    preparation: Preparation,
    params_json: &str,
    index: u32,
    input: Vec<u8>,
) -> Result<Vec<u8>, JsError> {
    let params: grid_kernels::wasm::WasmParams = serde_json::from_str(params_json)
        .map_err(|e| JsError::new(&format!("invalid params: {e}")))?;
    let outcome = user_kernel::run(module, preparation, &params, index, input, Vec::new())
        .map_err(|e| JsError::new(&e))?;
    let mut bytes = Vec::with_capacity(outcome.encoded_len());
    outcome.encode_into(&mut bytes);
    Ok(bytes)
}

/// A panic as one line: its message and where it happened.
#[cfg(target_arch = "wasm32")]
pub(crate) fn panic_message(info: &std::panic::PanicHookInfo<'_>) -> String {
    let payload = info
        .payload()
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
        .unwrap_or("the worker panicked");
    match info.location() {
        Some(at) => format!("{payload} at {}:{}:{}", at.file(), at.line(), at.column()),
        None => payload.to_string(),
    }
}

/// Computes task `index` of a `tasks`-task job of `spec_json` (the API's
/// `{"kernel": ..., "params": ...}`) and returns its canonical output bytes.
#[wasm_bindgen]
pub fn run_task(spec_json: &str, tasks: u32, index: u32) -> Result<Vec<u8>, JsError> {
    run_tasks(spec_json, tasks, index, 1)
}

/// Computes tasks `first..first + count` with one runner (as a worker would)
/// and returns their output bytes one after another.
#[wasm_bindgen]
pub fn run_tasks(spec_json: &str, tasks: u32, first: u32, count: u32) -> Result<Vec<u8>, JsError> {
    let outputs = compute(spec_json, tasks, first, count).map_err(|e| JsError::new(&e))?;
    Ok(outputs)
}

fn compute(spec_json: &str, tasks: u32, first: u32, count: u32) -> Result<Vec<u8>, String> {
    let spec: KernelSpec =
        serde_json::from_str(spec_json).map_err(|e| format!("invalid spec: {e}"))?;
    spec.validate(tasks).map_err(|e| e.to_string())?;
    let end = first
        .checked_add(count)
        .filter(|&end| end <= tasks)
        .ok_or_else(|| format!("tasks {first}..{first}+{count} are not all below {tasks}"))?;
    let mut runner = TaskRunner::new();
    let mut bytes = Vec::new();
    for index in first..end {
        runner
            .run(&spec, tasks, index)
            .map_err(|e| e.to_string())?
            .encode_into(&mut bytes);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_run_from_a_json_spec() {
        let spec = r#"{"kernel":"primes","params":{"start":0,"end":1000}}"#;
        assert_eq!(compute(spec, 10, 0, 1).unwrap(), 25u64.to_le_bytes());
        assert_eq!(compute(spec, 10, 0, 10).unwrap().len(), 80);
        assert!(compute(spec, 10, 9, 2).unwrap_err().contains("below 10"));
        assert!(compute(spec, 0, 0, 1).is_err());
        assert!(compute("{}", 1, 0, 1).unwrap_err().contains("invalid spec"));
    }
}
