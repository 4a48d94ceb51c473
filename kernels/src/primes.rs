//! The `primes` kernel: count the primes in `[start, end)` with a segmented,
//! odd-only sieve of Eratosthenes. Memory is one fixed-size segment plus the
//! base primes up to `sqrt(end)`, whatever the width of the range.

/// Odd numbers per sieve segment: 2^18 bits, 32 KiB, which stays in L2.
const SEGMENT_ODDS: u64 = 1 << 18;

/// The odd primes up to some limit, kept between tasks so that many small
/// tasks in the same neighbourhood do not sieve them again.
#[derive(Debug, Default, Clone)]
pub struct BasePrimes {
    /// Every odd prime `<= limit`.
    primes: Vec<u32>,
    limit: u64,
}

impl BasePrimes {
    pub fn new() -> BasePrimes {
        BasePrimes::default()
    }

    /// Makes sure every odd prime up to `limit` is known.
    fn ensure(&mut self, limit: u64) {
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

    let total_odds = (last - low) / 2 + 1;
    let words = SEGMENT_ODDS.div_ceil(64) as usize;
    let mut segment = vec![0u64; words];
    let mut offset = 0;
    while offset < total_odds {
        let odds = SEGMENT_ODDS.min(total_odds - offset);
        let seg_low = low + 2 * offset;
        let seg_high = seg_low + 2 * (odds - 1);
        segment.iter_mut().for_each(|w| *w = 0);
        for &p in base_primes {
            let p = u64::from(p);
            let square = p * p;
            if square > seg_high {
                break;
            }
            // The first odd multiple of p in the segment, and never p itself.
            let mut multiple = square.max(seg_low.div_ceil(p) * p);
            if multiple % 2 == 0 {
                multiple += p;
            }
            let mut bit = (multiple - seg_low) / 2;
            while bit < odds {
                segment[(bit / 64) as usize] |= 1 << (bit % 64);
                bit += p;
            }
        }
        let full_words = (odds / 64) as usize;
        let mut marked: u64 = segment[..full_words]
            .iter()
            .map(|w| u64::from(w.count_ones()))
            .sum();
        let tail = odds % 64;
        if tail > 0 {
            let mask = (1u64 << tail) - 1;
            marked += u64::from((segment[full_words] & mask).count_ones());
        }
        count += odds - marked;
        offset += odds;
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
    fn segments_join_without_gaps() {
        // A range several segments wide, split at awkward places.
        let (start, end) = (1_000_001, 1_000_001 + 5 * 2 * SEGMENT_ODDS + 12_345);
        let whole = count(start, end);
        let mut base = BasePrimes::new();
        let mid = start + 2 * SEGMENT_ODDS + 1;
        assert_eq!(
            count_primes(start, mid, &mut base) + count_primes(mid, end, &mut base),
            whole
        );
        assert_eq!(whole, count(0, end) - count(0, start));
    }
}
