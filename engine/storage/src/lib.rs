//! Schema migrations for the Kalshi data platform's PostgreSQL databases.
//!
//! Every database of the platform is called `kalshi` (design §9): one local database per gatherer,
//! a rolling buffer of a few days, and the production database, the archive that the deduplicator
//! writes. They share one schema, described in `sql/README.md` and in `COMMENT ON` text inside the
//! database, with two variations chosen when [`migrate`] runs:
//!
//! * **Role** ([`Role`]). A gatherer database gets no unique indexes on its time-series tables
//!   (they cut COPY throughput about five-fold) and no deduplicator state. Production gets the
//!   unique keys the deduplicator needs for idempotent writes, and the `dedup_watermarks` and
//!   `dedup_ranges` tables. The access rights of the `gatherer`, `deduplicator` and
//!   `kalshi_reader` roles differ accordingly.
//! * **Storage flavour** ([`StorageFlavor`]). With TimescaleDB available the time-series tables are
//!   hypertables with compression and retention policies; otherwise they are natively
//!   RANGE-partitioned by UTC day, with a DEFAULT partition as a safety net and a maintenance
//!   function, `kalshi_maintain_partitions`, that creates partitions ahead and drops old ones. CI
//!   only exercises the native flavour.
//!
//! # Migrations
//!
//! The SQL lives in the workspace's `sql/` directory and is compiled into this crate with
//! `include_str!`, so a binary always carries the schema it was built with. [`MIGRATIONS`] lists
//! them; a version may have several variants (one per flavour or per role), of which exactly one
//! applies to a given database. The runner:
//!
//! 1. takes a session-level `pg_advisory_lock`, so concurrent runners (several services starting
//!    at once) apply each migration exactly once;
//! 2. creates `schema_migrations(version, name, checksum, applied_at)` if missing;
//! 3. works out the flavour and role the database already has from the variants it recorded, so
//!    that a database never switches flavour and a gatherer database is never "upgraded" into a
//!    production one by mistake;
//! 4. checks the checksum of every applied migration against the embedded SQL (an edited migration
//!    is an error, never silently skipped), and applies the missing ones, each in its own
//!    transaction together with its `schema_migrations` row;
//! 5. writes the retention settings from [`MigrateOptions`] into `kalshi_retention` and runs
//!    `kalshi_maintain_partitions`, which is idempotent.
//!
//! Running it twice is a no-op: the second run applies nothing and changes no partitions.
//!
//! ```no_run
//! use kalshi_storage::{MigrateOptions, connect, migrate};
//!
//! let mut client = connect("postgresql://postgres@127.0.0.1:5432/kalshi")?;
//! let report = migrate(&mut client, &MigrateOptions::gatherer())?;
//! println!("applied {} migrations", report.applied.len());
//! # Ok::<(), kalshi_storage::StorageError>(())
//! ```

use std::fmt;

use postgres::error::SqlState;
use postgres::{Client, NoTls};

/// The name of every platform database.
pub const DATABASE_NAME: &str = "kalshi";

/// The time-series tables (partitioned or hypertables), with a row each in `kalshi_retention`.
pub const TIME_SERIES_TABLES: &[&str] = &[
    "trades",
    "orderbook_deltas",
    "orderbook_snapshots",
    "tickers",
    "market_lifecycle",
];

/// The oldest server the schema supports (`NULLS NOT DISTINCT`, `security_invoker` views).
pub const MIN_SERVER_VERSION_NUM: i32 = 150_000;

/// Default retention of `orderbook_deltas` on gatherers, in days.
pub const DEFAULT_GATHERER_DELTA_RETENTION_DAYS: u32 = 7;

/// Default number of daily partitions created ahead of today.
pub const DEFAULT_PARTITIONS_AHEAD_DAYS: u32 = 3;

/// Key of the session advisory lock that serializes migration runners on one database.
const MIGRATION_LOCK_KEY: i64 = 0x6b61_6c73_6869_0001;

/// Which kind of database is being migrated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A gatherer's local database: append-only buffers without unique indexes.
    Gatherer,
    /// The production archive written by the deduplicator.
    Production,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Gatherer => "gatherer",
            Role::Production => "production",
        })
    }
}

/// Whether to use TimescaleDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimescaleMode {
    /// Use it when the extension is available and preloaded; otherwise native partitioning.
    #[default]
    Auto,
    /// Always use native partitioning.
    Off,
    /// Use TimescaleDB or fail.
    Required,
}

/// How the time-series tables are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageFlavor {
    /// Declarative RANGE partitioning by day (tested in CI).
    Native,
    /// TimescaleDB hypertables (not exercised in CI: the extension is not packaged there).
    Timescale,
}

impl fmt::Display for StorageFlavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StorageFlavor::Native => "native",
            StorageFlavor::Timescale => "timescale",
        })
    }
}

/// What [`migrate`] should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateOptions {
    /// The kind of database.
    pub role: Role,
    /// Days of `orderbook_deltas` to keep besides today. `None` means the role's default: 7 on
    /// gatherers, everything in production.
    pub delta_retention_days: Option<u32>,
    /// Retention of other time-series tables, `(table, days)`; `None` days keeps everything.
    /// Tables not listed keep whatever `kalshi_retention` says (everything, unless an operator
    /// changed it).
    pub table_retention_days: Vec<(String, Option<u32>)>,
    /// Daily partitions to create ahead of today (native flavour).
    pub partitions_ahead_days: u32,
    /// Whether to use TimescaleDB.
    pub timescale: TimescaleMode,
}

impl MigrateOptions {
    /// Defaults for a gatherer database.
    pub fn gatherer() -> Self {
        Self::for_role(Role::Gatherer)
    }

    /// Defaults for the production database.
    pub fn production() -> Self {
        Self::for_role(Role::Production)
    }

    /// Defaults for `role`.
    pub fn for_role(role: Role) -> Self {
        Self {
            role,
            delta_retention_days: None,
            table_retention_days: Vec::new(),
            partitions_ahead_days: DEFAULT_PARTITIONS_AHEAD_DAYS,
            timescale: TimescaleMode::Auto,
        }
    }

    /// The delta retention in effect: the option, else the role's default.
    pub fn effective_delta_retention_days(&self) -> Option<u32> {
        match (self.delta_retention_days, self.role) {
            (Some(days), _) => Some(days),
            (None, Role::Gatherer) => Some(DEFAULT_GATHERER_DELTA_RETENTION_DAYS),
            (None, Role::Production) => None,
        }
    }
}

impl Default for MigrateOptions {
    fn default() -> Self {
        Self::gatherer()
    }
}

/// One embedded migration (one variant of a version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// Version number; applied in ascending order.
    pub version: i32,
    /// Name, recorded in `schema_migrations`; tells the variants of a version apart.
    pub name: &'static str,
    /// The SQL, run as one batch in one transaction.
    pub sql: &'static str,
    /// The role it is for, or `None` for every role.
    pub role: Option<Role>,
    /// The flavour it is for, or `None` for every flavour.
    pub flavor: Option<StorageFlavor>,
}

impl Migration {
    /// Whether this variant applies to a database of `role` and `flavor`.
    pub fn applies_to(&self, role: Role, flavor: StorageFlavor) -> bool {
        self.role.is_none_or(|r| r == role) && self.flavor.is_none_or(|f| f == flavor)
    }

    /// The checksum recorded for it (see [`checksum`]).
    pub fn checksum(&self) -> String {
        checksum(self.sql)
    }
}

/// Every migration variant, in version order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "core",
        sql: include_str!("../../../sql/0001_core.sql"),
        role: None,
        flavor: None,
    },
    Migration {
        version: 2,
        name: "timeseries_native",
        sql: include_str!("../../../sql/0002_timeseries_native.sql"),
        role: None,
        flavor: Some(StorageFlavor::Native),
    },
    Migration {
        version: 2,
        name: "timeseries_timescale",
        sql: include_str!("../../../sql/0002_timeseries_timescale.sql"),
        role: None,
        flavor: Some(StorageFlavor::Timescale),
    },
    Migration {
        version: 3,
        name: "views_comments",
        sql: include_str!("../../../sql/0003_views_comments.sql"),
        role: None,
        flavor: None,
    },
    Migration {
        version: 4,
        name: "gatherer",
        sql: include_str!("../../../sql/0004_gatherer.sql"),
        role: Some(Role::Gatherer),
        flavor: None,
    },
    Migration {
        version: 4,
        name: "production",
        sql: include_str!("../../../sql/0004_production.sql"),
        role: Some(Role::Production),
        flavor: None,
    },
    Migration {
        version: 5,
        name: "writer_gatherer",
        sql: include_str!("../../../sql/0005_writer_gatherer.sql"),
        role: Some(Role::Gatherer),
        flavor: None,
    },
    Migration {
        version: 5,
        name: "writer_production",
        sql: include_str!("../../../sql/0005_writer_production.sql"),
        role: Some(Role::Production),
        flavor: None,
    },
    Migration {
        version: 6,
        name: "late_gatherer",
        sql: include_str!("../../../sql/0006_late_gatherer.sql"),
        role: Some(Role::Gatherer),
        flavor: None,
    },
    Migration {
        version: 6,
        name: "late_production",
        sql: include_str!("../../../sql/0006_late_production.sql"),
        role: Some(Role::Production),
        flavor: None,
    },
];

/// The migrations that make up a database of `role` and `flavor`, in order.
pub fn migrations_for(role: Role, flavor: StorageFlavor) -> Vec<&'static Migration> {
    MIGRATIONS
        .iter()
        .filter(|m| m.applies_to(role, flavor))
        .collect()
}

/// The checksum of a migration's SQL: `fnv1a64:` and 16 hex digits. It detects edits to an applied
/// migration; it is not meant to resist tampering.
pub fn checksum(sql: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in sql.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("fnv1a64:{hash:016x}")
}

/// A migration applied by this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedMigration {
    /// Its version.
    pub version: i32,
    /// Its name (variant).
    pub name: &'static str,
}

/// One change made by `kalshi_maintain_partitions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionChange {
    /// `created`, `created_from_default`, `dropped` (native); `compression_enabled`,
    /// `retention_set`, `retention_removed` (TimescaleDB).
    pub action: String,
    /// The time-series table.
    pub parent_table: String,
    /// The partition created or dropped (native only).
    pub partition_table: Option<String>,
}

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateReport {
    /// The role of the database.
    pub role: Role,
    /// The storage flavour of the database.
    pub flavor: StorageFlavor,
    /// Migrations applied by this run, in order (empty when the schema was up to date).
    pub applied: Vec<AppliedMigration>,
    /// Versions that were already applied.
    pub already_applied: Vec<i32>,
    /// Partition (or policy) changes made by the maintenance run at the end.
    pub partition_changes: Vec<PartitionChange>,
}

/// Errors of this crate. Each names the step or object it concerns.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Connecting failed.
    #[error("could not connect to PostgreSQL at {target}: {source}")]
    Connect {
        /// `user@host:port/db`, without the password.
        target: String,
        /// The client error.
        source: postgres::Error,
    },
    /// A statement of the runner itself failed.
    #[error("{context}: {source}")]
    Query {
        /// What the runner was doing.
        context: &'static str,
        /// The client error.
        source: postgres::Error,
    },
    /// A migration's SQL failed; its transaction was rolled back.
    #[error("migration {version} ({name}) failed: {}", db_message(source))]
    MigrationFailed {
        /// Its version.
        version: i32,
        /// Its name.
        name: &'static str,
        /// The client error.
        source: postgres::Error,
    },
    /// The server is older than PostgreSQL 15.
    #[error(
        "PostgreSQL server_version_num {found} is too old: the schema needs PostgreSQL 15 or newer"
    )]
    ServerTooOld {
        /// The server's `server_version_num`.
        found: i32,
    },
    /// An applied migration's SQL differs from the SQL embedded in this build.
    #[error(
        "migration {version} ({name}) was applied with checksum {recorded}, but this build's SQL has \
         {expected}: an applied migration was edited; add a new migration instead"
    )]
    ChecksumMismatch {
        /// Its version.
        version: i32,
        /// Its name.
        name: String,
        /// The checksum in `schema_migrations`.
        recorded: String,
        /// The checksum of the embedded SQL.
        expected: String,
    },
    /// The database was built as a different role or flavour than this run asks for.
    #[error(
        "migration {version} was applied as variant `{recorded}`, but this run selects `{selected}`: {hint}"
    )]
    VariantMismatch {
        /// The version.
        version: i32,
        /// The variant recorded in `schema_migrations`.
        recorded: String,
        /// The variant this run would apply.
        selected: &'static str,
        /// What to check.
        hint: String,
    },
    /// `schema_migrations` has a version or variant this build does not know.
    #[error(
        "the database has migration {version} ({name}), which this build does not know: \
         it was migrated by a newer build"
    )]
    UnknownMigration {
        /// The version.
        version: i32,
        /// The recorded name.
        name: String,
    },
    /// TimescaleDB was required but cannot be used.
    #[error("TimescaleDB is required (timescale = Required) but {reason}")]
    TimescaleUnavailable {
        /// Why not.
        reason: String,
    },
    /// An option is out of range or names something unknown.
    #[error("invalid migrate option {option}: {reason}")]
    InvalidOption {
        /// The option.
        option: String,
        /// What is wrong.
        reason: String,
    },
    /// A database name that cannot be used.
    #[error("invalid database name {name:?}: {reason}")]
    InvalidDatabaseName {
        /// The name.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
}

/// The server's message of a client error, with detail and hint, for migration failures.
fn db_message(err: &postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => {
            let mut msg = format!("{}: {}", db.code().code(), db.message());
            if let Some(detail) = db.detail() {
                msg.push_str(&format!(" (detail: {detail})"));
            }
            if let Some(hint) = db.hint() {
                msg.push_str(&format!(" (hint: {hint})"));
            }
            if let Some(place) = db.where_() {
                msg.push_str(&format!(" (where: {place})"));
            }
            msg
        }
        None => err.to_string(),
    }
}

/// Connect to a libpq-style URL or key=value string, without TLS.
///
/// # Errors
///
/// [`StorageError::Connect`], naming the target without its password.
pub fn connect(url: &str) -> Result<Client, StorageError> {
    Client::connect(url, NoTls).map_err(|source| StorageError::Connect {
        target: describe_target(url),
        source,
    })
}

/// `user@host:port/db` of a connection string, leaving out the password.
fn describe_target(url: &str) -> String {
    let Ok(config) = url.parse::<postgres::Config>() else {
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

/// Create database `name` on the server `admin` is connected to, unless it exists. Returns whether
/// it was created.
///
/// # Errors
///
/// [`StorageError::InvalidDatabaseName`] for an empty or over-long name, [`StorageError::Query`]
/// if the lookup or `CREATE DATABASE` fails (another session creating it at the same moment is
/// not an error).
pub fn ensure_database(admin: &mut Client, name: &str) -> Result<bool, StorageError> {
    if name.is_empty() || name.len() > 63 || name.contains('\0') {
        return Err(StorageError::InvalidDatabaseName {
            name: name.to_owned(),
            reason: "must be 1 to 63 bytes without NUL",
        });
    }
    let exists: bool = admin
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
            &[&name],
        )
        .map_err(|source| StorageError::Query {
            context: "looking up the database in pg_database",
            source,
        })?
        .get(0);
    if exists {
        return Ok(false);
    }
    let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
    match admin.batch_execute(&sql) {
        Ok(()) => Ok(true),
        Err(e) if e.code() == Some(&SqlState::DUPLICATE_DATABASE) => Ok(false),
        Err(source) => Err(StorageError::Query {
            context: "creating the database",
            source,
        }),
    }
}

/// Bring the schema of the database `client` is connected to up to date for `opts`, then run
/// partition maintenance. See the crate documentation for the steps.
///
/// # Errors
///
/// Any [`StorageError`]: the server too old, an option out of range, an edited or unknown applied
/// migration, a role or flavour that differs from the database's, TimescaleDB required but
/// missing, or a failing statement (the failing migration is rolled back).
pub fn migrate(client: &mut Client, opts: &MigrateOptions) -> Result<MigrateReport, StorageError> {
    validate_options(opts)?;
    check_server_version(client)?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .map_err(|source| StorageError::Query {
            context: "taking the migration advisory lock",
            source,
        })?;
    let result = migrate_locked(client, opts);
    let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY]);
    let report = result?;
    unlocked.map_err(|source| StorageError::Query {
        context: "releasing the migration advisory lock",
        source,
    })?;
    Ok(report)
}

/// Run `kalshi_maintain_partitions(ahead_days)` and return what it changed. Services call this
/// daily; [`migrate`] calls it at the end.
///
/// # Errors
///
/// [`StorageError::Query`] if the function fails or is missing (schema not migrated).
pub fn maintain_partitions(
    client: &mut Client,
    ahead_days: u32,
) -> Result<Vec<PartitionChange>, StorageError> {
    let ahead = i32::try_from(ahead_days).unwrap_or(i32::MAX);
    let rows = client
        .query(
            "SELECT action, parent_table, partition_table FROM kalshi_maintain_partitions($1)",
            &[&ahead],
        )
        .map_err(|source| StorageError::Query {
            context: "running kalshi_maintain_partitions",
            source,
        })?;
    Ok(rows
        .iter()
        .map(|r| PartitionChange {
            action: r.get(0),
            parent_table: r.get(1),
            partition_table: r.get(2),
        })
        .collect())
}

/// Reject options that the SQL would reject less clearly.
fn validate_options(opts: &MigrateOptions) -> Result<(), StorageError> {
    if opts.delta_retention_days == Some(0) {
        return Err(StorageError::InvalidOption {
            option: "delta_retention_days".to_owned(),
            reason: "must be at least 1 (today plus that many previous days are kept)".to_owned(),
        });
    }
    if opts.partitions_ahead_days > 366 {
        return Err(StorageError::InvalidOption {
            option: "partitions_ahead_days".to_owned(),
            reason: format!("{} is more than a year", opts.partitions_ahead_days),
        });
    }
    for (table, days) in &opts.table_retention_days {
        if !TIME_SERIES_TABLES.contains(&table.as_str()) {
            return Err(StorageError::InvalidOption {
                option: format!("table_retention_days[{table}]"),
                reason: format!("not a time-series table; expected one of {TIME_SERIES_TABLES:?}"),
            });
        }
        if *days == Some(0) {
            return Err(StorageError::InvalidOption {
                option: format!("table_retention_days[{table}]"),
                reason: "must be at least 1".to_owned(),
            });
        }
    }
    Ok(())
}

/// Fail early on servers older than PostgreSQL 15.
fn check_server_version(client: &mut Client) -> Result<(), StorageError> {
    let text: String = client
        .query_one("SELECT current_setting('server_version_num')", &[])
        .map_err(|source| StorageError::Query {
            context: "reading server_version_num",
            source,
        })?
        .get(0);
    let found: i32 = text.trim().parse().unwrap_or(0);
    if found < MIN_SERVER_VERSION_NUM {
        return Err(StorageError::ServerTooOld { found });
    }
    Ok(())
}

/// The body of [`migrate`], run while holding the advisory lock.
fn migrate_locked(
    client: &mut Client,
    opts: &MigrateOptions,
) -> Result<MigrateReport, StorageError> {
    // Checked first so that a service running as a role without DDL rights (gatherer,
    // deduplicator) can run an up-to-date migration: it then only reads.
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .map_err(|source| StorageError::Query {
            context: "looking for schema_migrations",
            source,
        })?
        .get(0);
    if !exists {
        client
            .batch_execute(
                "CREATE TABLE schema_migrations (
                     version    integer     PRIMARY KEY,
                     name       text        NOT NULL,
                     checksum   text        NOT NULL,
                     applied_at timestamptz NOT NULL DEFAULT now()
                 );
                 COMMENT ON TABLE schema_migrations IS
                     'Migrations applied by kalshi-storage: version, variant name, checksum of its SQL.';",
            )
            .map_err(|source| StorageError::Query {
                context: "creating schema_migrations",
                source,
            })?;
    }
    let applied: Vec<(i32, String, String)> = client
        .query(
            "SELECT version, name, checksum FROM schema_migrations ORDER BY version",
            &[],
        )
        .map_err(|source| StorageError::Query {
            context: "reading schema_migrations",
            source,
        })?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();

    let flavor = choose_flavor(client, opts.timescale, &applied)?;
    let wanted = migrations_for(opts.role, flavor);

    // Check what is there against what this run would apply.
    for (version, name, recorded) in &applied {
        let Some(selected) = wanted.iter().find(|m| m.version == *version) else {
            return Err(StorageError::UnknownMigration {
                version: *version,
                name: name.clone(),
            });
        };
        if selected.name != name {
            let known = MIGRATIONS
                .iter()
                .any(|m| m.version == *version && m.name == name);
            if !known {
                return Err(StorageError::UnknownMigration {
                    version: *version,
                    name: name.clone(),
                });
            }
            return Err(StorageError::VariantMismatch {
                version: *version,
                recorded: name.clone(),
                selected: selected.name,
                hint: format!(
                    "this database was built for another role or storage flavour than \
                     role={} flavour={}; check the --role / timescale settings",
                    opts.role, flavor
                ),
            });
        }
        let expected = selected.checksum();
        if *recorded != expected {
            return Err(StorageError::ChecksumMismatch {
                version: *version,
                name: name.clone(),
                recorded: recorded.clone(),
                expected,
            });
        }
    }

    let mut report = MigrateReport {
        role: opts.role,
        flavor,
        applied: Vec::new(),
        already_applied: applied.iter().map(|(v, _, _)| *v).collect(),
        partition_changes: Vec::new(),
    };
    for migration in wanted {
        if applied.iter().any(|(v, _, _)| *v == migration.version) {
            continue;
        }
        apply(client, migration)?;
        report.applied.push(AppliedMigration {
            version: migration.version,
            name: migration.name,
        });
    }

    apply_retention(client, opts)?;
    report.partition_changes = maintain_partitions(client, opts.partitions_ahead_days)?;
    Ok(report)
}

/// Apply one migration and record it, in one transaction.
fn apply(client: &mut Client, migration: &Migration) -> Result<(), StorageError> {
    let failed = |source| StorageError::MigrationFailed {
        version: migration.version,
        name: migration.name,
        source,
    };
    let mut tx = client.transaction().map_err(failed)?;
    tx.batch_execute(migration.sql).map_err(failed)?;
    tx.execute(
        "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
        &[&migration.version, &migration.name, &migration.checksum()],
    )
    .map_err(failed)?;
    tx.commit().map_err(failed)
}

/// Decide the storage flavour: the one already recorded, else from the option and the server.
fn choose_flavor(
    client: &mut Client,
    mode: TimescaleMode,
    applied: &[(i32, String, String)],
) -> Result<StorageFlavor, StorageError> {
    let recorded = applied.iter().find_map(|(_, name, _)| match name.as_str() {
        "timeseries_native" => Some(StorageFlavor::Native),
        "timeseries_timescale" => Some(StorageFlavor::Timescale),
        _ => None,
    });
    match (recorded, mode) {
        (Some(StorageFlavor::Native), TimescaleMode::Required) => {
            return Err(StorageError::TimescaleUnavailable {
                reason: "this database was already built with native partitioning; \
                         migrating it to TimescaleDB is not supported"
                    .to_owned(),
            });
        }
        (Some(StorageFlavor::Timescale), TimescaleMode::Off) => {
            return Err(StorageError::InvalidOption {
                option: "timescale = Off".to_owned(),
                reason: "this database was already built with TimescaleDB hypertables".to_owned(),
            });
        }
        (Some(flavor), _) => return Ok(flavor),
        (None, TimescaleMode::Off) => return Ok(StorageFlavor::Native),
        (None, _) => {}
    }
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'),
                    EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'),
                    current_setting('shared_preload_libraries') ~ 'timescaledb'",
            &[],
        )
        .map_err(|source| StorageError::Query {
            context: "checking for the timescaledb extension",
            source,
        })?;
    let (available, installed, preloaded): (bool, bool, bool) =
        (row.get(0), row.get(1), row.get(2));
    let usable = installed || (available && preloaded);
    match (usable, mode) {
        (true, _) => Ok(StorageFlavor::Timescale),
        (false, TimescaleMode::Required) => Err(StorageError::TimescaleUnavailable {
            reason: if available {
                "the timescaledb extension is installed but not in shared_preload_libraries"
                    .to_owned()
            } else {
                "the timescaledb extension is not available on this server \
                 (pg_available_extensions has no timescaledb)"
                    .to_owned()
            },
        }),
        (false, _) => Ok(StorageFlavor::Native),
    }
}

/// Write the retention options into `kalshi_retention`.
fn apply_retention(client: &mut Client, opts: &MigrateOptions) -> Result<(), StorageError> {
    let mut settings: Vec<(&str, Option<u32>)> =
        vec![("orderbook_deltas", opts.effective_delta_retention_days())];
    settings.extend(
        opts.table_retention_days
            .iter()
            .map(|(table, days)| (table.as_str(), *days)),
    );
    for (table, days) in settings {
        let days: Option<i32> = days.map(|d| i32::try_from(d).unwrap_or(i32::MAX));
        // Read first and write only on a change, so that roles without UPDATE rights on
        // kalshi_retention can run an up-to-date migration.
        let current: Option<Option<i32>> = client
            .query_opt(
                "SELECT retention_days FROM kalshi_retention WHERE table_name = $1",
                &[&table],
            )
            .map_err(|source| StorageError::Query {
                context: "reading kalshi_retention",
                source,
            })?
            .map(|row| row.get(0));
        if current.is_none_or(|current| current == days) {
            continue;
        }
        client
            .execute(
                "UPDATE kalshi_retention SET retention_days = $2 WHERE table_name = $1",
                &[&table, &days],
            )
            .map_err(|source| StorageError::Query {
                context: "setting retention in kalshi_retention",
                source,
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Checks that each (role, flavour) gets exactly one variant of every version, in order, by
    // enumerating all four combinations.
    #[test]
    fn one_variant_per_version() {
        for role in [Role::Gatherer, Role::Production] {
            for flavor in [StorageFlavor::Native, StorageFlavor::Timescale] {
                let versions: Vec<i32> = migrations_for(role, flavor)
                    .iter()
                    .map(|m| m.version)
                    .collect();
                assert_eq!(versions, vec![1, 2, 3, 4, 5, 6], "{role} {flavor}");
            }
        }
        let names: Vec<&str> = migrations_for(Role::Production, StorageFlavor::Native)
            .iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(
            names,
            [
                "core",
                "timeseries_native",
                "views_comments",
                "production",
                "writer_production",
                "late_production"
            ]
        );
    }

    // Checks the checksum is the FNV-1a test vector for "a" and changes with one byte, so the
    // recorded values stay stable across builds and platforms.
    #[test]
    fn checksum_is_stable() {
        assert_eq!(checksum("a"), "fnv1a64:af63dc4c8601ec8c");
        assert_eq!(checksum(""), "fnv1a64:cbf29ce484222325");
        assert_ne!(checksum("SELECT 1;"), checksum("SELECT 2;"));
    }

    /// The table definitions between the BEGIN/END TABLES markers, without partition clauses.
    fn table_block(sql: &str) -> String {
        let start = sql.find("-- BEGIN TABLES").unwrap();
        let end = sql.find("-- END TABLES").unwrap();
        let mut block = sql[start..end].to_owned();
        while let Some(at) = block.find(") PARTITION BY RANGE (") {
            let close = at + block[at..].find(");").unwrap();
            block.replace_range(at..close + 2, ");");
        }
        block
    }

    // Checks that the native and TimescaleDB flavours define the very same columns, by comparing
    // the marked table blocks of both files with the partition clauses removed.
    #[test]
    fn flavours_define_the_same_tables() {
        let native = table_block(MIGRATIONS[1].sql);
        let timescale = table_block(MIGRATIONS[2].sql);
        assert!(native.contains("CREATE TABLE trades ("));
        assert_eq!(native, timescale);
        for table in TIME_SERIES_TABLES {
            assert!(
                native.contains(&format!("CREATE TABLE {table} (")),
                "{table}"
            );
        }
    }

    // Checks the option defaults: 7 days of deltas on gatherers, everything in production, 3
    // days of partitions ahead, and rejection of a zero retention or an unknown table.
    #[test]
    fn option_defaults_and_validation() {
        assert_eq!(
            MigrateOptions::gatherer().effective_delta_retention_days(),
            Some(7)
        );
        assert_eq!(
            MigrateOptions::production().effective_delta_retention_days(),
            None
        );
        assert_eq!(MigrateOptions::default().partitions_ahead_days, 3);
        let mut opts = MigrateOptions::production();
        opts.delta_retention_days = Some(0);
        assert!(validate_options(&opts).is_err());
        let mut opts = MigrateOptions::gatherer();
        opts.table_retention_days = vec![("markets".into(), Some(3))];
        let err = validate_options(&opts).unwrap_err().to_string();
        assert!(err.contains("markets"), "{err}");
    }

    // Checks that connection errors never show a password, by describing a URL that has one.
    #[test]
    fn target_description_hides_password() {
        let d = describe_target("postgresql://gatherer:s3cret@db.example:6543/kalshi");
        assert_eq!(d, "gatherer@db.example:6543/kalshi");
    }
}
