//! The compute kernels of browsergrid and everything about a job that is pure
//! arithmetic: what parameters a kernel takes and which are valid ([`spec`]),
//! how a job splits into tasks ([`spec::KernelSpec::task`]), the kernels
//! themselves ([`primes`], [`mandelbrot`], [`montecarlo`], [`hashsearch`]),
//! the canonical byte form of a task's output ([`output`]) and how outputs
//! fold into a job's result ([`collate`]).
//!
//! Nothing here does I/O or depends on an async runtime, so the same code runs
//! in the coordinator, the native worker and the WebAssembly worker. Every
//! kernel is a pure function of (job parameters, task count, task index): the
//! same task gives byte-identical output on every machine and in every browser,
//! which is what lets the coordinator compare replicas by digest.

pub mod chacha;
pub mod collate;
pub mod digest;
pub mod hashsearch;
pub mod mandelbrot;
pub mod montecarlo;
pub mod output;
pub mod primes;
pub mod runner;
pub mod sha256x4;
pub mod spec;
pub mod wasm;

pub use collate::{Collator, JobResult, ResultSummary, WasmFailure, WasmTaskResult};
pub use digest::ContentDigest;
pub use output::{OutputError, TaskOutput};
pub use runner::{NotBuiltIn, TaskRunner};
pub use spec::{KernelKind, KernelSpec, SpecError, TaskDomain};

/// The largest integer JavaScript represents exactly (`Number.MAX_SAFE_INTEGER`).
///
/// Every integer a job takes or yields stays at or below it, so that browsers and
/// the dashboard, which read JSON numbers as doubles, never see a rounded value.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// The most tasks one job may be split into.
pub const MAX_TASKS: u32 = 1_000_000;
