//! The deterministic WASI preview 1 subset that user kernels may import
//! (`grid_kernels::wasm::WASI_IMPORTS`), implemented once, with no I/O, no
//! clock and no OS. Both runtimes call it: the native worker from
//! wasmtime's host functions, the browser worker from a thin JS import
//! shim over this crate compiled to WebAssembly. A kernel therefore sees
//! the same answers, byte for byte, in every worker.
//!
//! A run is a [`Wasi`] made from a [`TaskConfig`] (argv, stdin, the random
//! seed from [`random_seed`], the job's limits). The runtime forwards each
//! import call as [`Wasi::call`] with the [`Func`], the raw arguments and
//! the kernel's [`Memory`]; it gets back the errno for the kernel or a
//! [`Stop`] that ends the run, and after the run takes stdout and stderr
//! with [`Wasi::finish`].
//!
//! Modules: `func` (the functions, in the contract's order), `errno` (every
//! WASI errno), `memory` (the [`Memory`] trait, checked pointer
//! arithmetic), `config` (a task's inputs and seed), `host` ([`Wasi`], one
//! method per function), `fd` (the fd table, `fdstat`), `iovec` (the
//! scatter/gather lists), `clock`, `random`.
//!
//! # Behaviour
//!
//! Pointers and lengths are the kernel's u32s. Every region is checked to
//! be inside memory before anything is written or taken from a stream, so
//! a call that returns `fault` (21), or any other errno, has changed
//! nothing; a fault is an errno, never a trap. Where a call could fail in
//! several ways, its checks run in a fixed order and the first failure is
//! the answer: for `fd_read` and `fd_write`, the fd, the iovec count, each
//! iovec and its buffer in turn, then the place of the count; the other
//! functions check their arguments from left to right.
//!
//! | function | behaviour |
//! |---|---|
//! | `args_sizes_get(argc, buf_size)` | writes argc and the bytes of argv's strings, NULs included (u32s) |
//! | `args_get(argv, buf)` | argc u32 pointers at `argv`; the strings, each NUL-terminated, one after another at `buf`, `argv[0]` first (the layout of the WASI ABI) |
//! | `environ_sizes_get(count, buf_size)` | writes 0 and 0: the environment is empty |
//! | `environ_get(environ, buf)` | success, writes nothing |
//! | `fd_read(fd, iovs, iovs_len, nread)` | fd 0 only (others `badf`); more than 1024 iovecs, or lengths adding up past `u32::MAX`, `inval`; fills the buffers in order from stdin where the last read stopped; fewer bytes than asked when stdin runs out, 0 at its end |
//! | `fd_write(fd, iovs, iovs_len, nwritten)` | fds 1 and 2 only (others `badf`); iovecs as for `fd_read`; stdout keeps bytes up to `limits.stdout_bytes`, and the write that would pass it ends the run with [`Stop::OutputLimit`] (stdout then holds exactly the limit); stderr keeps its first `limits.stderr_bytes` bytes and drops the rest silently, reporting every byte written |
//! | `fd_close(fd)` | 0, 1 and 2 close (any later use is `badf`); others `badf` |
//! | `fd_fdstat_get(fd, stat)` | open fds 0-2: a character device (2), flags 0, base rights `fd_read` (fd 0) or `fd_write` (fds 1, 2), inheriting rights 0, as WASI's 24-byte `fdstat`; others `badf` |
//! | `fd_prestat_get(fd, _)`, `fd_prestat_dir_name(fd, _, _)` | `badf` for every fd: nothing is preopened |
//! | `fd_seek(fd, _, _, _)` | open fds 0-2: `spipe` (70); others `badf` |
//! | `clock_res_get(id, res)` | 1000 ns for realtime (0), monotonic (1), process (2) and thread (3) CPU time; other ids `inval` |
//! | `clock_time_get(id, _, time)` | ids as above; realtime reads 2026-01-01T00:00:00Z, the others 0, plus 1000 ns for every earlier successful read of any clock (see `clock`) |
//! | `random_get(buf, len)` | the next `len` bytes of the task's ChaCha8 stream keyed by the seed; calls continue one stream byte by byte (see `random`) |
//! | `sched_yield()` | success |
//! | `proc_exit(code)` | ends the run with [`Stop::Exit`] |
//!
//! # Differences from Node's `node:wasi`, on purpose
//!
//! Checked once against Node 20.20's `node:wasi` (uvwasi), calling its
//! imports on a bare module's memory. Same: the argv layout and sizes, the
//! empty environment, `badf` for writing fd 0, reading fd 1 and unknown
//! fds, `inval` for an unknown clock. Different:
//! - Clocks: Node reads the host's clocks (and reports a 1 ns resolution);
//!   here time is the count of reads, so replicas agree.
//! - `random_get`: Node returns the OS's random bytes; here a seeded
//!   stream, so replicas agree and a task can be re-run.
//! - Preopens: Node maps guest paths to host directories from fd 3 on and
//!   answers `inval` for `fd_prestat_get` on fds 0-2; here nothing is
//!   preopened and every fd is `badf`.
//! - Stdio: Node's `fd_fdstat_get` and `fd_seek` describe the process's
//!   real fds (a pipe or socket with the append flag and broad rights; a
//!   seekable stdin when it is a file); here they are fixed character
//!   devices that cannot seek, whatever the worker's own stdio is.
//! - Faults: Node answers `overflow` (61) for a pointer outside memory;
//!   here it is `fault` (21).
//! - Limits: Node has no stdout limit, no stderr cap, and no cap on the
//!   iovec count; here at most [`IOV_MAX`] iovecs a call.

mod clock;
mod config;
mod errno;
mod fd;
mod func;
mod host;
mod iovec;
mod memory;
mod outcome;
mod random;

#[cfg(test)]
mod tests;

pub use clock::{REALTIME_START_NS, TICK_NS};
pub use config::{ConfigError, DataFile, RANDOM_SEED_DOMAIN, TaskConfig, random_seed};
pub use errno::Errno;
pub use func::Func;
pub use host::{Stop, Wasi};
pub use iovec::IOV_MAX;
pub use memory::Memory;
pub use outcome::{Ended, HostFault, RunEnd, outcome};
