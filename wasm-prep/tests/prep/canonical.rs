//! What a prepared module must do, as far as NaNs are concerned: the
//! original module with its NaNs made canonical where `grid_wasm_prep::nan`
//! says they are (its table of places and its list of SIMD results), written
//! here a second time, from those docs rather than from the preparer's code,
//! with a different instruction sequence.
//!
//! The differential fuzz compares a prepared module's run with the run of
//! [`canonical_nans`] of the original, bit for bit. It cannot compare with
//! the original itself: where the original lets a NaN's bits out, they are
//! the engine's choice (wasmi keeps the payload that `f32x4.demote_f64x2_zero`
//! is given, x86 and ARM do not agree) or, for NaNs loaded or written as
//! constants, they are the very bits preparation replaces; and once out they
//! can steer the rest of the run (an address, a branch), so no tolerance in
//! the comparison of final states can make up for them.

use wasm_encoder::{Function, Ieee32, Ieee64, Instruction, ValType};
use wasmparser::Operator;

use crate::rewrite::{copy, rewrite_bodies};

/// A value to make canonical, by its type.
#[derive(Debug, Clone, Copy)]
enum Nan {
    F32,
    F64,
    F32x4,
    F64x2,
}

/// The operand on top of the stack that is made canonical before `op`: the
/// places where a scalar NaN's bits can be seen.
fn before(op: &Operator<'_>) -> Option<Nan> {
    use Operator::*;
    Some(match op {
        F32Store { .. } | I32ReinterpretF32 | F32Copysign | F32x4Splat => Nan::F32,
        F32x4ReplaceLane { .. } => Nan::F32,
        F64Store { .. } | I64ReinterpretF64 | F64Copysign | F64x2Splat => Nan::F64,
        F64x2ReplaceLane { .. } => Nan::F64,
        _ => return None,
    })
}

/// The result made canonical after `op`: the SIMD instructions that make
/// NaNs whose bits engines choose.
fn after(op: &Operator<'_>) -> Option<Nan> {
    use Operator::*;
    Some(match op {
        F32x4Add | F32x4Sub | F32x4Mul | F32x4Div | F32x4Sqrt | F32x4Min | F32x4Max | F32x4Ceil
        | F32x4Floor | F32x4Trunc | F32x4Nearest | F32x4DemoteF64x2Zero => Nan::F32x4,
        F64x2Add | F64x2Sub | F64x2Mul | F64x2Div | F64x2Sqrt | F64x2Min | F64x2Max | F64x2Ceil
        | F64x2Floor | F64x2Trunc | F64x2Nearest | F64x2PromoteLowF32x4 => Nan::F64x2,
        _ => return None,
    })
}

/// `x` on top of the stack becomes `select(canonical, x, x != x)`, lane by
/// lane for vectors. `scratch` is the first of three locals, f32, f64 and
/// v128, that the function gets for this.
fn canonicalize(f: &mut Function, nan: Nan, scratch: u32) {
    let local = scratch
        + match nan {
            Nan::F32 => 0,
            Nan::F64 => 1,
            Nan::F32x4 | Nan::F64x2 => 2,
        };
    f.instruction(&Instruction::LocalSet(local));
    f.instruction(&match nan {
        Nan::F32 => Instruction::F32Const(Ieee32::new(0x7fc0_0000)),
        Nan::F64 => Instruction::F64Const(Ieee64::new(0x7ff8_0000_0000_0000)),
        Nan::F32x4 => Instruction::V128Const(lanes(&0x7fc0_0000u32.to_le_bytes())),
        Nan::F64x2 => Instruction::V128Const(lanes(&0x7ff8_0000_0000_0000u64.to_le_bytes())),
    });
    for _ in 0..3 {
        f.instruction(&Instruction::LocalGet(local));
    }
    f.instruction(&match nan {
        Nan::F32 => Instruction::F32Ne,
        Nan::F64 => Instruction::F64Ne,
        Nan::F32x4 => Instruction::F32x4Ne,
        Nan::F64x2 => Instruction::F64x2Ne,
    });
    f.instruction(&match nan {
        Nan::F32 | Nan::F64 => Instruction::Select,
        Nan::F32x4 | Nan::F64x2 => Instruction::V128Bitselect,
    });
}

/// A vector of `lane` repeated.
fn lanes(lane: &[u8]) -> i128 {
    let bytes = lane.repeat(16 / lane.len());
    i128::from_le_bytes(bytes.try_into().expect("a lane of 4 or 8 bytes"))
}

/// `module` (valid WebAssembly 2.0) with its NaNs canonical where
/// preparation makes them so, and nothing else changed: no fuel, no stack
/// limit, the memory's maximum as declared. Custom sections are dropped.
pub fn canonical_nans(module: &[u8]) -> Result<Vec<u8>, String> {
    let scratch = [ValType::F32, ValType::F64, ValType::V128];
    rewrite_bodies(module, &scratch, |f, op, scratch| {
        if let Some(nan) = before(&op) {
            canonicalize(f, nan, scratch);
        }
        let then = after(&op);
        copy(f, op)?;
        if let Some(nan) = then {
            canonicalize(f, nan, scratch);
        }
        Ok(())
    })
}
