//! What a hostile submitter sends first: deep nesting, huge functions,
//! shapes that make preparation grow the code most, truncated and mutated
//! modules. The preparer answers each with a module or an error, never a
//! panic or a stack overflow, and its output stays within a fixed multiple
//! of its input.

use grid_kernels::wasm::WasmLimits;
use grid_wasm_prep::{Options, PrepareError, Prepared, prepare};
use wasm_encoder::{
    BlockType, CodeSection, ExportKind, ExportSection, Function, FunctionSection, Instruction,
    MemArg, MemorySection, MemoryType, Module, TypeSection, ValType,
};

/// A kernel whose `_start` has `locals` and runs `body`, built without the
/// text format (whose parser recurses on nesting).
fn kernel(locals: &[(u32, ValType)], body: impl FnOnce(&mut Function)) -> Vec<u8> {
    let mut module = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], []);
    module.section(&types);
    let mut functions = FunctionSection::new();
    functions.function(0);
    module.section(&functions);
    let mut memories = MemorySection::new();
    memories.memory(MemoryType {
        minimum: 1,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    module.section(&memories);
    let mut exports = ExportSection::new();
    exports.export("_start", ExportKind::Func, 0);
    exports.export("memory", ExportKind::Memory, 0);
    module.section(&exports);
    let mut f = Function::new(locals.iter().copied());
    body(&mut f);
    f.instruction(&Instruction::End);
    let mut code = CodeSection::new();
    code.function(&f);
    module.section(&code);
    module.finish()
}

/// Prepares on a thread with a small stack: a preparer that recursed on the
/// input's nesting would overflow it.
fn prepare_on_small_stack(module: Vec<u8>, options: Options) -> Result<Prepared, PrepareError> {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || prepare(&module, &WasmLimits::DEFAULT, &options))
        .unwrap()
        .join()
        .expect("the preparer did not overflow its stack")
}

#[test]
fn deep_nesting_prepares_without_recursion() {
    const DEPTH: usize = 100_000;
    for open in [
        Instruction::Block(BlockType::Empty),
        Instruction::Loop(BlockType::Empty),
    ] {
        let module = kernel(&[], |f| {
            for _ in 0..DEPTH {
                f.instruction(&open);
            }
            for _ in 0..DEPTH {
                f.instruction(&Instruction::End);
            }
        });
        let prepared = prepare_on_small_stack(module.clone(), Options::DEFAULT)
            .unwrap_or_else(|e| panic!("{open:?}: {e}"));
        // A segment after each end (and each loop header).
        assert!(prepared.info.instrumentation.fuel_charges > DEPTH as u64);
        assert!(prepared.bytes.len() < module.len() * 32, "{open:?}");
    }
    let ifs = kernel(&[], |f| {
        for _ in 0..DEPTH {
            f.instruction(&Instruction::I32Const(1));
            f.instruction(&Instruction::If(BlockType::Empty));
        }
        for _ in 0..DEPTH {
            f.instruction(&Instruction::Else);
            f.instruction(&Instruction::End);
        }
    });
    prepare_on_small_stack(ifs, Options::DEFAULT).unwrap();
}

#[test]
fn a_very_large_function_prepares_in_proportion() {
    // 2.5 million instructions in one 5 MB function: a single segment.
    let module = kernel(&[], |f| {
        for _ in 0..1_250_000 {
            f.instruction(&Instruction::I32Const(7));
            f.instruction(&Instruction::Drop);
        }
    });
    let prepared = prepare_on_small_stack(module.clone(), Options::DEFAULT).unwrap();
    assert_eq!(prepared.info.instrumentation.fuel_charges, 1);
    assert!(prepared.bytes.len() < module.len() + 200);
}

#[test]
fn the_shapes_that_grow_most_stay_within_a_multiple_of_the_input() {
    let addr = MemArg {
        offset: 0,
        align: 2,
        memory_index: 0,
    };
    let shapes: Vec<(&str, Vec<u8>)> = vec![
        (
            "empty blocks",
            kernel(&[], |f| {
                for _ in 0..50_000 {
                    f.instruction(&Instruction::Block(BlockType::Empty));
                    f.instruction(&Instruction::End);
                }
            }),
        ),
        (
            "float stores",
            kernel(&[(1, ValType::F32)], |f| {
                for _ in 0..50_000 {
                    f.instruction(&Instruction::I32Const(0));
                    f.instruction(&Instruction::LocalGet(0));
                    f.instruction(&Instruction::F32Store(addr));
                }
            }),
        ),
        (
            "vector arithmetic",
            kernel(&[(1, ValType::V128)], |f| {
                f.instruction(&Instruction::LocalGet(0));
                for _ in 0..50_000 {
                    f.instruction(&Instruction::LocalGet(0));
                    f.instruction(&Instruction::F64x2Add);
                }
                f.instruction(&Instruction::Drop);
            }),
        ),
        (
            "memory fills",
            kernel(&[], |f| {
                for _ in 0..50_000 {
                    f.instruction(&Instruction::I32Const(0));
                    f.instruction(&Instruction::I32Const(0));
                    f.instruction(&Instruction::I32Const(0));
                    f.instruction(&Instruction::MemoryFill(0));
                }
            }),
        ),
    ];
    for (shape, module) in shapes {
        let prepared = prepare_on_small_stack(module.clone(), Options::DEFAULT)
            .unwrap_or_else(|e| panic!("{shape}: {e}"));
        let growth = prepared.bytes.len() as f64 / module.len() as f64;
        println!(
            "{shape}: {} -> {} bytes, x{growth:.1}",
            module.len(),
            prepared.bytes.len()
        );
        assert!(growth < 32.0, "{shape} grew {growth:.1} times");
    }
}

#[test]
fn growth_past_the_preparers_limits_is_refused() {
    let blocks = kernel(&[], |f| {
        for _ in 0..20_000 {
            f.instruction(&Instruction::Block(BlockType::Empty));
            f.instruction(&Instruction::End);
        }
    });
    let small_functions = Options {
        max_function_bytes: 100_000,
        ..Options::DEFAULT
    };
    assert_eq!(
        prepare_on_small_stack(blocks.clone(), small_functions).unwrap_err(),
        PrepareError::FunctionTooLarge {
            function: 0,
            limit: 100_000
        }
    );
    let small_modules = Options {
        max_prepared_bytes: 100_000,
        ..Options::DEFAULT
    };
    assert_eq!(
        prepare_on_small_stack(blocks, small_modules).unwrap_err(),
        PrepareError::PreparedTooLarge { limit: 100_000 }
    );
}

#[test]
fn truncated_and_mutated_modules_are_errors_or_valid_modules_never_panics() {
    let module = crate::wasm(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_write"
            (func $w (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1 2)
          (table 2 funcref) (elem (i32.const 0) $a $b)
          (global $g (mut i32) (i32.const 7))
          (data (i32.const 8) "data")
          (func $a (param f32) (result i32)
            (i32.reinterpret_f32 (f32.mul (local.get 0) (local.get 0))))
          (func $b (param f32) (result i32)
            (loop (br_if 0 (i32.eqz (global.get $g))))
            (call_indirect (param f32) (result i32) (local.get 0) (i32.const 0)))
          (func (export "_start")
            (memory.fill (i32.const 0) (i32.const 1) (i32.const 16))
            (if (call $b (f32.const 2)) (then (drop (memory.grow (i32.const 1)))))
            (drop (call $w (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 0)))))"#,
    );
    let prepare = |bytes: &[u8]| prepare(bytes, &WasmLimits::DEFAULT, &Options::DEFAULT);
    prepare(&module).expect("the module itself is a kernel");
    // A cut between sections can leave a whole kernel (without its data or
    // names); any other cut is an error.
    let mut whole = 0;
    for cut in 0..module.len() {
        match prepare(&module[..cut]) {
            Ok(_) => whole += 1,
            Err(PrepareError::Internal(e)) => panic!("cut at {cut}: {e}"),
            Err(_) => {}
        }
    }
    assert!(whole <= 2, "{whole} cuts prepared");
    let (mut prepared, mut refused) = (0, 0);
    for at in 8..module.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut mutated = module.clone();
            mutated[at] ^= flip;
            match prepare(&mutated) {
                Ok(_) => prepared += 1,
                Err(PrepareError::Internal(e)) => panic!("byte {at} ^ {flip:#x}: {e}"),
                Err(_) => refused += 1,
            }
        }
    }
    assert!(
        prepared > 0 && refused > 0,
        "{prepared} prepared, {refused} refused"
    );
}
