//! The deterministic WASI preview 1 subset that user kernels may import
//! (`grid_kernels::wasm::WASI_IMPORTS`), implemented once, with no I/O, no
//! clock and no OS. Both runtimes call it: the native worker from
//! wasmtime's host functions, the browser worker from a thin JS import
//! shim over this crate compiled to WebAssembly. A kernel therefore sees
//! the same answers, byte for byte, in every worker.
//!
//! A run is a [`Wasi`] made from a [`TaskConfig`] (argv, stdin, the job's
//! read-only files, the random seed from [`random_seed`], the job's
//! limits). The runtime forwards each import call as [`Wasi::call`] with
//! the [`Func`], the raw arguments and the kernel's [`Memory`]; it gets
//! back the errno for the kernel or a [`Stop`] that ends the run, and after
//! the run takes stdout and stderr with [`Wasi::finish`].
//!
//! Modules: `func` (the functions, in the contract's order), `errno` (every
//! WASI errno), `memory` (the [`Memory`] trait, checked pointer
//! arithmetic), `config` (a task's inputs and seed), `host` ([`Wasi`], one
//! method per function; `host::files` for those of `/data`), `fd` (the fd
//! table, `fdstat`, rights), `data` (`/data`: paths, `filestat`, the
//! listing), `iovec` (the scatter/gather lists), `clock`, `random`.
//!
//! # Behaviour
//!
//! Pointers and lengths are the kernel's u32s. Every region is checked to
//! be inside memory before anything is written or taken from a stream, so
//! a call that returns `fault` (21), or any other errno, has changed
//! nothing (not the memory, an offset, the fd table, a stream, the clock
//! or the fuel); a fault is an errno, never a trap. A buffer the kernel
//! passes is checked whole, even where less is written. Where a call could
//! fail in several ways, its checks run in a fixed order and the first
//! failure is the answer: for `fd_read`, `fd_pread` and `fd_write`, the fd,
//! the iovec count, each iovec and its buffer in turn, then the place of
//! the count; the other functions check their arguments from left to
//! right, unless their row says otherwise.
//!
//! | function | behaviour |
//! |---|---|
//! | `args_sizes_get(argc, buf_size)` | writes argc and the bytes of argv's strings, NULs included (u32s) |
//! | `args_get(argv, buf)` | argc u32 pointers at `argv`; the strings, each NUL-terminated, one after another at `buf`, `argv[0]` first (the layout of the WASI ABI) |
//! | `environ_sizes_get(count, buf_size)` | writes 0 and 0: the environment is empty |
//! | `environ_get(environ, buf)` | success, writes nothing |
//! | `fd_read(fd, iovs, iovs_len, nread)` | stdin (fd 0) or an open file; `/data` `isdir`; stdout, stderr and closed fds `badf`; more than 1024 iovecs, or lengths adding up past `u32::MAX`, `inval`; fills the buffers in order from where the last read stopped (a file's offset, which moves past what is read); fewer bytes than asked when the input runs out, 0 at its end. A file's bytes are charged first (see Fuel) |
//! | `fd_write(fd, iovs, iovs_len, nwritten)` | fds 1 and 2 only (stdin, `/data`, files and closed fds `badf`); iovecs as for `fd_read`; stdout keeps bytes up to `limits.stdout_bytes`, and the write that would pass it ends the run with [`Stop::OutputLimit`] (stdout then holds exactly the limit); stderr keeps its first `limits.stderr_bytes` bytes and drops the rest silently, reporting every byte written |
//! | `fd_close(fd)` | any open fd closes, `/data` (fd 3) included, its number free again; a closed fd's later use is `badf`; closing `/data` leaves files opened from it open |
//! | `fd_fdstat_get(fd, stat)` | WASI's 24-byte `fdstat`, padding zeroed. fds 0-2: a character device (2), flags 0, base rights `fd_read` (fd 0) or `fd_write` (fds 1, 2), inheriting 0. `/data`: a directory (3), flags 0, base rights `path_open`, `fd_readdir`, `path_filestat_get`, `fd_filestat_get`, inheriting those and a file's. A file: a regular file (4), the flags it was opened with, the base rights asked for that a file can have (`fd_read`, `fd_seek`, `fd_tell`, `fd_advise`, `fd_filestat_get`), inheriting 0. A directory opened again: as `/data`, with the rights asked for that it can have. Closed fds `badf` |
//! | `fd_prestat_get(fd, buf)` | the preopen (fd 3 until closed): tag 0 (`dir`) at 0, the name's length 5 (u32) at 4, 8 bytes; every other fd `badf`, open or not |
//! | `fd_prestat_dir_name(fd, path, path_len)` | fds as `fd_prestat_get`; `path_len` below 5 `nametoolong`; the buffer `path_len` long at `path` must be inside memory (`fault`); writes the 5 bytes `/data`, no NUL |
//! | `path_open(dirfd, dirflags, path, path_len, oflags, rights_base, rights_inheriting, fdflags, fd_out)` | in this order: `dirfd` closed `badf`, open but not a directory `notdir`; `dirflags` other than `symlink_follow` (1) `inval`; `path_len` past [`PATH_MAX`] `nametoolong`, the path outside memory `fault`; unknown `oflags` bits `inval`, `creat`, `excl` or `trunc` `perm`; base rights to write (`fd_write`, `fd_datasync`, `fd_allocate`, `fd_filestat_set_size`) `perm`; unknown `fdflags` bits `inval`, `append` `perm`; `fd_out` outside memory `fault`; then the path (see `/data`): `perm`, `notdir`, `nametoolong`, `noent`; `directory` in `oflags` naming a file `notdir`; no number free below [`MAX_OPEN_FDS`] `mfile`. Then the lowest free fd (as POSIX `open`, a closed stream's number included) is a file at offset 0, or a directory fd for `.`; `fd_out` gets its number. Other rights asked for are dropped, not refused; `rights_inheriting` is never refused; `nonblock`, `dsync`, `rsync` and `sync` are kept (`fd_fdstat_get` shows them) and do nothing |
//! | `path_filestat_get(dirfd, flags, path, path_len, buf)` | `dirfd`, `flags` and the path checked as `path_open`'s, then `buf` (64 bytes, `fault`), then the path resolved as `path_open`'s; writes its `filestat` |
//! | `fd_filestat_get(fd, buf)` | WASI's 64-byte `filestat` of any open fd (closed `badf`; `buf` outside memory `fault`): a stream's is a character device (2) with every number 0; `/data` and files as in `/data` below |
//! | `fd_readdir(fd, buf, buf_len, cookie, bufused)` | `fd` closed `badf`, not a directory `notdir`; `buf` (`buf_len` bytes), then `bufused`, outside memory `fault`; writes the listing from entry `cookie` on, cut at `buf_len`, and its length to `bufused` (see `/data`); the bytes written are charged first (see Fuel) |
//! | `fd_pread(fd, iovs, iovs_len, offset, nread)` | an open file (streams `spipe`, directories `isdir`, closed `badf`); iovecs as for `fd_read`; reads as `fd_read` from `offset` (any u64; at or past the end reads 0 bytes), and the fd's offset stays |
//! | `fd_seek(fd, offset, whence, newoffset)` | an open file (streams `spipe`, directories `isdir`, closed `badf`); `whence` set (0), cur (1) or end (2), else `inval`; the new offset (the i64 `offset` added to 0, the current offset or the file's size) below 0 or past `i64::MAX` `inval`; then `newoffset` (8 bytes) outside memory `fault`; sets and writes the new offset, which may be past the end (reads there give 0 bytes) |
//! | `fd_tell(fd, offset)` | fds as `fd_seek`; writes the file's offset (u64) |
//! | `fd_advise(fd, offset, len, advice)` | fds as `fd_seek`; `advice` past 5 (`noreuse`) `inval`; success, no effect; `offset` and `len` are not looked at |
//! | `fd_fdstat_set_flags(fd, flags)` | open fds only (others `badf`); success if `flags` are the flags `fd_fdstat_get` reports for it (wasi-libc's stdio sets them so), else `perm`: nothing can become appending or non-blocking |
//! | `clock_res_get(id, res)` | 1000 ns for realtime (0), monotonic (1), process (2) and thread (3) CPU time; other ids `inval` |
//! | `clock_time_get(id, _, time)` | ids as above; realtime reads 2026-01-01T00:00:00Z, the others 0, plus 1000 ns for every earlier successful read of any clock (see `clock`) |
//! | `random_get(buf, len)` | the next `len` bytes of the task's ChaCha8 stream keyed by the seed; calls continue one stream byte by byte (see `random`) |
//! | `sched_yield()` | success |
//! | `proc_exit(code)` | ends the run with [`Stop::Exit`] |
//!
//! # `/data`
//!
//! Every run has one preopened directory, `/data` at fd 3
//! ([`grid_kernels::wasm::DATA_DIR`]), holding the job's files
//! ([`TaskConfig::files`], [`DataFile`]) read-only; with no files it is an
//! empty directory, so a kernel finds it the same way whatever the job
//! mounts. It is flat: no subdirectories, no links.
//!
//! - Paths are relative to `/data` (or a directory fd opened from it) and
//!   split at `/`. Empty components and `.` stay; a file's name moves to
//!   the file; anything after a file, even a trailing `/` or `.`, is
//!   `notdir`; `..` (which can only leave `/data`) and absolute paths are
//!   `perm`, as wasmtime answers a path that escapes its preopen; a
//!   component longer than 255 bytes is `nametoolong`; an empty path or a
//!   name that is no file's is `noent`. Names are matched byte for byte.
//!   So `name`, `./name` and `.//name` open a file, and `.` or `./` the
//!   directory.
//! - `filestat`: `dev` u64 at 0, `ino` u64 at 8, `filetype` u8 at 16 (7 zero
//!   bytes after), `nlink` u64 at 24, `size` u64 at 32, then `atim`, `mtim`
//!   and `ctim`, all 0. `/data`: `dev` 1, `ino` 1, a directory (3), one
//!   link, size 0. The file at index `i` (by name): `dev` 1, `ino` `i + 2`,
//!   a regular file (4), one link, its length.
//! - The listing: `.`, `..` (`/data` itself: nothing outside it can be
//!   seen), then the files by name; entry `i`'s cookie (`d_next`) is
//!   `i + 1`. Each entry is a 24-byte `dirent` (`d_next` u64 at 0, `d_ino`
//!   u64 at 8, `d_namlen` u32 at 16, `d_type` u8 at 20, 3 zero bytes) then
//!   the name, no NUL. The entry that does not fit is cut at the buffer's
//!   end, so `bufused == buf_len` means "ask again from the last whole
//!   entry's `d_next`"; a cookie past the end gives 0 bytes.
//! - Opening: only reading. Rights are reported as asked for and masked,
//!   never checked: any open file can be read, seeked and told. Rust's
//!   `File::open` and wasi-libc's `fopen(.., "r")` ask for every right but
//!   the four to write (Rust: base `0x0fbffebe`; wasi-libc: its maximum
//!   masked by `/data`'s inheriting rights), and both succeed; any base
//!   right to write is refused.
//!
//! # Fuel
//!
//! Copying a file's bytes into the kernel's memory is work the kernel's
//! own instructions do not pay for, and a file, unlike stdin, can be read
//! again and again. So a call that copies `n` bytes from `/data` (`fd_read`
//! of a file, `fd_pread`, and `fd_readdir`'s listing) costs `n / 8` fuel,
//! rounded down, like `memory.copy` in the prepared module
//! (`grid_wasm_prep::fuel`, rule 3), counted in [`Wasi::host_fuel`] before
//! anything is copied. The call that would take that count past the job's
//! fuel copies nothing and ends the run with [`Stop::OutOfFuel`]: the
//! outcome is [`grid_kernels::wasm::Trap::OutOfFuel`] with the job's fuel
//! used, whichever runtime ran it. Reading stdin, whose bytes can each be
//! read once, and everything else cost nothing here.
//!
//! # Differences from Node's `node:wasi`, on purpose
//!
//! Checked against Node 20.20's `node:wasi` (uvwasi), calling its imports
//! on a bare module's memory with `/data` preopened on a host directory,
//! and running examples/slicehash (Rust's std) and a wasi-libc `fopen`
//! under it. Same: the argv layout and sizes, the empty environment,
//! `badf` for writing fd 0, reading fd 1 and unknown fds, `inval` for an
//! unknown clock; `/data` at fd 3 with a `dir` prestat of length 5 and the
//! 5 bytes `/data`, `badf` from fd 4 on; `filestat` and `dirent` layouts;
//! `notdir` for `name/` and for `directory` on a file, `noent` for a
//! missing name; seeks past the end, `inval` for a negative offset or an
//! unknown whence; a cut last entry filling the buffer; `fd_readdir`
//! cookies as `d_next`. Different:
//! - Clocks: Node reads the host's clocks (and reports a 1 ns resolution);
//!   here time is the count of reads, so replicas agree.
//! - `random_get`: Node returns the OS's random bytes; here a seeded
//!   stream, so replicas agree and a task can be re-run.
//! - Preopens: Node answers `inval` for `fd_prestat_get` on fds 0-2 (and
//!   on a directory opened later), and `nobufs` for a name buffer under 5
//!   bytes; here every fd but the preopen is `badf`, and a short buffer is
//!   `nametoolong` (wasmtime's answers).
//! - Paths: Node answers `notcapable` for `..` and absolute paths (here
//!   `perm`, as wasmtime), `inval` for an empty path (here `noent`), and
//!   resolves `name/.` to the file (here `notdir`, as POSIX).
//! - Writing: Node's `/data` is the host directory, writable: `creat`,
//!   `trunc` and write rights work there; here they are `perm`. Node
//!   checks rights (`notcapable` for a call the fd lacks the right to,
//!   e.g. `fd_seek` on a directory); here rights are reported, not checked,
//!   and a file function on a directory is `isdir`, on a stream `spipe`.
//! - Stats and listings: Node reports the host's device, inode numbers,
//!   link counts, directory sizes and times, lists in the host's order
//!   without `.` and `..` and with `d_ino` 0, and leaves `fdstat`'s
//!   padding unwritten; here the numbers are fixed (see `/data`), the
//!   order is by name, `.` and `..` come first, padding is zero.
//! - Stdio: Node's `fd_fdstat_get`, `fd_filestat_get` and `fd_seek`
//!   describe the process's real fds (a pipe or socket with the append
//!   flag and broad rights; a seekable stdin when it is a file); here they
//!   are fixed character devices that cannot seek, whatever the worker's
//!   own stdio is.
//! - Faults: Node answers `overflow` (61) for a pointer outside memory;
//!   here it is `fault` (21).
//! - Limits: Node has no stdout limit, no stderr cap and no cap of its own
//!   on the iovec count, and its reads cost no fuel; here at most
//!   [`IOV_MAX`] iovecs a call, [`PATH_MAX`] bytes a path, [`MAX_OPEN_FDS`]
//!   fds at once, and file reads are charged (see Fuel).

mod clock;
mod config;
mod data;
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
#[cfg(test)]
mod tests_files;

pub use clock::{REALTIME_START_NS, TICK_NS};
pub use config::{ConfigError, DataFile, RANDOM_SEED_DOMAIN, TaskConfig, random_seed};
pub use data::PATH_MAX;
pub use errno::Errno;
pub use fd::MAX_OPEN_FDS;
pub use func::Func;
pub use host::{Stop, Wasi};
pub use iovec::IOV_MAX;
pub use memory::Memory;
pub use outcome::{Ended, HostFault, RunEnd, outcome};
