//! Preparation of a user's WebAssembly kernel: the one step between a
//! submitted WASI preview 1 module and the bytes every engine runs.
//!
//! The coordinator calls [`prepare`] once per submitted module; wasmtime in
//! the native worker and V8 or SpiderMonkey in browsers then all run the
//! same prepared bytes. Determinism, limits and metering are built *into*
//! the module, so they hold in every engine without its help:
//!
//! - **Validation** ([`features`], [`module`]): the module must be valid
//!   WebAssembly 2.0 without `externref` (no threads, relaxed SIMD, memory64,
//!   multiple memories, tail calls, exceptions, GC, nor anything newer);
//!   import only the WASI
//!   functions of [`grid_kernels::wasm::WASI_IMPORTS`], each with exactly its
//!   signature; export `_start` (of type [] -> []) and `memory`; define one
//!   32-bit memory that starts within the job's limit; have no start section
//!   and no export named like ours (`browsergrid.*`). Anything else is a
//!   [`PrepareError`] whose message names the problem.
//! - **Fuel** ([`fuel`]): every instruction costs 1, charged per segment of
//!   straight-line code at its start, plus bulk operations by their length,
//!   in the exported i64 global `browsergrid.fuel`; a run that ends with it
//!   below zero ran out of fuel. The kernel checks at function entries, loop
//!   headers and before calls to WASI, and then traps with
//!   `browsergrid.trap` = 1.
//! - **Stack** ([`stack`]): a call depth limit by estimated frame sizes,
//!   the same in every engine; past it the kernel traps with
//!   `browsergrid.trap` = 2.
//! - **NaNs** ([`nan`]): the bits of a NaN are canonical wherever they can be
//!   seen.
//! - **Memory and tables**: the memory's maximum becomes the job's limit (or
//!   the declared maximum if lower), so `memory.grow` past it returns -1 in
//!   every engine; each table's maximum likewise becomes
//!   [`Options::max_table_elements`] at most.
//!
//! Custom sections are dropped except `name` (function names for traces):
//! DWARF would describe code that preparation has moved.
//!
//! The preparer is the first thing a hostile submitter attacks: nothing here
//! panics on any input (a bug surfaces as [`PrepareError::Internal`]), no
//! code recurses on the input's nesting, and memory stays within a small
//! multiple of [`Options::max_prepared_bytes`]. The prepared module is
//! validated again before it is returned. Nothing here does I/O; hashing the
//! prepared bytes is the caller's business.

use grid_kernels::wasm::WasmLimits;

mod body;
pub mod error;
pub mod features;
pub mod fuel;
pub mod module;
pub mod nan;
pub mod stack;

pub use error::{PrepareError, Proposal};

/// The preparer's own bounds, apart from a job's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The largest module accepted, bytes.
    pub max_module_bytes: usize,
    /// The largest prepared module, bytes; preparation stops past it.
    pub max_prepared_bytes: usize,
    /// The stack limit: the most estimated frame bytes on a chain of calls
    /// ([`stack`]). Below 2^30.
    pub stack_budget: u32,
    /// The most functions, imported and defined.
    pub max_functions: u32,
    /// The most locals a function may declare (besides its parameters).
    pub max_locals: u32,
    /// The largest prepared function body, bytes. Engines refuse larger ones
    /// (7,654,321 in V8, SpiderMonkey and wasmparser).
    pub max_function_bytes: usize,
    /// The most elements a table may start with, and the maximum every
    /// table gets, so that `table.grow` fails at the same size everywhere.
    pub max_table_elements: u32,
    /// Check the fuel left after every charge, as preparation once did,
    /// rather than at function entries, loop headers and before calls that
    /// may reach an import ([`fuel`] rule 5). The outcome of every run is
    /// the same either way; the tests compare the two. Off by default: it
    /// costs up to a third more run time on branchy code.
    pub check_every_charge: bool,
}

impl Options {
    pub const DEFAULT: Options = Options {
        max_module_bytes: 64 * 1024 * 1024,
        max_prepared_bytes: 256 * 1024 * 1024,
        stack_budget: 256 * 1024,
        max_functions: 200_000,
        max_locals: 40_000,
        max_function_bytes: 7_654_321,
        max_table_elements: 1_000_000,
        check_every_charge: false,
    };

    /// Whether these bounds can be kept: the prepared module must still be
    /// one every engine accepts, and the stack pointer an i32 that does not
    /// overflow.
    pub fn check(&self) -> Result<(), PrepareError> {
        let fail = |what: String| Err(PrepareError::Options(what));
        if self.stack_budget == 0 || self.stack_budget >= 1 << 30 {
            return fail(format!(
                "the stack budget {} is not between 1 and 2^30 - 1",
                self.stack_budget
            ));
        }
        // wasmparser's and the engines' limit on a function's locals.
        const ENGINE_MAX_LOCALS: u32 = 50_000;
        if self.max_locals > ENGINE_MAX_LOCALS - body::MAX_SCRATCH_LOCALS - 1_000 {
            return fail(format!(
                "max_locals {} leaves no room for parameters and scratch locals under the \
                 engines' {ENGINE_MAX_LOCALS}",
                self.max_locals
            ));
        }
        if self.max_functions > 1_000_000 {
            return fail(format!(
                "max_functions {} is over the engines' 1,000,000",
                self.max_functions
            ));
        }
        if self.max_table_elements > 10_000_000 {
            return fail(format!(
                "max_table_elements {} is over the engines' 10,000,000",
                self.max_table_elements
            ));
        }
        Ok(())
    }
}

impl Default for Options {
    fn default() -> Options {
        Options::DEFAULT
    }
}

/// A prepared module: the bytes every engine runs, and what preparation
/// found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub bytes: Vec<u8>,
    pub info: Info,
}

/// What the submitted module is, as preparation found it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Info {
    /// The WASI functions it imports, in import order.
    pub imports: Vec<&'static str>,
    /// Its memory's size at start, pages of 64 KiB.
    pub memory_min_pages: u32,
    /// The maximum it declared, if any.
    pub memory_declared_max_pages: Option<u64>,
    /// The maximum of the prepared module's memory: the declared maximum or
    /// the job's limit, whichever is lower.
    pub memory_max_pages: u32,
    /// The functions it defines, and those it imports.
    pub functions: u32,
    pub imported_functions: u32,
    /// What preparation added.
    pub instrumentation: Instrumentation,
}

/// Counts of what preparation added to the code.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Instrumentation {
    /// Segment charges ([`fuel`] rule 2).
    pub fuel_charges: u64,
    /// Checks of the fuel left ([`fuel`] rule 5): segment charges that
    /// check, and checks before calls that may reach an import (charges by
    /// length, which all check, are not counted here).
    pub fuel_checks: u64,
    /// Charges by a bulk operation's length or a grow's delta (rule 3).
    pub length_charges: u64,
    /// Values canonicalized ([`nan`]).
    pub nan_sites: u64,
    /// Stack pointer restores after calls ([`stack`]).
    pub call_restores: u64,
    /// The heaviest function's stack weight, bytes.
    pub max_frame_weight: u64,
}

impl Instrumentation {
    fn add(&mut self, other: &Instrumentation) {
        self.fuel_charges += other.fuel_charges;
        self.fuel_checks += other.fuel_checks;
        self.length_charges += other.length_charges;
        self.nan_sites += other.nan_sites;
        self.call_restores += other.call_restores;
        self.max_frame_weight = self.max_frame_weight.max(other.max_frame_weight);
    }
}

/// The indices of the globals preparation adds, after the module's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Globals {
    /// `browsergrid.fuel`, exported.
    pub fuel: u32,
    /// `browsergrid.trap`, exported.
    pub trap: u32,
    /// The stack pointer, private.
    pub sp: u32,
}

/// Prepares `module` for jobs with `limits`: validates it, then builds fuel,
/// the stack limit, NaN canonicalization and the memory limit into it.
pub fn prepare(
    module: &[u8],
    limits: &WasmLimits,
    options: &Options,
) -> Result<Prepared, PrepareError> {
    options.check()?;
    if module.len() > options.max_module_bytes {
        return Err(PrepareError::TooLarge {
            size: module.len(),
            limit: options.max_module_bytes,
        });
    }
    if !module.starts_with(b"\0asm") {
        return Err(PrepareError::NotWasm);
    }
    // A component has the same magic, then version 0x0d and layer 1.
    if module.get(6..8) == Some(&[1, 0]) {
        return Err(PrepareError::Component);
    }
    if limits.fuel > i64::MAX as u64 {
        return Err(PrepareError::FuelLimit { fuel: limits.fuel });
    }
    // Belt and braces: the preparer is written not to panic, but a panic in
    // it or in a library must not take the coordinator's thread with it.
    let prepared = std::panic::catch_unwind(|| module::prepare(module, limits, options)).map_err(
        |panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            PrepareError::Internal(format!("the preparer panicked: {what}"))
        },
    )??;
    wasmparser::Validator::new_with_features(features::ALLOWED)
        .validate_all(&prepared.bytes)
        .map_err(|e| {
            PrepareError::Internal(format!(
                "the prepared module is invalid: {} (at byte {})",
                e.message(),
                e.offset()
            ))
        })?;
    Ok(prepared)
}
