//! `kalshi demo`: the whole platform on loopback, checked against the exchange's truth.
//!
//! 1. Makes sure the PostgreSQL server is installed (apt-get when `initdb` is missing) and that
//!    the service binaries are built (`cargo build` of the workspace when they are missing).
//! 2. Starts four throwaway PostgreSQL clusters (three gatherer databases and production) and
//!    migrates them; generates an Ed25519 API key for the simulator to trust.
//! 3. Starts `kalshi-sim` (signed handshakes, truth log, final books), three `kalshi-gatherer`s
//!    and the `kalshi-deduplicator`, each with a generated config file in the work directory.
//! 4. Shows live status until Ctrl-C or `--duration`: messages/s per gatherer, rows written, gaps
//!    found and repaired, dedup lag, and the endpoint URLs.
//! 5. Halts the exchange (no more events), waits for the gatherers to drain and for production
//!    to converge, stops every process with SIGTERM, and checks production (and each gatherer
//!    database) against the truth log with `kalshi-verify`. The exit status is 0 only when
//!    production passes.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kalshi_cli::platform::{GATHERERS, Options, Platform, Reports, parse_metrics};

/// Arguments of `kalshi demo`.
#[derive(clap::Args, Debug)]
pub(crate) struct DemoArgs {
    /// Run this long (seconds of wall time), then stop and check. Ctrl-C stops earlier.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    duration: u64,
    /// Simulator seed (the same seed gives the same exchange).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Series in the simulated exchange.
    #[arg(long, default_value_t = 8)]
    series: usize,
    /// Events listed per series at start.
    #[arg(long, default_value_t = 5)]
    events_per_series: usize,
    /// Markets per event.
    #[arg(long, default_value_t = 10)]
    markets_per_event: usize,
    /// Order-flow actions per second across the exchange.
    #[arg(long, default_value_t = 400)]
    actions_per_second: u64,
    /// Keep logs, configs and the truth log here (default: a fresh temporary directory that
    /// is removed at the end unless --keep).
    #[arg(long, value_name = "DIR")]
    workdir: Option<PathBuf>,
    /// Keep the work directory.
    #[arg(long)]
    keep: bool,
    /// Directory holding kalshi-sim, kalshi-gatherer and kalshi-deduplicator (default: next to
    /// this binary, built with cargo if missing).
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    /// How long to wait for production to converge after the exchange halts.
    #[arg(long, value_name = "SECONDS", default_value_t = 180)]
    settle_timeout: u64,
}

struct Sample {
    at: Instant,
    messages: f64,
}

/// Runs the demo.
pub(crate) fn run(args: &DemoArgs) -> Result<()> {
    let (workdir, temporary) = match &args.workdir {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("kalshi-demo-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(workdir.join("logs"))
        .with_context(|| format!("creating {}", workdir.display()))?;
    let result = run_in(args, &workdir);
    if temporary && !args.keep {
        let _ = std::fs::remove_dir_all(&workdir);
    } else {
        eprintln!(
            "demo: logs, configs and the truth log are in {}",
            workdir.display()
        );
    }
    result
}

fn run_in(args: &DemoArgs, workdir: &Path) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).context("installing Ctrl-C")?;
    }
    let mut platform = Platform::start(&Options {
        seed: args.seed,
        series: args.series,
        events_per_series: args.events_per_series,
        markets_per_event: args.markets_per_event,
        actions_per_second: args.actions_per_second,
        workdir: workdir.to_path_buf(),
        bin_dir: args.bin_dir.clone(),
    })?;

    println!("kalshi demo: the platform is up on loopback");
    println!(
        "  exchange (kalshi-sim):  {}  {}  control {}",
        platform.ws_url, platform.rest_url, platform.control
    );
    for g in &platform.gatherers {
        println!(
            "  {}:  {}  {}",
            g.service.name(),
            g.service.metrics_url,
            g.service.health_url
        );
    }
    println!(
        "  deduplicator:  {}  {}",
        platform.dedup.metrics_url, platform.dedup.health_url
    );
    println!(
        "  production database:  psql {}",
        platform.production.url("kalshi")
    );
    for g in &platform.gatherers {
        println!(
            "  {} database:  psql {}",
            g.service.name(),
            g.db.url("kalshi")
        );
    }
    println!(
        "  admin token for POST /admin/poll-market: {}",
        platform.admin_token
    );
    println!("  work directory: {}", workdir.display());

    // Capture is complete once every gatherer is healthy; the checked window starts a little
    // after that in exchange time.
    let started = Instant::now();
    let mut from_ts: Option<i64> = None;
    let mut last: Vec<Option<Sample>> = (0..GATHERERS).map(|_| None).collect();
    let tty = std::io::stdout().is_terminal();
    let mut failure = None;
    while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(args.duration) {
        std::thread::sleep(Duration::from_secs(2));
        if let Some(name) = platform.exited() {
            failure = Some(format!(
                "{name} exited early; see {}/logs",
                workdir.display()
            ));
            break;
        }
        if from_ts.is_none() && platform.all_healthy() {
            from_ts = platform.exchange_time_us().map(|now| now + 3_000_000);
        }
        let status = status_text(&platform, &mut last, from_ts);
        if tty {
            print!("\x1b[2K\r{}", status.replace('\n', "\n\x1b[2K"));
            let lines = status.lines().count();
            print!("\x1b[{}A\r", lines.saturating_sub(1).max(1));
            let _ = std::io::stdout().flush();
        } else {
            println!("{status}");
        }
    }
    if tty {
        println!("\n\n\n\n\n\n");
    }
    if let Some(failure) = failure {
        bail!(failure);
    }
    let Some(from_ts) = from_ts else {
        bail!(
            "the gatherers never all became healthy; see the logs in {}/logs",
            workdir.display()
        );
    };

    // Stop the exchange and let everything drain.
    println!("demo: halting the exchange and waiting for the platform to drain");
    let reports = platform.halt_and_verify(from_ts, Duration::from_secs(args.settle_timeout))?;
    print_summary(&reports);
    let clean = reports
        .exits
        .iter()
        .all(|(_, s)| s.is_some_and(|s| s.success()));
    if !reports.production.passed() {
        bail!("production does not match the exchange's truth");
    }
    if !clean {
        bail!("a service did not exit cleanly on SIGTERM");
    }
    Ok(())
}

fn status_text(platform: &Platform, last: &mut [Option<Sample>], from_ts: Option<i64>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<12} {:>10} {:>12} {:>12} {:>8} {:>9} {:>6}",
        "process", "msgs/s", "messages", "rows", "gaps", "repaired", "conns"
    );
    for (g, e) in platform.gatherers.iter().enumerate() {
        let m = platform
            .get(&e.service.metrics_url)
            .map(|(_, b)| parse_metrics(&b))
            .unwrap_or_default();
        let get = |name: &str| m.get(name).copied().unwrap_or(0.0);
        let messages = get("ws_client_messages_received_total");
        let now = Instant::now();
        let rate = match &last[g] {
            Some(s) => {
                let dt = now.duration_since(s.at).as_secs_f64();
                if dt > 0.0 {
                    (messages - s.messages) / dt
                } else {
                    0.0
                }
            }
            None => 0.0,
        };
        last[g] = Some(Sample { at: now, messages });
        let _ = writeln!(
            out,
            "{:<12} {:>10.0} {:>12.0} {:>12.0} {:>8.0} {:>9.0} {:>6.0}",
            format!("gatherer-{}", g + 1),
            rate,
            messages,
            get("writer_inserts_total"),
            get("sequence_gaps_total"),
            get("sequence_gaps_repaired_total"),
            get("conn_manager_connections_healthy"),
        );
    }
    let d = platform
        .get(&platform.dedup.metrics_url)
        .map(|(_, b)| parse_metrics(&b))
        .unwrap_or_default();
    let get = |name: &str| d.get(name).copied().unwrap_or(0.0);
    let _ = write!(
        out,
        "deduplicator  lag {:.1} s   rows written {:.0}   production {}   capture window {}",
        get("dedup_sync_lag_seconds"),
        get("dedup_rows_written_total"),
        if get("dedup_rds_connected") > 0.0 {
            "connected"
        } else {
            "not connected"
        },
        if from_ts.is_some() {
            "open"
        } else {
            "waiting for healthy gatherers"
        },
    );
    out
}

fn print_summary(reports: &Reports) {
    let Reports {
        truth,
        window,
        production,
        gatherers,
        exits,
    } = reports;
    println!();
    println!("=== kalshi demo summary ===");
    println!(
        "exchange: {} markets, {} trades and {} deltas in the truth log; checked window {:.1} s of exchange time",
        truth.market_count(),
        truth.trade_count(),
        truth.delta_count(),
        (window.to_ts - window.from_ts) as f64 / 1e6
    );
    for (name, status) in exits {
        let text = match status {
            Some(s) if s.success() => "clean exit".to_owned(),
            Some(s) => format!("exit {s}"),
            None => "not stopped".to_owned(),
        };
        println!("{name}: {text}");
    }
    for (g, r) in gatherers.iter().enumerate() {
        println!("gatherer-{} database: {r}", g + 1);
    }
    println!("production: {production}");
}
