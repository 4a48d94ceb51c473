//! The kernel's file descriptors: which numbers are open and what each one
//! is ([`Fd`], [`FdKind`]), what `fd_fdstat_get` says about it ([`Fdstat`],
//! WASI's 24-byte `fdstat`), and the rights an fd may hold.
//!
//! A run starts with the three standard streams at 0, 1 and 2 and the
//! preopened directory `/data` at 3. `path_open` takes the lowest free
//! number, as POSIX `open` does (a closed stream's number included), below
//! [`MAX_OPEN_FDS`]; `fd_close` frees one.
//!
//! Rights are the ones WASI preview 1 defines. An fd holds only the rights
//! of functions it can do ([`FILE_RIGHTS`], [`DIR_RIGHTS`]): what an open asks
//! for beyond them is dropped, not refused, except the rights to write
//! ([`WRITE_RIGHTS`]), which `path_open` refuses. Rights are reported, not
//! checked: every open file can be read and seeked, as in wasmtime.

use crate::errno::Errno;

/// The most fds open at once, the standard streams and `/data` included:
/// every number is below it. Room for each of a job's files
/// ([`grid_kernels::wasm::MAX_FILES`]) open twice.
pub const MAX_OPEN_FDS: u32 = 132;

/// What an open file descriptor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FdKind {
    /// fd 0: reads the task's input.
    Stdin,
    /// fd 1: writes the task's output, up to the job's limit.
    Stdout,
    /// fd 2: writes diagnostics, cut at the job's cap.
    Stderr,
    /// `/data`: the preopen at fd 3, or the directory opened again by
    /// `path_open` (`.`).
    Dir { preopen: bool },
    /// A file of `/data` (its index among the job's files, sorted by name)
    /// and where the next `fd_read` starts, at most `i64::MAX`.
    File { file: usize, position: u64 },
}

/// An open file descriptor: what it is, and the flags and rights
/// `fd_fdstat_get` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fd {
    pub(crate) kind: FdKind,
    pub(crate) flags: u16,
    pub(crate) rights_base: u64,
    pub(crate) rights_inheriting: u64,
}

impl Fd {
    fn stream(kind: FdKind, rights_base: u64) -> Fd {
        Fd {
            kind,
            flags: 0,
            rights_base,
            rights_inheriting: 0,
        }
    }
}

/// The open file descriptors, indexed by number; `None` is a closed one.
#[derive(Debug, Clone)]
pub(crate) struct FdTable {
    fds: Vec<Option<Fd>>,
}

impl FdTable {
    pub(crate) fn new() -> FdTable {
        let data = Fd {
            kind: FdKind::Dir { preopen: true },
            flags: 0,
            rights_base: DIR_RIGHTS,
            rights_inheriting: DIR_RIGHTS | FILE_RIGHTS,
        };
        FdTable {
            fds: vec![
                Some(Fd::stream(FdKind::Stdin, RIGHTS_FD_READ)),
                Some(Fd::stream(FdKind::Stdout, RIGHTS_FD_WRITE)),
                Some(Fd::stream(FdKind::Stderr, RIGHTS_FD_WRITE)),
                Some(data),
            ],
        }
    }

    /// What `fd` is, or `badf` if it is not open.
    pub(crate) fn get(&self, fd: u32) -> Result<Fd, Errno> {
        usize::try_from(fd)
            .ok()
            .and_then(|fd| self.fds.get(fd).copied().flatten())
            .ok_or(Errno::Badf)
    }

    /// Where the next read of the open file `fd` starts.
    pub(crate) fn set_position(&mut self, fd: u32, to: u64) {
        if let Some(Some(Fd {
            kind: FdKind::File { position, .. },
            ..
        })) = self.fds.get_mut(fd as usize)
        {
            *position = to;
        }
    }

    /// The number `open` would give, or `mfile` if all are taken.
    pub(crate) fn lowest_free(&self) -> Result<u32, Errno> {
        let free = self
            .fds
            .iter()
            .position(Option::is_none)
            .unwrap_or(self.fds.len());
        u32::try_from(free)
            .ok()
            .filter(|&fd| fd < MAX_OPEN_FDS)
            .ok_or(Errno::Mfile)
    }

    /// Opens `fd` at the lowest free number, or `mfile`.
    pub(crate) fn open(&mut self, fd: Fd) -> Result<u32, Errno> {
        let number = self.lowest_free()?;
        match self.fds.get_mut(number as usize) {
            Some(slot) => *slot = Some(fd),
            None => self.fds.push(Some(fd)),
        }
        Ok(number)
    }

    /// Closes `fd`, or `badf` if it is not open.
    pub(crate) fn close(&mut self, fd: u32) -> Result<(), Errno> {
        self.get(fd)?;
        self.fds[fd as usize] = None;
        Ok(())
    }
}

/// `filetype::character_device`.
pub(crate) const FILETYPE_CHARACTER_DEVICE: u8 = 2;
/// `filetype::directory`.
pub(crate) const FILETYPE_DIRECTORY: u8 = 3;
/// `filetype::regular_file`.
pub(crate) const FILETYPE_REGULAR_FILE: u8 = 4;

/// `rights::fd_datasync`.
pub(crate) const RIGHTS_FD_DATASYNC: u64 = 1 << 0;
/// `rights::fd_read`.
pub(crate) const RIGHTS_FD_READ: u64 = 1 << 1;
/// `rights::fd_seek`.
pub(crate) const RIGHTS_FD_SEEK: u64 = 1 << 2;
/// `rights::fd_tell`.
pub(crate) const RIGHTS_FD_TELL: u64 = 1 << 5;
/// `rights::fd_write`.
pub(crate) const RIGHTS_FD_WRITE: u64 = 1 << 6;
/// `rights::fd_advise`.
pub(crate) const RIGHTS_FD_ADVISE: u64 = 1 << 7;
/// `rights::fd_allocate`.
pub(crate) const RIGHTS_FD_ALLOCATE: u64 = 1 << 8;
/// `rights::path_open`.
pub(crate) const RIGHTS_PATH_OPEN: u64 = 1 << 13;
/// `rights::fd_readdir`.
pub(crate) const RIGHTS_FD_READDIR: u64 = 1 << 14;
/// `rights::path_filestat_get`.
pub(crate) const RIGHTS_PATH_FILESTAT_GET: u64 = 1 << 18;
/// `rights::fd_filestat_get`.
pub(crate) const RIGHTS_FD_FILESTAT_GET: u64 = 1 << 21;
/// `rights::fd_filestat_set_size`.
pub(crate) const RIGHTS_FD_FILESTAT_SET_SIZE: u64 = 1 << 22;

/// What a file of `/data` can do: read, seek, tell, advise, stat.
pub(crate) const FILE_RIGHTS: u64 =
    RIGHTS_FD_READ | RIGHTS_FD_SEEK | RIGHTS_FD_TELL | RIGHTS_FD_ADVISE | RIGHTS_FD_FILESTAT_GET;
/// What `/data` itself can do: open, list, stat its files, stat itself.
pub(crate) const DIR_RIGHTS: u64 =
    RIGHTS_PATH_OPEN | RIGHTS_FD_READDIR | RIGHTS_PATH_FILESTAT_GET | RIGHTS_FD_FILESTAT_GET;
/// The rights that would change a file, which `path_open` refuses in its
/// base rights: exactly the ones wasi-libc leaves out of an `O_RDONLY` open
/// and Rust's `File::open` does not ask for (both ask for every other
/// right, `path_create_file` and `path_unlink_file` among them, and get
/// them dropped).
pub(crate) const WRITE_RIGHTS: u64 =
    RIGHTS_FD_DATASYNC | RIGHTS_FD_WRITE | RIGHTS_FD_ALLOCATE | RIGHTS_FD_FILESTAT_SET_SIZE;

/// WASI's `fdstat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fdstat {
    pub(crate) filetype: u8,
    pub(crate) flags: u16,
    pub(crate) rights_base: u64,
    pub(crate) rights_inheriting: u64,
}

/// The WASI filetype of an fd of this kind.
pub(crate) fn filetype(kind: FdKind) -> u8 {
    match kind {
        FdKind::Stdin | FdKind::Stdout | FdKind::Stderr => FILETYPE_CHARACTER_DEVICE,
        FdKind::Dir { .. } => FILETYPE_DIRECTORY,
        FdKind::File { .. } => FILETYPE_REGULAR_FILE,
    }
}

impl Fdstat {
    /// The stat of an open fd. The streams are character devices with no
    /// flags, rights to read (stdin) or write (stdout, stderr), and nothing
    /// for descriptors they would open; `/data` and its files report the
    /// flags and rights they were opened with.
    pub(crate) fn of(fd: Fd) -> Fdstat {
        Fdstat {
            filetype: filetype(fd.kind),
            flags: fd.flags,
            rights_base: fd.rights_base,
            rights_inheriting: fd.rights_inheriting,
        }
    }

    /// Its 24 bytes: filetype u8 at 0, flags u16 at 2, base rights u64 at 8,
    /// inheriting rights u64 at 16, little-endian; the padding (byte 1 and
    /// bytes 4..8) is written as zeros.
    pub(crate) fn to_bytes(self) -> [u8; 24] {
        let mut bytes = [0u8; 24];
        bytes[0] = self.filetype;
        bytes[2..4].copy_from_slice(&self.flags.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.rights_base.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.rights_inheriting.to_le_bytes());
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(file: usize) -> Fd {
        Fd {
            kind: FdKind::File { file, position: 0 },
            flags: 0,
            rights_base: RIGHTS_FD_READ,
            rights_inheriting: 0,
        }
    }

    #[test]
    fn the_streams_and_data_are_open_until_closed_and_nothing_else_is() {
        let mut fds = FdTable::new();
        assert_eq!(fds.get(0).map(|fd| fd.kind), Ok(FdKind::Stdin));
        assert_eq!(fds.get(1).map(|fd| fd.kind), Ok(FdKind::Stdout));
        assert_eq!(fds.get(2).map(|fd| fd.kind), Ok(FdKind::Stderr));
        assert_eq!(
            fds.get(3).map(|fd| fd.kind),
            Ok(FdKind::Dir { preopen: true })
        );
        assert_eq!(fds.get(4), Err(Errno::Badf));
        assert_eq!(fds.get(u32::MAX), Err(Errno::Badf));
        assert_eq!(fds.close(1), Ok(()));
        assert_eq!(fds.get(1), Err(Errno::Badf));
        assert_eq!(fds.close(1), Err(Errno::Badf));
        assert_eq!(fds.close(4), Err(Errno::Badf));
        assert_eq!(fds.get(2).map(|fd| fd.kind), Ok(FdKind::Stderr));
    }

    #[test]
    fn opens_take_the_lowest_free_number_up_to_the_cap() {
        let mut fds = FdTable::new();
        assert_eq!(fds.open(file(0)), Ok(4));
        assert_eq!(fds.open(file(1)), Ok(5));
        fds.close(4).unwrap();
        fds.close(1).unwrap();
        assert_eq!(fds.open(file(2)), Ok(1), "a closed stream's number");
        assert_eq!(fds.open(file(3)), Ok(4));
        assert_eq!(fds.open(file(4)), Ok(6));
        while fds.lowest_free().is_ok() {
            fds.open(file(9)).unwrap();
        }
        assert_eq!(
            fds.get(MAX_OPEN_FDS - 1).map(|fd| fd.kind),
            Ok(file(9).kind)
        );
        assert_eq!(fds.open(file(5)), Err(Errno::Mfile));
        fds.close(70).unwrap();
        assert_eq!(fds.open(file(5)), Ok(70));
        assert_eq!(fds.get(MAX_OPEN_FDS), Err(Errno::Badf));
    }

    #[test]
    fn positions_are_kept_per_fd() {
        let mut fds = FdTable::new();
        let a = fds.open(file(0)).unwrap();
        let b = fds.open(file(0)).unwrap();
        fds.set_position(a, 7);
        fds.set_position(0, 9); // not a file: nothing to set
        assert_eq!(
            fds.get(a).unwrap().kind,
            FdKind::File {
                file: 0,
                position: 7
            }
        );
        assert_eq!(fds.get(b).unwrap().kind, file(0).kind);
        assert_eq!(fds.get(0).unwrap().kind, FdKind::Stdin);
    }

    #[test]
    fn the_rights_an_fd_may_hold_never_include_writing() {
        assert_eq!(FILE_RIGHTS & WRITE_RIGHTS, 0);
        assert_eq!(DIR_RIGHTS & WRITE_RIGHTS, 0);
        // Bits by witx: fd_read 1, fd_seek 2, fd_tell 5, fd_advise 7,
        // fd_filestat_get 21; path_open 13, fd_readdir 14, path_filestat_get 18.
        assert_eq!(FILE_RIGHTS, 0b10_0000_0000_0000_1010_0110);
        assert_eq!(DIR_RIGHTS, (1 << 13) | (1 << 14) | (1 << 18) | (1 << 21));
        // fd_datasync 0, fd_write 6, fd_allocate 8, fd_filestat_set_size 22.
        assert_eq!(WRITE_RIGHTS, 1 | (1 << 6) | (1 << 8) | (1 << 22));
        const { assert!(MAX_OPEN_FDS as usize >= 2 * grid_kernels::wasm::MAX_FILES + 4) };
    }

    #[test]
    fn fdstat_has_the_witx_layout() {
        let mut expected = [0u8; 24];
        expected[0] = 2;
        expected[8] = 1 << 6;
        let stdout = FdTable::new().get(1).unwrap();
        assert_eq!(Fdstat::of(stdout).to_bytes(), expected);
        let odd = Fdstat {
            filetype: 4,
            flags: 0x0102,
            rights_base: 0x0807_0605_0403_0201,
            rights_inheriting: 0x1817_1615_1413_1211,
        };
        assert_eq!(
            odd.to_bytes(),
            [
                4, 0, 2, 1, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16,
                0x17, 0x18
            ]
        );
    }
}
