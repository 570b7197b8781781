//! A token bucket in integer micro-tokens, driven by the caller's clock.
//!
//! Used for the WebSocket command rate (Kalshi error 27 when exceeded) and for REST reads
//! (Kalshi's Basic tier allows 200 read tokens per second at a default cost of 10, i.e. 20 reads
//! per second; `protocol.md` §6.9). Integer arithmetic keeps it exact and deterministic.

const MICRO: u64 = 1_000_000;

/// A token bucket: `rate_per_second` tokens refill continuously up to `burst`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimiter {
    rate_per_second: u64,
    capacity_micro: u64,
    tokens_micro: u64,
    refilled_us: Option<i64>,
}

impl RateLimiter {
    /// A full bucket refilling `rate_per_second` tokens per second, holding at most `burst`
    /// (at least 1). A rate of 0 never refills: the bucket only spends its initial `burst`.
    #[must_use]
    pub fn new(rate_per_second: u32, burst: u32) -> Self {
        let capacity_micro = u64::from(burst.max(1)) * MICRO;
        Self {
            rate_per_second: u64::from(rate_per_second),
            capacity_micro,
            tokens_micro: capacity_micro,
            refilled_us: None,
        }
    }

    fn refill(&mut self, now_us: i64) {
        if let Some(last) = self.refilled_us {
            // A clock that steps back refills nothing and does not move the reference back.
            let elapsed = u64::try_from(now_us.saturating_sub(last)).unwrap_or(0);
            let added = elapsed.saturating_mul(self.rate_per_second);
            self.tokens_micro = self
                .tokens_micro
                .saturating_add(added)
                .min(self.capacity_micro);
            self.refilled_us = Some(last.max(now_us));
        } else {
            self.refilled_us = Some(now_us);
        }
    }

    /// Takes one token at `now_us` if one is available.
    pub fn try_take(&mut self, now_us: i64) -> bool {
        self.refill(now_us);
        if self.tokens_micro >= MICRO {
            self.tokens_micro -= MICRO;
            true
        } else {
            false
        }
    }

    /// The earliest time at or after `now_us` when a token will be available; `None` when the
    /// bucket never refills and is empty.
    #[must_use]
    pub fn next_available_us(&self, now_us: i64) -> Option<i64> {
        let mut probe = self.clone();
        probe.refill(now_us);
        if probe.tokens_micro >= MICRO {
            return Some(now_us);
        }
        if self.rate_per_second == 0 {
            return None;
        }
        let missing = MICRO - probe.tokens_micro;
        let wait = missing.div_ceil(self.rate_per_second);
        Some(now_us.saturating_add(i64::try_from(wait).unwrap_or(i64::MAX)))
    }

    /// Empties the bucket at `now_us` (after the server said "too many requests": its view of
    /// the budget is the one that counts).
    pub fn drain(&mut self, now_us: i64) {
        self.refill(now_us);
        self.tokens_micro = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A 20/s bucket with burst 20 grants exactly 20 at once, then one every 50 ms, and the
    // predicted availability time is exact.
    #[test]
    fn bucket_grants_at_the_configured_rate() {
        let mut bucket = RateLimiter::new(20, 20);
        let t0 = 1_000_000_000;
        for _ in 0..20 {
            assert!(bucket.try_take(t0));
        }
        assert!(!bucket.try_take(t0));
        assert_eq!(bucket.next_available_us(t0), Some(t0 + 50_000));
        assert!(!bucket.try_take(t0 + 49_999));
        assert!(bucket.try_take(t0 + 50_000));
        // Over 10 simulated seconds, polling every ms, exactly 200 more tokens are granted.
        let mut granted = 0;
        for ms in 1..=10_000 {
            if bucket.try_take(t0 + 50_000 + ms * 1_000) {
                granted += 1;
            }
        }
        assert_eq!(granted, 200);
        // A clock step backwards grants nothing.
        let mut bucket = RateLimiter::new(1, 1);
        assert!(bucket.try_take(10_000_000));
        assert!(!bucket.try_take(5_000_000));
        assert!(!bucket.try_take(10_999_999));
        assert!(bucket.try_take(11_000_000));
        // Zero rate: only the burst.
        let mut bucket = RateLimiter::new(0, 2);
        assert!(bucket.try_take(0) && bucket.try_take(0) && !bucket.try_take(i64::MAX / 2));
        assert_eq!(bucket.next_available_us(0), None);
        let mut bucket = RateLimiter::new(10, 5);
        bucket.drain(0);
        assert_eq!(bucket.next_available_us(0), Some(100_000));
    }
}
