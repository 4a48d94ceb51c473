//! The `montecarlo-pi` kernel. Sample `i` is the point (x, y) made from the
//! 64-bit words `2i` and `2i + 1` of one ChaCha8 stream keyed by the seed, so a
//! seed has one answer whatever the task count or the worker.
//!
//! The stream: ChaCha8 as in `rand_chacha` (64-bit block counter, stream 0),
//! key = the seed as 8 little-endian bytes followed by 24 zero bytes. Each
//! 64-bit word is two consecutive 32-bit output words, low word first; a word
//! `w` becomes a double in [0, 1) as `(w >> 11) * 2^-53`. The point is inside
//! when `x*x + y*y <= 1`.
//!
//! Two implementations give the same bits. Natively the stream comes from
//! `rand_chacha`, which picks AVX2 at run time. In WebAssembly with simd128
//! (the browser worker) `rand_chacha` is scalar and ran 3x slower than
//! natively, so there the kernel computes four blocks at once with
//! [`chacha::blocks4`]: one block is exactly four samples, so a call gives 16,
//! sample `i` living in block `i / 4` at word `(i % 4) * 4`.

use crate::chacha::{self, BLOCK_WORDS, LANES, Lanes};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};

/// The ChaCha8 key for `seed`.
pub fn key(seed: u64) -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key
}

fn unit(word: u64) -> f64 {
    (word >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// How many of samples `first..first + count` fall inside the quarter disc.
pub fn count_inside(seed: u64, first: u64, count: u64) -> u64 {
    // Measured (see the module docs): `blocks4` is the faster in WebAssembly,
    // `rand_chacha` natively, where the portable `blocks4` is not vectorised.
    if cfg!(all(target_arch = "wasm32", target_feature = "simd128")) {
        count_inside_by_four_blocks(seed, first, count)
    } else {
        count_inside_by_rand_chacha(seed, first, count)
    }
}

/// [`count_inside`] through `rand_chacha`, sample by sample.
fn count_inside_by_rand_chacha(seed: u64, first: u64, count: u64) -> u64 {
    let mut rng = ChaCha8Rng::from_seed(key(seed));
    // Four 32-bit words per sample.
    rng.set_word_pos(u128::from(first) * 4);
    let mut inside = 0;
    for _ in 0..count {
        let x = unit(rng.next_u64());
        let y = unit(rng.next_u64());
        inside += u64::from(x * x + y * y <= 1.0);
    }
    inside
}

/// Samples in one ChaCha block: 16 words, 4 per sample.
const SAMPLES_PER_BLOCK: u64 = 4;

/// Samples in one call of [`chacha::blocks4`].
const SAMPLES_PER_GROUP: u64 = SAMPLES_PER_BLOCK * LANES as u64;

/// [`count_inside`] through [`chacha::blocks4`], 16 samples a call.
fn count_inside_by_four_blocks(seed: u64, first: u64, count: u64) -> u64 {
    let key = chacha::key_words(&key(seed));
    // The first group starts at the block holding sample `first` and skips
    // the samples before it; groups need not be aligned to four blocks.
    let mut block = first / SAMPLES_PER_BLOCK;
    let mut skip = first % SAMPLES_PER_BLOCK;
    let mut remaining = count;
    let mut inside = 0;
    while remaining > 0 {
        let words = chacha::blocks4(&key, block);
        let take = remaining.min(SAMPLES_PER_GROUP - skip);
        inside += if take == SAMPLES_PER_GROUP {
            inside_of_group(&words)
        } else {
            // A ragged start or end.
            (skip..skip + take)
                .map(|i| inside_of_sample(&words, i))
                .sum()
        };
        remaining -= take;
        skip = 0;
        // Wrapping like the 64-bit counter (and `rand_chacha`) does.
        block = block.wrapping_add(LANES as u64);
    }
    inside
}

/// Whether sample `i` (0..16) of a group is inside.
fn inside_of_sample(words: &[Lanes; BLOCK_WORDS], i: u64) -> u64 {
    let lane = (i / SAMPLES_PER_BLOCK) as usize;
    let first_word = (i % SAMPLES_PER_BLOCK) as usize * 4;
    let word = |k: usize| u64::from(words[first_word + k][lane]);
    let x = unit(word(0) | word(1) << 32);
    let y = unit(word(2) | word(3) << 32);
    u64::from(x * x + y * y <= 1.0)
}

/// How many of the 16 samples of a group are inside.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn inside_of_group(words: &[Lanes; BLOCK_WORDS]) -> u64 {
    (0..SAMPLES_PER_GROUP)
        .map(|i| inside_of_sample(words, i))
        .sum()
}

/// How many of the 16 samples of a group are inside, two at a time in
/// `f64x2` vectors. A word `w = hi << 32 | lo` becomes
/// `hi * 2^-32 + (lo >> 11) * 2^-53`: both terms and their sum are exact,
/// so this is bit for bit [`unit`] (`unit_from_halves_is_exact` checks it).
/// The arithmetic after is the same IEEE operations in the same order.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn inside_of_group(words: &[Lanes; BLOCK_WORDS]) -> u64 {
    use core::arch::wasm32::{
        f64x2_add, f64x2_convert_low_i32x4, f64x2_convert_low_u32x4, f64x2_le, f64x2_mul,
        f64x2_splat, i32x4_shuffle, i64x2_extract_lane, i64x2_splat, i64x2_sub, u32x4, u32x4_shr,
        v128,
    };
    const TWO_POW_MINUS_32: f64 = 1.0 / (1u64 << 32) as f64;
    const TWO_POW_MINUS_53: f64 = 1.0 / (1u64 << 53) as f64;
    let vector = |w: usize| u32x4(words[w][0], words[w][1], words[w][2], words[w][3]);
    // Lanes 0-1 and 2-3 of words (lo, hi) as doubles in [0, 1).
    let units = |lo: v128, hi: v128| {
        let lo = u32x4_shr(lo, 11);
        let unit = |lo, hi| {
            f64x2_add(
                f64x2_mul(f64x2_convert_low_u32x4(hi), f64x2_splat(TWO_POW_MINUS_32)),
                // lo < 2^21: the signed conversion is exact and cheaper.
                f64x2_mul(f64x2_convert_low_i32x4(lo), f64x2_splat(TWO_POW_MINUS_53)),
            )
        };
        let high = |v| i32x4_shuffle::<2, 3, 2, 3>(v, v);
        [unit(lo, hi), unit(high(lo), high(hi))]
    };
    let one = f64x2_splat(1.0);
    // Subtracting the all-ones (-1) mask of `<=` counts a sample inside.
    let mut inside = i64x2_splat(0);
    for w in (0..BLOCK_WORDS).step_by(4) {
        let xs = units(vector(w), vector(w + 1));
        let ys = units(vector(w + 2), vector(w + 3));
        for (x, y) in xs.into_iter().zip(ys) {
            let r2 = f64x2_add(f64x2_mul(x, x), f64x2_mul(y, y));
            inside = i64x2_sub(inside, f64x2_le(r2, one));
        }
    }
    (i64x2_extract_lane::<0>(inside) + i64x2_extract_lane::<1>(inside)) as u64
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_split_of_the_samples_gives_the_same_total() {
        let seed = 42;
        let whole = count_inside(seed, 0, 100_000);
        for parts in [1u64, 2, 3, 7, 1000] {
            let total: u64 = (0..parts)
                .map(|i| {
                    let (a, b) = (100_000 * i / parts, 100_000 * (i + 1) / parts);
                    count_inside(seed, a, b - a)
                })
                .sum();
            assert_eq!(total, whole, "{parts} parts");
        }
    }

    #[test]
    fn the_estimate_is_close_to_pi() {
        let samples = 1_000_000;
        let inside = count_inside(7, 0, samples);
        let estimate = 4.0 * inside as f64 / samples as f64;
        // Standard deviation of the estimate is about 0.0016 here.
        assert!((estimate - std::f64::consts::PI).abs() < 0.01, "{estimate}");
    }

    #[test]
    fn seeds_give_different_streams() {
        assert_ne!(count_inside(1, 0, 10_000), count_inside(2, 0, 10_000));
        assert_eq!(count_inside(1, 0, 10_000), count_inside(1, 0, 10_000));
    }

    #[test]
    fn the_stream_is_the_documented_chacha8() {
        // The first output words for the zero key, pinned so that a change of
        // generator or key layout can never pass unnoticed.
        let mut rng = ChaCha8Rng::from_seed(key(0));
        let first = rng.next_u64();
        let mut rng = ChaCha8Rng::from_seed([0u8; 32]);
        assert_eq!(rng.next_u64(), first);
        assert_eq!(unit(u64::MAX), 1.0 - f64::EPSILON / 2.0);
        assert_eq!(unit(0), 0.0);
        assert_eq!(count_inside(5, 3, 0), 0);
    }
}

#[cfg(test)]
mod four_blocks {
    //! The four-block path (the browser worker's) against `rand_chacha`'s.
    use super::*;
    use proptest::prelude::{any, prop_assert_eq, proptest};

    fn check(seed: u64, first: u64, count: u64) {
        assert_eq!(
            count_inside_by_four_blocks(seed, first, count),
            count_inside_by_rand_chacha(seed, first, count),
            "seed {seed}, first {first}, count {count}"
        );
    }

    #[test]
    fn ragged_starts_and_ends_give_the_reference_counts() {
        for seed in [0, 1, 42, 2024, u64::MAX] {
            for first in [0, 1, 2, 3, 4, 5, 15, 16, 17, 12_345, 999_983] {
                for count in [0, 1, 2, 3, 4, 5, 12, 13, 15, 16, 17, 31, 32, 33, 100, 1000] {
                    check(seed, first, count);
                }
            }
        }
    }

    #[test]
    fn long_runs_give_the_reference_counts() {
        check(42, 0, 100_000);
        check(7, 999_983, 50_001);
        check(2024, 3, 200_000);
    }

    #[test]
    fn counters_past_2_pow_32_and_near_the_largest_job_give_the_reference_counts() {
        // Block 2^32 is sample 2^34: lanes on both sides of the carry into
        // the counter's high word.
        for first in [(1 << 34) - 17, (1 << 34) - 5, (1 << 34) - 1, 1 << 34] {
            check(9, first, 40);
        }
        check(9, crate::MAX_SAFE_INTEGER - 100, 101);
    }

    #[test]
    fn every_sample_of_a_group_is_the_reference_sample() {
        // One sample at a time, so a misplaced word cannot hide in a total.
        for seed in [3, 11] {
            for first in 0..64 {
                check(seed, first, 1);
            }
        }
    }

    #[test]
    fn unit_from_halves_is_exact() {
        // The browser worker's `inside_of_group` builds a double from the
        // two halves of a word; this is the identity it relies on.
        let from_halves = |word: u64| {
            let (lo, hi) = (word as u32, (word >> 32) as u32);
            f64::from(hi) * (1.0 / (1u64 << 32) as f64)
                + f64::from(lo >> 11) * (1.0 / (1u64 << 53) as f64)
        };
        for word in [
            0,
            1,
            2047,
            2048,
            u64::MAX,
            u64::MAX - 2047,
            1 << 63,
            u64::from(u32::MAX),
        ] {
            assert_eq!(
                from_halves(word).to_bits(),
                unit(word).to_bits(),
                "{word:#x}"
            );
        }
        let mut rng = ChaCha8Rng::from_seed(key(1));
        for _ in 0..100_000 {
            let word = rng.next_u64();
            assert_eq!(
                from_halves(word).to_bits(),
                unit(word).to_bits(),
                "{word:#x}"
            );
        }
    }

    proptest! {
        #[test]
        fn any_run_gives_the_reference_count(
            seed in any::<u64>(),
            first in 0..=crate::MAX_SAFE_INTEGER,
            count in 0u64..200,
        ) {
            prop_assert_eq!(
                count_inside_by_four_blocks(seed, first, count),
                count_inside_by_rand_chacha(seed, first, count)
            );
        }
    }
}

#[cfg(test)]
mod independent_check {
    /// Counts computed by an independent, from-the-specification ChaCha8 in
    /// Python (the algorithm PROTOCOL.md documents), pinning the stream layout
    /// that third-party workers must reproduce.
    #[test]
    fn matches_an_independent_implementation_of_the_documented_stream() {
        assert_eq!(super::count_inside(42, 0, 100_000), 78_557);
        assert_eq!(super::count_inside(42, 12_345, 1_000), 799);
        assert_eq!(super::count_inside(7, 999_983, 5_000), 3_985);
    }
}
