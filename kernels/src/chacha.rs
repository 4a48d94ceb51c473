//! ChaCha8 keystream blocks, four at a time.
//!
//! The `montecarlo-pi` kernel reads one ChaCha8 stream (the `rand_chacha`
//! layout: 64-bit block counter in words 12-13, stream 0 in words 14-15).
//! `rand_chacha` computes it with AVX2 natively but with scalar code in
//! WebAssembly; this module computes four consecutive blocks side by side,
//! each step one 128-bit simd128 instruction in WebAssembly.
//!
//! The state is "vertical": word `w` of the four blocks is one vector, lane
//! `j` belonging to block `counter + j`. A quarter round then works on whole
//! columns of lanes, so there are no shuffles between rounds, and the output
//! ([`Lanes`] per word) stays vertical for the caller to consume lane-wise.
//!
//! The vector is `core::arch::wasm32::v128` where simd128 is enabled, and a
//! plain `[u32; 4]` elsewhere. LLVM does not vectorise the plain form (it
//! compiled to scalar code for both x86-64 and WebAssembly), so natively this
//! is slower than `rand_chacha` and serves as the tested reference of the
//! same arithmetic. Both are safe code.

/// How many blocks [`blocks4`] computes at once.
pub const LANES: usize = 4;

/// 32-bit words in one ChaCha block.
pub const BLOCK_WORDS: usize = 16;

/// One 32-bit word of each of the four blocks.
pub type Lanes = [u32; LANES];

/// "expand 32-byte k", the ChaCha constant for 256-bit keys.
const CONSTANT: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];

/// The key as the eight little-endian words ChaCha works on.
pub fn key_words(key: &[u8; 32]) -> [u32; 8] {
    let mut words = [0u32; 8];
    for (word, bytes) in words.iter_mut().zip(key.chunks_exact(4)) {
        *word = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    }
    words
}

/// The ChaCha8 blocks `counter .. counter + 4` (wrapping at 2^64, as the
/// 64-bit counter does) of stream 0 under `key`, vertically: `out[w][j]` is
/// output word `w` of block `counter + j`.
#[inline]
pub fn blocks4(key: &[u32; 8], counter: u64) -> [Lanes; BLOCK_WORDS] {
    let input = initial_state(key, counter).map(vector::from_lanes);
    let mut x = input;
    // ChaCha8: four double rounds.
    double_round(&mut x);
    double_round(&mut x);
    double_round(&mut x);
    double_round(&mut x);
    std::array::from_fn(|w| vector::to_lanes(vector::add(x[w], input[w])))
}

fn initial_state(key: &[u32; 8], counter: u64) -> [Lanes; BLOCK_WORDS] {
    let mut state = [[0u32; LANES]; BLOCK_WORDS];
    for (word, constant) in state[..4].iter_mut().zip(CONSTANT) {
        *word = [constant; LANES];
    }
    for (word, key) in state[4..12].iter_mut().zip(key) {
        *word = [*key; LANES];
    }
    // The 64-bit counter: a lane past a 2^32 boundary carries into word 13.
    let blocks: [u64; LANES] = std::array::from_fn(|lane| counter.wrapping_add(lane as u64));
    state[12] = blocks.map(|block| block as u32);
    state[13] = blocks.map(|block| (block >> 32) as u32);
    // Words 14 and 15, the stream, stay 0.
    state
}

#[inline(always)]
fn double_round(x: &mut [vector::Vector; BLOCK_WORDS]) {
    // Columns.
    quarter_round(x, 0, 4, 8, 12);
    quarter_round(x, 1, 5, 9, 13);
    quarter_round(x, 2, 6, 10, 14);
    quarter_round(x, 3, 7, 11, 15);
    // Diagonals.
    quarter_round(x, 0, 5, 10, 15);
    quarter_round(x, 1, 6, 11, 12);
    quarter_round(x, 2, 7, 8, 13);
    quarter_round(x, 3, 4, 9, 14);
}

#[inline(always)]
fn quarter_round(x: &mut [vector::Vector; BLOCK_WORDS], a: usize, b: usize, c: usize, d: usize) {
    use vector::{add, xor_rotate};
    x[a] = add(x[a], x[b]);
    x[d] = xor_rotate::<16>(x[d], x[a]);
    x[c] = add(x[c], x[d]);
    x[b] = xor_rotate::<12>(x[b], x[c]);
    x[a] = add(x[a], x[b]);
    x[d] = xor_rotate::<8>(x[d], x[a]);
    x[c] = add(x[c], x[d]);
    x[b] = xor_rotate::<7>(x[b], x[c]);
}

/// Four 32-bit lanes as plain arrays: every target but WebAssembly with
/// simd128, and the one the tests run natively.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
mod vector {
    use super::{LANES, Lanes};

    pub type Vector = Lanes;

    #[inline(always)]
    pub fn from_lanes(lanes: Lanes) -> Vector {
        lanes
    }

    #[inline(always)]
    pub fn to_lanes(v: Vector) -> Lanes {
        v
    }

    #[inline(always)]
    pub fn add(a: Vector, b: Vector) -> Vector {
        std::array::from_fn(|j| a[j].wrapping_add(b[j]))
    }

    /// `(a ^ b).rotate_left(BY)` lane-wise.
    #[inline(always)]
    pub fn xor_rotate<const BY: u32>(a: Vector, b: Vector) -> Vector {
        let mut out = [0; LANES];
        for j in 0..LANES {
            out[j] = (a[j] ^ b[j]).rotate_left(BY);
        }
        out
    }
}

/// Four 32-bit lanes as one WebAssembly SIMD vector. Rotations by 16 and 8
/// are byte shuffles (one instruction in the engine), the others two shifts.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod vector {
    use super::Lanes;
    use core::arch::wasm32::{
        i8x16_shuffle, i32x4_add, i32x4_shl, u32x4, u32x4_extract_lane, u32x4_shr, v128, v128_or,
        v128_xor,
    };

    pub type Vector = v128;

    #[inline(always)]
    pub fn from_lanes(lanes: Lanes) -> Vector {
        u32x4(lanes[0], lanes[1], lanes[2], lanes[3])
    }

    #[inline(always)]
    pub fn to_lanes(v: Vector) -> Lanes {
        [
            u32x4_extract_lane::<0>(v),
            u32x4_extract_lane::<1>(v),
            u32x4_extract_lane::<2>(v),
            u32x4_extract_lane::<3>(v),
        ]
    }

    #[inline(always)]
    pub fn add(a: Vector, b: Vector) -> Vector {
        i32x4_add(a, b)
    }

    /// `(a ^ b).rotate_left(BY)` lane-wise.
    #[inline(always)]
    pub fn xor_rotate<const BY: u32>(a: Vector, b: Vector) -> Vector {
        let v = v128_xor(a, b);
        match BY {
            // Little-endian lanes: byte k of the result is byte k - 2 (or
            // k - 1) of the input, modulo 4.
            16 => i8x16_shuffle::<2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13>(v, v),
            8 => i8x16_shuffle::<3, 0, 1, 2, 7, 4, 5, 6, 11, 8, 9, 10, 15, 12, 13, 14>(v, v),
            _ => v128_or(i32x4_shl(v, BY), u32x4_shr(v, 32 - BY)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha8Rng;
    use rand_chacha::rand_core::{Rng, SeedableRng};

    /// Blocks `counter .. counter + 4` from `rand_chacha`, horizontally.
    fn reference(key: [u8; 32], counter: u64) -> Vec<[u32; BLOCK_WORDS]> {
        let mut rng = ChaCha8Rng::from_seed(key);
        rng.set_word_pos(u128::from(counter) * BLOCK_WORDS as u128);
        (0..LANES)
            .map(|_| std::array::from_fn(|_| rng.next_u32()))
            .collect()
    }

    fn horizontal(vertical: [Lanes; BLOCK_WORDS]) -> Vec<[u32; BLOCK_WORDS]> {
        (0..LANES)
            .map(|j| std::array::from_fn(|w| vertical[w][j]))
            .collect()
    }

    fn keys() -> Vec<[u8; 32]> {
        let mut keys = vec![[0u8; 32], [0xff; 32]];
        for seed in [1u64, 42, 2024, u64::MAX] {
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&seed.to_le_bytes());
            keys.push(key);
        }
        keys.push(std::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ 0x5a));
        keys
    }

    #[test]
    fn matches_rand_chacha_for_several_keys_and_counters() {
        let counters = [
            0,
            1,
            3,
            4,
            1000,
            // Lanes on both sides of 2^32: the carry into word 13.
            (1 << 32) - 4,
            (1 << 32) - 3,
            (1 << 32) - 1,
            1 << 32,
            (5 << 32) - 2,
            (1 << 51) - 1,
            // And of 2^64, where the counter wraps to 0.
            u64::MAX - 3,
            u64::MAX - 1,
            u64::MAX,
        ];
        for key in keys() {
            for counter in counters {
                assert_eq!(
                    horizontal(blocks4(&key_words(&key), counter)),
                    reference(key, counter),
                    "key {key:?}, counter {counter}"
                );
            }
        }
    }

    #[test]
    fn the_counter_wraps_at_2_pow_64() {
        let key = key_words(&[7; 32]);
        let wrapped = blocks4(&key, u64::MAX - 1);
        let low = blocks4(&key, 0);
        for w in 0..BLOCK_WORDS {
            assert_eq!(wrapped[w][2..], low[w][..2], "word {w}");
        }
    }

    #[test]
    fn key_words_are_little_endian() {
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(&[1, 2, 3, 4]);
        key[31] = 0x80;
        let words = key_words(&key);
        assert_eq!(words[0], 0x0403_0201);
        assert_eq!(words[7], 0x8000_0000);
        assert_eq!(words[1..7], [0; 6]);
    }

    proptest::proptest! {
        #[test]
        fn matches_rand_chacha_anywhere(
            key in proptest::array::uniform32(proptest::num::u8::ANY),
            counter in proptest::num::u64::ANY,
        ) {
            proptest::prop_assert_eq!(
                horizontal(blocks4(&key_words(&key), counter)),
                reference(key, counter)
            );
        }
    }
}
