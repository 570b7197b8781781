//! Reconnect policy: capped, jittered exponential backoff, reset after a healthy connection, and
//! the classification of connection failures (a 401 is fatal: retrying cannot fix a bad key,
//! the wrong environment or a skewed clock, and a hot retry loop only gets the key throttled).
//!
//! Randomness comes from a seeded SplitMix64 generator owned by the policy, so a run is
//! reproducible from its seed (give each connection a different seed so that reconnects
//! spread out instead of stampeding).

/// Why a connection attempt or an established connection failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// HTTP 401 at the handshake (or on a REST call with the same key). Fatal.
    Auth401,
    /// HTTP 429, or Kalshi error 27 on a command. Retry, more slowly.
    RateLimited429,
    /// TCP/TLS failure, reset, timeout, HTTP 5xx, a proxy's 403: retry with backoff.
    Transport,
    /// The server spoke something we could not use (bad upgrade, undecodable control flow, an
    /// unrecoverable subscription state): retry with backoff, and say so.
    Protocol,
}

impl FailureKind {
    /// Whether retrying is pointless (only [`FailureKind::Auth401`]).
    #[must_use]
    pub const fn is_fatal(self) -> bool {
        matches!(self, FailureKind::Auth401)
    }

    /// The `type` label of `ws_client_errors_total`.
    #[must_use]
    pub const fn metric_label(self) -> &'static str {
        match self {
            FailureKind::Auth401 => "auth",
            FailureKind::RateLimited429 => "rate_limited",
            FailureKind::Transport => "transport",
            FailureKind::Protocol => "protocol",
        }
    }
}

/// Classifies a failed WebSocket handshake (or REST call) by HTTP status.
#[must_use]
pub const fn classify_http_status(status: u16) -> FailureKind {
    match status {
        401 => FailureKind::Auth401,
        429 => FailureKind::RateLimited429,
        400 | 404 | 405 | 426 => FailureKind::Protocol,
        _ => FailureKind::Transport,
    }
}

/// A log line for a 401, naming the likely cause from Kalshi's error body (`protocol.md` §2.5)
/// and the environment the gatherer is configured for. The body is matched on known error
/// codes only; it is never echoed whole (it could be large or hostile).
#[must_use]
pub fn auth_failure_message(body: &[u8], environment: &str, key_id_hint: &str) -> String {
    let text = String::from_utf8_lossy(body.get(..body.len().min(4096)).unwrap_or(&[]));
    let cause = if text.contains("INCORRECT_API_KEY_SIGNATURE") {
        "the signature was rejected: the private key file does not belong to this key id \
         (key file mismatch), or the request was signed over the wrong path"
    } else if text.contains("NOT_FOUND") {
        "the key id is unknown here: check exchange.key_id, and that the key was created in \
         this environment (prod and demo keys are separate; a demo key is refused by prod)"
    } else if text.contains("header_timestamp_expired") {
        "the request timestamp was outside the exchange's window: the system clock is skewed \
         (sync it with NTP; the window is a few seconds into the past)"
    } else if text.contains("signature_is_missing") {
        "the request carried no signature headers"
    } else if text.contains("API has been moved") {
        "this is a retired host: use the prod or demo preset URLs"
    } else {
        "likely causes: a bad key id, the wrong environment (prod vs demo keys are separate), \
         clock skew, or a private key file that does not match the key id"
    };
    format!(
        "authentication rejected (HTTP 401) by the {environment} exchange for key {key_id_hint}: \
         {cause}; not retrying"
    )
}

/// Backoff parameters, validated by [`Backoff::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffConfig {
    /// First delay, µs (> 0).
    pub base_us: i64,
    /// Largest delay, µs (≥ `base_us`).
    pub cap_us: i64,
    /// Jitter, parts per million of the delay (0..=1_000_000): a delay `d` becomes a value in
    /// `(d * (1 - jitter), d]`.
    pub jitter_ppm: u32,
    /// A connection that stayed up this long, µs, resets the backoff when it drops.
    pub healthy_after_us: i64,
}

/// A bad backoff parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BackoffError {
    /// `base_us` ≤ 0.
    #[error("base delay must be positive")]
    BaseNotPositive,
    /// `cap_us` < `base_us`.
    #[error("cap must be at least the base delay")]
    CapBelowBase,
    /// `jitter_ppm` > 1_000_000.
    #[error("jitter must be between 0 and 1")]
    JitterTooLarge,
    /// `healthy_after_us` < 0.
    #[error("healthy-after time must not be negative")]
    HealthyAfterNegative,
}

/// SplitMix64: a tiny, well-distributed, seedable generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from `seed`.
    #[must_use]
    pub const fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        crate::shard::mix64(self.0)
    }
}

/// What to do after a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryDecision {
    /// Try again at this time, µs.
    RetryAt(i64),
    /// Do not retry (fatal failure).
    Stop,
}

/// Capped, jittered exponential backoff with reset on success.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    config: BackoffConfig,
    attempt: u32,
    rng: SplitMix64,
    connected_at_us: Option<i64>,
}

impl Backoff {
    /// A policy with a seeded jitter source.
    ///
    /// # Errors
    /// A [`BackoffError`] naming the bad parameter.
    pub fn new(config: BackoffConfig, seed: u64) -> Result<Self, BackoffError> {
        if config.base_us <= 0 {
            return Err(BackoffError::BaseNotPositive);
        }
        if config.cap_us < config.base_us {
            return Err(BackoffError::CapBelowBase);
        }
        if config.jitter_ppm > 1_000_000 {
            return Err(BackoffError::JitterTooLarge);
        }
        if config.healthy_after_us < 0 {
            return Err(BackoffError::HealthyAfterNegative);
        }
        Ok(Self {
            config,
            attempt: 0,
            rng: SplitMix64::new(seed),
            connected_at_us: None,
        })
    }

    /// Consecutive failures since the last reset.
    #[must_use]
    pub const fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Forgets past failures.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The next delay, µs, and counts a failure: `min(cap, base * 2^attempts)`, jittered down.
    pub fn next_delay_us(&mut self) -> i64 {
        let shift = self.attempt.min(62);
        let raw = self
            .config
            .base_us
            .checked_mul(1_i64 << shift)
            .unwrap_or(self.config.cap_us)
            .min(self.config.cap_us);
        self.attempt = self.attempt.saturating_add(1);
        let fraction = (self.rng.next_u64() % 1_000_000) as i128;
        let cut =
            i128::from(raw) * i128::from(self.config.jitter_ppm) * fraction / 1_000_000_000_000;
        (raw - cut as i64).max(1)
    }

    /// Call when a connection is established (after the handshake).
    pub fn on_connected(&mut self, now_us: i64) {
        self.connected_at_us = Some(now_us);
    }

    /// Call when an attempt fails or an established connection drops. A connection that was up
    /// for at least `healthy_after_us` resets the backoff first. A fatal failure stops.
    pub fn on_failure(&mut self, now_us: i64, kind: FailureKind) -> RetryDecision {
        if let Some(connected) = self.connected_at_us.take()
            && now_us.saturating_sub(connected) >= self.config.healthy_after_us
        {
            self.reset();
        }
        if kind.is_fatal() {
            return RetryDecision::Stop;
        }
        let mut delay = self.next_delay_us();
        if kind == FailureKind::RateLimited429 {
            // The server asked us to slow down: skip a step of the ladder.
            delay = self.next_delay_us().max(delay);
        }
        RetryDecision::RetryAt(now_us.saturating_add(delay))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(jitter_ppm: u32) -> BackoffConfig {
        BackoffConfig {
            base_us: 500_000,
            cap_us: 60_000_000,
            jitter_ppm,
            healthy_after_us: 30_000_000,
        }
    }

    // Without jitter the ladder is exactly base * 2^n, capped; a reset starts it over.
    #[test]
    fn exponential_and_capped() {
        let mut backoff = Backoff::new(config(0), 1).unwrap();
        let delays: Vec<i64> = (0..10).map(|_| backoff.next_delay_us()).collect();
        assert_eq!(
            delays,
            [
                500_000, 1_000_000, 2_000_000, 4_000_000, 8_000_000, 16_000_000, 32_000_000,
                60_000_000, 60_000_000, 60_000_000
            ]
        );
        for _ in 0..200 {
            assert_eq!(backoff.next_delay_us(), 60_000_000);
        }
        backoff.reset();
        assert_eq!(backoff.next_delay_us(), 500_000);
    }

    // With 50% jitter every delay lies in (d/2, d], the values spread, and the same seed
    // reproduces the same sequence while another seed does not.
    #[test]
    fn jitter_is_bounded_and_seeded() {
        let mut a = Backoff::new(config(500_000), 9).unwrap();
        let mut b = Backoff::new(config(500_000), 9).unwrap();
        let mut c = Backoff::new(config(500_000), 10).unwrap();
        let mut distinct = std::collections::BTreeSet::new();
        let mut differs = false;
        for round in 0..1_000 {
            if round % 8 == 0 {
                a.reset();
                b.reset();
                c.reset();
            }
            let nominal = (500_000_i64 << (round % 8)).min(60_000_000);
            let (x, y, z) = (a.next_delay_us(), b.next_delay_us(), c.next_delay_us());
            assert_eq!(x, y);
            differs |= x != z;
            assert!(x > nominal / 2 && x <= nominal, "{x} vs {nominal}");
            distinct.insert(x);
        }
        assert!(differs);
        assert!(distinct.len() > 900);
    }

    // 401 stops; 429 backs off harder; a connection that was healthy resets the ladder, a short
    // one does not.
    #[test]
    fn failure_decisions() {
        let mut backoff = Backoff::new(config(0), 1).unwrap();
        assert_eq!(
            backoff.on_failure(0, FailureKind::Transport),
            RetryDecision::RetryAt(500_000)
        );
        assert_eq!(
            backoff.on_failure(0, FailureKind::Transport),
            RetryDecision::RetryAt(1_000_000)
        );
        backoff.on_connected(10_000_000);
        assert_eq!(
            backoff.on_failure(20_000_000, FailureKind::Protocol),
            RetryDecision::RetryAt(22_000_000)
        );
        backoff.on_connected(30_000_000);
        assert_eq!(
            backoff.on_failure(60_000_000, FailureKind::Transport),
            RetryDecision::RetryAt(60_500_000)
        );
        assert_eq!(
            backoff.on_failure(0, FailureKind::RateLimited429),
            RetryDecision::RetryAt(2_000_000)
        );
        assert_eq!(
            backoff.on_failure(0, FailureKind::Auth401),
            RetryDecision::Stop
        );
        assert!(FailureKind::Auth401.is_fatal() && !FailureKind::Transport.is_fatal());
        assert_eq!(classify_http_status(401), FailureKind::Auth401);
        assert_eq!(classify_http_status(429), FailureKind::RateLimited429);
        assert_eq!(classify_http_status(502), FailureKind::Transport);
        assert_eq!(classify_http_status(403), FailureKind::Transport);
        assert_eq!(FailureKind::Auth401.metric_label(), "auth");
    }

    // Every invalid parameter is refused with its own error.
    #[test]
    fn parameters_are_validated() {
        let bad = |f: fn(&mut BackoffConfig)| {
            let mut c = config(0);
            f(&mut c);
            Backoff::new(c, 0).unwrap_err()
        };
        assert_eq!(bad(|c| c.base_us = 0), BackoffError::BaseNotPositive);
        assert_eq!(bad(|c| c.cap_us = 1), BackoffError::CapBelowBase);
        assert_eq!(
            bad(|c| c.jitter_ppm = 1_000_001),
            BackoffError::JitterTooLarge
        );
        assert_eq!(
            bad(|c| c.healthy_after_us = -1),
            BackoffError::HealthyAfterNegative
        );
    }

    // The 401 line names the cause Kalshi's body points to (bodies from protocol.md §2.5).
    #[test]
    fn auth_messages_name_the_cause() {
        let signature = br#"{"error":{"code":"authentication_error","message":"authentication_error","details":"INCORRECT_API_KEY_SIGNATURE"}}"#;
        let unknown = br#"{"error":{"code":"authentication_error","message":"authentication_error","details":"NOT_FOUND"}}"#;
        let skew = br#"{"error":{"code":"header_timestamp_expired","message":"header timestamp expired"}}"#;
        assert!(auth_failure_message(signature, "prod", "ab12…").contains("key file mismatch"));
        let message = auth_failure_message(unknown, "prod", "ab12…");
        assert!(
            message.contains("prod and demo keys are separate")
                && message.contains("the prod exchange")
        );
        assert!(auth_failure_message(skew, "demo", "x").contains("clock is skewed"));
        let generic = auth_failure_message(b"\xff\xfe", "demo", "x");
        assert!(
            generic.contains("clock skew")
                && generic.contains("wrong environment")
                && generic.contains("not retrying")
        );
    }
}
