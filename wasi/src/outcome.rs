//! How a run of a user's kernel becomes a task's outcome, or a
//! [`HostFault`] that says nothing about the task: one set of rules for
//! every runtime. The native runtime (`grid-wasm-runtime`) and the browser
//! worker only read what the run left (how `_start` ended, the WASI stop,
//! the two prepared globals) and call [`outcome`], so a browser and a
//! native worker give the same bytes for every task, traps included:
//!
//! 1. `_start` returned: no trap, exit code 0.
//! 2. It threw, and a WASI call had stopped the run: `proc_exit(code)` is
//!    exit code `code`; stdout over its limit is [`Trap::OutputLimit`].
//! 3. It threw with the prepared trap code set (`browsergrid.trap`): that
//!    trap ([`Trap::OutOfFuel`], [`Trap::StackLimit`]).
//! 4. Otherwise the engine's own stack ran out: a host fault, since where
//!    that happens differs between engines and machines; any other
//!    `WebAssembly.RuntimeError` is [`Trap::Wasm`]; anything else thrown is
//!    a host fault.
//!
//! Fuel used is the job's fuel on [`Trap::OutOfFuel`], else the fuel limit
//! less what `browsergrid.fuel` has left (at least 0).

use grid_kernels::wasm::{Trap, WasmLimits, WasmOutcome};

use crate::Stop;

/// How `_start` ended, as the runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    Returned,
    /// It trapped (a `WebAssembly.RuntimeError`, a wasmtime trap), or the
    /// host unwound it after a WASI [`Stop`].
    Threw,
    /// The engine's own stack ran out: V8's `RangeError` ("Maximum call
    /// stack size exceeded"), SpiderMonkey's `InternalError` ("too much
    /// recursion"), wasmtime's stack-overflow trap.
    EngineStack,
    /// Something else was thrown, described.
    Other(String),
}

/// A run that ended for a reason outside the task: not an outcome. The
/// worker reports it as the task's failure, and the task goes elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostFault {
    #[error("the task's configuration is not acceptable: {0}")]
    Config(String),
    #[error("cannot instantiate the kernel: {0}")]
    Instantiate(String),
    #[error("the engine's own stack ran out (the prepared limit should have come first)")]
    EngineStack,
    #[error("the run failed outside the kernel: {0}")]
    Engine(String),
}

/// What a finished run left behind.
#[derive(Debug, Clone)]
pub struct RunEnd {
    pub ended: Ended,
    /// The WASI call that stopped the run, if one did.
    pub stop: Option<Stop>,
    /// `browsergrid.trap`.
    pub trap_code: i32,
    /// `browsergrid.fuel` (a BigInt in JavaScript).
    pub fuel_left: i64,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// The task's outcome, by the rules in this module's header.
pub fn outcome(limits: &WasmLimits, end: RunEnd) -> Result<WasmOutcome, HostFault> {
    let (trap, exit_code) = match end.ended {
        Ended::Returned => (None, 0),
        thrown => match end.stop {
            Some(Stop::Exit(code)) => (None, code),
            Some(Stop::OutputLimit) => (Some(Trap::OutputLimit), 0),
            None => {
                let prepared = u8::try_from(end.trap_code).ok().and_then(Trap::from_code);
                match (prepared, thrown) {
                    (Some(trap), _) => (Some(trap), 0),
                    (None, Ended::EngineStack) => return Err(HostFault::EngineStack),
                    (None, Ended::Threw) => (Some(Trap::Wasm), 0),
                    (None, Ended::Other(error)) => return Err(HostFault::Engine(error)),
                    (None, Ended::Returned) => unreachable!("matched above"),
                }
            }
        },
    };
    let fuel_used = if trap == Some(Trap::OutOfFuel) {
        limits.fuel
    } else {
        limits
            .fuel
            .saturating_sub(u64::try_from(end.fuel_left).unwrap_or(0))
    };
    Ok(WasmOutcome {
        trap,
        exit_code,
        fuel_used,
        stdout: end.stdout,
        stderr: end.stderr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: WasmLimits = WasmLimits {
        fuel: 1000,
        ..WasmLimits::DEFAULT
    };

    fn end(ended: Ended, stop: Option<Stop>, trap_code: i32, fuel_left: i64) -> RunEnd {
        RunEnd {
            ended,
            stop,
            trap_code,
            fuel_left,
            stdout: b"out".to_vec(),
            stderr: Vec::new(),
        }
    }

    fn summary(end: RunEnd) -> Result<(Option<Trap>, i32, u64), HostFault> {
        outcome(&LIMITS, end).map(|o| (o.trap, o.exit_code, o.fuel_used))
    }

    #[test]
    fn a_run_that_returned_or_exited_has_no_trap() {
        assert_eq!(
            summary(end(Ended::Returned, None, 0, 900)),
            Ok((None, 0, 100))
        );
        let exited = end(Ended::Threw, Some(Stop::Exit(7)), 0, 10);
        assert_eq!(summary(exited), Ok((None, 7, 990)));
        let outcome = outcome(&LIMITS, end(Ended::Returned, None, 0, 0)).unwrap();
        assert_eq!(outcome.stdout, b"out");
    }

    #[test]
    fn a_stop_comes_before_the_trap_code_and_the_error() {
        let over = end(Ended::Other("x".into()), Some(Stop::OutputLimit), 1, 5);
        assert_eq!(summary(over), Ok((Some(Trap::OutputLimit), 0, 995)));
    }

    #[test]
    fn the_prepared_traps_come_before_the_engine_stack() {
        // Out of fuel: the fuel global is below zero, the job's fuel is used.
        let fuel = end(Ended::Threw, None, 1, -3);
        assert_eq!(summary(fuel), Ok((Some(Trap::OutOfFuel), 0, 1000)));
        let stack = end(Ended::EngineStack, None, 2, 400);
        assert_eq!(summary(stack), Ok((Some(Trap::StackLimit), 0, 600)));
    }

    #[test]
    fn the_engine_stack_and_strange_errors_are_host_faults_other_traps_are_wasm() {
        assert_eq!(
            summary(end(Ended::EngineStack, None, 0, 10)),
            Err(HostFault::EngineStack)
        );
        assert_eq!(
            summary(end(Ended::Threw, None, 0, 10)),
            Ok((Some(Trap::Wasm), 0, 990))
        );
        // A code that is not a prepared trap counts as none.
        assert_eq!(
            summary(end(Ended::Threw, None, 9, 10)),
            Ok((Some(Trap::Wasm), 0, 990))
        );
        assert_eq!(
            summary(end(Ended::Other("TypeError: x".into()), None, 0, 10)),
            Err(HostFault::Engine("TypeError: x".into()))
        );
        // Returned is returned, whatever the globals say.
        assert_eq!(
            summary(end(Ended::Returned, None, 2, 10)),
            Ok((None, 0, 990))
        );
    }
}
