//! The preparer's tests, in one binary: refusals and their messages
//! ([`refusals`]), prepared modules run under wasmi against the originals
//! and against the cost model worked out by hand ([`runs`]), against the
//! same modules checking their fuel after every charge ([`checks`]), seeded
//! differential fuzzing with wasm-smith ([`fuzz`]) against the originals with
//! canonical NaNs ([`canonical`]), and hostile shapes ([`hostile`]). The
//! tests' own module rewriting is in [`rewrite`]; [`support`] runs modules
//! under wasmi, clear of a wasmi bug ([`wasmi_workaround`]).

mod canonical;
mod checks;
mod fuzz;
mod hostile;
mod refusals;
mod rewrite;
mod runs;
mod support;
mod wasmi_workaround;

use grid_kernels::wasm::WasmLimits;
use grid_wasm_prep::{Options, PrepareError, Prepared, prepare};
use wasmparser::WasmFeatures;

/// The features wasmtime 48.0.8 validates a module with in the native
/// worker, written down from its source (`Config::features` in
/// src/config.rs): WebAssembly 3.0, less `GC_TYPES` and exceptions in a
/// build without its `gc` feature, less threads without `threads` (the
/// worker's build has neither), less what the worker turns off: relaxed
/// SIMD, multi-memory, memory64 and tail calls. Whatever the preparer
/// accepts must validate with these.
pub const WASMTIME_48_NO_GC: WasmFeatures = WasmFeatures::WASM3
    .difference(WasmFeatures::GC_TYPES)
    .difference(WasmFeatures::EXCEPTIONS)
    .difference(WasmFeatures::THREADS)
    .difference(WasmFeatures::RELAXED_SIMD)
    .difference(WasmFeatures::MULTI_MEMORY)
    .difference(WasmFeatures::MEMORY64)
    .difference(WasmFeatures::TAIL_CALL);

/// A module from its text.
pub fn wasm(wat: &str) -> Vec<u8> {
    wat::parse_str(wat).unwrap_or_else(|e| panic!("bad test module: {e}\n{wat}"))
}

/// `wat` prepared with the default limits and options.
pub fn prep(wat: &str) -> Prepared {
    prep_with(wat, &WasmLimits::DEFAULT, &Options::DEFAULT)
}

pub fn prep_with(wat: &str, limits: &WasmLimits, options: &Options) -> Prepared {
    prepare(&wasm(wat), limits, options).unwrap_or_else(|e| panic!("refused: {e}"))
}

/// Why `wat` is refused with the default limits and options.
pub fn refusal(wat: &str) -> PrepareError {
    match prepare(&wasm(wat), &WasmLimits::DEFAULT, &Options::DEFAULT) {
        Ok(_) => panic!("prepared, but should be refused:\n{wat}"),
        Err(e) => e,
    }
}
