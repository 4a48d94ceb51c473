//! Kernels written by hand in the shape preparation gives them (the fuel and
//! trap globals exported), run through wasmtime and the WASI host: each way
//! a run can end, and that no task sees another's state; a kernel reading
//! its file under /data, and the slicehash examples as built by real
//! toolchains (Rust's std, wasi-libc) checked against SHA-256 computed here.

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

// --- /data ------------------------------------------------------------------

/// 1000 bytes, `i * 7 % 256`: the one file of the tests of /data.
fn data_file() -> grid_wasi::DataFile {
    grid_wasi::DataFile {
        name: "data.bin".into(),
        bytes: (0..1000u32).map(|i| (i * 7 % 256) as u8).collect(),
    }
}

fn task_with_data(stdin: &[u8], limits: WasmLimits) -> TaskConfig {
    TaskConfig {
        files: vec![data_file()],
        limits,
        ..task(stdin)
    }
}

/// A kernel in the prepared shape that opens `/data/data.bin` (the path at
/// 300), seeks to `offset`, reads up to `len` bytes to 1024 in one
/// `fd_read`, and writes what it read to stdout; `proc_exit(errno)` for
/// the first call that fails.
fn slice_kernel(offset: i64, len: u32, fuel: i64) -> Kernel {
    let text = format!(
        r#"(module
            (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
            (import "wasi_snapshot_preview1" "fd_seek" (func $fd_seek (param i32 i64 i32 i32) (result i32)))
            (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
            (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
            (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
            (memory (export "memory") 1 1)
            (global $fuel (export "browsergrid.fuel") (mut i64) (i64.const {fuel}))
            (global $trap (export "browsergrid.trap") (mut i32) (i32.const 0))
            (data (i32.const 300) "data.bin")
            (func $check (param i32) (if (local.get 0) (then (call $proc_exit (local.get 0)))))
            (func (export "_start")
              ;; Rust std's rights for File::open: base 0x0fbffebe, inheriting 0x0fffffff.
              (call $check (call $path_open (i32.const 3) (i32.const 1) (i32.const 300) (i32.const 8)
                (i32.const 0) (i64.const 0x0fbffebe) (i64.const 0x0fffffff) (i32.const 0) (i32.const 100)))
              (call $check (call $fd_seek (i32.load (i32.const 100)) (i64.const {offset}) (i32.const 0) (i32.const 104)))
              (i32.store (i32.const 0) (i32.const 1024)) (i32.store (i32.const 4) (i32.const {len}))
              (call $check (call $fd_read (i32.load (i32.const 100)) (i32.const 0) (i32.const 1) (i32.const 112)))
              (i32.store (i32.const 4) (i32.load (i32.const 112)))
              (call $check (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 112)))
              (global.set $fuel (i64.sub (global.get $fuel) (i64.const 10))))
        )"#
    );
    let bytes = wat::parse_str(&text).expect("valid test WAT");
    Engine::new().unwrap().compile(&bytes).expect("it compiles")
}

#[test]
fn a_kernel_opens_seeks_and_reads_its_file_through_wasmtime() {
    let limits = WasmLimits {
        stdout_bytes: 4096,
        ..LIMITS
    };
    let bytes = data_file().bytes;
    for (offset, len, expected) in [
        (0, 16, &bytes[..16]),
        (990, 100, &bytes[990..]),
        (123, 456, &bytes[123..579]),
        (1000, 10, &bytes[1000..]),
        (5000, 10, &bytes[1000..]),
    ] {
        let kernel = slice_kernel(offset, len, 1000);
        let outcome = kernel
            .run(task_with_data(b"", limits), &limits)
            .unwrap_or_else(|e| panic!("{offset} {len}: {e}"));
        assert_eq!((outcome.trap, outcome.exit_code), (None, 0), "{outcome:?}");
        assert_eq!(outcome.stdout, expected, "{offset} {len}");
        assert_eq!(outcome.fuel_used, 10, "the kernel's own count");
    }
    // No such file: path_open's noent (44) reaches the kernel.
    let outcome = slice_kernel(0, 16, 1000)
        .run(
            TaskConfig {
                files: Vec::new(),
                ..task_with_data(b"", limits)
            },
            &limits,
        )
        .unwrap();
    assert_eq!((outcome.trap, outcome.exit_code), (None, 44));
    // A negative offset: fd_seek's inval (28).
    let outcome = slice_kernel(-1, 16, 1000)
        .run(task_with_data(b"", limits), &limits)
        .unwrap();
    assert_eq!((outcome.trap, outcome.exit_code), (None, 28));
}

#[test]
fn file_reads_past_the_jobs_fuel_are_out_of_fuel() {
    // 1000 bytes cost 125; a job with 100 fuel cannot read them.
    let limits = WasmLimits {
        fuel: 100,
        stdout_bytes: 4096,
        ..LIMITS
    };
    let outcome = slice_kernel(0, 1000, 100)
        .run(task_with_data(b"", limits), &limits)
        .unwrap();
    assert_eq!(
        (outcome.trap, outcome.exit_code, outcome.fuel_used),
        (Some(Trap::OutOfFuel), 0, 100)
    );
    assert!(outcome.stdout.is_empty());
    // 800 bytes cost exactly 100: allowed.
    let outcome = slice_kernel(0, 800, 100)
        .run(task_with_data(b"", limits), &limits)
        .unwrap();
    assert_eq!((outcome.trap, outcome.stdout.len()), (None, 800));
}

/// examples/slicehash, built by `make examples` (scripts/build-examples.sh).
fn built_example(name: &str) -> Option<Vec<u8>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/build")
        .join(name);
    std::fs::read(&path).ok()
}

#[test]
fn the_slicehash_examples_hash_slices_of_their_file() {
    // The Rust kernel (std::fs) and the C one (wasi-libc's open), as built;
    // unprepared, since this crate does not depend on the preparer: the
    // WASI calls are what is tried here (the end-to-end tests run them
    // prepared, on workers).
    let mut ran = 0;
    for name in ["slicehash.wasm", "slicehash-c.wasm"] {
        let Some(module) = built_example(name) else {
            eprintln!("examples/build/{name} is not built (make examples): skipped");
            continue;
        };
        let kernel = Engine::new().unwrap().compile_unprepared(&module).unwrap();
        let limits = WasmLimits {
            fuel: 1 << 40,
            memory_mib: 16,
            stdout_bytes: 4096,
            stderr_bytes: 4096,
        };
        let bytes = data_file().bytes;
        for (line, slice) in [
            ("data.bin 0 1000\n", &bytes[..]),
            ("data.bin 100 17\n", &bytes[100..117]),
            ("data.bin 999 5\n", &bytes[999..]),
            ("data.bin 5000 5\n", &bytes[1000..]),
            ("data.bin 0 0\n", &bytes[..0]),
        ] {
            let outcome = kernel
                .run(task_with_data(line.as_bytes(), limits), &limits)
                .unwrap();
            let expected = format!("{}\n", grid_kernels::ContentDigest::of(slice).hex());
            assert_eq!(
                (outcome.trap, outcome.exit_code),
                (None, 0),
                "{name} {line:?}: {}",
                String::from_utf8_lossy(&outcome.stderr)
            );
            assert_eq!(
                String::from_utf8_lossy(&outcome.stdout),
                expected,
                "{name} {line:?}"
            );
        }
        let missing = kernel
            .run(task_with_data(b"nope 0 1\n", limits), &limits)
            .unwrap();
        assert_eq!(missing.exit_code, 3, "{name}");
        assert!(missing.stdout.is_empty());
        ran += 1;
    }
    eprintln!("{ran} slicehash kernels ran");
}
