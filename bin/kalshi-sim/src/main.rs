//! `kalshi-sim`: the Kalshi exchange simulator. See the crate docs of `kalshi_sim` and
//! `kalshi_sim::config` for the configuration keys.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use kalshi_sim::config::Config;

/// The Kalshi exchange simulator: WebSocket (/trade-api/ws/v2) and REST (/trade-api/v2) on one
/// address, deterministic for a seed, with a truth log, faults on demand and a load mode.
#[derive(Debug, Parser)]
#[command(name = "kalshi-sim", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// TOML config file (every key optional; see the kalshi_sim::config docs).
    #[arg(long)]
    config: Option<PathBuf>,
    /// WebSocket + REST address (server.listen).
    #[arg(long)]
    listen: Option<String>,
    /// Control endpoint address; "" disables it (server.control).
    #[arg(long)]
    control: Option<String>,
    /// RNG seed (seed).
    #[arg(long)]
    seed: Option<u64>,
    /// Number of series (market.series).
    #[arg(long)]
    series: Option<usize>,
    /// Events per series at start (market.events_per_series).
    #[arg(long)]
    events_per_series: Option<usize>,
    /// Markets per event (market.markets_per_event).
    #[arg(long)]
    markets_per_event: Option<usize>,
    /// Order-flow actions per exchange second (market.actions_per_second).
    #[arg(long)]
    actions_per_second: Option<u64>,
    /// Stream the truth log here (truth_log).
    #[arg(long)]
    truth_log: Option<PathBuf>,
    /// Write final books here on exit and on request (final_books).
    #[arg(long)]
    final_books: Option<PathBuf>,
    /// TLS certificate chain, PEM (server.tls_cert).
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// TLS private key, PEM, mode 0600 (server.tls_key).
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Stop after this many exchange seconds (duration_secs).
    #[arg(long)]
    duration: Option<f64>,
    /// Exchange seconds per wall second (speed).
    #[arg(long)]
    speed: Option<f64>,
    /// Exchange time of the first step, µs since the epoch (start_time_us).
    #[arg(long)]
    start_time_us: Option<i64>,
    /// Step grid in ms (tick_ms).
    #[arg(long)]
    tick_ms: Option<u64>,
    /// A public key: KEY_ID=PATH (repeatable; auth.keys).
    #[arg(long = "keys", value_name = "KEY_ID=PATH")]
    keys: Vec<String>,
    /// Accept unsigned handshakes (auth.enabled = false).
    #[arg(long)]
    no_auth: bool,
    /// Ping interval in seconds (server.heartbeat_secs).
    #[arg(long)]
    heartbeat_secs: Option<f64>,
    /// Unanswered pings before closing, 0 = never (server.missed_pongs_max).
    #[arg(long)]
    missed_pongs: Option<u32>,
    /// REST tokens per second, 0 = no limit (rest.rate_per_sec).
    #[arg(long)]
    rest_rate: Option<u64>,
    /// REST bucket capacity (rest.burst).
    #[arg(long)]
    rest_burst: Option<u64>,
    /// Load mode: target messages per second (load.rate).
    #[arg(long)]
    load_rate: Option<u64>,
    /// Load mode: number of markets (load.markets).
    #[arg(long)]
    load_markets: Option<usize>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a key pair for tests and demos (private key mode 0600).
    Keygen {
        /// Key type.
        #[arg(long, value_enum)]
        kind: Kind,
        /// Private key output (PKCS#8 PEM); must not exist.
        #[arg(long)]
        private: PathBuf,
        /// Public key output (SPKI PEM); must not exist.
        #[arg(long)]
        public: PathBuf,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Kind {
    /// RSA 2048, signed with PSS (SHA-256, salt 32).
    Rsa,
    /// Ed25519.
    Ed25519,
}

fn build_config(cli: Cli) -> anyhow::Result<Config> {
    let mut c = match &cli.config {
        Some(path) => Config::from_file(path).map_err(|e| anyhow::anyhow!("{e}"))?,
        None => Config::default(),
    };
    macro_rules! set {
        ($field:expr, $value:expr) => {
            if let Some(v) = $value {
                $field = v;
            }
        };
    }
    set!(c.server.listen, cli.listen);
    set!(c.server.control, cli.control);
    set!(c.seed, cli.seed);
    set!(c.market.series, cli.series);
    set!(c.market.events_per_series, cli.events_per_series);
    set!(c.market.markets_per_event, cli.markets_per_event);
    set!(c.market.actions_per_second, cli.actions_per_second);
    set!(c.duration_secs, cli.duration);
    set!(c.speed, cli.speed);
    set!(c.start_time_us, cli.start_time_us);
    set!(c.tick_ms, cli.tick_ms);
    set!(c.server.heartbeat_secs, cli.heartbeat_secs);
    set!(c.server.missed_pongs_max, cli.missed_pongs);
    set!(c.rest.rate_per_sec, cli.rest_rate);
    set!(c.rest.burst, cli.rest_burst);
    set!(c.load.rate, cli.load_rate);
    set!(c.load.markets, cli.load_markets);
    if cli.truth_log.is_some() {
        c.truth_log = cli.truth_log;
    }
    if cli.final_books.is_some() {
        c.final_books = cli.final_books;
    }
    if cli.tls_cert.is_some() {
        c.server.tls_cert = cli.tls_cert;
    }
    if cli.tls_key.is_some() {
        c.server.tls_key = cli.tls_key;
    }
    for pair in &cli.keys {
        let Some((id, path)) = pair.split_once('=') else {
            anyhow::bail!("--keys {pair:?}: expected KEY_ID=PATH");
        };
        c.auth.keys.insert(id.to_owned(), PathBuf::from(path));
    }
    if cli.no_auth {
        c.auth.enabled = false;
    }
    c.normalize();
    Ok(c)
}

fn keygen(kind: Kind, private: &std::path::Path, public: &std::path::Path) -> anyhow::Result<()> {
    let kind = match kind {
        Kind::Rsa => kalshi_auth::KeyKind::RsaPss,
        Kind::Ed25519 => kalshi_auth::KeyKind::Ed25519,
    };
    kalshi_auth::generate(kind, private, public)
        .with_context(|| format!("writing a {kind} key pair"))?;
    eprintln!(
        "kalshi-sim: wrote {kind} private key {} (mode 0600) and public key {}",
        private.display(),
        public.display()
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line with the whole cause chain; no backtrace.
            eprintln!("kalshi-sim: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(Command::Keygen {
        kind,
        private,
        public,
    }) = &cli.command
    {
        return keygen(*kind, private, public);
    }
    let config = build_config(cli)?;
    let running = kalshi_sim::start(&config)?;
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&running.shared.stopping))
            .context("installing the signal handler")?;
    }
    if config.server.print_ready {
        let scheme = if running.tls {
            ("wss", "https")
        } else {
            ("ws", "http")
        };
        let ready = serde_json::json!({
            "ready": true,
            "listen": running.listen.to_string(),
            "control": running.control.map(|a| a.to_string()),
            "tls": running.tls,
            "ws_url": format!("{}://{}{}", scheme.0, running.listen, kalshi_sim::net::WS_PATH),
            "rest_url": format!("{}://{}{}", scheme.1, running.listen, kalshi_sim::net::REST_PREFIX),
        });
        println!("{ready}");
    }
    running.wait();
    Ok(())
}
