//! Users' WebAssembly kernels in the browser: a browser worker (headless
//! Chromium, and Firefox) and a native worker compute every task of wasm
//! jobs with redundancy 2 and quorum 2, so a task is decided only when the
//! browser's outcome and the native one are the same bytes: floating point
//! that makes NaNs (scalar, converted, SIMD), stdin, argv, `random_get`,
//! the clocks, `proc_exit`, stderr, WebAssembly traps, the stdout and memory
//! limits, running out of fuel and the prepared stack limit. The answers are also checked against oracles written here
//! (the float arithmetic redone in Rust, the canonical NaN bits, the WASI
//! clock's fixed start), not against either worker. And a module a browser
//! cannot fetch is its tasks' failure, never an outcome.
//!
//! A user's task runs on the browser worker's kernel thread, off the thread
//! of its socket: a task longer than the coordinator's idle timeout
//! completes on the same connection with the sum its oracle gives, and the
//! donor's pause stops it (the task is handed back, not failed: three
//! pauses do not fail it, and it is done after the resume); a task past the page's wall-clock limit is stopped, reported
//! as a host fault until the job fails on 3 workers, and the kernel thread
//! that replaces the stopped one computes the next job, all on one
//! connection.

use std::time::{Duration, Instant};

use grid_cli::client::Client;
use grid_coordinator::ServerConfig;
use grid_kernels::wasm::{Trap, WasmInputs};
use grid_kernels::{JobResult, WasmTaskResult};
use grid_protocol::WorkerKind;
use grid_protocol::api::{JobRequest, JobState, WasmRequest, WorkerInfo};
use grid_tests::browser::{BrowserTest, PAGE_TIMEOUT, ensure_wasm_built, exclusive_grid};
use grid_tests::browser_cache::Firefox;
use grid_tests::wait_for_workers;

const JOB_TIMEOUT: Duration = Duration::from_secs(180);

/// Iterations of the float loop, per task.
const FLOAT_ITERATIONS: u32 = 300_000;

/// Reads a line from stdin; its first byte is `x`. Sums `sqrt(i·x + 1) /
/// (i + 0.5)` in f64 and `i / (f32(x) + 0.25)` in f32 over
/// [`FLOAT_ITERATIONS`], then writes 100 raw bytes: the two sums, and NaNs
/// made every way a kernel can (0/0, sqrt of a negative, inf − inf,
/// inf × 0, demoted, promoted, through reinterpret and in SIMD lanes), next
/// to infinities that must stay what they are.
fn floats_wat(iterations: u32) -> String {
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start") (local $x f64) (local $i i32) (local $acc f64) (local $accf f32)
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 64))
    (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
    (local.set $x (f64.convert_i32_u (i32.load8_u (i32.const 1024))))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (i32.const {iterations})))
      (local.set $acc (f64.add (local.get $acc)
        (f64.div
          (f64.sqrt (f64.add (f64.mul (f64.convert_i32_u (local.get $i)) (local.get $x)) (f64.const 1)))
          (f64.add (f64.convert_i32_u (local.get $i)) (f64.const 0.5)))))
      (local.set $accf (f32.add (local.get $accf)
        (f32.div (f32.convert_i32_u (local.get $i))
                 (f32.add (f32.demote_f64 (local.get $x)) (f32.const 0.25)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (f64.store (i32.const 2048) (local.get $acc))
    (f32.store (i32.const 2056) (local.get $accf))
    (f32.store (i32.const 2060) (f32.div (f32.const 0) (f32.const 0)))
    (f64.store (i32.const 2064) (f64.div (f64.sub (local.get $x) (local.get $x)) (f64.const 0)))
    (f32.store (i32.const 2072) (f32.sqrt (f32.neg (f32.demote_f64 (local.get $x)))))
    (f64.store (i32.const 2076) (f64.sqrt (f64.neg (local.get $x))))
    (f32.store (i32.const 2084) (f32.demote_f64 (f64.div (f64.const 0) (f64.sub (local.get $x) (local.get $x)))))
    (f64.store (i32.const 2088) (f64.promote_f32 (f32.sqrt (f32.const -2))))
    (f64.store (i32.const 2096) (f64.neg (f64.div (local.get $x) (f64.const 0))))
    (i64.store (i32.const 2104) (i64.reinterpret_f64 (f64.sub (f64.const inf) (f64.div (local.get $x) (f64.const 0)))))
    (f32.store (i32.const 2112) (f32.mul (f32.const inf) (f32.sub (f32.const 1) (f32.const 1))))
    (v128.store (i32.const 2116)
      (f32x4.div (v128.const f32x4 0 1 -1 0) (v128.const f32x4 0 0 0 0)))
    (v128.store (i32.const 2132) (f64x2.sqrt (f64x2.splat (f64.neg (local.get $x)))))
    (i32.store (i32.const 0) (i32.const 2048))
    (i32.store (i32.const 4) (i32.const 100))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#
    )
}

const NAN32: [u8; 4] = 0x7fc0_0000u32.to_le_bytes();
const NAN64: [u8; 8] = 0x7ff8_0000_0000_0000u64.to_le_bytes();

/// What [`floats_wat`] writes for an input starting with `first`, computed
/// here in Rust: IEEE arithmetic in the same order gives the same bits, and
/// every NaN a prepared module stores is the canonical one.
fn floats_expected(first: u8) -> Vec<u8> {
    let x = f64::from(first);
    let (mut acc, mut accf) = (0f64, 0f32);
    for i in 0..FLOAT_ITERATIONS {
        acc += (f64::from(i) * x + 1.0).sqrt() / (f64::from(i) + 0.5);
        accf += i as f32 / (x as f32 + 0.25);
    }
    let mut out = Vec::new();
    out.extend(acc.to_le_bytes());
    out.extend(accf.to_le_bytes());
    out.extend(NAN32); // 0/0
    out.extend(NAN64); // 0/0
    out.extend(NAN32); // sqrt(-x)
    out.extend(NAN64); // sqrt(-x)
    out.extend(NAN32); // demoted 0/0
    out.extend(NAN64); // promoted sqrt(-2)
    out.extend(f64::NEG_INFINITY.to_le_bytes());
    out.extend(NAN64); // inf - inf, reinterpreted
    out.extend(NAN32); // inf * 0
    for lane in [
        NAN32,
        f32::INFINITY.to_le_bytes(),
        f32::NEG_INFINITY.to_le_bytes(),
        NAN32,
    ] {
        out.extend(lane);
    }
    out.extend(NAN64);
    out.extend(NAN64);
    assert_eq!(out.len(), 100);
    out
}

/// Writes 16 bytes of `random_get`, three clock readings (realtime,
/// monotonic with a precision of -1 as an i64, realtime), argc and argv's
/// size, argv's strings, then stdin; stdin again on stderr; and exits with
/// stdin's first byte mod 3 through `proc_exit`.
const IO: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 4096))
    (i32.store (i32.const 4) (i32.const 256))
    (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
    (drop (call $random (i32.const 1024) (i32.const 16)))
    (drop (call $clock (i32.const 0) (i64.const 1) (i32.const 1040)))
    (drop (call $clock (i32.const 1) (i64.const -1) (i32.const 1048)))
    (drop (call $clock (i32.const 0) (i64.const 0) (i32.const 1056)))
    (drop (call $sizes (i32.const 1064) (i32.const 1068)))
    (drop (call $args (i32.const 512) (i32.const 1072)))
    (i32.store (i32.const 16) (i32.const 1024))
    (i32.store (i32.const 20) (i32.add (i32.const 48) (i32.load (i32.const 1068))))
    (i32.store (i32.const 24) (i32.const 4096))
    (i32.store (i32.const 28) (i32.load (i32.const 8)))
    (drop (call $write (i32.const 1) (i32.const 16) (i32.const 2) (i32.const 32)))
    (drop (call $write (i32.const 2) (i32.const 24) (i32.const 1) (i32.const 32)))
    (call $exit (i32.rem_u (i32.load8_u (i32.const 4096)) (i32.const 3)))))"#;

/// 2026-01-01T00:00:00Z in nanoseconds: where the WASI realtime clock
/// starts; every read advances the clocks by 1000 ns.
const REALTIME_START_NS: u64 = 1_767_225_600 * 1_000_000_000;

/// Ends as stdin's first byte says: `u` unreachable, `d` an integer
/// division by zero, `m` a load out of bounds (all three trap 4), `o`
/// writing 100 bytes at a time for ever (the stdout limit), `g` growing
/// memory past the job's 1 MiB (-1), then by a page (1, the old size), and
/// writing those and the size (2), `x` writing `x` and `proc_exit(42)`.
const ENDINGS: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (local $c i32)
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 16))
    (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
    (local.set $c (i32.load8_u (i32.const 1024)))
    (if (i32.eq (local.get $c) (i32.const 117)) (then unreachable))
    (if (i32.eq (local.get $c) (i32.const 100))
      (then (drop (i32.div_s (i32.const 1) (i32.sub (local.get $c) (local.get $c))))))
    (if (i32.eq (local.get $c) (i32.const 109))
      (then (drop (i32.load (i32.const 0x7fffffff)))))
    (if (i32.eq (local.get $c) (i32.const 111))
      (then
        (i32.store (i32.const 16) (i32.const 1024))
        (i32.store (i32.const 20) (i32.const 100))
        (loop $w
          (drop (call $write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))
          (br $w))))
    (if (i32.eq (local.get $c) (i32.const 103))
      (then
        (i32.store (i32.const 32) (memory.grow (i32.const 1000)))
        (i32.store (i32.const 36) (memory.grow (i32.const 1)))
        (i32.store (i32.const 40) (memory.size))
        (i32.store (i32.const 16) (i32.const 32))
        (i32.store (i32.const 20) (i32.const 12))
        (drop (call $write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))))
    (if (i32.eq (local.get $c) (i32.const 120))
      (then
        (i32.store (i32.const 16) (i32.const 1024))
        (i32.store (i32.const 20) (i32.const 1))
        (drop (call $write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))
        (call $exit (i32.const 42))))))"#;

const ENDING_LINES: &str = "u\nd\nm\no\ng\nx\n";

/// Runs out of fuel (at `LAPSE_FUEL`) in a segment that is not checked
/// (the one after a block's end), then returns (line "r"), traps ("t") or
/// calls `proc_exit` ("x"): each is trap 1 with the job's fuel used, as if
/// the charge that went below zero had trapped at once.
const LAPSE: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 1))
    (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
    (block)
    nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop nop
    (if (i32.eq (i32.load8_u (i32.const 16)) (i32.const 116)) (then unreachable))
    (if (i32.eq (i32.load8_u (i32.const 16)) (i32.const 120)) (then (call $exit (i32.const 3))))))"#;

/// Enough for the entry segment (about 20 instructions), not for the
/// 200-odd after the block.
const LAPSE_FUEL: u64 = 100;

/// Never ends.
const SPIN: &str = r#"(module (memory (export "memory") 1)
  (func (export "_start") (loop $l (br $l))))"#;

/// Recurses without end, with a frame of a few locals.
const RECURSE: &str = r#"(module (memory (export "memory") 1)
  (func $down (param $n i32) (result i32) (local $a i64) (local $b f64)
    (call $down (i32.add (local.get $n) (i32.const 1))))
  (func (export "_start") (drop (call $down (i32.const 0)))))"#;

/// Recurses without end with a heavy frame (64 v128 locals, which engines
/// keep in 16 bytes each but the stack limit weighs at 8), writing a dot
/// to stdout at every level: the prepared limit must still come before the
/// engine's own stack, at the same depth everywhere, WASI calls included.
fn heavy_recursion_wat() -> String {
    let locals: String = (0..64).map(|i| format!("(local $v{i} v128) ")).collect();
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func $down (param $n i32) {locals}
    (local.set $v63 (i32x4.splat (local.get $n)))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (call $down (i32x4.extract_lane 3 (i32x4.add (local.get $v63) (i32x4.splat (i32.const 1))))))
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 1))
    (i32.store8 (i32.const 16) (i32.const 46))
    (call $down (i32.const 0))))"#
    )
}

/// The levels of [`heavy_recursion_wat`] that write their dot, by the stack
/// model of `wasm-prep/src/stack.rs` (a frame weighs 64 + 8 × (params +
/// locals) + 8 × its deepest operand stack; the budget is 256 KiB):
/// `_start` weighs 64 + 8 × 2 = 80, each level 64 + 8 × 65 + 8 × 4 = 616,
/// and level k enters at 80 + 616 k, over 262144 first at k = 426.
const HEAVY_RECURSION_DEPTH: usize = 425;

/// No donor earns trust: a trusted donor's tasks would be decided by its
/// result alone (but for spot checks), and every task here must be
/// compared.
fn no_trust(config: &mut ServerConfig) {
    config.scheduler.trust_after = None;
}

/// Uploads `wat` as a module (and `lines`, if any, as the tasks' stdin)
/// and submits a job every task of which needs the browser's and the native
/// worker's outcomes to agree.
async fn submit_wasm(
    client: &Client,
    wat: &str,
    lines: Option<&str>,
    edit: impl FnOnce(&mut WasmRequest),
) -> u64 {
    let module = wat::parse_str(wat).expect("the test's WAT");
    let (module, _) = client
        .ensure_blob(module)
        .await
        .expect("the module uploads");
    let mut request = WasmRequest::new(module);
    if let Some(lines) = lines {
        let (blob, _) = client
            .ensure_blob(lines.as_bytes().to_vec())
            .await
            .expect("the inputs upload");
        request.inputs = Some(WasmInputs::Lines(blob));
    }
    edit(&mut request);
    let mut job = JobRequest::new(request);
    job.tasks = lines.is_none().then_some(3);
    job.redundancy = Some(2);
    job.quorum = Some(2);
    client.submit(&job).await.expect("the job is accepted").id
}

/// Waits for a job to be done with every task decided, and returns its
/// per-task lines.
async fn done(client: &Client, id: u64) -> Vec<WasmTaskResult> {
    let status = grid_tests::wait_for_job(client, id, JOB_TIMEOUT).await;
    assert_eq!(status.state, JobState::Done, "{status:?}");
    assert_eq!(status.tasks.done, status.tasks.total, "{status:?}");
    match client.result(id).await.expect("the job's result") {
        JobResult::Wasm { tasks } => {
            assert_eq!(tasks.len(), status.tasks.total as usize);
            tasks
        }
        other => panic!("not a wasm result: {other:?}"),
    }
}

/// Checks that both workers computed every task (each task needs one replica
/// from each), every result of each matched the other's, and nobody was
/// trusted, quarantined or rejected.
fn assert_both_computed_everything(workers: &[WorkerInfo], tasks: u64) {
    assert_eq!(workers.len(), 2, "{workers:#?}");
    for kind in [WorkerKind::Browser, WorkerKind::Native] {
        let worker = workers
            .iter()
            .find(|w| w.kind == kind)
            .unwrap_or_else(|| panic!("no {kind:?} worker: {workers:#?}"));
        assert!(
            worker.tasks_done >= tasks,
            "{worker:?} did not do all {tasks} tasks"
        );
        eprintln!(
            "{kind:?} worker: {} tasks done, {} validated, of {tasks}",
            worker.tasks_done, worker.validated
        );
        // Each of its results matched the other worker's.
        assert!(u64::from(worker.validated) >= tasks, "{worker:?}");
        assert!(!worker.trusted && !worker.quarantined, "{worker:?}");
        assert_eq!(worker.results_rejected, 0, "{worker:?}");
    }
}

const FLOAT_LINES: &str = "a\nz\n0\n~\n \nQ\n";
const IO_LINES: &str = "hello\nworld\n!\nbrowsergrid\n";

/// Submits the jobs (floats, I/O, every way to end, fuel, two stacks) and checks every outcome
/// against this file's oracles; returns the number of tasks.
async fn run_every_job(client: &Client) -> u64 {
    let floats = submit_wasm(
        client,
        &floats_wat(FLOAT_ITERATIONS),
        Some(FLOAT_LINES),
        |_| {},
    )
    .await;
    let io = submit_wasm(client, IO, Some(IO_LINES), |r| {
        r.name = Some("io.wasm".into());
        r.args = vec!["-n".into(), "ünïcode".into()];
        r.seed = Some(7);
    })
    .await;
    let endings = submit_wasm(client, ENDINGS, Some(ENDING_LINES), |r| {
        r.memory_mib = Some(1);
        r.stdout_bytes = Some(1000);
    })
    .await;
    let spin = submit_wasm(client, SPIN, None, |r| r.fuel = Some(1_000_000)).await;
    let lapse = submit_wasm(client, LAPSE, Some("r\nt\nx\n"), |r| {
        r.fuel = Some(LAPSE_FUEL)
    })
    .await;
    let recurse = submit_wasm(client, RECURSE, None, |_| {}).await;
    let heavy = submit_wasm(client, &heavy_recursion_wat(), None, |_| {}).await;

    let tasks = done(client, floats).await;
    for (task, line) in tasks.iter().zip(FLOAT_LINES.lines()) {
        assert_eq!((task.trap, task.exit_code), (None, 0), "{task:?}");
        let stdout = client.task_output(floats, task.task).await.unwrap();
        assert_eq!(
            stdout,
            floats_expected(line.as_bytes()[0]),
            "task {}",
            task.task
        );
    }

    let tasks = done(client, io).await;
    let mut randoms = Vec::new();
    for (task, line) in tasks.iter().zip(IO_LINES.lines()) {
        // A task reads its line without the newline.
        let stdin = line.to_string();
        assert_eq!(task.trap, None, "{task:?}");
        assert_eq!(
            task.exit_code,
            i32::from(line.as_bytes()[0] % 3),
            "{task:?}"
        );
        assert_eq!(task.stderr, stdin, "{task:?}");
        let stdout = client.task_output(io, task.task).await.unwrap();
        let argv = "io.wasm\0-n\0ünïcode\0".as_bytes();
        assert_eq!(stdout.len(), 48 + argv.len() + stdin.len(), "{stdout:?}");
        let u64_at = |at: usize| u64::from_le_bytes(stdout[at..at + 8].try_into().unwrap());
        let u32_at = |at: usize| u32::from_le_bytes(stdout[at..at + 4].try_into().unwrap());
        assert_eq!(u64_at(16), REALTIME_START_NS);
        assert_eq!(u64_at(24), 1000);
        assert_eq!(u64_at(32), REALTIME_START_NS + 2000);
        assert_eq!((u32_at(40), u32_at(44) as usize), (3, argv.len()));
        assert_eq!(&stdout[48..48 + argv.len()], argv);
        assert_eq!(&stdout[48 + argv.len()..], stdin.as_bytes());
        randoms.push(stdout[..16].to_vec());
    }
    randoms.sort();
    randoms.dedup();
    assert_eq!(randoms.len(), 4, "each task has its own random stream");

    let tasks = done(client, endings).await;
    let mut endings_seen = Vec::new();
    for task in &tasks {
        let stdout = client.task_output(endings, task.task).await.unwrap();
        endings_seen.push((task.trap, task.exit_code, stdout));
    }
    // The task read its line, "o" (without the newline), into the buffer.
    let mut output_limit = b"o".to_vec();
    output_limit.resize(100, 0);
    let grown: Vec<u8> = [u32::MAX, 1, 2]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    assert_eq!(
        endings_seen,
        [
            (Some(Trap::Wasm), 0, Vec::new()),
            (Some(Trap::Wasm), 0, Vec::new()),
            (Some(Trap::Wasm), 0, Vec::new()),
            (Some(Trap::OutputLimit), 0, output_limit.repeat(10)),
            (None, 0, grown),
            (None, 42, b"x".to_vec()),
        ]
    );

    for task in done(client, spin).await {
        assert_eq!(task.trap, Some(Trap::OutOfFuel), "{task:?}");
        assert_eq!(task.fuel_used, 1_000_000, "{task:?}");
    }
    for task in done(client, lapse).await {
        assert_eq!(
            (task.trap, task.exit_code, task.fuel_used, task.output_bytes),
            (Some(Trap::OutOfFuel), 0, LAPSE_FUEL, 0),
            "{task:?}"
        );
    }
    for task in done(client, recurse).await {
        assert_eq!(task.trap, Some(Trap::StackLimit), "{task:?}");
        assert!(task.fuel_used > 0, "{task:?}");
    }
    for task in done(client, heavy).await {
        assert_eq!(task.trap, Some(Trap::StackLimit), "{task:?}");
        let stdout = client.task_output(heavy, task.task).await.unwrap();
        assert!(stdout.iter().all(|&b| b == b'.'), "{stdout:?}");
        assert_eq!(stdout.len(), HEAVY_RECURSION_DEPTH, "{task:?}");
    }
    (FLOAT_LINES.lines().count()
        + IO_LINES.lines().count()
        + ENDING_LINES.lines().count()
        + 3 * 3
        + 3) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_and_native_workers_agree_on_every_wasm_outcome() {
    let mut test = BrowserTest::start_with(no_trust).await;
    let client = test.client();
    test.add_worker(1, "native");
    let page = test.open_donor_page(1).await;
    wait_for_workers(&client, "a browser and a native worker", |w| w.len() == 2).await;

    let tasks = run_every_job(&client).await;
    assert_both_computed_everything(&client.workers().await.unwrap(), tasks);
    let compute = page.text("#compute-time").await.unwrap();
    let done = page.text("#tasks-done").await.unwrap();
    eprintln!("the Chromium worker computed {done} tasks in {compute}");
    test.finish(page).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firefox_and_native_workers_agree_on_every_wasm_outcome() {
    ensure_wasm_built().expect("www/pkg builds");
    let (grid, _turn, _dir) = exclusive_grid(no_trust).await;
    let client = grid.client();
    let native = grid.worker(1, "native");
    let firefox = Firefox::open(&format!("{}/?autostart=1&threads=1", grid.url));
    wait_for_workers(&client, "Firefox's worker beside the native one", |w| {
        w.len() == 2 && w.iter().any(|w| w.kind == WorkerKind::Browser)
    })
    .await;

    let tasks = run_every_job(&client).await;
    assert_both_computed_everything(&client.workers().await.unwrap(), tasks);
    drop(firefox);
    native.stop().await;
    grid.stop().await;
}

/// A module that cannot be had is a failure of its tasks, not an outcome: the
/// browser reports each with `failed` (after one fetch: the failure is kept)
/// until the coordinator gives up on the task and fails the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_the_browser_cannot_fetch_fails_its_tasks() {
    let test = BrowserTest::start().await;
    let client = test.client();
    let module = wat::parse_str(SPIN).expect("the test's WAT");
    let (module, _) = client
        .ensure_blob(module)
        .await
        .expect("the module uploads");
    let mut job = JobRequest::new(WasmRequest::new(module));
    job.tasks = Some(1);
    let status = client.submit(&job).await.expect("the job is accepted");
    // The prepared module goes missing before any worker fetched it.
    let grid_kernels::KernelSpec::Wasm(params) = &status.spec else {
        panic!("{status:?}")
    };
    let prepared = test
        .grid()
        .data_dir
        .join("modules")
        .join(params.module.to_string());
    std::fs::remove_file(&prepared).expect("the prepared module is stored");

    let mut page = test.open_donor_page(1).await;
    page.expect_errors("404");
    let status = grid_tests::wait_for_job(&client, status.id, JOB_TIMEOUT).await;
    assert_eq!(status.state, JobState::Failed, "{status:?}");
    // The browser said `failed` for the task each time it was given it (the
    // coordinator keeps the workers' sentences in its log, not the job's).
    let error = status.error.unwrap_or_default();
    assert!(error.contains("task 0 failed on 3 workers"), "{error}");
    test.finish(page).await;
}

/// Adds `i` for `i` in 0..`n` into an i64 that wraps, and writes the sum as 8
/// bytes: a loop as long as a test needs, with an answer known in advance.
fn long_sum_wat(n: u64) -> String {
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start") (local $i i64) (local $sum i64)
    (block $done (loop $l
      (br_if $done (i64.ge_u (local.get $i) (i64.const {n})))
      (local.set $sum (i64.add (local.get $sum) (local.get $i)))
      (local.set $i (i64.add (local.get $i) (i64.const 1)))
      (br $l)))
    (i64.store (i32.const 16) (local.get $sum))
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 8))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#
    )
}

/// What [`long_sum_wat`] writes: n(n - 1)/2, wrapped to 64 bits.
fn long_sum_expected(n: u64) -> Vec<u8> {
    let sum = u128::from(n) * u128::from(n - 1) / 2;
    (sum as u64).to_le_bytes().to_vec()
}

/// Iterations of [`long_sum_wat`]: some seconds in Chromium on the machine
/// this was written on, well past [`short_idle_timeout`]'s 2 s.
const LONG_SUM_ITERATIONS: u64 = 12_000_000_000;

/// The coordinator closes a worker it hears nothing from for 2 s (the
/// session sends heartbeats every 500 ms, when it can).
fn short_idle_timeout(config: &mut ServerConfig) {
    config.idle_timeout = Duration::from_secs(2);
    config.heartbeat = Duration::from_millis(500);
}

/// The one browser worker connected, by `/api/workers`.
async fn browser_worker(client: &Client) -> WorkerInfo {
    let workers = client.workers().await.expect("the workers");
    let browsers: Vec<_> = workers
        .into_iter()
        .filter(|w| w.kind == WorkerKind::Browser)
        .collect();
    assert_eq!(browsers.len(), 1, "{browsers:#?}");
    browsers.into_iter().next().unwrap()
}

/// The Prometheus counter of connections the coordinator closed for
/// silence, 0 if none was.
async fn idle_closes(url: &str) -> u64 {
    let metrics = grid_tests::metrics(url).await;
    metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix("grid_connections_closed_total{reason=\"idle_timeout\"} ")
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_task_longer_than_the_idle_timeout_completes_and_a_pause_stops_it() {
    let test = BrowserTest::start_with(short_idle_timeout).await;
    let client = test.client();
    let page = test.open_donor_page(1).await;
    let worker = browser_worker(&client).await;

    let module = wat::parse_str(long_sum_wat(LONG_SUM_ITERATIONS)).expect("the test's WAT");
    let (module, _) = client
        .ensure_blob(module)
        .await
        .expect("the module uploads");
    let mut request = WasmRequest::new(module);
    request.name = Some("long-sum.wasm".into());
    request.fuel = Some(20 * LONG_SUM_ITERATIONS);
    let mut job = JobRequest::new(request);
    job.tasks = Some(1);
    let id = client.submit(&job).await.expect("the job is accepted").id;

    // While the task runs, the page names the program, and a pause stops
    // it: the task goes back without an outcome. Three pauses in a row: a
    // task handed back is not a failure, so the job does not fail as a
    // task failing on 3 workers does.
    for round in 1..=3 {
        page.wait_for(
            "document.querySelector('#program-name').textContent === 'long-sum.wasm'",
            PAGE_TIMEOUT,
        )
        .await
        .expect("the page shows the program that runs");
        // The task is out to the worker again and has had time to start.
        let deadline = Instant::now() + PAGE_TIMEOUT;
        while browser_worker(&client).await.tasks_in_flight == 0 {
            assert!(Instant::now() < deadline, "the task is not given back out");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        page.click("#pause").await.unwrap();
        page.wait_for("document.body.dataset.state === 'paused'", PAGE_TIMEOUT)
            .await
            .expect("the page pauses");
        let deadline = Instant::now() + PAGE_TIMEOUT;
        while browser_worker(&client).await.tasks_in_flight > 0 {
            assert!(Instant::now() < deadline, "the paused worker kept its task");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let status = client.status(id).await.unwrap();
        assert_eq!(
            (status.tasks.done, status.state),
            (0, JobState::Running),
            "pause {round} stopped the task and failed nothing: {status:?}"
        );
        if round < 3 {
            page.click("#pause").await.unwrap();
        }
    }

    // Resumed, the task runs to its end on the kernel thread, for longer
    // than the idle timeout, while the socket's thread keeps the connection.
    page.click("#pause").await.unwrap();
    let started = Instant::now();
    let tasks = done(&client, id).await;
    eprintln!(
        "the task of {LONG_SUM_ITERATIONS} iterations took about {:.1} s in Chromium",
        started.elapsed().as_secs_f64()
    );
    assert_eq!((tasks[0].trap, tasks[0].exit_code), (None, 0), "{tasks:?}");
    let stdout = client.task_output(id, 0).await.unwrap();
    assert_eq!(stdout, long_sum_expected(LONG_SUM_ITERATIONS));

    let after = browser_worker(&client).await;
    assert_eq!(after.id, worker.id, "the worker kept its connection");
    assert_eq!(after.results_rejected, 0, "{after:?}");
    assert_eq!(idle_closes(test.url()).await, 0);
    test.finish(page).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_past_the_wall_clock_limit_is_a_host_fault_and_the_kernel_thread_is_replaced() {
    let test = BrowserTest::start().await;
    let client = test.client();
    let page = test
        .open_donor_page_with("autostart=1&threads=1&task_limit_ms=1500")
        .await;
    page.wait_for(
        "document.body.dataset.state === 'working' && \
         document.querySelector('#connected-workers').textContent === '1'",
        PAGE_TIMEOUT,
    )
    .await
    .expect("the page's worker connects");
    let worker = browser_worker(&client).await;

    // Fuel for hours: only the wall-clock limit ends it.
    let module = wat::parse_str(SPIN).expect("the test's WAT");
    let (module, _) = client
        .ensure_blob(module)
        .await
        .expect("the module uploads");
    let mut request = WasmRequest::new(module);
    request.fuel = Some(1 << 50);
    let mut job = JobRequest::new(request);
    job.tasks = Some(1);
    let spin = client.submit(&job).await.expect("the job is accepted").id;
    let status = grid_tests::wait_for_job(&client, spin, JOB_TIMEOUT).await;
    assert_eq!(status.state, JobState::Failed, "{status:?}");
    let error = status.error.unwrap_or_default();
    assert!(error.contains("failed on 3 workers"), "{error}");

    // A fresh kernel thread computes the next job, on the same connection.
    let n = 1000;
    let module = wat::parse_str(long_sum_wat(n)).expect("the test's WAT");
    let (module, _) = client
        .ensure_blob(module)
        .await
        .expect("the module uploads");
    let mut job = JobRequest::new(WasmRequest::new(module));
    job.tasks = Some(2);
    let id = client.submit(&job).await.expect("the job is accepted").id;
    for task in done(&client, id).await {
        assert_eq!((task.trap, task.exit_code), (None, 0), "{task:?}");
        let stdout = client.task_output(id, task.task).await.unwrap();
        assert_eq!(stdout, long_sum_expected(n));
    }
    assert_eq!(browser_worker(&client).await.id, worker.id);
    test.finish(page).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firefox_runs_a_users_task_longer_than_the_idle_timeout() {
    // SpiderMonkey takes about three times V8's time over this loop.
    const FIREFOX_ITERATIONS: u64 = LONG_SUM_ITERATIONS / 3;
    ensure_wasm_built().expect("www/pkg builds");
    let (grid, _turn, _dir) = exclusive_grid(short_idle_timeout).await;
    let client = grid.client();
    let firefox = Firefox::open(&format!("{}/?autostart=1&threads=1", grid.url));
    wait_for_workers(&client, "Firefox's worker", |w| w.len() == 1).await;
    let worker = browser_worker(&client).await;

    let module = wat::parse_str(long_sum_wat(FIREFOX_ITERATIONS)).expect("the test's WAT");
    let (module, _) = client
        .ensure_blob(module)
        .await
        .expect("the module uploads");
    let mut request = WasmRequest::new(module);
    request.fuel = Some(20 * FIREFOX_ITERATIONS);
    let mut job = JobRequest::new(request);
    job.tasks = Some(1);
    let id = client.submit(&job).await.expect("the job is accepted").id;
    let started = Instant::now();
    let tasks = done(&client, id).await;
    eprintln!(
        "the task of {FIREFOX_ITERATIONS} iterations took about {:.1} s in Firefox",
        started.elapsed().as_secs_f64()
    );
    assert_eq!((tasks[0].trap, tasks[0].exit_code), (None, 0), "{tasks:?}");
    let stdout = client.task_output(id, 0).await.unwrap();
    assert_eq!(stdout, long_sum_expected(FIREFOX_ITERATIONS));
    assert_eq!(browser_worker(&client).await.id, worker.id);
    assert_eq!(idle_closes(&grid.url).await, 0);
    drop(firefox);
    grid.stop().await;
}
