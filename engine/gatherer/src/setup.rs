//! Start-up: the configuration file, secrets, the key, resource limits, and the resume point.
//!
//! Everything here runs once, before any thread starts, and every failure is a [`StartError`]
//! that names what is wrong (a key, a file, a host), never a panic.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use kalshi_auth::SigningKey;
use kalshi_gather::Config;

/// Why the gatherer could not start (or had to stop). Each maps to a process exit code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration or a secret is invalid: a restart cannot help (exit 78, `EX_CONFIG`).
    #[error("configuration error: {0}")]
    Config(String),
    /// The exchange refused our key (HTTP 401): a restart cannot help (exit 78).
    #[error("{0}")]
    Auth(String),
    /// A service the gatherer needs is unreachable at start (exit 69, `EX_UNAVAILABLE`); a
    /// restart later may succeed.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Anything else that stopped the process (exit 1).
    #[error("{0}")]
    Runtime(String),
}

impl StartError {
    /// The process exit code for this error.
    #[must_use]
    pub const fn exit_code(&self) -> u8 {
        match self {
            StartError::Config(_) | StartError::Auth(_) => 78,
            StartError::Unavailable(_) => 69,
            StartError::Runtime(_) => 1,
        }
    }
}

/// A loaded configuration with its secrets resolved. Secrets never appear in `Debug` output.
pub struct Loaded {
    /// The validated configuration.
    pub config: Config,
    /// Where it was read from.
    pub config_path: PathBuf,
    /// The Kalshi API key id.
    pub key_id: String,
    /// The private key (from a file that only its owner can read).
    pub key: SigningKey,
    /// The resolved private key path.
    pub key_path: PathBuf,
    /// The database connection string with the password added (never logged).
    pub database_url: String,
    /// The admin bearer token, if configured.
    pub admin_token: Option<String>,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("config_path", &self.config_path)
            .field("key_id", &kalshi_gather::config::mask(&self.key_id))
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

/// Microseconds since the Unix epoch (vDSO clock read; no system call).
#[must_use]
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// The number of CPU cores online, for placement validation.
#[must_use]
pub fn cores_online() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// Resolves the private key path: an absolute path is used as is; a relative one is taken
/// under `$CREDENTIALS_DIRECTORY` when systemd set it (`LoadCredential=`), else next to the
/// configuration file.
#[must_use]
pub fn resolve_key_path(configured: &Path, config_path: &Path) -> PathBuf {
    if configured.is_absolute() {
        return configured.to_path_buf();
    }
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join(configured);
    }
    config_path
        .parent()
        .map_or_else(|| configured.to_path_buf(), |dir| dir.join(configured))
}

fn env_secret(key: &str, name: &str) -> Result<String, StartError> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => Ok(value.trim().to_owned()),
        Ok(_) => Err(StartError::Config(format!(
            "{key}: environment variable {name} is empty"
        ))),
        Err(_) => Err(StartError::Config(format!(
            "{key}: environment variable {name} is not set"
        ))),
    }
}

fn file_secret(key: &str, path: &Path) -> Result<String, StartError> {
    let text = kalshi_auth::read_secret_file(path)
        .map_err(|e| StartError::Config(format!("{key}: {e}")))?;
    let value = text.trim().to_owned();
    if value.is_empty() {
        return Err(StartError::Config(format!(
            "{key}: {} is empty",
            path.display()
        )));
    }
    Ok(value)
}

/// Adds a password to a libpq URL or key/value connection string.
fn with_password(url: &str, password: &str) -> String {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let mut encoded = String::new();
        for byte in password.bytes() {
            if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
                encoded.push(char::from(byte));
            } else {
                encoded.push_str(&format!("%{byte:02X}"));
            }
        }
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}password={encoded}")
    } else {
        let escaped = password.replace('\\', "\\\\").replace('\'', "\\'");
        format!("{url} password='{escaped}'")
    }
}

/// Reads and validates the configuration file, then loads every secret it points to: the key
/// id, the private key (refused when group or others can read it), the database password and
/// the admin token.
///
/// # Errors
/// [`StartError::Config`] naming the key or file at fault.
pub fn load(config_path: &Path) -> Result<Loaded, StartError> {
    let text = std::fs::read_to_string(config_path).map_err(|e| {
        StartError::Config(format!(
            "cannot read the configuration file {}: {e}",
            config_path.display()
        ))
    })?;
    let config = Config::from_toml_str(&text, cores_online())
        .map_err(|e| StartError::Config(format!("{}: {e}", config_path.display())))?;
    let key_id = match (&config.exchange.key_id, &config.exchange.key_id_env) {
        (Some(id), _) => id.trim().to_owned(),
        (None, Some(name)) => env_secret("exchange.key_id_env", name)?,
        (None, None) => {
            return Err(StartError::Config("exchange.key_id: required".to_owned()));
        }
    };
    let key_path = resolve_key_path(&config.exchange.private_key_file, config_path);
    let key = SigningKey::from_pem_file(&key_path)
        .map_err(|e| StartError::Config(format!("exchange.private_key_file: {e}")))?;
    let password = match (
        &config.database.password_file,
        &config.database.password_env,
    ) {
        (Some(path), _) => Some(file_secret("database.password_file", path)?),
        (None, Some(name)) => Some(env_secret("database.password_env", name)?),
        (None, None) => None,
    };
    let database_url = match &password {
        Some(password) => with_password(&config.database.url, password),
        None => config.database.url.clone(),
    };
    let admin_token = match (&config.http.admin_token_file, &config.http.admin_token_env) {
        (Some(path), _) => Some(file_secret("http.admin_token_file", path)?),
        (None, Some(name)) => match std::env::var(name) {
            Ok(value) if !value.trim().is_empty() => Some(value.trim().to_owned()),
            // An unset variable disables the admin endpoint (said at start).
            _ => None,
        },
        (None, None) => None,
    };
    Ok(Loaded {
        config,
        config_path: config_path.to_path_buf(),
        key_id,
        key,
        key_path,
        database_url,
        admin_token,
    })
}

/// Raises the soft `RLIMIT_MEMLOCK` to the hard limit: io_uring (glommio) locks its rings, and
/// glommio refuses to start under 512 KiB.
///
/// # Errors
/// [`StartError::Config`] when even the hard limit is below what glommio needs, with the fix.
pub fn raise_memlock() -> Result<(), StartError> {
    const NEEDED: u64 = 512 * 1024;
    let resource = rlimit::Resource::MEMLOCK;
    let (soft, hard) = resource
        .get()
        .map_err(|e| StartError::Runtime(format!("reading RLIMIT_MEMLOCK: {e}")))?;
    if soft < hard && resource.set(hard, hard).is_err() {
        log::warn!("could not raise RLIMIT_MEMLOCK from {soft} to {hard} bytes");
    }
    let (soft, _) = resource
        .get()
        .map_err(|e| StartError::Runtime(format!("reading RLIMIT_MEMLOCK: {e}")))?;
    if soft < NEEDED {
        return Err(StartError::Config(format!(
            "RLIMIT_MEMLOCK is {soft} bytes; io_uring needs at least {NEEDED}: set \
             LimitMEMLOCK=infinity in the systemd unit (or `ulimit -l`)"
        )));
    }
    Ok(())
}

/// The resume file in the spool directory: the receive time of the last frame of the previous
/// run, so that a restart records the missed window and backfills its trades.
#[must_use]
pub fn resume_file(spool_dir: &Path) -> PathBuf {
    spool_dir.join("gatherer-resume")
}

/// Reads the previous run's last frame time, if any.
#[must_use]
pub fn read_resume(spool_dir: &Path) -> Option<i64> {
    let text = std::fs::read_to_string(resume_file(spool_dir)).ok()?;
    text.trim().parse::<i64>().ok().filter(|&us| us > 0)
}

/// Writes the last frame time (atomically: temporary file, then rename).
pub fn write_resume(spool_dir: &Path, last_frame_us: i64) {
    if last_frame_us <= 0 {
        return;
    }
    let path = resume_file(spool_dir);
    let temp = spool_dir.join("gatherer-resume.tmp");
    if std::fs::write(&temp, format!("{last_frame_us}\n")).is_ok() {
        let _ = std::fs::rename(&temp, &path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_added_to_both_forms() {
        assert_eq!(
            with_password("postgresql://g@h/kalshi", "a b"),
            "postgresql://g@h/kalshi?password=a%20b"
        );
        assert_eq!(
            with_password("postgresql://g@h/kalshi?sslmode=disable", "x"),
            "postgresql://g@h/kalshi?sslmode=disable&password=x"
        );
        assert_eq!(
            with_password("host=h user=g", "it's"),
            "host=h user=g password='it\\'s'"
        );
    }

    #[test]
    fn key_paths_resolve() {
        let config = Path::new("/etc/kalshi/gatherer.toml");
        assert_eq!(
            resolve_key_path(Path::new("/abs/key.pem"), config),
            PathBuf::from("/abs/key.pem")
        );
        if std::env::var_os("CREDENTIALS_DIRECTORY").is_none() {
            assert_eq!(
                resolve_key_path(Path::new("key.pem"), config),
                PathBuf::from("/etc/kalshi/key.pem")
            );
        }
    }
}
