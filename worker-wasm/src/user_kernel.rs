//! Users' kernels in the browser: a prepared module fetched once from the
//! coordinator (`GET /api/modules/sha256:<hex>`, checked against its digest),
//! compiled once and kept for later tasks (the last [`CACHED_MODULES`]),
//! then run once per task in a fresh `WebAssembly.Instance` with the task's
//! stdin, the job's argv, limits and files and the task's `random_get`
//! seed. The native worker does the same with wasmtime
//! (`worker-native/src/wasm.rs`, `grid_wasm_runtime`).
//!
//! Prepared modules outlive the page in the Cache API ([`MODULE_CACHE`],
//! keyed by the module's URL, at most [`CACHED_MODULE_FILES`]), and are
//! compiled from the cached response with `WebAssembly.compileStreaming`,
//! where the browser may keep and reuse its compiled code. Every module
//! is hashed before it is used, from the network or from the Cache API (a
//! wrong cached copy is deleted and fetched again). The coordinator sends
//! modules as `application/wasm`, and the response is cached as it came;
//! one that says another type (an older coordinator) is cached as its
//! bytes with that type, since `compileStreaming` refuses any other. Without the
//! Cache API (not a secure context) a module is compiled from its bytes,
//! as before.
//!
//! The two halves run on two threads: [`load`] and [`compiled`] on the
//! session's Web Worker, which keeps the compiled modules and posts one with
//! each task, and [`run`] on its kernel thread ([`crate::kernel_thread`]),
//! which instantiates what it is given and keeps nothing between tasks.
//!
//! WASI is [`grid_wasi::Wasi`], the very code the native worker runs: each
//! import of `wasi_snapshot_preview1` is a closure (behind a `Proxy`, see
//! [`imports`]) made once for the life of the thread that hands the call to
//! the current run's `Wasi`, with the instance's memory as a [`Memory`] (a
//! fresh `Uint8Array` view on every access, since `memory.grow` detaches the
//! old buffer). A [`Stop`]
//! (`proc_exit`, stdout over its limit) unwinds the kernel by throwing a
//! sentinel from the import; the run catches whatever `_start` throws and
//! [`grid_wasi::outcome`] turns it, the stop and the prepared globals into the
//! task's outcome exactly as the native runtime does.
//!
//! The kernel runs on the kernel thread's own stack and calls back into this
//! module for WASI. The prepared stack limit should always come first; if
//! the engine's stack runs out while a WASI call is inside this module's
//! Rust code, that code was cut off halfway and this instance cannot be
//! trusted: it panics, which the kernel thread reports as a crash, and the
//! session fails the task and starts a fresh kernel thread.

use std::cell::{Cell, RefCell};

use grid_kernels::ContentDigest;
use grid_kernels::wasm::{ValType, WASI_MODULE, WasmOutcome, WasmParams, exports};
use grid_wasi::{DataFile, Func, Memory, Stop, TaskConfig, Wasi};
use js_sys::{Array, ArrayBuffer, Function, Object, Promise, Reflect, Uint8Array, WebAssembly};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use grid_wasi::{Ended, HostFault, RunEnd, outcome};

/// Compiled modules kept at once; the least recently used go first.
const CACHED_MODULES: usize = 4;
/// The Cache API's cache of prepared modules.
pub const MODULE_CACHE: &str = "browsergrid-modules";
/// Prepared modules kept in [`MODULE_CACHE`]; the ones put there first go
/// first.
pub const CACHED_MODULE_FILES: u32 = 32;
/// How long a module that could not be had is not asked for again: its
/// tasks fail at once meanwhile, with the reason.
const FAILURE_KEPT_MS: f64 = 60_000.0;

enum Slot {
    Loading,
    Ready(WebAssembly::Module),
    Failed { reason: String, at: f64 },
}

/// Where a job's module is in this worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// Never asked for (or forgotten): [`load`] it.
    Missing,
    Loading,
    Ready,
    /// It cannot be had; the sentence says why.
    Failed(String),
}

/// One task's run, reached by the imports while the kernel runs.
struct Run {
    wasi: Wasi,
    memory: Option<WebAssembly::Memory>,
    stop: Option<Stop>,
}

thread_local! {
    /// Most recently used last.
    static MODULES: RefCell<Vec<(ContentDigest, Slot)>> = const { RefCell::new(Vec::new()) };
    static RUN: RefCell<Option<Run>> = const { RefCell::new(None) };
    /// True while a WASI call is inside this module's code.
    static IN_HOST: Cell<bool> = const { Cell::new(false) };
    /// What an import throws to unwind a stopped run.
    static SENTINEL: JsValue = js_sys::Error::new("browsergrid: the kernel's run stopped").into();
    /// The import object, made once: `{wasi_snapshot_preview1: {...}}`.
    static IMPORTS: Object = imports();
}

/// Whether this global can run users' kernels at all: it has a WebAssembly
/// engine and can start the kernel thread.
pub fn supported() -> bool {
    let global = js_sys::global();
    ["WebAssembly", "Worker"]
        .iter()
        .all(|name| Reflect::has(&global, &(*name).into()).unwrap_or(false))
}

/// Where `module` is; `now` is `performance.now()`, to forget failures.
pub fn availability(module: &ContentDigest, now: f64) -> Availability {
    MODULES.with(|modules| {
        let mut modules = modules.borrow_mut();
        let Some(position) = modules.iter().position(|(d, _)| d == module) else {
            return Availability::Missing;
        };
        let answer = match &modules[position].1 {
            Slot::Loading => Availability::Loading,
            Slot::Ready(_) => Availability::Ready,
            Slot::Failed { at, .. } if now - at > FAILURE_KEPT_MS => {
                modules.remove(position);
                return Availability::Missing;
            }
            Slot::Failed { reason, .. } => Availability::Failed(reason.clone()),
        };
        let entry = modules.remove(position);
        modules.push(entry);
        answer
    })
}

/// Fetches and compiles `module` from the coordinator at `base`
/// (`http://host:port`) in the background, then calls `done`.
pub fn load(base: &str, module: ContentDigest, done: impl FnOnce() + 'static) {
    MODULES.with(|modules| {
        let mut modules = modules.borrow_mut();
        modules.retain(|(d, _)| *d != module);
        while modules.len() >= CACHED_MODULES {
            // The oldest that is not on its way.
            match modules
                .iter()
                .position(|(_, s)| !matches!(s, Slot::Loading))
            {
                Some(oldest) => drop(modules.remove(oldest)),
                None => break,
            }
        }
        modules.push((module, Slot::Loading));
    });
    let url = format!("{base}/api/modules/{module}");
    wasm_bindgen_futures::spawn_local(async move {
        let slot = match fetch_and_compile(&url, &module).await {
            Ok(compiled) => Slot::Ready(compiled),
            Err(reason) => {
                web_sys::console::warn_1(&reason.clone().into());
                Slot::Failed {
                    reason,
                    at: crate::web::now(),
                }
            }
        };
        MODULES.with(|modules| {
            if let Some(entry) = modules.borrow_mut().iter_mut().find(|(d, _)| *d == module) {
                entry.1 = slot;
            }
        });
        done();
    });
}

/// The prepared module from the Cache API, or else from the coordinator
/// (then cached), checked and compiled.
async fn fetch_and_compile(
    url: &str,
    module: &ContentDigest,
) -> Result<WebAssembly::Module, String> {
    let cache = module_cache().await;
    if let Some(cache) = &cache
        && let Some(hit) = cached(cache, url).await
    {
        match compile_checked(hit, module).await {
            Ok(compiled) => return Ok(compiled),
            Err(problem) => {
                web_sys::console::warn_1(
                    &format!("{problem}; deleted from the cache, fetching it again").into(),
                );
                let _ = JsFuture::from(cache.delete_with_str(url)).await;
            }
        }
    }
    // From the HTTP cache if it has it; past it if those bytes were wrong.
    let mut fetched = None;
    for mode in [
        web_sys::RequestCache::Default,
        web_sys::RequestCache::Reload,
    ] {
        let response = crate::fetch::get_response(url, None, mode)
            .await
            .map_err(|e| format!("cannot fetch the module {module}: {e}"))?;
        let typed = response
            .headers()
            .get("content-type")
            .ok()
            .flatten()
            .is_some_and(|t| t.starts_with("application/wasm"));
        let as_came = if typed { response.clone().ok() } else { None };
        let buffer = crate::fetch::body(&response).await?;
        let got = crate::fetch::sha256(&buffer).await?.digest;
        if got == *module {
            fetched = Some((buffer, as_came));
            break;
        }
        web_sys::console::warn_1(
            &format!("the coordinator sent {got} for the module {module}").into(),
        );
    }
    let Some((buffer, as_came)) = fetched else {
        return Err(format!(
            "cannot fetch the module {module}: the coordinator sent other bytes twice"
        ));
    };
    if let Some(cache) = &cache {
        match store(cache, url, &buffer, as_came).await {
            Ok(()) => {
                if let Some(hit) = cached(cache, url).await
                    && let Ok(compiled) = compile_checked(hit, module).await
                {
                    return Ok(compiled);
                }
            }
            Err(problem) => web_sys::console::warn_1(&problem.into()),
        }
    }
    let compiled = JsFuture::from(WebAssembly::compile(&buffer))
        .await
        .map_err(|e| format!("the prepared module does not compile: {}", describe(&e)))?;
    Ok(compiled.unchecked_into())
}

/// The Cache API's [`MODULE_CACHE`], where this global has one.
async fn module_cache() -> Option<web_sys::Cache> {
    let caches = Reflect::get(&js_sys::global(), &"caches".into())
        .ok()
        .filter(|c| !c.is_undefined())?;
    let caches: web_sys::CacheStorage = caches.unchecked_into();
    JsFuture::from(caches.open(MODULE_CACHE))
        .await
        .ok()
        .map(JsCast::unchecked_into)
}

/// The cached response for `url`, if there is one.
async fn cached(cache: &web_sys::Cache, url: &str) -> Option<web_sys::Response> {
    JsFuture::from(cache.match_with_str(url))
        .await
        .ok()
        .and_then(|hit| hit.dyn_into().ok())
}

/// Puts a checked module in the cache: the response as it came if it says
/// `application/wasm`, else the bytes with that type; then trims the cache.
async fn store(
    cache: &web_sys::Cache,
    url: &str,
    buffer: &ArrayBuffer,
    as_came: Option<web_sys::Response>,
) -> Result<(), String> {
    let fail = |e: JsValue| format!("cannot cache the module: {}", describe(&e));
    let response = match as_came {
        Some(response) => response,
        None => {
            let headers = web_sys::Headers::new().map_err(fail)?;
            headers
                .append("content-type", "application/wasm")
                .map_err(fail)?;
            let init = web_sys::ResponseInit::new();
            init.set_headers_headers(&headers);
            web_sys::Response::new_with_opt_buffer_source_and_init(Some(buffer), &init)
                .map_err(fail)?
        }
    };
    JsFuture::from(cache.put_with_str(url, &response))
        .await
        .map_err(fail)?;
    let keys: Array = JsFuture::from(cache.keys())
        .await
        .map_err(fail)?
        .unchecked_into();
    for old in keys
        .iter()
        .take(keys.length().saturating_sub(CACHED_MODULE_FILES) as usize)
    {
        let old: web_sys::Request = old.unchecked_into();
        let _ = JsFuture::from(cache.delete_with_request(&old)).await;
    }
    Ok(())
}

/// Compiles a cached module with `compileStreaming` while hashing a copy
/// of it: the module, if the bytes are the ones named.
async fn compile_checked(
    hit: web_sys::Response,
    module: &ContentDigest,
) -> Result<WebAssembly::Module, String> {
    let copy = hit
        .clone()
        .map_err(|e| format!("cannot read the cached {module}: {}", describe(&e)))?;
    let compiling = WebAssembly::compile_streaming(&Promise::resolve(&JsValue::from(hit)));
    let buffer = crate::fetch::body(&copy).await?;
    let hashed = crate::fetch::sha256(&buffer).await?;
    let compiled = JsFuture::from(compiling).await;
    if hashed.digest != *module {
        return Err(format!(
            "the cached copy of the module {module} is corrupt (it hashes to {})",
            hashed.digest
        ));
    }
    let compiled = compiled.map_err(|e| {
        format!(
            "the cached module {module} does not compile: {}",
            describe(&e)
        )
    })?;
    Ok(compiled.unchecked_into())
}

/// The compiled `module`, if it is [`Availability::Ready`], for the kernel
/// thread.
pub fn compiled(module: &ContentDigest) -> Option<WebAssembly::Module> {
    MODULES.with(|modules| {
        modules.borrow().iter().find_map(|(d, s)| match s {
            Slot::Ready(m) if d == module => Some(m.clone()),
            _ => None,
        })
    })
}

/// Whether a module is the one the coordinator prepared (every task's) or
/// the one that was submitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preparation {
    Prepared,
    /// Unmetered (its outcome says 0 fuel), with no stack limit of its own
    /// and the engine's NaN bits. Never for tasks, whose outcomes must
    /// agree across engines; for measuring what preparation costs, as the
    /// native runtime's `compile_unprepared` is.
    AsSubmitted,
}

/// Runs one task of a wasm job with its compiled `module`, its stdin and
/// the job's `files` (their bytes, sorted by name, shared and never copied
/// per task): its outcome, or why it could not run here (a host fault),
/// which the worker reports as the task's failure.
pub fn run(
    module: &WebAssembly::Module,
    preparation: Preparation,
    params: &WasmParams,
    task: u32,
    input: Vec<u8>,
    files: Vec<DataFile>,
) -> Result<WasmOutcome, String> {
    let mut config = TaskConfig::of_task(params, task, input);
    config.files = files;
    let limits = config.limits;
    let end = run_instance(module, preparation, config).map_err(|e| e.to_string())?;
    outcome(&limits, end).map_err(|e| e.to_string())
}

/// One run of `module`; without the prepared globals
/// ([`Preparation::AsSubmitted`]) the fuel is taken as untouched and no
/// prepared trap as set.
fn run_instance(
    module: &WebAssembly::Module,
    preparation: Preparation,
    config: TaskConfig,
) -> Result<RunEnd, HostFault> {
    let prepared = preparation == Preparation::Prepared;
    let fuel = config.limits.fuel;
    let wasi = Wasi::new(config).map_err(|e| HostFault::Config(e.to_string()))?;
    let instance = IMPORTS
        .with(|imports| WebAssembly::Instance::new(module, imports))
        .map_err(|e| HostFault::Instantiate(describe(&e)))?;
    let exported = instance.exports();
    let export = |name: &str| Reflect::get(&exported, &name.into()).unwrap_or(JsValue::UNDEFINED);
    let start: Function = export(exports::START)
        .dyn_into()
        .map_err(|_| HostFault::Instantiate("no _start function".into()))?;
    let memory = export(exports::MEMORY)
        .dyn_into::<WebAssembly::Memory>()
        .ok();
    RUN.with(|run| {
        *run.borrow_mut() = Some(Run {
            wasi,
            memory,
            stop: None,
        })
    });
    let result = start.call0(&JsValue::UNDEFINED);
    if IN_HOST.get() {
        panic!(
            "the kernel's run was cut off inside a WASI call ({}); this worker cannot go on",
            result.err().map_or_else(String::new, |e| describe(&e))
        );
    }
    let Run { wasi, stop, .. } = RUN
        .with(|run| run.borrow_mut().take())
        .expect("the run is still there");
    let ended = match result {
        Ok(_) => Ended::Returned,
        Err(error) => classify(&error),
    };
    let global = |name: &str| export(name).dyn_into::<WebAssembly::Global>().ok();
    let fuel_left = match global(exports::FUEL).and_then(|g| i64::try_from(g.value()).ok()) {
        Some(left) => left,
        None if !prepared => i64::try_from(fuel).unwrap_or(i64::MAX),
        None => {
            return Err(HostFault::Engine(
                "no fuel global: is the module prepared?".into(),
            ));
        }
    };
    let trap_code = match global(exports::TRAP).and_then(|g| g.value().as_f64()) {
        Some(code) => code,
        None if !prepared => 0.0,
        None => {
            return Err(HostFault::Engine(
                "no trap global: is the module prepared?".into(),
            ));
        }
    };
    let (stdout, stderr) = wasi.finish();
    Ok(RunEnd {
        ended,
        stop,
        trap_code: trap_code as i32,
        fuel_left,
        stdout,
        stderr,
    })
}

/// What `_start` threw: a trap, the engine's own stack running out (V8:
/// `RangeError: Maximum call stack size exceeded`; SpiderMonkey:
/// `InternalError: too much recursion`), or something else. The host's
/// sentinel counts as a trap: the stop it stands for is read first.
fn classify(error: &JsValue) -> Ended {
    if error.is_instance_of::<WebAssembly::RuntimeError>()
        || SENTINEL.with(|sentinel| sentinel == error)
    {
        return Ended::Threw;
    }
    let field = |name: &str| {
        Reflect::get(error, &name.into())
            .ok()
            .and_then(|v| v.as_string())
            .unwrap_or_default()
    };
    let (name, message) = (field("name"), field("message"));
    let overflow = (name == "RangeError" && message.contains("call stack"))
        || (name == "InternalError" && message.contains("too much recursion"));
    if overflow {
        Ended::EngineStack
    } else {
        Ended::Other(describe(error))
    }
}

/// A thrown value as one line.
pub(crate) fn describe(error: &JsValue) -> String {
    if let Some(text) = error.as_string() {
        return text;
    }
    if let Some(error) = error.dyn_ref::<js_sys::Error>() {
        return error.to_string().into();
    }
    match js_sys::JSON::stringify(error) {
        Ok(text) => text.into(),
        Err(_) => format!("{error:?}"),
    }
}

/// `{wasi_snapshot_preview1: {args_get: ..., ...}}`, a function per
/// function of the contract, made once for the life of the thread. Each is
/// a `Proxy` whose `apply` trap, a closure that knows its function, gets
/// the call's arguments as one array, however many there are (a
/// wasm-bindgen closure takes at most 8, and `path_open` takes 9). No
/// `Function` constructor, which the coordinator's Content-Security-Policy
/// forbids (no `'unsafe-eval'`), and no `inline_js` snippet, which would be
/// one more file beside the module for every copy of it.
fn imports() -> Object {
    let wasi = Object::new();
    for func in Func::ALL {
        let trap = Closure::<dyn Fn(JsValue, JsValue, Array) -> Result<JsValue, JsValue>>::new(
            move |_target: JsValue, _this: JsValue, args: Array| host_call(func, &args),
        );
        let handler = Object::new();
        Reflect::set(&handler, &"apply".into(), trap.as_ref())
            .expect("setting a property of a plain object");
        // The target only has to be callable; the trap does the call.
        let import = js_sys::Proxy::new(trap.as_ref(), &handler);
        trap.forget();
        Reflect::set(&wasi, &func.name().into(), &import)
            .expect("setting a property of a plain object");
    }
    let imports = Object::new();
    Reflect::set(&imports, &WASI_MODULE.into(), &wasi)
        .expect("setting a property of a plain object");
    imports
}

/// One import call from the kernel: its arguments as raw u64s (an i32 as
/// its unsigned bits, an i64 BigInt as its two's complement), the errno
/// back, or the sentinel thrown when the run stops.
fn host_call(func: Func, raw: &Array) -> Result<JsValue, JsValue> {
    IN_HOST.set(true);
    let answer = RUN.with(|run| {
        let mut run = run.borrow_mut();
        let run = run
            .as_mut()
            .expect("a kernel calls WASI only while it runs");
        let params = func.import().params;
        let args: Vec<u64> = params
            .iter()
            .enumerate()
            .map(|(i, ty)| {
                let value = raw.get(i as u32);
                match ty {
                    ValType::I32 => value.as_f64().map_or(0, |v| u64::from(v as i32 as u32)),
                    ValType::I64 => i64::try_from(value).map_or(0, |v| v as u64),
                }
            })
            .collect();
        let answer = match &run.memory {
            Some(memory) => run.wasi.call(func, &args, &mut JsMemory(memory)),
            // Preparation requires the export; without it every pointer faults.
            None => run.wasi.call(func, &args, &mut [][..]),
        };
        if let Err(stop) = answer {
            run.stop = Some(stop);
        }
        answer
    });
    IN_HOST.set(false);
    match answer {
        Ok(errno) => Ok(JsValue::from(errno as i32)),
        Err(_) => Err(SENTINEL.with(JsValue::clone)),
    }
}

#[wasm_bindgen]
extern "C" {
    /// An `ArrayBuffer` read for its length as a double: a 4 GiB memory's
    /// length does not fit a u32.
    type SizedBuffer;
    #[wasm_bindgen(method, getter, js_name = byteLength)]
    fn byte_length(this: &SizedBuffer) -> f64;
}

/// The kernel's memory, through a fresh view of its current buffer on every
/// access.
struct JsMemory<'a>(&'a WebAssembly::Memory);

impl JsMemory<'_> {
    /// A view of `len` bytes at `addr`, if they are all inside the memory;
    /// `Some(None)` for an empty region inside it.
    fn view(&self, addr: u32, len: usize) -> Option<Option<Uint8Array>> {
        let buffer = self.0.buffer();
        let size = buffer.unchecked_ref::<SizedBuffer>().byte_length();
        if f64::from(addr) + len as f64 > size {
            return None;
        }
        if len == 0 {
            return Some(None);
        }
        let len = u32::try_from(len).ok()?;
        Some(Some(Uint8Array::new_with_byte_offset_and_length(
            &buffer, addr, len,
        )))
    }
}

impl Memory for JsMemory<'_> {
    fn read(&self, addr: u32, buf: &mut [u8]) -> bool {
        match self.view(addr, buf.len()) {
            Some(Some(view)) => {
                view.copy_to(buf);
                true
            }
            Some(None) => true,
            None => false,
        }
    }

    fn write(&mut self, addr: u32, data: &[u8]) -> bool {
        match self.view(addr, data.len()) {
            Some(Some(view)) => {
                view.copy_from(data);
                true
            }
            Some(None) => true,
            None => false,
        }
    }
}
