//! # kalshi-gatherer-rt: the gatherer's runtime
//!
//! The I/O around the sans-IO core in `kalshi-gather`: threads, sockets, the database writer,
//! endpoints, signals. The binary `kalshi-gatherer` parses its arguments and calls [`load`] and
//! [`run`] (or [`check_config`]).
//!
//! ## Threads (design.md §3)
//!
//! ```text
//!  shard-0 .. shard-N-1   pinned glommio executors (engine.shard_cores): WebSocket connections,
//!                         subscription managers, books; one writer ring each
//!  kalshi-writer          kalshi-writer thread (engine.writer_core): rings → COPY, spool
//!  control                std thread (engine.control_core, optional): discovery, snapshot
//!                         poller, trade backfill, gap ledger, admin requests; its own ring
//!  http-accept-*          kalshi-http servers: /metrics, /health, /admin/poll-market
//!  main                   signals, the resume file, shutdown order
//! ```
//!
//! Shards and the control plane talk over bounded crossbeam channels, polled on timers (never
//! per message). Market assignment is the pure `shard_for(ticker, N)`.
//!
//! ## Start
//! 1. [`load`]: the TOML (validated, errors name the key), the key id, the private key (refused
//!    when group/other can read it; a relative path is looked up in `$CREDENTIALS_DIRECTORY`),
//!    the database password and the admin token.
//! 2. `RLIMIT_MEMLOCK` raised to its hard limit (io_uring).
//! 3. The exchange's REST API must answer `GET /exchange/status` (else exit 69, naming the URL).
//! 4. Migrations (kalshi-storage, gatherer role). **An unreachable database is not fatal**: the
//!    writer spools to disk and the control plane retries the migration every 5 s; the spool is
//!    replayed once the database is back. Any other migration error (a foreign schema, a
//!    checksum mismatch) stops the process: writing into a wrong schema would be worse.
//! 5. The writer (one ring per shard plus one for the control plane), the endpoints, the
//!    control plane (first discovery pass), the shards.
//!
//! ## Resume after a restart
//! The main thread writes the newest frame's receive time to `<spool.dir>/gatherer-resume`
//! every second and at exit. On start, each market connection of the first discovery pass
//! connects with that time as its resume point: the subscription manager records a
//! `connection` gap and backfills every market's trades from then until its subscription is
//! confirmed. A resume point older than [`RESUME_MAX_AGE_US`] is clamped to that age.
//!
//! ## Shutdown (SIGTERM/SIGINT)
//! Stop reading (connection tasks end within 50 ms and close their sockets), shards hand their
//! last rows to the rings, the control plane hands its backlog to its ring, then the writer
//! drains the rings, seals, commits (or leaves the batches in the spool for the next start), and
//! the process exits 0. A fatal error (a 401 from the exchange) takes the same path and exits 78.

mod control;
mod http;
pub mod metrics;
pub mod setup;
mod shard;
mod shared;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use kalshi_net::{RestClient, RestClientConfig, WsConfig, WsUrl};
use kalshi_writer::{Writer, WriterConfig};

pub use metrics::Metrics;
pub use setup::{Loaded, StartError, load};

use crate::shared::Shared;

/// The oldest resume point honoured after a restart (24 h): REST trade history beyond it is
/// better fetched by an operator than by thousands of automatic backfill windows.
pub const RESUME_MAX_AGE_US: i64 = 24 * 3_600 * 1_000_000;

/// Capacity of the shard → control plane channel.
const CONTROL_CHANNEL: usize = 65_536;
/// Capacity of each control plane → shard channel.
const SHARD_CHANNEL: usize = 4_096;

/// Validates the configuration file and every secret it names (the key file's permissions and
/// format, password and token files), and returns the effective configuration with secrets
/// masked, followed by a line about the key.
///
/// # Errors
/// [`StartError::Config`] naming the key or file at fault.
pub fn check_config(config_path: &std::path::Path) -> Result<String, StartError> {
    let loaded = load(config_path)?;
    let mut text = loaded.config.effective_toml();
    text.push_str(&format!(
        "# private key: {} ({:?}) readable by its owner only: ok\n# key id: {}\n# database password: {}\n# admin token: {}\n",
        loaded.key_path.display(),
        loaded.key.kind(),
        kalshi_gather::config::mask(&loaded.key_id),
        if loaded.database_url == loaded.config.database.url {
            "none (peer/trust)"
        } else {
            "set (masked)"
        },
        if loaded.admin_token.is_some() {
            "set (masked)"
        } else {
            "none: /admin/poll-market disabled"
        },
    ));
    Ok(text)
}

/// Applies the migrations (gatherer role) on `url`, with a connect timeout.
///
/// # Errors
/// A message; `Err` starting with `unreachable:` when the database could not be connected.
pub(crate) fn migrate(url: &str, timeout: Duration) -> Result<(), String> {
    use std::str::FromStr;
    let mut config = postgres::Config::from_str(url)
        .map_err(|e| format!("database.url is not a valid connection string: {e}"))?;
    config.connect_timeout(timeout);
    let mut client = config
        .connect(postgres::NoTls)
        .map_err(|e| format!("unreachable: {e}"))?;
    kalshi_storage::migrate(&mut client, &kalshi_storage::MigrateOptions::gatherer())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The markets the previous run still subscribed (its `markets` rows with a live status): after
/// a restart, those that closed meanwhile are no longer discovered, but their trades of the
/// missed window must still be backfilled.
fn previous_markets(
    url: &str,
    timeout: Duration,
    gatherer_id: i16,
) -> Vec<kalshi_gather::MarketKey> {
    use std::str::FromStr;
    let Ok(mut config) = postgres::Config::from_str(url) else {
        return Vec::new();
    };
    config.connect_timeout(timeout);
    let Ok(mut client) = config.connect(postgres::NoTls) else {
        return Vec::new();
    };
    match client.query(
        "SELECT ticker FROM markets WHERE gatherer_id = $1 \
         AND status IN ('initialized', 'active', 'inactive')",
        &[&gatherer_id],
    ) {
        Ok(rows) => rows
            .iter()
            .map(|r| r.get::<_, &str>(0))
            .filter(|t| kalshi_wire::Ticker::new(t).is_some())
            .map(kalshi_gather::market_key)
            .collect(),
        Err(e) => {
            log::warn!("reading the previous run's markets: {e}");
            Vec::new()
        }
    }
}

fn check_exchange(rest: &RestClient, base: &str) -> Result<(), StartError> {
    let mut last = String::new();
    for attempt in 0..3 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(500 << attempt));
        }
        match rest.get("/exchange/status", &[]) {
            Ok(response) if response.status < 500 => {
                if response.status != 200 {
                    log::warn!(
                        "exchange status answered HTTP {}: {}",
                        response.status,
                        response.body_excerpt()
                    );
                }
                return Ok(());
            }
            Ok(response) => last = format!("HTTP {}: {}", response.status, response.body_excerpt()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(StartError::Unavailable(format!(
        "cannot reach the exchange REST API at {base} (exchange.rest_url): {last}"
    )))
}

/// Runs the gatherer until SIGTERM/SIGINT or a fatal error.
///
/// # Errors
/// The [`StartError`] that prevented the start or stopped the run; its
/// [`StartError::exit_code`] is the process exit code.
#[allow(clippy::too_many_lines)]
pub fn run(loaded: Loaded) -> Result<(), StartError> {
    let Loaded {
        config,
        key_id,
        key,
        database_url,
        admin_token,
        ..
    } = loaded;
    setup::raise_memlock()?;
    let metrics =
        Metrics::new().map_err(|e| StartError::Runtime(format!("registering metrics: {e}")))?;
    let limits = &config.limits;
    let roots = &config.exchange.tls_root_files;
    // Read the extra roots once up front, so a bad file is named as the config key it came from.
    kalshi_net::client_config(roots)
        .map_err(|e| StartError::Config(format!("exchange.tls_root_files: {e}")))?;
    let rest = RestClient::new(&RestClientConfig {
        base_url: config.rest_url().to_owned(),
        timeout: Duration::from_millis(limits.rest_timeout_ms),
        body_bytes_max: 64 << 20,
        extra_roots: roots.clone(),
    })
    .map_err(|e| StartError::Config(format!("exchange.rest_url: {e}")))?;
    check_exchange(&rest, config.rest_url())?;
    let ws_url = WsUrl::parse(config.ws_url())
        .map_err(|e| StartError::Config(format!("exchange.ws_url: {e}")))?;
    let tls = if ws_url.secure {
        Some(
            kalshi_net::client_config(roots)
                .map_err(|e| StartError::Config(format!("TLS setup: {e}")))?,
        )
    } else {
        None
    };
    let ws_config = WsConfig {
        connect_timeout: Duration::from_millis(limits.handshake_timeout_ms),
        write_timeout: Duration::from_millis(limits.handshake_timeout_ms),
        liveness_timeout: Duration::from_millis(limits.liveness_timeout_ms),
        frame_bytes_max: limits.frame_bytes_max,
        tls,
    };

    let migration_pending = match migrate(
        &database_url,
        Duration::from_millis(limits.db_connect_timeout_ms),
    ) {
        Ok(()) => None,
        Err(e) if e.starts_with("unreachable:") => {
            log::warn!(
                "database {e}; spooling to {} and retrying the migration every 5 s",
                config.spool.dir.display()
            );
            Some(database_url.clone())
        }
        Err(e) => {
            return Err(StartError::Runtime(format!(
                "database migration failed: {e}"
            )));
        }
    };

    std::fs::create_dir_all(&config.spool.dir).map_err(|e| {
        StartError::Config(format!(
            "spool.dir: cannot create {}: {e}",
            config.spool.dir.display()
        ))
    })?;
    let n_shards = config.engine.shard_cores.len();
    let pin = config.engine.pin_threads;
    let database_url_for_reads = database_url.clone();
    let mut writer_config = WriterConfig::new(
        database_url,
        format!("gatherer-{}", config.database.gatherer_id),
        &config.spool.dir,
    );
    writer_config.producers = n_shards + 1;
    writer_config.ring_capacity = config.writer.ring_capacity;
    writer_config.batch_rows_max = config.writer.flush_rows;
    writer_config.batch_bytes_max = config.writer.flush_bytes;
    writer_config.batch_age_max = Duration::from_millis(config.writer.flush_age_ms);
    writer_config.batch_linger =
        (config.writer.linger_ms > 0).then(|| Duration::from_millis(config.writer.linger_ms));
    writer_config.spool.max_bytes = config
        .spool
        .max_bytes
        .max(2 * config.writer.flush_bytes as u64);
    writer_config.core = pin.then_some(config.engine.writer_core);
    writer_config.connect_timeout = Duration::from_millis(limits.db_connect_timeout_ms);
    writer_config.shutdown_timeout = Duration::from_millis(limits.shutdown_timeout_ms);
    let (writer, producers) = Writer::start(writer_config, &metrics.registry)
        .map_err(|e| StartError::Runtime(format!("starting the database writer: {e}")))?;
    let writer_metrics = writer.metrics().clone();

    let now = setup::now_us();
    let resume_from_us = setup::read_resume(&config.spool.dir)
        .map(|us| us.max(now.saturating_sub(RESUME_MAX_AGE_US)));
    if let Some(us) = resume_from_us {
        log::info!(
            "resuming: the previous run's last frame was {:.1} s ago; that window is recorded as a gap and its trades backfilled",
            (now - us) as f64 / 1e6
        );
    }
    let previous = match (resume_from_us, &migration_pending) {
        (Some(_), None) => previous_markets(
            &database_url_for_reads,
            Duration::from_millis(config.limits.db_connect_timeout_ms),
            config.database.gatherer_id,
        ),
        _ => Vec::new(),
    };
    let shard_cores = config.engine.shard_cores.clone();
    let control_core = config.engine.control_core.filter(|_| pin);
    let spool_dir = config.spool.dir.clone();
    if admin_token.is_none() {
        log::info!("no admin token configured: POST /admin/poll-market is disabled");
    }
    let shared = Arc::new(Shared {
        config,
        key_id,
        key,
        metrics,
        ws_url,
        ws_config,
        stop: AtomicBool::new(false),
        fatal: std::sync::Mutex::new(None),
        resume_from_us,
        last_frame_us: AtomicI64::new(0),
        discovery_done: AtomicBool::new(false),
        connections: AtomicI64::new(0),
        connections_healthy: AtomicI64::new(0),
    });

    let writer_running = Arc::new(AtomicBool::new(true));
    let (admin_tx, admin_rx) = crossbeam_channel::bounded(16);
    let (_metrics_server, _health_server) = http::start(http::Endpoints {
        shared: Arc::clone(&shared),
        writer_metrics,
        writer_running: Arc::clone(&writer_running),
        admin: admin_tx,
        admin_token,
    })?;

    let (control_tx, control_rx) = crossbeam_channel::bounded(CONTROL_CHANNEL);
    let mut shard_txs = Vec::new();
    let mut shard_rxs = Vec::new();
    for _ in 0..n_shards {
        let (tx, rx) = crossbeam_channel::bounded(SHARD_CHANNEL);
        shard_txs.push(tx);
        shard_rxs.push(rx);
    }
    let mut producers = producers.into_iter();
    let mut shard_producers = Vec::new();
    for _ in 0..n_shards {
        shard_producers.push(
            producers
                .next()
                .ok_or_else(|| StartError::Runtime("writer returned too few rings".to_owned()))?,
        );
    }
    let control_producer = producers
        .next()
        .ok_or_else(|| StartError::Runtime("writer returned too few rings".to_owned()))?;
    let control_stop = Arc::new(AtomicBool::new(false));
    let control = control::spawn(control::ControlSetup {
        shared: Arc::clone(&shared),
        shards: shard_txs,
        messages: control_rx,
        admin: admin_rx,
        producer: control_producer,
        rest,
        core: control_core,
        migration_pending,
        previous_markets: previous,
        stop: Arc::clone(&control_stop),
    })?;
    let mut shards = Vec::new();
    let mut start_error = None;
    for (index, (commands, producer)) in shard_rxs.into_iter().zip(shard_producers).enumerate() {
        match shard::spawn(shard::ShardSetup {
            index,
            core: pin.then(|| shard_cores[index]),
            commands,
            control: control_tx.clone(),
            producer,
            shared: Arc::clone(&shared),
            lifecycle: index == 0,
        }) {
            Ok(handle) => shards.push(handle),
            Err(e) => {
                start_error = Some(e);
                break;
            }
        }
    }
    drop(control_tx);
    if let Some(e) = start_error {
        shared.fail(e);
    }

    let signalled = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&signalled))
            .map_err(|e| StartError::Runtime(format!("installing the signal handler: {e}")))?;
    }
    log::info!("gatherer running with {n_shards} shard(s)");
    let mut last_resume = Instant::now();
    loop {
        if signalled.load(Ordering::Acquire) {
            log::info!("signal received: stopping (draining rings, committing)");
            break;
        }
        if shared.stopping() {
            break;
        }
        let running = writer.is_running();
        writer_running.store(running, Ordering::Release);
        if !running {
            shared.fail(StartError::Runtime(
                "the database writer thread stopped".to_owned(),
            ));
            break;
        }
        if last_resume.elapsed() >= Duration::from_secs(1) {
            last_resume = Instant::now();
            let last = shared.last_frame_us.load(Ordering::Relaxed);
            setup::write_resume(&spool_dir, last);
            if last > 0 {
                shared
                    .metrics
                    .last_frame_age
                    .set((setup::now_us() - last) as f64 / 1e6);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    shared.request_stop();
    for handle in shards {
        if let Err(e) = handle.join() {
            log::error!("a shard executor ended with an error: {e}");
        }
    }
    control_stop.store(true, Ordering::Release);
    if control.join().is_err() {
        log::error!("the control plane thread panicked");
    }
    match writer.shutdown() {
        Ok(report) => log::info!(
            "writer: {} rows committed in {} batches; {} batches ({} rows) left in the spool",
            report.rows_committed,
            report.batches_committed,
            report.pending_batches,
            report.pending_rows
        ),
        Err(e) => log::error!("writer shutdown: {e}"),
    }
    setup::write_resume(&spool_dir, shared.last_frame_us.load(Ordering::Relaxed));
    match shared.take_fatal() {
        Some(error) => Err(error),
        None => Ok(()),
    }
}
