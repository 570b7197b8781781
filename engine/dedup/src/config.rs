//! The deduplicator's configuration: one TOML file, validated once at start.
//!
//! Every key is optional except `production.url` and at least one `[[gatherer]]`. Problems are
//! collected and reported together, each naming its key. Passwords never appear in the file:
//! a connection URL that carries one is refused; they come from `password_file` (which must
//! not be readable by group or others, i.e. mode 0600 or stricter) or `password_env`.
//!
//! ```toml
//! [production]
//! # libpq URL or key=value string of the archive database, WITHOUT a password.
//! url = "postgresql://deduplicator@prod-db:5432/kalshi"
//! # Password source: a file (mode 0600) or an environment variable; neither = no password.
//! password_file = "/run/credentials/kalshi-deduplicator/production-password"
//! # password_env = "KALSHI_PRODUCTION_PASSWORD"
//! # Apply pending production migrations at start (kalshi-storage, production role).
//! # Default true. Needs the owner's rights when a migration is pending; an up-to-date
//! # database only needs the deduplicator role.
//! migrate = true
//! connect_timeout_ms = 5000       # one connection attempt; default 5000
//! statement_timeout_ms = 60000    # per statement on this connection; default 60000
//!
//! [[gatherer]]                    # one table per gatherer database; names must be unique
//! name = "gatherer-1"             # identity in production's dedup state, metrics and /health
//! url = "postgresql://deduplicator@gatherer-1:5432/kalshi"
//! password_file = "/run/credentials/kalshi-deduplicator/gatherer-1-password"
//! # writer_id = "gatherer-1"      # the gatherer writer's writer_id (writer_batches); default name
//! # connect_timeout_ms / statement_timeout_ms as above
//!
//! [sync]
//! range_width_ms = 1000      # width of a merge range of exchange time; default 1000. Lag is at
//!                            # most about width + grace; wider ranges mean fewer transactions.
//! grace_ms = 500             # every live gatherer's watermark must be this far past a range's
//!                            # end before it closes (rows later than that are still merged, by
//!                            # the late-row scan, a second or so later), and the late-row scan
//!                            # only trusts arrival times this far behind the watermark, which
//!                            # covers the gap between a gatherer stamping a row and pushing it
//!                            # (microseconds; batch ids are arrival floors, so ring backlog
//!                            # does not count). Default 500; lag is about width + grace.
//! down_after_ms = 10000      # a gatherer unreachable (or with a stuck watermark) this long is
//!                            # down and ranges close without it; until then they wait. Default
//!                            # 10000. Shorter: less lag in an outage, more catch-up work.
//! late_window_secs = 60      # a returning gatherer is re-checked this far back before where it
//!                            # left off (late rows); default 60
//! poll_interval_ms = 100     # how often watermarks are probed when idle; default 100
//! late_scan_interval_ms = 1000  # how often each live gatherer is asked which merged ranges
//!                            # received rows since the last scan (late rows); default 1000
//! late_scan_step_secs = 300  # most arrival time one late scan covers (bounds the query after
//!                            # a long pause); default 300
//! lifecycle_tolerance_ms = 5000  # lifecycle rows carry the gatherer's receive time: copies
//!                            # with the same content at most this far apart are one event;
//!                            # default 5000, 0 = exact times only
//! batch_ranges_max = 10      # ranges per production transaction when behind; default 10
//! batch_rows_target = 400000 # aim for about this many source rows per transaction; default
//!                            # 400000 (bounds memory: roughly 100 bytes per row)
//! # start_us = 1767225600000000  # first range start on a fresh production database (µs since
//! #                              # the epoch); default: now - start_lookback_secs
//! start_lookback_secs = 3600     # default 3600
//! state_sync_interval_ms = 5000  # markets/events re-sync period; default 5000
//! retry_delay_min_ms = 100       # backoff after a failure, doubling; default 100
//! retry_delay_max_ms = 5000      # backoff cap; default 5000
//!
//! [http]
//! metrics_listen = "127.0.0.1:9090" # GET /metrics; default 127.0.0.1:9090 (loopback)
//! health_listen = "127.0.0.1:8080"  # GET /health, POST /admin/recheck; default 127.0.0.1:8080
//! health_lag_max_secs = 30          # /health is 503 when the sync lag exceeds this; default 30
//! # admin_token_file = "/run/credentials/kalshi-deduplicator/admin-token"  # mode 0600; when
//! #   set, /admin/* requires "Authorization: Bearer <token>"; otherwise only loopback peers
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

/// One configuration problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The key (`production.url`, `gatherer[1].name`, `toml` for syntax errors).
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

/// Every problem found in a configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    production: Option<RawDb>,
    #[serde(default)]
    gatherer: Vec<RawGatherer>,
    #[serde(default)]
    sync: RawSync,
    #[serde(default)]
    http: RawHttp,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDb {
    url: Option<String>,
    password_file: Option<PathBuf>,
    password_env: Option<String>,
    migrate: Option<bool>,
    connect_timeout_ms: Option<u64>,
    statement_timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGatherer {
    name: Option<String>,
    url: Option<String>,
    password_file: Option<PathBuf>,
    password_env: Option<String>,
    writer_id: Option<String>,
    connect_timeout_ms: Option<u64>,
    statement_timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSync {
    range_width_ms: Option<u64>,
    grace_ms: Option<u64>,
    down_after_ms: Option<u64>,
    late_window_secs: Option<u64>,
    poll_interval_ms: Option<u64>,
    late_scan_interval_ms: Option<u64>,
    late_scan_step_secs: Option<u64>,
    lifecycle_tolerance_ms: Option<u64>,
    batch_ranges_max: Option<usize>,
    batch_rows_target: Option<usize>,
    start_us: Option<i64>,
    start_lookback_secs: Option<u64>,
    state_sync_interval_ms: Option<u64>,
    retry_delay_min_ms: Option<u64>,
    retry_delay_max_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    metrics_listen: Option<String>,
    health_listen: Option<String>,
    health_lag_max_secs: Option<u64>,
    admin_token_file: Option<PathBuf>,
}

/// A database to connect to. `Debug` shows `user@host:port/db` only.
#[derive(Clone)]
pub struct DbTarget {
    /// The connection string (without a password).
    pub url: String,
    /// The password from the file or environment variable.
    pub password: Option<String>,
    /// One connection attempt.
    pub connect_timeout: Duration,
    /// `statement_timeout` of the session.
    pub statement_timeout: Duration,
}

impl fmt::Debug for DbTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbTarget")
            .field("target", &describe_target(&self.url))
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("connect_timeout", &self.connect_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .finish()
    }
}

impl DbTarget {
    /// A target with default timeouts and no password (tests).
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            password: None,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(60),
        }
    }

    /// `user@host:port/db`, for logs.
    #[must_use]
    pub fn describe(&self) -> String {
        describe_target(&self.url)
    }

    /// The `postgres` client configuration: URL, password, timeouts, keepalives.
    ///
    /// # Errors
    ///
    /// The URL does not parse (validated configurations always parse).
    pub fn pg_config(&self, application: &str) -> Result<postgres::Config, postgres::Error> {
        let mut pg = postgres::Config::from_str(&self.url)?;
        if let Some(p) = &self.password {
            pg.password(p);
        }
        pg.connect_timeout(self.connect_timeout);
        pg.keepalives(true);
        pg.keepalives_idle(Duration::from_secs(10));
        pg.application_name(application);
        pg.options(&format!(
            "-c statement_timeout={}",
            self.statement_timeout.as_millis().max(1)
        ));
        Ok(pg)
    }
}

/// One gatherer database.
#[derive(Clone, Debug)]
pub struct GathererTarget {
    /// Name (dedup state, metrics label, health).
    pub name: String,
    /// The gatherer writer's `writer_id` in `writer_batches`.
    pub writer_id: String,
    /// The database.
    pub db: DbTarget,
}

/// Range-sync settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncConfig {
    /// Range width.
    pub range_width: Duration,
    /// Closing grace.
    pub grace: Duration,
    /// Down after.
    pub down_after: Duration,
    /// Re-check window of a returning gatherer.
    pub late_window: Duration,
    /// Idle poll period.
    pub poll_interval: Duration,
    /// Late-row scan period per gatherer.
    pub late_scan_interval: Duration,
    /// Most arrival time one late scan covers.
    pub late_scan_step: Duration,
    /// Lifecycle copies with the same content this close in time are one event.
    pub lifecycle_tolerance: Duration,
    /// Most ranges per transaction.
    pub batch_ranges_max: usize,
    /// Source rows aimed at per transaction.
    pub batch_rows_target: usize,
    /// First range start on a fresh production database (µs); `None`: now − lookback.
    pub start_us: Option<i64>,
    /// Lookback for the default start.
    pub start_lookback: Duration,
    /// Markets/events sync period.
    pub state_sync_interval: Duration,
    /// First retry delay.
    pub retry_delay_min: Duration,
    /// Longest retry delay.
    pub retry_delay_max: Duration,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            range_width: Duration::from_millis(1000),
            grace: Duration::from_millis(500),
            down_after: Duration::from_millis(10_000),
            late_window: Duration::from_secs(60),
            poll_interval: Duration::from_millis(100),
            late_scan_interval: Duration::from_millis(1000),
            late_scan_step: Duration::from_secs(300),
            lifecycle_tolerance: Duration::from_millis(5000),
            batch_ranges_max: 10,
            batch_rows_target: 400_000,
            start_us: None,
            start_lookback: Duration::from_secs(3600),
            state_sync_interval: Duration::from_millis(5000),
            retry_delay_min: Duration::from_millis(100),
            retry_delay_max: Duration::from_millis(5000),
        }
    }
}

/// HTTP settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpConfig {
    /// `/metrics` address.
    pub metrics_listen: String,
    /// `/health` and `/admin` address.
    pub health_listen: String,
    /// Lag above which `/health` is 503.
    pub health_lag_max: Duration,
    /// Admin bearer token (from `admin_token_file`).
    pub admin_token: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            metrics_listen: "127.0.0.1:9090".to_owned(),
            health_listen: "127.0.0.1:8080".to_owned(),
            health_lag_max: Duration::from_secs(30),
            admin_token: None,
        }
    }
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Production.
    pub production: DbTarget,
    /// Run production migrations at start.
    pub migrate: bool,
    /// Gatherers, in configuration order (their priority as merge sources).
    pub gatherers: Vec<GathererTarget>,
    /// Range sync.
    pub sync: SyncConfig,
    /// HTTP.
    pub http: HttpConfig,
}

struct Problems(Vec<ConfigError>);

impl Problems {
    fn add(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.0.push(ConfigError {
            key: key.into(),
            reason: reason.into(),
        });
    }
}

impl Config {
    /// Read, parse and validate `path`.
    ///
    /// # Errors
    ///
    /// Every problem found, each naming its key (`file` when the file cannot be read).
    pub fn from_file(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                key: "file".to_owned(),
                reason: format!("cannot read {}: {e}", path.display()),
            }])
        })?;
        Self::from_toml_str(&text)
    }

    /// Parse and validate TOML text. Password files are read (and their permissions checked)
    /// here; password environment variables are read from this process's environment.
    ///
    /// # Errors
    ///
    /// Every problem found, each naming its key.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigErrors> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                key: "toml".to_owned(),
                reason: e.to_string().trim_end().replace('\n', " "),
            }])
        })?;
        let mut p = Problems(Vec::new());
        let production = match &raw.production {
            Some(db) => db_target(
                &mut p,
                "production",
                db.url.as_deref(),
                db.password_file.as_deref(),
                db.password_env.as_deref(),
                db.connect_timeout_ms,
                db.statement_timeout_ms,
            ),
            None => {
                p.add(
                    "production",
                    "missing: the [production] table with url is required",
                );
                None
            }
        };
        if raw.gatherer.is_empty() {
            p.add("gatherer", "at least one [[gatherer]] is required");
        }
        let mut names = BTreeSet::new();
        let mut gatherers = Vec::new();
        for (i, g) in raw.gatherer.iter().enumerate() {
            let key = format!("gatherer[{i}]");
            let name = g.name.clone().unwrap_or_default();
            if name.is_empty()
                || name.len() > 63
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            {
                p.add(
                    format!("{key}.name"),
                    "required: 1 to 63 characters of A-Z a-z 0-9 - _ .",
                );
            } else if name == crate::MERGED_SOURCE {
                p.add(
                    format!("{key}.name"),
                    format!("{:?} is reserved", crate::MERGED_SOURCE),
                );
            } else if !names.insert(name.clone()) {
                p.add(format!("{key}.name"), format!("{name:?} is used twice"));
            }
            let writer_id = g.writer_id.clone().unwrap_or_else(|| name.clone());
            if writer_id.is_empty() || writer_id.len() > 200 {
                p.add(format!("{key}.writer_id"), "must be 1 to 200 bytes");
            }
            if let Some(db) = db_target(
                &mut p,
                &key,
                g.url.as_deref(),
                g.password_file.as_deref(),
                g.password_env.as_deref(),
                g.connect_timeout_ms,
                g.statement_timeout_ms,
            ) {
                gatherers.push(GathererTarget {
                    name,
                    writer_id,
                    db,
                });
            }
        }
        let sync = sync_config(&mut p, &raw.sync);
        let http = http_config(&mut p, &raw.http);
        match production {
            Some(production) if p.0.is_empty() => Ok(Config {
                production,
                migrate: raw.production.and_then(|d| d.migrate).unwrap_or(true),
                gatherers,
                sync,
                http,
            }),
            _ => Err(ConfigErrors(p.0)),
        }
    }
}

fn ms(p: &mut Problems, key: &str, v: Option<u64>, default: u64, min: u64, max: u64) -> Duration {
    let v = v.unwrap_or(default);
    if v < min || v > max {
        p.add(key, format!("{v} is out of range ({min}..={max})"));
    }
    Duration::from_millis(v.clamp(min, max))
}

fn sync_config(p: &mut Problems, raw: &RawSync) -> SyncConfig {
    let d = SyncConfig::default();
    let range_width = ms(
        p,
        "sync.range_width_ms",
        raw.range_width_ms,
        1000,
        10,
        3_600_000,
    );
    let grace = ms(p, "sync.grace_ms", raw.grace_ms, 500, 0, 3_600_000);
    let down_after = ms(
        p,
        "sync.down_after_ms",
        raw.down_after_ms,
        10_000,
        100,
        86_400_000,
    );
    let late_window = Duration::from_secs(raw.late_window_secs.unwrap_or(60));
    if late_window > Duration::from_secs(7 * 86_400) {
        p.add("sync.late_window_secs", "must be at most 604800 (7 days)");
    }
    let poll_interval = ms(
        p,
        "sync.poll_interval_ms",
        raw.poll_interval_ms,
        100,
        1,
        60_000,
    );
    let late_scan_interval = ms(
        p,
        "sync.late_scan_interval_ms",
        raw.late_scan_interval_ms,
        1000,
        1,
        3_600_000,
    );
    let late_scan_step_secs = raw.late_scan_step_secs.unwrap_or(300);
    if !(1..=86_400).contains(&late_scan_step_secs) {
        p.add(
            "sync.late_scan_step_secs",
            format!("{late_scan_step_secs} is out of range (1..=86400)"),
        );
    }
    let lifecycle_tolerance = ms(
        p,
        "sync.lifecycle_tolerance_ms",
        raw.lifecycle_tolerance_ms,
        5000,
        0,
        3_600_000,
    );
    let batch_ranges_max = raw.batch_ranges_max.unwrap_or(d.batch_ranges_max);
    if !(1..=10_000).contains(&batch_ranges_max) {
        p.add("sync.batch_ranges_max", "must be 1 to 10000");
    }
    let batch_rows_target = raw.batch_rows_target.unwrap_or(d.batch_rows_target);
    if !(1000..=100_000_000).contains(&batch_rows_target) {
        p.add("sync.batch_rows_target", "must be 1000 to 100000000");
    }
    if let Some(s) = raw.start_us
        && s < 0
    {
        p.add(
            "sync.start_us",
            "must be a time in µs since the epoch (>= 0)",
        );
    }
    let retry_delay_min = ms(
        p,
        "sync.retry_delay_min_ms",
        raw.retry_delay_min_ms,
        100,
        1,
        600_000,
    );
    let retry_delay_max = ms(
        p,
        "sync.retry_delay_max_ms",
        raw.retry_delay_max_ms,
        5000,
        1,
        600_000,
    );
    if retry_delay_max < retry_delay_min {
        p.add(
            "sync.retry_delay_max_ms",
            "must be at least sync.retry_delay_min_ms",
        );
    }
    SyncConfig {
        range_width,
        grace,
        down_after,
        late_window,
        poll_interval,
        late_scan_interval,
        late_scan_step: Duration::from_secs(late_scan_step_secs.clamp(1, 86_400)),
        lifecycle_tolerance,
        batch_ranges_max: batch_ranges_max.clamp(1, 10_000),
        batch_rows_target,
        start_us: raw.start_us,
        start_lookback: Duration::from_secs(raw.start_lookback_secs.unwrap_or(3600)),
        state_sync_interval: ms(
            p,
            "sync.state_sync_interval_ms",
            raw.state_sync_interval_ms,
            5000,
            10,
            3_600_000,
        ),
        retry_delay_min,
        retry_delay_max,
    }
}

fn http_config(p: &mut Problems, raw: &RawHttp) -> HttpConfig {
    let d = HttpConfig::default();
    let mut check_addr = |key: &str, v: Option<&String>, default: &str| {
        let v = v.cloned().unwrap_or_else(|| default.to_owned());
        if v.parse::<std::net::SocketAddr>().is_err() {
            p.add(key, format!("{v:?} is not an address like 0.0.0.0:9090"));
        }
        v
    };
    let metrics_listen = check_addr(
        "http.metrics_listen",
        raw.metrics_listen.as_ref(),
        &d.metrics_listen,
    );
    let health_listen = check_addr(
        "http.health_listen",
        raw.health_listen.as_ref(),
        &d.health_listen,
    );
    let admin_token = raw
        .admin_token_file
        .as_deref()
        .and_then(|f| read_secret_file(p, "http.admin_token_file", f));
    HttpConfig {
        metrics_listen,
        health_listen,
        health_lag_max: Duration::from_secs(raw.health_lag_max_secs.unwrap_or(30)),
        admin_token,
    }
}

#[allow(clippy::too_many_arguments)]
fn db_target(
    p: &mut Problems,
    key: &str,
    url: Option<&str>,
    password_file: Option<&Path>,
    password_env: Option<&str>,
    connect_timeout_ms: Option<u64>,
    statement_timeout_ms: Option<u64>,
) -> Option<DbTarget> {
    let connect_timeout = ms(
        p,
        &format!("{key}.connect_timeout_ms"),
        connect_timeout_ms,
        5000,
        100,
        600_000,
    );
    let statement_timeout = ms(
        p,
        &format!("{key}.statement_timeout_ms"),
        statement_timeout_ms,
        60_000,
        100,
        86_400_000,
    );
    let password = match (password_file, password_env) {
        (Some(_), Some(_)) => {
            p.add(
                format!("{key}.password_file"),
                "set password_file or password_env, not both",
            );
            None
        }
        (Some(f), None) => read_secret_file(p, &format!("{key}.password_file"), f),
        (None, Some(env)) => match std::env::var(env) {
            Ok(v) if !v.is_empty() => Some(v),
            _ => {
                p.add(
                    format!("{key}.password_env"),
                    format!("environment variable {env:?} is not set (or empty)"),
                );
                None
            }
        },
        (None, None) => None,
    };
    let Some(url) = url.filter(|u| !u.trim().is_empty()) else {
        p.add(format!("{key}.url"), "required");
        return None;
    };
    match postgres::Config::from_str(url) {
        Err(e) => {
            p.add(
                format!("{key}.url"),
                format!("not a libpq URL or key=value string: {e}"),
            );
            None
        }
        Ok(c) if c.get_password().is_some() => {
            p.add(
                format!("{key}.url"),
                "contains a password; put it in password_file or password_env instead",
            );
            None
        }
        Ok(_) => Some(DbTarget {
            url: url.to_owned(),
            password,
            connect_timeout,
            statement_timeout,
        }),
    }
}

/// Read a secret file: it must exist, be a regular file, not be readable by group or others,
/// and hold a non-empty first line (the secret, without its line end).
fn read_secret_file(p: &mut Problems, key: &str, path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            p.add(key, format!("cannot read {}: {e}", path.display()));
            return None;
        }
    };
    if !meta.is_file() {
        p.add(key, format!("{} is not a regular file", path.display()));
        return None;
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        p.add(
            key,
            format!(
                "{} has mode {mode:03o}: a secret file must not be accessible by group or \
                 others (chmod 600)",
                path.display()
            ),
        );
        return None;
    }
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let line = text.lines().next().unwrap_or("").to_owned();
            if line.is_empty() {
                p.add(key, format!("{} is empty", path.display()));
                None
            } else {
                Some(line)
            }
        }
        Err(e) => {
            p.add(key, format!("cannot read {}: {e}", path.display()));
            None
        }
    }
}

/// `user@host:port/db` of a connection string, without the password.
#[must_use]
pub fn describe_target(url: &str) -> String {
    let Ok(config) = postgres::Config::from_str(url) else {
        return "<unparsable connection string>".to_owned();
    };
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".to_owned());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}@{host}:{port}/{}",
        config.get_user().unwrap_or("?"),
        config.get_dbname().unwrap_or("?")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        [production]
        url = "postgresql://deduplicator@127.0.0.1:5432/kalshi"
        [[gatherer]]
        name = "g1"
        url = "postgresql://deduplicator@127.0.0.1:5433/kalshi"
        [[gatherer]]
        name = "g2"
        url = "host=127.0.0.1 port=5434 user=deduplicator dbname=kalshi"
        writer_id = "gatherer-2"
        [sync]
        range_width_ms = 250
        lifecycle_tolerance_ms = 3000
    "#;

    // A minimal file gets the documented defaults; explicit values win.
    #[test]
    fn defaults_and_values() {
        let c = Config::from_toml_str(GOOD).unwrap();
        assert!(c.migrate);
        assert_eq!(c.gatherers.len(), 2);
        assert_eq!(c.gatherers[0].writer_id, "g1");
        assert_eq!(c.gatherers[1].writer_id, "gatherer-2");
        assert_eq!(c.sync.range_width, Duration::from_millis(250));
        assert_eq!(c.sync.grace, Duration::from_millis(500));
        assert_eq!(c.sync.lifecycle_tolerance, Duration::from_millis(3000));
        assert_eq!(c.sync.late_scan_interval, Duration::from_millis(1000));
        assert_eq!(c.sync.late_scan_step, Duration::from_secs(300));
        assert_eq!(c.http.metrics_listen, "127.0.0.1:9090");
        assert_eq!(c.http.health_listen, "127.0.0.1:8080");
        assert!(!format!("{:?}", c.production).contains("5432/kalshi?"));
    }

    // Each bad value is reported with its key, all at once.
    #[test]
    fn errors_name_keys() {
        let bad = r#"
            [production]
            url = "postgresql://deduplicator:secret@127.0.0.1/kalshi"
            [[gatherer]]
            name = "g1"
            url = "postgresql://x@h/kalshi"
            [[gatherer]]
            name = "g1"
            [sync]
            range_width_ms = 0
            retry_delay_min_ms = 10
            retry_delay_max_ms = 5
            late_scan_step_secs = 0
            lifecycle_tolerance_ms = 99999999
            [http]
            metrics_listen = "nope"
        "#;
        let e = Config::from_toml_str(bad).unwrap_err();
        let keys: Vec<&str> = e.0.iter().map(|e| e.key.as_str()).collect();
        for k in [
            "production.url",
            "gatherer[1].name",
            "gatherer[1].url",
            "sync.range_width_ms",
            "sync.retry_delay_max_ms",
            "sync.late_scan_step_secs",
            "sync.lifecycle_tolerance_ms",
            "http.metrics_listen",
        ] {
            assert!(keys.contains(&k), "{k} missing from {e}");
        }
        assert!(!e.to_string().contains("secret"), "{e}");
        let unknown = Config::from_toml_str("[sync]\nrange_width = 5\n").unwrap_err();
        assert_eq!(unknown.0[0].key, "toml");
        assert!(unknown.to_string().contains("range_width"), "{unknown}");
        let none = Config::from_toml_str("").unwrap_err();
        assert!(none.0.iter().any(|e| e.key == "production"));
        assert!(none.0.iter().any(|e| e.key == "gatherer"));
    }

    // Password files must be 0600 or stricter; the password is read, never shown.
    #[test]
    fn password_file_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "hunter2\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let text = format!(
            "[production]\nurl = \"postgresql://d@h/kalshi\"\npassword_file = \"{}\"\n\
             [[gatherer]]\nname = \"g\"\nurl = \"postgresql://d@h2/kalshi\"\n",
            f.display()
        );
        let e = Config::from_toml_str(&text).unwrap_err();
        assert_eq!(e.0[0].key, "production.password_file");
        assert!(e.0[0].reason.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = Config::from_toml_str(&text).unwrap();
        assert_eq!(c.production.password.as_deref(), Some("hunter2"));
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
