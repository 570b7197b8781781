//! What the threads share (read-mostly, behind one `Arc`), and the messages between the shard
//! cores and the control plane.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use kalshi_auth::SigningKey;
use kalshi_gather::MarketKey;
use kalshi_gather::{Action, Config};
use kalshi_net::{WsConfig, WsUrl};
use kalshi_wire::Level;

use crate::metrics::Metrics;
use crate::setup::StartError;

/// The WebSocket path that is signed for the handshake (`protocol.md` §2.2).
pub(crate) const WS_SIGNED_PATH: &str = "/trade-api/ws/v2";

/// State shared by every thread of the process.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) key_id: String,
    pub(crate) key: SigningKey,
    pub(crate) metrics: Metrics,
    pub(crate) ws_url: WsUrl,
    pub(crate) ws_config: WsConfig,
    /// Set by SIGTERM/SIGINT or a fatal error: stop reading, drain, exit.
    pub(crate) stop: AtomicBool,
    /// The first fatal error (e.g. a 401), reported at exit.
    pub(crate) fatal: Mutex<Option<StartError>>,
    /// The previous run's last frame time, the resume point of the first connections.
    pub(crate) resume_from_us: Option<i64>,
    /// The newest frame's receive time over all connections (written to the resume file).
    pub(crate) last_frame_us: AtomicI64,
    /// The first discovery pass completed.
    pub(crate) discovery_done: AtomicBool,
    /// Connections, and connections that are open and fully subscribed (for `/health`).
    pub(crate) connections: AtomicI64,
    pub(crate) connections_healthy: AtomicI64,
}

impl Shared {
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    pub(crate) fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// Records a fatal error (the first one wins) and stops the process.
    pub(crate) fn fail(&self, error: StartError) {
        match self.fatal.lock() {
            Ok(mut fatal) => match fatal.as_ref() {
                None => {
                    log::error!("{error}");
                    *fatal = Some(error);
                }
                // Several threads can hit the same cause at once (every connection refused
                // with 401): one line per distinct cause, not one per thread.
                Some(first) if first.to_string() == error.to_string() => {}
                Some(_) => log::warn!("also, after the first fatal error: {error}"),
            },
            Err(_) => log::error!("{error}"),
        }
        self.request_stop();
    }

    pub(crate) fn take_fatal(&self) -> Option<StartError> {
        self.fatal.lock().ok().and_then(|mut f| f.take())
    }
}

/// Control plane → shard.
#[derive(Debug)]
pub(crate) enum ShardCmd {
    /// Subscribe these markets (they hash to this shard). `listed_at_us` is set for markets
    /// that appeared while running: their trades since then are backfilled.
    Assign {
        tickers: Vec<MarketKey>,
        listed_at_us: Option<i64>,
        /// The previous run's resume point, for markets of the first discovery pass.
        resume_from_us: Option<i64>,
    },
    /// Unsubscribe these markets (settled, closed).
    Remove { tickers: Vec<MarketKey> },
    /// Compare a REST snapshot (NO-leg prices) with the live book. `requested_us` is when the
    /// REST request was sent: a book changed after that is not compared (the two views would
    /// be of different moments).
    Compare {
        ticker: MarketKey,
        yes: Vec<Level>,
        no: Vec<Level>,
        requested_us: i64,
    },
}

/// Shard → control plane.
#[derive(Debug)]
pub(crate) enum ControlMsg {
    /// A subscription manager action (gap, repair, backfill window, rediscover, ...).
    Action { conn: u64, action: Action },
    /// A lifecycle frame (raw bytes, decoded again by the control plane for the registry).
    Lifecycle { raw: Vec<u8>, received_us: i64 },
    /// The lifecycle connection came back after a disconnect: events may have been missed.
    LifecycleResumed,
}
