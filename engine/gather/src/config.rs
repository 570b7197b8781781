//! The gatherer's configuration: one TOML file, validated once at start.
//!
//! Every key has a documented default except the few that identify the deployment (the
//! exchange environment and credentials, the database and the gatherer id). Unknown keys are
//! errors, so a typo never silently falls back to a default. Validation collects every problem
//! it finds, each naming the key and what is wrong with it.
//!
//! Secrets never appear in the file: the Kalshi private key is a path (`private_key_file`), the
//! database password and the admin token are a file path or an environment variable name, and
//! the key id (an identifier sent in clear in every request, but still account-specific) may be
//! given inline or by environment variable and is masked when the configuration is printed.
//! This crate does not read those files or variables (it performs no I/O); the binary does, and
//! refuses key files readable by group or others.
//!
//! The annotated example is `engine/gather/gatherer.example.toml`.

use core::fmt;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize, Serializer};

/// Production WebSocket URL (`protocol.md` §1, recommended host).
pub const PROD_WS_URL: &str = "wss://external-api-ws.kalshi.com/trade-api/ws/v2";
/// Production REST base URL.
pub const PROD_REST_URL: &str = "https://external-api.kalshi.com/trade-api/v2";
/// Demo WebSocket URL.
pub const DEMO_WS_URL: &str = "wss://external-api-ws.demo.kalshi.co/trade-api/ws/v2";
/// Demo REST base URL.
pub const DEMO_REST_URL: &str = "https://external-api.demo.kalshi.co/trade-api/v2";

/// The market-filtered channels a shard connection may subscribe to.
pub const MARKET_CHANNELS: [&str; 3] = ["orderbook_delta", "trade", "ticker"];
/// The global lifecycle channels.
pub const LIFECYCLE_CHANNELS: [&str; 2] = ["market_lifecycle_v2", "multivariate_market_lifecycle"];

/// One problem with the configuration: the key (dotted path) and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The key, e.g. `engine.shard_cores`; `toml` for a syntax or type error.
    pub key: String,
    /// What is wrong.
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.problem)
    }
}

/// Every problem found, in file order of sections.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// Which exchange to talk to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// Kalshi production (preset hosts).
    Prod,
    /// Kalshi demo (preset hosts; demo keys only).
    Demo,
    /// The project's simulator: `ws_url` and `rest_url` are required and may be plain `ws://`
    /// and `http://`.
    Sim,
}

impl Environment {
    /// The name as written in the file.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Environment::Prod => "prod",
            Environment::Demo => "demo",
            Environment::Sim => "sim",
        }
    }
}

fn mask_key_id<S: Serializer>(value: &Option<String>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(id) => serializer.serialize_str(&mask(id)),
        None => serializer.serialize_none(),
    }
}

/// A masked form of an identifier: its first 4 characters when it is long enough to keep the
/// rest hidden, else `****`.
#[must_use]
pub fn mask(id: &str) -> String {
    if id.chars().count() >= 12 {
        let head: String = id.chars().take(4).collect();
        format!("{head}…(masked)")
    } else {
        "****(masked)".to_owned()
    }
}

/// `[exchange]`: where to connect and with which key.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeConfig {
    /// `prod`, `demo` or `sim`. Required.
    pub environment: Environment,
    /// WebSocket URL. Default: the environment's preset (required for `sim`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ws_url: Option<String>,
    /// REST base URL ending in `/trade-api/v2`. Default: the preset (required for `sim`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rest_url: Option<String>,
    /// API key id, inline. Exactly one of `key_id` and `key_id_env` is required.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "mask_key_id",
        default
    )]
    pub key_id: Option<String>,
    /// Name of the environment variable holding the key id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id_env: Option<String>,
    /// Path of the PEM private key (RSA PKCS#1/PKCS#8 or Ed25519). Required; the binary refuses
    /// a file readable by group or others.
    pub private_key_file: PathBuf,
    /// PEM files of extra root certificates trusted for `wss`/`https`, on top of the Mozilla
    /// roots (for a simulator or proxy with its own CA). Certificates are always verified;
    /// there is no way to turn verification off. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls_root_files: Vec<PathBuf>,
}

/// `[database]`: the local PostgreSQL.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// libpq URL (`postgresql://gatherer@localhost/kalshi`) or key/value string, without a
    /// password. Required.
    pub url: String,
    /// File holding the password. At most one of `password_file`/`password_env`; neither means
    /// peer/trust/certificate authentication.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// This gatherer's id (1..=32767), stamped on every row. Required.
    pub gatherer_id: i16,
    /// The local PostgreSQL data directory, read only for the disk-usage gauge
    /// (`kalshi_disk_usage_ratio{kind="data"}`). Default: none (only the spool is reported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
}

/// `[engine]`: core placement.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Cores of the shard executors, one shard per entry. Default `[0]`.
    pub shard_cores: Vec<usize>,
    /// Core of the writer thread. Default `1`.
    pub writer_core: usize,
    /// Core of the control plane; absent (the default) leaves it unpinned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control_core: Option<usize>,
    /// Pin threads to their cores. Default `true`; tests that run several gatherers on one
    /// small machine turn it off. Placement is validated either way (every stage on a distinct
    /// core); only when threads are not pinned may a core number exceed the cores online, since
    /// it then names a stage rather than a CPU (a test of 2 shards on a 2-core machine).
    pub pin_threads: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            shard_cores: vec![0],
            writer_core: 1,
            control_core: None,
            pin_threads: true,
        }
    }
}

/// `[subscriptions]`: how markets are spread over connections and subscriptions.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SubscriptionsConfig {
    /// Market channels subscribed for every market. Default `["orderbook_delta", "trade",
    /// "ticker"]`.
    pub channels: Vec<String>,
    /// Global lifecycle channels, subscribed once (on shard 0's first connection). Default
    /// `["market_lifecycle_v2", "multivariate_market_lifecycle"]`.
    pub lifecycle_channels: Vec<String>,
    /// Most markets in one subscription (Kalshi error 26 beyond its undocumented cap). Kalshi
    /// merges repeat subscribes to a channel into the connection's existing sid, so this is also
    /// the most markets per connection. Default 500.
    pub markets_per_subscription: usize,
    /// Markets per `subscribe`/`add_markets` command: smaller batches spread the snapshot
    /// bursts. Default 100.
    pub markets_per_command: usize,
    /// Most subscriptions (sids) on one connection; must hold one per channel plus the
    /// lifecycle channels. Default 8.
    pub subscriptions_per_connection: usize,
    /// Commands per second per connection (Kalshi error 27 beyond its undocumented limit).
    /// Default 10.
    pub commands_per_second: u32,
    /// Command burst per connection. Default 10.
    pub command_burst: u32,
    /// The `use_yes_price` flag sent on every `orderbook_delta` subscribe (always explicit:
    /// Kalshi plans to flip the default). Default `false`: NO-side prices in NO-leg terms, the
    /// convention REST snapshots use, so WS and REST books are stored alike.
    pub use_yes_price: bool,
    /// How long to wait for a command's response, ms. Default 10000.
    pub response_timeout_ms: u64,
    /// Retries of a timed-out or rate-limited command before escalating. Default 3.
    pub command_retries: u32,
}

impl Default for SubscriptionsConfig {
    fn default() -> Self {
        Self {
            channels: MARKET_CHANNELS.iter().map(|c| (*c).to_owned()).collect(),
            lifecycle_channels: LIFECYCLE_CHANNELS.iter().map(|c| (*c).to_owned()).collect(),
            markets_per_subscription: 500,
            markets_per_command: 100,
            subscriptions_per_connection: 8,
            commands_per_second: 10,
            command_burst: 10,
            use_yes_price: false,
            response_timeout_ms: 10_000,
            command_retries: 3,
        }
    }
}

/// `[reconnect]`: WebSocket reconnect backoff.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconnectConfig {
    /// First delay, ms. Default 500.
    pub backoff_base_ms: u64,
    /// Largest delay, ms. Default 60000.
    pub backoff_cap_ms: u64,
    /// Jitter as a fraction of the delay, 0..=1. Default 0.5.
    pub jitter: f64,
    /// A connection up this long resets the backoff when it drops, ms. Default 30000.
    pub healthy_after_ms: u64,
}

impl Default for ReconnectConfig {
    fn default() -> Self {
        Self {
            backoff_base_ms: 500,
            backoff_cap_ms: 60_000,
            jitter: 0.5,
            healthy_after_ms: 30_000,
        }
    }
}

/// `[poller]`: REST snapshots of every market, and trade backfill reads.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PollerConfig {
    /// Poll every market's REST order book. Default `true`.
    pub enabled: bool,
    /// One full pass over all markets takes this long, s. Default 900 (15 min).
    pub interval_s: u64,
    /// REST reads per second, shared by snapshots, backfill and discovery. Default 20 (Kalshi
    /// Basic tier: 200 read tokens/s at 10 per request).
    pub reads_per_second: u32,
    /// REST read burst. Default 20.
    pub read_burst: u32,
    /// First wait after a 429, ms (doubles per consecutive 429). Default 1000.
    pub rate_limited_backoff_ms: u64,
    /// Largest wait after 429s, ms. Default 60000.
    pub rate_limited_backoff_cap_ms: u64,
    /// Widening of each trade backfill window on both sides, s. Default 5.
    pub backfill_margin_s: u64,
}

impl Default for PollerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_s: 900,
            reads_per_second: 20,
            read_burst: 20,
            rate_limited_backoff_ms: 1_000,
            rate_limited_backoff_cap_ms: 60_000,
            backfill_margin_s: 5,
        }
    }
}

/// `[discovery]`: REST market discovery.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoveryConfig {
    /// Re-discover open markets every this many seconds (catches transitions without a WS
    /// event, such as `initialized` → `active`). Default 300.
    pub interval_s: u64,
    /// Markets per `GET /markets` page, 1..=1000. Default 1000.
    pub page_limit: u32,
    /// Include multivariate (MVE, `KXMVE*`) combo markets. Default `true`.
    pub include_mve: bool,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            interval_s: 300,
            page_limit: 1_000,
            include_mve: true,
        }
    }
}

/// `[http]`: metrics, health and admin endpoints.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// `GET /metrics` listen address. Default `127.0.0.1:9090`.
    pub metrics_addr: String,
    /// `GET /health` and `POST /admin/poll-market` listen address. Default `127.0.0.1:8080`.
    pub health_addr: String,
    /// File holding the admin bearer token. Without a token the admin endpoint is disabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token_file: Option<PathBuf>,
    /// Environment variable holding the admin token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token_env: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            metrics_addr: "127.0.0.1:9090".to_owned(),
            health_addr: "127.0.0.1:8080".to_owned(),
            admin_token_file: None,
            admin_token_env: None,
        }
    }
}

/// `[spool]`: the on-disk log used while the database is unreachable.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Directory. Default `/var/lib/kalshi-gatherer/spool`.
    pub dir: PathBuf,
    /// Most bytes on disk; when full, the shards stop reading (backpressure). Default 10 GiB.
    pub max_bytes: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("/var/lib/kalshi-gatherer/spool"),
            max_bytes: 10 << 30,
        }
    }
}

/// `[writer]`: COPY batching.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WriterConfig {
    /// Flush a table's batch at this many rows. Default 10000.
    pub flush_rows: usize,
    /// Flush at this many encoded bytes. Default 4 MiB.
    pub flush_bytes: usize,
    /// Flush a non-empty batch this old, ms (the hard bound). Default 200.
    pub flush_age_ms: u64,
    /// Group commit: seal the open batch once its first row is this old, ms, if the rings are
    /// drained and the database is idle (so batches grow with the rate, and latency at moderate
    /// rates is a few ms instead of `flush_age_ms`). 0 turns it off. Default 5.
    pub linger_ms: u64,
    /// Records per shard → writer ring. Default 65536.
    pub ring_capacity: usize,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            flush_rows: 10_000,
            flush_bytes: 4 << 20,
            flush_age_ms: 200,
            linger_ms: 5,
            ring_capacity: 65_536,
        }
    }
}

/// `[limits]`: sizes and timeouts.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest WebSocket frame accepted, bytes. Default 4 MiB (a 10k-market `ok` ack is ~0.5 MB).
    pub frame_bytes_max: usize,
    /// TCP + TLS + upgrade, ms. Default 10000.
    pub handshake_timeout_ms: u64,
    /// A connection with no frame for this long is dead, ms. Kalshi pings every 10 s; busy
    /// connections may see no pings, so any frame counts. Default 30000.
    pub liveness_timeout_ms: u64,
    /// One REST request, ms. Default 10000.
    pub rest_timeout_ms: u64,
    /// Database connect, ms. Default 5000.
    pub db_connect_timeout_ms: u64,
    /// Drain and flush at SIGTERM, ms. Default 30000.
    pub shutdown_timeout_ms: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            frame_bytes_max: 4 << 20,
            handshake_timeout_ms: 10_000,
            liveness_timeout_ms: 30_000,
            rest_timeout_ms: 10_000,
            db_connect_timeout_ms: 5_000,
            shutdown_timeout_ms: 30_000,
        }
    }
}

/// The whole configuration. Build it with [`Config::from_toml_str`].
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[exchange]` (required).
    pub exchange: ExchangeConfig,
    /// `[database]` (required).
    pub database: DatabaseConfig,
    /// `[engine]`.
    #[serde(default)]
    pub engine: EngineConfig,
    /// `[subscriptions]`.
    #[serde(default)]
    pub subscriptions: SubscriptionsConfig,
    /// `[reconnect]`.
    #[serde(default)]
    pub reconnect: ReconnectConfig,
    /// `[poller]`.
    #[serde(default)]
    pub poller: PollerConfig,
    /// `[discovery]`.
    #[serde(default)]
    pub discovery: DiscoveryConfig,
    /// `[http]`.
    #[serde(default)]
    pub http: HttpConfig,
    /// `[spool]`.
    #[serde(default)]
    pub spool: SpoolConfig,
    /// `[writer]`.
    #[serde(default)]
    pub writer: WriterConfig,
    /// `[limits]`.
    #[serde(default)]
    pub limits: LimitsConfig,
}

/// Collects problems while validating.
struct Problems(Vec<ConfigError>);

impl Problems {
    fn add(&mut self, key: &str, problem: impl Into<String>) {
        self.0.push(ConfigError {
            key: key.to_owned(),
            problem: problem.into(),
        });
    }

    fn range<T: PartialOrd + fmt::Display + Copy>(&mut self, key: &str, value: T, min: T, max: T) {
        if value < min || value > max {
            self.add(
                key,
                format!("{value} is out of range (allowed {min}..={max})"),
            );
        }
    }
}

fn check_url(problems: &mut Problems, key: &str, url: &str, schemes: &[&str]) {
    let Some((scheme, rest)) = url.split_once("://") else {
        problems.add(
            key,
            format!("{url:?} is not a URL (expected {})", schemes.join(" or ")),
        );
        return;
    };
    if !schemes.contains(&scheme) {
        problems.add(
            key,
            format!(
                "scheme {scheme:?} is not allowed here (expected {})",
                schemes.join(" or ")
            ),
        );
    }
    let host = rest.split(['/', '?']).next().unwrap_or("");
    if host.is_empty() {
        problems.add(key, format!("{url:?} has no host"));
    }
    if host.contains('@') {
        problems.add(key, "credentials must not be embedded in the URL");
    }
}

fn check_secret_pair(
    problems: &mut Problems,
    file_key: &str,
    file: Option<&PathBuf>,
    env_key: &str,
    env: Option<&String>,
) {
    if file.is_some() && env.is_some() {
        problems.add(
            file_key,
            format!("give either {file_key} or {env_key}, not both"),
        );
    }
    if file.is_some_and(|f| f.as_os_str().is_empty()) {
        problems.add(file_key, "empty path");
    }
    if let Some(env) = env
        && (env.is_empty() || env.contains('=') || env.contains('\0'))
    {
        problems.add(
            env_key,
            format!("{env:?} is not a valid environment variable name"),
        );
    }
}

/// Whether a libpq URL or key/value string carries a password.
fn has_password(url: &str) -> bool {
    if let Some((_, rest)) = url.split_once("://") {
        let authority = rest.split(['/', '?']).next().unwrap_or("");
        let userinfo_has_password = authority
            .rsplit_once('@')
            .is_some_and(|(userinfo, _)| userinfo.contains(':'));
        let query_has_password = rest
            .split_once('?')
            .is_some_and(|(_, query)| query.split('&').any(|p| p.starts_with("password=")));
        userinfo_has_password || query_has_password
    } else {
        url.split_whitespace()
            .any(|part| part.trim_start().starts_with("password"))
    }
}

impl Config {
    /// Parses and validates a configuration. `cores_online` is the number of CPU cores this
    /// machine has online (the binary asks the OS); placement is checked against it.
    ///
    /// # Errors
    /// Every problem found, each naming its key: TOML syntax and type errors and unknown keys
    /// (reported by the parser with their position), then the validation rules.
    pub fn from_toml_str(text: &str, cores_online: usize) -> Result<Config, ConfigErrors> {
        let mut config: Config = toml::from_str(text).map_err(|error| {
            ConfigErrors(vec![ConfigError {
                key: "toml".to_owned(),
                problem: error.to_string().trim_end().to_owned(),
            }])
        })?;
        let mut problems = Problems(Vec::new());
        config.validate(cores_online, &mut problems);
        if problems.0.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(problems.0))
        }
    }

    fn validate(&mut self, cores_online: usize, problems: &mut Problems) {
        self.validate_exchange(problems);
        self.validate_database(problems);
        self.validate_engine(cores_online, problems);
        self.validate_subscriptions(problems);
        self.validate_timing(problems);
        self.validate_http(problems);
    }

    fn validate_exchange(&mut self, problems: &mut Problems) {
        let exchange = &mut self.exchange;
        let (ws_preset, rest_preset) = match exchange.environment {
            Environment::Prod => (Some(PROD_WS_URL), Some(PROD_REST_URL)),
            Environment::Demo => (Some(DEMO_WS_URL), Some(DEMO_REST_URL)),
            Environment::Sim => (None, None),
        };
        let (ws_schemes, rest_schemes): (&[&str], &[&str]) = match exchange.environment {
            Environment::Sim => (&["ws", "wss"], &["http", "https"]),
            _ => (&["wss"], &["https"]),
        };
        for (key, url, preset, schemes) in [
            (
                "exchange.ws_url",
                &mut exchange.ws_url,
                ws_preset,
                ws_schemes,
            ),
            (
                "exchange.rest_url",
                &mut exchange.rest_url,
                rest_preset,
                rest_schemes,
            ),
        ] {
            if url.is_none() {
                *url = preset.map(str::to_owned);
            }
            match url {
                Some(value) => {
                    while value.ends_with('/') {
                        value.pop();
                    }
                    check_url(problems, key, value, schemes);
                }
                None => problems.add(key, "required when exchange.environment is \"sim\""),
            }
        }
        match (&exchange.key_id, &exchange.key_id_env) {
            (Some(_), Some(_)) => {
                problems.add(
                    "exchange.key_id",
                    "give either key_id or key_id_env, not both",
                );
            }
            (None, None) => problems.add("exchange.key_id", "required (or key_id_env)"),
            (Some(id), None) if id.trim().is_empty() => problems.add("exchange.key_id", "empty"),
            _ => {}
        }
        check_secret_pair(
            problems,
            "exchange.key_id_file",
            None,
            "exchange.key_id_env",
            exchange.key_id_env.as_ref(),
        );
        if exchange
            .tls_root_files
            .iter()
            .any(|path| path.as_os_str().is_empty())
        {
            problems.add("exchange.tls_root_files", "empty path");
        }
        if exchange.private_key_file.as_os_str().is_empty() {
            problems.add("exchange.private_key_file", "empty path");
        }
    }

    fn validate_database(&self, problems: &mut Problems) {
        let database = &self.database;
        if database.url.trim().is_empty() {
            problems.add("database.url", "empty");
        } else if has_password(&database.url) {
            problems.add(
                "database.url",
                "contains a password; put it in password_file or password_env instead",
            );
        }
        check_secret_pair(
            problems,
            "database.password_file",
            database.password_file.as_ref(),
            "database.password_env",
            database.password_env.as_ref(),
        );
        if database.gatherer_id < 1 {
            problems.add(
                "database.gatherer_id",
                format!(
                    "{} is not positive (allowed 1..=32767)",
                    database.gatherer_id
                ),
            );
        }
    }

    fn validate_engine(&self, cores_online: usize, problems: &mut Problems) {
        let engine = &self.engine;
        if engine.shard_cores.is_empty() {
            problems.add("engine.shard_cores", "at least one shard core is required");
        }
        let mut seen = BTreeSet::new();
        let mut check_core = |problems: &mut Problems, key: &str, core: usize| {
            if engine.pin_threads && core >= cores_online {
                problems.add(
                    key,
                    format!(
                        "core {core} does not exist on this machine ({cores_online} cores online)"
                    ),
                );
            }
            if !seen.insert(core) {
                problems.add(
                    key,
                    format!(
                        "core {core} is already used by another stage; placement must be distinct"
                    ),
                );
            }
        };
        for &core in &engine.shard_cores {
            check_core(problems, "engine.shard_cores", core);
        }
        check_core(problems, "engine.writer_core", engine.writer_core);
        if let Some(core) = engine.control_core {
            check_core(problems, "engine.control_core", core);
        }
    }

    fn validate_subscriptions(&self, problems: &mut Problems) {
        let subs = &self.subscriptions;
        for (key, list, allowed) in [
            (
                "subscriptions.channels",
                &subs.channels,
                &MARKET_CHANNELS[..],
            ),
            (
                "subscriptions.lifecycle_channels",
                &subs.lifecycle_channels,
                &LIFECYCLE_CHANNELS[..],
            ),
        ] {
            let mut seen = BTreeSet::new();
            for channel in list {
                if !allowed.contains(&channel.as_str()) {
                    problems.add(
                        key,
                        format!(
                            "unknown channel {channel:?} (allowed: {})",
                            allowed.join(", ")
                        ),
                    );
                }
                if !seen.insert(channel) {
                    problems.add(key, format!("channel {channel:?} listed twice"));
                }
            }
        }
        if subs.channels.is_empty() {
            problems.add("subscriptions.channels", "at least one channel is required");
        }
        problems.range(
            "subscriptions.markets_per_subscription",
            subs.markets_per_subscription,
            1,
            100_000,
        );
        problems.range(
            "subscriptions.markets_per_command",
            subs.markets_per_command,
            1,
            subs.markets_per_subscription.max(1),
        );
        let needed = subs.channels.len() + subs.lifecycle_channels.len();
        if subs.subscriptions_per_connection < needed {
            problems.add(
                "subscriptions.subscriptions_per_connection",
                format!(
                    "{} is too small: one connection holds one subscription per channel, {needed} here",
                    subs.subscriptions_per_connection
                ),
            );
        }
        problems.range(
            "subscriptions.commands_per_second",
            subs.commands_per_second,
            1,
            10_000,
        );
        problems.range("subscriptions.command_burst", subs.command_burst, 1, 10_000);
        problems.range(
            "subscriptions.response_timeout_ms",
            subs.response_timeout_ms,
            100,
            600_000,
        );
        problems.range(
            "subscriptions.command_retries",
            subs.command_retries,
            0,
            100,
        );
    }

    fn validate_timing(&self, problems: &mut Problems) {
        let reconnect = &self.reconnect;
        problems.range(
            "reconnect.backoff_base_ms",
            reconnect.backoff_base_ms,
            1,
            3_600_000,
        );
        problems.range(
            "reconnect.backoff_cap_ms",
            reconnect.backoff_cap_ms,
            reconnect.backoff_base_ms.max(1),
            3_600_000,
        );
        if !(0.0..=1.0).contains(&reconnect.jitter) {
            problems.add(
                "reconnect.jitter",
                format!("{} is out of range (allowed 0..=1)", reconnect.jitter),
            );
        }
        problems.range(
            "reconnect.healthy_after_ms",
            reconnect.healthy_after_ms,
            0,
            86_400_000,
        );
        let poller = &self.poller;
        problems.range("poller.interval_s", poller.interval_s, 1, 86_400);
        problems.range(
            "poller.reads_per_second",
            poller.reads_per_second,
            1,
            10_000,
        );
        problems.range("poller.read_burst", poller.read_burst, 1, 100_000);
        problems.range(
            "poller.rate_limited_backoff_ms",
            poller.rate_limited_backoff_ms,
            1,
            3_600_000,
        );
        problems.range(
            "poller.rate_limited_backoff_cap_ms",
            poller.rate_limited_backoff_cap_ms,
            poller.rate_limited_backoff_ms.max(1),
            3_600_000,
        );
        problems.range(
            "poller.backfill_margin_s",
            poller.backfill_margin_s,
            0,
            3_600,
        );
        problems.range("discovery.interval_s", self.discovery.interval_s, 1, 86_400);
        problems.range("discovery.page_limit", self.discovery.page_limit, 1, 1_000);
        problems.range("spool.max_bytes", self.spool.max_bytes, 1 << 20, u64::MAX);
        if self.spool.dir.as_os_str().is_empty() {
            problems.add("spool.dir", "empty path");
        }
        let writer = &self.writer;
        problems.range("writer.flush_rows", writer.flush_rows, 1, 10_000_000);
        problems.range("writer.flush_bytes", writer.flush_bytes, 4_096, 1 << 30);
        problems.range("writer.flush_age_ms", writer.flush_age_ms, 1, 60_000);
        problems.range("writer.linger_ms", writer.linger_ms, 0, 60_000);
        if writer.linger_ms > writer.flush_age_ms {
            problems.add(
                "writer.linger_ms",
                format!(
                    "{} ms is more than writer.flush_age_ms ({} ms), which would always win",
                    writer.linger_ms, writer.flush_age_ms
                ),
            );
        }
        problems.range("writer.ring_capacity", writer.ring_capacity, 16, 1 << 24);
        let limits = &self.limits;
        problems.range(
            "limits.frame_bytes_max",
            limits.frame_bytes_max,
            64 << 10,
            256 << 20,
        );
        problems.range(
            "limits.handshake_timeout_ms",
            limits.handshake_timeout_ms,
            100,
            600_000,
        );
        // Kalshi pings every 10 s; a shorter liveness window caused reconnect storms for others
        // (protocol.md §5.2).
        problems.range(
            "limits.liveness_timeout_ms",
            limits.liveness_timeout_ms,
            15_000,
            600_000,
        );
        problems.range(
            "limits.rest_timeout_ms",
            limits.rest_timeout_ms,
            100,
            600_000,
        );
        problems.range(
            "limits.db_connect_timeout_ms",
            limits.db_connect_timeout_ms,
            100,
            600_000,
        );
        problems.range(
            "limits.shutdown_timeout_ms",
            limits.shutdown_timeout_ms,
            100,
            3_600_000,
        );
    }

    fn validate_http(&self, problems: &mut Problems) {
        let http = &self.http;
        let metrics = http.metrics_addr.parse::<SocketAddr>();
        let health = http.health_addr.parse::<SocketAddr>();
        for (key, value, parsed) in [
            ("http.metrics_addr", &http.metrics_addr, &metrics),
            ("http.health_addr", &http.health_addr, &health),
        ] {
            if parsed.is_err() {
                problems.add(
                    key,
                    format!("{value:?} is not an address like 127.0.0.1:9090"),
                );
            }
        }
        if let (Ok(a), Ok(b)) = (metrics, health)
            && a == b
            && a.port() != 0
        {
            problems.add("http.health_addr", "must differ from http.metrics_addr");
        }
        check_secret_pair(
            problems,
            "http.admin_token_file",
            http.admin_token_file.as_ref(),
            "http.admin_token_env",
            http.admin_token_env.as_ref(),
        );
    }

    /// The resolved WebSocket URL (a preset or the configured one).
    #[must_use]
    pub fn ws_url(&self) -> &str {
        self.exchange.ws_url.as_deref().unwrap_or(PROD_WS_URL)
    }

    /// The resolved REST base URL.
    #[must_use]
    pub fn rest_url(&self) -> &str {
        self.exchange.rest_url.as_deref().unwrap_or(PROD_REST_URL)
    }

    /// The reconnect backoff parameters in the units of [`crate::backoff`].
    #[must_use]
    pub fn backoff_config(&self) -> crate::backoff::BackoffConfig {
        let ms = |v: u64| i64::try_from(v.saturating_mul(1_000)).unwrap_or(i64::MAX);
        crate::backoff::BackoffConfig {
            base_us: ms(self.reconnect.backoff_base_ms),
            cap_us: ms(self.reconnect.backoff_cap_ms),
            jitter_ppm: (self.reconnect.jitter.clamp(0.0, 1.0) * 1e6).round() as u32,
            healthy_after_us: ms(self.reconnect.healthy_after_ms),
        }
    }

    /// The per-connection subscription settings for [`crate::subs::SubscriptionManager`].
    /// Lifecycle channels are included only for the connection that carries them.
    #[must_use]
    pub fn subs_config(&self, carries_lifecycle: bool) -> crate::subs::SubsConfig {
        let subs = &self.subscriptions;
        let channels = subs
            .channels
            .iter()
            .filter_map(|c| crate::subs::Channel::parse(c))
            .collect();
        let lifecycle_channels = if carries_lifecycle {
            subs.lifecycle_channels
                .iter()
                .filter_map(|c| crate::subs::Channel::parse(c))
                .collect()
        } else {
            Vec::new()
        };
        crate::subs::SubsConfig {
            gatherer_id: self.database.gatherer_id,
            channels,
            lifecycle_channels,
            markets_per_subscription: subs.markets_per_subscription,
            markets_per_command: subs.markets_per_command,
            commands_per_second: subs.commands_per_second,
            command_burst: subs.command_burst,
            use_yes_price: subs.use_yes_price,
            response_timeout_us: i64::try_from(subs.response_timeout_ms.saturating_mul(1_000))
                .unwrap_or(i64::MAX),
            command_retries: subs.command_retries,
        }
    }

    /// The effective configuration as TOML, every default filled in and presets resolved, with
    /// the key id masked (`--check-config` prints this). Secret values are never in the
    /// configuration, only where to find them.
    #[must_use]
    pub fn effective_toml(&self) -> String {
        match toml::to_string(self) {
            Ok(text) => format!("# effective configuration (key id masked)\n{text}"),
            Err(error) => format!("# the effective configuration cannot be printed: {error}\n"),
        }
    }
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.effective_toml())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[exchange]
environment = "prod"
key_id = "a952bcbe-ec3b-4b5b-b8f9-11dae589608c"
private_key_file = "/etc/kalshi/key.pem"

[database]
url = "postgresql://gatherer@localhost/kalshi"
password_file = "/etc/kalshi/db.password"
gatherer_id = 1
"#;

    fn errors(text: &str, cores: usize) -> Vec<String> {
        Config::from_toml_str(text, cores)
            .unwrap_err()
            .0
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn with(extra: &str) -> String {
        format!("{MINIMAL}\n{extra}")
    }

    // Group commit: on by default at 5 ms, 0 turns it off, and a linger past the age limit is
    // refused by name.
    #[test]
    fn writer_linger() {
        let config = Config::from_toml_str(MINIMAL, 2).unwrap();
        assert_eq!(config.writer.linger_ms, 5);
        let off = format!("{MINIMAL}\n[writer]\nlinger_ms = 0\n");
        assert_eq!(Config::from_toml_str(&off, 2).unwrap().writer.linger_ms, 0);
        let late = format!("{MINIMAL}\n[writer]\nflush_age_ms = 50\nlinger_ms = 80\n");
        let errors = Config::from_toml_str(&late, 2).unwrap_err().to_string();
        assert!(
            errors.contains("writer.linger_ms") && errors.contains("flush_age_ms (50 ms)"),
            "{errors}"
        );
    }

    // The minimal file gets every documented default and the prod preset hosts.
    #[test]
    fn defaults_and_presets() {
        let config = Config::from_toml_str(MINIMAL, 2).unwrap();
        assert_eq!(config.ws_url(), PROD_WS_URL);
        assert_eq!(config.rest_url(), PROD_REST_URL);
        assert_eq!(config.engine, EngineConfig::default());
        assert_eq!(config.engine.shard_cores, vec![0]);
        assert_eq!(config.poller.interval_s, 900);
        assert_eq!(config.poller.reads_per_second, 20);
        assert_eq!(config.http.metrics_addr, "127.0.0.1:9090");
        assert_eq!(config.http.health_addr, "127.0.0.1:8080");
        assert!(!config.subscriptions.use_yes_price);
        let demo = MINIMAL.replace("\"prod\"", "\"demo\"");
        let config = Config::from_toml_str(&demo, 2).unwrap();
        assert_eq!(config.ws_url(), DEMO_WS_URL);
        assert_eq!(config.rest_url(), DEMO_REST_URL);
        let backoff = config.backoff_config();
        assert_eq!(
            (backoff.base_us, backoff.cap_us, backoff.jitter_ppm),
            (500_000, 60_000_000, 500_000)
        );
        let subs = config.subs_config(true);
        assert_eq!(subs.channels.len(), 3);
        assert_eq!(subs.lifecycle_channels.len(), 2);
        assert!(config.subs_config(false).lifecycle_channels.is_empty());
    }

    // Each rule gives an error naming the key and the problem.
    #[test]
    fn errors_name_the_key() {
        let e = errors(&with("[engine]\nshard_cores = [0, 7]\nwriter_core = 1"), 2);
        assert_eq!(
            e,
            vec!["engine.shard_cores: core 7 does not exist on this machine (2 cores online)"]
        );
        let e = errors(&with("[engine]\nshard_cores = [1]\nwriter_core = 1"), 4);
        assert_eq!(
            e,
            vec![
                "engine.writer_core: core 1 is already used by another stage; placement must be distinct"
            ]
        );
        let e = errors(&with("[engine]\nshard_cores = []\ncontrol_core = 1"), 4);
        assert_eq!(
            e,
            vec![
                "engine.shard_cores: at least one shard core is required",
                "engine.control_core: core 1 is already used by another stage; placement must be distinct"
            ]
        );
        let e = errors(
            &MINIMAL.replace("gatherer@localhost", "gatherer:hunter2@localhost"),
            2,
        );
        assert_eq!(
            e,
            vec![
                "database.url: contains a password; put it in password_file or password_env instead"
            ]
        );
        // The password itself never appears in the message.
        assert!(!e[0].contains("hunter2"));
        let e = errors(
            &MINIMAL.replace(
                "postgresql://gatherer@localhost/kalshi",
                "host=localhost password=x",
            ),
            2,
        );
        assert_eq!(e.len(), 1);
        let e = errors(
            &with(
                "[subscriptions]\nchannels = [\"orderbook_delta\", \"ticker_v2\"]\nmarkets_per_command = 0",
            ),
            2,
        );
        assert_eq!(
            e,
            vec![
                "subscriptions.channels: unknown channel \"ticker_v2\" (allowed: orderbook_delta, trade, ticker)",
                "subscriptions.markets_per_command: 0 is out of range (allowed 1..=500)"
            ]
        );
        let e = errors(
            &with("[reconnect]\njitter = 1.5\nbackoff_base_ms = 10\nbackoff_cap_ms = 5"),
            2,
        );
        assert_eq!(
            e,
            vec![
                "reconnect.backoff_cap_ms: 5 is out of range (allowed 10..=3600000)",
                "reconnect.jitter: 1.5 is out of range (allowed 0..=1)"
            ]
        );
        let e = errors(
            &with(
                "[http]\nmetrics_addr = \"localhost:90\"\nadmin_token_file = \"/a\"\nadmin_token_env = \"B\"",
            ),
            2,
        );
        assert_eq!(
            e,
            vec![
                "http.metrics_addr: \"localhost:90\" is not an address like 127.0.0.1:9090",
                "http.admin_token_file: give either http.admin_token_file or http.admin_token_env, not both"
            ]
        );
        let e = errors(&with("[limits]\nliveness_timeout_ms = 5000"), 2);
        assert_eq!(
            e,
            vec!["limits.liveness_timeout_ms: 5000 is out of range (allowed 15000..=600000)"]
        );
        let e = errors(&MINIMAL.replace("gatherer_id = 1", "gatherer_id = 0"), 2);
        assert_eq!(
            e,
            vec!["database.gatherer_id: 0 is not positive (allowed 1..=32767)"]
        );
    }

    // Exchange rules: sim needs explicit URLs, prod/demo need TLS, the key id comes from exactly
    // one place.
    #[test]
    fn exchange_rules() {
        let sim = MINIMAL.replace("\"prod\"", "\"sim\"");
        assert_eq!(
            errors(&sim, 2),
            vec![
                "exchange.ws_url: required when exchange.environment is \"sim\"",
                "exchange.rest_url: required when exchange.environment is \"sim\""
            ]
        );
        let sim_ok = sim.replace(
            "environment = \"sim\"",
            "environment = \"sim\"\nws_url = \"ws://127.0.0.1:7000/trade-api/ws/v2\"\nrest_url = \"http://127.0.0.1:7001/trade-api/v2/\"",
        );
        let config = Config::from_toml_str(&sim_ok, 2).unwrap();
        assert_eq!(config.rest_url(), "http://127.0.0.1:7001/trade-api/v2");
        let insecure = MINIMAL.replace(
            "environment = \"prod\"",
            "environment = \"prod\"\nws_url = \"ws://example.com/x\"",
        );
        assert_eq!(
            errors(&insecure, 2),
            vec!["exchange.ws_url: scheme \"ws\" is not allowed here (expected wss)"]
        );
        let both = MINIMAL.replace("key_id = ", "key_id_env = \"KALSHI_KEY_ID\"\nkey_id = ");
        assert_eq!(
            errors(&both, 2),
            vec!["exchange.key_id: give either key_id or key_id_env, not both"]
        );
        let env_only = MINIMAL.replace(
            "key_id = \"a952bcbe-ec3b-4b5b-b8f9-11dae589608c\"",
            "key_id_env = \"KALSHI_KEY_ID\"",
        );
        assert!(Config::from_toml_str(&env_only, 2).is_ok());
        let bad_env = MINIMAL.replace(
            "password_file = \"/etc/kalshi/db.password\"",
            "password_env = \"A=B\"",
        );
        assert_eq!(
            errors(&bad_env, 2),
            vec!["database.password_env: \"A=B\" is not a valid environment variable name"]
        );
    }

    // Parse errors: unknown keys, unknown sections, wrong types and an unknown environment are
    // all refused with the offending key in the message.
    #[test]
    fn unknown_and_mistyped_keys() {
        let e = errors(&with("[poller]\ninterval = 5"), 2);
        assert!(
            e[0].starts_with("toml:") && e[0].contains("unknown field `interval`"),
            "{e:?}"
        );
        let e = errors(&with("[poler]\ninterval_s = 5"), 2);
        assert!(e[0].contains("unknown field `poler`"), "{e:?}");
        let e = errors(&with("[poller]\ninterval_s = \"15m\""), 2);
        assert!(e[0].contains("interval_s"), "{e:?}");
        let e = errors(&MINIMAL.replace("\"prod\"", "\"production\""), 2);
        assert!(e[0].contains("unknown variant `production`"), "{e:?}");
        let e = errors("[exchange]\nenvironment = \"prod\"", 2);
        assert!(e[0].contains("missing field"), "{e:?}");
        let e = errors(
            &MINIMAL.replace(
                "key_id = \"a952bcbe-ec3b-4b5b-b8f9-11dae589608c\"",
                "private_key = \"-----BEGIN\"",
            ),
            2,
        );
        assert!(e[0].contains("unknown field `private_key`"), "{e:?}");
    }

    // The effective configuration masks the key id, resolves presets and round-trips: parsing
    // it again gives the same configuration (apart from the masked id).
    #[test]
    fn effective_config_is_masked_and_complete() {
        let config = Config::from_toml_str(MINIMAL, 2).unwrap();
        let text = config.effective_toml();
        assert!(!text.contains("a952bcbe-ec3b"), "{text}");
        assert!(text.contains("a952…(masked)"));
        assert!(text.contains(PROD_WS_URL));
        assert!(text.contains("interval_s = 900"));
        assert!(text.contains("password_file = \"/etc/kalshi/db.password\""));
        let mut again = Config::from_toml_str(&text, 2).unwrap();
        again.exchange.key_id = config.exchange.key_id.clone();
        assert_eq!(again, config);
        assert_eq!(config.to_string(), text);
        assert_eq!(mask("short"), "****(masked)");
    }

    // The documented example file parses and validates, and uses the simulator.
    #[test]
    fn example_file_parses() {
        let text = include_str!("../gatherer.example.toml");
        let config = Config::from_toml_str(text, 4).unwrap();
        assert_eq!(config.exchange.environment, Environment::Sim);
        // Every section is present in the example, so every knob is documented there.
        for section in [
            "[exchange]",
            "[database]",
            "[engine]",
            "[subscriptions]",
            "[reconnect]",
            "[poller]",
            "[discovery]",
            "[http]",
            "[spool]",
            "[writer]",
            "[limits]",
        ] {
            assert!(text.contains(section), "{section}");
        }
        // And every key of the effective config appears in the example.
        let effective: toml::Table = toml::from_str(&config.effective_toml()).unwrap();
        for (section, table) in effective {
            for key in table.as_table().unwrap().keys() {
                assert!(
                    text.contains(&format!("{key} =")) || text.contains(&format!("# {key} =")),
                    "{section}.{key}"
                );
            }
        }
    }
}
