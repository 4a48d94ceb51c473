//! How a run of a user's kernel becomes a task's outcome, or a
//! [`HostFault`] that says nothing about the task: one set of rules for
//! every runtime. The native runtime (`grid-wasm-runtime`) and the browser
//! worker only read what the run left (how `_start` ended, the WASI stop,
//! the two prepared globals) and call [`outcome`], so a browser and a
//! native worker give the same bytes for every task, traps included. The
//! first rule that applies decides:
//!
//! 1. `browsergrid.fuel` is below zero, however the run ended (returned,
//!    stopped, trapped, even the engine's own stack running out or anything
//!    else thrown): [`Trap::OutOfFuel`].
//! 2. `_start` returned: no trap, exit code 0.
//! 3. It threw, and a WASI call had stopped the run: `proc_exit(code)` is
//!    exit code `code`; stdout over its limit is [`Trap::OutputLimit`]; file
//!    reads that cost more than the job's fuel ([`Stop::OutOfFuel`]) are
//!    [`Trap::OutOfFuel`].
//! 4. It threw with the prepared trap code set (`browsergrid.trap`): that
//!    trap ([`Trap::OutOfFuel`], [`Trap::StackLimit`]).
//! 5. Otherwise the engine's own stack ran out: a host fault, since where
//!    that happens differs between engines and machines; any other
//!    `WebAssembly.RuntimeError` is [`Trap::Wasm`]; anything else thrown is
//!    a host fault.
//!
//! Fuel used is the job's fuel on [`Trap::OutOfFuel`], else the fuel limit
//! less what `browsergrid.fuel` has left.
//!
//! Why rule 1 comes first: the prepared module charges fuel at the start of
//! every segment of code but checks what is left only at a function's
//! entry, at loop headers, before a call that may reach a WASI import and
//! after bulk operations' charges (`grid_wasm_prep::fuel`, rule 5). A charge
//! that takes the fuel below zero may therefore not trap at once; the run
//! goes on, without a loop iteration or a call, to the next check or its
//! end. Fuel only ever decreases, so a run that ends below zero is one that
//! checking after every charge would have stopped, with trap 1 and the
//! job's fuel used, at the first charge past zero; and nothing it did since
//! can be seen: no import ran (each is checked before the call), so stdout,
//! stderr and the exit code are what they were then. Whatever ended it
//! afterwards (a return, a trap of any kind, the engine's stack) is an
//! artefact of checking late, and rule 1 gives the outcome that checking at
//! once would have: even a host fault, which came after the charge past
//! zero, and that charge comes at the same point in every engine. A WASI
//! stop (rule 3) never comes with fuel below zero: a stop ends the run
//! inside an import call, and the fuel was checked just before it. Exactly
//! zero left is not out of fuel.

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
        _ if end.fuel_left < 0 => (Some(Trap::OutOfFuel), 0),
        Ended::Returned => (None, 0),
        thrown => match end.stop {
            Some(stop) => (stop.trap(), stop.exit_code()),
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
        // File reads past the fuel: out of fuel, the job's fuel used,
        // whatever the kernel's own count says.
        let reads = end(Ended::Threw, Some(Stop::OutOfFuel), 0, 600);
        assert_eq!(summary(reads), Ok((Some(Trap::OutOfFuel), 0, 1000)));
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
    fn fuel_below_zero_is_out_of_fuel_however_the_run_ended() {
        // The last charge did not check: the run went on to its end, or to
        // a trap of its own, the stack limit, or the engine's stack.
        for (ended, trap_code) in [
            (Ended::Returned, 0),
            (Ended::Threw, 0),
            (Ended::Threw, 2),
            (Ended::Threw, 1),
            (Ended::EngineStack, 0),
            (Ended::Other("RangeError: x".into()), 0),
        ] {
            let run = end(ended.clone(), None, trap_code, -7);
            let outcome = outcome(&LIMITS, run).unwrap_or_else(|e| panic!("{ended:?}: {e}"));
            assert_eq!(
                (outcome.trap, outcome.exit_code, outcome.fuel_used),
                (Some(Trap::OutOfFuel), 0, 1000),
                "{ended:?}, trap code {trap_code}"
            );
            assert_eq!(outcome.stdout, b"out", "what was written before stays");
        }
        // The least fuel below zero, and exactly zero, which is not out.
        assert_eq!(
            summary(end(Ended::Returned, None, 0, -1)),
            Ok((Some(Trap::OutOfFuel), 0, 1000))
        );
        assert_eq!(
            summary(end(Ended::Returned, None, 0, 0)),
            Ok((None, 0, 1000))
        );
        assert_eq!(
            summary(end(Ended::Threw, None, 0, i64::MIN)),
            Ok((Some(Trap::OutOfFuel), 0, 1000))
        );
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
