//! Timing rules of the browser worker, as plain arithmetic: how long to idle
//! after a compute slice so that a CPU cap holds ([`DutyCycle`]), how long to
//! wait before reconnecting ([`Backoff`]), and the task rate shown to the
//! donor ([`RateMeter`]). Times are milliseconds as `f64`, the unit of
//! `performance.now()`.

use std::collections::VecDeque;

/// How long one compute turn runs before it yields to the event loop, so that
/// socket messages (revoke, heartbeat) and page commands (pause, stop) are
/// handled between tasks. A turn always runs at least one task.
pub const SLICE_MS: f64 = 10.0;

/// A CPU cap enforced as a duty cycle: after computing for `busy` ms the
/// worker idles for `busy * (100 - percent) / percent` ms, so that over any
/// few turns it computes `percent`% of the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DutyCycle {
    percent: u32,
}

impl DutyCycle {
    pub const MIN_PERCENT: u32 = 1;
    pub const MAX_PERCENT: u32 = 100;

    /// A cap of `percent`, clamped to 1..=100.
    pub fn new(percent: u32) -> DutyCycle {
        DutyCycle {
            percent: percent.clamp(Self::MIN_PERCENT, Self::MAX_PERCENT),
        }
    }

    pub fn percent(self) -> u32 {
        self.percent
    }

    /// The idle time owed after computing for `busy_ms`.
    pub fn idle_after(self, busy_ms: f64) -> f64 {
        let p = f64::from(self.percent);
        busy_ms.max(0.0) * (100.0 - p) / p
    }
}

/// Reconnection delays: exponential from `MIN_MS` to `MAX_MS`, each scaled by
/// a jitter in [0.75, 1.25) so that the tabs of a coordinator that restarts do
/// not all come back in the same millisecond. Like the native worker's.
#[derive(Debug, Clone)]
pub struct Backoff {
    next_ms: f64,
}

impl Backoff {
    pub const MIN_MS: f64 = 250.0;
    pub const MAX_MS: f64 = 10_000.0;
    /// A connection that lasted this long resets the backoff.
    pub const STABLE_MS: f64 = 10_000.0;

    pub fn new() -> Backoff {
        Backoff {
            next_ms: Self::MIN_MS,
        }
    }

    /// The delay before the next attempt; `random` is uniform in [0, 1).
    pub fn next_delay(&mut self, random: f64) -> f64 {
        let delay = self.next_ms * (0.75 + random.clamp(0.0, 1.0) * 0.5);
        self.next_ms = (self.next_ms * 2.0).min(Self::MAX_MS);
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

/// Tasks per second over the last few seconds, from samples of a running
/// total.
#[derive(Debug, Clone)]
pub struct RateMeter {
    window_ms: f64,
    samples: VecDeque<(f64, u64)>,
}

impl RateMeter {
    pub fn new(window_ms: f64) -> RateMeter {
        RateMeter {
            window_ms,
            samples: VecDeque::new(),
        }
    }

    /// Records the running total at `now_ms`.
    pub fn record(&mut self, now_ms: f64, total: u64) {
        self.samples.push_back((now_ms, total));
        // Keep one sample at or beyond the window's start as the baseline.
        while self.samples.len() > 2 && now_ms - self.samples[1].0 >= self.window_ms {
            self.samples.pop_front();
        }
    }

    /// The rate between the oldest kept sample and the newest.
    pub fn per_second(&self) -> f64 {
        match (self.samples.front(), self.samples.back()) {
            (Some(&(t0, n0)), Some(&(t1, n1))) if t1 > t0 => {
                (n1.saturating_sub(n0)) as f64 * 1000.0 / (t1 - t0)
            }
            _ => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_duty_cycle_idles_in_proportion() {
        assert_eq!(DutyCycle::new(100).idle_after(40.0), 0.0);
        assert_eq!(DutyCycle::new(50).idle_after(40.0), 40.0);
        assert_eq!(DutyCycle::new(25).idle_after(10.0), 30.0);
        assert_eq!(DutyCycle::new(0).percent(), 1);
        assert_eq!(DutyCycle::new(250).percent(), 100);
        // Busy then idle gives the cap, whatever the slice length.
        for percent in [10, 33, 75] {
            let cycle = DutyCycle::new(percent);
            for busy in [1.0, 7.5, 120.0] {
                let share = busy / (busy + cycle.idle_after(busy));
                assert!((share * 100.0 - f64::from(percent)).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn backoff_doubles_to_a_ceiling_with_jitter_and_resets() {
        let mut backoff = Backoff::new();
        let delays: Vec<f64> = (0..8).map(|_| backoff.next_delay(0.5)).collect();
        assert_eq!(
            delays,
            [
                250.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0, 10_000.0, 10_000.0
            ]
        );
        backoff.reset();
        assert_eq!(backoff.next_delay(0.0), 187.5);
        assert_eq!(backoff.next_delay(0.999_999_9).round(), 625.0);
    }

    #[test]
    fn the_rate_covers_the_recent_window() {
        let mut meter = RateMeter::new(5_000.0);
        assert_eq!(meter.per_second(), 0.0);
        meter.record(0.0, 0);
        meter.record(1_000.0, 10);
        assert_eq!(meter.per_second(), 10.0);
        for second in 2..=20 {
            meter.record(f64::from(second) * 1000.0, 10);
        }
        // Nothing finished in the last five seconds.
        assert_eq!(meter.per_second(), 0.0);
        meter.record(21_000.0, 60);
        assert_eq!(meter.per_second(), 10.0);
    }
}
