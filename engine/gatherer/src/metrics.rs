//! The gatherer's Prometheus metrics (one registry, shared with the writer's `writer_*`).
//!
//! The names are a contract (design.md §9, the runbook, the Grafana dashboard). Shard cores never
//! touch these atomics per message: each connection counts in plain integers
//! ([`ConnCounters`]) and the shard publishes the differences every
//! half second (a few `inc_by` calls per interval).

use prometheus::{
    Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use kalshi_gather::DropReason;

/// Every gatherer metric (the writer registers its own into the same registry).
#[derive(Clone, Debug)]
pub struct Metrics {
    /// The registry served on `/metrics`.
    pub registry: Registry,
    /// `ws_client_connected`: WebSocket connections currently open.
    pub ws_connected: IntGauge,
    /// `ws_client_messages_received_total`: text frames received.
    pub messages: IntCounter,
    /// `conn_manager_connections_total`: connections the manager runs (open or reconnecting).
    pub connections_total: IntGauge,
    /// `conn_manager_connections_healthy`: connections open with every market subscribed.
    pub connections_healthy: IntGauge,
    /// `ws_client_errors_total{type}`: connection failures by kind.
    pub ws_errors: IntCounterVec,
    /// `sequence_gaps_total`: gaps detected (seq gaps, lost subscriptions, missed windows).
    pub gaps: IntCounter,
    /// `sequence_gaps_repaired_total`: gaps whose repair completed.
    pub gaps_repaired: IntCounter,
    /// `parse_errors_total{kind}`: frames that could not be decoded, by decode error kind.
    pub parse_errors: IntCounterVec,
    /// `frames_dropped_total{reason}`: frames not applied (unknown/superseded sid, stale seq).
    pub frames_dropped: IntCounterVec,
    /// `book_resyncs_total`: per-market snapshot requests after a book integrity error.
    pub book_resyncs: IntCounter,
    /// `book_rest_mismatch_total`: REST snapshots that differed from the live book.
    pub book_rest_mismatch: IntCounter,
    /// `book_rest_compared_total{result}`: REST comparisons (`equal`, `differ`, `skipped`).
    pub book_rest_compared: IntCounterVec,
    /// `rest_requests_total{endpoint,status}`.
    pub rest_requests: IntCounterVec,
    /// `kalshi_disk_usage_ratio{path,kind}`: used / total of the spool (and data) filesystem.
    pub disk_usage: GaugeVec,
    /// `gatherer_ring_full_total`: times a shard found its writer ring full and waited.
    pub ring_full: IntCounter,
    /// `gatherer_markets`: markets in the registry (subscribed).
    pub markets: IntGauge,
    /// `gatherer_shard_markets{shard}`: markets assigned to each shard core's connections.
    pub shard_markets: IntGaugeVec,
    /// `gatherer_backfill_trades_total`: trades fetched by REST backfill.
    pub backfill_trades: IntCounter,
    /// `gatherer_rest_snapshots_total`: REST order book snapshots stored.
    pub rest_snapshots: IntCounter,
    /// `gatherer_commands_sent_total`: WebSocket commands sent.
    pub commands: IntCounter,
    /// `gatherer_discovery_passes_total`: completed discovery passes.
    pub discovery_passes: IntCounter,
    /// `gatherer_last_frame_age_seconds`: seconds since the newest frame on any connection.
    pub last_frame_age: Gauge,
}

fn counter(registry: &Registry, name: &str, help: &str) -> Result<IntCounter, prometheus::Error> {
    let c = IntCounter::new(name, help)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, prometheus::Error> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(registry: &Registry, name: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
    let g = IntGauge::new(name, help)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

impl Metrics {
    /// Creates the registry and registers every gatherer metric.
    ///
    /// # Errors
    /// A metric that cannot be registered (a name clash; a programming error).
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let r = &registry;
        let ws_errors = counter_vec(
            r,
            "ws_client_errors_total",
            "WebSocket connection failures by type (auth, rate_limited, http, timeout, transport, tls, protocol, closed).",
            &["type"],
        )?;
        for kind in [
            "auth",
            "rate_limited",
            "http",
            "timeout",
            "transport",
            "tls",
            "protocol",
            "closed",
        ] {
            ws_errors.with_label_values(&[kind]);
        }
        let frames_dropped = counter_vec(
            r,
            "frames_dropped_total",
            "Frames not applied, by reason (never silently: each is counted).",
            &["reason"],
        )?;
        for reason in DROP_REASONS {
            frames_dropped.with_label_values(&[reason.as_str()]);
        }
        let parse_errors = counter_vec(
            r,
            "parse_errors_total",
            "Frames that could not be decoded, by kind.",
            &["kind"],
        )?;
        for kind in [
            "json",
            "missing_field",
            "wrong_type",
            "invalid",
            "too_large",
        ] {
            parse_errors.with_label_values(&[kind]);
        }
        let book_rest_compared = counter_vec(
            r,
            "book_rest_compared_total",
            "REST snapshot comparisons with the live book, by result.",
            &["result"],
        )?;
        for result in ["equal", "differ", "skipped"] {
            book_rest_compared.with_label_values(&[result]);
        }
        let disk_usage = GaugeVec::new(
            Opts::new(
                "kalshi_disk_usage_ratio",
                "Used fraction (0..1) of the filesystem holding the spool or the database data.",
            ),
            &["path", "kind"],
        )?;
        r.register(Box::new(disk_usage.clone()))?;
        let last_frame_age = Gauge::new(
            "gatherer_last_frame_age_seconds",
            "Seconds since the newest frame on any connection.",
        )?;
        r.register(Box::new(last_frame_age.clone()))?;
        Ok(Metrics {
            ws_connected: gauge(
                r,
                "ws_client_connected",
                "WebSocket connections currently open.",
            )?,
            messages: counter(
                r,
                "ws_client_messages_received_total",
                "WebSocket text frames received.",
            )?,
            connections_total: gauge(
                r,
                "conn_manager_connections_total",
                "WebSocket connections the connection manager runs (open or reconnecting).",
            )?,
            connections_healthy: gauge(
                r,
                "conn_manager_connections_healthy",
                "Connections open with every assigned market subscribed.",
            )?,
            ws_errors,
            gaps: counter(r, "sequence_gaps_total", "Sequence gaps detected.")?,
            gaps_repaired: counter(
                r,
                "sequence_gaps_repaired_total",
                "Sequence gaps whose repair completed.",
            )?,
            parse_errors,
            frames_dropped,
            book_resyncs: counter(
                r,
                "book_resyncs_total",
                "Per-market snapshot requests after a book integrity error.",
            )?,
            book_rest_mismatch: counter(
                r,
                "book_rest_mismatch_total",
                "REST order book snapshots that differed from the live book.",
            )?,
            book_rest_compared,
            rest_requests: counter_vec(
                r,
                "rest_requests_total",
                "REST requests by endpoint and HTTP status (\"error\" when no response).",
                &["endpoint", "status"],
            )?,
            disk_usage,
            ring_full: counter(
                r,
                "gatherer_ring_full_total",
                "Times a shard found its writer ring full and stopped reading (backpressure).",
            )?,
            markets: gauge(r, "gatherer_markets", "Markets subscribed (registry size).")?,
            shard_markets: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "gatherer_shard_markets",
                        "Markets assigned to the connections of each shard core.",
                    ),
                    &["shard"],
                )?;
                r.register(Box::new(g.clone()))?;
                g
            },
            backfill_trades: counter(
                r,
                "gatherer_backfill_trades_total",
                "Trades fetched by REST backfill.",
            )?,
            rest_snapshots: counter(
                r,
                "gatherer_rest_snapshots_total",
                "REST order book snapshots stored.",
            )?,
            commands: counter(
                r,
                "gatherer_commands_sent_total",
                "WebSocket commands sent.",
            )?,
            discovery_passes: counter(
                r,
                "gatherer_discovery_passes_total",
                "Completed REST discovery passes.",
            )?,
            last_frame_age,
            registry,
        })
    }

    /// Updates the disk usage gauge of `path` (`statvfs`).
    pub fn update_disk_usage(&self, path: &std::path::Path, kind: &str) {
        let Ok(stat) = rustix::fs::statvfs(path) else {
            return;
        };
        if stat.f_blocks == 0 {
            return;
        }
        // Used = total - free (root-reserved blocks count as used, as df does).
        let used = stat.f_blocks.saturating_sub(stat.f_bfree) as f64;
        let ratio = used / stat.f_blocks as f64;
        self.disk_usage
            .with_label_values(&[&path.display().to_string(), kind])
            .set(ratio);
    }

    /// The Prometheus text exposition of the registry.
    #[must_use]
    pub fn render(&self) -> Vec<u8> {
        use prometheus::Encoder;
        let mut out = Vec::new();
        let encoder = prometheus::TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut out) {
            log::error!("metrics: encoding failed: {e}");
        }
        out
    }
}

/// Every [`DropReason`], in the order of [`ConnCounters::dropped`].
pub const DROP_REASONS: [DropReason; 4] = [
    DropReason::NoSid,
    DropReason::UnknownSid,
    DropReason::SupersededSid,
    DropReason::StaleSeq,
];

const fn drop_index(reason: DropReason) -> usize {
    match reason {
        DropReason::NoSid => 0,
        DropReason::UnknownSid => 1,
        DropReason::SupersededSid => 2,
        DropReason::StaleSeq => 3,
    }
}

/// Most distinct parse error kinds counted per connection (more share the last slot).
const PARSE_KINDS_MAX: usize = 16;

/// Plain per-connection counters, bumped per message without atomics; the shard publishes the
/// difference since the last publication.
#[derive(Clone, Debug, Default)]
pub struct ConnCounters {
    /// Text frames received.
    pub messages: u64,
    /// Frames dropped, by [`DROP_REASONS`] index.
    pub dropped: [u64; 4],
    /// Frames of an unknown `type`.
    pub unknown_type: u64,
    /// Decode errors by kind (fixed slots, no allocation after the first of each kind).
    pub parse_errors: Vec<(&'static str, u64)>,
    /// Per-market resync requests.
    pub resyncs: u64,
    /// Ring-full waits.
    pub ring_full: u64,
    /// Commands sent.
    pub commands: u64,
}

impl ConnCounters {
    /// Counts a dropped frame.
    pub fn drop_frame(&mut self, reason: DropReason) {
        self.dropped[drop_index(reason)] += 1;
    }

    /// Counts a decode error of `kind`.
    pub fn parse_error(&mut self, kind: &'static str) {
        if let Some(slot) = self.parse_errors.iter_mut().find(|(k, _)| *k == kind) {
            slot.1 += 1;
        } else if self.parse_errors.len() < PARSE_KINDS_MAX {
            self.parse_errors.push((kind, 1));
        } else if let Some(last) = self.parse_errors.last_mut() {
            last.1 += 1;
        }
    }

    /// Adds `self - published` to the metrics and makes `published` equal to `self`.
    pub fn publish(&self, published: &mut ConnCounters, metrics: &Metrics) {
        metrics
            .messages
            .inc_by(self.messages.saturating_sub(published.messages));
        for (i, reason) in DROP_REASONS.iter().enumerate() {
            let delta = self.dropped[i].saturating_sub(published.dropped[i]);
            if delta > 0 {
                metrics
                    .frames_dropped
                    .with_label_values(&[reason.as_str()])
                    .inc_by(delta);
            }
        }
        let unknown = self.unknown_type.saturating_sub(published.unknown_type);
        if unknown > 0 {
            metrics
                .frames_dropped
                .with_label_values(&["unknown_type"])
                .inc_by(unknown);
        }
        for (kind, count) in &self.parse_errors {
            let before = published
                .parse_errors
                .iter()
                .find(|(k, _)| k == kind)
                .map_or(0, |(_, c)| *c);
            if *count > before {
                metrics
                    .parse_errors
                    .with_label_values(&[kind])
                    .inc_by(count - before);
            }
        }
        metrics
            .book_resyncs
            .inc_by(self.resyncs.saturating_sub(published.resyncs));
        metrics
            .ring_full
            .inc_by(self.ring_full.saturating_sub(published.ring_full));
        metrics
            .commands
            .inc_by(self.commands.saturating_sub(published.commands));
        published.clone_from(self);
    }
}
