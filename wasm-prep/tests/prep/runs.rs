//! Prepared modules run under wasmi: they behave as the originals do, and
//! fuel, the stack limit, NaN canonicalization and the memory limit do
//! exactly what the crate's docs say, checked against figures worked out by
//! hand from those docs rather than from the code.

use grid_kernels::wasm::{Trap, WasmLimits};
use grid_wasm_prep::{Options, prepare};

use crate::support::{RunConfig, run_once};
use crate::{prep, prep_with, wasm};

const HELLO: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello\n")
  (func $fib (param i32) (result i32)
    (if (result i32) (i32.lt_u (local.get 0) (i32.const 2))
      (then (local.get 0))
      (else (i32.add
        (call $fib (i32.sub (local.get 0) (i32.const 1)))
        (call $fib (i32.sub (local.get 0) (i32.const 2)))))))
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 6))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    ;; fib(20) = 6765: exit with its low byte, 109
    (call $exit (i32.and (call $fib (i32.const 20)) (i32.const 255)))))"#;

#[test]
fn a_prepared_module_prints_and_exits_as_the_original_does() {
    let original = wasm(HELLO);
    let prepared = prep(HELLO);
    let config = RunConfig::default();
    let before = run_once(&original, &config);
    let after = run_once(&prepared.bytes, &config);
    assert_eq!(before.stdout, b"hello\n");
    assert_eq!(before.exit, Some(109));
    assert_eq!((after.stdout, after.exit), (before.stdout, before.exit));
    assert_eq!(after.trap, None);
    assert_eq!(after.trap_code, Some(0));
    assert_eq!(prepared.info.imports, ["fd_write", "proc_exit"]);
    assert_eq!(prepared.info.functions, 2);
    assert_eq!(prepared.info.imported_functions, 2);
}

/// Fuel used by `_start`'s body (and `$f`'s, a function it may call).
fn fuel_used(body: &str, f: &str, limits: &WasmLimits) -> u64 {
    let wat = format!(
        r#"(module (memory (export "memory") 1)
             (func $f {f})
             (func (export "_start") (local $i i32) {body}))"#
    );
    let prepared = prep_with(&wat, limits, &Options::DEFAULT);
    let run = run_once(&prepared.bytes, &RunConfig::default());
    assert_eq!(run.trap, None, "{wat}");
    limits.fuel - run.fuel_left.unwrap() as u64
}

#[test]
fn fuel_follows_the_documented_cost_model() {
    let limits = WasmLimits {
        fuel: 1_000_000,
        memory_mib: 1,
        ..WasmLimits::DEFAULT
    };
    // (body of _start, body of $f, fuel by the model, how)
    let cases: &[(&str, &str, u64, &str)] = &[
        ("i32.const 0 drop", "", 3, "one segment: const, drop, end"),
        (
            "loop $l local.get $i i32.const 1 i32.add local.tee $i
                     i32.const 10 i32.lt_u br_if $l end",
            "",
            1 + 8 * 10 + 1,
            "entry [loop], 10 x header [get const add tee const lt br_if end], [end]",
        ),
        (
            "i32.const 1 if nop else nop nop end nop",
            "",
            2 + 2 + 2,
            "[const if], then [nop else], after [nop end]",
        ),
        (
            "i32.const 0 if nop else nop nop end nop",
            "",
            2 + 3 + 2,
            "[const if], else [nop nop end], after [nop end]",
        ),
        (
            "block i32.const 1 br_if 0 nop nop end nop",
            "",
            6 + 2,
            "[block const br_if nop nop end] paid whole, [nop end]",
        ),
        (
            "call $f call $f",
            "nop",
            3 + 2 * 2,
            "[call call end], 2 x $f [nop end]",
        ),
        (
            "i32.const 0 i32.const 0 i32.const 65536 memory.fill",
            "",
            5 + 65536 / 8,
            "5 instructions, 1 per 8 bytes filled",
        ),
        (
            "i32.const 0 i32.const 8 i32.const 100 memory.copy",
            "",
            5 + 100 / 8,
            "5 instructions, 100 bytes rounded down",
        ),
        (
            "i32.const 2 memory.grow drop",
            "",
            4 + 2 * 8192,
            "4 instructions, 8192 per page grown",
        ),
        (
            "i32.const 100 memory.grow drop",
            "",
            4,
            "4 instructions, a failed grow grows nothing",
        ),
    ];
    for &(body, f, expected, how) in cases {
        assert_eq!(fuel_used(body, f, &limits), expected, "{how}: {body}");
    }
}

#[test]
fn an_infinite_loop_runs_out_of_fuel_at_the_same_point_every_run() {
    let wat = r#"(module (memory (export "memory") 1)
        (func (export "_start") (loop (br 0))))"#;
    let limits = WasmLimits {
        fuel: 1_000,
        ..WasmLimits::DEFAULT
    };
    let prepared = prep_with(wat, &limits, &Options::DEFAULT);
    let runs: Vec<_> = (0..3)
        .map(|_| run_once(&prepared.bytes, &RunConfig::default()))
        .collect();
    for run in &runs {
        assert!(run.trap.is_some());
        assert_eq!(run.trap_code, Some(i32::from(Trap::OutOfFuel.code())));
        // [loop] = 1, then 2 an iteration ([br end]): 999 - 2 x 500 = -1.
        assert_eq!(run.fuel_left, Some(-1));
    }
    assert_eq!(runs[0], runs[1]);
    assert_eq!(runs[1], runs[2]);
}

const RECURSE: &str = r#"(module (memory (export "memory") 1)
    (func $f
      ;; count the depth in memory[0], then recurse forever
      (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1)))
      (call $f))
    (func (export "_start") (call $f)))"#;

fn depth(options: &Options) -> (u32, Option<i32>) {
    let prepared = prep_with(RECURSE, &WasmLimits::DEFAULT, options);
    let config = RunConfig {
        max_recursion_depth: Some(1_000_000),
        ..RunConfig::default()
    };
    let run = run_once(&prepared.bytes, &config);
    assert!(run.trap.is_some());
    let depth = u32::from_le_bytes(run.memory[0..4].try_into().unwrap());
    (depth, run.trap_code)
}

#[test]
fn unbounded_recursion_stops_at_the_same_depth_every_run() {
    // _start weighs 64 (no locals, nothing on its stack at once but the
    // call's nothing); $f weighs 64 + 8 x 3 (const, load, const) = 88. $f's
    // n-th frame fits while 64 + 88n <= budget.
    let options = Options::DEFAULT;
    let expected = (options.stack_budget - 64) / 88;
    let first = depth(&options);
    assert_eq!(first, (expected, Some(i32::from(Trap::StackLimit.code()))));
    assert_eq!(depth(&options), first);
    let small = Options {
        stack_budget: 64 + 88 * 10,
        ..Options::DEFAULT
    };
    assert_eq!(depth(&small).0, 10);
    // And the original overflows wasmi's own stack somewhere else.
    let original = run_once(
        &wasm(RECURSE),
        &RunConfig {
            max_recursion_depth: Some(1_000_000),
            ..RunConfig::default()
        },
    );
    assert!(original.trap.is_some());
    assert_ne!(
        u32::from_le_bytes(original.memory[0..4].try_into().unwrap()),
        expected
    );
}

#[test]
fn calls_in_a_loop_do_not_add_up_on_the_stack() {
    // 10,000 calls, direct and through a table, each returning: the depth
    // never passes 2, whatever the number of calls.
    let wat = r#"(module (memory (export "memory") 1)
      (type $v (func))
      (table 1 funcref) (elem (i32.const 0) $g)
      (func $g (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1))))
      (func $f (call $g) (call_indirect (type $v) (i32.const 0)))
      (func (export "_start") (local $i i32)
        (loop $l
          (call $f)
          (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1)))
                              (i32.const 5000))))))"#;
    let options = Options {
        stack_budget: 300,
        ..Options::DEFAULT
    };
    let prepared = prep_with(wat, &WasmLimits::DEFAULT, &options);
    let run = run_once(&prepared.bytes, &RunConfig::default());
    assert_eq!((run.trap, run.trap_code), (None, Some(0)));
    assert_eq!(words(&run.memory, 0..4), [10_000]);
    assert_eq!(prepared.info.instrumentation.call_restores, 3);
}

#[test]
fn a_guarded_division_after_a_fuel_check_still_divides() {
    // Seed 5700's shape: a segment starts after `end`, so the prepared
    // module checks fuel (an `if` on `i64.lt_s`) just before the guard
    // wasm-smith writes around a division. The divisor is 1, never 0.
    let wat = r#"(module (memory (export "memory") 1)
      (func (export "_start") (local $d i32)
        (block)
        (i32.store (i32.const 0)
          (i32.div_u (i32.const 7)
            (select (i32.const 1) (local.get $d) (i32.eqz (local.get $d)))))))"#;
    let config = RunConfig::default();
    let before = run_once(&wasm(wat), &config);
    let after = run_once(&prep(wat).bytes, &config);
    assert_eq!(
        (&before.trap, &before.memory[..4]),
        (&None, &[7, 0, 0, 0][..])
    );
    assert_eq!(
        (&after.trap, &after.memory[..4]),
        (&None, &[7, 0, 0, 0][..])
    );
}

#[test]
fn funcref_tables_and_reference_instructions_run_as_before() {
    // Reference types as a kernel may use them: funcref only, in several
    // tables, with every table instruction, ref.func, ref.null, ref.is_null
    // and a typed select.
    let wat = r#"(module (memory (export "memory") 1)
      (type $v (func (result i32)))
      (table $t 2 10 funcref)
      (table $u 1 funcref)
      (elem declare func $a $b)
      (func $a (result i32) (i32.const 11))
      (func $b (result i32) (i32.const 22))
      (func (export "_start")
        (table.set $t (i32.const 0) (ref.func $a))
        (table.fill $t (i32.const 1) (ref.func $b) (i32.const 1))
        (i32.store (i32.const 0) (table.grow $t (ref.null func) (i32.const 3)))
        (i32.store (i32.const 4) (table.size $t))
        (i32.store (i32.const 8) (call_indirect $t (type $v) (i32.const 0)))
        (i32.store (i32.const 12) (call_indirect $t (type $v) (i32.const 1)))
        (i32.store (i32.const 16) (ref.is_null (table.get $t (i32.const 4))))
        (table.copy $u $t (i32.const 0) (i32.const 1) (i32.const 1))
        (i32.store (i32.const 20) (call_indirect $u (type $v) (i32.const 0)))
        (i32.store (i32.const 24)
          (ref.is_null (select (result funcref)
            (ref.null func) (ref.func $a) (i32.const 0))))))"#;
    let prepared = prep(wat);
    wasmparser::Validator::new_with_features(crate::WASMTIME_48_NO_GC)
        .validate_all(&prepared.bytes)
        .expect("wasmtime 48 without gc validates it");
    let config = RunConfig::default();
    let before = run_once(&wasm(wat), &config);
    let after = run_once(&prepared.bytes, &config);
    assert_eq!(before.trap, None);
    assert_eq!(words(&before.memory, 0..28), [2, 5, 11, 22, 1, 22, 0]);
    assert_eq!((after.trap, after.trap_code), (None, Some(0)));
    assert_eq!(words(&after.memory, 0..28), [2, 5, 11, 22, 1, 22, 0]);
}

const NANS: &str = r#"(module (memory (export "memory") 1)
  (func (export "_start")
    ;; 0: 0/0, stored
    (f32.store (i32.const 0) (f32.div (f32.const 0) (f32.const 0)))
    ;; 4: a NaN with a payload, through arithmetic, stored
    (f32.store (i32.const 4)
      (f32.add (f32.reinterpret_i32 (i32.const 0x7fa00001)) (f32.const 1)))
    ;; 8: a negated NaN, reinterpreted
    (i32.store (i32.const 8)
      (i32.reinterpret_f32 (f32.neg (f32.reinterpret_i32 (i32.const 0x7fc00000)))))
    ;; 12: copysign with a negative NaN's sign
    (f32.store (i32.const 12)
      (f32.copysign (f32.const 1) (f32.reinterpret_i32 (i32.const 0xffc00000))))
    ;; 16: f64 0/0, stored
    (f64.store (i32.const 16) (f64.div (f64.const 0) (f64.const 0)))
    ;; 24: an f64 NaN with a payload, reinterpreted
    (i64.store (i32.const 24)
      (i64.reinterpret_f64 (f64.reinterpret_i64 (i64.const 0xfff0000000000bad))))
    ;; 32: SIMD arithmetic on NaN lanes
    (v128.store (i32.const 32)
      (f32x4.add (v128.const i32x4 0x7fa00001 0 0xffc00000 1)
                 (v128.const f32x4 1 1 1 1)))
    ;; 48: a payload NaN splatted
    (v128.store (i32.const 48)
      (f32x4.splat (f32.reinterpret_i32 (i32.const 0xffa00002))))
    ;; 64: f64x2 sqrt of -1 and 4
    (v128.store (i32.const 64) (f64x2.sqrt (v128.const f64x2 -1 4)))
    ;; 80: f64 lanes that are numbers though their halves look like f32 NaNs
    (v128.store (i32.const 80)
      (f64x2.add (v128.const i64x2 0x7fc000007fc00000 0x7fc000007fc00000)
                 (v128.const f64x2 0 0)))
  ))"#;

fn words(memory: &[u8], range: std::ops::Range<usize>) -> Vec<u32> {
    memory[range]
        .chunks(4)
        .map(|w| u32::from_le_bytes(w.try_into().unwrap()))
        .collect()
}

#[test]
fn nans_that_can_be_seen_are_canonical() {
    const NAN: u32 = 0x7fc0_0000;
    const ONE: u32 = 0x3f80_0000;
    let original = run_once(&wasm(NANS), &RunConfig::default());
    let prepared = run_once(&prep(NANS).bytes, &RunConfig::default());
    assert_eq!(prepared.trap, None);
    let m = &prepared.memory;
    assert_eq!(words(m, 0..16), [NAN, NAN, NAN, ONE]);
    assert_eq!(m[16..24], 0x7ff8_0000_0000_0000u64.to_le_bytes());
    assert_eq!(m[24..32], 0x7ff8_0000_0000_0000u64.to_le_bytes());
    assert_eq!(words(m, 32..48), [NAN, ONE, NAN, ONE]);
    assert_eq!(words(m, 48..64), [NAN; 4]);
    assert_eq!(m[64..72], 0x7ff8_0000_0000_0000u64.to_le_bytes());
    assert_eq!(m[72..80], 2f64.to_le_bytes());
    assert_eq!(
        m[80..96],
        [0x7fc0_0000_7fc0_0000u64.to_le_bytes(); 2].concat()
    );
    // Without preparation the bit-moving instructions keep their bits: the
    // test can tell canonicalization from none.
    let o = &original.memory;
    assert_eq!(words(o, 8..16), [0xffc0_0000, 0xbf80_0000]);
    assert_eq!(o[24..32], 0xfff0_0000_0000_0badu64.to_le_bytes());
    assert_eq!(words(o, 48..64), [0xffa0_0002; 4]);
}

#[test]
fn memory_grows_to_the_jobs_limit_and_no_further() {
    let wat = r#"(module (memory (export "memory") 1)
      (func (export "_start")
        (i32.store (i32.const 0) (memory.grow (i32.const 15)))
        (i32.store (i32.const 4) (memory.grow (i32.const 1)))
        (i32.store (i32.const 8) (memory.size))))"#;
    let limits = WasmLimits {
        memory_mib: 1, // 16 pages
        ..WasmLimits::DEFAULT
    };
    let prepared = prep_with(wat, &limits, &Options::DEFAULT);
    assert_eq!(prepared.info.memory_min_pages, 1);
    assert_eq!(prepared.info.memory_max_pages, 16);
    assert_eq!(prepared.info.memory_declared_max_pages, None);
    let run = run_once(&prepared.bytes, &RunConfig::default());
    assert_eq!(words(&run.memory, 0..12), [1, u32::MAX, 16]);
    let original = run_once(&wasm(wat), &RunConfig::default());
    assert_eq!(words(&original.memory, 0..12), [1, 16, 17]);
}

#[test]
fn a_lower_declared_maximum_is_kept() {
    let wat = r#"(module (memory (export "memory") 1 4) (func (export "_start")))"#;
    let prepared = prep(wat);
    assert_eq!(prepared.info.memory_max_pages, 4);
    assert_eq!(prepared.info.memory_declared_max_pages, Some(4));
}

#[test]
fn preparing_twice_gives_the_same_bytes() {
    let a = prepare(&wasm(HELLO), &WasmLimits::DEFAULT, &Options::DEFAULT).unwrap();
    let b = prepare(&wasm(HELLO), &WasmLimits::DEFAULT, &Options::DEFAULT).unwrap();
    assert_eq!(a, b);
}
