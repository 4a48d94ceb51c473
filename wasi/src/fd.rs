//! The kernel's file descriptors: which numbers are open and what each one
//! is ([`FdKind`]), and what `fd_fdstat_get` says about it ([`Fdstat`],
//! WASI's 24-byte `fdstat`).
//!
//! Today the table holds the three standard streams at 0, 1 and 2; closing
//! one leaves a hole that is never reused (no function opens anything).
//! Read-only input files will be one more kind, a preopened directory,
//! pushed at fd 3 by [`FdTable::new`]; every function already matches on
//! the kind, so the compiler lists each place that must learn about it.

use crate::errno::Errno;

/// What an open file descriptor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FdKind {
    /// fd 0: reads the task's input.
    Stdin,
    /// fd 1: writes the task's output, up to the job's limit.
    Stdout,
    /// fd 2: writes diagnostics, cut at the job's cap.
    Stderr,
}

/// The open file descriptors, indexed by number; `None` is a closed one.
#[derive(Debug, Clone)]
pub(crate) struct FdTable {
    fds: Vec<Option<FdKind>>,
}

impl FdTable {
    pub(crate) fn new() -> FdTable {
        FdTable {
            fds: vec![
                Some(FdKind::Stdin),
                Some(FdKind::Stdout),
                Some(FdKind::Stderr),
            ],
        }
    }

    /// What `fd` is, or `badf` if it is not open.
    pub(crate) fn get(&self, fd: u32) -> Result<FdKind, Errno> {
        usize::try_from(fd)
            .ok()
            .and_then(|fd| self.fds.get(fd).copied().flatten())
            .ok_or(Errno::Badf)
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
/// `rights::fd_read`.
pub(crate) const RIGHTS_FD_READ: u64 = 1 << 1;
/// `rights::fd_write`.
pub(crate) const RIGHTS_FD_WRITE: u64 = 1 << 6;

/// WASI's `fdstat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fdstat {
    pub(crate) filetype: u8,
    pub(crate) flags: u16,
    pub(crate) rights_base: u64,
    pub(crate) rights_inheriting: u64,
}

impl Fdstat {
    /// The stat of an fd of this kind. The streams are character devices
    /// with no flags, rights to read (stdin) or write (stdout, stderr), and
    /// nothing for descriptors they would open.
    pub(crate) fn of(kind: FdKind) -> Fdstat {
        let rights_base = match kind {
            FdKind::Stdin => RIGHTS_FD_READ,
            FdKind::Stdout | FdKind::Stderr => RIGHTS_FD_WRITE,
        };
        Fdstat {
            filetype: FILETYPE_CHARACTER_DEVICE,
            flags: 0,
            rights_base,
            rights_inheriting: 0,
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

    #[test]
    fn the_streams_are_open_until_closed_and_nothing_else_is() {
        let mut fds = FdTable::new();
        assert_eq!(fds.get(0), Ok(FdKind::Stdin));
        assert_eq!(fds.get(1), Ok(FdKind::Stdout));
        assert_eq!(fds.get(2), Ok(FdKind::Stderr));
        assert_eq!(fds.get(3), Err(Errno::Badf));
        assert_eq!(fds.get(u32::MAX), Err(Errno::Badf));
        assert_eq!(fds.close(1), Ok(()));
        assert_eq!(fds.get(1), Err(Errno::Badf));
        assert_eq!(fds.close(1), Err(Errno::Badf));
        assert_eq!(fds.close(3), Err(Errno::Badf));
        assert_eq!(fds.get(2), Ok(FdKind::Stderr));
    }

    #[test]
    fn fdstat_has_the_witx_layout() {
        let mut expected = [0u8; 24];
        expected[0] = 2;
        expected[8] = 1 << 6;
        assert_eq!(Fdstat::of(FdKind::Stdout).to_bytes(), expected);
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
