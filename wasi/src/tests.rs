//! [`Wasi::call`] as a kernel sees it: each function's exact bytes in a
//! `Vec<u8>` memory, the limits, the errnos for bad fds and bad pointers,
//! the work a hostile call can cause (counted by a memory that records what
//! is read), and a property test that random calls never panic. The
//! functions of `/data` have their own module, `tests_files`.
//!
//! The expected bytes are written out by hand from the WASI ABI (the argv
//! layout was also checked against Node's `node:wasi`), not computed with
//! this crate's own helpers.

use std::cell::Cell;

use bytes::Bytes;
use grid_kernels::wasm::{Trap, WasmLimits};
use proptest::prelude::*;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};

use crate::{
    DataFile, Errno, Func, Memory, REALTIME_START_NS, Stop, TaskConfig, Wasi, random_seed,
};

const SUCCESS: u32 = 0;
const BADF: u32 = 8;
const FAULT: u32 = 21;
const INVAL: u32 = 28;
const ISDIR: u32 = 31;
const SPIPE: u32 = 70;

fn config() -> TaskConfig {
    TaskConfig {
        // Two files, for the property tests' random calls (`tests_files`
        // tests the functions of /data).
        files: vec![
            DataFile {
                name: "a".into(),
                bytes: Bytes::from_static(b"0123456789"),
            },
            DataFile {
                name: "b".into(),
                bytes: Bytes::new(),
            },
        ],
        args: vec![b"kernel".to_vec(), b"ab".to_vec(), Vec::new()],
        stdin: b"hello world".to_vec(),
        seed: random_seed(1, &[7; 32], 0),
        limits: WasmLimits {
            stdout_bytes: 10,
            stderr_bytes: 4,
            ..WasmLimits::DEFAULT
        },
    }
}

fn wasi() -> Wasi {
    Wasi::new(config()).unwrap()
}

/// Calls `func`, expecting an errno rather than a stop.
pub(crate) fn call(wasi: &mut Wasi, func: Func, args: &[u64], memory: &mut Vec<u8>) -> u32 {
    wasi.call(func, args, memory)
        .unwrap_or_else(|stop| panic!("{} stopped the run: {stop}", func.name()))
}

pub(crate) fn u32_at(memory: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(memory[at..at + 4].try_into().unwrap())
}

pub(crate) fn u64_at(memory: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(memory[at..at + 8].try_into().unwrap())
}

/// Writes iovecs `{buf, len}` at `at`.
pub(crate) fn put_iovecs(memory: &mut [u8], at: usize, iovecs: &[(u32, u32)]) {
    for (i, (buf, len)) in iovecs.iter().enumerate() {
        let at = at + i * 8;
        memory[at..at + 4].copy_from_slice(&buf.to_le_bytes());
        memory[at + 4..at + 8].copy_from_slice(&len.to_le_bytes());
    }
}

/// A memory of up to 4 GiB in which only the first bytes are stored (the
/// rest reads as zeros and must not be written), counting the bytes read:
/// a stand-in for a kernel that grew its memory to the maximum.
pub(crate) struct SparseMemory {
    size: u64,
    pub(crate) front: Vec<u8>,
    pub(crate) bytes_read: Cell<u64>,
}

impl SparseMemory {
    pub(crate) fn new(size: u64, front: Vec<u8>) -> SparseMemory {
        SparseMemory {
            size,
            front,
            bytes_read: Cell::new(0),
        }
    }
}

impl Memory for SparseMemory {
    fn read(&self, addr: u32, buf: &mut [u8]) -> bool {
        let start = u64::from(addr);
        if start + buf.len() as u64 > self.size {
            return false;
        }
        self.bytes_read
            .set(self.bytes_read.get() + buf.len() as u64);
        for (i, byte) in buf.iter_mut().enumerate() {
            *byte = self.front.get(addr as usize + i).copied().unwrap_or(0);
        }
        true
    }

    fn write(&mut self, addr: u32, data: &[u8]) -> bool {
        if u64::from(addr) + data.len() as u64 > self.size {
            return false;
        }
        let end = addr as usize + data.len();
        assert!(
            end <= self.front.len(),
            "a test writes past the stored front"
        );
        self.front[addr as usize..end].copy_from_slice(data);
        true
    }
}

pub(crate) const FOUR_GIB: u64 = 1 << 32;

#[test]
fn args_are_laid_out_as_the_abi_says() {
    let mut w = wasi();
    let mut memory = vec![0xee; 128];
    assert_eq!(
        call(&mut w, Func::ArgsSizesGet, &[0, 4], &mut memory),
        SUCCESS
    );
    assert_eq!(u32_at(&memory, 0), 3, "argc");
    assert_eq!(u32_at(&memory, 4), 11, "kernel\\0 ab\\0 \\0");
    assert_eq!(
        call(&mut w, Func::ArgsGet, &[16, 100], &mut memory),
        SUCCESS
    );
    assert_eq!(&memory[16..28], [100, 0, 0, 0, 107, 0, 0, 0, 110, 0, 0, 0]);
    assert_eq!(&memory[100..111], b"kernel\0ab\0\0");
    assert_eq!(memory[28], 0xee, "nothing after the pointers");
    assert_eq!(memory[111], 0xee, "nothing after the strings");
}

#[test]
fn no_args_write_zero_sizes_and_nothing_else() {
    let mut w = Wasi::new(TaskConfig {
        args: Vec::new(),
        ..config()
    })
    .unwrap();
    let mut memory = vec![0xee; 16];
    assert_eq!(
        call(&mut w, Func::ArgsSizesGet, &[0, 4], &mut memory),
        SUCCESS
    );
    assert_eq!(&memory[..8], [0; 8]);
    // Empty regions: any pointers will do.
    let wild = u64::from(u32::MAX);
    assert_eq!(
        call(&mut w, Func::ArgsGet, &[wild, wild], &mut memory),
        SUCCESS
    );
    assert_eq!(&memory[8..], [0xee; 8]);
}

#[test]
fn args_outside_memory_are_a_fault_that_writes_nothing() {
    let mut w = wasi();
    let mut memory = vec![0xee; 64];
    // The strings (11 bytes) would end one byte past the memory.
    assert_eq!(call(&mut w, Func::ArgsGet, &[0, 54], &mut memory), FAULT);
    // The pointers (12 bytes) would.
    assert_eq!(call(&mut w, Func::ArgsGet, &[53, 0], &mut memory), FAULT);
    assert_eq!(
        call(
            &mut w,
            Func::ArgsGet,
            &[u64::from(u32::MAX), 0],
            &mut memory
        ),
        FAULT
    );
    assert_eq!(
        call(&mut w, Func::ArgsSizesGet, &[0, 61], &mut memory),
        FAULT
    );
    assert_eq!(
        call(&mut w, Func::ArgsSizesGet, &[61, 0], &mut memory),
        FAULT
    );
    assert_eq!(memory, [0xee; 64]);
    assert_eq!(call(&mut w, Func::ArgsGet, &[0, 53], &mut memory), SUCCESS);
    assert_eq!(&memory[53..], b"kernel\0ab\0\0");
}

#[test]
fn a_nul_in_an_argument_is_refused_up_front() {
    let config = TaskConfig {
        args: vec![b"a\0".to_vec()],
        ..config()
    };
    assert!(Wasi::new(config).is_err());
}

#[test]
fn the_environment_is_empty() {
    let mut w = wasi();
    let mut memory = vec![0xee; 16];
    assert_eq!(
        call(&mut w, Func::EnvironSizesGet, &[0, 8], &mut memory),
        SUCCESS
    );
    assert_eq!(u32_at(&memory, 0), 0);
    assert_eq!(u32_at(&memory, 8), 0);
    assert_eq!(&memory[4..8], [0xee; 4]);
    let wild = u64::from(u32::MAX);
    assert_eq!(
        call(&mut w, Func::EnvironGet, &[wild, wild], &mut memory),
        SUCCESS
    );
    assert_eq!(
        call(&mut w, Func::EnvironSizesGet, &[0, 13], &mut memory),
        FAULT
    );
}

#[test]
fn stdin_is_read_in_order_across_iovecs_then_ends() {
    let mut w = wasi(); // stdin: "hello world"
    let mut memory = vec![0u8; 256];
    put_iovecs(&mut memory, 0, &[(100, 4), (120, 0), (140, 5)]);
    assert_eq!(
        call(&mut w, Func::FdRead, &[0, 0, 3, 40], &mut memory),
        SUCCESS
    );
    assert_eq!(u32_at(&memory, 40), 9);
    assert_eq!(&memory[100..105], b"hell\0");
    assert_eq!(&memory[140..146], b"o wor\0");
    // A short read: two bytes left of eight asked.
    put_iovecs(&mut memory, 0, &[(200, 8)]);
    assert_eq!(
        call(&mut w, Func::FdRead, &[0, 0, 1, 40], &mut memory),
        SUCCESS
    );
    assert_eq!(u32_at(&memory, 40), 2);
    assert_eq!(&memory[200..203], b"ld\0");
    // End of file, as many times as asked.
    for _ in 0..2 {
        memory[40] = 0xee;
        assert_eq!(
            call(&mut w, Func::FdRead, &[0, 0, 1, 40], &mut memory),
            SUCCESS
        );
        assert_eq!(u32_at(&memory, 40), 0);
    }
}

#[test]
fn a_read_over_its_own_iovecs_uses_the_list_as_it_was() {
    let mut w = wasi();
    let mut memory = vec![0u8; 64];
    // The first buffer covers the list itself; the second iovec still reads.
    put_iovecs(&mut memory, 0, &[(0, 8), (32, 3)]);
    assert_eq!(
        call(&mut w, Func::FdRead, &[0, 0, 2, 48], &mut memory),
        SUCCESS
    );
    assert_eq!(&memory[0..8], b"hello wo");
    assert_eq!(&memory[32..35], b"rld");
    assert_eq!(u32_at(&memory, 48), 11);
}

#[test]
fn reads_fault_whole_and_take_nothing_from_stdin() {
    let mut w = wasi();
    let mut memory = vec![0u8; 64];
    put_iovecs(&mut memory, 0, &[(16, 4), (60, 5)]);
    // The second buffer ends past the memory: not even the first is filled.
    assert_eq!(
        call(&mut w, Func::FdRead, &[0, 0, 2, 40], &mut memory),
        FAULT
    );
    assert_eq!(&memory[16..20], [0; 4]);
    // The list ends past the memory.
    assert_eq!(
        call(&mut w, Func::FdRead, &[0, 60, 1, 40], &mut memory),
        FAULT
    );
    // The count of bytes read would land past the memory.
    assert_eq!(
        call(&mut w, Func::FdRead, &[0, 0, 1, 61], &mut memory),
        FAULT
    );
    assert_eq!(&memory[16..20], [0; 4]);
    assert_eq!(
        call(&mut w, Func::FdRead, &[0, 0, 1, 40], &mut memory),
        SUCCESS
    );
    assert_eq!(&memory[16..20], b"hell", "stdin from its start");
    assert_eq!(
        call(
            &mut w,
            Func::FdRead,
            &[0, 0, u64::from(u32::MAX), 40],
            &mut memory
        ),
        INVAL
    );
}

#[test]
fn of_the_streams_only_fd_0_reads() {
    let mut w = wasi();
    let mut memory = vec![0u8; 64];
    put_iovecs(&mut memory, 0, &[(16, 4)]);
    for fd in [1, 2, 4, u64::from(u32::MAX)] {
        assert_eq!(
            call(&mut w, Func::FdRead, &[fd, 0, 1, 40], &mut memory),
            BADF,
            "fd {fd}"
        );
    }
    // fd 3 is /data, a directory.
    assert_eq!(
        call(&mut w, Func::FdRead, &[3, 0, 1, 40], &mut memory),
        ISDIR
    );
    assert_eq!(&memory[16..20], [0; 4]);
}

#[test]
fn writes_gather_iovecs_in_order() {
    let mut w = Wasi::new(TaskConfig {
        limits: WasmLimits::DEFAULT,
        ..config()
    })
    .unwrap();
    let mut memory = vec![0u8; 128];
    memory[64..69].copy_from_slice(b"hello");
    memory[80..87].copy_from_slice(b" world\n");
    put_iovecs(&mut memory, 0, &[(64, 5), (99, 0), (80, 7)]);
    assert_eq!(
        call(&mut w, Func::FdWrite, &[1, 0, 3, 40], &mut memory),
        SUCCESS
    );
    assert_eq!(u32_at(&memory, 40), 12);
    put_iovecs(&mut memory, 0, &[(64, 4)]);
    assert_eq!(
        call(&mut w, Func::FdWrite, &[2, 0, 1, 40], &mut memory),
        SUCCESS
    );
    assert_eq!(u32_at(&memory, 40), 4);
    assert_eq!(
        call(&mut w, Func::FdWrite, &[1, 0, 0, 40], &mut memory),
        SUCCESS
    );
    assert_eq!(u32_at(&memory, 40), 0);
    let (stdout, stderr) = w.finish();
    assert_eq!(stdout, b"hello world\n");
    assert_eq!(stderr, b"hell");
}

#[test]
fn stdout_past_its_limit_stops_the_run_with_exactly_the_limit_kept() {
    let mut w = wasi(); // stdout_bytes: 10
    let mut memory = vec![0u8; 128];
    memory[64..74].copy_from_slice(b"0123456789");
    put_iovecs(&mut memory, 0, &[(64, 6)]);
    assert_eq!(
        call(&mut w, Func::FdWrite, &[1, 0, 1, 40], &mut memory),
        SUCCESS
    );
    // 6 + 3 fits, the second iovec's fourth byte would be the eleventh.
    put_iovecs(&mut memory, 0, &[(64, 3), (70, 4)]);
    memory[40..44].fill(0xee);
    assert_eq!(
        w.call(Func::FdWrite, &[1, 0, 2, 40], &mut memory),
        Err(Stop::OutputLimit)
    );
    assert_eq!(
        &memory[40..44],
        [0xee; 4],
        "no count for a write that stops"
    );
    let (stdout, _) = w.finish();
    assert_eq!(stdout, b"0123450126");
}

#[test]
fn stdout_may_reach_its_limit_exactly() {
    let mut w = wasi();
    let mut memory = vec![0u8; 128];
    put_iovecs(&mut memory, 0, &[(64, 10)]);
    assert_eq!(
        call(&mut w, Func::FdWrite, &[1, 0, 1, 40], &mut memory),
        SUCCESS
    );
    put_iovecs(&mut memory, 0, &[(64, 0)]);
    assert_eq!(
        call(&mut w, Func::FdWrite, &[1, 0, 1, 40], &mut memory),
        SUCCESS
    );
    put_iovecs(&mut memory, 0, &[(64, 1)]);
    assert_eq!(
        w.call(Func::FdWrite, &[1, 0, 1, 40], &mut memory),
        Err(Stop::OutputLimit)
    );
    assert_eq!(w.finish().0.len(), 10);
}

#[test]
fn stderr_is_cut_at_its_cap_and_reports_every_byte() {
    let mut w = wasi(); // stderr_bytes: 4
    let mut memory = vec![0u8; 128];
    memory[64..70].copy_from_slice(b"abcdef");
    put_iovecs(&mut memory, 0, &[(64, 3), (67, 3)]);
    assert_eq!(
        call(&mut w, Func::FdWrite, &[2, 0, 2, 40], &mut memory),
        SUCCESS
    );
    assert_eq!(u32_at(&memory, 40), 6);
    assert_eq!(
        call(&mut w, Func::FdWrite, &[2, 0, 2, 40], &mut memory),
        SUCCESS
    );
    assert_eq!(u32_at(&memory, 40), 6);
    let (stdout, stderr) = w.finish();
    assert_eq!(stderr, b"abcd");
    assert!(stdout.is_empty());
}

#[test]
fn writes_to_bad_fds_or_from_bad_memory_do_nothing() {
    let mut w = wasi();
    let mut memory = vec![0u8; 64];
    put_iovecs(&mut memory, 0, &[(16, 4)]);
    for fd in [0, 3, u64::from(u32::MAX)] {
        assert_eq!(
            call(&mut w, Func::FdWrite, &[fd, 0, 1, 40], &mut memory),
            BADF
        );
    }
    put_iovecs(&mut memory, 8, &[(16, 4), (62, 4)]);
    for fd in [1, 2] {
        // A buffer, the list, the count's place outside memory.
        assert_eq!(
            call(&mut w, Func::FdWrite, &[fd, 8, 2, 40], &mut memory),
            FAULT
        );
        assert_eq!(
            call(&mut w, Func::FdWrite, &[fd, 60, 1, 40], &mut memory),
            FAULT
        );
        assert_eq!(
            call(&mut w, Func::FdWrite, &[fd, 0, 1, 61], &mut memory),
            FAULT
        );
        let far = u64::from(u32::MAX);
        assert_eq!(
            call(&mut w, Func::FdWrite, &[fd, far, 1, 40], &mut memory),
            FAULT
        );
        assert_eq!(
            call(&mut w, Func::FdWrite, &[fd, 0, 1025, 40], &mut memory),
            INVAL
        );
    }
    assert_eq!(w.finish(), (Vec::new(), Vec::new()));
}

#[test]
fn hostile_counts_and_lengths_cost_only_the_bytes_moved() {
    let limits = WasmLimits {
        stdout_bytes: 1 << 20,
        stderr_bytes: 4096,
        ..WasmLimits::DEFAULT
    };
    let mut w = Wasi::new(TaskConfig { limits, ..config() }).unwrap();
    // A memory grown to 4 GiB; iovecs at 0, the count at 64.
    let mut front = vec![0u8; 128];
    let three_gib = 3 << 30;
    put_iovecs(&mut front, 0, &[(1 << 30, three_gib), (1 << 30, three_gib)]);
    let mut memory = SparseMemory::new(FOUR_GIB, front);

    // A count in the billions is refused before reading one iovec.
    assert_eq!(
        w.call(Func::FdWrite, &[1, 0, u64::from(u32::MAX), 64], &mut memory),
        Ok(INVAL)
    );
    assert_eq!(
        w.call(Func::FdRead, &[0, 0, 1 << 31, 64], &mut memory),
        Ok(INVAL)
    );
    assert_eq!(memory.bytes_read.get(), 0);

    // 6 GiB in two overlapping buffers: more than a u32 count can say.
    assert_eq!(
        w.call(Func::FdWrite, &[2, 0, 2, 64], &mut memory),
        Ok(INVAL)
    );

    // 3 GiB to stderr: the cap is copied, every byte is reported.
    memory.bytes_read.set(0);
    assert_eq!(
        w.call(Func::FdWrite, &[2, 0, 1, 64], &mut memory),
        Ok(SUCCESS)
    );
    assert_eq!(u32_at(&memory.front, 64), three_gib);
    assert!(
        memory.bytes_read.get() < 8192,
        "{} bytes read",
        memory.bytes_read.get()
    );

    // 3 GiB to stdout: the limit is copied, then the run stops.
    memory.bytes_read.set(0);
    assert_eq!(
        w.call(Func::FdWrite, &[1, 0, 1, 64], &mut memory),
        Err(Stop::OutputLimit)
    );
    assert!(memory.bytes_read.get() < (1 << 20) + 4096);

    // 4 GiB - 1 random bytes at 2: one byte past the end, refused before
    // a byte is made.
    memory.bytes_read.set(0);
    assert_eq!(
        w.call(Func::RandomGet, &[2, u64::from(u32::MAX)], &mut memory),
        Ok(FAULT)
    );
    assert!(memory.bytes_read.get() <= 1);

    let (stdout, stderr) = w.finish();
    assert_eq!(stdout.len(), 1 << 20);
    assert_eq!(stderr.len(), 4096);
}

#[test]
fn the_most_iovecs_a_call_may_pass_is_1024() {
    let mut w = wasi();
    let mut memory = vec![0u8; 1025 * 8 + 8];
    let count_at = 1025 * 8;
    assert_eq!(
        call(&mut w, Func::FdWrite, &[1, 0, 1024, count_at], &mut memory),
        SUCCESS
    );
    assert_eq!(
        call(&mut w, Func::FdWrite, &[1, 0, 1025, count_at], &mut memory),
        INVAL
    );
}

#[test]
fn closed_streams_are_bad_fds_for_everything() {
    let mut w = wasi();
    let mut memory = vec![0u8; 64];
    put_iovecs(&mut memory, 0, &[(16, 1)]);
    for fd in [0, 1, 2] {
        assert_eq!(call(&mut w, Func::FdClose, &[fd], &mut memory), SUCCESS);
        assert_eq!(call(&mut w, Func::FdClose, &[fd], &mut memory), BADF);
        assert_eq!(
            call(&mut w, Func::FdFdstatGet, &[fd, 24], &mut memory),
            BADF
        );
        assert_eq!(
            call(&mut w, Func::FdSeek, &[fd, 0, 0, 24], &mut memory),
            BADF
        );
        assert_eq!(
            call(&mut w, Func::FdPrestatGet, &[fd, 24], &mut memory),
            BADF
        );
    }
    assert_eq!(
        call(&mut w, Func::FdRead, &[0, 0, 1, 40], &mut memory),
        BADF
    );
    assert_eq!(
        call(&mut w, Func::FdWrite, &[1, 0, 1, 40], &mut memory),
        BADF
    );
    assert_eq!(
        call(&mut w, Func::FdWrite, &[2, 0, 1, 40], &mut memory),
        BADF
    );
    assert_eq!(call(&mut w, Func::FdClose, &[4], &mut memory), BADF);
    assert_eq!(&memory[16..], [0; 48]);
}

#[test]
fn fdstat_describes_the_three_streams() {
    let mut w = wasi();
    let mut memory = vec![0xee; 64];
    let stat = |rights: u8| {
        let mut bytes = [0u8; 24];
        bytes[0] = 2; // character device
        bytes[8] = rights;
        bytes
    };
    assert_eq!(
        call(&mut w, Func::FdFdstatGet, &[0, 8], &mut memory),
        SUCCESS
    );
    assert_eq!(memory[8..32], stat(1 << 1), "fd_read");
    assert_eq!(
        call(&mut w, Func::FdFdstatGet, &[1, 8], &mut memory),
        SUCCESS
    );
    assert_eq!(memory[8..32], stat(1 << 6), "fd_write");
    assert_eq!(
        call(&mut w, Func::FdFdstatGet, &[2, 8], &mut memory),
        SUCCESS
    );
    assert_eq!(memory[8..32], stat(1 << 6), "fd_write");
    assert_eq!(&memory[..8], [0xee; 8]);
    assert_eq!(&memory[32..], [0xee; 32]);
    assert_eq!(call(&mut w, Func::FdFdstatGet, &[4, 8], &mut memory), BADF);
    assert_eq!(
        call(&mut w, Func::FdFdstatGet, &[1, 41], &mut memory),
        FAULT
    );
    assert_eq!(&memory[41..], [0xee; 23]);
}

#[test]
fn the_streams_are_not_preopened() {
    let mut w = wasi();
    let mut memory = vec![0xee; 64];
    for fd in [0, 1, 2, 4, u64::from(u32::MAX)] {
        assert_eq!(
            call(&mut w, Func::FdPrestatGet, &[fd, 0], &mut memory),
            BADF
        );
        assert_eq!(
            call(&mut w, Func::FdPrestatDirName, &[fd, 0, 64], &mut memory),
            BADF
        );
    }
    assert_eq!(memory, [0xee; 64]);
}

#[test]
fn the_streams_do_not_seek() {
    let mut w = wasi();
    let mut memory = vec![0xee; 16];
    for fd in [0, 1, 2] {
        assert_eq!(
            call(&mut w, Func::FdSeek, &[fd, 5, 0, 0], &mut memory),
            SPIPE
        );
    }
    assert_eq!(call(&mut w, Func::FdSeek, &[4, 0, 0, 0], &mut memory), BADF);
    assert_eq!(memory, [0xee; 16]);
}

#[test]
fn clocks_have_a_microsecond_resolution() {
    let mut w = wasi();
    let mut memory = vec![0xee; 16];
    for id in 0..4 {
        assert_eq!(
            call(&mut w, Func::ClockResGet, &[id, 8], &mut memory),
            SUCCESS
        );
        assert_eq!(u64_at(&memory, 8), 1000);
    }
    for id in [4, 5, u64::from(u32::MAX)] {
        assert_eq!(
            call(&mut w, Func::ClockResGet, &[id, 0], &mut memory),
            INVAL
        );
    }
    assert_eq!(call(&mut w, Func::ClockResGet, &[0, 9], &mut memory), FAULT);
    assert_eq!(&memory[..8], [0xee; 8]);
}

#[test]
fn every_clock_read_advances_time_by_a_microsecond() {
    let mut w = wasi();
    let mut memory = vec![0u8; 16];
    let mut read = |w: &mut Wasi, id: u64| {
        assert_eq!(
            call(w, Func::ClockTimeGet, &[id, 1, 8], &mut memory),
            SUCCESS
        );
        u64_at(&memory, 8)
    };
    assert_eq!(read(&mut w, 1), 0);
    assert_eq!(read(&mut w, 0), REALTIME_START_NS + 1000);
    assert_eq!(read(&mut w, 1), 2000);
    assert_eq!(read(&mut w, 2), 3000);
    assert_eq!(read(&mut w, 3), 4000);
    let mut scratch = vec![0u8; 16];
    // Failed reads do not count.
    assert_eq!(
        call(&mut w, Func::ClockTimeGet, &[4, 0, 0], &mut scratch),
        INVAL
    );
    assert_eq!(
        call(&mut w, Func::ClockTimeGet, &[1, 0, 9], &mut scratch),
        FAULT
    );
    assert_eq!(read(&mut w, 1), 5000);
    assert_eq!(REALTIME_START_NS, 1_767_225_600_000_000_000);
}

#[test]
fn random_bytes_are_the_seeds_stream_continued_across_calls() {
    let seed = config().seed;
    let mut expected = vec![0u8; 40];
    ChaCha8Rng::from_seed(seed).fill_bytes(&mut expected);

    let mut w = wasi();
    let mut memory = vec![0u8; 64];
    assert_eq!(call(&mut w, Func::RandomGet, &[0, 3], &mut memory), SUCCESS);
    assert_eq!(call(&mut w, Func::RandomGet, &[3, 0], &mut memory), SUCCESS);
    assert_eq!(call(&mut w, Func::RandomGet, &[60, 5], &mut memory), FAULT);
    assert_eq!(
        call(&mut w, Func::RandomGet, &[3, 37], &mut memory),
        SUCCESS
    );
    assert_eq!(&memory[..40], expected);
    assert_eq!(&memory[40..], [0; 24]);

    // The same seed gives the same bytes; another seed, others.
    let mut again = vec![0u8; 64];
    assert_eq!(
        call(&mut wasi(), Func::RandomGet, &[0, 40], &mut again),
        SUCCESS
    );
    assert_eq!(again[..40], expected);
    let mut other = Wasi::new(TaskConfig {
        seed: random_seed(1, &[7; 32], 1),
        ..config()
    })
    .unwrap();
    assert_eq!(
        call(&mut other, Func::RandomGet, &[0, 40], &mut again),
        SUCCESS
    );
    assert_ne!(again[..40], expected);
}

#[test]
fn sched_yield_succeeds_and_proc_exit_stops() {
    let mut w = wasi();
    let mut memory = Vec::new();
    assert_eq!(call(&mut w, Func::SchedYield, &[], &mut memory), SUCCESS);
    assert_eq!(
        w.call(Func::ProcExit, &[3], &mut memory),
        Err(Stop::Exit(3))
    );
    // An i32 of -1 arrives as its u32 bits.
    let minus_one = u64::from(u32::MAX);
    assert_eq!(
        w.call(Func::ProcExit, &[minus_one], &mut memory),
        Err(Stop::Exit(-1))
    );
    assert_eq!(Stop::Exit(-1).exit_code(), -1);
    assert_eq!(Stop::Exit(3).trap(), None);
    assert_eq!(Stop::OutputLimit.trap(), Some(Trap::OutputLimit));
    assert_eq!(Stop::OutputLimit.exit_code(), 0);
}

#[test]
fn only_the_low_32_bits_of_an_i32_argument_count() {
    let mut w = wasi();
    let mut memory = vec![0u8; 32];
    let high = 0xdead_beef_0000_0000u64;
    assert_eq!(
        call(&mut w, Func::ArgsSizesGet, &[high, high | 4], &mut memory),
        SUCCESS
    );
    assert_eq!(u32_at(&memory, 0), 3);
    assert_eq!(
        call(&mut w, Func::FdClose, &[high | 1], &mut memory),
        SUCCESS
    );
    assert_eq!(call(&mut w, Func::FdClose, &[1], &mut memory), BADF);
}

#[test]
fn runtimes_pass_a_slice_or_a_trait_object() {
    let mut w = wasi();
    let mut backing = vec![0u8; 16];
    // The native runtime: the instance's memory as a slice.
    let slice: &mut [u8] = &mut backing;
    assert_eq!(w.call(Func::ArgsSizesGet, &[0, 4], slice), Ok(SUCCESS));
    // The browser: its own `Memory` behind a trait object.
    let object: &mut dyn Memory = &mut backing;
    assert_eq!(w.call(Func::ClockResGet, &[0, 8], object), Ok(SUCCESS));
    assert_eq!(u32_at(&backing, 0), 3);
    assert_eq!(u64_at(&backing, 8), 1000);
}

#[test]
fn the_property_tests_pass_enough_arguments_for_any_function() {
    let most = Func::ALL.iter().map(|f| f.import().params.len()).max();
    assert_eq!(most, Some(MAX_ARGS));
}

#[test]
#[should_panic(expected = "fd_write takes 4 arguments")]
fn a_runtime_that_passes_the_wrong_arguments_is_a_bug() {
    let _ = wasi().call(Func::FdWrite, &[1, 0], &mut Vec::new());
}

/// An argument that is small, at the edge of the address space, or wild.
fn arg() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..300,
        Just(u64::from(u32::MAX)),
        (0u64..16).prop_map(|d| u64::from(u32::MAX) - d),
        (0u64..4).prop_map(|d| (1u64 << 31) + d),
        any::<u64>(),
    ]
}

/// The most arguments a function takes (`path_open`'s 9).
const MAX_ARGS: usize = 9;

fn calls() -> impl Strategy<Value = Vec<(usize, Vec<u64>)>> {
    let call = (0..Func::ALL.len(), prop::collection::vec(arg(), MAX_ARGS));
    prop::collection::vec(call, 1..64)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Random calls with random arguments on a small memory (itself full of
    /// random bytes, so iovecs point anywhere) never panic, every result is
    /// a WASI errno, a call that fails leaves the memory as it was, and the
    /// limits hold.
    #[test]
    fn random_calls_never_panic(
        calls in calls(),
        initial in prop::collection::vec(any::<u8>(), 256),
    ) {
        let mut w = wasi();
        let mut memory = initial;
        for (index, args) in calls {
            let func = Func::from_index(index).unwrap();
            let args = &args[..func.import().params.len()];
            let before = memory.clone();
            match w.call(func, args, &mut memory) {
                Ok(errno) => {
                    prop_assert!(Errno::from_code(errno).is_some(), "{errno}");
                    if errno != SUCCESS {
                        prop_assert_eq!(&memory, &before, "{} failed with {}", func.name(), errno);
                    }
                }
                Err(Stop::Exit(_) | Stop::OutputLimit | Stop::OutOfFuel) => break,
            }
            prop_assert_eq!(memory.len(), 256);
            prop_assert!(w.host_fuel() <= WasmLimits::DEFAULT.fuel);
        }
        let (stdout, stderr) = w.finish();
        prop_assert!(stdout.len() <= 10);
        prop_assert!(stderr.len() <= 4);
    }

    /// Two runs given the same calls agree on every result and every byte.
    #[test]
    fn the_same_calls_give_the_same_answers(
        calls in calls(),
        initial in prop::collection::vec(any::<u8>(), 256),
    ) {
        let run = |initial: &[u8]| {
            let mut w = wasi();
            let mut memory = initial.to_vec();
            let mut results = Vec::new();
            for (index, args) in &calls {
                let func = Func::from_index(*index).unwrap();
                let args = &args[..func.import().params.len()];
                let result = w.call(func, args, &mut memory);
                results.push(result);
                if result.is_err() {
                    break;
                }
            }
            (results, memory, w.finish())
        };
        prop_assert_eq!(run(&initial), run(&initial));
    }
}
