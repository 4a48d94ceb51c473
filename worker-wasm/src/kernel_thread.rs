//! The kernel thread: a dedicated module Web Worker nested in a session's Web
//! Worker, which runs users' kernels one task at a time so that a task of any
//! length never holds up the session's socket (heartbeats, revokes) or the
//! page's commands. `www/kernel.js` loads this same WebAssembly module in it
//! and calls [`serve`]; the session holds it as a [`KernelThread`].
//!
//! The session keeps the compiled modules ([`crate::user_kernel::load`]) and
//! posts the `WebAssembly.Module` with each task: a structured clone of a
//! module shares its compiled code within the agent cluster (Chromium and
//! Firefox both), so the kernel thread fetches and compiles nothing, and a
//! fresh one is ready for the next task at once.
//!
//! The one thing it keeps between tasks is the bytes of the job's files
//! (`WasmParams::files`, which tasks read under `/data`): the session sends
//! each file once per kernel thread, as the `Blob` the page checked
//! ([`crate::blob_cache`]; posting a `Blob` shares it, it copies nothing),
//! and the kernel thread reads it once (`FileReaderSync`) into [`Bytes`]
//! that every task's [`grid_wasi::TaskConfig::files`] shares. After each
//! task it holds exactly the files of that task's job: another job's are
//! dropped before the new ones are read. A task whose file was neither
//! sent nor held is a host fault, and after any fault it holds nothing
//! (the session then sends the files again: [`crate::job_files`]).
//!
//! Both directions are plain objects through `postMessage`, decoded here at
//! the edge:
//!
//! | from | `type` | fields |
//! |---|---|---|
//! | session | `task` | `seq`, `module` (a `WebAssembly.Module`), `params` (the job's `WasmParams` as JSON), `index`, `input` (a `Uint8Array`, transferred), `files` (`[{blob: "sha256:...", data: Blob}]`, the files it does not hold yet) |
//! | kernel | `ready` | none: loaded and listening, sent once |
//! | kernel | `done` | `seq`, and either `outcome` (the encoded `WasmOutcome`, transferred) or `fault` (why the run says nothing about the task) |
//! | kernel | `crashed` | `error`: it panicked; it takes no more tasks |
//!
//! The session sees a thread that failed to load or threw an uncaught error
//! (out of memory) as `crashed` too. The only way to stop a running task is
//! to terminate its thread ([`KernelThread::stop`]): the session does so on
//! pause, stop, a lost connection, a crash and at the wall-clock backstop,
//! and starts a fresh thread for the next task.

use std::cell::RefCell;
use std::collections::HashMap;

use bytes::Bytes;
use grid_kernels::ContentDigest;
use grid_kernels::wasm::{WasmOutcome, WasmParams};
use grid_wasi::DataFile;
use js_sys::{Array, Object, Reflect, Uint8Array, WebAssembly};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{
    Blob, DedicatedWorkerGlobalScope, ErrorEvent, FileReaderSync, MessageEvent, Worker,
    WorkerOptions, WorkerType,
};

use crate::user_kernel::{self, describe};

/// The kernel thread's script, beside the session's `worker.js`.
const SCRIPT: &str = "./kernel.js";

/// One task for the kernel thread.
#[derive(Debug)]
pub struct Task {
    /// Names the task in the reply.
    pub seq: u64,
    pub module: WebAssembly::Module,
    pub params: WasmParams,
    pub index: u32,
    pub input: Vec<u8>,
    /// The job's files the kernel thread does not hold yet, as checked
    /// `Blob`s.
    pub files: Vec<(ContentDigest, Blob)>,
}

/// What the kernel thread says.
#[derive(Debug)]
pub enum Reply {
    /// Loaded and listening: send tasks.
    Ready,
    /// Task `seq` ran: its outcome, or the host fault that says nothing
    /// about the task.
    Done {
        seq: u64,
        result: Result<WasmOutcome, String>,
    },
    /// It panicked, failed to load or threw; it is not used again.
    Crashed(String),
}

fn field(object: &JsValue, name: &str) -> JsValue {
    Reflect::get(object, &name.into()).unwrap_or(JsValue::UNDEFINED)
}

fn set(object: &Object, name: &str, value: &JsValue) {
    Reflect::set(object, &name.into(), value).expect("setting a property of a plain object");
}

impl Task {
    /// The message and the buffers to transfer with it.
    fn encode(&self) -> (Object, Array) {
        let message = Object::new();
        set(&message, "type", &"task".into());
        set(&message, "seq", &(self.seq as f64).into());
        set(&message, "module", &self.module);
        let params = serde_json::to_string(&self.params).expect("params are plain data");
        set(&message, "params", &params.into());
        set(&message, "index", &self.index.into());
        let input = Uint8Array::from(self.input.as_slice());
        set(&message, "input", &input);
        let files: Array = self
            .files
            .iter()
            .map(|(digest, data)| {
                let file = Object::new();
                set(&file, "blob", &digest.to_string().into());
                set(&file, "data", data);
                JsValue::from(file)
            })
            .collect();
        set(&message, "files", &files);
        (message, Array::of1(&input.buffer()))
    }

    fn decode(message: &JsValue) -> Result<Task, String> {
        if field(message, "type").as_string().as_deref() != Some("task") {
            return Err(format!("not a task: {}", describe(message)));
        }
        let number = |name: &str| {
            field(message, name)
                .as_f64()
                .ok_or_else(|| format!("a task without {name}"))
        };
        let params = field(message, "params")
            .as_string()
            .ok_or("a task without params")?;
        Ok(Task {
            seq: number("seq")? as u64,
            module: field(message, "module")
                .dyn_into()
                .map_err(|_| "a task without a WebAssembly.Module")?,
            params: serde_json::from_str(&params).map_err(|e| format!("a task's params: {e}"))?,
            index: number("index")? as u32,
            input: field(message, "input")
                .dyn_into::<Uint8Array>()
                .map_err(|_| "a task without input bytes")?
                .to_vec(),
            files: field(message, "files")
                .dyn_into::<Array>()
                .map_err(|_| "a task without files")?
                .iter()
                .map(|file| {
                    let digest = field(&file, "blob")
                        .as_string()
                        .and_then(|d| d.parse().ok())
                        .ok_or("a file without its digest")?;
                    let data = field(&file, "data")
                        .dyn_into::<Blob>()
                        .map_err(|_| "a file without its Blob")?;
                    Ok((digest, data))
                })
                .collect::<Result<_, &str>>()?,
        })
    }
}

impl Reply {
    /// The message and the buffers to transfer with it.
    fn encode(&self) -> (Object, Array) {
        let message = Object::new();
        let transfer = Array::new();
        match self {
            Reply::Ready => set(&message, "type", &"ready".into()),
            Reply::Done { seq, result } => {
                set(&message, "type", &"done".into());
                set(&message, "seq", &(*seq as f64).into());
                match result {
                    Ok(outcome) => {
                        let mut bytes = Vec::with_capacity(outcome.encoded_len());
                        outcome.encode_into(&mut bytes);
                        let bytes = Uint8Array::from(bytes.as_slice());
                        transfer.push(&bytes.buffer());
                        set(&message, "outcome", &bytes);
                    }
                    Err(fault) => set(&message, "fault", &fault.into()),
                }
            }
            Reply::Crashed(error) => {
                set(&message, "type", &"crashed".into());
                set(&message, "error", &error.into());
            }
        }
        (message, transfer)
    }

    fn decode(message: &JsValue) -> Result<Reply, String> {
        match field(message, "type").as_string().as_deref() {
            Some("ready") => Ok(Reply::Ready),
            Some("done") => {
                let seq = field(message, "seq")
                    .as_f64()
                    .ok_or("a reply without seq")? as u64;
                let result = match field(message, "outcome").dyn_into::<Uint8Array>() {
                    Ok(bytes) => WasmOutcome::decode(&bytes.to_vec())
                        .map_err(|e| format!("the kernel thread's outcome: {e}")),
                    Err(_) => Err(field(message, "fault")
                        .as_string()
                        .ok_or("a reply with neither an outcome nor a fault")?),
                };
                Ok(Reply::Done { seq, result })
            }
            Some("crashed") => Ok(Reply::Crashed(
                field(message, "error")
                    .as_string()
                    .unwrap_or_else(|| "the kernel thread crashed".into()),
            )),
            _ => Err(format!(
                "an unknown message from the kernel thread: {}",
                describe(message)
            )),
        }
    }
}

/// The session's handle on its kernel thread.
#[derive(Debug)]
pub struct KernelThread {
    worker: Worker,
    ready: bool,
    _handlers: [Closure<dyn FnMut(JsValue)>; 3],
}

impl KernelThread {
    /// Starts a kernel thread; `on_reply` gets what it says, and
    /// [`Reply::Crashed`] if it fails to load or throws.
    pub fn start(on_reply: impl Fn(Reply) + Clone + 'static) -> Result<KernelThread, String> {
        let options = WorkerOptions::new();
        options.set_type(WorkerType::Module);
        let worker = Worker::new_with_options(SCRIPT, &options)
            .map_err(|e| format!("cannot start the kernel thread: {}", describe(&e)))?;
        let reply = on_reply.clone();
        let on_message = Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
            let data = event.unchecked_into::<MessageEvent>().data();
            reply(Reply::decode(&data).unwrap_or_else(Reply::Crashed));
        });
        let reply = on_reply.clone();
        let on_error = Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
            let event = event.unchecked_into::<ErrorEvent>();
            // Handled here: not passed on as the session thread's own error.
            event.prevent_default();
            let message = event.message();
            reply(Reply::Crashed(if message.is_empty() {
                "the kernel thread failed to load, or died".into()
            } else {
                message
            }));
        });
        let on_message_error = Closure::<dyn FnMut(JsValue)>::new(move |_: JsValue| {
            on_reply(Reply::Crashed(
                "a message from the kernel thread could not be read".into(),
            ));
        });
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        worker.set_onmessageerror(Some(on_message_error.as_ref().unchecked_ref()));
        Ok(KernelThread {
            worker,
            ready: false,
            _handlers: [on_message, on_error, on_message_error],
        })
    }

    /// Whether it said [`Reply::Ready`].
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    pub fn set_ready(&mut self) {
        self.ready = true;
    }

    /// Hands it a task; the answer comes as [`Reply::Done`].
    pub fn send(&self, task: &Task) -> Result<(), String> {
        let (message, transfer) = task.encode();
        self.worker
            .post_message_with_transfer(&message, &transfer)
            .map_err(|e| format!("cannot send a task to the kernel thread: {}", describe(&e)))
    }

    /// Terminates it, whatever it is running; nothing more comes from it.
    pub fn stop(self) {
        self.worker.set_onmessage(None);
        self.worker.set_onerror(None);
        self.worker.set_onmessageerror(None);
        self.worker.terminate();
    }
}

thread_local! {
    /// The bytes of the files of the job of the last task.
    static FILES: RefCell<HashMap<ContentDigest, Bytes>> = RefCell::new(HashMap::new());
}

/// The `/data` files of a task of the job with `params`: the ones `sent`
/// with it, read now, and the ones held from earlier tasks; the others are
/// dropped first. After an error nothing is held.
fn task_files(
    params: &WasmParams,
    sent: Vec<(ContentDigest, Blob)>,
) -> Result<Vec<DataFile>, String> {
    FILES.with(|held| {
        let mut held = held.borrow_mut();
        held.retain(|digest, _| params.files.iter().any(|f| f.blob == *digest));
        let files = read_files(&mut held, params, sent);
        if files.is_err() {
            held.clear();
        }
        files
    })
}

fn read_files(
    held: &mut HashMap<ContentDigest, Bytes>,
    params: &WasmParams,
    sent: Vec<(ContentDigest, Blob)>,
) -> Result<Vec<DataFile>, String> {
    for (digest, data) in sent {
        if held.contains_key(&digest) {
            continue;
        }
        let unreadable = |e: JsValue| {
            format!(
                "the kernel thread cannot read the file {digest}: {}",
                describe(&e)
            )
        };
        let buffer = FileReaderSync::new()
            .and_then(|reader| reader.read_as_array_buffer(&data))
            .map_err(unreadable)?;
        held.insert(digest, Bytes::from(Uint8Array::new(&buffer).to_vec()));
    }
    params
        .files
        .iter()
        .map(|file| {
            let bytes = held.get(&file.blob).ok_or_else(|| {
                format!(
                    "the file {:?} ({}) was not given to the kernel thread",
                    file.name, file.blob
                )
            })?;
            if bytes.len() as u64 != file.size {
                return Err(format!(
                    "the file {:?} ({}) is {} bytes, not {}",
                    file.name,
                    file.blob,
                    bytes.len(),
                    file.size
                ));
            }
            Ok(DataFile {
                name: file.name.clone(),
                bytes: bytes.clone(),
            })
        })
        .collect()
}

/// The kernel thread's side: answers each task with its outcome, and a
/// panic with [`Reply::Crashed`].
pub fn serve() {
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        reply(&Reply::Crashed(crate::panic_message(info)));
    }));
    let on_task =
        Closure::<dyn FnMut(MessageEvent)>::new(|event: MessageEvent| {
            match Task::decode(&event.data()) {
                Ok(task) => {
                    let result = task_files(&task.params, task.files).and_then(|files| {
                        user_kernel::run(
                            &task.module,
                            user_kernel::Preparation::Prepared,
                            &task.params,
                            task.index,
                            task.input,
                            files,
                        )
                    });
                    if result.is_err() {
                        FILES.with(|held| held.borrow_mut().clear());
                    }
                    reply(&Reply::Done {
                        seq: task.seq,
                        result,
                    });
                }
                Err(error) => reply(&Reply::Crashed(error)),
            }
        });
    let scope: DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
    scope.set_onmessage(Some(on_task.as_ref().unchecked_ref()));
    on_task.forget();
    reply(&Reply::Ready);
}

fn reply(reply: &Reply) {
    let scope: DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
    let (message, transfer) = reply.encode();
    if let Err(error) = scope.post_message_with_transfer(&message, &transfer) {
        web_sys::console::error_2(&"cannot answer the session:".into(), &error);
    }
}
