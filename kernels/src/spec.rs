//! What a job asks for: the kernel and its parameters ([`KernelSpec`]), the rules
//! that make a request valid ([`KernelSpec::validate`]), and how a job of `tasks`
//! tasks splits its domain so that task `i` always covers the same values
//! ([`KernelSpec::task`]).

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::wasm::WasmParams;
use crate::{MAX_SAFE_INTEGER, MAX_TASKS};

/// The largest Mandelbrot image, in pixels (64 MiB of iteration counts).
pub const MAX_PIXELS: u64 = 16 * 1024 * 1024;
/// The largest Mandelbrot width or height.
pub const MAX_IMAGE_SIDE: u32 = 16_384;
/// The largest Mandelbrot iteration limit.
pub const MAX_ITERATIONS: u32 = 10_000_000;
/// The longest hashsearch prefix, in bytes.
pub const MAX_PREFIX_BYTES: usize = 256;

/// The name of a kernel, as it appears in the API, the CLI and the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KernelKind {
    Primes,
    Mandelbrot,
    MontecarloPi,
    Hashsearch,
    /// A user's WebAssembly module ([`crate::wasm`]).
    Wasm,
}

impl KernelKind {
    pub const ALL: [KernelKind; 5] = [
        KernelKind::Primes,
        KernelKind::Mandelbrot,
        KernelKind::MontecarloPi,
        KernelKind::Hashsearch,
        KernelKind::Wasm,
    ];

    /// The kernels every worker runs, compiled in: all but `wasm`.
    pub const BUILT_IN: [KernelKind; 4] = [
        KernelKind::Primes,
        KernelKind::Mandelbrot,
        KernelKind::MontecarloPi,
        KernelKind::Hashsearch,
    ];

    pub fn name(self) -> &'static str {
        match self {
            KernelKind::Primes => "primes",
            KernelKind::Mandelbrot => "mandelbrot",
            KernelKind::MontecarloPi => "montecarlo-pi",
            KernelKind::Hashsearch => "hashsearch",
            KernelKind::Wasm => "wasm",
        }
    }

    pub fn from_name(name: &str) -> Option<KernelKind> {
        KernelKind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

impl fmt::Display for KernelKind {
    /// The name, padded as the format asks.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// Count the primes p with `start <= p < end`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrimesParams {
    pub start: u64,
    pub end: u64,
}

/// Escape-time counts of a `width` x `height` image of the plane
/// `[x_min, x_max] x [y_min, y_max]`, row 0 at the top.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MandelbrotParams {
    pub width: u32,
    pub height: u32,
    pub x_min: f64,
    pub x_max: f64,
    pub y_min: f64,
    pub y_max: f64,
    pub max_iter: u32,
}

/// Estimate pi from `samples` points of the unit square drawn from the ChaCha8
/// stream keyed by `seed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonteCarloParams {
    pub samples: u64,
    pub seed: u64,
}

/// Find the nonces n in `[start, end)` for which SHA-256(prefix || decimal(n))
/// has at least `difficulty` leading zero bits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashsearchParams {
    pub prefix: String,
    pub difficulty: u32,
    pub start: u64,
    pub end: u64,
}

/// A kernel together with its parameters. On the wire and in the API it is
/// `{"kernel": "primes", "params": {"start": 0, "end": 100}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kernel", content = "params", rename_all = "kebab-case")]
pub enum KernelSpec {
    Primes(PrimesParams),
    Mandelbrot(MandelbrotParams),
    MontecarloPi(MonteCarloParams),
    Hashsearch(HashsearchParams),
    Wasm(WasmParams),
}

/// The part of a job's domain one task covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskDomain {
    /// Values (primes, hashsearch nonces) or sample indices (montecarlo-pi)
    /// `start..end`.
    Range { start: u64, end: u64 },
    /// Image rows `first..first + count` (mandelbrot).
    Rows { first: u32, count: u32 },
    /// The job's input number `index` (wasm): task i reads input i.
    Input { index: u32 },
}

impl TaskDomain {
    /// How many values, samples or pixels rows the task covers.
    pub fn len(&self) -> u64 {
        match *self {
            TaskDomain::Range { start, end } => end - start,
            TaskDomain::Rows { count, .. } => u64::from(count),
            TaskDomain::Input { .. } => 1,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a job request is not valid. The message is meant for the person who
/// wrote the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error(
        "unknown kernel '{0}' (known kernels: primes, mandelbrot, montecarlo-pi, hashsearch, wasm)"
    )]
    UnknownKernel(String),
    #[error("invalid parameters for {kernel}: {message}")]
    BadParams { kernel: KernelKind, message: String },
    #[error("{0}")]
    Invalid(String),
}

fn invalid(message: impl Into<String>) -> SpecError {
    SpecError::Invalid(message.into())
}

impl KernelSpec {
    /// Builds a spec from a kernel name and its JSON parameters, with an error
    /// that names the kernel and the offending field.
    pub fn from_parts(kernel: &str, params: serde_json::Value) -> Result<KernelSpec, SpecError> {
        let kind = KernelKind::from_name(kernel)
            .ok_or_else(|| SpecError::UnknownKernel(kernel.to_string()))?;
        let bad = |e: serde_json::Error| SpecError::BadParams {
            kernel: kind,
            message: e.to_string(),
        };
        Ok(match kind {
            KernelKind::Primes => KernelSpec::Primes(serde_json::from_value(params).map_err(bad)?),
            KernelKind::Mandelbrot => {
                KernelSpec::Mandelbrot(serde_json::from_value(params).map_err(bad)?)
            }
            KernelKind::MontecarloPi => {
                KernelSpec::MontecarloPi(serde_json::from_value(params).map_err(bad)?)
            }
            KernelKind::Hashsearch => {
                KernelSpec::Hashsearch(serde_json::from_value(params).map_err(bad)?)
            }
            KernelKind::Wasm => KernelSpec::Wasm(serde_json::from_value(params).map_err(bad)?),
        })
    }

    pub fn kind(&self) -> KernelKind {
        match self {
            KernelSpec::Primes(_) => KernelKind::Primes,
            KernelSpec::Mandelbrot(_) => KernelKind::Mandelbrot,
            KernelSpec::MontecarloPi(_) => KernelKind::MontecarloPi,
            KernelSpec::Hashsearch(_) => KernelKind::Hashsearch,
            KernelSpec::Wasm(_) => KernelKind::Wasm,
        }
    }

    /// The parameters alone, as JSON.
    pub fn params_json(&self) -> serde_json::Value {
        match self {
            KernelSpec::Primes(p) => serde_json::to_value(p),
            KernelSpec::Mandelbrot(p) => serde_json::to_value(p),
            KernelSpec::MontecarloPi(p) => serde_json::to_value(p),
            KernelSpec::Hashsearch(p) => serde_json::to_value(p),
            KernelSpec::Wasm(p) => serde_json::to_value(p),
        }
        .expect("parameters are plain data")
    }

    /// How many units of work the whole job has: values, pixel rows or samples.
    /// A job cannot have more (non-empty) tasks than this.
    pub fn domain_len(&self) -> u64 {
        match self {
            KernelSpec::Primes(p) => p.end.saturating_sub(p.start),
            KernelSpec::Hashsearch(p) => p.end.saturating_sub(p.start),
            KernelSpec::MontecarloPi(p) => p.samples,
            KernelSpec::Mandelbrot(p) => u64::from(p.height),
            // One task an input; the job's inputs say how many.
            KernelSpec::Wasm(_) => u64::from(MAX_TASKS),
        }
    }

    /// A task count that gives tasks of a few to a few tens of milliseconds on
    /// one core, small enough that a job spreads over many workers.
    pub fn default_tasks(&self) -> u32 {
        let per_task: u64 = match self {
            // A wasm job has one task an input; the coordinator counts them.
            KernelSpec::Wasm(_) => return 1,
            KernelSpec::Primes(_) => 10_000_000,
            KernelSpec::Hashsearch(_) => 20_000,
            KernelSpec::MontecarloPi(_) => 2_000_000,
            KernelSpec::Mandelbrot(p) => {
                // Aim for about 16k pixels per band of rows.
                (16_384 / u64::from(p.width.max(1))).max(1)
            }
        };
        let wanted = self.domain_len().div_ceil(per_task);
        wanted.clamp(1, u64::from(MAX_TASKS).min(self.domain_len().max(1))) as u32
    }

    /// Checks the parameters and the task count. A spec that passes runs every
    /// task within bounded time and memory and yields values a JavaScript
    /// client reads exactly.
    pub fn validate(&self, tasks: u32) -> Result<(), SpecError> {
        match self {
            KernelSpec::Wasm(p) => check_wasm(p)?,
            KernelSpec::Primes(p) => check_range("start", p.start, "end", p.end)?,
            KernelSpec::Hashsearch(p) => {
                check_range("start", p.start, "end", p.end)?;
                if p.difficulty == 0 || p.difficulty > 256 {
                    return Err(invalid(format!(
                        "difficulty must be between 1 and 256 bits, got {}",
                        p.difficulty
                    )));
                }
                if p.prefix.len() > MAX_PREFIX_BYTES {
                    return Err(invalid(format!(
                        "prefix must be at most {MAX_PREFIX_BYTES} bytes, got {}",
                        p.prefix.len()
                    )));
                }
            }
            KernelSpec::MontecarloPi(p) => {
                if p.samples == 0 {
                    return Err(invalid("samples must be at least 1"));
                }
                if p.samples > MAX_SAFE_INTEGER {
                    return Err(invalid(format!(
                        "samples must be at most {MAX_SAFE_INTEGER}"
                    )));
                }
                if p.seed > MAX_SAFE_INTEGER {
                    return Err(invalid(format!("seed must be at most {MAX_SAFE_INTEGER}")));
                }
            }
            KernelSpec::Mandelbrot(p) => {
                if p.width == 0 || p.height == 0 {
                    return Err(invalid(format!(
                        "width and height must be at least 1, got {}x{}",
                        p.width, p.height
                    )));
                }
                if p.width > MAX_IMAGE_SIDE || p.height > MAX_IMAGE_SIDE {
                    return Err(invalid(format!(
                        "width and height must be at most {MAX_IMAGE_SIDE}, got {}x{}",
                        p.width, p.height
                    )));
                }
                if u64::from(p.width) * u64::from(p.height) > MAX_PIXELS {
                    return Err(invalid(format!(
                        "the image must have at most {MAX_PIXELS} pixels, got {}x{}",
                        p.width, p.height
                    )));
                }
                if p.max_iter == 0 || p.max_iter > MAX_ITERATIONS {
                    return Err(invalid(format!(
                        "max_iter must be between 1 and {MAX_ITERATIONS}, got {}",
                        p.max_iter
                    )));
                }
                for (name, value) in [
                    ("x_min", p.x_min),
                    ("x_max", p.x_max),
                    ("y_min", p.y_min),
                    ("y_max", p.y_max),
                ] {
                    if !value.is_finite() {
                        return Err(invalid(format!("{name} must be a finite number")));
                    }
                }
                if p.x_min >= p.x_max {
                    return Err(invalid(format!(
                        "x_min ({}) must be less than x_max ({})",
                        p.x_min, p.x_max
                    )));
                }
                if p.y_min >= p.y_max {
                    return Err(invalid(format!(
                        "y_min ({}) must be less than y_max ({})",
                        p.y_min, p.y_max
                    )));
                }
            }
        }
        if tasks == 0 {
            return Err(invalid("tasks must be at least 1"));
        }
        if tasks > MAX_TASKS {
            return Err(invalid(format!(
                "tasks must be at most {MAX_TASKS}, got {tasks}"
            )));
        }
        let units = self.domain_len();
        if u64::from(tasks) > units.max(1) {
            let unit = match self {
                KernelSpec::Primes(_) | KernelSpec::Hashsearch(_) => "values in the range",
                KernelSpec::MontecarloPi(_) => "samples",
                KernelSpec::Mandelbrot(_) => "image rows",
                KernelSpec::Wasm(_) => "tasks a job may have",
            };
            return Err(invalid(format!(
                "tasks ({tasks}) must not exceed the number of {unit} ({units})"
            )));
        }
        Ok(())
    }

    /// The part of the domain task `index` of `tasks` covers. Tasks are
    /// contiguous, in order, and differ in size by at most one unit.
    ///
    /// # Panics
    /// If `tasks` is zero or `index >= tasks`; callers validate first.
    pub fn task(&self, tasks: u32, index: u32) -> TaskDomain {
        assert!(index < tasks, "task index {index} out of range 0..{tasks}");
        match self {
            KernelSpec::Primes(PrimesParams { start, end })
            | KernelSpec::Hashsearch(HashsearchParams { start, end, .. }) => {
                let (start, end) = split(*start, *end, tasks, index);
                TaskDomain::Range { start, end }
            }
            KernelSpec::MontecarloPi(p) => {
                let (start, end) = split(0, p.samples, tasks, index);
                TaskDomain::Range { start, end }
            }
            KernelSpec::Mandelbrot(p) => {
                let (first, end) = split(0, u64::from(p.height), tasks, index);
                TaskDomain::Rows {
                    first: first as u32,
                    count: (end - first) as u32,
                }
            }
            KernelSpec::Wasm(_) => TaskDomain::Input { index },
        }
    }
}

/// A wasm kernel's limits and names: within what any worker can hold, and
/// text a JavaScript client reads exactly.
fn check_wasm(p: &WasmParams) -> Result<(), SpecError> {
    use crate::wasm::WasmLimits;
    if p.fuel == 0 || p.fuel > MAX_SAFE_INTEGER {
        return Err(invalid(format!(
            "fuel must be between 1 and {MAX_SAFE_INTEGER}, got {}",
            p.fuel
        )));
    }
    if p.memory_mib == 0 || p.memory_mib > WasmLimits::MAX_MEMORY_MIB {
        return Err(invalid(format!(
            "memory_mib must be between 1 and {}, got {}",
            WasmLimits::MAX_MEMORY_MIB,
            p.memory_mib
        )));
    }
    if p.stdout_bytes > WasmLimits::MAX_STDOUT_BYTES {
        return Err(invalid(format!(
            "stdout_bytes must be at most {}, got {}",
            WasmLimits::MAX_STDOUT_BYTES,
            p.stdout_bytes
        )));
    }
    if p.stderr_bytes > WasmLimits::MAX_STDERR_BYTES {
        return Err(invalid(format!(
            "stderr_bytes must be at most {}, got {}",
            WasmLimits::MAX_STDERR_BYTES,
            p.stderr_bytes
        )));
    }
    if p.seed > MAX_SAFE_INTEGER {
        return Err(invalid(format!("seed must be at most {MAX_SAFE_INTEGER}")));
    }
    let argv_bytes: usize = p.argv().iter().map(|a| a.len() + 1).sum();
    if argv_bytes > WasmLimits::MAX_ARGV_BYTES {
        return Err(invalid(format!(
            "the name and arguments take {argv_bytes} bytes, over the limit of {}",
            WasmLimits::MAX_ARGV_BYTES
        )));
    }
    if p.description
        .as_ref()
        .is_some_and(|d| d.len() > WasmLimits::MAX_DESCRIPTION_BYTES)
    {
        return Err(invalid(format!(
            "the description must be at most {} bytes",
            WasmLimits::MAX_DESCRIPTION_BYTES
        )));
    }
    crate::wasm::check_files(&p.files).map_err(invalid)?;
    Ok(())
}

fn check_range(start_name: &str, start: u64, end_name: &str, end: u64) -> Result<(), SpecError> {
    if start > end {
        return Err(invalid(format!(
            "{start_name} ({start}) must not be greater than {end_name} ({end})"
        )));
    }
    if end > MAX_SAFE_INTEGER {
        return Err(invalid(format!(
            "{end_name} must be at most {MAX_SAFE_INTEGER} (2^53 - 1), got {end}"
        )));
    }
    Ok(())
}

/// Bounds of part `index` of `parts` of `start..end`. Computed in 128 bits so
/// that no product overflows.
fn split(start: u64, end: u64, parts: u32, index: u32) -> (u64, u64) {
    let len = u128::from(end - start);
    let bound = |i: u32| start + (len * u128::from(i) / u128::from(parts)) as u64;
    (bound(index), bound(index + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn primes(start: u64, end: u64) -> KernelSpec {
        KernelSpec::Primes(PrimesParams { start, end })
    }

    #[test]
    fn spec_round_trips_through_json_in_the_documented_shape() {
        let spec = primes(10, 20);
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kernel": "primes", "params": {"start": 10, "end": 20}})
        );
        let back: KernelSpec = serde_json::from_value(json).unwrap();
        assert_eq!(back, spec);
    }

    #[test]
    fn from_parts_names_unknown_kernels_and_bad_fields() {
        let err = KernelSpec::from_parts("fibonacci", serde_json::json!({})).unwrap_err();
        assert!(
            err.to_string().contains("unknown kernel 'fibonacci'"),
            "{err}"
        );
        let err = KernelSpec::from_parts("primes", serde_json::json!({"start": 1})).unwrap_err();
        assert!(err.to_string().contains("missing field `end`"), "{err}");
        let err = KernelSpec::from_parts(
            "primes",
            serde_json::json!({"start": 1, "end": 2, "stop": 3}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `stop`"), "{err}");
        let err = KernelSpec::from_parts("primes", serde_json::json!({"start": -1, "end": 2}))
            .unwrap_err();
        assert!(
            matches!(
                err,
                SpecError::BadParams {
                    kernel: KernelKind::Primes,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn tasks_cover_the_range_exactly_once_in_order() {
        for (start, end, tasks) in [(0, 10, 3), (5, 5, 1), (7, 1_000_003, 97), (0, 1, 1)] {
            let spec = primes(start, end);
            let mut next = start;
            for index in 0..tasks {
                let TaskDomain::Range { start: s, end: e } = spec.task(tasks, index) else {
                    panic!("primes tasks are ranges")
                };
                assert_eq!(s, next);
                assert!(e >= s);
                next = e;
            }
            assert_eq!(next, end);
        }
    }

    #[test]
    fn task_sizes_differ_by_at_most_one() {
        let spec = primes(0, 1_000);
        let sizes: Vec<u64> = (0..7).map(|i| spec.task(7, i).len()).collect();
        assert_eq!(sizes.iter().sum::<u64>(), 1_000);
        assert!(
            sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
            "{sizes:?}"
        );
    }

    #[test]
    fn mandelbrot_tasks_are_row_bands() {
        let spec = KernelSpec::Mandelbrot(MandelbrotParams {
            width: 4,
            height: 10,
            x_min: -2.0,
            x_max: 1.0,
            y_min: -1.0,
            y_max: 1.0,
            max_iter: 10,
        });
        assert_eq!(spec.task(3, 0), TaskDomain::Rows { first: 0, count: 3 });
        assert_eq!(spec.task(3, 1), TaskDomain::Rows { first: 3, count: 3 });
        assert_eq!(spec.task(3, 2), TaskDomain::Rows { first: 6, count: 4 });
    }

    #[test]
    fn validation_rejects_what_cannot_run() {
        assert!(
            primes(5, 4)
                .validate(1)
                .unwrap_err()
                .to_string()
                .contains("must not be greater")
        );
        assert!(primes(0, MAX_SAFE_INTEGER + 1).validate(1).is_err());
        assert!(primes(0, 10).validate(0).is_err());
        assert!(
            primes(0, 10)
                .validate(11)
                .unwrap_err()
                .to_string()
                .contains("must not exceed")
        );
        assert!(primes(0, 10_000_000).validate(MAX_TASKS + 1).is_err());
        primes(0, 10).validate(10).unwrap();
        // An empty range is a valid question with the answer zero.
        primes(5, 5).validate(1).unwrap();

        let mandel = |width, height, max_iter, x_min: f64| {
            KernelSpec::Mandelbrot(MandelbrotParams {
                width,
                height,
                x_min,
                x_max: 1.0,
                y_min: -1.0,
                y_max: 1.0,
                max_iter,
            })
        };
        mandel(1, 1, 1, -2.0).validate(1).unwrap();
        assert!(mandel(0, 10, 10, -2.0).validate(1).is_err());
        assert!(mandel(10, 0, 10, -2.0).validate(1).is_err());
        assert!(mandel(10, 10, 0, -2.0).validate(1).is_err());
        assert!(mandel(10, 10, 10, f64::NAN).validate(1).is_err());
        assert!(mandel(10, 10, 10, 2.0).validate(1).is_err());
        assert!(mandel(10, 10, 10, -2.0).validate(11).is_err());
        assert!(mandel(16_384, 16_384, 10, -2.0).validate(1).is_err());

        let mc = |samples, seed| KernelSpec::MontecarloPi(MonteCarloParams { samples, seed });
        assert!(mc(0, 1).validate(1).is_err());
        assert!(mc(10, 1).validate(11).is_err());
        mc(10, 1).validate(10).unwrap();

        let hs = |difficulty, prefix: &str| {
            KernelSpec::Hashsearch(HashsearchParams {
                prefix: prefix.into(),
                difficulty,
                start: 0,
                end: 100,
            })
        };
        assert!(hs(0, "x").validate(1).is_err());
        assert!(hs(257, "x").validate(1).is_err());
        assert!(
            hs(8, &"x".repeat(MAX_PREFIX_BYTES + 1))
                .validate(1)
                .is_err()
        );
        hs(256, "").validate(1).unwrap();
    }

    #[test]
    fn default_task_counts_are_valid() {
        let specs = [
            primes(0, 1_000_000_000),
            primes(3, 3),
            KernelSpec::MontecarloPi(MonteCarloParams {
                samples: 1,
                seed: 0,
            }),
            KernelSpec::Mandelbrot(MandelbrotParams {
                width: 1,
                height: 1,
                x_min: 0.0,
                x_max: 1.0,
                y_min: 0.0,
                y_max: 1.0,
                max_iter: 1,
            }),
        ];
        for spec in specs {
            let tasks = spec.default_tasks();
            spec.validate(tasks)
                .unwrap_or_else(|e| panic!("{spec:?} with {tasks} tasks: {e}"));
        }
        assert_eq!(primes(0, 1_000_000_000).default_tasks(), 100);
    }
}
