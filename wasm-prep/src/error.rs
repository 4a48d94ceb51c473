//! Why a module cannot be prepared: [`PrepareError`], one variant a reason,
//! each message a sentence that names the problem and that the module's
//! author can act on, and [`Proposal`], the WebAssembly proposals a kernel
//! may not use, each with the reason it may not.

use std::fmt;

/// A WebAssembly proposal a kernel may not use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Proposal {
    /// Threads, atomics, shared memories and shared-everything threads.
    Threads,
    RelaxedSimd,
    TailCall,
    /// Exception handling, legacy or not.
    Exceptions,
    /// Garbage collection, typed function references, custom descriptors.
    Gc,
    /// `externref`, and any other reference type but `funcref`: they need a
    /// garbage collector, which the native worker's wasmtime is built
    /// without.
    ExternRef,
    Memory64,
    MultiMemory,
    CustomPageSizes,
    ExtendedConst,
    WideArithmetic,
    StackSwitching,
    MemoryControl,
    /// A proposal newer than this preparer: its name in wasmparser.
    Other(&'static str),
}

impl Proposal {
    /// What the module uses, as the object of "the module uses ...".
    pub fn what(self) -> String {
        match self {
            Proposal::Threads => "threads (shared memory, atomics)".into(),
            Proposal::RelaxedSimd => "relaxed SIMD".into(),
            Proposal::TailCall => "tail calls".into(),
            Proposal::Exceptions => "exception handling".into(),
            Proposal::Gc => "garbage collection or typed function references".into(),
            Proposal::ExternRef => "externref (or another reference type but funcref)".into(),
            Proposal::Memory64 => "64-bit memories or tables (memory64)".into(),
            Proposal::MultiMemory => "more than one memory (multi-memory)".into(),
            Proposal::CustomPageSizes => "custom page sizes".into(),
            Proposal::ExtendedConst => "extended constant expressions".into(),
            Proposal::WideArithmetic => "wide arithmetic".into(),
            Proposal::StackSwitching => "stack switching".into(),
            Proposal::MemoryControl => "memory control".into(),
            Proposal::Other(name) => format!("the {name} proposal"),
        }
    }

    /// Why a kernel may not, as the end of the sentence.
    pub fn why(self) -> &'static str {
        match self {
            Proposal::Threads => "but a kernel runs on one thread and shares no memory",
            Proposal::RelaxedSimd => "whose results differ between machines",
            Proposal::TailCall => {
                "which the stack limit cannot account for; build without tail calls"
            }
            Proposal::Exceptions => {
                "which browsergrid does not support; build with panic=abort or -fno-exceptions"
            }
            Proposal::Gc => "which browsergrid does not support",
            Proposal::ExternRef => {
                "which needs a garbage collector, and browsergrid's native engine runs \
                 without one; a kernel may use funcref only"
            }
            Proposal::Memory64 => "but a kernel's memory is 32-bit; build for wasm32",
            Proposal::MultiMemory => "but a kernel has exactly one memory",
            Proposal::CustomPageSizes
            | Proposal::ExtendedConst
            | Proposal::WideArithmetic
            | Proposal::StackSwitching
            | Proposal::MemoryControl
            | Proposal::Other(_) => "which not every engine browsergrid runs on supports",
        }
    }
}

impl fmt::Display for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what())
    }
}

/// Why a module was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PrepareError {
    #[error("the module is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },

    #[error(
        "the file is not a WebAssembly module (it does not start with \\0asm); \
         submit the .wasm file the compiler wrote"
    )]
    NotWasm,

    #[error(
        "the file is a WebAssembly component, but a kernel is a core module (a WASI \
         preview 1 command, e.g. built for wasm32-wasip1)"
    )]
    Component,

    #[error("the module is not valid WebAssembly: {message} (at byte {offset})")]
    Invalid { message: String, offset: u64 },

    #[error("the module uses {}{}, {}", .proposal.what(), detail_in_parens(.detail), .proposal.why())]
    Unsupported { proposal: Proposal, detail: String },

    #[error(
        "the module uses a WebAssembly feature browsergrid does not allow: {message} \
         (at byte {offset})"
    )]
    Feature { message: String, offset: u64 },

    #[error(
        "the module imports {module}.{name}, which is not in the WASI subset browsergrid \
         provides (see PROTOCOL.md)"
    )]
    ForbiddenImport { module: String, name: String },

    #[error(
        "the module imports a {kind} ({module}.{name}), but a kernel imports only WASI \
         functions and defines its own memory"
    )]
    ImportKind {
        kind: &'static str,
        module: String,
        name: String,
    },

    #[error(
        "the module imports {module}.{name} with type {found}, but browsergrid provides it \
         with type {expected}"
    )]
    ImportSignature {
        module: &'static str,
        name: String,
        found: String,
        expected: String,
    },

    #[error(
        "the module does not export _start, the entry point of a WASI command (a library \
         or reactor module cannot run as a kernel)"
    )]
    NoStart,

    #[error("the module's _start {0}, but it must be a function the module defines")]
    StartNotFunction(&'static str),

    #[error(
        "the module's _start has type {found}, but a kernel's _start takes no arguments \
         and returns nothing"
    )]
    StartType { found: String },

    #[error(
        "the module has a start section (function {function} runs when it is \
         instantiated); a kernel must run from _start only"
    )]
    StartSection { function: u32 },

    #[error("the module does not export its memory as \"memory\"")]
    NoMemoryExport,

    #[error("the module defines no memory; a kernel defines one and exports it as \"memory\"")]
    NoMemory,

    #[error(
        "the module exports {name}, a name reserved for what browsergrid adds \
         (names starting with browsergrid.)"
    )]
    ReservedExport { name: String },

    #[error(
        "the module's memory needs {} at start, over the job's limit of {} MiB",
        pages_as_size(*.pages), .limit_mib
    )]
    MemoryTooLarge { pages: u64, limit_mib: u32 },

    #[error(
        "table {table} starts with {elements} elements, over the limit of {limit} \
         elements a table may have"
    )]
    TableTooLarge {
        table: u32,
        elements: u64,
        limit: u32,
    },

    #[error("the module has {count} functions, over the limit of {limit}")]
    TooManyFunctions { count: u64, limit: u32 },

    #[error("function {function} declares {count} locals, over the limit of {limit}")]
    TooManyLocals {
        function: u32,
        count: u64,
        limit: u32,
    },

    #[error(
        "function {function} would be over {limit} bytes once prepared, more than an \
         engine accepts; split it into smaller functions"
    )]
    FunctionTooLarge { function: u32, limit: usize },

    #[error(
        "the module would be over {limit} bytes once prepared, more than the preparer \
         allows"
    )]
    PreparedTooLarge { limit: usize },

    #[error(
        "the job's fuel limit {fuel} is over {}, the most a kernel can count",
        i64::MAX
    )]
    FuelLimit { fuel: u64 },

    #[error("the preparer's options are invalid: {0}")]
    Options(String),

    #[error("internal error in browsergrid's preparer (please report it): {0}")]
    Internal(String),
}

fn detail_in_parens(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    }
}

/// A size in 64 KiB pages, as MiB for a person: "300 MiB", "1.06 MiB".
pub(crate) fn pages_as_size(pages: u64) -> String {
    if pages.is_multiple_of(16) {
        format!("{} MiB", pages / 16)
    } else {
        format!("{:.2} MiB", pages as f64 / 16.0)
    }
}

impl PrepareError {
    /// A wasmparser error, as the module's fault: a disabled feature when the
    /// message says one is needed, invalid WebAssembly otherwise.
    pub(crate) fn from_wasmparser(err: &wasmparser::BinaryReaderError) -> PrepareError {
        let message = err.message().to_string();
        let offset = u64::try_from(err.offset()).unwrap_or(u64::MAX);
        // Without extended-const, wasmparser calls an i32.add in a constant
        // expression non-constant.
        if let Some(op) =
            message.strip_prefix("constant expression required: non-constant operator: ")
            && [
                "i32.add", "i32.sub", "i32.mul", "i64.add", "i64.sub", "i64.mul",
            ]
            .contains(&op)
        {
            return PrepareError::Unsupported {
                proposal: Proposal::ExtendedConst,
                detail: format!("{op} in a constant expression"),
            };
        }
        // What the validator says of reference types outside the allowed
        // ones, named here with their proposal.
        let references = [
            ("gc types are disallowed", Proposal::ExternRef, ""),
            (
                "function references required",
                Proposal::Gc,
                "a typed function reference ",
            ),
            (
                "without the gc feature",
                Proposal::Gc,
                "a GC reference type ",
            ),
            (
                "exception refs not supported",
                Proposal::Exceptions,
                "exnref ",
            ),
        ];
        if let Some((_, proposal, what)) = references
            .iter()
            .find(|(needle, _, _)| message.contains(needle))
        {
            return PrepareError::Unsupported {
                proposal: *proposal,
                detail: format!("{what}at byte {offset}"),
            };
        }
        let feature = [
            "not enabled",
            "must be enabled",
            "to be enabled",
            "proposal",
            "not supported",
            "require the",
            "requires the",
            "disallowed",
        ]
        .iter()
        .any(|needle| message.contains(needle));
        if feature {
            PrepareError::Feature { message, offset }
        } else {
            PrepareError::Invalid { message, offset }
        }
    }
}

impl From<wasmparser::BinaryReaderError> for PrepareError {
    fn from(err: wasmparser::BinaryReaderError) -> PrepareError {
        PrepareError::from_wasmparser(&err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_problem() {
        let relaxed = PrepareError::Unsupported {
            proposal: Proposal::RelaxedSimd,
            detail: "f32x4.relaxed_madd".into(),
        };
        assert_eq!(
            relaxed.to_string(),
            "the module uses relaxed SIMD (f32x4.relaxed_madd), whose results differ \
             between machines"
        );
        let memory = PrepareError::MemoryTooLarge {
            pages: 300 * 16,
            limit_mib: 256,
        };
        assert_eq!(
            memory.to_string(),
            "the module's memory needs 300 MiB at start, over the job's limit of 256 MiB"
        );
        assert_eq!(pages_as_size(17), "1.06 MiB");
        let import = PrepareError::ForbiddenImport {
            module: "env".into(),
            name: "emscripten_memcpy_big".into(),
        };
        assert!(
            import
                .to_string()
                .starts_with("the module imports env.emscripten_memcpy_big, which is not")
        );
    }
}
