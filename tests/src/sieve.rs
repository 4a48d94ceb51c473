//! The sieve of Eratosthenes, a byte a number: the oracle the load
//! generator and the fleet benchmarks check prime counts against,
//! independent of the kernel they check.

/// Which numbers below `limit` are prime (index = number; 0 and 1 are
/// always there, not prime).
pub fn sieve(limit: u64) -> Vec<bool> {
    let n = limit as usize;
    let mut prime = vec![true; n.max(2)];
    prime[0] = false;
    prime[1] = false;
    let mut i = 2;
    while i * i < n {
        if prime[i] {
            for m in (i * i..n).step_by(i) {
                prime[m] = false;
            }
        }
        i += 1;
    }
    prime
}

/// The number of primes in `[0, end)`.
pub fn primes_below(end: u64) -> u64 {
    sieve(end).iter().filter(|&&p| p).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_known_values() {
        assert_eq!(primes_below(0), 0);
        assert_eq!(primes_below(2), 0);
        assert_eq!(primes_below(3), 1);
        assert_eq!(primes_below(100), 25);
        assert_eq!(primes_below(1_000_000), 78_498);
    }
}
