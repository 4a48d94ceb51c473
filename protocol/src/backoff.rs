//! How long a worker waits before dialling the coordinator again, as plain
//! arithmetic: exponential from [`Backoff::MIN_MS`] to [`Backoff::MAX_MS`],
//! each delay scaled by a jitter in [0.75, 1.25) so that the workers of a
//! coordinator that restarts do not all come back in the same millisecond.
//! The session ([`crate::session::WorkerSession`]) owns one and decides when
//! it starts over; the randomness comes from the driver.

/// Reconnection delays in milliseconds.
#[derive(Debug, Clone)]
pub struct Backoff {
    next_ms: u64,
}

impl Backoff {
    pub const MIN_MS: u64 = 250;
    pub const MAX_MS: u64 = 10_000;
    /// A welcomed connection that lasted this long starts the delays over.
    pub const STABLE_MS: u64 = 10_000;

    pub fn new() -> Backoff {
        Backoff {
            next_ms: Self::MIN_MS,
        }
    }

    /// The delay before the next attempt; `random` is uniform in [0, 1).
    pub fn next_delay(&mut self, random: f64) -> u64 {
        let jitter = 0.75 + random.clamp(0.0, 1.0) * 0.5;
        let delay = (self.next_ms as f64 * jitter).round() as u64;
        self.next_ms = (self.next_ms * 2).min(Self::MAX_MS);
        delay
    }

    pub fn reset(&mut self) {
        self.next_ms = Self::MIN_MS;
    }
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_ceiling_with_jitter_and_resets() {
        let mut backoff = Backoff::new();
        let delays: Vec<u64> = (0..8).map(|_| backoff.next_delay(0.5)).collect();
        assert_eq!(delays, [250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000]);
        backoff.reset();
        // 187.5 and 624.99995, rounded.
        assert_eq!(backoff.next_delay(0.0), 188);
        assert_eq!(backoff.next_delay(0.999_999_9), 625);
        // Out-of-range randomness is clamped, never a negative delay.
        backoff.reset();
        assert_eq!(backoff.next_delay(-3.0), 188);
        assert_eq!(backoff.next_delay(7.0), 625);
    }
}
