//! A parameter sweep, written as a browsergrid kernel.
//!
//! Each input line `a b c` names one damped, nonlinear (Duffing) oscillator
//!
//! ```text
//!     x'' + a x' + b x + c x^3 = 0,    x(0) = 1 + jitter,  x'(0) = 0,
//! ```
//!
//! which this kernel integrates with the classic fourth-order Runge-Kutta
//! method for `--steps N` steps (10000 by default) of `--dt H` (0.001). A job
//! with `--lines` gives each task one line; a task given a whole file sweeps
//! all of its lines.
//!
//! - stdout: one line per input line, a JSON object of the task's
//!   parameters and its results (JSON Lines, written by hand: no crates):
//!
//!   ```text
//!   {"a":1e-1,"b":1e0,"c":5e-1,"steps":1000,"dt":1e-3,"x":...,"v":...,"energy":...,"peak":...,"random":"14e8314f5c9e0fc0"}
//!   ```
//!
//!   `x` and `v` are the final position and velocity, `energy` is
//!   `v^2/2 + b x^2/2 + c x^4/4` at the end, `peak` the largest `|x|` seen,
//!   and `random` the 8 bytes drawn for the jitter in hex. Numbers are
//!   written in Rust's shortest exponent form (`{:e}`), which reads back to
//!   the same f64, bit for bit, so redundant runs can be compared byte for
//!   byte; a result that is not finite (an oscillator that blew up) is
//!   `null`, since JSON has no infinity. `examples/sweep/table.py` turns a
//!   job's outputs into one CSV table.
//! - Blank lines and lines starting with `#` are skipped.
//! - exit code: 0, or 2 with a message on stderr for a bad line or option.
//!
//! The jitter shows WASI's `random_get` at work: the grid feeds each task a
//! deterministic stream (ChaCha, keyed by the job's seed, the module and the
//! task), so a task's `random` field is the same every time it runs and on
//! every worker, while different tasks draw different bytes. The kernel
//! calls the import directly rather than through a crate.

use std::io::{BufRead, Write};
use std::process::ExitCode;

/// WASI preview 1's `random_get`, declared by hand. On other targets (for
/// `cargo test` on the host) a fixed stand-in takes its place.
#[cfg(target_os = "wasi")]
mod wasi {
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    unsafe extern "C" {
        /// Fills `buf[..len]` with random bytes; returns a WASI errno.
        #[link_name = "random_get"]
        fn wasi_random_get(buf: *mut u8, len: usize) -> u16;
    }

    pub fn random_bytes(buf: &mut [u8]) -> Result<(), u16> {
        // SAFETY: the host writes at most `buf.len()` bytes into `buf`.
        match unsafe { wasi_random_get(buf.as_mut_ptr(), buf.len()) } {
            0 => Ok(()),
            errno => Err(errno),
        }
    }
}

#[cfg(not(target_os = "wasi"))]
mod wasi {
    pub fn random_bytes(buf: &mut [u8]) -> Result<(), u16> {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = i as u8;
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("sweep: {message}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let options = Options::parse(std::env::args().skip(1))?;
    let stdin = std::io::stdin().lock();
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    for (index, line) in stdin.lines().enumerate() {
        let line = line.map_err(|e| format!("reading stdin: {e}"))?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let params = Params::parse(line).map_err(|e| format!("line {}: {e}", index + 1))?;

        let mut random = [0u8; 8];
        wasi::random_bytes(&mut random)
            .map_err(|errno| format!("random_get failed: errno {errno}"))?;
        let result = simulate(&params, jitter(random), &options);

        let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
        writeln!(
            stdout,
            "{{\"a\":{},\"b\":{},\"c\":{},\"steps\":{},\"dt\":{},\"x\":{},\"v\":{},\"energy\":{},\"peak\":{},\"random\":\"{hex}\"}}",
            number(params.a),
            number(params.b),
            number(params.c),
            options.steps,
            number(options.dt),
            number(result.x),
            number(result.v),
            number(result.energy),
            number(result.peak),
        )
        .map_err(|e| format!("writing stdout: {e}"))?;
    }
    stdout.flush().map_err(|e| format!("writing stdout: {e}"))
}

/// A float as a JSON number: the shortest digits that read back to the same
/// f64 (`1e-1`, `3.9433496862971673e-1`), or `null` if it is not finite.
fn number(x: f64) -> String {
    if x.is_finite() {
        format!("{x:e}")
    } else {
        "null".into()
    }
}

/// The job's arguments: how to integrate.
#[derive(Debug, Clone, PartialEq)]
struct Options {
    steps: u32,
    dt: f64,
}

impl Options {
    fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
        let mut options = Options {
            steps: 10_000,
            dt: 1e-3,
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let value = match arg.as_str() {
                "--steps" | "--dt" => args.next().ok_or_else(|| format!("{arg} needs a value"))?,
                _ => {
                    return Err(format!(
                        "unknown argument {arg:?} (expected --steps N --dt H)"
                    ));
                }
            };
            let bad = || format!("{arg} {value:?}: expected a positive number");
            match arg.as_str() {
                "--steps" => {
                    options.steps = value.parse().ok().filter(|&n| n > 0).ok_or_else(bad)?
                }
                _ => {
                    options.dt = value
                        .parse()
                        .ok()
                        .filter(|&h: &f64| h > 0.0 && h.is_finite())
                        .ok_or_else(bad)?
                }
            }
        }
        Ok(options)
    }
}

/// One oscillator: damping `a`, stiffness `b`, cubic stiffness `c`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Params {
    a: f64,
    b: f64,
    c: f64,
}

impl Params {
    fn parse(line: &str) -> Result<Params, String> {
        let fields: Vec<f64> = line
            .split_whitespace()
            .map(|f| f.parse::<f64>().ok().filter(|x| x.is_finite()))
            .collect::<Option<_>>()
            .ok_or_else(|| format!("{line:?}: expected three finite numbers a b c"))?;
        match fields[..] {
            [a, b, c] => Ok(Params { a, b, c }),
            _ => Err(format!("{line:?}: expected three numbers a b c")),
        }
    }

    /// The acceleration x'' at position `x` and velocity `v`.
    fn accel(&self, x: f64, v: f64) -> f64 {
        -self.a * v - self.b * x - self.c * x * x * x
    }
}

/// A tiny offset in [-5e-10, 5e-10) to the starting position, from 8 random
/// bytes: their top 53 bits as a fraction in [0, 1).
fn jitter(random: [u8; 8]) -> f64 {
    let unit = (u64::from_le_bytes(random) >> 11) as f64 / (1u64 << 53) as f64;
    (unit - 0.5) * 1e-9
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Outcome {
    x: f64,
    v: f64,
    energy: f64,
    peak: f64,
}

/// RK4 on the first-order system (x, v)' = (v, accel(x, v)).
fn simulate(p: &Params, jitter: f64, options: &Options) -> Outcome {
    let h = options.dt;
    let (mut x, mut v) = (1.0 + jitter, 0.0);
    let mut peak = x.abs();
    for _ in 0..options.steps {
        let (k1x, k1v) = (v, p.accel(x, v));
        let (k2x, k2v) = (
            v + 0.5 * h * k1v,
            p.accel(x + 0.5 * h * k1x, v + 0.5 * h * k1v),
        );
        let (k3x, k3v) = (
            v + 0.5 * h * k2v,
            p.accel(x + 0.5 * h * k2x, v + 0.5 * h * k2v),
        );
        let (k4x, k4v) = (v + h * k3v, p.accel(x + h * k3x, v + h * k3v));
        x += h / 6.0 * (k1x + 2.0 * k2x + 2.0 * k3x + k4x);
        v += h / 6.0 * (k1v + 2.0 * k2v + 2.0 * k3v + k4v);
        peak = peak.max(x.abs());
    }
    let energy = 0.5 * v * v + 0.5 * p.b * x * x + 0.25 * p.c * x * x * x * x;
    Outcome { x, v, energy, peak }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_options_parse() {
        assert_eq!(
            Params::parse(" 0.1 1 -2.5e-1 ").unwrap(),
            Params {
                a: 0.1,
                b: 1.0,
                c: -0.25
            }
        );
        for bad in ["1 2", "1 2 3 4", "1 x 3", "1 inf 3", "NaN 1 1"] {
            assert!(Params::parse(bad).is_err(), "{bad}");
        }
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert_eq!(
            Options::parse(args("")).unwrap(),
            Options {
                steps: 10_000,
                dt: 1e-3
            }
        );
        assert_eq!(
            Options::parse(args("--steps 5 --dt 0.5")).unwrap(),
            Options { steps: 5, dt: 0.5 }
        );
        for bad in ["--steps 0", "--dt -1", "--steps", "--seed 3"] {
            assert!(Options::parse(args(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_undamped_linear_oscillator_keeps_its_energy_and_phase() {
        // x'' = -x from x = 1: x(t) = cos t. After t = 2 pi it is back at 1.
        let options = Options {
            steps: 6283,
            dt: std::f64::consts::TAU / 6283.0,
        };
        let out = simulate(
            &Params {
                a: 0.0,
                b: 1.0,
                c: 0.0,
            },
            0.0,
            &options,
        );
        assert!((out.x - 1.0).abs() < 1e-9 && out.v.abs() < 1e-9, "{out:?}");
        assert!((out.energy - 0.5).abs() < 1e-9 && out.peak >= 1.0);
    }

    #[test]
    fn damping_takes_energy_away() {
        let out = simulate(
            &Params {
                a: 0.5,
                b: 1.0,
                c: 0.1,
            },
            0.0,
            &Options {
                steps: 10_000,
                dt: 1e-3,
            },
        );
        assert!(out.energy < 0.5 * 0.5 && out.energy > 0.0, "{out:?}");
    }

    #[test]
    fn numbers_are_json_and_read_back_exactly() {
        for x in [0.1, 1.0, -0.25, 3.9433496862971673e-1, 5e-324, f64::MAX] {
            let text = number(x);
            assert_eq!(
                text.parse::<f64>().unwrap().to_bits(),
                x.to_bits(),
                "{text}"
            );
            assert!(!text.contains(['E', '+', 'i', 'N']), "{text}");
        }
        assert_eq!(number(0.1), "1e-1");
        assert_eq!(number(-0.0), "-0e0");
        assert_eq!(number(f64::INFINITY), "null");
        assert_eq!(number(f64::NAN), "null");
    }

    #[test]
    fn jitter_is_small_and_follows_the_bytes() {
        assert_eq!(jitter([0; 8]), -5e-10);
        assert!(jitter([0xff; 8]) < 5e-10 && jitter([0xff; 8]) > 4.9e-10);
        assert_ne!(
            jitter([1, 2, 3, 4, 5, 6, 7, 8]),
            jitter([8, 7, 6, 5, 4, 3, 2, 1])
        );
    }
}
