//! The native runtime of user kernels: a prepared module (see
//! `grid-wasm-prep`) compiled once with wasmtime, then instantiated afresh
//! for every task, its WASI imports answered by [`grid_wasi::Wasi`] (the same
//! code the browser worker runs), its outcome read back as a
//! [`WasmOutcome`].
//!
//! Determinism lives in the prepared module, not here: it meters its own
//! fuel, limits its own call depth and canonicalizes its own NaNs, so the
//! engine runs with wasmtime's fuel and NaN canonicalization off (both cost
//! speed, and their counts would not match a browser's). What is left to
//! this crate is to tell a deterministic end of a run (the kernel returned,
//! called `proc_exit`, hit its fuel or stack limit, wrote too much, or
//! trapped) from a [`HostFault`] (the engine's own stack ran out, an
//! instance could not be made): the first is the task's outcome, which
//! replicas agree on; the second says nothing about the task and is
//! re-issued elsewhere.
//!
//! Engine stacks: wasmtime may use up to [`MAX_WASM_STACK`] of the calling
//! thread's stack, so threads that run kernels need at least
//! [`THREAD_STACK`]; the prepared module's own stack limit is far below.

use grid_kernels::wasm::{WasmLimits, WasmOutcome, exports};
use grid_wasi::{Ended, Func, RunEnd, Stop, TaskConfig, Wasi, outcome};
use wasmtime::{Caller, Config, FuncType, InstancePre, Linker, Module, Store, Val, ValType};

/// The most of a thread's stack wasmtime may use for one kernel.
pub const MAX_WASM_STACK: usize = 1 << 20;
/// The stack a thread that runs kernels should have.
pub const THREAD_STACK: usize = 8 << 20;

/// Why a module could not be made ready to run.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("the engine cannot be set up: {0}")]
    Engine(String),
    #[error("the prepared module does not compile: {0}")]
    Module(String),
}

/// A run that ended for a reason outside the task: not an outcome (the
/// rules are `grid_wasi`'s, shared with the browser).
pub use grid_wasi::HostFault;

/// A wasmtime engine set up for prepared kernels. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    engine: wasmtime::Engine,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Engine")
    }
}

impl Engine {
    pub fn new() -> Result<Engine, CompileError> {
        let mut config = Config::new();
        // Prepared modules meter and canonicalize themselves.
        config.consume_fuel(false);
        config.cranelift_nan_canonicalization(false);
        config.max_wasm_stack(MAX_WASM_STACK);
        // What the preparer admits, and nothing else (threads, GC and
        // exceptions are not even compiled into this build of wasmtime).
        config.wasm_relaxed_simd(false);
        config.wasm_simd(true);
        config.wasm_multi_memory(false);
        config.wasm_memory64(false);
        config.wasm_tail_call(false);
        config.wasm_bulk_memory(true);
        let engine =
            wasmtime::Engine::new(&config).map_err(|e| CompileError::Engine(e.to_string()))?;
        Ok(Engine { engine })
    }

    /// Compiles a prepared module and links it to the WASI subset. Do it
    /// once per module and worker; [`Kernel::run`] is per task.
    pub fn compile(&self, prepared: &[u8]) -> Result<Kernel, CompileError> {
        self.link(prepared, true)
    }

    /// Compiles a module as it was submitted, without preparation: it runs
    /// unmetered (its outcome says 0 fuel), with no stack limit of its own
    /// and with the engine's NaN bits. Not for tasks, whose outcomes must
    /// agree across engines; for measuring what preparation costs.
    pub fn compile_unprepared(&self, module: &[u8]) -> Result<Kernel, CompileError> {
        self.link(module, false)
    }

    fn link(&self, bytes: &[u8], prepared: bool) -> Result<Kernel, CompileError> {
        let module =
            Module::new(&self.engine, bytes).map_err(|e| CompileError::Module(format!("{e:#}")))?;
        let mut linker: Linker<Run> = Linker::new(&self.engine);
        for func in Func::ALL {
            let import = func.import();
            let ty = FuncType::new(
                &self.engine,
                import.params.iter().map(|t| val_type(*t)),
                import.results.iter().map(|t| val_type(*t)),
            );
            linker
                .func_new(
                    grid_kernels::wasm::WASI_MODULE,
                    import.name,
                    ty,
                    move |caller, params, results| call(func, caller, params, results),
                )
                .map_err(|e| CompileError::Engine(e.to_string()))?;
        }
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| CompileError::Module(format!("{e:#}")))?;
        Ok(Kernel { pre, prepared })
    }
}

fn val_type(t: grid_kernels::wasm::ValType) -> ValType {
    match t {
        grid_kernels::wasm::ValType::I32 => ValType::I32,
        grid_kernels::wasm::ValType::I64 => ValType::I64,
    }
}

/// What one task's store holds: its WASI host and how the run stopped.
struct Run {
    wasi: Wasi,
    stop: Option<Stop>,
}

/// The error a host function returns to unwind a stopped run; the reason is
/// in [`Run::stop`].
#[derive(Debug)]
struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the kernel's run stopped")
    }
}

impl std::error::Error for Stopped {}

/// One WASI import call: the arguments as raw u64s, the kernel's memory,
/// the errno back (or the run stopped).
fn call(
    func: Func,
    mut caller: Caller<'_, Run>,
    params: &[Val],
    results: &mut [Val],
) -> wasmtime::Result<()> {
    let mut args = [0u64; grid_kernels::wasm::MAX_WASI_PARAMS];
    for (arg, value) in args.iter_mut().zip(params) {
        *arg = match value {
            Val::I32(v) => u64::from(*v as u32),
            Val::I64(v) => *v as u64,
            _ => 0,
        };
    }
    let args = &args[..params.len()];
    let memory = caller
        .get_export(exports::MEMORY)
        .and_then(|e| e.into_memory());
    let answer = match memory {
        Some(memory) => {
            let (bytes, run) = memory.data_and_store_mut(&mut caller);
            run.wasi.call(func, args, bytes)
        }
        // Preparation requires the export; without it every pointer faults.
        None => {
            let run = caller.data_mut();
            run.wasi.call(func, args, &mut [][..])
        }
    };
    match answer {
        Ok(errno) => {
            if let Some(result) = results.first_mut() {
                *result = Val::I32(errno as i32);
            }
            Ok(())
        }
        Err(stop) => {
            caller.data_mut().stop = Some(stop);
            Err(wasmtime::Error::new(Stopped))
        }
    }
}

/// A prepared module compiled and linked, ready to run tasks. Cheap to
/// clone; share it between threads.
#[derive(Clone)]
pub struct Kernel {
    pre: InstancePre<Run>,
    /// Whether the module carries the prepared globals.
    prepared: bool,
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kernel")
    }
}

impl Kernel {
    /// Runs one task in a fresh instance: nothing of an earlier task is
    /// left. `limits` must be the ones the module was prepared with.
    pub fn run(&self, task: TaskConfig, limits: &WasmLimits) -> Result<WasmOutcome, HostFault> {
        let wasi = Wasi::new(task).map_err(|e| HostFault::Config(e.to_string()))?;
        let mut store = Store::new(self.pre.module().engine(), Run { wasi, stop: None });
        let instance = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| HostFault::Instantiate(format!("{e:#}")))?;
        let start = instance
            .get_typed_func::<(), ()>(&mut store, exports::START)
            .map_err(|e| HostFault::Instantiate(format!("{e:#}")))?;
        let ended = start.call(&mut store, ());
        let global = |store: &mut Store<Run>, name: &str| {
            instance
                .get_global(&mut *store, name)
                .map(|g| g.get(&mut *store))
        };
        let fuel_left = match global(&mut store, exports::FUEL) {
            Some(Val::I64(left)) => left,
            _ if !self.prepared => limits.fuel as i64,
            _ => {
                return Err(HostFault::Engine(
                    "no fuel global: is the module prepared?".into(),
                ));
            }
        };
        let trap_code = match global(&mut store, exports::TRAP) {
            Some(Val::I32(code)) => code,
            _ if !self.prepared => 0,
            _ => {
                return Err(HostFault::Engine(
                    "no trap global: is the module prepared?".into(),
                ));
            }
        };
        let ended = match ended {
            Ok(()) => Ended::Returned,
            Err(error) => match error.downcast_ref::<wasmtime::Trap>() {
                Some(wasmtime::Trap::StackOverflow) => Ended::EngineStack,
                Some(_) => Ended::Threw,
                // A WASI stop unwinds with our own error; the rules read the
                // stop itself.
                None if store.data().stop.is_some() => Ended::Threw,
                None => Ended::Other(format!("{error:#}")),
            },
        };
        let Run { wasi, stop } = store.into_data();
        let (stdout, stderr) = wasi.finish();
        outcome(
            limits,
            RunEnd {
                ended,
                stop,
                trap_code,
                fuel_left,
                stdout,
                stderr,
            },
        )
    }
}

#[cfg(test)]
mod tests;
