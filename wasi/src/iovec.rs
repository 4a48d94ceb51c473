//! The scatter/gather lists of `fd_read` and `fd_write`: an array of
//! `iovec`s (`{buf: u32, len: u32}`, 8 bytes each, little-endian) in the
//! kernel's memory.
//!
//! A list is read and checked whole before anything is moved, so a call
//! either faults having done nothing or does all it was asked: each iovec
//! is read once, in order, and the first one that is outside the memory,
//! or whose buffer is, makes the call `fault`. The list is copied out of
//! the kernel's memory first, so a read whose buffers overlap the list
//! cannot change the list under it. At most [`IOV_MAX`] iovecs are taken
//! (more is `inval`, as `readv`/`writev` do on Linux), so a call does at
//! most 1024 iovec reads plus the bytes it moves, and lengths that add up
//! past `u32::MAX` (overlapping buffers) are `inval`, since the count of
//! bytes moved is a u32.

use crate::errno::Errno;
use crate::memory::{self, Memory};

/// The most iovecs one call may pass: Linux's `IOV_MAX`.
pub const IOV_MAX: u32 = 1024;

/// One buffer of a list, checked to be inside the memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Iovec {
    pub(crate) buf: u32,
    pub(crate) len: u32,
}

/// The `count` iovecs at `addr`, every buffer inside the memory, and their
/// total length.
pub(crate) fn read_list<M: Memory + ?Sized>(
    memory: &M,
    addr: u32,
    count: u32,
) -> Result<(Vec<Iovec>, u32), Errno> {
    if count > IOV_MAX {
        return Err(Errno::Inval);
    }
    let mut list = Vec::with_capacity(count as usize);
    let mut total = 0u32;
    for i in 0..count {
        let at = memory::offset(addr, u64::from(i) * 8)?;
        let bytes: [u8; 8] = memory::read_bytes(memory, at)?;
        let iovec = Iovec {
            buf: u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            len: u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
        };
        memory::check(memory, iovec.buf, iovec.len.into())?;
        total = total.checked_add(iovec.len).ok_or(Errno::Inval)?;
        list.push(iovec);
    }
    Ok((list, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory_with(iovecs: &[(u32, u32)], size: usize) -> Vec<u8> {
        let mut memory = vec![0u8; size];
        for (i, (buf, len)) in iovecs.iter().enumerate() {
            memory[i * 8..i * 8 + 4].copy_from_slice(&buf.to_le_bytes());
            memory[i * 8 + 4..i * 8 + 8].copy_from_slice(&len.to_le_bytes());
        }
        memory
    }

    #[test]
    fn a_list_is_read_in_order_with_its_total() {
        let memory = memory_with(&[(32, 4), (40, 0), (36, 8)], 64);
        let (list, total) = read_list(&memory, 0, 3).unwrap();
        assert_eq!(
            list,
            [
                Iovec { buf: 32, len: 4 },
                Iovec { buf: 40, len: 0 },
                Iovec { buf: 36, len: 8 }
            ]
        );
        assert_eq!(total, 12);
        assert_eq!(read_list(&memory, 0, 0), Ok((Vec::new(), 0)));
        // An empty list needs no memory at all.
        assert_eq!(read_list(&memory, u32::MAX, 0), Ok((Vec::new(), 0)));
    }

    #[test]
    fn a_list_or_a_buffer_outside_memory_is_a_fault() {
        let memory = memory_with(&[(32, 4), (60, 5)], 64);
        assert_eq!(
            read_list(&memory, 0, 2),
            Err(Errno::Fault),
            "buffer past the end"
        );
        assert_eq!(
            read_list(&memory, 60, 1),
            Err(Errno::Fault),
            "iovec past the end"
        );
        assert_eq!(read_list(&memory, u32::MAX - 3, 1), Err(Errno::Fault));
        // The last iovec's address would pass 2^32.
        assert_eq!(read_list(&memory, u32::MAX - 8, 2), Err(Errno::Fault));
        let memory = memory_with(&[(0, u32::MAX)], 64);
        assert_eq!(read_list(&memory, 0, 1), Err(Errno::Fault));
    }

    #[test]
    fn too_many_iovecs_or_too_many_bytes_are_invalid() {
        let memory = vec![0u8; 16];
        // Refused before a single iovec is read: no work by the count.
        assert_eq!(read_list(&memory, 0, IOV_MAX + 1), Err(Errno::Inval));
        assert_eq!(read_list(&memory, 0, u32::MAX), Err(Errno::Inval));
        let zeros = vec![0u8; IOV_MAX as usize * 8];
        assert_eq!(read_list(&zeros, 0, IOV_MAX).unwrap().0.len(), 1024);
        // Overlapping buffers count as often as they are listed. (Lengths
        // adding up past u32::MAX need a memory of gigabytes: the test of
        // hostile lengths in `tests.rs` has one.)
        let overlapping = memory_with(&[(0, 16), (0, 16)], 16);
        assert_eq!(
            read_list(&overlapping, 0, 2).map(|(_, total)| total),
            Ok(32)
        );
    }
}
