//! NaN canonicalization: the rules that make a kernel's floating point
//! bit-exact in every engine, and the code that applies them.
//!
//! # Where machines differ
//!
//! WebAssembly floats are IEEE 754 and deterministic, except for the *bits
//! of a NaN an arithmetic instruction produces*: its sign and payload may be
//! those of the canonical NaN or carried over from an input NaN, and engines
//! differ (0.0 / 0.0 is 0xffc00000 on x86 and 0x7fc00000 on ARM; which
//! input's payload propagates depends on the compiler). Instructions that
//! only move or select bits are exact: loads, locals, globals, `select`,
//! `abs`, `neg`, `copysign`'s magnitude, reinterpretations, lane extraction
//! and insertion, `pmin`/`pmax`, and all v128 bitwise operations.
//!
//! # Where the bits can be seen
//!
//! A scalar NaN's bits are invisible to comparisons (every NaN is unordered)
//! and to conversions (`trunc` traps on any NaN, `trunc_sat` gives 0). They
//! become observable in exactly these places, where the preparer
//! canonicalizes the scalar *operand*:
//!
//! | instruction | operand canonicalized | how the bits escape |
//! |---|---|---|
//! | `f32.store`, `f64.store` | the value | memory is read back as integers |
//! | `i32.reinterpret_f32`, `i64.reinterpret_f64` | the float | they are integers |
//! | `f32.copysign`, `f64.copysign` | the sign (2nd) | copysign(1, 0/0) is +1 or -1 by machine |
//! | `f32x4.splat`, `f64x2.splat` | the scalar | a vector's lanes are read as integers |
//! | `f32x4.replace_lane`, `f64x2.replace_lane` | the scalar | same |
//!
//! Nothing else lets a scalar float out: `_start` returns nothing, the WASI
//! functions take no floats, and the host reads no float global.
//!
//! A v128 is untyped: any integer SIMD instruction reads a float lane's bits.
//! So vectors are canonicalized where NaNs are *made*: the preparer
//! canonicalizes the *result* of every SIMD instruction that can produce a
//! NaN with machine-dependent bits:
//!
//! - `f32x4` and `f64x2`: `add`, `sub`, `mul`, `div`, `sqrt`, `min`, `max`,
//!   `ceil`, `floor`, `trunc`, `nearest`;
//! - `f32x4.demote_f64x2_zero` and `f64x2.promote_low_f32x4`.
//!
//! And not: `abs` and `neg` (they change the sign bit only, exactly),
//! `pmin` and `pmax` (defined as a select of one operand), comparisons (they
//! give masks), conversions from integers (never NaN), `trunc_sat` to
//! integers (NaN gives 0), and lane moves, loads, stores, shuffles and
//! bitwise operations (bits in, same bits out). Relaxed SIMD is refused.
//!
//! # What canonical means, and what it costs
//!
//! The canonical NaN is 0x7fc00000 (f32) and 0x7ff8000000000000 (f64):
//! positive, quiet, zero payload. Canonicalization replaces any NaN by it
//! and leaves every other value alone, without branches: for a scalar,
//! `local.tee t; const nan; local.get t; local.get t; eq; select`; for a
//! vector, `local.tee v; v128.const nan×lanes; local.get v; local.get v;
//! fNNxK.eq; v128.bitselect`, with one scratch local of each type a function
//! needs. It costs no fuel.
//!
//! One consequence a kernel's author may notice: *any* NaN that goes through
//! one of the scalar places above comes out canonical, also one whose bits
//! were loaded from memory or written as a constant. A kernel that moves
//! arbitrary bit patterns through float instructions (rather than with
//! integer loads and stores, or `memory.copy`, as `memcpy` does) sees their
//! NaNs canonicalized.

use wasm_encoder::{Ieee32, Ieee64, InstructionSink};
use wasmparser::Operator;

/// The canonical f32 NaN's bits.
pub const CANONICAL_F32: u32 = 0x7fc0_0000;
/// The canonical f64 NaN's bits.
pub const CANONICAL_F64: u64 = 0x7ff8_0000_0000_0000;

/// The type of a value to canonicalize, which is also its scratch local's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Canon {
    F32,
    F64,
    F32x4,
    F64x2,
}

/// The operand on top of the stack to canonicalize before `op`, if any.
pub(crate) fn before(op: &Operator<'_>) -> Option<Canon> {
    match op {
        Operator::F32Store { .. }
        | Operator::I32ReinterpretF32
        | Operator::F32Copysign
        | Operator::F32x4Splat
        | Operator::F32x4ReplaceLane { .. } => Some(Canon::F32),
        Operator::F64Store { .. }
        | Operator::I64ReinterpretF64
        | Operator::F64Copysign
        | Operator::F64x2Splat
        | Operator::F64x2ReplaceLane { .. } => Some(Canon::F64),
        _ => None,
    }
}

/// The result of `op` to canonicalize after it, if any.
pub(crate) fn after(op: &Operator<'_>) -> Option<Canon> {
    match op {
        Operator::F32x4Add
        | Operator::F32x4Sub
        | Operator::F32x4Mul
        | Operator::F32x4Div
        | Operator::F32x4Sqrt
        | Operator::F32x4Min
        | Operator::F32x4Max
        | Operator::F32x4Ceil
        | Operator::F32x4Floor
        | Operator::F32x4Trunc
        | Operator::F32x4Nearest
        | Operator::F32x4DemoteF64x2Zero => Some(Canon::F32x4),
        Operator::F64x2Add
        | Operator::F64x2Sub
        | Operator::F64x2Mul
        | Operator::F64x2Div
        | Operator::F64x2Sqrt
        | Operator::F64x2Min
        | Operator::F64x2Max
        | Operator::F64x2Ceil
        | Operator::F64x2Floor
        | Operator::F64x2Trunc
        | Operator::F64x2Nearest
        | Operator::F64x2PromoteLowF32x4 => Some(Canon::F64x2),
        _ => None,
    }
}

/// Canonicalizes the value on top of the stack, using `scratch`, a local of
/// the value's type.
pub(crate) fn canonicalize(out: &mut Vec<u8>, canon: Canon, scratch: u32) {
    let mut sink = InstructionSink::new(out);
    sink.local_tee(scratch);
    match canon {
        Canon::F32 => sink.f32_const(Ieee32::new(CANONICAL_F32)),
        Canon::F64 => sink.f64_const(Ieee64::new(CANONICAL_F64)),
        Canon::F32x4 => sink.v128_const(splat_f32()),
        Canon::F64x2 => sink.v128_const(splat_f64()),
    };
    sink.local_get(scratch).local_get(scratch);
    match canon {
        Canon::F32 => sink.f32_eq().select(),
        Canon::F64 => sink.f64_eq().select(),
        Canon::F32x4 => sink.f32x4_eq().v128_bitselect(),
        Canon::F64x2 => sink.f64x2_eq().v128_bitselect(),
    };
}

fn splat_f32() -> i128 {
    let lane = u128::from(CANONICAL_F32);
    (lane | lane << 32 | lane << 64 | lane << 96) as i128
}

fn splat_f64() -> i128 {
    let lane = u128::from(CANONICAL_F64);
    (lane | lane << 64) as i128
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_constants_repeat_the_canonical_lane() {
        assert_eq!(
            (splat_f32() as u128).to_le_bytes(),
            [0x00, 0x00, 0xc0, 0x7f].repeat(4).as_slice()
        );
        let f64_lane = CANONICAL_F64.to_le_bytes();
        assert_eq!(
            (splat_f64() as u128).to_le_bytes().as_slice(),
            [f64_lane, f64_lane].concat().as_slice()
        );
    }

    #[test]
    fn exact_instructions_are_left_alone() {
        for op in [
            Operator::F32Add,
            Operator::F32Abs,
            Operator::F32Neg,
            Operator::F32x4Abs,
            Operator::F32x4PMin,
            Operator::F64x2PMax,
            Operator::F32x4ConvertI32x4S,
            Operator::F32ReinterpretI32,
        ] {
            assert_eq!((before(&op), after(&op)), (None, None), "{op:?}");
        }
        assert_eq!(before(&Operator::F64Copysign), Some(Canon::F64));
        assert_eq!(after(&Operator::F64x2PromoteLowF32x4), Some(Canon::F64x2));
    }
}
