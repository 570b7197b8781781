//! # kalshi-sim: the Kalshi exchange simulator server
//!
//! The network side of the simulator, over the sans-IO core in `kalshi-sim-core`: a WebSocket
//! at `/trade-api/ws/v2` and REST at `/trade-api/v2/...` on one listener (plain by default,
//! TLS with a certificate and key), request authentication as Kalshi does it, heartbeats,
//! a REST token bucket, a truth log streamed to a file, final books on exit, a control
//! endpoint for faults, scheduled faults, and a load mode.
//!
//! ## Threads
//! * **Exchange thread** ([`engine::Engine`]): owns the `Exchange` and every connection's
//!   `Session`. Steps the exchange on a fixed virtual-time grid (`start + k × tick`), paced by
//!   the wall clock, so the same seed and config give a byte-identical truth log whatever the
//!   clients do. It is the only thread that touches market state.
//! * **Connection threads** ([`net`]): one per accepted connection (capped). HTTP requests are
//!   read with kalshi-http; REST requests are answered by the exchange thread over a bounded
//!   request/reply channel; a WebSocket upgrade turns the thread into that connection's I/O
//!   loop (non-blocking socket: write queued frames, ping, read commands).
//! * **Control thread(s)** ([`control`]): kalshi-http on the control port.
//!
//! An idle WebSocket thread wakes every 2 ms to poll its socket for client frames (the socket
//! is non-blocking so one thread can both read and write, which TLS streams require).
//!
//! Every queue is bounded: the exchange thread's inbox (connection threads block on it, which
//! pushes back on clients), and each connection's outbound queue (when full, the slow client
//! is disconnected with a log line).
//!
//! ## Authentication
//! [`auth::Auth`] wraps a kalshi-auth `KeyRing` of the configured public keys (`auth.keys`,
//! `--keys ID=PATH`). Every WebSocket handshake must be signed (`protocol.md` §2.6); REST
//! market data is public, but a request that carries any `KALSHI-ACCESS-*` header is checked,
//! and `/portfolio/...` needs one. Failures answer 401 with Kalshi's verbatim bodies (§2.5),
//! before any upgrade. `--no-auth` turns it off for demos.
//!
//! ## Load mode
//! With `load.rate > 0` the exchange thread drives `kalshi_sim_core::load::LoadGen` instead of
//! the market model: a paced stream of deltas, trades and tickers across `load.markets`
//! markets, rendered per connection straight into batch buffers (no allocation per frame).
//! Pacing starts when a connection subscribes to load markets; while a subscribed
//! connection's queue is over half full, generation waits (backpressure, no disconnect). On
//! exit the final-books file holds the generator's summary (counts, digests, books).
//!
//! ## Determinism
//! The truth log depends only on the seed, the config (including `start_time_us` and
//! scheduled faults, which apply at grid instants) and the duration. Faults requested on the
//! control endpoint that change the exchange (pause) land at whatever instant they arrive.

pub mod auth;
pub mod config;
pub mod control;
pub mod engine;
pub mod net;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use kalshi_http::{Limits, Server, ServerHandle};
use kalshi_sim_core::Exchange;

use crate::auth::Auth;
use crate::config::Config;
use crate::engine::{Engine, EngineSettings, Shared};
use crate::net::FrontCtx;

/// Capacity of the exchange thread's inbox.
const ENGINE_INBOX: usize = 4096;

/// A running simulator.
pub struct Running {
    /// The WebSocket/REST address.
    pub listen: SocketAddr,
    /// The control address, if enabled.
    pub control: Option<SocketAddr>,
    /// Whether the listener is TLS.
    pub tls: bool,
    /// Shared switches and counters (set `stopping` to stop).
    pub shared: Arc<Shared>,
    engine: Option<JoinHandle<()>>,
    front: ServerHandle,
    control_server: Option<ServerHandle>,
}

impl Running {
    /// Waits until the exchange thread ends (signal or duration), then stops the listeners.
    pub fn wait(mut self) {
        if let Some(engine) = self.engine.take() {
            let _ = engine.join();
        }
        // Let connection threads flush what is queued and finish their close handshakes
        // (bounded: each gives up on its handshake after 2 s).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self
            .shared
            .ws_connections_open
            .load(std::sync::atomic::Ordering::SeqCst)
            > 0
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.front.shutdown();
        if let Some(control) = &mut self.control_server {
            control.shutdown();
        }
    }
}

/// Starts the simulator: validates the config, loads keys and TLS material, starts the
/// exchange thread, the listener and the control endpoint.
///
/// # Errors
/// An invalid config, unreadable keys or certificates, or a failed bind.
pub fn start(config: &Config) -> anyhow::Result<Running> {
    config.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    let auth = Arc::new(if config.auth.enabled {
        Auth::from_config(&config.auth)?
    } else {
        Auth::disabled()
    });
    let tls = match (&config.server.tls_cert, &config.server.tls_key) {
        (Some(cert), Some(key)) => Some(
            kalshi_http::tls_config_from_pem(cert, key).context("loading the TLS certificate")?,
        ),
        _ => None,
    };
    let start_us = if config.start_time_us > 0 {
        config.start_time_us
    } else {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        secs as i64 * 1_000_000
    };
    let shared = Arc::new(Shared::default());
    let settings = EngineSettings {
        start_us,
        tick_us: config.tick_ms as i64 * 1000,
        duration_us: (config.duration_secs * 1e6) as i64,
        speed: config.speed,
        truth_log: config.truth_log.clone(),
        final_books: config.final_books.clone(),
        session: config.session_config(),
        faults: config.faults.clone(),
    };
    let exchange = Exchange::new(config.exchange_config(), config.seed);
    let engine = Engine::new(exchange, settings, Arc::clone(&shared)).with_context(|| {
        format!(
            "creating the truth log {}",
            config
                .truth_log
                .as_deref()
                .unwrap_or(std::path::Path::new(""))
                .display()
        )
    })?;
    let engine = if config.load.rate > 0 {
        let load = kalshi_sim_core::load::LoadGen::new(kalshi_sim_core::load::LoadConfig {
            seed: config.seed,
            markets: config.load.markets,
            rate_per_sec: config.load.rate,
            start_us,
            ..kalshi_sim_core::load::LoadConfig::default()
        })
        .map_err(|e| anyhow::anyhow!("load: {e}"))?;
        engine.with_load(engine::LoadMode::new(load, config.load.rate))
    } else {
        engine
    };
    let (engine_tx, engine_rx) = crossbeam_channel::bounded(ENGINE_INBOX);
    let engine_thread = std::thread::Builder::new()
        .name("exchange".into())
        .spawn(move || engine.run(&engine_rx))?;

    let limits = Limits {
        connections_max: config.server.connections_max,
        ..Limits::default()
    };
    let ctx = Arc::new(FrontCtx {
        engine: engine_tx.clone(),
        shared: Arc::clone(&shared),
        auth: Arc::clone(&auth),
        limits: limits.clone(),
        // Load batches hold up to 1024 frames: keep the queue's worst case near 100 MB.
        queue_batches: if config.load.rate > 0 {
            config.server.outbound_queue_batches.min(256)
        } else {
            config.server.outbound_queue_batches
        },
        heartbeat_us: (config.server.heartbeat_secs * 1e6) as i64,
        missed_pongs_max: config.server.missed_pongs_max,
        rest_bucket: (
            config.rest.rate_per_sec,
            config.rest.burst,
            config.rest.cost,
        ),
        buckets: Mutex::new(HashMap::new()),
        next_conn: AtomicU64::new(1),
        epoch: Instant::now(),
    });
    let is_tls = tls.is_some();
    let front = Server::bind(config.server.listen.as_str(), limits, tls)
        .with_context(|| format!("binding {}", config.server.listen))?
        .spawn_connections(Arc::new(move |stream, peer| {
            net::serve_connection(&ctx, stream, peer);
        }))?;
    let control_server = if config.server.control.is_empty() {
        None
    } else {
        let engine = engine_tx;
        let shared = Arc::clone(&shared);
        Some(
            Server::bind(config.server.control.as_str(), Limits::default(), None)
                .with_context(|| format!("binding the control endpoint {}", config.server.control))?
                .spawn(move |request| control::handle(&engine, &shared, &auth, request))?,
        )
    };
    Ok(Running {
        listen: front.local_addr(),
        control: control_server.as_ref().map(ServerHandle::local_addr),
        tls: is_tls,
        shared,
        engine: Some(engine_thread),
        front,
        control_server,
    })
}
