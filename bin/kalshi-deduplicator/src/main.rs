//! `kalshi-deduplicator`: merges the gatherers' databases into the production archive.
//!
//! Thin: parse the command line, load and validate the configuration (exit 78, `EX_CONFIG`,
//! on any problem, each named by its key), start `/metrics` and `/health`, and run
//! [`kalshi_dedup::Deduplicator`] until SIGTERM or SIGINT. On a signal the job in progress
//! finishes (its transaction commits or rolls back) and the process exits 0. The
//! configuration keys are documented in `kalshi_dedup::config`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::Parser;
use kalshi_dedup::{Config, Deduplicator};
use log::{error, info};

/// Exit status for a configuration error (sysexits.h `EX_CONFIG`).
const EX_CONFIG: u8 = 78;

/// Merge the gatherers' local databases into the production archive (range-sync).
#[derive(Debug, Parser)]
#[command(name = "kalshi-deduplicator", version)]
struct Cli {
    /// The TOML configuration file (keys documented in kalshi_dedup::config).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Validate the configuration (including password files) and exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let cfg = match Config::from_file(&cli.config) {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("kalshi-deduplicator: config {}: {e}", cli.config.display());
            }
            return ExitCode::from(EX_CONFIG);
        }
    };
    if cli.check_config {
        println!(
            "kalshi-deduplicator: {} is valid ({} gatherers, production {})",
            cli.config.display(),
            cfg.gatherers.len(),
            cfg.production.describe()
        );
        return ExitCode::SUCCESS;
    }
    match run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("kalshi-deduplicator: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cfg: Config) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    let registry = prometheus::Registry::new();
    let mut dedup = Deduplicator::new(cfg.clone(), &registry)?;
    let servers = kalshi_dedup::http::serve(&cfg.http, registry, dedup.shared())?;
    info!(
        "kalshi-deduplicator: metrics on {}, health on {}; {} gatherers, production {}",
        servers.metrics.local_addr(),
        servers.health.local_addr(),
        cfg.gatherers.len(),
        cfg.production.describe()
    );
    dedup.run(&stop)?;
    info!("kalshi-deduplicator: stopped");
    Ok(())
}
