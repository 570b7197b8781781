//! `kalshi-gatherer`: captures every open Kalshi market into the local database.
//!
//! Thin: parse the arguments, set up logging, load the configuration, call the runtime
//! (`kalshi-gatherer-rt`). Exit codes: 0 after a clean stop (SIGTERM/SIGINT), 78 for a fatal
//! configuration or authentication error (systemd does not restart it), 69 when the exchange
//! is unreachable at start, 1 otherwise.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// The Kalshi market-data gatherer: subscribes to every open market over the WebSocket API and
/// writes everything it receives to the local PostgreSQL database.
#[derive(Debug, Parser)]
#[command(name = "kalshi-gatherer", version)]
struct Cli {
    /// The TOML configuration file (see engine/gather/gatherer.example.toml).
    #[arg(long)]
    config: PathBuf,
    /// Validate the configuration and its secret files, print the effective configuration
    /// (secrets masked) and exit.
    #[arg(long)]
    check_config: bool,
}

/// A minimal stderr logger: `RUST_LOG` = error | warn | info (default) | debug | trace.
struct StderrLogger(log::LevelFilter);

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= self.0
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let line = format!(
            "{}.{:03} {:5} {}: {}\n",
            now.as_secs(),
            now.subsec_millis(),
            record.level(),
            record.target(),
            record.args()
        );
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

fn init_logging() {
    let level = match std::env::var("RUST_LOG").unwrap_or_default().as_str() {
        "error" => log::LevelFilter::Error,
        "warn" => log::LevelFilter::Warn,
        "debug" => log::LevelFilter::Debug,
        "trace" => log::LevelFilter::Trace,
        "off" => log::LevelFilter::Off,
        _ => log::LevelFilter::Info,
    };
    let logger: &'static StderrLogger = Box::leak(Box::new(StderrLogger(level)));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    if cli.check_config {
        return match kalshi_gatherer_rt::check_config(&cli.config) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("kalshi-gatherer: {error}");
                ExitCode::from(error.exit_code())
            }
        };
    }
    let result = kalshi_gatherer_rt::load(&cli.config).and_then(kalshi_gatherer_rt::run);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kalshi-gatherer: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
