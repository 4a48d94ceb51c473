//! Differential fuzzing: wasm-smith writes thousands of seeded modules of the
//! allowed features (externref made funcref), importing from the WASI subset
//! and exporting `_start` and `memory`. Each is either refused with a
//! sentence, or prepared (and then valid for wasmtime 48 without gc), and
//! the prepared module, run under wasmi with fuel and stack to spare, ends
//! as the original does (trap or not, exit code) with the same stdout, the
//! same final memory and the same results, bit for bit: the original, that
//! is, with its NaNs made canonical where preparation makes them so
//! ([`crate::canonical`], which says why the original itself cannot be the
//! reference). And it gives the same outcome, fuel included, as the same
//! module prepared to check its fuel after every charge
//! ([`Options::check_every_charge`], the model before checks were left
//! out): with fuel to spare, and with limits that cut the run short at
//! points all through it.
//!
//! `GRID_PREP_FUZZ_SEEDS` sets how many modules (default 5000);
//! `GRID_PREP_FUZZ_FIRST` the first seed (default 0).

use arbitrary::Unstructured;
use grid_kernels::wasm::{WASI_IMPORTS, WASI_MODULE, WasmLimits};
use grid_wasm_prep::{Options, PrepareError, prepare};
use wasm_smith::{Config, Module};

use crate::canonical::canonical_nans;
use crate::rewrite::extern_to_func;
use crate::support::{self, Run, RunConfig};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The WASI subset, as a module wasm-smith picks imports from.
fn wasi_imports() -> Vec<u8> {
    let name = |t: &grid_kernels::wasm::ValType| match t {
        grid_kernels::wasm::ValType::I32 => "i32",
        grid_kernels::wasm::ValType::I64 => "i64",
    };
    let mut wat = String::from("(module\n");
    for import in WASI_IMPORTS {
        let params: Vec<_> = import.params.iter().map(name).collect();
        let results: Vec<_> = import.results.iter().map(name).collect();
        wat += &format!(
            "(import \"{WASI_MODULE}\" \"{}\" (func (param {}) (result {})))\n",
            import.name,
            params.join(" "),
            results.join(" ")
        );
    }
    wat += ")";
    crate::wasm(&wat)
}

/// What every generated module exports.
const EXPORTS: &str = r#"(module
  (memory (export "memory") 1 16)
  (func (export "_start"))
  (func (export "result") (result i32 i64 f64) unreachable))"#;

/// The memory limit the generated memory's maximum (16 pages) matches, so
/// that `memory.grow` behaves the same before and after preparation.
const LIMITS: WasmLimits = WasmLimits {
    fuel: 1 << 40,
    memory_mib: 1,
    ..WasmLimits::DEFAULT
};

fn config(seed: u64, imports: &[u8]) -> Config {
    Config {
        available_imports: Some(imports.to_vec()),
        exports: Some(crate::wasm(EXPORTS)),
        allow_start_export: false,
        canonicalize_nans: true,
        disallow_traps: seed.is_multiple_of(3),
        // WebAssembly 2.0, as the preparer allows.
        bulk_memory_enabled: true,
        multi_value_enabled: true,
        reference_types_enabled: true,
        saturating_float_to_int_enabled: true,
        sign_extension_ops_enabled: true,
        simd_enabled: true,
        relaxed_simd_enabled: false,
        threads_enabled: false,
        shared_everything_threads_enabled: false,
        tail_call_enabled: false,
        exceptions_enabled: false,
        gc_enabled: false,
        memory64_enabled: false,
        extended_const_enabled: false,
        wide_arithmetic_enabled: false,
        custom_page_sizes_enabled: false,
        // The memory of EXPORTS is the only one.
        max_memories: 0,
        max_memory32_bytes: 16 << 16,
        memory_max_size_required: true,
        max_tables: 2,
        max_table_elements: 1_000,
        table_max_size_required: true,
        max_funcs: 12,
        max_instructions: 200,
        max_nesting_depth: 8,
        ..Config::default()
    }
}

/// Seeded bytes for wasm-smith: splitmix64.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5eed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn generate(seed: u64, imports: &[u8]) -> Option<Vec<u8>> {
    let data = bytes(seed, 512 + (seed % 8) as usize * 1024);
    let mut u = Unstructured::new(&data);
    let module = Module::new(config(seed, imports), &mut u).ok()?;
    // wasm-smith writes externref where reference types are on; a kernel
    // may use funcref only.
    Some(extern_to_func(&module.to_bytes()).expect("wasm-smith's module re-encodes"))
}

/// How one seed went.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// wasm-smith made nothing of the bytes.
    NotGenerated,
    Refused,
    /// The original ran out of wasmi's fuel, or the prepared module hit its
    /// own fuel or stack limit: nothing to compare.
    Inconclusive,
    Same,
}

pub fn check(seed: u64, imports: &[u8]) -> Result<Verdict, String> {
    let Some(original) = generate(seed, imports) else {
        return Ok(Verdict::NotGenerated);
    };
    check_module(seed, &original)
}

/// One module: `seed` chooses the extra checks.
pub fn check_module(seed: u64, original: &[u8]) -> Result<Verdict, String> {
    let original = original.to_vec();
    let options = Options {
        stack_budget: (1 << 30) - 1,
        ..Options::DEFAULT
    };
    let prepared = match prepare(&original, &LIMITS, &options) {
        Ok(prepared) => prepared,
        Err(PrepareError::Internal(e)) => return Err(format!("internal error: {e}")),
        Err(e) => {
            let message = e.to_string();
            if message.len() < 20 || !message.starts_with("the ") {
                return Err(format!("a refusal that says little: {message}"));
            }
            return Ok(Verdict::Refused);
        }
    };
    wasmparser::Validator::new_with_features(crate::WASMTIME_48_NO_GC)
        .validate_all(&prepared.bytes)
        .map_err(|e| format!("prepared, but wasmtime 48 without gc would refuse it: {e}"))?;
    let config = RunConfig {
        wasmi_fuel: Some(300_000),
        then_call: Some("result"),
        ..RunConfig::default()
    };
    let reference =
        canonical_nans(&original).map_err(|e| format!("the NaN-canonical original: {e}"))?;
    let before = support::run_once(&reference, &config);
    if before.wasmi_fuel_exhausted {
        return Ok(Verdict::Inconclusive);
    }
    let after = support::run_once(
        &prepared.bytes,
        &RunConfig {
            wasmi_fuel: Some(20_000_000),
            ..config.clone()
        },
    );
    let eager = prepare(
        &original,
        &LIMITS,
        &Options {
            check_every_charge: true,
            ..options.clone()
        },
    )
    .map_err(|e| format!("prepared, but not with every charge checked: {e}"))?;
    let eager = support::run_once(
        &eager.bytes,
        &RunConfig {
            wasmi_fuel: Some(20_000_000),
            ..config.clone()
        },
    );
    same_as_eager(&eager, &after, LIMITS.fuel).map_err(|e| format!("with fuel to spare: {e}"))?;
    if after.trap_code != Some(0) || after.wasmi_fuel_exhausted {
        return Ok(Verdict::Inconclusive);
    }
    compare(&before, &after)?;
    if seed.is_multiple_of(2) {
        limits_only_cut_runs_short(seed, &original, &after, &config)?;
    }
    Ok(Verdict::Same)
}

/// A run's outcome by the host's rules (`grid_wasi::outcome`, written again
/// here from its documentation): fuel below zero is out of fuel with the
/// whole limit used, however the run ended; else how it ended. `None` if
/// wasmi's own fuel, a backstop, stopped it.
#[derive(Debug, PartialEq)]
pub struct Outcome {
    pub ended: String,
    pub fuel_used: u64,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

pub fn outcome(run: &Run, limit: u64) -> Option<Outcome> {
    if run.wasmi_fuel_exhausted {
        return None;
    }
    // No globals: it did not instantiate (a segment out of bounds; wasmi's
    // message names its store, which differs between runs).
    let Some(left) = run.fuel_left else {
        return Some(Outcome {
            ended: "not instantiated".to_string(),
            fuel_used: 0,
            stdout: Vec::new(),
            stderr: Vec::new(),
        });
    };
    let ended = match (&run.trap, run.exit, run.trap_code) {
        _ if left < 0 => "out of fuel".to_string(),
        (None, None, _) => "returned".to_string(),
        (_, Some(code), _) => format!("exit {code}"),
        (Some(_), None, Some(2)) => "stack limit".to_string(),
        (Some(trap), None, code) => format!("trap code {code:?}: {trap}"),
    };
    Some(Outcome {
        ended,
        fuel_used: if left < 0 { limit } else { limit - left as u64 },
        stdout: run.stdout.clone(),
        stderr: run.stderr.clone(),
    })
}

/// The prepared run `lazy` (with `limit` fuel) has the outcome of `eager`,
/// the same module prepared to check after every charge, which ran out of
/// fuel, if it did, at the charge that took it below zero.
pub fn same_as_eager(eager: &Run, lazy: &Run, limit: u64) -> Result<(), String> {
    let out = eager.fuel_left.is_some_and(|left| left < 0);
    if !eager.wasmi_fuel_exhausted && out != (eager.trap_code == Some(1) && eager.trap.is_some()) {
        return Err(format!(
            "checking every charge, {:?} left but trap code {:?}",
            eager.fuel_left, eager.trap_code
        ));
    }
    match (outcome(eager, limit), outcome(lazy, limit)) {
        (Some(a), Some(b)) if a != b => Err(format!(
            "checking every charge: {} with {} fuel used, {} bytes of stdout; checking \
             fewer: {} with {} fuel used, {} bytes of stdout",
            a.ended,
            a.fuel_used,
            a.stdout.len(),
            b.ended,
            b.fuel_used,
            b.stdout.len()
        )),
        _ => Ok(()),
    }
}

/// The prepared module's own limits: with exactly the fuel a run used it
/// ends as before, with one less it runs out, and with a fifth, two, three
/// and four fifths it ends as it does checking every charge; with a small
/// stack budget it ends as before or stops at the stack limit, having
/// printed a prefix of the same output.
fn limits_only_cut_runs_short(
    seed: u64,
    original: &[u8],
    full: &Run,
    config: &RunConfig,
) -> Result<(), String> {
    let run = |limits: &WasmLimits, options: &Options| -> Result<Run, String> {
        Ok(support::run_once(
            &prepare(original, limits, options)
                .map_err(|e| e.to_string())?
                .bytes,
            &RunConfig {
                wasmi_fuel: Some(20_000_000),
                ..config.clone()
            },
        ))
    };
    let eager_too = |limits: &WasmLimits, options: &Options| -> Result<Run, String> {
        let eager = Options {
            check_every_charge: true,
            ..options.clone()
        };
        let (lazy, eager) = (run(limits, options)?, run(limits, &eager)?);
        same_as_eager(&eager, &lazy, limits.fuel)
            .map_err(|e| format!("with {} fuel: {e}", limits.fuel))?;
        Ok(lazy)
    };
    let large = Options {
        stack_budget: (1 << 30) - 1,
        ..Options::DEFAULT
    };
    let used = LIMITS.fuel - full.fuel_left.ok_or("no fuel global")? as u64;
    let exact = eager_too(
        &WasmLimits {
            fuel: used,
            ..LIMITS
        },
        &large,
    )?;
    if (exact.trap_code, exact.ended()) != (Some(0), full.ended()) || exact.fuel_left != Some(0) {
        return Err(format!(
            "with exactly the {used} fuel it used: trap code {:?}, {:?} left",
            exact.trap_code, exact.fuel_left
        ));
    }
    let short = eager_too(
        &WasmLimits {
            fuel: used - 1,
            ..LIMITS
        },
        &large,
    )?;
    // It may not trap at once (the last charge may not check), but it ends
    // with the fuel below zero, which is running out.
    if short.fuel_left.is_none_or(|left| left >= 0) {
        return Err(format!(
            "with one fuel less than the {used} it used: trap code {:?}, {:?} left",
            short.trap_code, short.fuel_left
        ));
    }
    for fifths in 1..5 {
        let fuel = used * fifths / 5;
        eager_too(&WasmLimits { fuel, ..LIMITS }, &large)?;
    }
    let budget = 256 + (seed % 7) as u32 * 200;
    let small = Options {
        stack_budget: budget,
        ..Options::DEFAULT
    };
    let cut = run(&LIMITS, &small)?;
    match cut.trap_code {
        Some(0) => compare(full, &cut).map_err(|e| format!("with a stack budget of {budget}: {e}")),
        Some(2) if cut.trap.is_some() && full.stdout.starts_with(&cut.stdout) => Ok(()),
        code => Err(format!(
            "with a stack budget of {budget}: trap code {code:?}, {:?}",
            cut.trap
        )),
    }
}

fn compare(before: &Run, after: &Run) -> Result<(), String> {
    if before.trap != after.trap || before.exit != after.exit {
        return Err(format!(
            "ended differently: before {:?} exit {:?}, after {:?} exit {:?}",
            before.trap, before.exit, after.trap, after.exit
        ));
    }
    for (what, a, b) in [
        ("stdout", &before.stdout, &after.stdout),
        ("stderr", &before.stderr, &after.stderr),
        ("memory", &before.memory, &after.memory),
    ] {
        if a.len() != b.len() {
            return Err(format!(
                "{what}: {} bytes before, {} after",
                a.len(),
                b.len()
            ));
        }
        if let Some(i) = (0..a.len()).find(|&i| a[i] != b[i]) {
            return Err(format!(
                "{what}: byte {i} is {:#04x} before and {:#04x} after",
                a[i], b[i]
            ));
        }
    }
    if before.results != after.results {
        return Err(format!(
            "results {:?} before, {:?} after",
            before.results, after.results
        ));
    }
    Ok(())
}

#[test]
fn prepared_modules_behave_as_the_originals_do() {
    let seeds = env_u64("GRID_PREP_FUZZ_SEEDS", 5000);
    let first = env_u64("GRID_PREP_FUZZ_FIRST", 0);
    let imports = wasi_imports();
    let mut tally = std::collections::BTreeMap::<String, u64>::new();
    let mut failures = Vec::new();
    for seed in first..first + seeds {
        match check(seed, &imports) {
            Ok(verdict) => *tally.entry(format!("{verdict:?}")).or_default() += 1,
            Err(e) => failures.push(format!("seed {seed}: {e}")),
        }
    }
    println!(
        "{seeds} seeds from {first}: {tally:?}, {} failures",
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The comparison must have compared something.
    assert!(
        tally.get("Same").copied().unwrap_or(0) * 4 >= seeds,
        "{tally:?}"
    );
}

/// Seed 3274's shape, by hand: the bits of the NaN `f32x4.demote_f64x2_zero`
/// makes of a NaN are the engine's choice, and they choose where a byte is
/// stored. wasmi keeps the payload (0xffffffff, byte 255); preparation makes
/// it canonical (0x7fc00000, byte 127), as it must. The prepared run is the
/// one the preparer's NaN rules call for, and the fuzz must say so.
#[test]
fn nan_bits_that_steer_a_run_are_compared_as_preparation_makes_them() {
    let original = crate::wasm(
        r#"(module
          (memory (export "memory") 1 16)
          (func (export "_start")
            (i32.store8
              (i32.shr_u
                (i32x4.extract_lane 0
                  (f32x4.demote_f64x2_zero (v128.const i64x2 -1 -1)))
                (i32.const 24))
              (i32.const 1)))
          (func (export "result") (result i32 i64 f64)
            (i32.const 0) (i64.const 0) (f64.const 0)))"#,
    );
    assert_eq!(check_module(0, &original), Ok(Verdict::Same));
    // And the reference is no blank cheque: a preparer that left that NaN
    // alone would be caught.
    let config = RunConfig {
        then_call: Some("result"),
        ..RunConfig::default()
    };
    let reference = support::run_once(&canonical_nans(&original).unwrap(), &config);
    let left_alone = support::run_once(&original, &config);
    assert_eq!(
        compare(&reference, &left_alone),
        Err("memory: byte 127 is 0x01 before and 0x00 after".into())
    );
}
