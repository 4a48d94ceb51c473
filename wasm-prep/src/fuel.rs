//! The fuel cost model, and the code that charges it.
//!
//! Fuel is what a kernel's run costs, counted the same way in every engine:
//! it depends only on which instructions of the *submitted* module run, never
//! on the engine, its compiler or the machine. The prepared module keeps the
//! fuel left in the exported mutable i64 global `browsergrid.fuel`, which
//! starts at the job's limit ([`grid_kernels::wasm::WasmLimits::fuel`]). The
//! host reads it after the run: fuel used = limit - left, or the limit when
//! the kernel ran out.
//!
//! # The cost model
//!
//! 1. **Every instruction of the submitted module costs 1**, whatever it is:
//!    `i32.add`, `f64.sqrt`, `call`, `block`, `end`, `else`, `nop` alike.
//!    An instruction is one operator as the binary format encodes it; a
//!    function's final `end` is one too.
//! 2. **Instructions are charged by segment, before they run.** A function's
//!    instructions are cut into segments at these points, and a segment's
//!    cost (the number of instructions in it) is charged when control reaches
//!    its start:
//!    - the function's entry;
//!    - just after each `loop` (the loop header: every iteration pays, the
//!      first one included);
//!    - just after each `if` (the then arm) and each `else` (the else arm);
//!    - just after each `end` but the function's last (a block's, loop's or
//!      if's end is where branches and skipped arms land).
//!
//!    A segment runs to the next such point, so it contains no control flow
//!    that enters it from elsewhere: control enters only at its start. It
//!    may leave early (`br`, `br_if`, `br_table`, `return`, a trap, a call
//!    that does not return): the whole segment was already charged. Code
//!    after a taken `br_if` in the same segment, and unreachable code, is
//!    therefore paid for; that is the model, not an error.
//! 3. **Bulk operations also pay for their length**, charged from the length
//!    operand just before they run (the fixed 1 of rule 1 still applies):
//!    - `memory.fill`, `memory.copy`, `memory.init`: length / 8, rounded down
//!      (1 per 8 bytes);
//!    - `table.fill`, `table.copy`, `table.init`: the number of elements;
//!    - `memory.grow`: 8192 per page grown (a 64 KiB page costs what filling
//!      it does), and `table.grow`: 1 per element grown; both charged just
//!      after the instruction and only if it succeeded (a failed grow, which
//!      returns -1, grows nothing).
//! 4. **What preparation adds costs nothing**: the charges themselves, the
//!    stack limit's bookkeeping ([`crate::stack`]) and NaN canonicalization
//!    ([`crate::nan`]).
//! 5. **Running out**: after a charge, if the fuel left is below zero, the
//!    kernel sets `browsergrid.trap` to 1 ([`Trap::OutOfFuel`]) and executes
//!    `unreachable`. Exactly zero left is not out: the kernel goes on. A run
//!    that ends with fuel left below zero used exactly its limit.
//!
//! Imported WASI functions cost only their `call` instruction here; the host
//! may charge for what they do (bytes written) on its side.
//!
//! [`Trap::OutOfFuel`]: grid_kernels::wasm::Trap::OutOfFuel

use grid_kernels::wasm::Trap;
use wasm_encoder::{BlockType, InstructionSink};

use crate::Globals;

/// `memory.fill`, `.copy` and `.init` cost 1 per 2^3 = 8 bytes.
pub(crate) const BYTES_SHIFT: u8 = 3;
/// `table.fill`, `.copy` and `.init` cost 1 per element.
pub(crate) const ELEMENTS_SHIFT: u8 = 0;
/// `memory.grow` costs 2^13 = 8192 per page: one per 8 bytes of the 64 KiB.
pub(crate) const PAGE_SHIFT: u8 = 13;
/// `table.grow` costs 1 per element.
pub(crate) const GROWN_ELEMENTS_SHIFT: u8 = 0;

/// Charges a segment's `cost`: the code at the segment's start.
pub(crate) fn charge(out: &mut Vec<u8>, globals: Globals, cost: u64) {
    let cost = i64::try_from(cost).unwrap_or(i64::MAX);
    let mut sink = InstructionSink::new(out);
    sink.global_get(globals.fuel)
        .i64_const(cost)
        .i64_sub()
        .global_set(globals.fuel);
    check(&mut sink, globals);
}

/// Charges `length >> shift` from the i32 on top of the stack, which stays
/// there: the code just before a bulk operation. `length` is a scratch local.
pub(crate) fn charge_length(out: &mut Vec<u8>, globals: Globals, length: u32, shift: u8) {
    let mut sink = InstructionSink::new(out);
    sink.local_tee(length)
        .global_get(globals.fuel)
        .local_get(length)
        .i64_extend_i32_u();
    if shift > 0 {
        sink.i64_const(i64::from(shift)).i64_shr_u();
    }
    sink.i64_sub().global_set(globals.fuel);
    check(&mut sink, globals);
}

/// Saves the delta on top of the stack before a `memory.grow` or
/// `table.grow`.
pub(crate) fn before_grow(out: &mut Vec<u8>, delta: u32) {
    InstructionSink::new(out).local_tee(delta);
}

/// Charges `delta << shift` after a grow that succeeded; its result stays on
/// the stack. `delta` was saved by [`before_grow`]; `result` is a scratch
/// local. Branch-free: the charge is `select(delta << shift, 0, result != -1)`.
pub(crate) fn after_grow(out: &mut Vec<u8>, globals: Globals, delta: u32, result: u32, shift: u8) {
    let mut sink = InstructionSink::new(out);
    sink.local_tee(result)
        .global_get(globals.fuel)
        .local_get(delta)
        .i64_extend_i32_u();
    if shift > 0 {
        sink.i64_const(i64::from(shift)).i64_shl();
    }
    sink.i64_const(0)
        .local_get(result)
        .i32_const(-1)
        .i32_ne()
        .select()
        .i64_sub()
        .global_set(globals.fuel);
    check(&mut sink, globals);
}

/// Traps with [`Trap::OutOfFuel`] if the fuel left is below zero.
fn check(sink: &mut InstructionSink<'_>, globals: Globals) {
    sink.global_get(globals.fuel)
        .i64_const(0)
        .i64_lt_s()
        .if_(BlockType::Empty)
        .i32_const(i32::from(Trap::OutOfFuel.code()))
        .global_set(globals.trap)
        .unreachable()
        .end();
}
