//! A token bucket (sans-IO): REST 429s and command rate limits.

const SCALE: i128 = 1_000_000;

/// A token bucket refilled continuously at `rate_per_sec` tokens per second up to `burst`
/// tokens. It starts full. Time is the caller's `now_us`; a clock that goes backwards adds no
/// tokens. Integer arithmetic in micro-tokens: no drift, no floating point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimiter {
    rate_per_sec: u64,
    burst: u64,
    /// Tokens × 1e6.
    micro_tokens: i128,
    refilled_us: Option<i64>,
    forced: bool,
}

impl RateLimiter {
    /// A full bucket of `burst` tokens refilled at `rate_per_sec` per second. A `burst` of 0
    /// rejects every request (that is what it says); use [`RateLimiter::unlimited`] for no limit.
    #[must_use]
    pub fn new(rate_per_sec: u64, burst: u64) -> Self {
        Self {
            rate_per_sec,
            burst,
            micro_tokens: i128::from(burst) * SCALE,
            refilled_us: None,
            forced: false,
        }
    }

    /// A bucket that never runs out.
    #[must_use]
    pub fn unlimited() -> Self {
        Self::new(u64::MAX / 2, u64::MAX / 2)
    }

    fn refill(&mut self, now_us: i64) {
        if let Some(last) = self.refilled_us {
            if now_us > last {
                let elapsed = i128::from(now_us) - i128::from(last);
                let add = elapsed.saturating_mul(i128::from(self.rate_per_sec));
                let cap = i128::from(self.burst) * SCALE;
                self.micro_tokens = self.micro_tokens.saturating_add(add).min(cap);
                self.refilled_us = Some(now_us);
            }
        } else {
            self.refilled_us = Some(now_us);
        }
    }

    /// Takes one token if available at `now_us`.
    pub fn try_take(&mut self, now_us: i64) -> bool {
        self.try_take_n(now_us, 1)
    }

    /// Takes `cost` tokens if available at `now_us` (Kalshi's REST default cost is 10 of a
    /// 200-per-second read bucket). Nothing is taken when the answer is `false`.
    pub fn try_take_n(&mut self, now_us: i64, cost: u64) -> bool {
        self.refill(now_us);
        if self.forced {
            return false;
        }
        let need = i128::from(cost) * SCALE;
        if self.micro_tokens >= need {
            self.micro_tokens -= need;
            true
        } else {
            false
        }
    }

    /// Whole tokens available at `now_us`.
    pub fn available(&mut self, now_us: i64) -> u64 {
        self.refill(now_us);
        u64::try_from(self.micro_tokens / SCALE).unwrap_or(0)
    }

    /// Fault: while forced, every request is refused (the "force 429s" knob). Tokens keep
    /// refilling meanwhile.
    pub fn set_forced_reject(&mut self, forced: bool) {
        self.forced = forced;
    }

    /// Whether requests are being refused by [`RateLimiter::set_forced_reject`].
    #[must_use]
    pub const fn is_forced_reject(&self) -> bool {
        self.forced
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Burst first, then refusal, then refill proportional to elapsed time, capped at burst;
    // a backwards clock adds nothing; the forced knob refuses everything.
    #[test]
    fn bucket() {
        let mut bucket = RateLimiter::new(10, 3);
        let t = 5_000_000;
        assert!(bucket.try_take(t));
        assert!(bucket.try_take(t));
        assert!(bucket.try_take(t));
        assert!(!bucket.try_take(t));
        assert!(!bucket.try_take(t + 99_999));
        assert!(bucket.try_take(t + 100_000));
        assert!(!bucket.try_take(t - 1_000_000));
        assert_eq!(bucket.available(t + 10_000_000), 3);
        assert!(!bucket.try_take_n(t + 10_000_000, 4));
        assert!(bucket.try_take_n(t + 10_000_000, 3));
        bucket.set_forced_reject(true);
        assert!(!bucket.try_take(t + 20_000_000));
        bucket.set_forced_reject(false);
        assert!(bucket.try_take(t + 20_000_000));
        let mut none = RateLimiter::new(100, 0);
        assert!(!none.try_take(0));
        let mut unlimited = RateLimiter::unlimited();
        for _ in 0..1000 {
            assert!(unlimited.try_take(0));
        }
    }
}
