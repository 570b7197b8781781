//! Prometheus metrics of the deduplicator. Names used by the runbook and alerts are exact:
//! `dedup_sync_lag_seconds`, `dedup_gatherer_health{gatherer}`, `dedup_rds_connected`.

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

/// The deduplicator's metrics, registered in one registry.
#[derive(Clone, Debug)]
pub struct DedupMetrics {
    /// `dedup_sync_lag_seconds`: now minus the end of the newest range written.
    pub sync_lag_seconds: Gauge,
    /// `dedup_gatherer_health{gatherer}`: 1 live, 0 waiting or down.
    pub gatherer_health: GaugeVec,
    /// `dedup_gatherer_watermark_lag_seconds{gatherer}`: now minus the gatherer's durable
    /// watermark.
    pub gatherer_lag_seconds: GaugeVec,
    /// `dedup_rds_connected`: 1 when production is connected.
    pub rds_connected: IntGauge,
    /// `dedup_duplicate_ratio`: 1 − rows written / rows read by normal merges since start
    /// (about 2/3 with three complete gatherers).
    pub duplicate_ratio: Gauge,
    /// `dedup_rows_read_total{gatherer,table}`.
    pub rows_read: IntCounterVec,
    /// `dedup_rows_written_total{table}`: rows inserted (or updated, for the gap ledger) into
    /// production.
    pub rows_written: IntCounterVec,
    /// `dedup_ranges_merged_total`: new ranges merged (frontier advances).
    pub ranges_merged: IntCounter,
    /// `dedup_ranges_remerged_total`: catch-up ranges whose source fingerprint changed, merged
    /// again.
    pub ranges_remerged: IntCounter,
    /// `dedup_ranges_unchanged_total`: catch-up ranges whose fingerprint matched (skipped).
    pub ranges_unchanged: IntCounter,
    /// `dedup_errors_total{target,type}`: failures by database (`production` or a gatherer)
    /// and kind (`connection`, `timeout`, `constraint`, `data`).
    pub errors: IntCounterVec,
    /// `dedup_job_duration_seconds`: read, merge and commit of one job.
    pub job_duration: Histogram,
    /// `dedup_frontier_timestamp_seconds`: end of the newest range written.
    pub frontier_seconds: Gauge,
    /// `dedup_state_rows_written_total{table}`: markets and events upserted.
    pub state_rows_written: IntCounterVec,
    /// `dedup_late_ranges_total{gatherer}`: merged ranges in which a late scan found rows that
    /// arrived after the range was read from that gatherer.
    pub late_ranges: IntCounterVec,
    /// `dedup_late_ranges_remerged_total{gatherer}`: of those, ranges whose fingerprint had
    /// changed and were merged again.
    pub late_ranges_remerged: IntCounterVec,
    /// `dedup_late_rows_written_total{gatherer}`: rows late jobs added to production.
    pub late_rows_written: IntCounterVec,
    /// `dedup_lifecycle_matched_total`: lifecycle copies recognised as an event production
    /// holds at another time within the tolerance (not written again).
    pub lifecycle_matched: IntCounter,
}

impl DedupMetrics {
    /// Create and register.
    ///
    /// # Errors
    ///
    /// A name already registered.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            sync_lag_seconds: Gauge::new(
                "dedup_sync_lag_seconds",
                "Now minus the end of the newest range written to production.",
            )?,
            gatherer_health: GaugeVec::new(
                Opts::new(
                    "dedup_gatherer_health",
                    "1 when the gatherer is live (reachable, watermark keeping up), else 0.",
                ),
                &["gatherer"],
            )?,
            gatherer_lag_seconds: GaugeVec::new(
                Opts::new(
                    "dedup_gatherer_watermark_lag_seconds",
                    "Now minus the gatherer's durable watermark.",
                ),
                &["gatherer"],
            )?,
            rds_connected: IntGauge::new(
                "dedup_rds_connected",
                "1 when the production database is connected.",
            )?,
            duplicate_ratio: Gauge::new(
                "dedup_duplicate_ratio",
                "1 - rows written / rows read by normal merges since start (about 2/3 with 3 gatherers).",
            )?,
            rows_read: IntCounterVec::new(
                Opts::new(
                    "dedup_rows_read_total",
                    "Rows read from gatherer databases.",
                ),
                &["gatherer", "table"],
            )?,
            rows_written: IntCounterVec::new(
                Opts::new(
                    "dedup_rows_written_total",
                    "Rows inserted into production (gap ledger: inserted or updated).",
                ),
                &["table"],
            )?,
            ranges_merged: IntCounter::new(
                "dedup_ranges_merged_total",
                "New ranges merged into production.",
            )?,
            ranges_remerged: IntCounter::new(
                "dedup_ranges_remerged_total",
                "Ranges merged again because a gatherer's fingerprint changed (anti-entropy).",
            )?,
            ranges_unchanged: IntCounter::new(
                "dedup_ranges_unchanged_total",
                "Ranges re-checked whose gatherer fingerprint was unchanged (skipped).",
            )?,
            errors: IntCounterVec::new(
                Opts::new("dedup_errors_total", "Failures by database and kind."),
                &["target", "type"],
            )?,
            job_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "dedup_job_duration_seconds",
                    "Read, merge and commit of one job (one or more ranges).",
                )
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ]),
            )?,
            frontier_seconds: Gauge::new(
                "dedup_frontier_timestamp_seconds",
                "End of the newest range written to production, seconds since the epoch.",
            )?,
            state_rows_written: IntCounterVec::new(
                Opts::new(
                    "dedup_state_rows_written_total",
                    "markets and events rows upserted into production.",
                ),
                &["table"],
            )?,
            late_ranges: IntCounterVec::new(
                Opts::new(
                    "dedup_late_ranges_total",
                    "Merged ranges found to have received rows after they were read (late rows).",
                ),
                &["gatherer"],
            )?,
            late_ranges_remerged: IntCounterVec::new(
                Opts::new(
                    "dedup_late_ranges_remerged_total",
                    "Ranges with late rows whose fingerprint changed, merged again.",
                ),
                &["gatherer"],
            )?,
            late_rows_written: IntCounterVec::new(
                Opts::new(
                    "dedup_late_rows_written_total",
                    "Rows that arrived after their range was merged, added to production.",
                ),
                &["gatherer"],
            )?,
            lifecycle_matched: IntCounter::new(
                "dedup_lifecycle_matched_total",
                "Lifecycle copies matched to an event production holds at another time within the tolerance.",
            )?,
        };
        registry.register(Box::new(m.sync_lag_seconds.clone()))?;
        registry.register(Box::new(m.gatherer_health.clone()))?;
        registry.register(Box::new(m.gatherer_lag_seconds.clone()))?;
        registry.register(Box::new(m.rds_connected.clone()))?;
        registry.register(Box::new(m.duplicate_ratio.clone()))?;
        registry.register(Box::new(m.rows_read.clone()))?;
        registry.register(Box::new(m.rows_written.clone()))?;
        registry.register(Box::new(m.ranges_merged.clone()))?;
        registry.register(Box::new(m.ranges_remerged.clone()))?;
        registry.register(Box::new(m.ranges_unchanged.clone()))?;
        registry.register(Box::new(m.errors.clone()))?;
        registry.register(Box::new(m.job_duration.clone()))?;
        registry.register(Box::new(m.frontier_seconds.clone()))?;
        registry.register(Box::new(m.state_rows_written.clone()))?;
        registry.register(Box::new(m.late_ranges.clone()))?;
        registry.register(Box::new(m.late_ranges_remerged.clone()))?;
        registry.register(Box::new(m.late_rows_written.clone()))?;
        registry.register(Box::new(m.lifecycle_matched.clone()))?;
        Ok(m)
    }
}
