//! Timing rules only the browser worker has, as plain arithmetic: how long to
//! idle after a compute slice so that a CPU cap holds ([`DutyCycle`]), the
//! task rate shown to the donor ([`RateMeter`]). (How long a user's task may
//! run before it is stopped is the same in every worker:
//! [`grid_kernels::wasm::WasmLimits::time_limit_ms`].) Times are milliseconds as
//! `f64`, the unit of `performance.now()`. The protocol's timing (flushes,
//! heartbeats, timeouts, reconnect backoff) is the session's, in
//! [`grid_protocol::session`].

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
