//! What the tests run modules with: wasmi, a tiny deterministic WASI stub
//! (every function of the subset defined, the ones test programs use
//! implemented: stdout and stderr, stdin, arguments, exit, a fixed clock and
//! a seeded random source), and a runner that reports everything a
//! comparison needs: trap or exit, output, final memory, and the prepared
//! module's globals. What runs is the module as given, less a wasmi bug
//! ([`crate::wasmi_workaround`]).
#![allow(dead_code)]

use grid_kernels::wasm::{ValType as WasiValType, WASI_IMPORTS, WASI_MODULE, exports};
use wasmi::{Caller, Config, Engine, Extern, FuncType, Linker, Module, Store, Val, ValType};

/// The state a run's WASI functions share.
#[derive(Debug, Default)]
pub struct Host {
    pub stdin: Vec<u8>,
    stdin_at: usize,
    pub args: Vec<Vec<u8>>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    random: u64,
}

const ESUCCESS: i32 = 0;
const EBADF: i32 = 8;
const EFAULT: i32 = 21;
const ESPIPE: i32 = 70;
/// Output past this is dropped: a runaway fuzzed module must not fill RAM.
const OUTPUT_CAP: usize = 16 << 20;

/// How to run a module.
#[derive(Debug, Clone, Default)]
pub struct RunConfig {
    /// wasmi's own fuel, a backstop for modules that loop forever.
    pub wasmi_fuel: Option<u64>,
    pub stdin: Vec<u8>,
    pub args: Vec<Vec<u8>>,
    /// Also call this exported function, of type [] -> [i32, i64, f64],
    /// after `_start` returned.
    pub then_call: Option<&'static str>,
    /// wasmi's call depth limit (its default is 1000).
    pub max_recursion_depth: Option<usize>,
}

/// What a run gave.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// The trap's message if it trapped (wasmi's fuel backstop included).
    pub trap: Option<String>,
    /// Whether it ran out of wasmi's own fuel.
    pub wasmi_fuel_exhausted: bool,
    /// `proc_exit`'s argument if it called it.
    pub exit: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The memory's bytes at the end.
    pub memory: Vec<u8>,
    /// `browsergrid.fuel` and `browsergrid.trap`, if the module has them.
    pub fuel_left: Option<i64>,
    pub trap_code: Option<i32>,
    /// The results of `then_call`, bits of the f64 included.
    pub results: Option<(i32, i64, u64)>,
}

impl Run {
    /// Trapped or exited: how the run ended, apart from its output.
    pub fn ended(&self) -> (bool, Option<i32>) {
        (self.trap.is_some(), self.exit)
    }
}

pub fn engine(config: &RunConfig) -> Engine {
    let mut c = Config::default();
    c.wasm_simd(true);
    c.consume_fuel(config.wasmi_fuel.is_some());
    if let Some(depth) = config.max_recursion_depth {
        c.set_max_recursion_depth(depth);
        c.set_max_stack_height(64 << 20);
    }
    Engine::new(&c)
}

fn val_type(ty: WasiValType) -> ValType {
    match ty {
        WasiValType::I32 => ValType::I32,
        WasiValType::I64 => ValType::I64,
    }
}

/// A linker with every WASI function of the subset.
pub fn linker(engine: &Engine) -> Linker<Host> {
    let mut linker = Linker::new(engine);
    for import in WASI_IMPORTS {
        let ty = FuncType::new(
            import.params.iter().map(|&t| val_type(t)),
            import.results.iter().map(|&t| val_type(t)),
        );
        let name = import.name;
        linker
            .func_new(
                WASI_MODULE,
                name,
                ty,
                move |mut caller: Caller<'_, Host>, params: &[Val], results: &mut [Val]| {
                    let errno = wasi(name, &mut caller, params)?;
                    if let Some(result) = results.first_mut() {
                        *result = Val::I32(errno);
                    }
                    Ok(())
                },
            )
            .expect("each WASI function is defined once");
    }
    linker
}

fn arg(params: &[Val], i: usize) -> u32 {
    match params.get(i) {
        Some(Val::I32(v)) => *v as u32,
        Some(Val::I64(v)) => *v as u32,
        _ => 0,
    }
}

fn put(memory: &mut [u8], at: u32, bytes: &[u8]) -> bool {
    let at = at as usize;
    match memory.get_mut(at..at + bytes.len()) {
        Some(slot) => {
            slot.copy_from_slice(bytes);
            true
        }
        None => false,
    }
}

fn get_u32(memory: &[u8], at: u32) -> Option<u32> {
    let at = at as usize;
    memory
        .get(at..at + 4)
        .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
}

/// The (pointer, length) pairs of an iovec array.
fn iovecs(memory: &[u8], iovs: u32, count: u32) -> Option<Vec<(u32, u32)>> {
    (0..count.min(1024))
        .map(|i| {
            let at = iovs.checked_add(i * 8)?;
            Some((get_u32(memory, at)?, get_u32(memory, at.checked_add(4)?)?))
        })
        .collect()
}

fn wasi(name: &str, caller: &mut Caller<'_, Host>, params: &[Val]) -> Result<i32, wasmi::Error> {
    if name == "proc_exit" {
        return Err(wasmi::Error::i32_exit(arg(params, 0) as i32));
    }
    if name == "sched_yield" {
        return Ok(ESUCCESS);
    }
    let Some(memory) = caller
        .get_export(exports::MEMORY)
        .and_then(Extern::into_memory)
    else {
        return Ok(EFAULT);
    };
    let (memory, host) = memory.data_and_store_mut(caller);
    let a = |i| arg(params, i);
    let fault = |ok: bool| if ok { ESUCCESS } else { EFAULT };
    Ok(match name {
        "fd_write" => {
            let Some(iovs) = iovecs(memory, a(1), a(2)) else {
                return Ok(EFAULT);
            };
            let mut written = 0u32;
            for (ptr, len) in iovs {
                let Some(bytes) = memory.get(ptr as usize..ptr as usize + len as usize) else {
                    return Ok(EFAULT);
                };
                let sink = match a(0) {
                    1 => &mut host.stdout,
                    2 => &mut host.stderr,
                    _ => return Ok(EBADF),
                };
                let room = OUTPUT_CAP.saturating_sub(sink.len()).min(bytes.len());
                sink.extend_from_slice(&bytes[..room]);
                written = written.wrapping_add(len);
            }
            fault(put(memory, a(3), &written.to_le_bytes()))
        }
        "fd_read" => {
            if a(0) != 0 {
                return Ok(EBADF);
            }
            let Some(iovs) = iovecs(memory, a(1), a(2)) else {
                return Ok(EFAULT);
            };
            let mut read = 0u32;
            for (ptr, len) in iovs {
                let rest = &host.stdin[host.stdin_at..];
                let n = rest.len().min(len as usize);
                if !put(memory, ptr, &rest[..n]) {
                    return Ok(EFAULT);
                }
                host.stdin_at += n;
                read += n as u32;
            }
            fault(put(memory, a(3), &read.to_le_bytes()))
        }
        "args_sizes_get" => {
            let size: usize = host.args.iter().map(|a| a.len() + 1).sum();
            fault(
                put(memory, a(0), &(host.args.len() as u32).to_le_bytes())
                    && put(memory, a(1), &(size as u32).to_le_bytes()),
            )
        }
        "args_get" => {
            let (mut argv, mut buf) = (a(0), a(1));
            for arg in host.args.clone() {
                if !(put(memory, argv, &buf.to_le_bytes())
                    && put(memory, buf, &arg)
                    && put(memory, buf + arg.len() as u32, &[0]))
                {
                    return Ok(EFAULT);
                }
                argv += 4;
                buf += arg.len() as u32 + 1;
            }
            ESUCCESS
        }
        "environ_sizes_get" => fault(put(memory, a(0), &[0; 4]) && put(memory, a(1), &[0; 4])),
        "environ_get" => ESUCCESS,
        "fd_fdstat_get" => {
            if a(0) > 2 {
                return Ok(EBADF);
            }
            // A character device, no flags, all rights.
            let mut stat = [0u8; 24];
            stat[0] = 2;
            stat[8..24].fill(0xff);
            fault(put(memory, a(1), &stat))
        }
        "fd_close" => {
            if a(0) > 2 {
                EBADF
            } else {
                ESUCCESS
            }
        }
        "fd_prestat_get" | "fd_prestat_dir_name" => EBADF,
        "fd_seek" => ESPIPE,
        "clock_res_get" => fault(put(memory, a(1), &1u64.to_le_bytes())),
        "clock_time_get" => fault(put(
            memory,
            a(2),
            &1_700_000_000_000_000_000u64.to_le_bytes(),
        )),
        "random_get" => {
            let mut bytes = vec![0u8; a(1).min(1 << 20) as usize];
            for chunk in bytes.chunks_mut(8) {
                host.random = host.random.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = host.random;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^= z >> 31;
                chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
            }
            fault(put(memory, a(0), &bytes))
        }
        _ => 52, // ENOSYS
    })
}

/// Runs `bytes`' `_start` (after instantiating it) under `config`, with
/// the tests' workaround for a wasmi bug applied.
pub fn run(engine: &Engine, linker: &Linker<Host>, bytes: &[u8], config: &RunConfig) -> Run {
    let bytes = crate::wasmi_workaround::avoid_the_bug(bytes)
        .unwrap_or_else(|e| panic!("the module to run is invalid: {e}"));
    run_unaltered(engine, linker, &bytes, config)
}

/// Runs `bytes` as they are.
pub fn run_unaltered(
    engine: &Engine,
    linker: &Linker<Host>,
    bytes: &[u8],
    config: &RunConfig,
) -> Run {
    let module = Module::new(engine, bytes).expect("wasmi compiles the module");
    let host = Host {
        stdin: config.stdin.clone(),
        args: config.args.clone(),
        ..Host::default()
    };
    let mut store = Store::new(engine, host);
    if let Some(fuel) = config.wasmi_fuel {
        store.set_fuel(fuel).expect("fuel is enabled");
    }
    let mut outcome = Run {
        trap: None,
        wasmi_fuel_exhausted: false,
        exit: None,
        stdout: Vec::new(),
        stderr: Vec::new(),
        memory: Vec::new(),
        fuel_left: None,
        trap_code: None,
        results: None,
    };
    let instance = match linker.instantiate_and_start(&mut store, &module) {
        Ok(instance) => instance,
        Err(e) => {
            outcome.trap = Some(format!("instantiation: {e}"));
            return outcome;
        }
    };
    let start = instance
        .get_typed_func::<(), ()>(&store, exports::START)
        .expect("_start is [] -> []");
    let ended = |outcome: &mut Run, e: wasmi::Error| {
        if let Some(code) = e.i32_exit_status() {
            outcome.exit = Some(code);
        } else {
            outcome.wasmi_fuel_exhausted = e.as_trap_code() == Some(wasmi::TrapCode::OutOfFuel);
            outcome.trap = Some(e.to_string());
        }
    };
    match start.call(&mut store, ()) {
        Ok(()) => {
            if let Some(name) = config.then_call {
                let f = instance
                    .get_typed_func::<(), (i32, i64, f64)>(&store, name)
                    .expect("then_call is [] -> [i32, i64, f64]");
                match f.call(&mut store, ()) {
                    Ok((a, b, c)) => outcome.results = Some((a, b, c.to_bits())),
                    Err(e) => ended(&mut outcome, e),
                }
            }
        }
        Err(e) => ended(&mut outcome, e),
    }
    let global = |name: &str| instance.get_global(&store, name).map(|g| g.get(&store));
    outcome.fuel_left = global(exports::FUEL).and_then(|v| v.i64());
    outcome.trap_code = global(exports::TRAP).and_then(|v| v.i32());
    outcome.memory = instance
        .get_memory(&store, exports::MEMORY)
        .map(|m| m.data(&store).to_vec())
        .unwrap_or_default();
    let host = store.into_data();
    outcome.stdout = host.stdout;
    outcome.stderr = host.stderr;
    outcome
}

/// Runs with a fresh engine and linker: for tests that run a module once.
pub fn run_once(bytes: &[u8], config: &RunConfig) -> Run {
    let engine = engine(config);
    let linker = linker(&engine);
    run(&engine, &linker, bytes, config)
}
