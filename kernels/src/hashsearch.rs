//! The `hashsearch` kernel: nonces n for which SHA-256(prefix bytes followed by
//! the ASCII decimal of n, no leading zeros) has at least `difficulty` leading
//! zero bits, most significant bit of the first byte first.
//!
//! Two ways to search, with bit-identical answers: one nonce at a time with
//! `sha2` (SHA-NI natively, faster there), and four nonces at a time with
//! [`sha256x4`] from a precomputed midstate (WebAssembly has no SHA
//! instructions, but has 128-bit SIMD, so four lanes cost about one).

use std::ops::Range;

use sha2::{Digest, Sha256};

use crate::sha256x4::{self, Lanes};

/// Leading zero bits of a digest.
pub fn leading_zero_bits(digest: &[u8]) -> u32 {
    let mut bits = 0;
    for &byte in digest {
        if byte == 0 {
            bits += 8;
        } else {
            return bits + byte.leading_zeros();
        }
    }
    bits
}

/// The decimal digits of `n`, written into `buf`; returns the used tail.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// SHA-256 of the prefix followed by the decimal of `nonce`.
pub fn digest(prefix: &[u8], nonce: u64) -> [u8; 32] {
    let mut buf = [0u8; 20];
    let mut hasher = Sha256::new();
    hasher.update(prefix);
    hasher.update(decimal(nonce, &mut buf));
    hasher.finalize().into()
}

/// Whether `nonce` meets the difficulty. The coordinator uses this to check
/// every nonce a worker claims.
pub fn meets(prefix: &[u8], nonce: u64, difficulty: u32) -> bool {
    leading_zero_bits(&digest(prefix, nonce)) >= difficulty
}

/// The qualifying nonces in `start..end`, ascending.
///
/// WebAssembly searches four at a time: in Chromium 156 that took the
/// `bench_wasm` case from 80 ms (`sha2`, whose wasm backend vectorises only the
/// message schedule) to 40 ms, level with native. Natively `sha2` stays: with
/// SHA-NI it takes about 100 ns a nonce, the portable four-lane code about 300
/// (LLVM leaves its rotations scalar on x86).
pub fn search(prefix: &[u8], difficulty: u32, start: u64, end: u64) -> Vec<u64> {
    if cfg!(all(target_arch = "wasm32", target_feature = "simd128")) {
        search_four_at_a_time(prefix, difficulty, start, end)
    } else {
        search_one_at_a_time(prefix, difficulty, start, end)
    }
}

/// [`search`] with `sha2`, one nonce at a time.
pub fn search_one_at_a_time(prefix: &[u8], difficulty: u32, start: u64, end: u64) -> Vec<u64> {
    let mut after_prefix = Sha256::new();
    after_prefix.update(prefix);
    let mut buf = [0u8; 20];
    let mut found = Vec::new();
    for nonce in start..end {
        let mut hasher = after_prefix.clone();
        hasher.update(decimal(nonce, &mut buf));
        let digest: [u8; 32] = hasher.finalize().into();
        if leading_zero_bits(&digest) >= difficulty {
            found.push(nonce);
        }
    }
    found
}

/// The ASCII decimal of a nonce, kept in step with the nonce by adding one
/// digit-wise, so that the search never divides.
struct Counter {
    digits: [u8; 20],
    /// Where the decimal starts in `digits` (it is right-aligned).
    at: usize,
}

impl Counter {
    fn new(n: u64) -> Self {
        let mut digits = [0u8; 20];
        let at = 20 - decimal(n, &mut digits).len();
        Counter { digits, at }
    }

    fn digits(&self) -> &[u8] {
        &self.digits[self.at..]
    }

    /// Whether adding `n` (less than 10) keeps the same number of digits.
    fn same_length_after(&self, n: u8) -> bool {
        let digits = self.digits();
        digits[..digits.len() - 1].iter().any(|&d| d != b'9')
            || digits[digits.len() - 1] + n <= b'9'
    }

    fn increment(&mut self) {
        for at in (self.at..20).rev() {
            if self.digits[at] == b'9' {
                self.digits[at] = b'0';
            } else {
                self.digits[at] += 1;
                return;
            }
        }
        // All nines: one digit more. The caller never goes past u64::MAX.
        self.at -= 1;
        self.digits[self.at] = b'1';
    }
}

/// The end of a message whose first whole blocks are already compressed: the
/// prefix's tail, then the decimal, the 0x80 byte, zeros and the message's
/// length in bits, in one or two blocks, for decimals of one length.
struct FinalBlocks {
    /// The blocks as bytes, with zeros for the decimal.
    bytes: [u8; 128],
    /// The same as big-endian words, in every lane.
    words: [Lanes; 32],
    /// Where the decimal starts, and its length.
    at: usize,
    len: usize,
    /// The words the decimal falls in: the only ones that differ by lane.
    touched: Range<usize>,
    blocks: usize,
}

impl FinalBlocks {
    fn new(prefix: &[u8], tail: &[u8], len: usize) -> Self {
        let at = tail.len();
        let blocks = if at + len + 9 <= 64 { 1 } else { 2 };
        let mut bytes = [0u8; 128];
        bytes[..at].copy_from_slice(tail);
        bytes[at + len] = 0x80;
        let bits = (prefix.len() as u64 + len as u64).wrapping_mul(8);
        bytes[64 * blocks - 8..64 * blocks].copy_from_slice(&bits.to_be_bytes());
        let words = std::array::from_fn(|i| [word_at(&bytes, 4 * i); 4]);
        FinalBlocks {
            bytes,
            words,
            at,
            len,
            touched: at / 4..(at + len).div_ceil(4),
            blocks,
        }
    }

    /// Writes one lane's decimal into `words`, a copy of `self.words`.
    fn write_lane(&self, words: &mut [Lanes; 32], lane: usize, decimal: &[u8]) {
        debug_assert_eq!(decimal.len(), self.len);
        let first = 4 * self.touched.start;
        let mut bytes = [0u8; 24];
        let bytes = &mut bytes[..4 * self.touched.len()];
        bytes.copy_from_slice(&self.bytes[first..4 * self.touched.end]);
        bytes[self.at - first..self.at - first + self.len].copy_from_slice(decimal);
        for (i, word) in self.touched.clone().zip(&mut words[self.touched.clone()]) {
            word[lane] = word_at(bytes, 4 * i - first);
        }
    }
}

/// The big-endian word at `at` in `bytes`.
fn word_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// Leading zero bits of a digest given as its eight state words.
fn leading_zero_bits_of_words(words: impl IntoIterator<Item = u32>) -> u32 {
    let mut bits = 0;
    for word in words {
        if word != 0 {
            return bits + word.leading_zeros();
        }
        bits += 32;
    }
    bits
}

/// [`search`] with [`sha256x4`], four nonces at a time: the prefix's whole
/// blocks are compressed once, and each group of four nonces whose decimals
/// have the same length costs one or two four-lane compressions. A group whose
/// decimals straddle a power of ten, and the last few nonces, go one at a time.
pub fn search_four_at_a_time(prefix: &[u8], difficulty: u32, start: u64, end: u64) -> Vec<u64> {
    let whole = prefix.len() / 64 * 64;
    let (head, tail) = prefix.split_at(whole);
    let mut midstate = sha256x4::INITIAL_STATE;
    let head: Vec<[u8; 64]> = head
        .chunks_exact(64)
        .map(|block| block.try_into().expect("64 bytes"))
        .collect();
    sha2::block_api::compress256(&mut midstate, &head);
    let mut after_prefix = Sha256::new();
    after_prefix.update(prefix);

    let mut found = Vec::new();
    let mut counter = Counter::new(start);
    let mut last: Option<FinalBlocks> = None;
    let mut nonce = start;
    while nonce < end {
        let len = counter.digits().len();
        if end - nonce < 4 || !counter.same_length_after(3) {
            let mut hasher = after_prefix.clone();
            hasher.update(counter.digits());
            let digest: [u8; 32] = hasher.finalize().into();
            if leading_zero_bits(&digest) >= difficulty {
                found.push(nonce);
            }
            nonce += 1;
            if nonce < end {
                counter.increment();
            }
            continue;
        }
        let message = match &mut last {
            Some(message) if message.len == len => message,
            slot => slot.insert(FinalBlocks::new(prefix, tail, len)),
        };
        let mut words = message.words;
        for lane in 0..4 {
            message.write_lane(&mut words, lane, counter.digits());
            counter.increment();
        }
        let mut state = sha256x4::splat(&midstate);
        for block in words.chunks_exact(16).take(message.blocks) {
            let block: &[Lanes; 16] = block.try_into().expect("16 words");
            sha256x4::compress(&mut state, block);
        }
        for lane in 0..4 {
            if leading_zero_bits_of_words(state.iter().map(|word| word[lane])) >= difficulty {
                found.push(nonce + lane as u64);
            }
        }
        nonce += 4;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn digests_hash_the_prefix_then_the_decimal() {
        // The FIPS 180-2 vector pins the hash itself; the rest pin the layout.
        assert_eq!(
            hex(&Sha256::digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(digest(b"abc", 1), <[u8; 32]>::from(Sha256::digest(b"abc1")));
        assert_eq!(digest(b"", 0), <[u8; 32]>::from(Sha256::digest(b"0")));
        assert_eq!(
            digest(b"x", 1234567890),
            <[u8; 32]>::from(Sha256::digest(b"x1234567890"))
        );
        assert_eq!(
            digest(b"x", u64::MAX),
            <[u8; 32]>::from(Sha256::digest(b"x18446744073709551615"))
        );
    }

    #[test]
    fn leading_zero_bits_count_from_the_first_byte() {
        assert_eq!(leading_zero_bits(&[0x80, 0]), 0);
        assert_eq!(leading_zero_bits(&[0x01, 0xff]), 7);
        assert_eq!(leading_zero_bits(&[0x00, 0x10]), 11);
        assert_eq!(leading_zero_bits(&[0, 0]), 16);
    }

    #[test]
    fn search_matches_a_brute_force_filter() {
        let prefix = b"browsergrid";
        let found = search(prefix, 8, 0, 5_000);
        let expected: Vec<u64> = (0..5_000)
            .filter(|&n| leading_zero_bits(&Sha256::digest(format!("browsergrid{n}"))) >= 8)
            .collect();
        assert_eq!(found, expected);
        // About 1 in 256 should qualify.
        assert!((5..=40).contains(&found.len()), "{}", found.len());
        assert!(found.iter().all(|&n| meets(prefix, n, 8)));
        assert!(search(prefix, 8, 10, 10).is_empty());
    }

    /// The nonces in `start..end` whose digest, hashed whole by `sha2`, has
    /// `difficulty` leading zero bits.
    fn brute_force(prefix: &[u8], difficulty: u32, start: u64, end: u64) -> Vec<u64> {
        (start..end)
            .filter(|&n| meets(prefix, n, difficulty))
            .collect()
    }

    /// A prefix of `len` bytes, all byte values mixed in.
    fn prefix_of(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 151 + len * 7) as u8).collect()
    }

    #[test]
    fn four_at_a_time_matches_brute_force_across_blocks_and_powers_of_ten() {
        // Prefix tails of 0..=63 bytes and then some: the decimal, the 0x80
        // byte and the length fall in one final block or spill into a second.
        // Groups of four start at every offset from each power of ten.
        let mut ranges = vec![(0, 23), (1, 23), (2, 23), (3, 23), (5, 6), (7, 7), (12, 10)];
        for k in 1..=19 {
            let p = 10u64.pow(k);
            ranges.extend((4..8).map(|back| (p - back, p + 5)));
        }
        ranges.push((u64::MAX - 9, u64::MAX));
        ranges.push((u64::MAX - 2, u64::MAX));
        ranges.push((u64::MAX, u64::MAX));
        for len in 0..=130 {
            let prefix = prefix_of(len);
            for &(start, end) in &ranges {
                for difficulty in [0, 1, 8, 33, 256] {
                    assert_eq!(
                        search_four_at_a_time(&prefix, difficulty, start, end),
                        brute_force(&prefix, difficulty, start, end),
                        "prefix of {len} bytes, {start}..{end}, difficulty {difficulty}"
                    );
                }
            }
        }
    }

    #[test]
    fn four_at_a_time_finds_what_one_at_a_time_finds() {
        for prefix in [&b"browsergrid"[..], &[b'x'; 60], &[b'y'; 100]] {
            for difficulty in [1, 4, 8] {
                assert_eq!(
                    search_four_at_a_time(prefix, difficulty, 0, 3_000),
                    search_one_at_a_time(prefix, difficulty, 0, 3_000)
                );
            }
        }
        assert_eq!(
            search_four_at_a_time(b"browsergrid", 8, 0, 5_000),
            search(b"browsergrid", 8, 0, 5_000)
        );
    }

    #[test]
    fn leading_zero_bits_of_words_read_words_as_big_endian_bytes() {
        let words = |w: [u32; 8]| -> [u8; 32] {
            let mut bytes = [0; 32];
            for (chunk, word) in bytes.chunks_exact_mut(4).zip(w) {
                chunk.copy_from_slice(&word.to_be_bytes());
            }
            bytes
        };
        for w in [
            [0x8000_0000, 0, 0, 0, 0, 0, 0, 0],
            [0x0000_0001, 0, 0, 0, 0, 0, 0, 0],
            [0, 0x4000_0000, 1, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0, 0, 1],
            [0; 8],
        ] {
            assert_eq!(
                leading_zero_bits_of_words(w),
                leading_zero_bits(&words(w)),
                "{w:x?}"
            );
        }
        assert_eq!(
            leading_zero_bits_of_words([0, 0x4000_0000, 0, 0, 0, 0, 0, 0]),
            33
        );
        assert_eq!(leading_zero_bits_of_words([0; 8]), 256);
    }

    /// Starts near a power of ten or near the top more often than not.
    fn start() -> impl Strategy<Value = u64> {
        prop_oneof![
            any::<u64>(),
            (1u32..=19, 0u64..40).prop_map(|(k, back)| 10u64.pow(k).saturating_sub(back)),
            (0u64..40).prop_map(|back| u64::MAX - back),
        ]
    }

    proptest! {
        #[test]
        fn four_at_a_time_matches_brute_force(
            prefix in prop::collection::vec(any::<u8>(), 0..200),
            start in start(),
            len in 0u64..40,
            difficulty in 0u32..6,
        ) {
            let end = start.saturating_add(len);
            prop_assert_eq!(
                search_four_at_a_time(&prefix, difficulty, start, end),
                brute_force(&prefix, difficulty, start, end)
            );
        }

        #[test]
        fn leading_zero_bits_of_words_agree_with_bytes(
            zeros in 0usize..8,
            rest in any::<[u32; 8]>(),
        ) {
            let mut w = rest;
            w[..zeros].fill(0);
            let bytes: Vec<u8> = w.iter().flat_map(|word| word.to_be_bytes()).collect();
            prop_assert_eq!(leading_zero_bits_of_words(w), leading_zero_bits(&bytes));
        }
    }
}
