//! [`Wasi`]: one run's WASI state (argv, stdin and how much of it is read,
//! the files of `/data`, the fd table, the clock, the random stream, stdout
//! and stderr so far, the fuel its file reads have cost) and [`Wasi::call`],
//! which carries out one call of a kernel's import on it. The behaviour of
//! each function is the table in the crate's header; this file and `files`
//! (the functions of `/data` and its files) are that table in code, one
//! method per function.

use std::fmt;

use grid_kernels::wasm::{Trap, ValType, WasmLimits};

use crate::clock::{Clock, ClockId};
use crate::config::{ConfigError, TaskConfig, args_buf_size};
use crate::data::DataDir;
use crate::errno::Errno;
use crate::fd::{FdKind, FdTable, Fdstat};
use crate::func::Func;
use crate::iovec;
use crate::memory::{self, Memory};
use crate::random::RandomStream;

mod files;

/// Why a call ends the run instead of returning to the kernel. The state
/// stays consistent after one (a later call behaves as documented), but the
/// runtime is expected to end the run and call [`Wasi::finish`].
///
/// It is an error type so that a native runtime can return it from a host
/// function as the trap that unwinds the kernel and find it again after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Stop {
    /// `proc_exit` with this code.
    #[error("the kernel exited with code {0}")]
    Exit(i32),
    /// A write to stdout would pass `limits.stdout_bytes`; stdout holds
    /// exactly that many bytes.
    #[error("the kernel wrote more to stdout than the job allows")]
    OutputLimit,
    /// A read from `/data` would take the fuel its file reads cost
    /// ([`Wasi::host_fuel`]) past the job's fuel: nothing was read.
    #[error("the kernel read more from its files than its fuel pays for")]
    OutOfFuel,
}

impl Stop {
    /// The trap it is in a task's outcome, if any.
    pub fn trap(self) -> Option<Trap> {
        match self {
            Stop::Exit(_) => None,
            Stop::OutputLimit => Some(Trap::OutputLimit),
            Stop::OutOfFuel => Some(Trap::OutOfFuel),
        }
    }

    /// The exit code in a task's outcome: `proc_exit`'s, 0 for a trap.
    pub fn exit_code(self) -> i32 {
        match self {
            Stop::Exit(code) => code,
            Stop::OutputLimit | Stop::OutOfFuel => 0,
        }
    }
}

/// How a function fails: an errno for the kernel, or the end of the run.
pub(crate) enum Fail {
    Errno(Errno),
    Stop(Stop),
}

impl From<Errno> for Fail {
    fn from(errno: Errno) -> Fail {
        Fail::Errno(errno)
    }
}

impl From<Stop> for Fail {
    fn from(stop: Stop) -> Fail {
        Fail::Stop(stop)
    }
}

/// One run's WASI state. Everything it does is a function of the
/// [`TaskConfig`] and the calls made, in order.
pub struct Wasi {
    args: Vec<Vec<u8>>,
    stdin: Vec<u8>,
    /// How much of stdin `fd_read` has returned.
    stdin_read: usize,
    data: DataDir,
    limits: WasmLimits,
    fds: FdTable,
    /// The fuel file reads have cost so far (see [`Wasi::host_fuel`]).
    host_fuel: u64,
    clock: Clock,
    random: RandomStream,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl fmt::Debug for Wasi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Lengths, not contents: stdin and stdout may be megabytes.
        f.debug_struct("Wasi")
            .field("args", &self.args.len())
            .field(
                "stdin",
                &format_args!("{}/{}", self.stdin_read, self.stdin.len()),
            )
            .field("data", &self.data)
            .field("limits", &self.limits)
            .field("fds", &self.fds)
            .field("host_fuel", &self.host_fuel)
            .field("clock", &self.clock)
            .field("random", &self.random)
            .field("stdout", &self.stdout.len())
            .field("stderr", &self.stderr.len())
            .finish()
    }
}

impl Wasi {
    /// The state before the kernel's first call; the config must pass
    /// [`TaskConfig::validate`].
    pub fn new(config: TaskConfig) -> Result<Wasi, ConfigError> {
        config.validate()?;
        Ok(Wasi {
            args: config.args,
            stdin: config.stdin,
            stdin_read: 0,
            data: DataDir::new(config.files),
            limits: config.limits,
            fds: FdTable::new(),
            host_fuel: 0,
            clock: Clock::default(),
            random: RandomStream::new(config.seed),
            stdout: Vec::new(),
            stderr: Vec::new(),
        })
    }

    /// Carries out one call of `func` by the kernel and returns its errno
    /// (0 for success) for the kernel, or why the run ends.
    ///
    /// `args` holds the call's arguments in order, each as a u64: an i32 as
    /// its u32 bits zero-extended (only the low 32 bits are read), an i64
    /// as its bits. A call that returns an errno other than success has
    /// changed nothing: not the memory, not a stream, not the clock.
    ///
    /// # Panics
    ///
    /// If `args.len()` is not the number of parameters of `func` in
    /// `WASI_IMPORTS`: that is a bug in the runtime, not in the kernel.
    pub fn call<M: Memory + ?Sized>(
        &mut self,
        func: Func,
        args: &[u64],
        memory: &mut M,
    ) -> Result<u32, Stop> {
        let params = func.import().params;
        assert_eq!(
            args.len(),
            params.len(),
            "{} takes {} arguments",
            func.name(),
            params.len()
        );
        // Truncation is the ABI: an i32 argument is its low 32 bits.
        let i32_at = |i: usize| {
            debug_assert_eq!(params[i], ValType::I32);
            args[i] as u32
        };
        let i64_at = |i: usize| {
            debug_assert_eq!(params[i], ValType::I64);
            args[i]
        };
        let done = match func {
            Func::ArgsGet => self.args_get(memory, i32_at(0), i32_at(1)),
            Func::ArgsSizesGet => self.args_sizes_get(memory, i32_at(0), i32_at(1)),
            Func::EnvironGet => Ok(()),
            Func::EnvironSizesGet => sizes_get(memory, i32_at(0), 0, i32_at(1), 0),
            Func::FdRead => self.fd_read(memory, i32_at(0), i32_at(1), i32_at(2), i32_at(3)),
            Func::FdWrite => self.fd_write(memory, i32_at(0), i32_at(1), i32_at(2), i32_at(3)),
            Func::FdClose => self.fds.close(i32_at(0)).map_err(Fail::from),
            Func::FdFdstatGet => self.fd_fdstat_get(memory, i32_at(0), i32_at(1)),
            Func::FdPrestatGet => self.fd_prestat_get(memory, i32_at(0), i32_at(1)),
            Func::FdPrestatDirName => {
                self.fd_prestat_dir_name(memory, i32_at(0), i32_at(1), i32_at(2))
            }
            Func::FdSeek => self.fd_seek(memory, i32_at(0), i64_at(1), i32_at(2), i32_at(3)),
            Func::ClockResGet => clock_res_get(memory, i32_at(0), i32_at(1)),
            // The precision (argument 1, an i64) is ignored.
            Func::ClockTimeGet => self.clock_time_get(memory, i32_at(0), i32_at(2)),
            Func::RandomGet => self
                .random
                .fill(memory, i32_at(0), i32_at(1))
                .map_err(Fail::from),
            Func::SchedYield => Ok(()),
            Func::ProcExit => Err(Fail::Stop(Stop::Exit(i32_at(0) as i32))),
            Func::PathOpen => self.path_open(
                memory,
                files::PathOpen {
                    dirfd: i32_at(0),
                    dirflags: i32_at(1),
                    path: i32_at(2),
                    path_len: i32_at(3),
                    oflags: i32_at(4),
                    rights_base: i64_at(5),
                    rights_inheriting: i64_at(6),
                    fdflags: i32_at(7),
                    fd_out: i32_at(8),
                },
            ),
            Func::PathFilestatGet => self.path_filestat_get(
                memory,
                i32_at(0),
                i32_at(1),
                i32_at(2),
                i32_at(3),
                i32_at(4),
            ),
            Func::FdFilestatGet => self.fd_filestat_get(memory, i32_at(0), i32_at(1)),
            Func::FdReaddir => self.fd_readdir(
                memory,
                i32_at(0),
                i32_at(1),
                i32_at(2),
                i64_at(3),
                i32_at(4),
            ),
            Func::FdPread => self.fd_pread(
                memory,
                i32_at(0),
                i32_at(1),
                i32_at(2),
                i64_at(3),
                i32_at(4),
            ),
            Func::FdTell => self.fd_tell(memory, i32_at(0), i32_at(1)),
            // The offset and length (i64s) are not looked at.
            Func::FdAdvise => self.fd_advise(i32_at(0), i32_at(3)),
            Func::FdFdstatSetFlags => self.fd_fdstat_set_flags(i32_at(0), i32_at(1)),
        };
        match done {
            Ok(()) => Ok(Errno::Success.code()),
            Err(Fail::Errno(errno)) => Ok(errno.code()),
            Err(Fail::Stop(stop)) => Err(stop),
        }
    }

    /// stdout and stderr, as the kernel left them.
    pub fn finish(self) -> (Vec<u8>, Vec<u8>) {
        (self.stdout, self.stderr)
    }

    /// The fuel the run's reads from `/data` have cost so far: a call that
    /// copies `n` bytes of a file (`fd_read`, `fd_pread`) or of the
    /// directory's listing (`fd_readdir`) into the kernel's memory costs
    /// `n / 8`, rounded down, as `memory.copy` does in the prepared module
    /// (`grid_wasm_prep::fuel`, rule 3). The call that would take it past
    /// the job's fuel reads nothing and ends the run ([`Stop::OutOfFuel`]).
    /// Reading stdin costs nothing: each of its bytes can be read once.
    pub fn host_fuel(&self) -> u64 {
        self.host_fuel
    }

    /// Charges the fuel of copying `bytes` from `/data`, before they are
    /// copied.
    pub(crate) fn charge_read(&mut self, bytes: u64) -> Result<(), Stop> {
        let total = self.host_fuel.saturating_add(bytes >> 3);
        if total > self.limits.fuel {
            return Err(Stop::OutOfFuel);
        }
        self.host_fuel = total;
        Ok(())
    }

    /// The argv pointers at `argv` (u32 each), the NUL-terminated strings
    /// one after another at `argv_buf`.
    fn args_get<M: Memory + ?Sized>(
        &mut self,
        memory: &mut M,
        argv: u32,
        argv_buf: u32,
    ) -> Result<(), Fail> {
        // `new` checked both sizes fit in u32; check both regions before
        // writing, so every pointer below is inside the memory.
        memory::check(memory, argv, self.args.len() as u64 * 4)?;
        memory::check(memory, argv_buf, args_buf_size(&self.args))?;
        let mut string_offset = 0u64;
        for (i, arg) in self.args.iter().enumerate() {
            let string = memory::offset(argv_buf, string_offset)?;
            memory::write_u32(memory, memory::offset(argv, i as u64 * 4)?, string)?;
            memory::write_bytes(memory, string, arg)?;
            memory::write_bytes(memory, memory::offset(string, arg.len() as u64)?, &[0])?;
            string_offset += arg.len() as u64 + 1;
        }
        Ok(())
    }

    fn args_sizes_get<M: Memory + ?Sized>(
        &mut self,
        memory: &mut M,
        argc: u32,
        argv_buf_size: u32,
    ) -> Result<(), Fail> {
        // Both fit in u32: `TaskConfig::validate`.
        let count = self.args.len() as u32;
        let size = args_buf_size(&self.args) as u32;
        sizes_get(memory, argc, count, argv_buf_size, size)
    }

    fn fd_read<M: Memory + ?Sized>(
        &mut self,
        memory: &mut M,
        fd: u32,
        iovs: u32,
        iovs_len: u32,
        nread: u32,
    ) -> Result<(), Fail> {
        match self.fds.get(fd)?.kind {
            FdKind::Stdin => {}
            FdKind::File { file, position } => {
                return self.read_file(memory, fd, file, position, iovs, iovs_len, nread);
            }
            FdKind::Dir { .. } => return Err(Errno::Isdir.into()),
            FdKind::Stdout | FdKind::Stderr => return Err(Errno::Badf.into()),
        }
        let (list, _) = iovec::read_list(memory, iovs, iovs_len)?;
        memory::check(memory, nread, 4)?;
        let mut read = 0u32;
        for iovec in list {
            let rest = &self.stdin[self.stdin_read..];
            if rest.is_empty() {
                break;
            }
            let n = rest.len().min(iovec.len as usize);
            memory::write_bytes(memory, iovec.buf, &rest[..n])?;
            self.stdin_read += n;
            // At most the list's total, which fits in u32.
            read += n as u32;
        }
        memory::write_u32(memory, nread, read)?;
        Ok(())
    }

    fn fd_write<M: Memory + ?Sized>(
        &mut self,
        memory: &mut M,
        fd: u32,
        iovs: u32,
        iovs_len: u32,
        nwritten: u32,
    ) -> Result<(), Fail> {
        let kind = self.fds.get(fd)?.kind;
        let (out, limit) = match kind {
            FdKind::Stdout => (&mut self.stdout, self.limits.stdout_bytes),
            FdKind::Stderr => (&mut self.stderr, self.limits.stderr_bytes),
            FdKind::Stdin | FdKind::Dir { .. } | FdKind::File { .. } => {
                return Err(Errno::Badf.into());
            }
        };
        let (list, total) = iovec::read_list(memory, iovs, iovs_len)?;
        memory::check(memory, nwritten, 4)?;
        for iovec in list {
            let room = (limit as usize).saturating_sub(out.len());
            let n = room.min(iovec.len as usize);
            append(memory, out, iovec.buf, n)?;
            if n < iovec.len as usize && kind == FdKind::Stdout {
                return Err(Stop::OutputLimit.into());
            }
        }
        // stderr reports every byte written, kept or cut.
        memory::write_u32(memory, nwritten, total)?;
        Ok(())
    }

    fn fd_fdstat_get<M: Memory + ?Sized>(
        &mut self,
        memory: &mut M,
        fd: u32,
        stat: u32,
    ) -> Result<(), Fail> {
        let open = self.fds.get(fd)?;
        memory::write_bytes(memory, stat, &Fdstat::of(open).to_bytes())?;
        Ok(())
    }

    /// Nothing can change an fd's flags: setting the flags it has already
    /// succeeds (wasi-libc's stdio does so), any other `perm`.
    fn fd_fdstat_set_flags(&mut self, fd: u32, flags: u32) -> Result<(), Fail> {
        let open = self.fds.get(fd)?;
        if flags != u32::from(Fdstat::of(open).flags) {
            return Err(Errno::Perm.into());
        }
        Ok(())
    }

    fn clock_time_get<M: Memory + ?Sized>(
        &mut self,
        memory: &mut M,
        id: u32,
        time: u32,
    ) -> Result<(), Fail> {
        let clock = ClockId::from_raw(id)?;
        memory::write_u64(memory, time, self.clock.peek(clock))?;
        self.clock.tick();
        Ok(())
    }
}

/// `args_sizes_get` and `environ_sizes_get`: two u32s, both or neither.
fn sizes_get<M: Memory + ?Sized>(
    memory: &mut M,
    count_at: u32,
    count: u32,
    size_at: u32,
    size: u32,
) -> Result<(), Fail> {
    memory::check(memory, size_at, 4)?;
    memory::write_u32(memory, count_at, count)?;
    memory::write_u32(memory, size_at, size)?;
    Ok(())
}

fn clock_res_get<M: Memory + ?Sized>(memory: &mut M, id: u32, resolution: u32) -> Result<(), Fail> {
    let clock = ClockId::from_raw(id)?;
    memory::write_u64(memory, resolution, clock.resolution())?;
    Ok(())
}

/// Appends the `n` bytes at `addr` to `out`. The region was checked, so the
/// allocation is at most what the kernel's memory holds.
fn append<M: Memory + ?Sized>(
    memory: &M,
    out: &mut Vec<u8>,
    addr: u32,
    n: usize,
) -> Result<(), Errno> {
    if n == 0 {
        return Ok(());
    }
    let old = out.len();
    out.resize(old + n, 0);
    if memory.read(addr, &mut out[old..]) {
        Ok(())
    } else {
        out.truncate(old);
        Err(Errno::Fault)
    }
}
