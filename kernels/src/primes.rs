//! The `primes` kernel: count the primes in `[start, end)` with a segmented,
//! odd-only sieve of Eratosthenes, a byte per odd number. Memory is one
//! fixed-size segment, the base primes up to `sqrt(end)` and a repeating
//! pattern of the smallest primes' multiples, whatever the width of the range.
//!
//! Written for WebAssembly as much as for native code: a mark is one byte
//! store (no read-modify-write of a bit), the multiples of 3 to 13 are
//! copied into each segment from the pattern rather than marked, and the
//! primes below the segment's width carry their next multiple from one
//! segment to the next instead of dividing for it. Engines do not unroll or
//! vectorise a marking loop the way LLVM does for native code; these leave
//! them less to do.

/// Odd numbers per sieve segment: a byte each, 64 KiB, which stays in L2.
const SEGMENT_ODDS: usize = 1 << 16;
/// The smallest odd primes, whose multiples are copied into each segment
/// from a repeating pattern instead of marked one by one: about half of a
/// segment's marks.
const PRESIEVED: [u64; 5] = [3, 5, 7, 11, 13];
/// The pattern's period, in odd numbers: 3 * 5 * 7 * 11 * 13.
const PERIOD: usize = 15_015;

/// Byte j says whether the odd number 2j + 1 is a multiple of one of
/// [`PRESIEVED`] (1) or not (0); long enough that a segment can start
/// anywhere in the first period.
fn pattern() -> Vec<u8> {
    let mut bytes = vec![0u8; PERIOD + SEGMENT_ODDS];
    for p in PRESIEVED {
        // 2j + 1 = p (2i + 1) for j = p i + (p - 1) / 2.
        let p = p as usize;
        for byte in bytes.iter_mut().skip((p - 1) / 2).step_by(p) {
            *byte = 1;
        }
    }
    bytes
}

/// The odd primes up to some limit, kept between tasks so that many small
/// tasks in the same neighbourhood do not sieve them again.
#[derive(Debug, Default, Clone)]
pub struct BasePrimes {
    /// Every odd prime `<= limit`.
    primes: Vec<u32>,
    limit: u64,
    /// [`pattern`], made on first use.
    pattern: Vec<u8>,
}

impl BasePrimes {
    pub fn new() -> BasePrimes {
        BasePrimes::default()
    }

    /// Makes sure every odd prime up to `limit` is known.
    fn ensure(&mut self, limit: u64) {
        if self.pattern.is_empty() {
            self.pattern = pattern();
        }
        if limit <= self.limit {
            return;
        }
        // Grow geometrically so a sweep of rising ranges re-sieves rarely.
        let limit = limit
            .max(
                self.limit
                    .saturating_mul(2)
                    .min(crate::MAX_SAFE_INTEGER.isqrt()),
            )
            .max(1 << 16);
        // composite[i] says whether 2i + 1 is composite, for 2i + 1 <= limit.
        let odds = (limit / 2 + 1) as usize;
        let mut composite = vec![false; odds];
        let mut i = 1;
        while (2 * i + 1) * (2 * i + 1) <= limit as usize {
            if !composite[i] {
                let p = 2 * i + 1;
                let mut j = p * p / 2;
                while j < odds {
                    composite[j] = true;
                    j += p;
                }
            }
            i += 1;
        }
        self.primes = (1..odds)
            .filter(|&i| !composite[i])
            .map(|i| (2 * i + 1) as u32)
            .collect();
        self.limit = limit;
    }
}

/// The index, from `seg_low`'s, of the first odd multiple of `p` that is at
/// least `seg_low` and at least `p * p` (never `p` itself). `seg_low` is odd.
fn first_multiple(p: u64, seg_low: u64) -> u64 {
    let mut multiple = (p * p).max(seg_low.div_ceil(p) * p);
    if multiple.is_multiple_of(2) {
        multiple += p;
    }
    (multiple - seg_low) / 2
}

/// Counts the primes p with `start <= p < end`. Works for any `end` up to
/// [`crate::MAX_SAFE_INTEGER`] (base primes then reach about 9.5e7).
pub fn count_primes(start: u64, end: u64, base: &mut BasePrimes) -> u64 {
    if end <= start {
        return 0;
    }
    let mut count = u64::from(start <= 2 && 2 < end);
    // The first odd number >= max(start, 3).
    let low = start.max(3) | 1;
    if low >= end {
        return count;
    }
    let last = end - 1;
    base.ensure(last.isqrt());
    let root = last.isqrt();
    let base_primes = &base.primes[..base.primes.partition_point(|&p| u64::from(p) <= root)];
    // The presieved primes come first; the rest are marked. Those below a
    // segment's width (the small ones) keep where their next multiple falls,
    // as an index from the next segment's start; the large ones, which mark
    // a segment at most once, divide for it.
    let marked = &base_primes[base_primes.partition_point(|&p| p <= 13)..];
    let small = marked.partition_point(|&p| (p as usize) < SEGMENT_ODDS);
    let (small, large) = marked.split_at(small);
    let mut next: Vec<u32> = Vec::new();

    let total_odds = (last - low) / 2 + 1;
    // No wider than the range: tiny tasks are common.
    let mut segment = vec![0u8; (SEGMENT_ODDS as u64).min(total_odds) as usize];
    let mut offset = 0;
    while offset < total_odds {
        let odds = (SEGMENT_ODDS as u64).min(total_odds - offset) as usize;
        let seg_low = low + 2 * offset;
        let seg_high = seg_low + 2 * (odds as u64 - 1);
        let segment = &mut segment[..odds];
        // Segment byte b is the odd number seg_low + 2b: pattern byte
        // (seg_low - 1) / 2 + b.
        let shift = ((seg_low - 1) / 2 % PERIOD as u64) as usize;
        segment.copy_from_slice(&base.pattern[shift..shift + odds]);
        // The presieved primes themselves are prime.
        for p in PRESIEVED {
            if (seg_low..=seg_high).contains(&p) {
                segment[((p - seg_low) / 2) as usize] = 0;
            }
        }
        for (i, &p) in small.iter().enumerate() {
            let p64 = u64::from(p);
            if p64 * p64 > seg_high {
                break;
            }
            // A prime's first segment is where its square is, or this one.
            let mut at = match next.get(i) {
                Some(&at) => at as usize,
                None => first_multiple(p64, seg_low) as usize,
            };
            while at < odds {
                segment[at] = 1;
                at += p as usize;
            }
            let at = (at - odds) as u32;
            match next.get_mut(i) {
                Some(slot) => *slot = at,
                None => next.push(at),
            }
        }
        for &p in large {
            let p = u64::from(p);
            if p * p > seg_high {
                break;
            }
            let mut at = first_multiple(p, seg_low) as usize;
            while at < odds {
                segment[at] = 1;
                at += p as usize;
            }
        }
        let composite: usize = segment.iter().map(|&b| usize::from(b)).sum();
        count += odds as u64 - composite as u64;
        offset += odds as u64;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(start: u64, end: u64) -> u64 {
        count_primes(start, end, &mut BasePrimes::new())
    }

    fn naive(start: u64, end: u64) -> u64 {
        (start..end)
            .filter(|&n| n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0))
            .count() as u64
    }

    #[test]
    fn known_values_of_the_prime_counting_function() {
        assert_eq!(count(0, 10), 4);
        assert_eq!(count(0, 100), 25);
        assert_eq!(count(0, 1_000), 168);
        assert_eq!(count(0, 1_000_000), 78_498);
        assert_eq!(count(0, 10_000_000), 664_579);
    }

    #[test]
    fn ranges_far_from_zero() {
        // pi(10^12 + 10^6) - pi(10^12), cross-checked against the naive count
        // on a small window below.
        assert_eq!(
            count(1_000_000_000_000, 1_000_000_000_100),
            naive_big(1_000_000_000_000, 1_000_000_000_100)
        );
        // The largest primes below 2^53: 2^53 - 111 is prime.
        let top = crate::MAX_SAFE_INTEGER + 1;
        assert_eq!(count(top - 111, top - 110), 1);
        assert_eq!(count(top - 110, top), naive_big(top - 110, top));
    }

    fn naive_big(start: u64, end: u64) -> u64 {
        (start..end)
            .filter(|&n| {
                n >= 2
                    && n % 2 != 0
                    && (3..)
                        .step_by(2)
                        .take_while(|d| d * d <= n)
                        .all(|d| n % d != 0)
            })
            .count() as u64
    }

    #[test]
    fn edges_and_empty_ranges() {
        assert_eq!(count(0, 0), 0);
        assert_eq!(count(7, 7), 0);
        assert_eq!(count(9, 3), 0);
        assert_eq!(count(0, 2), 0);
        assert_eq!(count(2, 3), 1);
        assert_eq!(count(3, 4), 1);
        assert_eq!(count(1, 2), 0);
        assert_eq!(count(4, 5), 0);
        assert_eq!(count(25, 26), 0);
    }

    #[test]
    fn agrees_with_trial_division_on_every_small_window() {
        let mut base = BasePrimes::new();
        for start in 0..300 {
            for len in [0, 1, 2, 3, 17, 64, 129] {
                assert_eq!(
                    count_primes(start, start + len, &mut base),
                    naive(start, start + len),
                    "[{start}, {})",
                    start + len
                );
            }
        }
    }

    #[test]
    fn the_presieve_pattern_lines_up_wherever_a_segment_starts() {
        // Windows at 400 starting points spread over several periods of the
        // pattern (15,015 odd numbers), so that it is read from many
        // offsets, zero included.
        let mut base = BasePrimes::new();
        let period = 2 * PERIOD as u64;
        for i in 0..400u64 {
            let start = 1_000_000_000 + i * 1_009 + (i % 7) * period;
            assert_eq!(
                count_primes(start, start + 131, &mut base),
                naive_big(start, start + 131),
                "[{start}, {})",
                start + 131
            );
        }
        let aligned = 5 * period + 1;
        assert_eq!(
            count_primes(aligned, aligned + 640, &mut base),
            naive_big(aligned, aligned + 640)
        );
    }

    #[test]
    fn segments_join_without_gaps() {
        // A range several segments wide, split at awkward places.
        let width = 2 * SEGMENT_ODDS as u64;
        let (start, end) = (1_000_001, 1_000_001 + 5 * width + 12_345);
        let whole = count(start, end);
        let mut base = BasePrimes::new();
        let mid = start + width + 1;
        assert_eq!(
            count_primes(start, mid, &mut base) + count_primes(mid, end, &mut base),
            whole
        );
        assert_eq!(whole, count(0, end) - count(0, start));
        // Far from zero, where primes start marking in later segments and
        // the small ones carry their next multiple over many segments.
        let start = 4_000_000_000_000u64;
        let end = start + 40 * width + 777;
        let mut pieces = 0;
        let mut at = start;
        for cut in [3, 2 * width - 1, 7 * width + 5, 20 * width] {
            pieces += count_primes(at, start + cut, &mut base);
            at = start + cut;
        }
        pieces += count_primes(at, end, &mut base);
        assert_eq!(pieces, count(start, end));
        assert_eq!(count(start, start + 2_000), naive_big(start, start + 2_000));
    }
}
