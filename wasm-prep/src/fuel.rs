//! The fuel cost model, and the code that charges it.
//!
//! Fuel is what a kernel's run costs, counted the same way in every engine:
//! it depends only on which instructions of the *submitted* module run, never
//! on the engine, its compiler or the machine. The prepared module keeps the
//! fuel left in the exported mutable i64 global `browsergrid.fuel`, which
//! starts at the job's limit ([`grid_kernels::wasm::WasmLimits::fuel`]). The
//! host reads it after the run: fuel used = limit - left, or the limit when
//! the kernel ran out (rule 5).
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
//! 5. **Running out**: a run that ends, however it ends, with the fuel left
//!    below zero ran out of fuel: its outcome is [`Trap::OutOfFuel`] and it
//!    used exactly its limit. Exactly zero left is not out. The host applies
//!    this rule (`grid_wasi::outcome`); the kernel stops itself early, by
//!    setting `browsergrid.trap` to 1 and executing `unreachable`, when a
//!    check finds the fuel below zero. Checks come after the charges at a
//!    function's entry and at loop headers, which no loop iteration and no
//!    call escapes, after every charge of rule 3, and just before every call
//!    that may reach an imported function (a `call` of one, and a
//!    `call_indirect` if an import may be in a table). Segments after an
//!    `if`, `else` or `end` only subtract. So a run whose fuel went below
//!    zero goes on at most to the end of the function bodies already
//!    entered, without a loop iteration, a call or an import, and the
//!    outcome is the one that checking after every charge would give
//!    (trap 1 at the first charge past zero): fuel only decreases, and no
//!    import, the only thing a run does that can be seen, ran since that
//!    charge. [`crate::Options::check_every_charge`] prepares the module
//!    that way; the tests compare the two.
//!
//! Imported WASI functions cost only their `call` instruction here; the host
//! may charge for what they do (bytes written) on its side.
//!
//! # The code
//!
//! A function keeps the fuel left in a local (`Counter::Shadowed`): a
//! charge subtracts from it, without touching the global, and the global
//! is brought up to date only before something could see it: an
//! instruction that may trap, a call, a return, a check's trap. Segments of
//! arithmetic and branches then cost a subtraction in a register each, and
//! the global is exact wherever a run can stop. See `Counter`.
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

/// Where a function keeps the fuel left while it runs.
///
/// `Shadowed(local)`: the local holds the fuel left. It is set from the
/// global at the function's entry charge and again after each call that
/// may enter a prepared function (the only code that charges the global
/// meanwhile). Charges subtract from the local only; [`sync`] writes it to
/// the global, and the body's rewrite calls it, once per segment at most,
/// before the first instruction that could let anyone see the global: one
/// that may trap, a call, a return (`crate::body`'s `quiet` lists the
/// instructions that cannot). A check's trap writes it back too. So the
/// global is exact wherever a run can stop or another function can read
/// it, and charges never load it back (a load waiting on the store before
/// it, on every charge of a hot loop, is what made charges cost).
///
/// `Global`: charges read and write the global alone, as preparation did
/// before the shadow local, with [`crate::Options::check_every_charge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counter {
    Global,
    Shadowed(u32),
}

/// Charges a segment's `cost`: the code at the segment's start. `entry`:
/// at the function's entry, where the shadow local is set from the
/// global.
pub(crate) fn charge(
    out: &mut Vec<u8>,
    globals: Globals,
    counter: Counter,
    cost: u64,
    entry: bool,
) {
    let cost = i64::try_from(cost).unwrap_or(i64::MAX);
    let mut sink = InstructionSink::new(out);
    match counter {
        Counter::Shadowed(left) if !entry => sink.local_get(left),
        _ => sink.global_get(globals.fuel),
    };
    sink.i64_const(cost).i64_sub();
    match counter {
        Counter::Global => sink.global_set(globals.fuel),
        Counter::Shadowed(left) => sink.local_set(left),
    };
}

/// Traps with [`Trap::OutOfFuel`] if the fuel left is below zero, having
/// written it to the global.
pub(crate) fn check(out: &mut Vec<u8>, globals: Globals, counter: Counter) {
    let mut sink = InstructionSink::new(out);
    load(&mut sink, globals, counter);
    sink.i64_const(0).i64_lt_s().if_(BlockType::Empty);
    write_back(&mut sink, globals, counter);
    sink.i32_const(i32::from(Trap::OutOfFuel.code()))
        .global_set(globals.trap)
        .unreachable()
        .end();
}

/// Brings the global up to date with the shadow local: the code before
/// anything that may see the global (a trap, a call, a return).
pub(crate) fn sync(out: &mut Vec<u8>, globals: Globals, counter: Counter) {
    write_back(&mut InstructionSink::new(out), globals, counter);
}

fn write_back(sink: &mut InstructionSink<'_>, globals: Globals, counter: Counter) {
    if let Counter::Shadowed(left) = counter {
        sink.local_get(left).global_set(globals.fuel);
    }
}

/// After a call that may enter a prepared function, which charged the
/// global: the shadow local reads it again.
pub(crate) fn reload(out: &mut Vec<u8>, globals: Globals, counter: Counter) {
    if let Counter::Shadowed(left) = counter {
        InstructionSink::new(out)
            .global_get(globals.fuel)
            .local_set(left);
    }
}

/// Charges `length >> shift` from the i32 on top of the stack, which stays
/// there, and checks: the code just before a bulk operation. The global is
/// then up to date. `length` is a scratch local.
pub(crate) fn charge_length(
    out: &mut Vec<u8>,
    globals: Globals,
    counter: Counter,
    length: u32,
    shift: u8,
) {
    let mut sink = InstructionSink::new(out);
    sink.local_tee(length);
    load(&mut sink, globals, counter);
    sink.local_get(length).i64_extend_i32_u();
    if shift > 0 {
        sink.i64_const(i64::from(shift)).i64_shr_u();
    }
    sink.i64_sub();
    store(&mut sink, globals, counter);
    check(out, globals, counter);
}

/// Saves the delta on top of the stack before a `memory.grow` or
/// `table.grow`.
pub(crate) fn before_grow(out: &mut Vec<u8>, delta: u32) {
    InstructionSink::new(out).local_tee(delta);
}

/// Charges `delta << shift` after a grow that succeeded, and checks; its
/// result stays on the stack, and the global is up to date. `delta` was saved by [`before_grow`];
/// `result` is a scratch local. Branch-free: the charge is
/// `select(delta << shift, 0, result != -1)`.
pub(crate) fn after_grow(
    out: &mut Vec<u8>,
    globals: Globals,
    counter: Counter,
    delta: u32,
    result: u32,
    shift: u8,
) {
    let mut sink = InstructionSink::new(out);
    sink.local_tee(result);
    load(&mut sink, globals, counter);
    sink.local_get(delta).i64_extend_i32_u();
    if shift > 0 {
        sink.i64_const(i64::from(shift)).i64_shl();
    }
    sink.i64_const(0)
        .local_get(result)
        .i32_const(-1)
        .i32_ne()
        .select()
        .i64_sub();
    store(&mut sink, globals, counter);
    check(out, globals, counter);
}

/// Pushes the fuel left.
fn load(sink: &mut InstructionSink<'_>, globals: Globals, counter: Counter) {
    match counter {
        Counter::Global => sink.global_get(globals.fuel),
        Counter::Shadowed(left) => sink.local_get(left),
    };
}

/// Pops the fuel left into the global, and the shadow local.
fn store(sink: &mut InstructionSink<'_>, globals: Globals, counter: Counter) {
    if let Counter::Shadowed(left) = counter {
        sink.local_tee(left);
    }
    sink.global_set(globals.fuel);
}
