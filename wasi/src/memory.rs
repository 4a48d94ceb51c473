//! The kernel's linear memory as this crate sees it ([`Memory`]), and the
//! checked pointer arithmetic every function uses on it.
//!
//! Every address and length comes from the kernel and may be anything a u32
//! holds. Sums are done in u64 and a region that ends past 2^32 is a fault;
//! nothing here can overflow or panic. A fault is the kernel's problem, not
//! the host's: the function returns `fault` (EFAULT) and the run goes on.

use crate::errno::Errno;

/// A kernel's linear memory: the bytes `0..size`, like WebAssembly memory.
///
/// The native runtime passes the instance's memory as a `[u8]`; the browser
/// implements this over a `Uint8Array` of the instance's `memory.buffer`.
/// An implementation must be all or nothing: when the region
/// `addr..addr + len` is not entirely inside the memory it returns false
/// and copies nothing. Because memory is one range from 0, a region is
/// inside exactly when its last byte is, which is how this crate tests a
/// region without copying it.
pub trait Memory {
    /// Copies the bytes at `addr..addr + buf.len()` into `buf`.
    fn read(&self, addr: u32, buf: &mut [u8]) -> bool;
    /// Copies `data` to `addr..addr + data.len()`.
    fn write(&mut self, addr: u32, data: &[u8]) -> bool;
}

impl Memory for [u8] {
    fn read(&self, addr: u32, buf: &mut [u8]) -> bool {
        match region(self.len(), addr, buf.len()) {
            Some(range) => {
                buf.copy_from_slice(&self[range]);
                true
            }
            None => false,
        }
    }

    fn write(&mut self, addr: u32, data: &[u8]) -> bool {
        match region(self.len(), addr, data.len()) {
            Some(range) => {
                self[range].copy_from_slice(data);
                true
            }
            None => false,
        }
    }
}

impl Memory for Vec<u8> {
    fn read(&self, addr: u32, buf: &mut [u8]) -> bool {
        self.as_slice().read(addr, buf)
    }

    fn write(&mut self, addr: u32, data: &[u8]) -> bool {
        self.as_mut_slice().write(addr, data)
    }
}

/// The index range of `len` bytes at `addr` in a memory of `size` bytes.
fn region(size: usize, addr: u32, len: usize) -> Option<std::ops::Range<usize>> {
    let start = usize::try_from(addr).ok()?;
    let end = start.checked_add(len)?;
    (end <= size).then_some(start..end)
}

/// `base + offset` as an address, or a fault when it is past `u32::MAX`.
pub(crate) fn offset(base: u32, offset: u64) -> Result<u32, Errno> {
    u64::from(base)
        .checked_add(offset)
        .and_then(|sum| u32::try_from(sum).ok())
        .ok_or(Errno::Fault)
}

/// Whether `len` bytes at `addr` are inside the memory, without copying
/// them. An empty region is always inside (it touches no byte).
pub(crate) fn check<M: Memory + ?Sized>(memory: &M, addr: u32, len: u64) -> Result<(), Errno> {
    if len == 0 {
        return Ok(());
    }
    let last = offset(addr, len - 1)?;
    let mut byte = [0u8];
    if memory.read(last, &mut byte) {
        Ok(())
    } else {
        Err(Errno::Fault)
    }
}

pub(crate) fn read_bytes<M: Memory + ?Sized, const N: usize>(
    memory: &M,
    addr: u32,
) -> Result<[u8; N], Errno> {
    let mut bytes = [0u8; N];
    if memory.read(addr, &mut bytes) {
        Ok(bytes)
    } else {
        Err(Errno::Fault)
    }
}

pub(crate) fn write_bytes<M: Memory + ?Sized>(
    memory: &mut M,
    addr: u32,
    data: &[u8],
) -> Result<(), Errno> {
    if data.is_empty() || memory.write(addr, data) {
        Ok(())
    } else {
        Err(Errno::Fault)
    }
}

pub(crate) fn write_u32<M: Memory + ?Sized>(
    memory: &mut M,
    addr: u32,
    value: u32,
) -> Result<(), Errno> {
    write_bytes(memory, addr, &value.to_le_bytes())
}

pub(crate) fn write_u64<M: Memory + ?Sized>(
    memory: &mut M,
    addr: u32,
    value: u64,
) -> Result<(), Errno> {
    write_bytes(memory, addr, &value.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_read_and_write_inside_and_refuse_outside_whole() {
        let mut memory = vec![0u8; 8];
        assert!(memory.write(4, &[1, 2, 3, 4]));
        assert!(!memory.write(5, &[9, 9, 9, 9]), "ends one byte past");
        assert!(!memory.write(u32::MAX, &[9]));
        assert_eq!(
            memory,
            [0, 0, 0, 0, 1, 2, 3, 4],
            "a refused write copies nothing"
        );
        let mut buf = [0u8; 3];
        assert!(memory.read(5, &mut buf));
        assert_eq!(buf, [2, 3, 4]);
        assert!(!memory.read(6, &mut buf));
        assert!(memory.read(8, &mut []), "the empty region at the end");
        assert!(!memory.read(9, &mut []));
        let slice: &mut [u8] = &mut memory;
        assert!(slice.write(0, &[7]));
        assert_eq!(memory[0], 7);
    }

    #[test]
    fn regions_are_checked_without_overflow() {
        let memory = vec![0u8; 16];
        assert_eq!(check(&memory, 0, 16), Ok(()));
        assert_eq!(check(&memory, 15, 1), Ok(()));
        assert_eq!(check(&memory, 16, 1), Err(Errno::Fault));
        assert_eq!(check(&memory, 0, 17), Err(Errno::Fault));
        assert_eq!(check(&memory, u32::MAX, 0), Ok(()), "empty touches nothing");
        assert_eq!(check(&memory, u32::MAX, 1), Err(Errno::Fault));
        assert_eq!(check(&memory, u32::MAX, u32::MAX.into()), Err(Errno::Fault));
        assert_eq!(check(&memory, 1, u32::MAX.into()), Err(Errno::Fault));
        assert_eq!(check(&memory, 0, u64::MAX), Err(Errno::Fault));
        assert_eq!(offset(u32::MAX, 0), Ok(u32::MAX));
        assert_eq!(offset(u32::MAX, 1), Err(Errno::Fault));
        assert_eq!(offset(0, u64::MAX), Err(Errno::Fault));
        assert_eq!(offset(8, 8 * 3), Ok(32));
    }

    #[test]
    fn words_are_little_endian() {
        let mut memory = vec![0u8; 12];
        write_u32(&mut memory, 0, 0x0403_0201).unwrap();
        write_u64(&mut memory, 4, 0x0c0b_0a09_0807_0605).unwrap();
        assert_eq!(memory, (1..=12).collect::<Vec<u8>>());
        assert_eq!(read_bytes::<_, 4>(&memory, 8), Ok([9, 10, 11, 12]));
        assert_eq!(read_bytes::<_, 4>(&memory, 9), Err(Errno::Fault));
        assert_eq!(write_u64(&mut memory, 5, 0), Err(Errno::Fault));
        assert_eq!(memory, (1..=12).collect::<Vec<u8>>());
    }
}
