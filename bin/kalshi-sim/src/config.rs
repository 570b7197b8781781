//! The simulator's configuration: a TOML file (every key optional, unknown keys rejected with
//! the key named) plus command-line overrides. [`Config::validate`] checks it once at start.
//!
//! ```toml
//! seed = 1                    # RNG seed of the market model (default 1)
//! start_time_us = 0           # exchange time of the first step, µs since the Unix epoch;
//!                             # 0 = the wall clock at start, rounded down to the second
//! tick_ms = 10                # exchange step grid; steps are paced by the wall clock
//! duration_secs = 0           # stop after this much exchange time (0 = run until signalled)
//! speed = 1.0                 # exchange seconds per wall-clock second
//! truth_log = ""              # stream the truth log to this file ("" = none)
//! final_books = ""            # write final books here on exit and on request ("" = none)
//!
//! [server]
//! listen = "127.0.0.1:9100"   # WebSocket (/trade-api/ws/v2) and REST (/trade-api/v2/...)
//! control = "127.0.0.1:9101"  # control endpoint ("" = off); keep it on loopback
//! tls_cert = ""               # PEM chain; with tls_key, serve wss/https
//! tls_key = ""                # PEM private key, mode 0600
//! connections_max = 200       # concurrent connections (WebSocket + REST)
//! outbound_queue_batches = 4096  # per-connection outbound queue; full = slow client, dropped
//! heartbeat_secs = 10.0       # server Ping("heartbeat") interval
//! missed_pongs_max = 3        # close after this many unanswered pings (0 = never)
//! print_ready = true          # print one JSON line with the bound addresses on stdout
//!
//! [auth]
//! enabled = true              # false = accept unsigned handshakes (demos)
//! skew_past_ms = 10000        # oldest accepted KALSHI-ACCESS-TIMESTAMP
//! skew_future_ms = 60000      # newest accepted timestamp
//! [auth.keys]                 # key id -> public key PEM path (RSA or Ed25519)
//! # "3f2a..." = "keys/demo.pub.pem"
//!
//! [rest]
//! rate_per_sec = 200          # token refill per second (Kalshi Basic read); 0 = no limit
//! burst = 200                 # bucket capacity
//! cost = 10                   # tokens per request (Kalshi's default cost)
//!
//! [market]                    # the market model (kalshi-sim-core ExchangeConfig)
//! series = 3
//! events_per_series = 2
//! markets_per_event = 4
//! actions_per_second = 200
//! new_event_every_secs = 120.0   # 0 = no new listings
//! market_lifetime_secs = 600.0
//! determine_delay_secs = 30.0
//! settle_delay_secs = 60.0
//! deactivate_per_mille = 2
//! deactivation_secs = 20.0
//! close_update_per_mille = 2
//! delayed_open_per_mille = 250
//!
//! [session]                   # per-connection limits
//! market_limit = 1000         # markets per subscription (error 26)
//! commands_per_second = 20    # command rate (error 27); 0 = no limit
//! command_burst = 40
//!
//! [load]
//! rate = 0                    # load mode: target messages per second (0 = off)
//! markets = 100               # markets the load is spread over
//!
//! [[faults]]                  # scheduled faults, at exchange time offsets from start
//! at_secs = 30.0
//! action = "close_all"        # close_all | reset_all | pause | resume | skip_seq | malformed
//!                             # | stall | overflow | channel_error | duplicate | reject_auth
//!                             # | accept_auth | force_429 | rest_delay
//! sid = 1                     # skip_seq / overflow / channel_error / duplicate
//! ms = 0                      # stall / rest_delay
//! count = 0                   # force_429: number of requests (-1 = until lifted)
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The whole configuration.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// RNG seed of the market model.
    pub seed: u64,
    /// Exchange time of the first step (µs); 0 = wall clock at start, whole seconds.
    pub start_time_us: i64,
    /// Step grid in milliseconds.
    pub tick_ms: u64,
    /// Exchange seconds to run; 0 = until SIGINT/SIGTERM.
    pub duration_secs: f64,
    /// Exchange seconds per wall-clock second.
    pub speed: f64,
    /// Truth log path.
    pub truth_log: Option<PathBuf>,
    /// Final books path.
    pub final_books: Option<PathBuf>,
    /// Sockets, TLS, heartbeats.
    pub server: ServerSection,
    /// Handshake and REST authentication.
    pub auth: AuthSection,
    /// REST token bucket.
    pub rest: RestSection,
    /// Market model.
    pub market: MarketSection,
    /// Per-connection limits.
    pub session: SessionSection,
    /// Load mode.
    pub load: LoadSection,
    /// Scheduled faults.
    pub faults: Vec<FaultSpec>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            seed: 1,
            start_time_us: 0,
            tick_ms: 10,
            duration_secs: 0.0,
            speed: 1.0,
            truth_log: None,
            final_books: None,
            server: ServerSection::default(),
            auth: AuthSection::default(),
            rest: RestSection::default(),
            market: MarketSection::default(),
            session: SessionSection::default(),
            load: LoadSection::default(),
            faults: Vec::new(),
        }
    }
}

/// `[server]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// WebSocket + REST address.
    pub listen: String,
    /// Control endpoint address; empty = off.
    pub control: String,
    /// TLS certificate chain (PEM).
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM, 0600).
    pub tls_key: Option<PathBuf>,
    /// Concurrent connections.
    pub connections_max: usize,
    /// Per-connection outbound queue, in batches (one batch per step per connection).
    pub outbound_queue_batches: usize,
    /// Ping interval, seconds.
    pub heartbeat_secs: f64,
    /// Unanswered pings before closing (0 = never).
    pub missed_pongs_max: u32,
    /// Print the ready line.
    pub print_ready: bool,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9100".into(),
            control: "127.0.0.1:9101".into(),
            tls_cert: None,
            tls_key: None,
            connections_max: 200,
            outbound_queue_batches: 4096,
            heartbeat_secs: 10.0,
            missed_pongs_max: 3,
            print_ready: true,
        }
    }
}

/// `[auth]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// Require signed handshakes.
    pub enabled: bool,
    /// Oldest accepted timestamp, ms before now.
    pub skew_past_ms: u64,
    /// Newest accepted timestamp, ms after now.
    pub skew_future_ms: u64,
    /// Key id → public key PEM path.
    pub keys: BTreeMap<String, PathBuf>,
}

impl Default for AuthSection {
    fn default() -> Self {
        Self {
            enabled: true,
            skew_past_ms: 10_000,
            skew_future_ms: 60_000,
            keys: BTreeMap::new(),
        }
    }
}

/// `[rest]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RestSection {
    /// Tokens per second; 0 = unlimited.
    pub rate_per_sec: u64,
    /// Bucket capacity.
    pub burst: u64,
    /// Tokens per request.
    pub cost: u64,
}

impl Default for RestSection {
    fn default() -> Self {
        Self {
            rate_per_sec: 200,
            burst: 200,
            cost: 10,
        }
    }
}

/// `[market]`: see `kalshi_sim_core::ExchangeConfig` for each knob.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MarketSection {
    /// Series.
    pub series: usize,
    /// Events per series at start.
    pub events_per_series: usize,
    /// Markets per event.
    pub markets_per_event: usize,
    /// Order-flow actions per exchange second.
    pub actions_per_second: u64,
    /// Listing interval, seconds (0 = none).
    pub new_event_every_secs: f64,
    /// Listing to close, seconds.
    pub market_lifetime_secs: f64,
    /// Close to determined, seconds.
    pub determine_delay_secs: f64,
    /// Determined to settled, seconds.
    pub settle_delay_secs: f64,
    /// Per-mille chance an action pauses its market.
    pub deactivate_per_mille: u32,
    /// Pause length, seconds.
    pub deactivation_secs: f64,
    /// Per-mille chance an action moves the close date.
    pub close_update_per_mille: u32,
    /// Per-mille chance a new market opens late.
    pub delayed_open_per_mille: u32,
}

impl Default for MarketSection {
    fn default() -> Self {
        Self {
            series: 3,
            events_per_series: 2,
            markets_per_event: 4,
            actions_per_second: 200,
            new_event_every_secs: 120.0,
            market_lifetime_secs: 600.0,
            determine_delay_secs: 30.0,
            settle_delay_secs: 60.0,
            deactivate_per_mille: 2,
            deactivation_secs: 20.0,
            close_update_per_mille: 2,
            delayed_open_per_mille: 250,
        }
    }
}

/// `[session]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SessionSection {
    /// Markets per subscription.
    pub market_limit: usize,
    /// Commands per second (0 = unlimited).
    pub commands_per_second: u32,
    /// Command bucket capacity.
    pub command_burst: u32,
}

impl Default for SessionSection {
    fn default() -> Self {
        Self {
            market_limit: 1000,
            commands_per_second: 20,
            command_burst: 40,
        }
    }
}

/// `[load]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LoadSection {
    /// Target messages per second; 0 = off.
    pub rate: u64,
    /// Markets.
    pub markets: usize,
}

impl Default for LoadSection {
    fn default() -> Self {
        Self {
            rate: 0,
            markets: 100,
        }
    }
}

/// A fault action (scheduled in the config or requested on the control endpoint).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FaultAction {
    /// Close every WebSocket with a close frame.
    CloseAll,
    /// Drop every WebSocket without a close frame.
    ResetAll,
    /// Pause the exchange (and close every WebSocket).
    Pause,
    /// Resume the exchange.
    Resume,
    /// Skip a seq on `sid` of every connection.
    SkipSeq,
    /// Send a malformed frame on every connection.
    Malformed,
    /// Stop writing to every connection for `ms`.
    Stall,
    /// Error 25 on `sid` of every connection.
    Overflow,
    /// Error 10 on `sid` of every connection.
    ChannelError,
    /// Send the next frame of `sid` twice on every connection.
    Duplicate,
    /// Answer every handshake 401 until `accept_auth`.
    RejectAuth,
    /// Lift `reject_auth`.
    AcceptAuth,
    /// Answer the next `count` REST requests 429 (-1 = until `count = 0`).
    Force429,
    /// Delay REST responses by `ms`.
    RestDelay,
}

/// One `[[faults]]` entry.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Exchange seconds after start.
    pub at_secs: f64,
    /// What to do.
    pub action: FaultAction,
    /// Subscription id, for the per-subscription actions.
    #[serde(default)]
    pub sid: u64,
    /// Milliseconds, for `stall` and `rest_delay`.
    #[serde(default)]
    pub ms: u64,
    /// Request count, for `force_429`.
    #[serde(default)]
    pub count: i64,
}

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Reads and parses a TOML file.
    ///
    /// # Errors
    /// An unreadable file, TOML syntax, a wrong type or an unknown key (named in the message).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        Self::from_toml(&text).map_err(|e| ConfigError(format!("{}: {}", path.display(), e.0)))
    }

    /// Parses TOML text.
    ///
    /// # Errors
    /// As [`Config::from_file`].
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let mut config: Self = toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        config.normalize();
        Ok(config)
    }

    /// Treats empty paths as absent (`truth_log = ""` means no truth log).
    pub fn normalize(&mut self) {
        for path in [
            &mut self.truth_log,
            &mut self.final_books,
            &mut self.server.tls_cert,
            &mut self.server.tls_key,
        ] {
            if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                *path = None;
            }
        }
    }

    /// Checks every value once; the message names the key.
    ///
    /// # Errors
    /// The first bad value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError(format!("{key}: {why}")));
        if self.tick_ms == 0 || self.tick_ms > 60_000 {
            return bad("tick_ms", "must be 1..=60000");
        }
        if !(self.duration_secs.is_finite() && self.duration_secs >= 0.0) {
            return bad("duration_secs", "must be a finite number >= 0");
        }
        if !(self.speed.is_finite() && self.speed > 0.0 && self.speed <= 1e6) {
            return bad("speed", "must be > 0 and <= 1e6");
        }
        if self.start_time_us < 0 {
            return bad("start_time_us", "must be >= 0");
        }
        if self.server.listen.parse::<SocketAddr>().is_err() {
            return bad("server.listen", "must be IP:PORT");
        }
        if !self.server.control.is_empty() && self.server.control.parse::<SocketAddr>().is_err() {
            return bad("server.control", "must be IP:PORT or empty");
        }
        if self.server.tls_cert.is_some() != self.server.tls_key.is_some() {
            return bad("server.tls_cert", "tls_cert and tls_key go together");
        }
        if self.server.connections_max == 0 {
            return bad("server.connections_max", "must be >= 1");
        }
        if self.server.outbound_queue_batches == 0 {
            return bad("server.outbound_queue_batches", "must be >= 1");
        }
        if !(self.server.heartbeat_secs.is_finite() && self.server.heartbeat_secs > 0.0) {
            return bad("server.heartbeat_secs", "must be > 0");
        }
        if self.auth.enabled && self.auth.keys.is_empty() {
            return bad(
                "auth.keys",
                "auth is enabled but no keys are configured (add keys, or use --no-auth)",
            );
        }
        if self.rest.rate_per_sec > 0 && (self.rest.burst == 0 || self.rest.cost > self.rest.burst)
        {
            return bad("rest.burst", "must be >= rest.cost (and > 0)");
        }
        let m = &self.market;
        if m.series == 0 || m.series > 10_000 {
            return bad("market.series", "must be 1..=10000");
        }
        if m.events_per_series == 0 || m.events_per_series > 1000 {
            return bad("market.events_per_series", "must be 1..=1000");
        }
        if m.markets_per_event == 0 || m.markets_per_event > 1000 {
            return bad("market.markets_per_event", "must be 1..=1000");
        }
        for (key, value) in [
            ("market.new_event_every_secs", m.new_event_every_secs),
            ("market.market_lifetime_secs", m.market_lifetime_secs),
            ("market.determine_delay_secs", m.determine_delay_secs),
            ("market.settle_delay_secs", m.settle_delay_secs),
            ("market.deactivation_secs", m.deactivation_secs),
        ] {
            if !(value.is_finite() && (0.0..=1e9).contains(&value)) {
                return bad(key, "must be a number of seconds in 0..=1e9");
            }
        }
        if m.market_lifetime_secs < 1.0 {
            return bad("market.market_lifetime_secs", "must be >= 1");
        }
        for (key, value) in [
            ("market.deactivate_per_mille", m.deactivate_per_mille),
            ("market.close_update_per_mille", m.close_update_per_mille),
            ("market.delayed_open_per_mille", m.delayed_open_per_mille),
        ] {
            if value > 1000 {
                return bad(key, "must be 0..=1000");
            }
        }
        if self.session.market_limit == 0 {
            return bad("session.market_limit", "must be >= 1");
        }
        if self.load.rate > 0 && self.load.markets == 0 {
            return bad("load.markets", "must be >= 1 in load mode");
        }
        for (index, fault) in self.faults.iter().enumerate() {
            if !(fault.at_secs.is_finite() && fault.at_secs >= 0.0) {
                return Err(ConfigError(format!(
                    "faults[{index}].at_secs: must be >= 0"
                )));
            }
        }
        Ok(())
    }

    /// The market model's config.
    #[must_use]
    pub fn exchange_config(&self) -> kalshi_sim_core::ExchangeConfig {
        let us = |secs: f64| (secs * 1e6) as i64;
        let m = &self.market;
        kalshi_sim_core::ExchangeConfig {
            series: m.series,
            events_per_series: m.events_per_series,
            markets_per_event: m.markets_per_event,
            actions_per_second: m.actions_per_second,
            new_event_every_us: us(m.new_event_every_secs),
            market_lifetime_us: us(m.market_lifetime_secs),
            determine_delay_us: us(m.determine_delay_secs),
            settle_delay_us: us(m.settle_delay_secs),
            deactivate_per_mille: m.deactivate_per_mille,
            deactivation_us: us(m.deactivation_secs),
            close_update_per_mille: m.close_update_per_mille,
            delayed_open_per_mille: m.delayed_open_per_mille,
            // The server streams the log to a file and never reads it back from memory.
            keep_truth_log: true,
            ..kalshi_sim_core::ExchangeConfig::default()
        }
    }

    /// The per-connection session config.
    #[must_use]
    pub fn session_config(&self) -> kalshi_sim_core::SessionConfig {
        kalshi_sim_core::SessionConfig {
            market_limit: self.session.market_limit,
            commands_per_second: self.session.commands_per_second,
            command_burst: self.session.command_burst,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The documented example in the module docs parses to the defaults (plus its one fault).
    #[test]
    fn documented_example_is_the_default() {
        let docs = include_str!("config.rs");
        let example: String = docs
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| l.strip_prefix("//! ").unwrap_or("").to_owned() + "\n")
            .collect();
        let parsed = Config::from_toml(&example).unwrap();
        let mut expected = Config::default();
        expected.faults.push(FaultSpec {
            at_secs: 30.0,
            action: FaultAction::CloseAll,
            sid: 1,
            ms: 0,
            count: 0,
        });
        assert_eq!(parsed, expected);
    }

    // An unknown key is rejected with its name; a bad value names its key.
    #[test]
    fn errors_name_the_key() {
        let err = Config::from_toml("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 1\n").unwrap_err();
        assert!(err.0.contains("lisen"), "{err}");
        let err = Config::from_toml("tick_ms = \"x\"").unwrap_err();
        assert!(err.0.contains("tick_ms"), "{err}");
        let mut c = Config::from_toml("tick_ms = 0").unwrap();
        c.auth.enabled = false;
        assert!(c.validate().unwrap_err().0.starts_with("tick_ms"));
        let c = Config::default();
        assert!(c.validate().unwrap_err().0.starts_with("auth.keys"));
    }
}
