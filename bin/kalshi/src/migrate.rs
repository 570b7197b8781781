//! `kalshi migrate`: apply the schema to a gatherer or production database.
//!
//! The password never appears on the command line: it comes from the URL only if the operator
//! put it there, else from `--db-password-file` (a file that must not be readable by group or
//! others) or the `KALSHI_DB_PASSWORD` environment variable. It is never printed.

use std::path::PathBuf;

use anyhow::{Context, Result};
use kalshi_storage::{MigrateOptions, Role, TimescaleMode};

/// Arguments of `kalshi migrate`.
#[derive(clap::Args, Debug)]
pub(crate) struct MigrateArgs {
    /// Database URL or libpq key=value string, e.g. postgresql://gatherer@127.0.0.1:5432/kalshi.
    #[arg(long, value_name = "URL")]
    db: String,
    /// Which schema: `gatherer` (local rolling buffer) or `production` (the archive).
    #[arg(long, value_enum, default_value_t = RoleArg::Gatherer)]
    role: RoleArg,
    /// Days of order book deltas to keep besides today (default: 7 on gatherers, all in
    /// production).
    #[arg(long, value_name = "DAYS")]
    delta_retention_days: Option<u32>,
    /// Daily partitions to create ahead of today.
    #[arg(long, value_name = "DAYS", default_value_t = MigrateOptions::gatherer().partitions_ahead_days)]
    partitions_ahead_days: u32,
    /// Use TimescaleDB when available (`auto`), never (`off`), or fail without it (`required`).
    #[arg(long, value_enum, default_value_t = TimescaleArg::Auto)]
    timescale: TimescaleArg,
    /// Create the database first (connecting to the server's `postgres` database) if missing.
    #[arg(long)]
    create_database: bool,
    /// File holding the database password (mode 0600 or stricter).
    #[arg(long, value_name = "FILE")]
    db_password_file: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum RoleArg {
    Gatherer,
    Production,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum TimescaleArg {
    Auto,
    Off,
    Required,
}

fn password(args: &MigrateArgs) -> Result<Option<String>> {
    if let Some(path) = &args.db_password_file {
        // The shared secret-file reader: refuses group/other-readable files, FIFOs and oversized
        // files, and wipes its copy of the text when dropped.
        let text = kalshi_auth::read_secret_file(path)
            .with_context(|| format!("reading password file {}", path.display()))?;
        return Ok(Some(text.trim_end_matches(['\n', '\r']).to_owned()));
    }
    Ok(std::env::var("KALSHI_DB_PASSWORD").ok())
}

fn connect(config: &postgres::Config, target: &str) -> Result<postgres::Client> {
    config
        .connect(postgres::NoTls)
        .with_context(|| format!("connecting to {target}"))
}

/// Runs `kalshi migrate`.
pub(crate) fn run(args: &MigrateArgs) -> Result<()> {
    let mut config: postgres::Config = args
        .db
        .parse()
        .context("--db is not a valid PostgreSQL URL or key=value connection string")?;
    if config.get_password().is_none()
        && let Some(password) = password(args)?
    {
        config.password(password);
    }
    let dbname = config.get_dbname().unwrap_or("kalshi").to_owned();
    let target = format!(
        "{}@{:?}:{:?}/{dbname}",
        config.get_user().unwrap_or("?"),
        config.get_hosts().first(),
        config.get_ports().first()
    );
    if args.create_database {
        let mut admin_config = config.clone();
        admin_config.dbname("postgres");
        let mut admin = connect(&admin_config, &target)?;
        if kalshi_storage::ensure_database(&mut admin, &dbname)? {
            eprintln!("created database {dbname}");
        }
    }
    let mut client = connect(&config, &target)?;
    let mut options = MigrateOptions::for_role(match args.role {
        RoleArg::Gatherer => Role::Gatherer,
        RoleArg::Production => Role::Production,
    });
    options.delta_retention_days = args.delta_retention_days;
    options.partitions_ahead_days = args.partitions_ahead_days;
    options.timescale = match args.timescale {
        TimescaleArg::Auto => TimescaleMode::Auto,
        TimescaleArg::Off => TimescaleMode::Off,
        TimescaleArg::Required => TimescaleMode::Required,
    };
    let report = kalshi_storage::migrate(&mut client, &options)
        .with_context(|| format!("migrating {target}"))?;
    println!(
        "{dbname}: role {}, storage {}, applied {:?}, already applied {:?}, {} partition changes",
        report.role,
        report.flavor,
        report.applied.iter().map(|m| m.name).collect::<Vec<_>>(),
        report.already_applied,
        report.partition_changes.len()
    );
    Ok(())
}
