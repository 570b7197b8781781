//! Virtual time for a deterministic exchange (sans-IO).
//!
//! [`crate::Exchange::step`] spreads order flow over the interval since the previous step and
//! applies lifecycle transitions at the step's end, so its event stream depends on *where* the
//! steps fall, not only on the time range covered. Two servers that step at wall-clock moments
//! (which jitter) would therefore write different truth logs for the same seed.
//!
//! The rule: **step the exchange only at the instants of a fixed grid** `start + k × tick`.
//! A [`VirtualClock`] yields those instants; the server asks it, whenever it wakes up, which
//! grid instants are now due, and steps the exchange once per instant
//! ([`crate::Exchange::advance`] does both). However late or early the server wakes, the
//! exchange sees the same sequence of step times, so the same seed and config give a
//! byte-identical truth log. Faults that change the exchange ([`crate::Exchange::set_paused`])
//! keep the log deterministic only when applied between the same two grid instants; schedule
//! them in virtual time (e.g. "pause at tick 300"), not on wall-clock timers.

/// A grid of exchange step instants, `start_us + k × tick_us` for k = 0, 1, 2, …
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualClock {
    start_us: i64,
    tick_us: i64,
    /// Index of the next instant to hand out.
    next: u64,
}

impl VirtualClock {
    /// A clock whose first instant is `start_us`. A `tick_us` below 1 is treated as 1 µs.
    #[must_use]
    pub fn new(start_us: i64, tick_us: i64) -> Self {
        Self {
            start_us,
            tick_us: tick_us.max(1),
            next: 0,
        }
    }

    /// The grid spacing in µs.
    #[must_use]
    pub const fn tick_us(&self) -> i64 {
        self.tick_us
    }

    /// The first instant of the grid.
    #[must_use]
    pub const fn start_us(&self) -> i64 {
        self.start_us
    }

    /// The next instant not yet handed out (saturating at `i64::MAX`).
    #[must_use]
    pub fn next_instant(&self) -> i64 {
        self.instant(self.next)
    }

    /// The last instant handed out, or `None` before the first.
    #[must_use]
    pub fn last_instant(&self) -> Option<i64> {
        self.next.checked_sub(1).map(|k| self.instant(k))
    }

    /// How many instants have been handed out.
    #[must_use]
    pub const fn ticks_taken(&self) -> u64 {
        self.next
    }

    fn instant(&self, k: u64) -> i64 {
        let offset = i128::from(self.tick_us) * i128::from(k);
        i64::try_from(i128::from(self.start_us) + offset).unwrap_or(i64::MAX)
    }

    /// Takes the next grid instant if it is `<= now_us`.
    pub fn take_due(&mut self, now_us: i64) -> Option<i64> {
        let instant = self.next_instant();
        if instant <= now_us && instant != i64::MAX {
            self.next += 1;
            Some(instant)
        } else {
            None
        }
    }

    /// The number of grid instants that are due at `now_us` and not yet taken.
    #[must_use]
    pub fn due_count(&self, now_us: i64) -> u64 {
        let next = self.next_instant();
        if now_us < next {
            return 0;
        }
        let span = i128::from(now_us) - i128::from(next);
        u64::try_from(span / i128::from(self.tick_us) + 1).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Instants are handed out once each, in order, only when due, whatever the wake-up times.
    #[test]
    fn grid_instants() {
        let mut clock = VirtualClock::new(1_000, 100);
        assert_eq!(clock.last_instant(), None);
        assert_eq!(clock.due_count(999), 0);
        assert_eq!(clock.take_due(999), None);
        assert_eq!(clock.due_count(1_250), 3);
        assert_eq!(clock.take_due(1_250), Some(1_000));
        assert_eq!(clock.take_due(1_250), Some(1_100));
        assert_eq!(clock.take_due(1_250), Some(1_200));
        assert_eq!(clock.take_due(1_250), None);
        assert_eq!(clock.last_instant(), Some(1_200));
        assert_eq!(clock.next_instant(), 1_300);
        assert_eq!(clock.ticks_taken(), 3);
        let mut zero = VirtualClock::new(i64::MAX - 1, 0);
        assert_eq!(zero.tick_us(), 1);
        assert_eq!(zero.take_due(i64::MAX), Some(i64::MAX - 1));
        assert_eq!(zero.take_due(i64::MAX), None);
    }
}
