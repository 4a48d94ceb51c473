//! [`Func`]: the WASI functions a kernel may import, as a Rust enum in the
//! order of [`grid_kernels::wasm::WASI_IMPORTS`], so a runtime names a
//! function by its index in that table and both runtimes agree on it. The
//! table holds the signatures; this enum is what [`crate::Wasi::call`]
//! dispatches on. A test checks the two entry by entry.

use grid_kernels::wasm::{WASI_IMPORTS, WasiImport, wasi_import};

/// One function of the WASI subset; `Func::ALL[i]` is `WASI_IMPORTS[i]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Func {
    ArgsGet,
    ArgsSizesGet,
    EnvironGet,
    EnvironSizesGet,
    FdRead,
    FdWrite,
    FdClose,
    FdFdstatGet,
    FdPrestatGet,
    FdPrestatDirName,
    FdSeek,
    ClockResGet,
    ClockTimeGet,
    RandomGet,
    SchedYield,
    ProcExit,
    PathOpen,
    PathFilestatGet,
    FdFilestatGet,
    FdReaddir,
    FdPread,
    FdTell,
    FdAdvise,
    FdFdstatSetFlags,
}

// A function added to the contract must be added here too.
const _: () = assert!(Func::ALL.len() == WASI_IMPORTS.len());

impl Func {
    /// Every function, in the order of `WASI_IMPORTS`.
    pub const ALL: [Func; 24] = [
        Func::ArgsGet,
        Func::ArgsSizesGet,
        Func::EnvironGet,
        Func::EnvironSizesGet,
        Func::FdRead,
        Func::FdWrite,
        Func::FdClose,
        Func::FdFdstatGet,
        Func::FdPrestatGet,
        Func::FdPrestatDirName,
        Func::FdSeek,
        Func::ClockResGet,
        Func::ClockTimeGet,
        Func::RandomGet,
        Func::SchedYield,
        Func::ProcExit,
        Func::PathOpen,
        Func::PathFilestatGet,
        Func::FdFilestatGet,
        Func::FdReaddir,
        Func::FdPread,
        Func::FdTell,
        Func::FdAdvise,
        Func::FdFdstatSetFlags,
    ];

    /// The function at `index` in `WASI_IMPORTS`.
    pub fn from_index(index: usize) -> Option<Func> {
        Func::ALL.get(index).copied()
    }

    /// The function a kernel imports as `name` (from `wasi_snapshot_preview1`).
    pub fn from_name(name: &str) -> Option<Func> {
        wasi_import(name).and_then(|(index, _)| Func::from_index(index))
    }

    /// Its index in `WASI_IMPORTS`.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Its entry in `WASI_IMPORTS`: name and signature.
    pub fn import(self) -> &'static WasiImport {
        &WASI_IMPORTS[self.index()]
    }

    /// Its WASI name, spelled here independently of the table (the test
    /// compares the two).
    pub fn name(self) -> &'static str {
        match self {
            Func::ArgsGet => "args_get",
            Func::ArgsSizesGet => "args_sizes_get",
            Func::EnvironGet => "environ_get",
            Func::EnvironSizesGet => "environ_sizes_get",
            Func::FdRead => "fd_read",
            Func::FdWrite => "fd_write",
            Func::FdClose => "fd_close",
            Func::FdFdstatGet => "fd_fdstat_get",
            Func::FdPrestatGet => "fd_prestat_get",
            Func::FdPrestatDirName => "fd_prestat_dir_name",
            Func::FdSeek => "fd_seek",
            Func::ClockResGet => "clock_res_get",
            Func::ClockTimeGet => "clock_time_get",
            Func::RandomGet => "random_get",
            Func::SchedYield => "sched_yield",
            Func::ProcExit => "proc_exit",
            Func::PathOpen => "path_open",
            Func::PathFilestatGet => "path_filestat_get",
            Func::FdFilestatGet => "fd_filestat_get",
            Func::FdReaddir => "fd_readdir",
            Func::FdPread => "fd_pread",
            Func::FdTell => "fd_tell",
            Func::FdAdvise => "fd_advise",
            Func::FdFdstatSetFlags => "fd_fdstat_set_flags",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use grid_kernels::wasm::ValType::{I32, I64};

    #[test]
    fn the_enum_and_the_contract_agree_entry_by_entry() {
        assert_eq!(Func::ALL.len(), WASI_IMPORTS.len());
        for (index, (func, import)) in Func::ALL.iter().zip(WASI_IMPORTS).enumerate() {
            assert_eq!(func.index(), index);
            assert_eq!(func.name(), import.name, "entry {index}");
            assert_eq!(func.import(), import);
            assert_eq!(Func::from_index(index), Some(*func));
            assert_eq!(Func::from_name(import.name), Some(*func));
        }
        assert_eq!(Func::from_index(WASI_IMPORTS.len()), None);
        assert_eq!(Func::from_name("path_unlink_file"), None);
        assert_eq!(Func::from_name(""), None);
    }

    #[test]
    fn the_signatures_are_the_ones_the_dispatcher_reads() {
        // `Wasi::call` reads i64 arguments at these positions and i32
        // everywhere else; a change to the contract must show up here.
        for func in Func::ALL {
            let params = func.import().params;
            let i64_at: Vec<usize> = (0..params.len()).filter(|&i| params[i] == I64).collect();
            let expected: &[usize] = match func {
                Func::FdSeek => &[1],
                Func::ClockTimeGet => &[1],
                Func::PathOpen => &[5, 6],
                Func::FdReaddir | Func::FdPread => &[3],
                Func::FdAdvise => &[1, 2],
                _ => &[],
            };
            assert_eq!(i64_at, expected, "{}", func.name());
            let results = func.import().results;
            if func == Func::ProcExit {
                assert!(results.is_empty());
            } else {
                assert_eq!(results, &[I32], "{}", func.name());
            }
        }
    }
}
