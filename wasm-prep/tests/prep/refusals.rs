//! Every way a module breaks the kernel contract is refused with its own
//! error, whose message names the problem.

use grid_kernels::wasm::WasmLimits;
use grid_wasm_prep::{Options, PrepareError, Proposal, prepare};

use crate::{refusal, wasm};

/// A valid kernel with `extra` added to its module fields.
fn kernel(extra: &str) -> String {
    format!(r#"(module (memory (export "memory") 1) (func (export "_start")) {extra})"#)
}

fn unsupported(wat: &str) -> (Proposal, String) {
    match refusal(wat) {
        PrepareError::Unsupported { proposal, detail } => (proposal, detail),
        other => panic!("expected an unsupported feature, got: {other}"),
    }
}

#[test]
fn imports_outside_the_wasi_subset_are_named() {
    let e = refusal(
        r#"(module (import "env" "emscripten_memcpy_big" (func (param i32 i32 i32)))
           (memory (export "memory") 1) (func (export "_start")))"#,
    );
    assert_eq!(
        e.to_string(),
        "the module imports env.emscripten_memcpy_big, which is not in the WASI subset \
         browsergrid provides (see PROTOCOL.md)"
    );
    // Writing files is not in the subset (reading /data is).
    let e = refusal(
        r#"(module (import "wasi_snapshot_preview1" "path_unlink_file" (func))
           (memory (export "memory") 1) (func (export "_start")))"#,
    );
    assert!(
        matches!(e, PrepareError::ForbiddenImport { ref name, .. } if name == "path_unlink_file")
    );
    let e = refusal(
        r#"(module (import "wasi_snapshot_preview1" "path_open" (func))
           (memory (export "memory") 1) (func (export "_start")))"#,
    );
    assert!(matches!(e, PrepareError::ImportSignature { .. }), "{e:?}");
    // The right name from another module is no better.
    let e = refusal(
        r#"(module (import "wasi_unstable" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
           (memory (export "memory") 1) (func (export "_start")))"#,
    );
    assert!(
        matches!(e, PrepareError::ForbiddenImport { ref module, .. } if module == "wasi_unstable")
    );
}

#[test]
fn a_wasi_import_with_the_wrong_signature_is_refused() {
    let e = refusal(
        r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32) (result i32)))
           (memory (export "memory") 1) (func (export "_start")))"#,
    );
    assert_eq!(
        e.to_string(),
        "the module imports wasi_snapshot_preview1.fd_write with type (i32) -> (i32), but \
         browsergrid provides it with type (i32, i32, i32, i32) -> (i32)"
    );
    let e = refusal(
        r#"(module (import "wasi_snapshot_preview1" "proc_exit" (func (param i64)))
           (memory (export "memory") 1) (func (export "_start")))"#,
    );
    assert!(matches!(e, PrepareError::ImportSignature { .. }), "{e}");
}

#[test]
fn imported_memories_tables_and_globals_are_refused() {
    for (import, kind) in [
        ("(memory 1)", "memory"),
        ("(table 1 funcref)", "table"),
        ("(global i32)", "global"),
    ] {
        let e = refusal(&format!(
            r#"(module (import "env" "thing" {import})
               (memory (export "memory") 1) (func (export "_start")))"#
        ));
        assert_eq!(
            e,
            PrepareError::ImportKind {
                kind,
                module: "env".into(),
                name: "thing".into()
            }
        );
        assert!(
            e.to_string()
                .contains(&format!("imports a {kind} (env.thing)"))
        );
    }
}

#[test]
fn start_must_be_a_defined_function_of_no_arguments_and_results() {
    let e = refusal(r#"(module (memory (export "memory") 1) (func (export "main")))"#);
    assert_eq!(e, PrepareError::NoStart);
    assert!(e.to_string().contains("does not export _start"));
    let e = refusal(
        r#"(module (memory (export "memory") 1) (func (export "_start") (param i32) (result i32) local.get 0))"#,
    );
    assert_eq!(
        e.to_string(),
        "the module's _start has type (i32) -> (i32), but a kernel's _start takes no \
         arguments and returns nothing"
    );
    let e = refusal(
        r#"(module (memory (export "memory") 1) (global (export "_start") i32 (i32.const 0)))"#,
    );
    assert_eq!(e, PrepareError::StartNotFunction("is a global"));
    let e = refusal(
        r#"(module (import "wasi_snapshot_preview1" "sched_yield" (func $y (result i32)))
           (memory (export "memory") 1) (export "_start" (func $y)))"#,
    );
    assert_eq!(e, PrepareError::StartNotFunction("is an imported function"));
}

#[test]
fn a_start_section_is_refused() {
    let e = refusal(&kernel("(func $init) (start $init)"));
    assert_eq!(e, PrepareError::StartSection { function: 1 });
    assert!(e.to_string().contains("start section"));
}

#[test]
fn the_memory_must_be_one_defined_exported_memory() {
    let e = refusal(r#"(module (func (export "_start")))"#);
    assert_eq!(e, PrepareError::NoMemory);
    let e = refusal(r#"(module (memory 1) (func (export "_start")))"#);
    assert_eq!(e, PrepareError::NoMemoryExport);
    let e = refusal(
        r#"(module (memory 1) (func (export "_start")) (global (export "memory") i32 (i32.const 0)))"#,
    );
    assert_eq!(e, PrepareError::NoMemoryExport);
    let (proposal, detail) =
        unsupported(r#"(module (memory (export "memory") 1) (memory 1) (func (export "_start")))"#);
    assert_eq!(
        (proposal, detail.as_str()),
        (Proposal::MultiMemory, "2 memories")
    );
}

#[test]
fn names_like_ours_are_refused() {
    let e = refusal(&kernel(
        r#"(global (export "browsergrid.fuel") i64 (i64.const 0))"#,
    ));
    assert_eq!(
        e,
        PrepareError::ReservedExport {
            name: "browsergrid.fuel".into()
        }
    );
}

#[test]
fn memory_over_the_jobs_limit_is_refused_in_mib() {
    let e = refusal(r#"(module (memory (export "memory") 4800) (func (export "_start")))"#);
    assert_eq!(
        e.to_string(),
        "the module's memory needs 300 MiB at start, over the job's limit of 256 MiB"
    );
    // Exactly the limit is fine.
    crate::prep(r#"(module (memory (export "memory") 4096) (func (export "_start")))"#);
}

#[test]
fn refused_proposals_are_named_with_the_instruction() {
    let cases: &[(&str, Proposal, &str)] = &[
        (
            r#"(module (memory (export "memory") 1 1 shared) (func (export "_start")))"#,
            Proposal::Threads,
            "a shared memory",
        ),
        (
            r#"(module (memory (export "memory") i64 1) (func (export "_start")))"#,
            Proposal::Memory64,
            "a 64-bit memory",
        ),
        (
            &kernel(
                "(func (param v128) (result v128)
                   (f32x4.relaxed_madd (local.get 0) (local.get 0) (local.get 0)))",
            ),
            Proposal::RelaxedSimd,
            "f32x4.relaxed_madd in function 1",
        ),
        (
            &kernel("(func $t (return_call $t))"),
            Proposal::TailCall,
            "return_call in function 1",
        ),
        (
            &kernel("(func (i32.atomic.load (i32.const 0)) drop)"),
            Proposal::Threads,
            "i32.atomic_load in function 1",
        ),
        (
            &kernel("(tag $e) (func (throw $e))"),
            Proposal::Exceptions,
            "a tag section",
        ),
        (
            &kernel("(type (struct))"),
            Proposal::Gc,
            "a struct or array type",
        ),
        (
            &kernel("(func (drop (ref.i31 (i32.const 1))))"),
            Proposal::Gc,
            "ref.i31 in function 1",
        ),
        (
            &kernel("(table i64 1 funcref)"),
            Proposal::Memory64,
            "a 64-bit table",
        ),
        (
            &kernel(
                "(type $t (func)) (table 1 funcref)
                 (func (return_call_indirect (type $t) (i32.const 0)))",
            ),
            Proposal::TailCall,
            "return_call_indirect in function 1",
        ),
        (
            &kernel("(func (try_table))"),
            Proposal::Exceptions,
            "try_table in function 1",
        ),
        (
            &kernel(
                "(func (result i64 i64)
                   (i64.add128 (i64.const 1) (i64.const 1) (i64.const 1) (i64.const 1)))",
            ),
            Proposal::WideArithmetic,
            "i64.add128 in function 1",
        ),
        (
            r#"(module (memory (export "memory") 1 (pagesize 1)) (func (export "_start")))"#,
            Proposal::CustomPageSizes,
            "",
        ),
    ];
    for (wat, proposal, detail) in cases {
        assert_eq!(unsupported(wat), (*proposal, detail.to_string()), "{wat}");
    }
    let e = refusal(&kernel(
        "(func (param v128) (result v128)
           (f32x4.relaxed_madd (local.get 0) (local.get 0) (local.get 0)))",
    ));
    assert_eq!(
        e.to_string(),
        "the module uses relaxed SIMD (f32x4.relaxed_madd in function 1), whose results \
         differ between machines"
    );
}

#[test]
fn other_newer_features_are_refused_with_the_validators_words() {
    // Extended constant expressions: outside WebAssembly 2.0.
    let e = refusal(&kernel(
        "(global i32 (i32.add (i32.const 1) (i32.const 2)))",
    ));
    assert_eq!(
        e.to_string(),
        "the module uses extended constant expressions (i32.add in a constant expression), \
         which not every engine browsergrid runs on supports"
    );
    // Multi-value select: not even in a proposal.
    let e = refusal(&kernel(
        "(func (param i32) (result i32 i32)
           (local.get 0) (local.get 0) (local.get 0) (local.get 0) (i32.const 1)
           (select (result i32 i32)))",
    ));
    assert!(matches!(e, PrepareError::Invalid { .. }), "{e}");
}

#[test]
fn files_that_are_not_core_modules_are_refused() {
    let prep = |bytes: &[u8]| prepare(bytes, &WasmLimits::DEFAULT, &Options::DEFAULT);
    assert_eq!(prep(b"hello, world"), Err(PrepareError::NotWasm));
    assert_eq!(prep(b"\x7fELF\x02\x01\x01\0"), Err(PrepareError::NotWasm));
    assert_eq!(prep(b""), Err(PrepareError::NotWasm));
    assert_eq!(prep(&wasm("(component)")), Err(PrepareError::Component));
    let e = prep(&wasm(
        r#"(module (memory (export "memory") 1) (func (export "_start") i32.add))"#,
    ))
    .unwrap_err();
    assert!(matches!(e, PrepareError::Invalid { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with("the module is not valid WebAssembly: type mismatch"),
        "{e}"
    );
}

#[test]
fn the_preparers_own_bounds_are_kept() {
    let module = wasm(&kernel("(func (local i32 i32 i32))"));
    let small = Options {
        max_module_bytes: 10,
        ..Options::DEFAULT
    };
    assert_eq!(
        prepare(&module, &WasmLimits::DEFAULT, &small),
        Err(PrepareError::TooLarge {
            size: module.len(),
            limit: 10
        })
    );
    let few_locals = Options {
        max_locals: 2,
        ..Options::DEFAULT
    };
    assert_eq!(
        prepare(&module, &WasmLimits::DEFAULT, &few_locals),
        Err(PrepareError::TooManyLocals {
            function: 1,
            count: 3,
            limit: 2
        })
    );
    let few_functions = Options {
        max_functions: 1,
        ..Options::DEFAULT
    };
    assert_eq!(
        prepare(&module, &WasmLimits::DEFAULT, &few_functions),
        Err(PrepareError::TooManyFunctions { count: 2, limit: 1 })
    );
    let tables = wasm(&kernel("(table 2000000 funcref)"));
    assert_eq!(
        prepare(&tables, &WasmLimits::DEFAULT, &Options::DEFAULT),
        Err(PrepareError::TableTooLarge {
            table: 0,
            elements: 2_000_000,
            limit: 1_000_000
        })
    );
    let fuel = WasmLimits {
        fuel: u64::MAX,
        ..WasmLimits::DEFAULT
    };
    assert!(matches!(
        prepare(&module, &fuel, &Options::DEFAULT),
        Err(PrepareError::FuelLimit { .. })
    ));
    let bad = Options {
        stack_budget: 0,
        ..Options::DEFAULT
    };
    assert!(matches!(
        prepare(&module, &WasmLimits::DEFAULT, &bad),
        Err(PrepareError::Options(_))
    ));
}

#[test]
fn reference_types_stop_at_funcref() {
    // externref needs a garbage collector in wasmtime, which the native
    // worker's is built without; GC's reference types, typed function
    // references and exnref are refused with their proposals.
    let cases: &[(&str, Proposal, &str)] = &[
        ("(table 1 externref)", Proposal::ExternRef, "at byte 21"),
        (
            "(func (param externref))",
            Proposal::ExternRef,
            "at byte 14",
        ),
        (
            "(func (drop (ref.null extern)))",
            Proposal::ExternRef,
            "at byte 53",
        ),
        (
            "(global (mut externref) (ref.null extern))",
            Proposal::ExternRef,
            "at byte 26",
        ),
        ("(func (param anyref))", Proposal::ExternRef, "at byte 14"),
        (
            "(type $t (func)) (func (param (ref null $t)))",
            Proposal::Gc,
            "a typed function reference at byte 14",
        ),
        (
            "(type $t (func)) (func (call_ref $t (ref.null $t)))",
            Proposal::Gc,
            "a typed function reference at byte 53",
        ),
        (
            "(func (param exnref))",
            Proposal::Exceptions,
            "exnref at byte 14",
        ),
    ];
    for (extra, proposal, detail) in cases {
        let wat = kernel(extra);
        assert_eq!(unsupported(&wat), (*proposal, detail.to_string()), "{wat}");
    }
    assert_eq!(
        refusal(&kernel("(table 1 externref)")).to_string(),
        "the module uses externref (or another reference type but funcref) (at byte 21), \
         which needs a garbage collector, and browsergrid's native engine runs without one; \
         a kernel may use funcref only"
    );
}

#[test]
fn what_the_preparer_allows_wasmtime_48_without_gc_validates() {
    let beyond = grid_wasm_prep::features::ALLOWED.difference(crate::WASMTIME_48_NO_GC);
    assert!(
        beyond.is_empty(),
        "allowed, but not by wasmtime: {beyond:?}"
    );
}
