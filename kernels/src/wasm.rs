//! The contract of a user's WebAssembly kernel, shared by everything that
//! prepares, runs or checks one: the WASI preview 1 functions a kernel may
//! import ([`WASI_IMPORTS`]), the limits a job sets ([`WasmLimits`]), the
//! names of what preparation adds to a module, and a task's outcome
//! ([`WasmOutcome`]) with its one canonical byte form.
//!
//! A kernel is a WASI preview 1 *command*: it exports `_start` and `memory`;
//! one task is one run, with the task's input on stdin, the job's arguments
//! in argv and its output on stdout. Everything in an outcome is
//! deterministic: the same prepared module, arguments, input and seed give
//! the same bytes in every engine, traps included.
//!
//! Outcome bytes (little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | trap: 0 none, 1 out of fuel, 2 stack limit, 3 output limit, 4 a WebAssembly trap |
//! | 1 | 4 | exit code, i32: `proc_exit`'s argument, 0 when `_start` returned or a trap ended the run |
//! | 5 | 8 | fuel used, u64 |
//! | 13 | 4 | n, stdout's length, u32 |
//! | 17 | n | stdout |
//! | 17 + n | 4 | m, stderr's length, u32 |
//! | 21 + n | m | stderr (its first [`WasmLimits::stderr_bytes`] bytes) |

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ContentDigest;

/// A wasm job's kernel as every worker needs it: the prepared module, the
/// argv it runs with, the limits it was prepared for, and the seed of its
/// tasks' random streams. (Which input each task reads travels with the
/// task in its batch, not here.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WasmParams {
    /// The prepared module every worker runs (`GET /api/modules/...`).
    pub module: ContentDigest,
    /// The module as it was submitted, which `module` was prepared from.
    pub source: ContentDigest,
    /// argv[0]: the kernel's name (its file name, by default).
    pub name: String,
    /// argv[1..].
    #[serde(default)]
    pub args: Vec<String>,
    pub fuel: u64,
    pub memory_mib: u32,
    pub stdout_bytes: u32,
    pub stderr_bytes: u32,
    /// Keys each task's `random_get` stream (with the module and the task).
    pub seed: u64,
    /// What the kernel does, in the submitter's words, for donors to read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Read-only files every task sees under `/data/<name>`, sorted by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<MountedFile>,
}

/// A read-only file of a job, mounted in every task's `/data` directory:
/// its name there, and the blob holding its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountedFile {
    pub name: String,
    pub blob: ContentDigest,
    /// The blob's length in bytes, so workers can make room before fetching.
    pub size: u64,
}

/// The directory the job's files are mounted in, as kernels see it: the
/// one preopened directory, at fd 3.
pub const DATA_DIR: &str = "/data";
/// The most files one job may mount.
pub const MAX_FILES: usize = 64;
/// The longest file name, in bytes.
pub const MAX_FILE_NAME_BYTES: usize = 255;

/// Whether `name` can name a file in `/data`: 1 to 255 bytes of printable
/// characters, not `.` or `..`, no `/` or `\\`, no NUL. The error says why not.
pub fn check_file_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_FILE_NAME_BYTES {
        return Err(format!(
            "a file name must be 1 to {MAX_FILE_NAME_BYTES} bytes, got {:?}",
            name
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} cannot name a file"));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == '\\' || c.is_control())
    {
        return Err(format!(
            "the file name {name:?} holds a slash, a backslash or a control character"
        ));
    }
    Ok(())
}

/// The job's files in the order they are mounted (by name), each name
/// once and valid; the error names the first problem.
pub fn check_files(files: &[MountedFile]) -> Result<(), String> {
    if files.len() > MAX_FILES {
        return Err(format!(
            "a job may mount at most {MAX_FILES} files, got {}",
            files.len()
        ));
    }
    for file in files {
        check_file_name(&file.name)?;
    }
    for pair in files.windows(2) {
        if pair[0].name >= pair[1].name {
            return Err(if pair[0].name == pair[1].name {
                format!("the file name {:?} is given twice", pair[0].name)
            } else {
                "the files must be sorted by name".to_string()
            });
        }
    }
    Ok(())
}

impl WasmParams {
    pub fn limits(&self) -> WasmLimits {
        WasmLimits {
            fuel: self.fuel,
            memory_mib: self.memory_mib,
            stdout_bytes: self.stdout_bytes,
            stderr_bytes: self.stderr_bytes,
        }
    }

    /// argv: the name, then the arguments.
    pub fn argv(&self) -> Vec<Vec<u8>> {
        std::iter::once(&self.name)
            .chain(&self.args)
            .map(|a| a.as_bytes().to_vec())
            .collect()
    }
}

/// Where a wasm job's tasks read their stdin from: uploaded blobs, named by
/// digest. The coordinator splits them into tasks once, at submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum WasmInputs {
    /// One task per line of this blob: a task reads its line's bytes,
    /// without its newline ([`split_lines`]).
    Lines(ContentDigest),
    /// One task per file, in this order: a task reads the whole file.
    Files(Vec<InputFile>),
}

/// One input file of a job: its name (which names the task's output too)
/// and its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputFile {
    pub name: String,
    pub blob: ContentDigest,
}

impl WasmInputs {
    /// The blobs the inputs are read from, each once.
    pub fn blobs(&self) -> Vec<ContentDigest> {
        let mut blobs = match self {
            WasmInputs::Lines(blob) => vec![*blob],
            WasmInputs::Files(files) => files.iter().map(|f| f.blob).collect(),
        };
        blobs.sort_unstable_by_key(|d| d.0);
        blobs.dedup();
        blobs
    }
}

/// The lines of `text` as byte ranges, without their newlines (`\n`, or
/// `\r\n`); the last line needs none. An empty text has no lines; an
/// empty line is a line (its task reads nothing).
pub fn split_lines(text: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut lines = Vec::new();
    let mut start = 0;
    for (i, &byte) in text.iter().enumerate() {
        if byte == b'\n' {
            let end = if i > start && text[i - 1] == b'\r' {
                i - 1
            } else {
                i
            };
            lines.push(start..end);
            start = i + 1;
        }
    }
    if start < text.len() {
        lines.push(start..text.len());
    }
    lines
}

/// The import module every kernel import must come from.
pub const WASI_MODULE: &str = "wasi_snapshot_preview1";

/// A WebAssembly value type in an import's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValType {
    I32,
    I64,
}

/// One function of the WASI subset: its name and signature. Every function
/// returns a WASI errno (i32) except `proc_exit`, which does not return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WasiImport {
    pub name: &'static str,
    pub params: &'static [ValType],
    pub results: &'static [ValType],
}

use ValType::{I32, I64};

const ERRNO: &[ValType] = &[I32];

/// The WASI preview 1 functions a kernel may import, and nothing else: the
/// deterministic subset. The index of a function in this table is how the
/// runtimes name it (`grid_wasi::Func`); new functions go at the end.
pub const WASI_IMPORTS: &[WasiImport] = &[
    WasiImport {
        name: "args_get",
        params: &[I32, I32],
        results: ERRNO,
    },
    WasiImport {
        name: "args_sizes_get",
        params: &[I32, I32],
        results: ERRNO,
    },
    WasiImport {
        name: "environ_get",
        params: &[I32, I32],
        results: ERRNO,
    },
    WasiImport {
        name: "environ_sizes_get",
        params: &[I32, I32],
        results: ERRNO,
    },
    WasiImport {
        name: "fd_read",
        params: &[I32, I32, I32, I32],
        results: ERRNO,
    },
    WasiImport {
        name: "fd_write",
        params: &[I32, I32, I32, I32],
        results: ERRNO,
    },
    WasiImport {
        name: "fd_close",
        params: &[I32],
        results: ERRNO,
    },
    WasiImport {
        name: "fd_fdstat_get",
        params: &[I32, I32],
        results: ERRNO,
    },
    WasiImport {
        name: "fd_prestat_get",
        params: &[I32, I32],
        results: ERRNO,
    },
    WasiImport {
        name: "fd_prestat_dir_name",
        params: &[I32, I32, I32],
        results: ERRNO,
    },
    WasiImport {
        name: "fd_seek",
        params: &[I32, I64, I32, I32],
        results: ERRNO,
    },
    WasiImport {
        name: "clock_res_get",
        params: &[I32, I32],
        results: ERRNO,
    },
    WasiImport {
        name: "clock_time_get",
        params: &[I32, I64, I32],
        results: ERRNO,
    },
    WasiImport {
        name: "random_get",
        params: &[I32, I32],
        results: ERRNO,
    },
    WasiImport {
        name: "sched_yield",
        params: &[],
        results: ERRNO,
    },
    WasiImport {
        name: "proc_exit",
        params: &[I32],
        results: &[],
    },
    // The read-only files under /data (protocol 3).
    WasiImport {
        name: "path_open",
        params: &[I32, I32, I32, I32, I32, I64, I64, I32, I32],
        results: ERRNO,
    },
    WasiImport {
        name: "path_filestat_get",
        params: &[I32, I32, I32, I32, I32],
        results: ERRNO,
    },
    WasiImport {
        name: "fd_filestat_get",
        params: &[I32, I32],
        results: ERRNO,
    },
    WasiImport {
        name: "fd_readdir",
        params: &[I32, I32, I32, I64, I32],
        results: ERRNO,
    },
    WasiImport {
        name: "fd_pread",
        params: &[I32, I32, I32, I64, I32],
        results: ERRNO,
    },
    WasiImport {
        name: "fd_tell",
        params: &[I32, I32],
        results: ERRNO,
    },
    WasiImport {
        name: "fd_advise",
        params: &[I32, I64, I64, I32],
        results: ERRNO,
    },
    // wasi-libc's stdio (`fopen`) imports it.
    WasiImport {
        name: "fd_fdstat_set_flags",
        params: &[I32, I32],
        results: ERRNO,
    },
];

/// The most parameters any function of [`WASI_IMPORTS`] takes (path_open's
/// nine): what a runtime's buffer for one call's arguments must hold.
pub const MAX_WASI_PARAMS: usize = {
    let mut most = 0;
    let mut i = 0;
    while i < WASI_IMPORTS.len() {
        if WASI_IMPORTS[i].params.len() > most {
            most = WASI_IMPORTS[i].params.len();
        }
        i += 1;
    }
    most
};

/// The WASI function called `name`, with its index in [`WASI_IMPORTS`].
pub fn wasi_import(name: &str) -> Option<(usize, &'static WasiImport)> {
    WASI_IMPORTS
        .iter()
        .enumerate()
        .find(|(_, i)| i.name == name)
}

/// Names of what preparation adds to a module, exported for the host.
pub mod exports {
    /// The entry point every kernel exports.
    pub const START: &str = "_start";
    /// The kernel's one memory.
    pub const MEMORY: &str = "memory";
    /// An i64 global: the fuel left. It starts at the job's fuel limit and
    /// is charged as the kernel runs; below zero the kernel traps.
    pub const FUEL: &str = "browsergrid.fuel";
    /// An i32 global: why the kernel trapped, if preparation's own code
    /// trapped it ([`super::Trap::code`]), else 0.
    pub const TRAP: &str = "browsergrid.trap";
}

/// A job's limits on each of its tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WasmLimits {
    /// Fuel a task may use; past it, the task ends with [`Trap::OutOfFuel`].
    pub fuel: u64,
    /// The most linear memory a task may have, in MiB (16 pages a MiB).
    pub memory_mib: u32,
    /// The most stdout a task may write; past it, [`Trap::OutputLimit`].
    pub stdout_bytes: u32,
    /// stderr beyond this many bytes is dropped (no trap).
    pub stderr_bytes: u32,
}

impl WasmLimits {
    /// The defaults of `grid submit wasm` and `grid run`.
    pub const DEFAULT: WasmLimits = WasmLimits {
        fuel: 100_000_000_000,
        memory_mib: 256,
        stdout_bytes: 64 * 1024 * 1024,
        stderr_bytes: 4096,
    };
    /// The longest outcome (its canonical bytes) a task under these limits
    /// can have: a whole stdout and stderr and the fixed fields.
    pub fn max_outcome_bytes(&self) -> u64 {
        21 + u64::from(self.stdout_bytes) + u64::from(self.stderr_bytes)
    }
    /// The most memory a job may ask for (4 GiB is wasm32's whole space).
    pub const MAX_MEMORY_MIB: u32 = 4096;
    /// The most stdout a job may allow a task.
    pub const MAX_STDOUT_BYTES: u32 = 256 * 1024 * 1024;
    /// The most stderr a job may keep of a task.
    pub const MAX_STDERR_BYTES: u32 = 64 * 1024;
    /// The most bytes argv may take (each argument and its NUL).
    pub const MAX_ARGV_BYTES: usize = 64 * 1024;
    /// The longest description a job may carry.
    pub const MAX_DESCRIPTION_BYTES: usize = 4096;

    /// The wall-clock backstop of a task, whatever its fuel: time to start
    /// an instance and answer WASI calls, which fuel does not count.
    pub const TIME_FLOOR_MS: u64 = 60_000;
    /// The slowest rate at which a worker is taken to burn a prepared
    /// module's fuel: 20 million a second, some 50 times below what
    /// wasmtime, V8 and SpiderMonkey reach on plain loops, to leave room for
    /// cache-missing memory access, a slow or throttled machine and a busy
    /// browser.
    pub const SLOWEST_FUEL_PER_MS: u64 = 20_000;

    /// The memory limit in 64 KiB pages.
    pub fn memory_pages(&self) -> u32 {
        self.memory_mib.saturating_mul(16)
    }

    /// How long a task may run before its worker stops it and reports a
    /// host fault (a wall-clock backstop, the same in every worker):
    /// [`Self::TIME_FLOOR_MS`] plus its fuel at
    /// [`Self::SLOWEST_FUEL_PER_MS`]. A task of the default fuel (10^11)
    /// gets 84 minutes. It only catches what fuel cannot: a runtime that
    /// hangs or dies silently, or a task whose time goes into WASI calls.
    pub fn time_limit_ms(&self) -> u64 {
        Self::TIME_FLOOR_MS.saturating_add(self.fuel / Self::SLOWEST_FUEL_PER_MS)
    }
}

impl Default for WasmLimits {
    fn default() -> WasmLimits {
        WasmLimits::DEFAULT
    }
}

/// Why a task's run ended early. All of these are deterministic: replicas
/// agree on them like on any output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trap {
    /// The task used all its fuel.
    OutOfFuel,
    /// Calls nested deeper than the prepared module allows.
    StackLimit,
    /// The task wrote more to stdout than the job allows.
    OutputLimit,
    /// A WebAssembly trap: `unreachable`, an out-of-bounds access, an
    /// integer division by zero, a failed `call_indirect`, ...
    Wasm,
}

impl Trap {
    pub const ALL: [Trap; 4] = [
        Trap::OutOfFuel,
        Trap::StackLimit,
        Trap::OutputLimit,
        Trap::Wasm,
    ];

    /// Its code in the outcome bytes and in the `browsergrid.trap` global.
    pub fn code(self) -> u8 {
        match self {
            Trap::OutOfFuel => 1,
            Trap::StackLimit => 2,
            Trap::OutputLimit => 3,
            Trap::Wasm => 4,
        }
    }

    pub fn from_code(code: u8) -> Option<Trap> {
        Trap::ALL.into_iter().find(|t| t.code() == code)
    }

    pub fn name(self) -> &'static str {
        match self {
            Trap::OutOfFuel => "out_of_fuel",
            Trap::StackLimit => "stack_limit",
            Trap::OutputLimit => "output_limit",
            Trap::Wasm => "wasm",
        }
    }
}

impl fmt::Display for Trap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// What one run of a kernel on one task gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WasmOutcome {
    pub trap: Option<Trap>,
    pub exit_code: i32,
    pub fuel_used: u64,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Why bytes are not an outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutcomeError {
    #[error("a wasm outcome is at least 21 bytes, got {0}")]
    TooShort(usize),
    #[error("unknown trap code {0}")]
    UnknownTrap(u8),
    #[error("the outcome's lengths do not add up to its {0} bytes")]
    Lengths(usize),
}

impl WasmOutcome {
    /// The bytes before stdout and stderr.
    const FIXED: usize = 1 + 4 + 8 + 4 + 4;

    /// Whether the task succeeded: no trap and exit code 0.
    pub fn succeeded(&self) -> bool {
        self.trap.is_none() && self.exit_code == 0
    }

    pub fn encoded_len(&self) -> usize {
        Self::FIXED + self.stdout.len() + self.stderr.len()
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        out.push(self.trap.map_or(0, Trap::code));
        out.extend_from_slice(&self.exit_code.to_le_bytes());
        out.extend_from_slice(&self.fuel_used.to_le_bytes());
        out.extend_from_slice(&(self.stdout.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.stdout);
        out.extend_from_slice(&(self.stderr.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.stderr);
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<WasmOutcome, OutcomeError> {
        if bytes.len() < Self::FIXED {
            return Err(OutcomeError::TooShort(bytes.len()));
        }
        let trap = match bytes[0] {
            0 => None,
            code => Some(Trap::from_code(code).ok_or(OutcomeError::UnknownTrap(code))?),
        };
        let u32_at = |at: usize| -> Option<u32> {
            bytes
                .get(at..at + 4)
                .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
        };
        let exit_code = i32::from_le_bytes(bytes[1..5].try_into().expect("4 bytes"));
        let fuel_used = u64::from_le_bytes(bytes[5..13].try_into().expect("8 bytes"));
        let lengths = || OutcomeError::Lengths(bytes.len());
        let stdout_len = u32_at(13).ok_or_else(lengths)? as usize;
        let stdout_end = 17usize.checked_add(stdout_len).ok_or_else(lengths)?;
        let stdout = bytes.get(17..stdout_end).ok_or_else(lengths)?.to_vec();
        let stderr_len = u32_at(stdout_end).ok_or_else(lengths)? as usize;
        let stderr_start = stdout_end + 4;
        if bytes.len() != stderr_start + stderr_len {
            return Err(lengths());
        }
        let stderr = bytes[stderr_start..].to_vec();
        Ok(WasmOutcome {
            trap,
            exit_code,
            fuel_used,
            stdout,
            stderr,
        })
    }

    /// Whether the outcome could come from a task under `limits`: the
    /// coordinator's check of a worker's answer (replicas settle the rest).
    pub fn check(&self, limits: &WasmLimits) -> Result<(), String> {
        if self.fuel_used > limits.fuel {
            return Err(format!(
                "{} fuel used of a limit of {}",
                self.fuel_used, limits.fuel
            ));
        }
        if self.trap == Some(Trap::OutOfFuel) && self.fuel_used != limits.fuel {
            return Err(format!(
                "out of fuel after {} of {}",
                self.fuel_used, limits.fuel
            ));
        }
        if self.stdout.len() > limits.stdout_bytes as usize {
            return Err(format!(
                "{} bytes of stdout over a limit of {}",
                self.stdout.len(),
                limits.stdout_bytes
            ));
        }
        if self.stderr.len() > limits.stderr_bytes as usize {
            return Err(format!(
                "{} bytes of stderr over a cap of {}",
                self.stderr.len(),
                limits.stderr_bytes
            ));
        }
        if self.trap.is_some() && self.exit_code != 0 {
            return Err("a trapped run with an exit code".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_tasks_time_limit_grows_with_its_fuel() {
        let limit = |fuel| {
            WasmLimits {
                fuel,
                ..WasmLimits::DEFAULT
            }
            .time_limit_ms()
        };
        assert_eq!(limit(0), WasmLimits::TIME_FLOOR_MS);
        assert_eq!(limit(1_000_000_000), 110_000);
        assert_eq!(WasmLimits::DEFAULT.time_limit_ms(), 60_000 + 5_000_000);
        // The most fuel a job may have still gives a limit a timer can take.
        assert_eq!(limit((1 << 53) - 1), 60_000 + ((1 << 53) - 1) / 20_000);
    }

    #[test]
    fn lines_lose_their_newlines_and_a_last_line_needs_none() {
        let text = b"a\n\nbc\r\nd";
        let lines: Vec<&[u8]> = super::split_lines(text)
            .into_iter()
            .map(|r| &text[r])
            .collect();
        assert_eq!(lines, [&b"a"[..], b"", b"bc", b"d"]);
        assert_eq!(super::split_lines(b"x\n").len(), 1);
        assert!(super::split_lines(b"").is_empty());
    }

    #[test]
    fn inputs_have_the_documented_json() {
        use super::{InputFile, WasmInputs};
        use crate::ContentDigest;
        let digest = ContentDigest::of(b"x");
        let lines: WasmInputs =
            serde_json::from_value(serde_json::json!({"lines": digest.to_string()})).unwrap();
        assert_eq!(lines, WasmInputs::Lines(digest));
        let files = WasmInputs::Files(vec![
            InputFile {
                name: "b".into(),
                blob: digest,
            },
            InputFile {
                name: "a".into(),
                blob: digest,
            },
        ]);
        assert_eq!(
            serde_json::to_value(&files).unwrap(),
            serde_json::json!({"files": [{"name": "b", "blob": digest.to_string()},
                                         {"name": "a", "blob": digest.to_string()}]})
        );
        assert_eq!(files.blobs(), [digest]);
        assert!(serde_json::from_value::<WasmInputs>(serde_json::json!({"rows": 1})).is_err());
    }

    use super::*;

    fn outcome() -> WasmOutcome {
        WasmOutcome {
            trap: None,
            exit_code: 3,
            fuel_used: 12_345,
            stdout: b"hello\n".to_vec(),
            stderr: b"warn".to_vec(),
        }
    }

    #[test]
    fn outcomes_have_the_documented_layout_and_read_back() {
        let bytes = outcome().to_bytes();
        assert_eq!(bytes[0], 0);
        assert_eq!(i32::from_le_bytes(bytes[1..5].try_into().unwrap()), 3);
        assert_eq!(u64::from_le_bytes(bytes[5..13].try_into().unwrap()), 12_345);
        assert_eq!(u32::from_le_bytes(bytes[13..17].try_into().unwrap()), 6);
        assert_eq!(&bytes[17..23], b"hello\n");
        assert_eq!(u32::from_le_bytes(bytes[23..27].try_into().unwrap()), 4);
        assert_eq!(&bytes[27..], b"warn");
        assert_eq!(WasmOutcome::decode(&bytes), Ok(outcome()));
        let trapped = WasmOutcome {
            trap: Some(Trap::StackLimit),
            exit_code: 0,
            ..outcome()
        };
        assert_eq!(WasmOutcome::decode(&trapped.to_bytes()), Ok(trapped));
    }

    #[test]
    fn malformed_outcomes_are_errors_not_panics() {
        let bytes = outcome().to_bytes();
        for cut in 0..bytes.len() {
            assert!(WasmOutcome::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(WasmOutcome::decode(&longer).is_err());
        let mut bad_trap = bytes.clone();
        bad_trap[0] = 9;
        assert_eq!(
            WasmOutcome::decode(&bad_trap),
            Err(OutcomeError::UnknownTrap(9))
        );
        let mut huge = bytes;
        huge[13..17].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(WasmOutcome::decode(&huge).is_err());
    }

    #[test]
    fn outcomes_that_break_the_limits_are_implausible() {
        let limits = WasmLimits {
            fuel: 100,
            stdout_bytes: 4,
            ..WasmLimits::DEFAULT
        };
        let ok = WasmOutcome {
            stdout: b"ok".to_vec(),
            fuel_used: 99,
            ..outcome()
        };
        assert_eq!(ok.check(&limits), Ok(()));
        for bad in [
            WasmOutcome {
                fuel_used: 101,
                ..ok.clone()
            },
            WasmOutcome {
                trap: Some(Trap::OutOfFuel),
                exit_code: 0,
                fuel_used: 50,
                ..ok.clone()
            },
            WasmOutcome {
                stdout: b"too long".to_vec(),
                ..ok.clone()
            },
            WasmOutcome {
                trap: Some(Trap::Wasm),
                exit_code: 1,
                ..ok.clone()
            },
        ] {
            assert!(bad.check(&limits).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn file_names_are_single_printable_path_components() {
        for good in ["scene.bin", "a", "data set.csv", &"x".repeat(255)] {
            assert_eq!(check_file_name(good), Ok(()), "{good:?}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "/etc",
            "a\\b",
            "tab\there",
            &"x".repeat(256),
        ] {
            assert!(check_file_name(bad).is_err(), "{bad:?}");
        }
        let file = |name: &str| MountedFile {
            name: name.into(),
            blob: ContentDigest::of(name.as_bytes()),
            size: 1,
        };
        assert_eq!(check_files(&[file("a"), file("b")]), Ok(()));
        assert!(
            check_files(&[file("b"), file("a")])
                .unwrap_err()
                .contains("sorted")
        );
        assert!(
            check_files(&[file("a"), file("a")])
                .unwrap_err()
                .contains("twice")
        );
        let many: Vec<MountedFile> = (0..=MAX_FILES).map(|i| file(&format!("{i:03}"))).collect();
        assert!(check_files(&many).unwrap_err().contains("at most"));
    }

    #[test]
    fn the_import_table_names_each_function_once() {
        let mut names: Vec<&str> = WASI_IMPORTS.iter().map(|i| i.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), WASI_IMPORTS.len());
        assert_eq!(wasi_import("fd_write").map(|(i, _)| i), Some(5));
        assert_eq!(wasi_import("path_open").map(|(i, _)| i), Some(16));
        assert!(wasi_import("path_unlink_file").is_none());
        let (_, exit) = wasi_import("proc_exit").unwrap();
        assert!(exit.results.is_empty());
    }
}
