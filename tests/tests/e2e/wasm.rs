//! Users' WebAssembly kernels end to end: `grid submit wasm` uploads a
//! module and its inputs, the coordinator prepares the module once, native
//! workers fetch and run it one task per input, and `grid results -o DIR`
//! writes each task's stdout; `grid run` runs one task locally with the same
//! preparation. Also the sandbox seen from outside: a loop that never ends
//! runs out of fuel and the job still finishes, a module importing what the
//! grid does not offer is refused at submission and changes nothing, and the
//! hostile examples (memory, output, stack, NaN bits, imports) are stopped as
//! their headers say.

use std::path::Path;

use grid_kernels::wasm::Trap;
use grid_kernels::{JobResult, ResultSummary};
use grid_protocol::api::{JobState, JobStatus};
use grid_tests::{TestGrid, grid_cli_async, grid_run, wait_for_workers};

/// Echoes stdin to stdout, upper-cased, then writes argv[1] if there is one.
const SHOUT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start") (local $n i32) (local $i i32) (local $c i32)
    ;; read stdin into 1024.. (one read is enough for these small inputs)
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 4096))
    (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
    (local.set $n (i32.load (i32.const 8)))
    (block $done (loop $up
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $c (i32.load8_u (i32.add (i32.const 1024) (local.get $i))))
      (if (i32.and (i32.ge_u (local.get $c) (i32.const 97)) (i32.le_u (local.get $c) (i32.const 122)))
        (then (i32.store8 (i32.add (i32.const 1024) (local.get $i)) (i32.sub (local.get $c) (i32.const 32)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $up)))
    (i32.store (i32.const 4) (local.get $n))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    ;; argv: pointers at 16.., strings at 256..; print argv[1] if present
    (drop (call $sizes (i32.const 12) (i32.const 40)))
    (if (i32.ge_u (i32.load (i32.const 12)) (i32.const 2))
      (then
        (drop (call $args (i32.const 16) (i32.const 256)))
        (i32.store (i32.const 0) (i32.load (i32.const 20)))
        (i32.store (i32.const 4) (i32.sub (i32.add (i32.const 256) (i32.load (i32.const 40)))
                                          (i32.add (i32.load (i32.const 20)) (i32.const 1))))
        (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))))"#;

/// Never ends.
const SPIN: &str = r#"(module (memory (export "memory") 1)
  (func (export "_start") (loop $l (br $l))))"#;

/// Imports a socket call, which the grid does not offer.
const SOCKETS: &str = r#"(module
  (import "wasi_snapshot_preview1" "sock_accept" (func (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1) (func (export "_start")))"#;

fn write_module(dir: &Path, name: &str, wat: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, wat::parse_str(wat).expect("the test's WAT")).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn grid_run_runs_one_task_here_as_a_worker_would() {
    let dir = tempfile::tempdir().unwrap();
    let shout = write_module(dir.path(), "shout.wasm", SHOUT);
    let (code, stdout, stderr) = grid_run(&[&shout, "!"], b"hello\n");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, b"HELLO\n!");
    let digest = grid_kernels::ContentDigest::of(b"HELLO\n!");
    assert!(
        stderr.contains("exit code 0, ") && stderr.contains(&format!("stdout {digest}")),
        "{stderr}"
    );

    let spin = write_module(dir.path(), "spin.wasm", SPIN);
    let (code, stdout, stderr) = grid_run(&["--fuel", "100000", &spin], b"");
    assert_eq!(code, 3, "{stderr}");
    assert!(stdout.is_empty());
    assert!(stderr.contains("trapped (out_of_fuel)"), "{stderr}");

    let sockets = write_module(dir.path(), "sockets.wasm", SOCKETS);
    let (code, _, stderr) = grid_run(&[&sockets], b"");
    assert_eq!(code, 1);
    assert!(stderr.contains("sock_accept"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasm_job_runs_one_task_per_line_and_its_outputs_come_back_as_files() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start(&dir.path().join("data")).await;
    let workers = [grid.worker(2, "a"), grid.worker(2, "b")];
    wait_for_workers(&grid.client(), "two workers", |w| w.len() == 2).await;
    let shout = write_module(dir.path(), "shout.wasm", SHOUT);
    let lines = dir.path().join("names.txt");
    std::fs::write(&lines, "ada\ngrace\nbarbara\nfrances\n").unwrap();
    let lines = lines.to_string_lossy().into_owned();

    let out = grid_cli_async(
        &grid.url,
        &[
            "submit",
            "wasm",
            "--module",
            &shout,
            "--lines",
            &lines,
            "--args",
            "!",
            "--redundancy",
            "2",
            "--wait",
            "--json",
        ],
    )
    .await;
    assert_eq!(out.0, 0, "{out:?}");
    let status: JobStatus = serde_json::from_str(&out.1).expect("a status");
    assert_eq!((status.state, status.tasks.total), (JobState::Done, 4));
    assert!(out.2.contains("shout.wasm: uploaded"), "{}", out.2);
    let Some(ResultSummary::Wasm {
        tasks_failed,
        fuel_used,
        ..
    }) = status.result
    else {
        panic!("{status:?}")
    };
    assert_eq!(tasks_failed, 0);
    assert!(fuel_used > 0);
    // The compute each worker donated: the two donors each ran every task
    // once (replicas go to distinct donors), so each reports the job's fuel.
    let donated: Vec<u64> = grid
        .client()
        .workers()
        .await
        .unwrap()
        .iter()
        .map(|w| w.fuel_used)
        .collect();
    assert_eq!(donated, [fuel_used, fuel_used]);

    // An empty input is a blob like any other (it once failed with 411).
    let client = grid.client();
    assert!(client.ensure_blob(Vec::new()).await.unwrap().1, "uploaded");
    assert!(
        !client.ensure_blob(Vec::new()).await.unwrap().1,
        "already there"
    );

    // The module is uploaded once: a second job finds it there.
    let again = grid_cli_async(
        &grid.url,
        &[
            "submit", "wasm", "--module", &shout, "--tasks", "1", "--wait",
        ],
    )
    .await;
    assert_eq!(again.0, 0, "{again:?}");
    assert!(again.2.contains("shout.wasm: already there"), "{}", again.2);

    let outputs = dir.path().join("out");
    let got = grid_cli_async(
        &grid.url,
        &[
            "results",
            &status.id.to_string(),
            "-o",
            &outputs.to_string_lossy(),
        ],
    )
    .await;
    assert_eq!(got.0, 0, "{got:?}");
    // One task a line, the line without its newline; named from 0.
    for (line, name) in ["ADA", "GRACE", "BARBARA", "FRANCES"].iter().enumerate() {
        let path = outputs.join(line.to_string());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{name}!"),
            "{}",
            path.display()
        );
    }
    let index: JobResult =
        serde_json::from_slice(&std::fs::read(outputs.join("index.json")).unwrap()).unwrap();
    let JobResult::Wasm { tasks } = index else {
        panic!("{index:?}")
    };
    assert_eq!(
        tasks.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["0", "1", "2", "3"]
    );
    assert!(tasks.iter().all(|t| t.exit_code == 0 && t.trap.is_none()));
    for worker in workers {
        worker.stop().await;
    }
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_never_ends_runs_out_of_fuel_and_a_refused_module_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start(&dir.path().join("data")).await;
    let worker = grid.worker(2, "a");
    wait_for_workers(&grid.client(), "a worker", |w| w.len() == 1).await;

    let sockets = write_module(dir.path(), "sockets.wasm", SOCKETS);
    let refused = grid_cli_async(
        &grid.url,
        &["submit", "wasm", "--module", &sockets, "--wait"],
    )
    .await;
    assert_eq!(refused.0, 1, "{refused:?}");
    assert!(
        refused.2.contains("sock_accept") && refused.2.contains("HTTP 400"),
        "{}",
        refused.2
    );
    // Shared memory, relaxed SIMD and bytes that are not a module: each
    // refused with a sentence that names the problem.
    let refusals = [
        (
            "shared.wasm",
            wat::parse_str(
                r#"(module (memory (export "memory") 1 1 shared) (func (export "_start")))"#,
            )
            .unwrap(),
            "shared",
        ),
        (
            "relaxed.wasm",
            wat::parse_str(
                r#"(module (memory (export "memory") 1)
                  (func (export "_start")
                    (drop (i32x4.relaxed_trunc_f32x4_s (v128.const i32x4 0 0 0 0)))))"#,
            )
            .unwrap(),
            "relaxed",
        ),
        (
            "garbage.wasm",
            b"\0asm\x01\0\0\0\x01\xff".to_vec(),
            "not valid webassembly",
        ),
    ];
    for (name, bytes, says) in refusals {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let refused = grid_cli_async(
            &grid.url,
            &["submit", "wasm", "--module", &path.to_string_lossy()],
        )
        .await;
        assert_eq!(refused.0, 1, "{name}: {refused:?}");
        assert!(
            refused.2.to_lowercase().contains(says) && refused.2.contains("HTTP 400"),
            "{name}: {}",
            refused.2
        );
    }
    assert!(grid.client().jobs().await.unwrap().is_empty());

    let spin = write_module(dir.path(), "spin.wasm", SPIN);
    let out = grid_cli_async(
        &grid.url,
        &[
            "submit", "wasm", "--module", &spin, "--tasks", "3", "--fuel", "1000000", "--wait",
            "--json",
        ],
    )
    .await;
    assert_eq!(out.0, 0, "{out:?}");
    let status: JobStatus = serde_json::from_str(&out.1).expect("a status");
    assert_eq!(status.state, JobState::Done, "a trap is an outcome");
    let Some(ResultSummary::Wasm {
        tasks_failed,
        fuel_used,
        failures,
    }) = status.result
    else {
        panic!("{status:?}")
    };
    assert_eq!(tasks_failed, 3);
    assert!(
        failures.iter().all(|f| f.trap == Some(Trap::OutOfFuel)),
        "{failures:?}"
    );
    // Every task used its whole allowance, and no more: the count is the
    // module's own, the same on every engine.
    assert_eq!(fuel_used, 3 * 1_000_000, "{fuel_used}");
    // The same figure is the grid's count of compute given to users' kernels.
    let metrics = grid_tests::metrics(&grid.url).await;
    assert!(
        metrics.contains("\ngrid_fuel_used_total 3000000\n"),
        "{metrics}"
    );
    worker.stop().await;
    grid.stop().await;
}

/// The hostile examples (examples/hostile) under `grid run`: each is stopped
/// the way its header says, by the limits built into the prepared module.
#[test]
fn the_hostile_examples_are_stopped_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = |name: &str| {
        let wat = std::fs::read_to_string(
            grid_tests::browser::repo_root().join(format!("examples/hostile/{name}.wat")),
        )
        .unwrap();
        write_module(dir.path(), &format!("{name}.wasm"), &wat)
    };

    // Memory: the job's limit is the most memory.grow gets, in pages.
    let grow = hostile("grow");
    let (code, stdout, stderr) = grid_run(&["--memory", "64", &grow], b"");
    assert_eq!((code, stdout.as_slice()), (0, &b"1024\n"[..]), "{stderr}");
    let (_, stdout, _) = grid_run(&[&grow], b"");
    assert_eq!(stdout, b"4096\n", "256 MiB by default");

    // Output: the write that would pass the limit ends the run, with the
    // limit's worth of stdout kept.
    let (code, stdout, stderr) = grid_run(&["--stdout-bytes", "100000", &hostile("scribble")], b"");
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(stdout.len(), 100_000);
    assert!(stderr.contains("trapped (output_limit)"), "{stderr}");

    // Stack: unbounded recursion meets the prepared limit, not the engine's.
    let (code, _, stderr) = grid_run(&[&hostile("recurse")], b"");
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("trapped (stack_limit)"), "{stderr}");

    // NaNs: the bits a kernel can see are the canonical ones, whatever the
    // hardware's default NaN (x86 sets the sign bit).
    let (code, stdout, stderr) = grid_run(&[&hostile("nan")], b"");
    assert_eq!(code, 0, "{stderr}");
    let mut canonical = Vec::new();
    canonical.extend(0x7fc0_0000u32.to_le_bytes().repeat(2));
    canonical.extend(0x7ff8_0000_0000_0000u64.to_le_bytes().repeat(2));
    assert_eq!(stdout, canonical);

    // Imports: what the grid does not offer is refused before anything runs.
    let (code, _, stderr) = grid_run(&[&hostile("sockets")], b"");
    assert_eq!(code, 1);
    assert!(stderr.contains("sock_accept"), "{stderr}");
}

/// Hostile kernels beside an honest job on the same two workers: every
/// hostile task ends in its documented trap, and the honest job's answer is
/// exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_jobs_leave_the_other_jobs_on_the_grid_exact() {
    use grid_protocol::api::{JobRequest, WasmRequest};
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start(&dir.path().join("data")).await;
    let workers = [grid.worker(1, "a"), grid.worker(1, "b")];
    let client = grid.client();
    wait_for_workers(&client, "two workers", |w| w.len() == 2).await;

    let mut hostile = Vec::new();
    for (name, trap, adjust) in [
        (
            "spin",
            Some(Trap::OutOfFuel),
            (|r: &mut WasmRequest| r.fuel = Some(5_000_000)) as fn(&mut WasmRequest),
        ),
        ("recurse", Some(Trap::StackLimit), |_| {}),
        ("scribble", Some(Trap::OutputLimit), |r| {
            r.stdout_bytes = Some(100_000)
        }),
        ("grow", None, |r| r.memory_mib = Some(64)),
    ] {
        let wat = std::fs::read_to_string(
            grid_tests::browser::repo_root().join(format!("examples/hostile/{name}.wat")),
        )
        .unwrap();
        let (module, _) = client
            .ensure_blob(wat::parse_str(&wat).unwrap())
            .await
            .unwrap();
        let mut request = WasmRequest::new(module);
        adjust(&mut request);
        let status = client
            .submit(&JobRequest {
                tasks: Some(4),
                ..JobRequest::new(request)
            })
            .await
            .unwrap();
        hostile.push((name, trap, status.id));
    }
    let honest = grid_tests::submit(
        &client,
        &grid_tests::job(grid_tests::primes(0, 1_000_000), 8),
    )
    .await;

    let status =
        grid_tests::wait_for_job(&client, honest, std::time::Duration::from_secs(60)).await;
    grid_tests::assert_primes(&status, 78_498);
    for (name, trap, job) in hostile {
        let status =
            grid_tests::wait_for_job(&client, job, std::time::Duration::from_secs(60)).await;
        assert_eq!(status.state, JobState::Done, "{name}: {status:?}");
        let JobResult::Wasm { tasks } = client.result(job).await.unwrap() else {
            panic!("{name}")
        };
        assert_eq!(tasks.len(), 4, "{name}");
        assert!(tasks.iter().all(|t| t.trap == trap), "{name}: {tasks:?}");
    }
    for worker in workers {
        worker.stop().await;
    }
    grid.stop().await;
}
