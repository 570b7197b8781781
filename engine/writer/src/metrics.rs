//! Prometheus metrics of the writer, registered into a registry the caller owns.
//!
//! Names follow the contract of design §9 and the runbook: `writer_inserts_total` counts rows
//! committed (label `table`; `sum(rate(writer_inserts_total[5m]))` gives all rows),
//! `writer_errors_total{type="connection"|"constraint"|"timeout"}` counts failed database
//! operations (one per failed batch attempt or connection attempt, so `HighWriterErrorRate`,
//! errors over inserts, fires during any outage), and `writer_flush_duration_seconds` is the
//! time of one batch transaction (BEGIN to COMMIT).

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    core::Collector,
};

use crate::copy::{TABLE_COUNT, Table};
use crate::error::ErrorKind;

/// The writer's metrics. Every counter and gauge is also readable, for tests and reports.
#[derive(Clone, Debug)]
pub struct WriterMetrics {
    /// `writer_inserts_total{table}`: rows committed.
    pub inserts: IntCounterVec,
    /// `writer_errors_total{type}`.
    pub errors: IntCounterVec,
    /// `writer_flush_duration_seconds`: one batch transaction.
    pub flush_duration: Histogram,
    /// `writer_batch_rows`: rows per committed batch.
    pub batch_rows: Histogram,
    /// `writer_batch_bytes`: COPY bytes per committed batch.
    pub batch_bytes: Histogram,
    /// `writer_batches_committed_total`.
    pub batches_committed: IntCounter,
    /// `writer_ring_occupancy{producer}`: rows waiting in each ring.
    pub ring_occupancy: IntGaugeVec,
    /// `writer_spool_bytes`: bytes of all spool segments.
    pub spool_bytes: IntGauge,
    /// `writer_spool_batches`: spooled batches not yet known committed.
    pub spool_batches: IntGauge,
    /// `writer_spool_age_seconds`: age of the oldest uncommitted spooled batch (0 when none).
    pub spool_age_seconds: prometheus::Gauge,
    /// `writer_spool_full`: 1 while the spool is full and the writer has stopped draining the
    /// rings (backpressure).
    pub spool_full: IntGauge,
    /// `writer_spool_corrupt_total`: torn or corrupt spool records cut at recovery or found on
    /// re-read.
    pub spool_corrupt: IntCounter,
    /// `writer_quarantined_rows_total{table}`: rows the database rejected, moved to the
    /// dead-letter log.
    pub quarantined: IntCounterVec,
    /// Per-table handles of `inserts`, by [`Table`] discriminant.
    pub(crate) inserts_by_table: [IntCounter; TABLE_COUNT],
}

impl WriterMetrics {
    /// Create the metrics and register them into `registry`.
    ///
    /// # Errors
    ///
    /// A [`prometheus::Error`] when a name is already registered there.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let inserts = IntCounterVec::new(
            Opts::new(
                "writer_inserts_total",
                "Rows committed to the database, by table.",
            ),
            &["table"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "writer_errors_total",
                "Failed database operations of the writer, by type (connection, constraint, timeout).",
            ),
            &["type"],
        )?;
        for kind in ErrorKind::ALL {
            errors.with_label_values(&[kind.as_str()]);
        }
        let flush_duration = Histogram::with_opts(
            HistogramOpts::new(
                "writer_flush_duration_seconds",
                "Duration of one batch transaction (BEGIN, marker, COPY of every table, COMMIT).",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )?;
        let batch_rows = Histogram::with_opts(
            HistogramOpts::new("writer_batch_rows", "Rows per committed batch.")
                .buckets(prometheus::exponential_buckets(1.0, 4.0, 10)?),
        )?;
        let batch_bytes = Histogram::with_opts(
            HistogramOpts::new("writer_batch_bytes", "COPY bytes per committed batch.")
                .buckets(prometheus::exponential_buckets(256.0, 4.0, 10)?),
        )?;
        let batches_committed = IntCounter::new(
            "writer_batches_committed_total",
            "Batches committed (each with its writer_batches marker).",
        )?;
        let ring_occupancy = IntGaugeVec::new(
            Opts::new(
                "writer_ring_occupancy",
                "Rows waiting in each producer's ring to the writer.",
            ),
            &["producer"],
        )?;
        let spool_bytes = IntGauge::new("writer_spool_bytes", "Bytes of all spool segments.")?;
        let spool_batches = IntGauge::new(
            "writer_spool_batches",
            "Spooled batches not yet known to be committed.",
        )?;
        let spool_age_seconds = prometheus::Gauge::new(
            "writer_spool_age_seconds",
            "Age of the oldest spooled batch not yet committed (0 when none).",
        )?;
        let spool_full = IntGauge::new(
            "writer_spool_full",
            "1 while the spool is full and ingest is held back (backpressure).",
        )?;
        let spool_corrupt = IntCounter::new(
            "writer_spool_corrupt_total",
            "Torn or corrupt spool records cut at recovery or found on re-read.",
        )?;
        let quarantined = IntCounterVec::new(
            Opts::new(
                "writer_quarantined_rows_total",
                "Rows rejected by the database (SQLSTATE class 22/23), kept in the dead-letter log.",
            ),
            &["table"],
        )?;
        let inserts_by_table = Table::ALL.map(|t| inserts.with_label_values(&[t.name()]));
        for t in Table::ALL {
            quarantined.with_label_values(&[t.name()]);
        }
        let collectors: [Box<dyn Collector>; 13] = [
            Box::new(inserts.clone()),
            Box::new(errors.clone()),
            Box::new(flush_duration.clone()),
            Box::new(batch_rows.clone()),
            Box::new(batch_bytes.clone()),
            Box::new(batches_committed.clone()),
            Box::new(ring_occupancy.clone()),
            Box::new(spool_bytes.clone()),
            Box::new(spool_batches.clone()),
            Box::new(spool_age_seconds.clone()),
            Box::new(spool_full.clone()),
            Box::new(spool_corrupt.clone()),
            Box::new(quarantined.clone()),
        ];
        for c in collectors {
            registry.register(c)?;
        }
        Ok(Self {
            inserts,
            errors,
            flush_duration,
            batch_rows,
            batch_bytes,
            batches_committed,
            ring_occupancy,
            spool_bytes,
            spool_batches,
            spool_age_seconds,
            spool_full,
            spool_corrupt,
            quarantined,
            inserts_by_table,
        })
    }

    /// Errors counted so far of `kind`.
    #[must_use]
    pub fn errors_of(&self, kind: ErrorKind) -> u64 {
        self.errors.with_label_values(&[kind.as_str()]).get()
    }

    /// Rows committed so far to `table`.
    #[must_use]
    pub fn inserts_of(&self, table: Table) -> u64 {
        self.inserts_by_table[table as usize].get()
    }
}
