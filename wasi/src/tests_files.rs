//! The functions of `/data` as a kernel sees them, through [`Wasi::call`]
//! on a `Vec<u8>` memory: the preopen, `path_open` with the rights Rust's
//! std and wasi-libc ask for (taken from their calls, traced under Node),
//! every errno in the order the crate's header gives, reads, seeks and
//! listings byte for byte, the fuel reads cost, and two property tests:
//! random seeks and reads agree with a `std::io::Cursor` over the same
//! bytes, and a call that fails changes nothing.
//!
//! Expected bytes are written out by hand from the WASI ABI, not made with
//! this crate's helpers.

use std::io::{Cursor, Read, Seek, SeekFrom};

use bytes::Bytes;
use grid_kernels::wasm::WasmLimits;
use proptest::prelude::*;

use crate::tests::{FOUR_GIB, SparseMemory, call, put_iovecs, u32_at, u64_at};
use crate::{DataFile, Func, MAX_OPEN_FDS, PATH_MAX, Stop, TaskConfig, Wasi};

const SUCCESS: u32 = 0;
const BADF: u32 = 8;
const FAULT: u32 = 21;
const INVAL: u32 = 28;
const ISDIR: u32 = 31;
const MFILE: u32 = 33;
const NAMETOOLONG: u32 = 37;
const NOENT: u32 = 44;
const NOTDIR: u32 = 54;
const PERM: u32 = 63;
const SPIPE: u32 = 70;

/// `fd_read`, `fd_seek`, `fd_tell`, `fd_advise`, `fd_filestat_get`.
const FILE_RIGHTS: u64 = (1 << 1) | (1 << 2) | (1 << 5) | (1 << 7) | (1 << 21);
/// `path_open`, `fd_readdir`, `path_filestat_get`, `fd_filestat_get`.
const DIR_RIGHTS: u64 = (1 << 13) | (1 << 14) | (1 << 18) | (1 << 21);
/// What Rust's `File::open` asked for, base and inheriting, in
/// examples/slicehash under Node: every right but `fd_datasync`,
/// `fd_write`, `fd_allocate`, `fd_filestat_set_size` and the two socket
/// rights; and every right of the first 28.
const STD_READ_BASE: u64 = 264_240_830;
const STD_READ_INHERITING: u64 = 268_435_455;
/// wasi-libc's `openat` for `O_RDONLY` asks for this, masked by the
/// directory's inheriting rights, and passes those on.
const LIBC_RDONLY_MAX: u64 =
    !(1 | (1 << 6) | (1 << 8) | (1 << 14) | (1 << 22)) | (1 << 1) | (1 << 14);

/// `data.bin`: 1000 bytes, `i % 251`; `empty`; `hello.txt`.
fn files() -> Vec<DataFile> {
    vec![
        DataFile {
            name: "data.bin".into(),
            bytes: (0..1000u32).map(|i| (i % 251) as u8).collect(),
        },
        DataFile {
            name: "empty".into(),
            bytes: Bytes::new(),
        },
        DataFile {
            name: "hello.txt".into(),
            bytes: Bytes::from_static(b"hello world\n"),
        },
    ]
}

fn config(files: Vec<DataFile>, fuel: u64) -> TaskConfig {
    TaskConfig {
        args: vec![b"kernel".to_vec()],
        stdin: b"stdin".to_vec(),
        seed: [0; 32],
        limits: WasmLimits {
            fuel,
            ..WasmLimits::DEFAULT
        },
        files,
    }
}

fn wasi() -> Wasi {
    Wasi::new(config(files(), WasmLimits::DEFAULT.fuel)).unwrap()
}

/// Where tests put a path, the iovecs, and results.
const PATH_AT: usize = 600;
const IOVS_AT: usize = 0;
const OUT_AT: usize = 64;

/// `path_open(dirfd, 1, path, oflags, base, inheriting, fdflags, fd_out)`
/// with the path written at [`PATH_AT`] and the fd to [`OUT_AT`].
#[allow(clippy::too_many_arguments)]
fn open_with(
    w: &mut Wasi,
    memory: &mut Vec<u8>,
    dirfd: u32,
    path: &[u8],
    oflags: u32,
    base: u64,
    inheriting: u64,
    fdflags: u32,
) -> u32 {
    memory[PATH_AT..PATH_AT + path.len()].copy_from_slice(path);
    call(
        w,
        Func::PathOpen,
        &[
            dirfd.into(),
            1,
            PATH_AT as u64,
            path.len() as u64,
            oflags.into(),
            base,
            inheriting,
            fdflags.into(),
            OUT_AT as u64,
        ],
        memory,
    )
}

/// Opens `path` in `/data` as Rust's `File::open` does; the fd.
fn open(w: &mut Wasi, memory: &mut Vec<u8>, path: &str) -> u32 {
    let errno = open_with(
        w,
        memory,
        3,
        path.as_bytes(),
        0,
        STD_READ_BASE,
        STD_READ_INHERITING,
        0,
    );
    assert_eq!(errno, SUCCESS, "opening {path}");
    u32_at(memory, OUT_AT)
}

/// `fd_read(fd)` into buffers of these lengths at 200, 200 + the first's
/// length, ...; the count and the bytes.
fn read(w: &mut Wasi, memory: &mut Vec<u8>, fd: u32, lens: &[u32]) -> (u32, Vec<u8>) {
    read_with(w, memory, Func::FdRead, fd, lens, None)
}

fn pread(w: &mut Wasi, memory: &mut Vec<u8>, fd: u32, lens: &[u32], offset: u64) -> (u32, Vec<u8>) {
    read_with(w, memory, Func::FdPread, fd, lens, Some(offset))
}

fn read_with(
    w: &mut Wasi,
    memory: &mut Vec<u8>,
    func: Func,
    fd: u32,
    lens: &[u32],
    offset: Option<u64>,
) -> (u32, Vec<u8>) {
    let mut at = 200u32;
    let iovecs: Vec<(u32, u32)> = lens
        .iter()
        .map(|&len| {
            let iovec = (at, len);
            at += len;
            iovec
        })
        .collect();
    put_iovecs(memory, IOVS_AT, &iovecs);
    let count = lens.len() as u64;
    let args: Vec<u64> = match offset {
        None => vec![fd.into(), IOVS_AT as u64, count, OUT_AT as u64],
        Some(offset) => vec![fd.into(), IOVS_AT as u64, count, offset, OUT_AT as u64],
    };
    let errno = call(w, func, &args, memory);
    assert_eq!(errno, SUCCESS, "{} of fd {fd}", func.name());
    let n = u32_at(memory, OUT_AT);
    (n, memory[200..200 + n as usize].to_vec())
}

/// `fd_seek(fd, offset, whence)`: the errno and the new offset.
fn seek(w: &mut Wasi, memory: &mut Vec<u8>, fd: u32, offset: i64, whence: u32) -> (u32, u64) {
    memory[OUT_AT..OUT_AT + 8].fill(0xee);
    let errno = call(
        w,
        Func::FdSeek,
        &[fd.into(), offset as u64, whence.into(), OUT_AT as u64],
        memory,
    );
    (errno, u64_at(memory, OUT_AT))
}

fn tell(w: &mut Wasi, memory: &mut Vec<u8>, fd: u32) -> u64 {
    assert_eq!(
        call(w, Func::FdTell, &[fd.into(), OUT_AT as u64], memory),
        SUCCESS
    );
    u64_at(memory, OUT_AT)
}

fn fdstat(w: &mut Wasi, memory: &mut Vec<u8>, fd: u32) -> (u8, u16, u64, u64) {
    assert_eq!(
        call(w, Func::FdFdstatGet, &[fd.into(), OUT_AT as u64], memory),
        SUCCESS
    );
    let flags = u16::from_le_bytes([memory[OUT_AT + 2], memory[OUT_AT + 3]]);
    (
        memory[OUT_AT],
        flags,
        u64_at(memory, OUT_AT + 8),
        u64_at(memory, OUT_AT + 16),
    )
}

/// A filestat written out by hand: dev, ino, filetype, nlink, size; the
/// times 0.
fn filestat(dev: u8, ino: u8, filetype: u8, nlink: u8, size: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; 64];
    bytes[0] = dev;
    bytes[8] = ino;
    bytes[16] = filetype;
    bytes[24] = nlink;
    bytes[32..40].copy_from_slice(&size.to_le_bytes());
    bytes
}

/// A dirent and its name, written out by hand.
fn dirent(next: u8, ino: u8, name: &[u8], filetype: u8) -> Vec<u8> {
    let mut bytes = vec![0u8; 24];
    bytes[0] = next;
    bytes[8] = ino;
    bytes[16] = name.len() as u8;
    bytes[20] = filetype;
    bytes.extend_from_slice(name);
    bytes
}

// --- the preopen --------------------------------------------------------------

#[test]
fn data_is_preopened_at_fd_3_even_with_no_files() {
    for files in [files(), Vec::new()] {
        let mut w = Wasi::new(config(files, 1000)).unwrap();
        let mut memory = vec![0xee; 64];
        assert_eq!(
            call(&mut w, Func::FdPrestatGet, &[3, 8], &mut memory),
            SUCCESS
        );
        // tag 0 (dir), padding, name length 5.
        assert_eq!(memory[8..16], [0, 0, 0, 0, 5, 0, 0, 0]);
        assert_eq!(
            call(&mut w, Func::FdPrestatDirName, &[3, 32, 5], &mut memory),
            SUCCESS
        );
        assert_eq!(&memory[32..37], b"/data");
        assert_eq!(memory[37], 0xee, "no NUL");
        // A longer buffer gets the same five bytes, and only them.
        assert_eq!(
            call(&mut w, Func::FdPrestatDirName, &[3, 40, 20], &mut memory),
            SUCCESS
        );
        assert_eq!(&memory[40..45], b"/data");
        assert_eq!(memory[45..60], [0xee; 15]);
        assert_eq!(
            call(&mut w, Func::FdPrestatDirName, &[3, 59, 5], &mut memory),
            SUCCESS,
            "the last five bytes of memory"
        );
        assert_eq!(
            call(&mut w, Func::FdFdstatGet, &[3, 0], &mut memory),
            SUCCESS
        );
        assert_eq!(memory[0], 3, "a directory");
    }
}

#[test]
fn only_fd_3_is_a_preopen_and_its_errors_change_nothing() {
    let mut w = wasi();
    let mut memory = vec![0xee; 1024];
    let file = open(&mut w, &mut memory, "hello.txt");
    let dir = {
        assert_eq!(
            open_with(&mut w, &mut memory, 3, b".", 2, DIR_RIGHTS, 0, 0),
            SUCCESS
        );
        u32_at(&memory, OUT_AT)
    };
    let before = memory.clone();
    for fd in [0, 1, 2, file, dir, 99, u32::MAX] {
        let fd = u64::from(fd);
        assert_eq!(
            call(&mut w, Func::FdPrestatGet, &[fd, 8], &mut memory),
            BADF
        );
        assert_eq!(
            call(&mut w, Func::FdPrestatDirName, &[fd, 8, 5], &mut memory),
            BADF
        );
    }
    // The name's buffer too short, then outside the memory, whole.
    assert_eq!(
        call(&mut w, Func::FdPrestatDirName, &[3, 8, 4], &mut memory),
        NAMETOOLONG
    );
    assert_eq!(
        call(&mut w, Func::FdPrestatDirName, &[3, 8, 0], &mut memory),
        NAMETOOLONG
    );
    assert_eq!(
        call(&mut w, Func::FdPrestatDirName, &[3, 1020, 5], &mut memory),
        FAULT
    );
    assert_eq!(
        call(&mut w, Func::FdPrestatDirName, &[3, 1000, 100], &mut memory),
        FAULT,
        "the whole buffer is checked, not only the five bytes written"
    );
    assert_eq!(
        call(&mut w, Func::FdPrestatGet, &[3, 1017], &mut memory),
        FAULT
    );
    assert_eq!(memory, before);
    // Closed, it is no preopen; nothing else becomes one.
    assert_eq!(call(&mut w, Func::FdClose, &[3], &mut memory), SUCCESS);
    assert_eq!(call(&mut w, Func::FdPrestatGet, &[3, 8], &mut memory), BADF);
    assert_eq!(memory, before);
}

#[test]
fn preopens_are_found_the_way_wasi_libc_finds_them() {
    // wasi-libc and Rust's std call fd_prestat_get from fd 3 up until badf.
    let mut w = wasi();
    let mut memory = vec![0u8; 64];
    let mut found = Vec::new();
    for fd in 3u32.. {
        match call(&mut w, Func::FdPrestatGet, &[fd.into(), 0], &mut memory) {
            SUCCESS => {
                let len = u32_at(&memory, 4);
                let errno = call(
                    &mut w,
                    Func::FdPrestatDirName,
                    &[fd.into(), 16, len.into()],
                    &mut memory,
                );
                assert_eq!(errno, SUCCESS);
                found.push((fd, memory[16..16 + len as usize].to_vec()));
            }
            BADF => break,
            other => panic!("fd {fd}: errno {other}"),
        }
    }
    assert_eq!(found, [(3, b"/data".to_vec())]);
}

// --- opening -------------------------------------------------------------------

#[test]
fn the_rights_std_and_wasi_libc_ask_for_open_read_only_files() {
    let mut w = wasi();
    let mut memory = vec![0u8; 1024];
    let (filetype, flags, base, inheriting) = fdstat(&mut w, &mut memory, 3);
    assert_eq!((filetype, flags), (3, 0));
    assert_eq!(base, DIR_RIGHTS);
    assert_eq!(inheriting, DIR_RIGHTS | FILE_RIGHTS);

    // Rust's File::open: what the file cannot do is dropped.
    let std = open(&mut w, &mut memory, "hello.txt");
    assert_eq!(std, 4, "the lowest free fd");
    assert_eq!(fdstat(&mut w, &mut memory, std), (4, 0, FILE_RIGHTS, 0));

    // wasi-libc's fopen("r"): the directory's fdstat, then path_open.
    let libc_base = LIBC_RDONLY_MAX & inheriting;
    assert_eq!(
        open_with(
            &mut w,
            &mut memory,
            3,
            b"./data.bin",
            0,
            libc_base,
            inheriting,
            0
        ),
        SUCCESS
    );
    let libc = u32_at(&memory, OUT_AT);
    assert_eq!(libc, 5);
    assert_eq!(fdstat(&mut w, &mut memory, libc), (4, 0, FILE_RIGHTS, 0));

    // No rights at all, or unknown bits: still opens (rights are not
    // checked); non-blocking and the sync flags are kept, with no effect.
    assert_eq!(
        open_with(&mut w, &mut memory, 3, b"empty", 0, 0, 0, 0b1_1110),
        SUCCESS
    );
    let bare = u32_at(&memory, OUT_AT);
    assert_eq!(fdstat(&mut w, &mut memory, bare), (4, 0b1_1110, 0, 0));
    assert_eq!(
        open_with(&mut w, &mut memory, 3, b"empty", 0, !0 << 30, !0, 0),
        SUCCESS
    );
}

#[test]
fn new_fds_take_the_lowest_free_number_up_to_the_cap() {
    let mut w = wasi();
    let mut memory = vec![0u8; 1024];
    assert_eq!(open(&mut w, &mut memory, "data.bin"), 4);
    assert_eq!(open(&mut w, &mut memory, "data.bin"), 5);
    assert_eq!(call(&mut w, Func::FdClose, &[4], &mut memory), SUCCESS);
    assert_eq!(call(&mut w, Func::FdClose, &[0], &mut memory), SUCCESS);
    assert_eq!(
        open(&mut w, &mut memory, "empty"),
        0,
        "as POSIX: stdin's number"
    );
    assert_eq!(open(&mut w, &mut memory, "empty"), 4);
    // fd 0 is now the file: fd_read reads it.
    let (n, _) = read(&mut w, &mut memory, 0, &[10]);
    assert_eq!(n, 0);
    for fd in 6..MAX_OPEN_FDS {
        assert_eq!(open(&mut w, &mut memory, "hello.txt"), fd);
    }
    memory[OUT_AT..OUT_AT + 4].fill(0xee);
    let full = open_with(&mut w, &mut memory, 3, b"hello.txt", 0, STD_READ_BASE, 0, 0);
    assert_eq!(full, MFILE);
    assert_eq!(memory[OUT_AT..OUT_AT + 4], [0xee; 4]);
    assert_eq!(call(&mut w, Func::FdClose, &[77], &mut memory), SUCCESS);
    assert_eq!(open(&mut w, &mut memory, "hello.txt"), 77);
}

#[test]
fn the_directory_opens_as_itself() {
    let mut w = wasi();
    let mut memory = vec![0u8; 1024];
    for (path, oflags) in [(&b"."[..], 0), (b".", 2), (b"./", 2), (b".//.", 0)] {
        let errno = open_with(
            &mut w,
            &mut memory,
            3,
            path,
            oflags,
            STD_READ_BASE,
            STD_READ_INHERITING,
            0,
        );
        assert_eq!(errno, SUCCESS);
        let dir = u32_at(&memory, OUT_AT);
        assert_eq!(
            fdstat(&mut w, &mut memory, dir),
            (3, 0, DIR_RIGHTS, DIR_RIGHTS | FILE_RIGHTS)
        );
        // It opens files, and lists, as fd 3 does.
        let errno = open_with(&mut w, &mut memory, dir, b"empty", 0, 0, 0, 0);
        assert_eq!(errno, SUCCESS);
        let errno = call(
            &mut w,
            Func::FdReaddir,
            &[dir.into(), 200, 25, 0, OUT_AT as u64],
            &mut memory,
        );
        assert_eq!((errno, u32_at(&memory, OUT_AT)), (SUCCESS, 25));
        assert_eq!(memory[200..225], dirent(1, 1, b".", 3));
    }
}

/// A `path_open` that fails: dirfd, path, oflags, base rights, fdflags,
/// and the errno.
type OpenCase<'a> = (u32, &'a [u8], u32, u64, u32, u32);

#[test]
fn path_open_checks_in_the_documented_order_and_fails_whole() {
    let mut w = wasi();
    let mut memory = vec![0u8; 1024];
    let file = open(&mut w, &mut memory, "hello.txt"); // 4
    let before = memory.clone();
    // (dirfd, path, oflags, base, fdflags, expected), one check at a time,
    // each case also failing every later check it can.
    let long = vec![b'a'; PATH_MAX as usize + 1];
    let cases: &[OpenCase] = &[
        (99, b"../x", 1, 1 << 6, 1, BADF),
        (u32::MAX, b"hello.txt", 0, 0, 0, BADF),
        (0, b"hello.txt", 0, 0, 0, NOTDIR),
        (1, b"hello.txt", 0, 0, 0, NOTDIR),
        (file, b"hello.txt", 0, 0, 0, NOTDIR),
        (3, b"nope", 1 << 4, 1 << 6, 1, INVAL),
        (3, b"nope", 1 | (1 << 4), 0, 0, INVAL),
        (3, b"nope", 1, 0, 0, PERM),
        (3, b"hello.txt", 1, 0, 0, PERM),
        (3, b"hello.txt", 1 << 2, 0, 0, PERM),
        (3, b"hello.txt", 1 << 3, 0, 0, PERM),
        (3, b"hello.txt", 2 | 8, 0, 0, PERM),
        (3, b"nope", 0, 1, 1 << 5, PERM),
        (3, b"hello.txt", 0, 1 << 6, 0, PERM),
        (3, b"hello.txt", 0, 1 << 8, 0, PERM),
        (3, b"hello.txt", 0, 1 << 22, 0, PERM),
        (3, b"hello.txt", 0, u64::MAX, 0, PERM),
        (3, b"nope", 0, 0, 1 << 5, INVAL),
        (3, b"nope", 0, 0, 1 << 16, INVAL),
        (3, b"nope", 0, 0, 1, PERM),
        (3, b"", 0, 0, 0, NOENT),
        (3, b"nope", 0, 0, 0, NOENT),
        (3, b"HELLO.TXT", 0, 0, 0, NOENT),
        (3, b"hello.tx", 0, 0, 0, NOENT),
        (3, b"/data/hello.txt", 0, 0, 0, PERM),
        (3, b"/", 0, 0, 0, PERM),
        (3, b"..", 0, 0, 0, PERM),
        (3, b"../data/hello.txt", 0, 0, 0, PERM),
        (3, b"./..", 0, 0, 0, PERM),
        (3, b"hello.txt/", 0, 0, 0, NOTDIR),
        (3, b"hello.txt/.", 0, 0, 0, NOTDIR),
        (3, b"hello.txt/..", 0, 0, 0, NOTDIR),
        (3, b"hello.txt", 2, 0, 0, NOTDIR),
        (3, b"nope/..", 0, 0, 0, NOENT),
        (3, &[b'n'; 256], 0, 0, 0, NAMETOOLONG),
        (3, &long, 1, 0, 0, NAMETOOLONG),
    ];
    for &(dirfd, path, oflags, base, fdflags, expected) in cases {
        let mut memory = before.clone();
        let path_at = if path.len() > 300 { 0 } else { PATH_AT };
        let mut big = vec![0u8; 8192];
        let memory: &mut Vec<u8> = if path.len() > 300 {
            big[..path.len()].copy_from_slice(path);
            &mut big
        } else {
            memory[path_at..path_at + path.len()].copy_from_slice(path);
            &mut memory
        };
        let snapshot = memory.clone();
        let args = [
            dirfd.into(),
            1,
            path_at as u64,
            path.len() as u64,
            oflags.into(),
            base,
            0,
            fdflags.into(),
            OUT_AT as u64,
        ];
        assert_eq!(
            call(&mut w, Func::PathOpen, &args, memory),
            expected,
            "{:?} oflags {oflags:#x} rights {base:#x} fdflags {fdflags:#x}",
            String::from_utf8_lossy(path)
        );
        assert_eq!(*memory, snapshot);
    }
    // Lookup flags other than symlink_follow, after the dirfd.
    let mut args = [3, 2, PATH_AT as u64, 4, 1, 0, 0, 0, OUT_AT as u64];
    assert_eq!(call(&mut w, Func::PathOpen, &args, &mut memory), INVAL);
    args[0] = 99;
    assert_eq!(call(&mut w, Func::PathOpen, &args, &mut memory), BADF);
    args[0] = 3;
    args[1] = 0;
    // The path outside the memory: before the flags.
    args[2] = 1022;
    assert_eq!(call(&mut w, Func::PathOpen, &args, &mut memory), FAULT);
    args[2] = u64::from(u32::MAX);
    assert_eq!(call(&mut w, Func::PathOpen, &args, &mut memory), FAULT);
    // A path past PATH_MAX is refused before it is looked at.
    args[3] = u64::from(u32::MAX);
    assert_eq!(
        call(&mut w, Func::PathOpen, &args, &mut memory),
        NAMETOOLONG
    );
    assert_eq!(memory, before);
    // The fd's place outside the memory: after the flags, before the path
    // is resolved, and nothing is opened.
    memory[PATH_AT..PATH_AT + 4].copy_from_slice(b"nope");
    let before = memory.clone();
    let args = [3, 0, PATH_AT as u64, 4, 0, 0, 0, 0, 1021];
    assert_eq!(call(&mut w, Func::PathOpen, &args, &mut memory), FAULT);
    let args = [3, 0, PATH_AT as u64, 4, 1, 0, 0, 0, 1021];
    assert_eq!(call(&mut w, Func::PathOpen, &args, &mut memory), PERM);
    assert_eq!(memory, before);
    // Nothing failed took an fd.
    assert_eq!(open(&mut w, &mut memory, "empty"), 5);
}

// --- reading -------------------------------------------------------------------

#[test]
fn a_file_reads_from_its_offset_across_iovecs_to_its_end() {
    let mut w = wasi();
    let mut memory = vec![0u8; 1024];
    let fd = open(&mut w, &mut memory, "hello.txt");
    assert_eq!(
        read(&mut w, &mut memory, fd, &[4, 0, 3]),
        (7, b"hello w".to_vec())
    );
    assert_eq!(tell(&mut w, &mut memory, fd), 7);
    assert_eq!(
        read(&mut w, &mut memory, fd, &[2, 100]),
        (5, b"orld\n".to_vec())
    );
    assert_eq!(tell(&mut w, &mut memory, fd), 12);
    for _ in 0..2 {
        assert_eq!(read(&mut w, &mut memory, fd, &[8]), (0, Vec::new()));
    }
    assert_eq!(read(&mut w, &mut memory, fd, &[]), (0, Vec::new()));
    // Another fd of the same file has its own offset.
    let other = open(&mut w, &mut memory, "hello.txt");
    assert_eq!(
        read(&mut w, &mut memory, other, &[5]),
        (5, b"hello".to_vec())
    );
    // The empty file is at its end at once.
    let empty = open(&mut w, &mut memory, "empty");
    assert_eq!(read(&mut w, &mut memory, empty, &[5]), (0, Vec::new()));
    // stdin is not a file's: it is still all there.
    assert_eq!(read(&mut w, &mut memory, 0, &[10]), (5, b"stdin".to_vec()));
}

#[test]
fn seeks_set_cur_and_end_and_may_pass_the_end() {
    let mut w = wasi();
    let mut memory = vec![0u8; 1024];
    let fd = open(&mut w, &mut memory, "hello.txt"); // 12 bytes
    assert_eq!(seek(&mut w, &mut memory, fd, 6, 0), (SUCCESS, 6));
    assert_eq!(read(&mut w, &mut memory, fd, &[5]), (5, b"world".to_vec()));
    assert_eq!(seek(&mut w, &mut memory, fd, -5, 1), (SUCCESS, 6));
    assert_eq!(seek(&mut w, &mut memory, fd, -1, 2), (SUCCESS, 11));
    assert_eq!(read(&mut w, &mut memory, fd, &[5]), (1, b"\n".to_vec()));
    assert_eq!(seek(&mut w, &mut memory, fd, 0, 1), (SUCCESS, 12));
    // Past the end: allowed, and reads nothing.
    assert_eq!(seek(&mut w, &mut memory, fd, 100, 2), (SUCCESS, 112));
    assert_eq!(read(&mut w, &mut memory, fd, &[5]), (0, Vec::new()));
    assert_eq!(tell(&mut w, &mut memory, fd), 112);
    assert_eq!(
        seek(&mut w, &mut memory, fd, i64::MAX, 0),
        (SUCCESS, i64::MAX as u64)
    );
    assert_eq!(read(&mut w, &mut memory, fd, &[5]), (0, Vec::new()));
    // What fails leaves the offset, and the result's place, alone.
    assert_eq!(seek(&mut w, &mut memory, fd, 3, 0), (SUCCESS, 3));
    for (offset, whence) in [
        (-1, 0),
        (-4, 1),
        (-13, 2),
        (i64::MIN, 2),
        (i64::MAX, 1),
        (i64::MAX - 11, 2),
        (0, 3),
        (0, 256),
        (0, u32::MAX),
    ] {
        let (errno, place) = seek(&mut w, &mut memory, fd, offset, whence);
        assert_eq!(
            (errno, place),
            (INVAL, 0xeeee_eeee_eeee_eeee),
            "{offset} {whence}"
        );
    }
    assert_eq!(
        seek(&mut w, &mut memory, fd, i64::MAX - 12, 2),
        (SUCCESS, i64::MAX as u64)
    );
    assert_eq!(seek(&mut w, &mut memory, fd, 3, 0), (SUCCESS, 3));
    // The result's place outside the memory: checked after whence and the
    // new offset.
    let args = [fd.into(), 5, 0, 1017];
    assert_eq!(call(&mut w, Func::FdSeek, &args, &mut memory), FAULT);
    let args = [fd.into(), 5, 9, 1017];
    assert_eq!(call(&mut w, Func::FdSeek, &args, &mut memory), INVAL);
    assert_eq!(tell(&mut w, &mut memory, fd), 3);
    assert_eq!(
        call(&mut w, Func::FdTell, &[fd.into(), 1017], &mut memory),
        FAULT
    );
}

#[test]
fn pread_reads_at_an_offset_and_leaves_the_fds_offset() {
    let mut w = wasi();
    let mut memory = vec![0u8; 1024];
    let fd = open(&mut w, &mut memory, "hello.txt");
    assert_eq!(read(&mut w, &mut memory, fd, &[2]), (2, b"he".to_vec()));
    assert_eq!(
        pread(&mut w, &mut memory, fd, &[3, 2], 6),
        (5, b"world".to_vec())
    );
    assert_eq!(
        pread(&mut w, &mut memory, fd, &[30], 10),
        (2, b"d\n".to_vec())
    );
    for offset in [12, 13, 1 << 40, u64::MAX] {
        assert_eq!(
            pread(&mut w, &mut memory, fd, &[3], offset),
            (0, Vec::new())
        );
    }
    assert_eq!(tell(&mut w, &mut memory, fd), 2);
    assert_eq!(read(&mut w, &mut memory, fd, &[3]), (3, b"llo".to_vec()));
}

#[test]
fn reads_fault_whole_and_move_nothing() {
    let mut w = wasi();
    let mut memory = vec![0u8; 1024];
    let fd = u64::from(open(&mut w, &mut memory, "data.bin"));
    put_iovecs(&mut memory, 0, &[(100, 10), (1020, 10)]);
    let before = memory.clone();
    for (func, args) in [
        // The second buffer ends past the memory.
        (Func::FdRead, vec![fd, 0, 2, 80]),
        (Func::FdPread, vec![fd, 0, 2, 0, 80]),
        // The list does.
        (Func::FdRead, vec![fd, 1020, 1, 80]),
        (Func::FdPread, vec![fd, 1020, 1, 0, 80]),
        // The count's place does.
        (Func::FdRead, vec![fd, 0, 1, 1021]),
        (Func::FdPread, vec![fd, 0, 1, 0, 1021]),
        // More than 1024 iovecs.
        (Func::FdRead, vec![fd, 0, 1025, 80]),
        (Func::FdPread, vec![fd, 0, 1025, 0, 80]),
    ] {
        let expected = if args[2] == 1025 { INVAL } else { FAULT };
        assert_eq!(call(&mut w, func, &args, &mut memory), expected, "{args:?}");
        assert_eq!(memory, before);
    }
    assert_eq!(tell(&mut w, &mut memory, fd as u32), 0);
    assert_eq!(w.host_fuel(), 0);
}

#[test]
fn file_functions_on_streams_and_the_directory() {
    let mut w = wasi();
    let mut memory = vec![0u8; 1024];
    put_iovecs(&mut memory, 0, &[(200, 4)]);
    let pread = |fd: u64| (Func::FdPread, vec![fd, 0, 1, 0, 80]);
    let seek = |fd: u64| (Func::FdSeek, vec![fd, 0, 0, 80]);
    let tell = |fd: u64| (Func::FdTell, vec![fd, 80]);
    let advise = |fd: u64| (Func::FdAdvise, vec![fd, 0, 0, 0]);
    for make in [pread, seek, tell, advise] {
        for (fd, expected) in [(0, SPIPE), (1, SPIPE), (2, SPIPE), (3, ISDIR), (99, BADF)] {
            let (func, args) = make(fd);
            let errno = call(&mut w, func, &args, &mut memory);
            assert_eq!(errno, expected, "{} on fd {fd}", func.name());
        }
    }
    // fd_read: stdin reads, the directory is isdir, the others badf;
    // fd_write: files and the directory are badf.
    let errno = call(&mut w, Func::FdRead, &[3, 0, 1, 80], &mut memory);
    assert_eq!(errno, ISDIR);
    let fd = u64::from(open(&mut w, &mut memory, "hello.txt"));
    for target in [fd, 3] {
        let errno = call(&mut w, Func::FdWrite, &[target, 0, 1, 80], &mut memory);
        assert_eq!(errno, BADF);
    }
    assert_eq!(memory[200..204], [0; 4]);
}

#[test]
fn advice_is_taken_and_ignored() {
    let mut w = wasi();
    let mut memory = vec![0u8; 1024];
    let fd = u64::from(open(&mut w, &mut memory, "hello.txt"));
    for advice in 0..=5 {
        let args = [fd, 3, u64::MAX, advice];
        assert_eq!(call(&mut w, Func::FdAdvise, &args, &mut memory), SUCCESS);
    }
    for advice in [6, 256, u64::from(u32::MAX)] {
        let args = [fd, 0, 0, advice];
        assert_eq!(call(&mut w, Func::FdAdvise, &args, &mut memory), INVAL);
    }
    assert_eq!(
        read(&mut w, &mut memory, fd as u32, &[5]),
        (5, b"hello".to_vec())
    );
}

#[test]
fn closed_files_are_bad_fds() {
    let mut w = wasi();
    let mut memory = vec![0u8; 1024];
    let fd = u64::from(open(&mut w, &mut memory, "hello.txt"));
    assert_eq!(call(&mut w, Func::FdClose, &[fd], &mut memory), SUCCESS);
    assert_eq!(call(&mut w, Func::FdClose, &[fd], &mut memory), BADF);
    put_iovecs(&mut memory, 0, &[(200, 4)]);
    for (func, args) in [
        (Func::FdRead, vec![fd, 0, 1, 80]),
        (Func::FdPread, vec![fd, 0, 1, 0, 80]),
        (Func::FdSeek, vec![fd, 0, 0, 80]),
        (Func::FdTell, vec![fd, 80]),
        (Func::FdAdvise, vec![fd, 0, 0, 0]),
        (Func::FdFilestatGet, vec![fd, 80]),
        (Func::FdFdstatGet, vec![fd, 80]),
    ] {
        assert_eq!(
            call(&mut w, func, &args, &mut memory),
            BADF,
            "{}",
            func.name()
        );
    }
    // Closing /data leaves its files open, and opens nothing more.
    let other = open(&mut w, &mut memory, "hello.txt");
    assert_eq!(call(&mut w, Func::FdClose, &[3], &mut memory), SUCCESS);
    let errno = open_with(&mut w, &mut memory, 3, b"empty", 0, 0, 0, 0);
    assert_eq!(errno, BADF);
    assert_eq!(
        read(&mut w, &mut memory, other, &[5]),
        (5, b"hello".to_vec())
    );
}

// --- stats -----------------------------------------------------------------------

#[test]
fn filestat_describes_streams_the_directory_and_files() {
    let mut w = wasi();
    let mut memory = vec![0xee; 1024];
    let fd = open(&mut w, &mut memory, "hello.txt"); // index 2: ino 4
    let mut stat = |w: &mut Wasi, fd: u32| {
        let errno = call(w, Func::FdFilestatGet, &[fd.into(), 256], &mut memory);
        assert_eq!(errno, SUCCESS);
        assert_eq!(memory[320], 0xee, "64 bytes, no more");
        memory[256..320].to_vec()
    };
    assert_eq!(stat(&mut w, 0), filestat(0, 0, 2, 0, 0));
    assert_eq!(stat(&mut w, 2), filestat(0, 0, 2, 0, 0));
    assert_eq!(stat(&mut w, 3), filestat(1, 1, 3, 1, 0));
    assert_eq!(stat(&mut w, fd), filestat(1, 4, 4, 1, 12));
    let errno = call(&mut w, Func::FdFilestatGet, &[fd.into(), 961], &mut memory);
    assert_eq!(errno, FAULT);
    assert_eq!(memory[961..], [0xee; 63]);
}

#[test]
fn path_filestat_get_resolves_as_path_open_does() {
    let mut w = wasi();
    let mut memory = vec![0xee; 1024];
    let file = open(&mut w, &mut memory, "data.bin");
    let mut stat = |w: &mut Wasi, dirfd: u32, flags: u64, path: &[u8], at: u64| {
        memory[PATH_AT..PATH_AT + path.len()].copy_from_slice(path);
        let args = [dirfd.into(), flags, PATH_AT as u64, path.len() as u64, at];
        let errno = call(w, Func::PathFilestatGet, &args, &mut memory);
        let written = memory[256..320].to_vec();
        memory[256..320].fill(0xee);
        (errno, written)
    };
    assert_eq!(
        stat(&mut w, 3, 1, b"data.bin", 256),
        (SUCCESS, filestat(1, 2, 4, 1, 1000))
    );
    assert_eq!(
        stat(&mut w, 3, 0, b"./empty", 256),
        (SUCCESS, filestat(1, 3, 4, 1, 0))
    );
    assert_eq!(
        stat(&mut w, 3, 0, b".", 256),
        (SUCCESS, filestat(1, 1, 3, 1, 0))
    );
    let untouched = vec![0xee; 64];
    for (dirfd, flags, path, at, expected) in [
        (99, 5, &b"/x"[..], 1000, BADF),
        (0, 0, b"data.bin", 256, NOTDIR),
        (file, 0, b"data.bin", 256, NOTDIR),
        (3, 2, b"data.bin", 1000, INVAL),
        (3, 0, b"nope", 1000, FAULT),
        (3, 0, b"nope", 256, NOENT),
        (3, 0, b"", 256, NOENT),
        (3, 0, b"../data.bin", 256, PERM),
        (3, 0, b"/data/data.bin", 256, PERM),
        (3, 0, b"data.bin/", 256, NOTDIR),
    ] {
        assert_eq!(
            stat(&mut w, dirfd, flags, path, at),
            (expected, untouched.clone()),
            "{:?}",
            String::from_utf8_lossy(path)
        );
    }
    let args = [3, 0, 1020, 5, 256];
    assert_eq!(
        call(&mut w, Func::PathFilestatGet, &args, &mut memory),
        FAULT
    );
    let args = [3, 0, 0, u64::from(PATH_MAX) + 1, 256];
    assert_eq!(
        call(&mut w, Func::PathFilestatGet, &args, &mut memory),
        NAMETOOLONG
    );
}

// --- listing ---------------------------------------------------------------------

fn readdir(w: &mut Wasi, memory: &mut Vec<u8>, fd: u32, len: u32, cookie: u64) -> (u32, Vec<u8>) {
    memory[200..200 + len as usize].fill(0xee);
    let args = [fd.into(), 200, len.into(), cookie, OUT_AT as u64];
    let errno = call(w, Func::FdReaddir, &args, memory);
    assert_eq!(errno, SUCCESS);
    let used = u32_at(memory, OUT_AT);
    assert!(
        memory[200 + used as usize..200 + len as usize]
            .iter()
            .all(|&b| b == 0xee)
    );
    (used, memory[200..200 + used as usize].to_vec())
}

#[test]
fn the_listing_has_the_witx_layout_in_name_order() {
    let mut w = wasi();
    let mut memory = vec![0u8; 1024];
    let all = [
        dirent(1, 1, b".", 3),
        dirent(2, 1, b"..", 3),
        dirent(3, 2, b"data.bin", 4),
        dirent(4, 3, b"empty", 4),
        dirent(5, 4, b"hello.txt", 4),
    ]
    .concat();
    assert_eq!(all.len(), 5 * 24 + 1 + 2 + 8 + 5 + 9);
    assert_eq!(
        readdir(&mut w, &mut memory, 3, 400, 0),
        (all.len() as u32, all.clone())
    );
    // From a cookie: the entries after it.
    let (_, rest) = readdir(&mut w, &mut memory, 3, 400, 3);
    assert_eq!(
        rest,
        [dirent(4, 3, b"empty", 4), dirent(5, 4, b"hello.txt", 4)].concat()
    );
    assert_eq!(readdir(&mut w, &mut memory, 3, 400, 5), (0, Vec::new()));
    assert_eq!(
        readdir(&mut w, &mut memory, 3, 400, u64::MAX),
        (0, Vec::new())
    );
    // A buffer that ends inside an entry is filled: the cut is the signal.
    for len in [0, 1, 24, 25, 30, 60, all.len() as u32 - 1, all.len() as u32] {
        let (used, bytes) = readdir(&mut w, &mut memory, 3, len, 0);
        assert_eq!(used, len);
        assert_eq!(bytes, all[..len as usize]);
    }
    // An empty directory lists only itself.
    let mut empty = Wasi::new(config(Vec::new(), 1000)).unwrap();
    let (_, bytes) = readdir(&mut empty, &mut memory, 3, 400, 0);
    assert_eq!(
        bytes,
        [dirent(1, 1, b".", 3), dirent(2, 1, b"..", 3)].concat()
    );
}

#[test]
fn a_small_buffer_lists_everything_the_way_libc_reads_it() {
    // Read with a buffer that holds about one entry, go on from the last
    // whole entry's d_next, as wasi-libc's readdir does.
    let mut w = wasi();
    let mut memory = vec![0u8; 1024];
    let mut names = Vec::new();
    let mut cookie = 0;
    loop {
        let (used, bytes) = readdir(&mut w, &mut memory, 3, 40, cookie);
        let mut at = 0;
        while at + 24 <= bytes.len() {
            let namlen = u32::from_le_bytes(bytes[at + 16..at + 20].try_into().unwrap()) as usize;
            if at + 24 + namlen > bytes.len() {
                break;
            }
            names.push(String::from_utf8(bytes[at + 24..at + 24 + namlen].to_vec()).unwrap());
            cookie = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
            at += 24 + namlen;
        }
        if used < 40 {
            break;
        }
    }
    assert_eq!(names, [".", "..", "data.bin", "empty", "hello.txt"]);
}

#[test]
fn readdir_needs_a_directory_and_room_for_both_results() {
    let mut w = wasi();
    let mut memory = vec![0xee; 1024];
    let file = open(&mut w, &mut memory, "hello.txt");
    let before = memory.clone();
    for (fd, buf, len, used, expected) in [
        (99u32, 1000u32, 100u32, 1022u32, BADF),
        (0, 200, 10, 64, NOTDIR),
        (file, 200, 10, 64, NOTDIR),
        (3, 1000, 25, 64, FAULT),
        (3, 200, 10, 1021, FAULT),
        (3, u32::MAX, 1, 64, FAULT),
    ] {
        let args = [u64::from(fd), buf.into(), len.into(), 0, used.into()];
        assert_eq!(call(&mut w, Func::FdReaddir, &args, &mut memory), expected);
        assert_eq!(memory, before);
    }
    // A buffer of length 0 anywhere is inside the memory.
    let args = [3, u64::from(u32::MAX), 0, 0, 64];
    assert_eq!(call(&mut w, Func::FdReaddir, &args, &mut memory), SUCCESS);
    assert_eq!(u32_at(&memory, 64), 0);
}

// --- fuel --------------------------------------------------------------------------

#[test]
fn reads_cost_a_fuel_for_every_8_bytes_and_stop_past_the_jobs_fuel() {
    let mut w = Wasi::new(config(files(), 100)).unwrap();
    let mut memory = vec![0u8; 2048];
    let fd = open(&mut w, &mut memory, "data.bin"); // 1000 bytes
    assert_eq!(w.host_fuel(), 0, "opening is free");
    assert_eq!(read(&mut w, &mut memory, fd, &[7]).0, 7);
    assert_eq!(w.host_fuel(), 0, "7 bytes: rounded down");
    assert_eq!(read(&mut w, &mut memory, fd, &[100]).0, 100);
    assert_eq!(w.host_fuel(), 12);
    assert_eq!(pread(&mut w, &mut memory, fd, &[16, 8], 0).0, 24);
    assert_eq!(w.host_fuel(), 15);
    // What is read, not what is asked: 40 bytes left of 1000 asked.
    assert_eq!(pread(&mut w, &mut memory, fd, &[1000], 960).0, 40);
    assert_eq!(w.host_fuel(), 20);
    // The listing is charged too: 5 entries, 145 bytes.
    assert_eq!(readdir(&mut w, &mut memory, 3, 400, 0).0, 145);
    assert_eq!(w.host_fuel(), 38);
    // 62 left: 496 bytes may still be read, 504 may not.
    put_iovecs(&mut memory, IOVS_AT, &[(200, 504)]);
    memory[OUT_AT..OUT_AT + 4].fill(0xee);
    let before = memory.clone();
    let args = [fd.into(), IOVS_AT as u64, 1, OUT_AT as u64];
    assert_eq!(
        w.call(Func::FdRead, &args, &mut memory),
        Err(Stop::OutOfFuel)
    );
    assert_eq!(memory, before, "nothing read");
    assert_eq!(w.host_fuel(), 38);
    assert_eq!(tell(&mut w, &mut memory, fd), 107);
    let args = [fd.into(), IOVS_AT as u64, 1, 0, OUT_AT as u64];
    assert_eq!(
        w.call(Func::FdPread, &args, &mut memory),
        Err(Stop::OutOfFuel)
    );
    assert_eq!(read(&mut w, &mut memory, fd, &[496]).0, 496);
    assert_eq!(w.host_fuel(), 100, "exactly the job's fuel is not past it");
    assert_eq!(read(&mut w, &mut memory, fd, &[7]).0, 7, "a free read");
    let args = [3, 200, 400, 0, OUT_AT as u64];
    assert_eq!(
        w.call(Func::FdReaddir, &args, &mut memory),
        Err(Stop::OutOfFuel)
    );
    // stdin costs nothing.
    assert_eq!(read(&mut w, &mut memory, 0, &[100]).0, 5);
    assert_eq!(w.host_fuel(), 100);
}

#[test]
fn hostile_reads_cost_only_the_bytes_there_are() {
    // A memory grown to 4 GiB, a file of 64 KiB: a read into 4 GiB of
    // buffers, a path of 4 GiB, a listing into 4 GiB copy what exists.
    let file = DataFile {
        name: "f".into(),
        bytes: vec![7u8; 1 << 16].into(),
    };
    let mut w = Wasi::new(config(vec![file], u64::MAX)).unwrap();
    let mut front = vec![0u8; 1 << 17];
    front[1024] = b'f';
    put_iovecs(&mut front, 0, &[(2048, 3 << 30), (2048, (1 << 30) - 4096)]);
    let mut memory = SparseMemory::new(FOUR_GIB, front);
    let open = [3, 0, 1024, 1, 0, 0, 0, 0, 64];
    assert_eq!(w.call(Func::PathOpen, &open, &mut memory), Ok(SUCCESS));
    let fd = u64::from(u32_at(&memory.front, 64));
    memory.bytes_read.set(0);
    let args = [fd, 0, 2, 64];
    assert_eq!(w.call(Func::FdRead, &args, &mut memory), Ok(SUCCESS));
    assert_eq!(u32_at(&memory.front, 64), 1 << 16);
    assert!(memory.bytes_read.get() < 64, "{}", memory.bytes_read.get());
    let args = [fd, 0, 2, 0, 64];
    assert_eq!(w.call(Func::FdPread, &args, &mut memory), Ok(SUCCESS));
    assert_eq!(w.host_fuel(), 2 * (1 << 13));

    memory.bytes_read.set(0);
    let long = [3, 0, 1024, u64::from(u32::MAX) - 2048, 0, 0, 0, 0, 64];
    assert_eq!(w.call(Func::PathOpen, &long, &mut memory), Ok(NAMETOOLONG));
    let stat = [3, 0, 1024, u64::from(u32::MAX) - 2048, 64];
    assert_eq!(
        w.call(Func::PathFilestatGet, &stat, &mut memory),
        Ok(NAMETOOLONG)
    );
    assert_eq!(memory.bytes_read.get(), 0);
    let list = [3, 2048, u64::from(u32::MAX) - 4096, 0, 64];
    assert_eq!(w.call(Func::FdReaddir, &list, &mut memory), Ok(SUCCESS));
    assert_eq!(u32_at(&memory.front, 64), 24 * 3 + 4);
}

// --- properties ------------------------------------------------------------------

/// One operation on an open file, with what the reference should say.
#[derive(Debug, Clone)]
enum Op {
    Read(Vec<u32>),
    Pread(Vec<u32>, u64),
    Seek(i64, u32),
    Tell,
}

fn op(len: u64) -> impl Strategy<Value = Op> {
    let lens = prop::collection::vec(0u32..300, 0..4);
    let offset = prop_oneof![0..len + 20, Just(u64::MAX), any::<u64>()];
    let delta = prop_oneof![-(len as i64) - 20..len as i64 + 20, any::<i64>()];
    prop_oneof![
        3 => lens.clone().prop_map(Op::Read),
        2 => (lens, offset).prop_map(|(lens, offset)| Op::Pread(lens, offset)),
        3 => (delta, 0u32..4).prop_map(|(delta, whence)| Op::Seek(delta, whence)),
        1 => Just(Op::Tell),
    ]
}

fn file_and_ops() -> impl Strategy<Value = (Vec<u8>, Vec<Op>)> {
    prop::collection::vec(any::<u8>(), 0..700).prop_flat_map(|bytes| {
        let ops = prop::collection::vec(op(bytes.len() as u64), 1..40);
        (Just(bytes), ops)
    })
}

/// Reads `lens` buffers' worth from `reader` as readv does: in order,
/// until one is not filled.
fn read_reference(reader: &mut impl Read, lens: &[u32]) -> Vec<u8> {
    let mut out = Vec::new();
    for &len in lens {
        let mut buf = vec![0u8; len as usize];
        let n = reader.read(&mut buf).unwrap();
        out.extend_from_slice(&buf[..n]);
        if n < len as usize {
            break;
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Random reads, preads, seeks and tells on a file agree with a
    /// `Cursor` over its bytes: the bytes, the counts, the offsets, and
    /// `inval` exactly where the cursor refuses a seek (or the offset
    /// would pass `i64::MAX`) with the offset left where it was.
    #[test]
    fn seeks_and_reads_agree_with_a_cursor((bytes, ops) in file_and_ops()) {
        let file = DataFile { name: "f".into(), bytes: bytes.clone().into() };
        let mut w = Wasi::new(config(vec![file], u64::MAX)).unwrap();
        let mut memory = vec![0u8; 2048];
        let fd = open(&mut w, &mut memory, "f");
        let mut cursor = Cursor::new(bytes.clone());
        for op in ops {
            match op {
                Op::Read(lens) => {
                    let (n, got) = read(&mut w, &mut memory, fd, &lens);
                    let expected = read_reference(&mut cursor, &lens);
                    prop_assert_eq!(n as usize, expected.len());
                    prop_assert_eq!(got, expected);
                }
                Op::Pread(lens, offset) => {
                    let (n, got) = pread(&mut w, &mut memory, fd, &lens, offset);
                    let mut at = Cursor::new(bytes.clone());
                    at.set_position(offset);
                    let expected = read_reference(&mut at, &lens);
                    prop_assert_eq!(n as usize, expected.len());
                    prop_assert_eq!(got, expected);
                }
                Op::Seek(delta, whence) => {
                    let (errno, to) = seek(&mut w, &mut memory, fd, delta, whence);
                    let before = cursor.position();
                    let expected = match whence {
                        0 => u64::try_from(delta).ok().map(|d| cursor.seek(SeekFrom::Start(d))),
                        1 => Some(cursor.seek(SeekFrom::Current(delta))),
                        2 => Some(cursor.seek(SeekFrom::End(delta))),
                        _ => None,
                    };
                    match expected {
                        Some(Ok(position)) if position <= i64::MAX as u64 => {
                            prop_assert_eq!((errno, to), (SUCCESS, position));
                        }
                        _ => {
                            cursor.set_position(before);
                            prop_assert_eq!(errno, INVAL);
                        }
                    }
                }
                Op::Tell => {
                    prop_assert_eq!(tell(&mut w, &mut memory, fd), cursor.position());
                }
            }
        }
    }
}

/// A call of one of the functions of `/data` with arguments near the
/// interesting values: fds 0 to 7 mostly, paths from a table in memory,
/// pointers inside, at the edge of and outside a 512-byte memory, opens
/// that may well succeed.
fn file_call() -> impl Strategy<Value = (Func, Vec<u64>)> {
    // Opens and the calls on fds more often than closes.
    let funcs = prop::sample::select(vec![
        Func::PathOpen,
        Func::PathOpen,
        Func::PathOpen,
        Func::PathFilestatGet,
        Func::FdFilestatGet,
        Func::FdReaddir,
        Func::FdPread,
        Func::FdPread,
        Func::FdRead,
        Func::FdRead,
        Func::FdSeek,
        Func::FdSeek,
        Func::FdTell,
        Func::FdAdvise,
        Func::FdClose,
        Func::FdFdstatGet,
        Func::FdPrestatGet,
        Func::FdPrestatDirName,
    ]);
    let small = prop_oneof![0u64..8, Just(u64::from(u32::MAX)), 0u64..64];
    let pointer = prop_oneof![4 => 0u64..512, 1 => 480u64..520, 1 => Just(u64::from(u32::MAX))];
    let wide = prop_oneof![
        0u64..2000,
        any::<u64>(),
        Just(u64::MAX),
        (0u64..4).prop_map(|d| i64::MAX as u64 - d)
    ];
    let arg = prop_oneof![small, pointer, wide];
    let fd = prop_oneof![3 => 3u64..7, 2 => 0u64..8, 1 => arg.clone()];
    let choices = (0usize..PATHS.len(), 0usize..4, 0u32..4);
    (funcs, fd, prop::collection::vec(arg, 8), choices).prop_map(
        |(func, fd, rest, (path, oflags, coin))| {
            let mut args = vec![fd];
            args.extend(rest);
            args.truncate(func.import().params.len());
            if (func == Func::PathOpen || func == Func::PathFilestatGet) && coin != 0 {
                // Mostly a path of the table (at 400 + 16 i, its length).
                args[2] = 400 + 16 * path as u64;
                args[3] = PATHS[path].len() as u64;
            }
            if func == Func::PathOpen && coin != 0 {
                // Mostly an open that may succeed: /data, no write rights,
                // no flags but `directory` (and `creat` now and then).
                args[0] = 3;
                args[1] = 1;
                args[4] = [0, 0, 2, 1][oflags];
                args[5] = STD_READ_BASE;
                args[7] = 0;
                args[8] %= 508;
            }
            if func == Func::FdSeek && coin != 0 {
                args[2] %= 3;
            }
            if (func == Func::FdRead || func == Func::FdPread) && coin != 0 {
                // Mostly the iovecs at 256: two buffers inside the memory.
                args[1] = 256;
                args[2] %= 3;
            }
            (func, args)
        },
    )
}

const PATHS: [&[u8]; 6] = [b"data.bin", b".", b"./empty", b"..", b"hello.txt/", b"nope"];

/// What the fd table holds, as the kernel can see it: each fd's fdstat
/// and offset (or errnos).
fn fingerprint(w: &mut Wasi) -> Vec<(u32, Vec<u8>, u32, u64)> {
    let mut scratch = vec![0u8; 32];
    (0..=MAX_OPEN_FDS)
        .map(|fd| {
            let stat = call(w, Func::FdFdstatGet, &[fd.into(), 0], &mut scratch);
            let bytes = scratch[..24].to_vec();
            let told = call(w, Func::FdTell, &[fd.into(), 24], &mut scratch);
            (stat, bytes, told, u64_at(&scratch, 24))
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// A call that returns an errno has changed nothing: not the memory,
    /// not the fds or their offsets, not the fuel; and the same calls give
    /// the same answers twice.
    #[test]
    fn a_call_that_fails_changes_nothing(
        calls in prop::collection::vec(file_call(), 1..30),
        noise in prop::collection::vec(any::<u8>(), 400),
    ) {
        let run = || {
            let mut w = Wasi::new(config(files(), 5_000)).unwrap();
            let mut memory = vec![0u8; 512];
            memory[..400].copy_from_slice(&noise);
            // Two iovecs at 256: 16 bytes at 300, 40 at 320.
            memory[256..272].copy_from_slice(&[44, 1, 0, 0, 16, 0, 0, 0, 64, 1, 0, 0, 40, 0, 0, 0]);
            for (i, path) in PATHS.iter().enumerate() {
                memory[400 + 16 * i..400 + 16 * i + path.len()].copy_from_slice(path);
            }
            let mut results = Vec::new();
            for (func, args) in &calls {
                let before = (memory.clone(), fingerprint(&mut w), w.host_fuel());
                let result = w.call(*func, args, &mut memory);
                results.push(result);
                match result {
                    Ok(SUCCESS) => {}
                    Ok(_) | Err(Stop::OutOfFuel) => {
                        let after = (memory.clone(), fingerprint(&mut w), w.host_fuel());
                        assert!(before == after, "{} {args:?} -> {result:?}", func.name());
                    }
                    Err(stop) => panic!("{stop}"),
                }
                if result.is_err() {
                    break;
                }
            }
            (results, memory)
        };
        prop_assert_eq!(run(), run());
    }
}

#[test]
fn fd_flags_can_be_set_only_to_what_they_are() {
    let mut w = wasi();
    let mut memory = vec![0u8; 4096];
    let fd = open(&mut w, &mut memory, "hello.txt");
    for open_fd in [0, 1, 2, 3, fd] {
        let args = [u64::from(open_fd), 0];
        assert_eq!(
            call(&mut w, Func::FdFdstatSetFlags, &args, &mut memory),
            SUCCESS
        );
        // append (1) and nonblock (4) are refused: nothing changes.
        for flags in [1, 4] {
            let args = [u64::from(open_fd), flags];
            assert_eq!(
                call(&mut w, Func::FdFdstatSetFlags, &args, &mut memory),
                PERM
            );
        }
    }
    let args = [99, 0];
    assert_eq!(
        call(&mut w, Func::FdFdstatSetFlags, &args, &mut memory),
        BADF
    );
}
