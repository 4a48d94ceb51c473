//! The preparer's tests, in one binary: refusals and their messages
//! ([`refusals`]), prepared modules run under wasmi against the originals
//! and against the cost model worked out by hand ([`runs`]), seeded
//! differential fuzzing with wasm-smith ([`fuzz`]) against the originals with
//! canonical NaNs ([`canonical`]), and hostile shapes ([`hostile`]). The
//! tests' own module rewriting is in [`rewrite`]; [`support`] runs modules
//! under wasmi, clear of a wasmi bug ([`wasmi_workaround`]).

mod canonical;
mod fuzz;
mod hostile;
mod refusals;
mod rewrite;
mod runs;
mod support;
mod wasmi_workaround;

use grid_kernels::wasm::WasmLimits;
use grid_wasm_prep::{Options, PrepareError, Prepared, prepare};

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
