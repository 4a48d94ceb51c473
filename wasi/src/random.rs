//! `random_get`'s stream: the ChaCha8 keystream under the task's seed, as
//! `rand_chacha::ChaCha8Rng::from_seed(seed)` gives it (64-bit block counter
//! from 0, stream 0, 32-bit words little-endian), read byte by byte.
//!
//! The bytes of all of a run's `random_get` calls, in order, are a prefix
//! of that one stream, however the kernel splits its calls: three bytes
//! then five are the same eight bytes as eight at once. (`ChaCha8Rng`'s
//! own `fill_bytes` drops the rest of a 32-bit word after a request of an
//! odd length, so this reads it in whole blocks and keeps what is left.)
//!
//! ChaCha8 rather than ChaCha20: the seed is no secret (every replica and
//! the coordinator can derive it), so the stream only has to be uniform and
//! reproducible, and ChaCha8 is the grid's stream elsewhere
//! (`grid_kernels::montecarlo`) and the cheaper one in the browser.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};

use crate::errno::Errno;
use crate::memory::{self, Memory};

/// Bytes generated at a time: four ChaCha blocks, whole 32-bit words.
const CHUNK: usize = 256;

/// A task's random stream and how much of its last chunk is used.
pub(crate) struct RandomStream {
    rng: ChaCha8Rng,
    chunk: [u8; CHUNK],
    used: usize,
}

impl RandomStream {
    pub(crate) fn new(seed: [u8; 32]) -> RandomStream {
        RandomStream {
            rng: ChaCha8Rng::from_seed(seed),
            chunk: [0; CHUNK],
            used: CHUNK,
        }
    }

    /// Writes the next `len` bytes of the stream to `addr..addr + len`. A
    /// region outside the memory is a fault and takes nothing from the
    /// stream. The work is one chunk per 256 bytes written, with no
    /// allocation.
    pub(crate) fn fill<M: Memory + ?Sized>(
        &mut self,
        memory: &mut M,
        addr: u32,
        len: u32,
    ) -> Result<(), Errno> {
        memory::check(memory, addr, len.into())?;
        let mut at = addr;
        let mut left = len as usize;
        while left > 0 {
            if self.used == CHUNK {
                self.rng.fill_bytes(&mut self.chunk);
                self.used = 0;
            }
            let n = left.min(CHUNK - self.used);
            memory::write_bytes(memory, at, &self.chunk[self.used..self.used + n])?;
            self.used += n;
            left -= n;
            // `check` proved `addr + len` fits; `at` only advances inside it.
            at = at.wrapping_add(n as u32);
        }
        Ok(())
    }
}

impl std::fmt::Debug for RandomStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key and the stream are not worth printing.
        f.debug_struct("RandomStream")
            .field("word_pos", &self.rng.get_word_pos())
            .field("used", &self.used)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected(seed: [u8; 32], len: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; len];
        ChaCha8Rng::from_seed(seed).fill_bytes(&mut bytes);
        bytes
    }

    #[test]
    fn calls_of_any_length_continue_one_stream() {
        let seed = [5; 32];
        let mut stream = RandomStream::new(seed);
        let mut memory = vec![0u8; 1024];
        let mut at = 0u32;
        // Odd lengths, and one that crosses a chunk boundary.
        for len in [3u32, 5, 1, 0, 300, 7, 256] {
            stream.fill(&mut memory, at, len).unwrap();
            at += len;
        }
        assert_eq!(&memory[..at as usize], expected(seed, at as usize));
        assert!(memory[at as usize..].iter().all(|&b| b == 0));
    }

    #[test]
    fn a_fault_takes_nothing_from_the_stream() {
        let seed = [9; 32];
        let mut stream = RandomStream::new(seed);
        let mut memory = vec![0u8; 16];
        assert_eq!(stream.fill(&mut memory, 8, 9), Err(Errno::Fault));
        assert_eq!(
            stream.fill(&mut memory, u32::MAX, u32::MAX),
            Err(Errno::Fault)
        );
        assert_eq!(memory, [0; 16]);
        stream.fill(&mut memory, 0, 16).unwrap();
        assert_eq!(memory, expected(seed, 16));
    }

    #[test]
    fn the_stream_is_chacha8_from_block_zero() {
        // The first block of ChaCha8 with an all-zero key and nonce, from
        // the ChaCha test vectors (Bernstein's reference code, 8 rounds):
        // 3e00ef2f895f40d67f5bb8e81f09a5a1 2c840ec3ce9a7f3b181be188ef711a1e.
        let mut stream = RandomStream::new([0; 32]);
        let mut memory = vec![0u8; 32];
        stream.fill(&mut memory, 0, 32).unwrap();
        let hex: String = memory.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "3e00ef2f895f40d67f5bb8e81f09a5a12c840ec3ce9a7f3b181be188ef711a1e"
        );
    }
}
