//! Kernels written by hand in the shape preparation gives them (the fuel and
//! trap globals exported), run through wasmtime and the WASI host: each way
//! a run can end, and that no task sees another's state.

use grid_kernels::wasm::{Trap, WasmLimits};
use grid_wasi::TaskConfig;

use super::*;

const LIMITS: WasmLimits = WasmLimits {
    fuel: 1_000,
    memory_mib: 1,
    stdout_bytes: 16,
    stderr_bytes: 8,
};

/// A module with the prepared globals and `body` as `_start`'s body; it
/// imports `fd_write` and `proc_exit`, and has "hello\n" at offset 16.
fn kernel(body: &str) -> Kernel {
    let text = format!(
        r#"(module
            (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
            (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
            (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
            (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
            (memory (export "memory") 1 1)
            (global $fuel (export "browsergrid.fuel") (mut i64) (i64.const 1000))
            (global $trap (export "browsergrid.trap") (mut i32) (i32.const 0))
            (global $count (mut i32) (i32.const 0))
            (data (i32.const 16) "hello\n")
            (func $recurse (call $recurse))
            (func (export "_start") {body})
        )"#
    );
    let bytes = wat::parse_str(&text).expect("valid test WAT");
    Engine::new().unwrap().compile(&bytes).expect("it compiles")
}

/// Writes `len` bytes at 16 to `fd` through one iovec at 0.
fn write(fd: u32, len: u32) -> String {
    format!(
        "(i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const {len}))
         (drop (call $fd_write (i32.const {fd}) (i32.const 0) (i32.const 1) (i32.const 8)))"
    )
}

fn task(stdin: &[u8]) -> TaskConfig {
    TaskConfig {
        files: Vec::new(),
        args: vec![b"k.wasm".to_vec()],
        stdin: stdin.to_vec(),
        seed: [7; 32],
        limits: LIMITS,
    }
}

fn run(kernel: &Kernel, stdin: &[u8]) -> Result<WasmOutcome, HostFault> {
    kernel.run(task(stdin), &LIMITS)
}

#[test]
fn a_kernel_that_returns_exits_0_with_its_output_and_fuel() {
    let k = kernel(&format!(
        "{} {} (global.set $fuel (i64.const 900))",
        write(1, 6),
        write(2, 6)
    ));
    let outcome = run(&k, b"").unwrap();
    assert_eq!(
        outcome,
        WasmOutcome {
            trap: None,
            exit_code: 0,
            fuel_used: 100,
            stdout: b"hello\n".to_vec(),
            stderr: b"hello\n".to_vec(),
        }
    );
}

#[test]
fn proc_exit_ends_the_run_with_its_code() {
    let k = kernel(&format!(
        "{} (call $proc_exit (i32.const 3)) unreachable",
        write(1, 5)
    ));
    let outcome = run(&k, b"").unwrap();
    assert_eq!((outcome.trap, outcome.exit_code), (None, 3));
    assert_eq!(outcome.stdout, b"hello");
}

#[test]
fn traps_are_outcomes_and_tell_their_kind() {
    assert_eq!(
        run(&kernel("unreachable"), b"").unwrap().trap,
        Some(Trap::Wasm)
    );
    assert_eq!(
        run(&kernel("(drop (i32.load (i32.const 70000)))"), b"")
            .unwrap()
            .trap,
        Some(Trap::Wasm),
        "out of bounds"
    );
    let fuel = run(
        &kernel("(global.set $fuel (i64.const -3)) (global.set $trap (i32.const 1)) unreachable"),
        b"",
    )
    .unwrap();
    assert_eq!((fuel.trap, fuel.fuel_used), (Some(Trap::OutOfFuel), 1_000));
    let stack = run(&kernel("(global.set $trap (i32.const 2)) unreachable"), b"").unwrap();
    assert_eq!(stack.trap, Some(Trap::StackLimit));
    // More than 16 bytes of stdout: the limit's worth is kept.
    let chatty = run(
        &kernel(&format!("{} {} {}", write(1, 6), write(1, 6), write(1, 6))),
        b"",
    )
    .unwrap();
    assert_eq!(chatty.trap, Some(Trap::OutputLimit));
    assert_eq!(chatty.stdout, b"hello\nhello\nhell");
}

#[test]
fn the_engines_own_stack_running_out_is_a_host_fault_not_an_outcome() {
    let k = kernel("(call $recurse)");
    let ended = std::thread::Builder::new()
        .stack_size(THREAD_STACK)
        .spawn(move || run(&k, b""))
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(ended, Err(HostFault::EngineStack));
}

#[test]
fn every_task_gets_a_fresh_instance_and_its_own_input() {
    // Counts in a global and in memory, then prints what it read from stdin.
    let k = kernel(
        "(global.set $count (i32.add (global.get $count) (i32.const 1)))
         (i32.store8 (i32.const 100) (i32.add (i32.load8_u (i32.const 100)) (i32.const 48)))
         (i32.store (i32.const 0) (i32.const 101)) (i32.store (i32.const 4) (i32.const 4))
         (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
         (i32.store8 (i32.const 99) (i32.add (global.get $count) (i32.const 48)))
         (i32.store (i32.const 0) (i32.const 99)) (i32.store (i32.const 4) (i32.const 6))
         (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))",
    );
    for input in [&b"abcd"[..], b"wxyz"] {
        let outcome = run(&k, input).unwrap();
        let mut expected = b"10".to_vec();
        expected.extend_from_slice(input);
        assert_eq!(
            outcome.stdout, expected,
            "a fresh global and memory each time"
        );
    }
}

#[test]
fn random_bytes_depend_on_the_seed_only() {
    let k = kernel(
        "(drop (call $random_get (i32.const 200) (i32.const 8)))
         (i32.store (i32.const 0) (i32.const 200)) (i32.store (i32.const 4) (i32.const 8))
         (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))",
    );
    let first = run(&k, b"").unwrap().stdout;
    assert_eq!(run(&k, b"").unwrap().stdout, first);
    let other = k
        .run(
            TaskConfig {
                seed: [8; 32],
                ..task(b"")
            },
            &LIMITS,
        )
        .unwrap()
        .stdout;
    assert_ne!(other, first);
    assert_eq!(first.len(), 8);
}

#[test]
fn a_module_that_is_not_prepared_or_not_wasm_does_not_compile() {
    let engine = Engine::new().unwrap();
    assert!(matches!(
        engine.compile(b"not wasm"),
        Err(CompileError::Module(_))
    ));
    let unknown_import = wat::parse_str(
        r#"(module (import "env" "f" (func)) (memory (export "memory") 1) (func (export "_start")))"#,
    )
    .unwrap();
    assert!(matches!(
        engine.compile(&unknown_import),
        Err(CompileError::Module(_))
    ));
}

#[test]
fn an_unprepared_module_runs_unmetered_for_comparison_only() {
    let bare = wat::parse_str(
        r#"(module
            (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 1)
            (data (i32.const 16) "hi")
            (func (export "_start")
              (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 2))
              (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#,
    )
    .unwrap();
    let engine = Engine::new().unwrap();
    let outcome = engine
        .compile_unprepared(&bare)
        .unwrap()
        .run(task(b""), &LIMITS)
        .unwrap();
    assert_eq!(
        (outcome.trap, outcome.fuel_used, outcome.stdout.as_slice()),
        (None, 0, &b"hi"[..])
    );
    // The same module as a task's is refused a result: it has no fuel global.
    let as_task = engine.compile(&bare).unwrap().run(task(b""), &LIMITS);
    assert!(matches!(as_task, Err(HostFault::Engine(_))), "{as_task:?}");
}
