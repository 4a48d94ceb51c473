//! Fuel checks left out change no outcome. A prepared module checks its
//! fuel at function entries, loop headers and before calls that may reach
//! WASI, and keeps it in a local between; the same module prepared with
//! [`Options::check_every_charge`] checks after every charge and keeps it in
//! the global alone, as preparation did before. For every fuel limit from 0
//! to what a run needs, the two give the same outcome by the host's rule (a
//! run that ends with the fuel below zero ran out, with its whole limit
//! used): the same trap, exit code, fuel used and output, when the fuel
//! runs out in a segment that does not check and the run then returns,
//! traps, calls WASI directly or through a table, or reaches the stack
//! limit.

use grid_kernels::wasm::WasmLimits;
use grid_wasm_prep::{Options, prepare};

use crate::fuzz::{outcome, same_as_eager};
use crate::support::{Run, RunConfig, run_once};
use crate::{prep, wasm};

/// `_start` prints, computes through ifs, blocks and a call, prints again,
/// then runs `tail`. Most of its segments start after an `end` and do not
/// check.
fn kernel(tail: &str) -> String {
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (type $exit_type (func (param i32)))
  (type $write_type (func (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (table 2 funcref)
  (elem (i32.const 0) $exit $fd_write)
  (data (i32.const 16) "hello\n")
  (func $print
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 6))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func $branchy (param i32) (result i32)
    (if (result i32) (i32.and (local.get 0) (i32.const 1))
      (then (i32.add (i32.mul (local.get 0) (i32.const 3)) (i32.const 1)))
      (else (block (result i32) (i32.shr_u (local.get 0) (i32.const 1))))))
  (func $recurse (block) (call $recurse))
  (func (export "_start") (local $i i32)
    (call $print)
    (local.set $i (call $branchy (i32.const 7)))
    (block (local.set $i (call $branchy (local.get $i))))
    (if (i32.eq (local.get $i) (i32.const 11)) (then (call $print)))
    (block (local.set $i (i32.add (local.get $i) (i32.const 1))))
    (block (local.set $i (i32.mul (local.get $i) (i32.const 2))))
    (i32.store (i32.const 100) (local.get $i))
    {tail}))"#
    )
}

fn run(wat: &str, fuel: u64, options: &Options) -> Run {
    let limits = WasmLimits {
        fuel,
        ..WasmLimits::DEFAULT
    };
    let prepared = prepare(&wasm(wat), &limits, options).unwrap_or_else(|e| panic!("{e}"));
    run_once(&prepared.bytes, &RunConfig::default())
}

/// Runs `wat` with every limit up to what it needs and one more, both
/// ways, and compares; returns the runs that went on past the charge that
/// took their fuel below zero (where checking every charge trapped).
fn every_limit(wat: &str, options: &Options) -> Vec<Run> {
    let eager = Options {
        check_every_charge: true,
        ..options.clone()
    };
    let plenty = 1_000_000;
    let needed = plenty - run(wat, plenty, options).fuel_left.unwrap() as u64;
    let mut went_on = Vec::new();
    for fuel in 0..=needed + 1 {
        let (a, b) = (run(wat, fuel, &eager), run(wat, fuel, options));
        if let Err(e) = same_as_eager(&a, &b, fuel) {
            panic!("with {fuel} fuel of the {needed} needed: {e}\n{wat}");
        }
        // Short of what it needs, it runs out and uses all of it.
        let out = outcome(&b, fuel).unwrap();
        assert_eq!(out.fuel_used == fuel, fuel <= needed, "{fuel} of {needed}");
        if (b.fuel_left, b.trap_code, &b.trap) != (a.fuel_left, a.trap_code, &a.trap) {
            went_on.push(b);
        }
    }
    went_on
}

#[test]
fn running_out_where_no_check_is_the_same_outcome_however_the_run_goes_on() {
    for tail in [
        // returns
        "",
        // traps on its own
        "unreachable",
        // imports, directly ($print left the iovec at 0)
        "(drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
         (call $exit (i32.const 5))",
        // imports through the table
        "(drop (call_indirect (type $write_type)
           (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8) (i32.const 1)))
         (call_indirect (type $exit_type) (i32.const 3) (i32.const 0))",
        // a division by zero guarded by nothing
        "(drop (i32.div_u (i32.const 1) (i32.sub (local.get $i) (local.get $i))))",
    ] {
        let went_on = every_limit(&kernel(tail), &Options::DEFAULT);
        assert!(!went_on.is_empty(), "no run went past running out: {tail}");
    }
}

#[test]
fn running_out_just_before_the_stack_limit_is_running_out() {
    // $recurse charges [block end] at its entry (checked), then [call end]
    // after the block (not checked), then calls itself: with the right
    // fuel the last charge goes below zero and the next frame passes the
    // stack limit, which checking every charge never reaches.
    let wat = kernel("(call $recurse)");
    let options = Options {
        stack_budget: 64 * 3 + 8 * 4 + 64 * 12,
        ..Options::DEFAULT
    };
    let full = run(&wat, 1_000_000, &options);
    assert_eq!(full.trap_code, Some(2), "{full:?}");
    let went_on = every_limit(&wat, &options);
    assert!(
        went_on
            .iter()
            .any(|run| run.trap_code == Some(2) && run.fuel_left < Some(0)),
        "no run reached the stack limit having run out"
    );
}

#[test]
fn a_run_can_end_below_zero_without_trapping_and_that_is_running_out() {
    // By hand: _start is one segment [i32.const drop block end] of 4
    // (checked) and one [nop end] of 2 after the block (not checked).
    let wat = r#"(module (memory (export "memory") 1)
        (func (export "_start") i32.const 0 drop block end nop))"#;
    let eager = Options {
        check_every_charge: true,
        ..Options::DEFAULT
    };
    for fuel in [4, 5] {
        let lazy = run(wat, fuel, &Options::DEFAULT);
        assert_eq!((&lazy.trap, lazy.trap_code), (&None, Some(0)));
        assert_eq!(lazy.fuel_left, Some(fuel as i64 - 6));
        assert_eq!(outcome(&lazy, fuel).unwrap().ended, "out of fuel");
        let checked = run(wat, fuel, &eager);
        assert_eq!(checked.trap_code, Some(1));
        assert_eq!(outcome(&checked, fuel), outcome(&lazy, fuel));
    }
    let enough = run(wat, 6, &Options::DEFAULT);
    assert_eq!((enough.trap_code, enough.fuel_left), (Some(0), Some(0)));
    assert_eq!(outcome(&enough, 6).unwrap().ended, "returned");
}

#[test]
fn normal_runs_use_the_same_fuel_as_checking_every_charge() {
    let eager = Options {
        check_every_charge: true,
        ..Options::DEFAULT
    };
    let wat = kernel("(call $exit (i32.const 3))");
    let (a, b) = (
        run(&wat, 10_000, &eager),
        run(&wat, 10_000, &Options::DEFAULT),
    );
    assert_eq!(b.exit, Some(3));
    assert_eq!(b.stdout, b"hello\nhello\n");
    assert_eq!(
        (a.exit, &a.stdout, a.fuel_left),
        (b.exit, &b.stdout, b.fuel_left)
    );
}

#[test]
fn checks_are_at_entries_loop_headers_and_calls_that_may_reach_wasi() {
    let module = |elem: &str| {
        format!(
            r#"(module
          (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
          (type $v (func))
          (memory (export "memory") 1)
          (table 2 funcref)
          (elem (i32.const 0) {elem})
          (func $f)
          (func (export "_start") (local $i i32)
            (if (local.get $i) (then nop) (else nop))
            (block (block nop))
            (loop $l (br_if $l (i32.const 0)))
            (call_indirect (type $v) (i32.const 0))
            (call $exit (i32.const 0))))"#
        )
    };
    // $f's entry, _start's entry and loop header, the call of $exit; the
    // call_indirect only if $exit is in a table.
    let checks = |elem: &str| prep(&module(elem)).info.instrumentation.fuel_checks;
    assert_eq!(checks("$f"), 4);
    assert_eq!(checks("$f $exit"), 5);
    let every = prepare(
        &wasm(&module("$f")),
        &WasmLimits::DEFAULT,
        &Options {
            check_every_charge: true,
            ..Options::DEFAULT
        },
    )
    .unwrap()
    .info
    .instrumentation;
    // One a segment: $f's 1, and _start's [if] [then] [else] [end end]
    // [end] [loop] [header] [after the loop] = 9.
    assert_eq!((every.fuel_charges, every.fuel_checks), (9, 9));
}
