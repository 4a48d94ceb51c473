//! The deterministic WASI preview 1 subset that user kernels may import
//! (`grid_kernels::wasm::WASI_IMPORTS`), implemented once, with no I/O, no
//! clock and no OS, so that the native and the browser runtime give a
//! kernel the same answers byte for byte.
//!
//! So far: `func` ([`Func`], the functions in the contract's order),
//! `errno` ([`Errno`], every WASI errno) and `config` ([`TaskConfig`], a
//! task's inputs, and [`random_seed`]).

mod config;
mod errno;
mod func;

pub use config::{ConfigError, RANDOM_SEED_DOMAIN, TaskConfig, random_seed};
pub use errno::Errno;
pub use func::Func;
