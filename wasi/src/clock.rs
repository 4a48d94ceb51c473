//! The kernel's clocks, deterministic: time is the number of times the
//! kernel has read it. Every read returns the current value and then
//! advances time by [`TICK_NS`], so two reads are never equal (an elapsed
//! time is never zero, nothing divides by it) and every replica of a task
//! reads the same values in the same order.
//!
//! | clock | id | first read | resolution |
//! |---|---|---|---|
//! | realtime | 0 | [`REALTIME_START_NS`] (2026-01-01T00:00:00Z) | 1000 ns |
//! | monotonic | 1 | 0 | 1000 ns |
//! | process_cputime_id | 2 | 0 | 1000 ns |
//! | thread_cputime_id | 3 | 0 | 1000 ns |
//!
//! All four read one counter, so a read of any of them advances all; the
//! CPU-time clocks read like the monotonic one (the kernel is one thread
//! that started at 0). The precision argument of `clock_time_get` is
//! ignored. Any other id is `inval`.

use crate::errno::Errno;

/// How far time advances with each read, and the clocks' resolution.
pub const TICK_NS: u64 = 1000;

/// The realtime clock's first reading: 2026-01-01T00:00:00Z in nanoseconds
/// since the Unix epoch (`date -u -d 2026-01-01 +%s` is 1767225600).
pub const REALTIME_START_NS: u64 = 1_767_225_600 * 1_000_000_000;

/// A WASI clock id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClockId {
    Realtime,
    Monotonic,
    ProcessCputime,
    ThreadCputime,
}

impl ClockId {
    pub(crate) fn from_raw(id: u32) -> Result<ClockId, Errno> {
        match id {
            0 => Ok(ClockId::Realtime),
            1 => Ok(ClockId::Monotonic),
            2 => Ok(ClockId::ProcessCputime),
            3 => Ok(ClockId::ThreadCputime),
            _ => Err(Errno::Inval),
        }
    }

    /// `clock_res_get`'s answer.
    pub(crate) fn resolution(self) -> u64 {
        TICK_NS
    }
}

/// Nanoseconds elapsed in the kernel's eyes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Clock {
    elapsed_ns: u64,
}

impl Clock {
    /// What `clock` reads now, without advancing.
    pub(crate) fn peek(&self, clock: ClockId) -> u64 {
        match clock {
            // Wraps after 584 years of reads at one per instruction: never.
            ClockId::Realtime => REALTIME_START_NS.wrapping_add(self.elapsed_ns),
            ClockId::Monotonic | ClockId::ProcessCputime | ClockId::ThreadCputime => {
                self.elapsed_ns
            }
        }
    }

    /// Advances time by one tick, after a successful read.
    pub(crate) fn tick(&mut self) {
        self.elapsed_ns = self.elapsed_ns.wrapping_add(TICK_NS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_realtime_start_is_2026() {
        // 56 years of 365 days and 14 leap days (1972..=2024).
        let days = 56 * 365 + 14;
        assert_eq!(REALTIME_START_NS, days * 86_400 * 1_000_000_000);
    }

    #[test]
    fn clock_ids_are_the_four_of_wasi() {
        assert_eq!(ClockId::from_raw(0), Ok(ClockId::Realtime));
        assert_eq!(ClockId::from_raw(3), Ok(ClockId::ThreadCputime));
        assert_eq!(ClockId::from_raw(4), Err(Errno::Inval));
        assert_eq!(ClockId::from_raw(u32::MAX), Err(Errno::Inval));
    }

    #[test]
    fn every_clock_reads_one_counter() {
        let mut clock = Clock::default();
        assert_eq!(clock.peek(ClockId::Realtime), REALTIME_START_NS);
        assert_eq!(clock.peek(ClockId::Monotonic), 0);
        clock.tick();
        clock.tick();
        assert_eq!(clock.peek(ClockId::Realtime), REALTIME_START_NS + 2000);
        assert_eq!(clock.peek(ClockId::Monotonic), 2000);
        assert_eq!(clock.peek(ClockId::ProcessCputime), 2000);
        assert_eq!(clock.peek(ClockId::ThreadCputime), 2000);
    }
}
