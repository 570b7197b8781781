//! The server side: known keys and the full check of a request's authentication headers.

use std::collections::HashMap;

use crate::{AuthRejection, HEADER_KEY, HEADER_SIGNATURE, HEADER_TIMESTAMP, VerifyingKey};

/// Longest timestamp header accepted, in characters (`u64::MAX` has 20 digits).
const TIMESTAMP_DIGITS_MAX: usize = 20;

/// How far a request's timestamp may lie from the server's clock, in each direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkewWindow {
    /// Largest accepted age: a timestamp `past_ms` before now passes, one more does not.
    pub past_ms: u64,
    /// Largest accepted lead: a timestamp `future_ms` after now passes, one more does not.
    pub future_ms: u64,
}

impl SkewWindow {
    /// The window the simulator should use by default: 10 s into the past, 60 s into the
    /// future. Kalshi's demo accepted ±5 s and rejected −30 s and +5 min (event API), and
    /// accepted +30 s (margin API) (`protocol.md` §2.4); this window agrees with every
    /// observation.
    pub const KALSHI_OBSERVED: Self = Self {
        past_ms: 10_000,
        future_ms: 60_000,
    };

    /// The same tolerance in both directions.
    #[must_use]
    pub const fn symmetric(skew_ms: u64) -> Self {
        Self {
            past_ms: skew_ms,
            future_ms: skew_ms,
        }
    }

    /// Whether `timestamp_ms` lies in the window around `now_ms` (bounds included).
    #[must_use]
    pub fn contains(&self, timestamp_ms: u64, now_ms: u64) -> bool {
        timestamp_ms >= now_ms.saturating_sub(self.past_ms)
            && timestamp_ms <= now_ms.saturating_add(self.future_ms)
    }
}

/// The public keys a server knows, by API key id, and the check of a request against them.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    keys: HashMap<String, VerifyingKey>,
}

impl KeyRing {
    /// An empty ring: every request is refused with [`AuthRejection::UnknownKey`] (once its
    /// headers are present and its timestamp fresh).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the key with id `key_id`; returns the key it replaced, if any.
    pub fn insert(&mut self, key_id: impl Into<String>, key: VerifyingKey) -> Option<VerifyingKey> {
        self.keys.insert(key_id.into(), key)
    }

    /// Removes the key with id `key_id`; returns it, if it was there.
    pub fn remove(&mut self, key_id: &str) -> Option<VerifyingKey> {
        self.keys.remove(key_id)
    }

    /// The key with id `key_id`.
    #[must_use]
    pub fn get(&self, key_id: &str) -> Option<&VerifyingKey> {
        self.keys.get(key_id)
    }

    /// Number of keys.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no keys.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks a request's authentication with a symmetric clock window of `skew_ms`; see
    /// [`KeyRing::check_window`].
    ///
    /// # Errors
    /// As [`KeyRing::check_window`].
    pub fn check<'h>(
        &self,
        headers: impl Fn(&str) -> Option<&'h str>,
        method: &str,
        path: &str,
        now_ms: u64,
        skew_ms: u64,
    ) -> Result<(), AuthRejection> {
        self.check_window(
            headers,
            method,
            path,
            now_ms,
            SkewWindow::symmetric(skew_ms),
        )
    }

    /// Checks a request's authentication headers as Kalshi does.
    ///
    /// `headers` looks a header up by name ([`HEADER_KEY`], [`HEADER_TIMESTAMP`],
    /// [`HEADER_SIGNATURE`]); header names are case-insensitive in HTTP, so the lookup must be
    /// too. `method` and `path` are the request's (the path may keep its query string; it is not
    /// signed). `now_ms` is the server's clock in Unix milliseconds.
    ///
    /// The checks run in this order, cheapest first, and the first failure is returned:
    /// 1. each of the three headers is present and not empty ([`AuthRejection::MissingHeader`]);
    /// 2. the timestamp is a decimal number ([`AuthRejection::MalformedTimestamp`]);
    /// 3. it lies in `window` around `now_ms` ([`AuthRejection::StaleTimestamp`]);
    /// 4. the key id is known ([`AuthRejection::UnknownKey`]);
    /// 5. the signature verifies ([`AuthRejection::BadSignature`]).
    ///
    /// Each rejection carries the HTTP status and verbatim body to answer with
    /// ([`AuthRejection::status`], [`AuthRejection::body`]).
    ///
    /// # Errors
    /// The [`AuthRejection`] of the first failed check.
    pub fn check_window<'h>(
        &self,
        headers: impl Fn(&str) -> Option<&'h str>,
        method: &str,
        path: &str,
        now_ms: u64,
        window: SkewWindow,
    ) -> Result<(), AuthRejection> {
        let header = |name: &'static str| {
            headers(name)
                .map(str::trim)
                .filter(|value| !value.is_empty())
                .ok_or(AuthRejection::MissingHeader { header: name })
        };
        let key_id = header(HEADER_KEY)?;
        let timestamp = header(HEADER_TIMESTAMP)?;
        let signature = header(HEADER_SIGNATURE)?;
        let timestamp_ms =
            parse_timestamp_ms(timestamp).ok_or(AuthRejection::MalformedTimestamp)?;
        if !window.contains(timestamp_ms, now_ms) {
            return Err(AuthRejection::StaleTimestamp {
                timestamp_ms,
                now_ms,
            });
        }
        let key = self.keys.get(key_id).ok_or(AuthRejection::UnknownKey)?;
        // Verify over the header's own text, so that what the client signed is what is checked.
        key.verify_raw(timestamp, method, path, signature)
            .map_err(AuthRejection::BadSignature)
    }
}

/// Parses a timestamp header: 1 to 20 ASCII digits that fit `u64`; no sign, no spaces inside,
/// no fraction.
fn parse_timestamp_ms(text: &str) -> Option<u64> {
    if text.is_empty()
        || text.len() > TIMESTAMP_DIGITS_MAX
        || !text.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    text.parse().ok()
}
