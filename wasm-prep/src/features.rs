//! Which WebAssembly a kernel may use: [`ALLOWED`], the feature set both the
//! submitted and the prepared module are validated with, and [`forbidden`],
//! which names the proposal of an instruction outside it so that the error
//! says "relaxed SIMD (f32x4.relaxed_madd)" rather than a validator's
//! "support is not enabled".
//!
//! A kernel may use WebAssembly 2.0 and nothing newer: the MVP with mutable
//! globals, sign extension, saturating float-to-int conversions, multi-value,
//! bulk memory, reference types and 128-bit SIMD, except `externref`.
//! Reference types stay with `funcref`: tables of functions (several of
//! them, with `table.get`, `.set`, `.size`, `.grow`, `.fill`, `.copy`,
//! `.init`), `ref.null func`, `ref.func`, `ref.is_null` and a typed
//! `select`. `externref` needs a garbage collector in wasmtime, and the
//! native worker's wasmtime is built without one (wasmtime 48 turns
//! wasmparser's `GC_TYPES` off without its `gc` feature); browsers would
//! run it, but a kernel runs everywhere or not at all.
//!
//! Everything else is refused: threads and shared memory (a kernel runs on
//! one thread), relaxed SIMD (its results differ between machines), memory64
//! and multiple memories (a kernel has one 32-bit memory), tail calls (they
//! would skip the stack limit's bookkeeping), exceptions, GC and typed
//! function references, extended constant expressions, and every proposal
//! after them, until every engine we run on supports it and the preparer
//! instruments it.

use wasmparser::{Operator, WasmFeatures};

use crate::error::Proposal;

/// The features a kernel may use: WebAssembly 2.0 without the reference
/// types that need a garbage collector (`externref`).
pub const ALLOWED: WasmFeatures = WasmFeatures::WASM2.difference(WasmFeatures::GC_TYPES);

/// The proposal an operator belongs to and its text name, if a kernel may
/// not use it.
pub(crate) fn forbidden(op: &Operator<'_>) -> Option<(Proposal, String)> {
    macro_rules! classify {
        ($( @$proposal:ident $op:ident $({ $($arg:ident: $argty:ty),* })? => $visit:ident ($($ann:tt)*))*) => {
            match op {
                $( Operator::$op { .. } => classify!(@one $proposal $visit), )*
                _ => Some((Proposal::Other("unknown"), "an instruction this preparer does not know".into())),
            }
        };
        (@one mvp $visit:ident) => { None };
        (@one sign_extension $visit:ident) => { None };
        (@one saturating_float_to_int $visit:ident) => { None };
        (@one bulk_memory $visit:ident) => { None };
        (@one reference_types $visit:ident) => { None };
        (@one simd $visit:ident) => { None };
        (@one relaxed_simd $visit:ident) => { Some((Proposal::RelaxedSimd, text_name(stringify!($visit)))) };
        (@one threads $visit:ident) => { Some((Proposal::Threads, text_name(stringify!($visit)))) };
        (@one shared_everything_threads $visit:ident) => { Some((Proposal::Threads, text_name(stringify!($visit)))) };
        (@one acquire_release_atomics $visit:ident) => { Some((Proposal::Threads, text_name(stringify!($visit)))) };
        (@one tail_call $visit:ident) => { Some((Proposal::TailCall, text_name(stringify!($visit)))) };
        (@one exceptions $visit:ident) => { Some((Proposal::Exceptions, text_name(stringify!($visit)))) };
        (@one legacy_exceptions $visit:ident) => { Some((Proposal::Exceptions, text_name(stringify!($visit)))) };
        (@one gc $visit:ident) => { Some((Proposal::Gc, text_name(stringify!($visit)))) };
        (@one function_references $visit:ident) => { Some((Proposal::Gc, text_name(stringify!($visit)))) };
        (@one custom_descriptors $visit:ident) => { Some((Proposal::Gc, text_name(stringify!($visit)))) };
        (@one wide_arithmetic $visit:ident) => { Some((Proposal::WideArithmetic, text_name(stringify!($visit)))) };
        (@one stack_switching $visit:ident) => { Some((Proposal::StackSwitching, text_name(stringify!($visit)))) };
        (@one memory_control $visit:ident) => { Some((Proposal::MemoryControl, text_name(stringify!($visit)))) };
        (@one $other:ident $visit:ident) => { Some((Proposal::Other(stringify!($other)), text_name(stringify!($visit)))) };
    }
    wasmparser::for_each_operator!(classify)
}

/// An instruction's text name from its visitor's name:
/// `visit_f32x4_relaxed_madd` is `f32x4.relaxed_madd`.
fn text_name(visit: &str) -> String {
    const PREFIXES: &[&str] = &[
        "i32", "i64", "f32", "f64", "v128", "i8x16", "i16x8", "i32x4", "i64x2", "f32x4", "f64x2",
        "memory", "table", "ref", "local", "global", "data", "elem", "struct", "array", "i31",
        "any", "extern",
    ];
    let name = visit.strip_prefix("visit_").unwrap_or(visit);
    match name.split_once('_') {
        Some((prefix, rest)) if PREFIXES.contains(&prefix) => format!("{prefix}.{rest}"),
        _ => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_outside_wasm2_are_named_with_their_proposal() {
        assert_eq!(forbidden(&Operator::I32Add), None);
        assert_eq!(forbidden(&Operator::F32x4Add), None);
        assert_eq!(forbidden(&Operator::MemoryFill { mem: 0 }), None);
        assert_eq!(
            forbidden(&Operator::F32x4RelaxedMadd),
            Some((Proposal::RelaxedSimd, "f32x4.relaxed_madd".into()))
        );
        assert_eq!(
            forbidden(&Operator::ReturnCall { function_index: 0 }),
            Some((Proposal::TailCall, "return_call".into()))
        );
        assert_eq!(
            forbidden(&Operator::AtomicFence),
            Some((Proposal::Threads, "atomic_fence".into()))
        );
        assert_eq!(
            forbidden(&Operator::Throw { tag_index: 0 }).map(|(p, _)| p),
            Some(Proposal::Exceptions)
        );
    }
}
