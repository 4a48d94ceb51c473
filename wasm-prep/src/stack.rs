//! The stack limit: a call depth that is the same in every engine, reached
//! long before any engine's own stack overflows (whose depth differs between
//! engines, versions and machines, and would make a trap nondeterministic).
//!
//! # The model
//!
//! - Each function has a **weight**, an estimate in bytes of its frame that
//!   depends only on the submitted module:
//!   `64 + 8 × (params + declared locals) + 8 × max operand stack height`,
//!   where the height is the most values the function's operand stack holds
//!   at any point (all its blocks together), as wasmparser's validator counts
//!   it. The locals preparation adds are not counted.
//! - A private mutable i32 global, the **stack pointer**, starts at 0.
//! - **At entry** a function computes `sp + weight`. If that is over the
//!   budget ([`crate::Options::stack_budget`]), the kernel sets
//!   `browsergrid.trap` to 2 ([`Trap::StackLimit`]) and executes
//!   `unreachable`. Otherwise a function that calls (a `call` to a function
//!   the module defines, or any `call_indirect`) stores it in the stack
//!   pointer and in a local: its frame's level. A function that makes no such
//!   call (a leaf, or one that only calls WASI) only checks.
//! - **After each such call** the caller sets the stack pointer back to its
//!   frame's level, so no exit path of the callee (`return`, a `br` out of its
//!   body, falling off its end) needs code, and a callee that left the stack
//!   pointer high is undone.
//!
//! So a chain of calls traps exactly when the weights of the frames on it
//! add up to more than the budget, the same chain in every engine. Tail calls
//! (`return_call*`) would leave a frame without passing back through its
//! caller, and are refused ([`crate::features`]).
//!
//! The budget's default, 256 KiB of estimated frames, is meant to sit well
//! below what Chromium, Firefox and wasmtime allow a thread; it is to be
//! calibrated against them.
//!
//! [`Trap::StackLimit`]: grid_kernels::wasm::Trap::StackLimit

use grid_kernels::wasm::Trap;
use wasm_encoder::{BlockType, InstructionSink};

use crate::Globals;

/// A frame's fixed part, bytes.
const BASE: u64 = 64;
/// Bytes per parameter, local or operand stack slot.
const SLOT: u64 = 8;

/// A function's weight, before clamping ([`clamp`]).
pub(crate) fn weight(params_and_locals: u32, max_height: u32) -> u64 {
    BASE + SLOT * u64::from(params_and_locals) + SLOT * u64::from(max_height)
}

/// The weight as the i32 constant the prologue adds: never more than
/// `budget + 1` (a heavier frame traps on entry all the same), so that the
/// stack pointer, at most `budget` before the add, never overflows an i32
/// when `budget` is below 2^30 ([`crate::Options::check`]).
pub(crate) fn clamp(weight: u64, budget: u32) -> i32 {
    let clamped = weight.min(u64::from(budget) + 1);
    i32::try_from(clamped).unwrap_or(i32::MAX)
}

/// The code at a function's entry. `level` is the local that keeps the
/// frame's level, for a function that calls.
pub(crate) fn prologue(
    out: &mut Vec<u8>,
    globals: Globals,
    weight: i32,
    budget: u32,
    level: Option<u32>,
) {
    let mut sink = InstructionSink::new(out);
    sink.global_get(globals.sp).i32_const(weight).i32_add();
    if let Some(level) = level {
        sink.local_tee(level)
            .global_set(globals.sp)
            .local_get(level);
    }
    // budget < 2^30 and the sum below 2^31: a signed and an unsigned compare
    // agree; unsigned says what is meant.
    sink.i32_const(i32::try_from(budget).unwrap_or(i32::MAX))
        .i32_gt_u()
        .if_(BlockType::Empty)
        .i32_const(i32::from(Trap::StackLimit.code()))
        .global_set(globals.trap)
        .unreachable()
        .end();
}

/// The code after a call: back to this frame's level.
pub(crate) fn restore(out: &mut Vec<u8>, globals: Globals, level: u32) {
    InstructionSink::new(out)
        .local_get(level)
        .global_set(globals.sp);
}
