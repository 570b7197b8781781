//! Writer core: bounded rings from the shard cores, binary COPY into PostgreSQL, and the disk
//! spool.
//!
//! # Data flow
//!
//! ```text
//! shard core ─ Producer::try_push(Row) ─► ring (bounded, lock-free) ─┐
//! shard core ─ Producer::try_push(Row) ─► ring                      ─┼─► writer thread
//!                                   ◄── free lists (recycled boxes) ─┘     │ encode into per-table COPY bodies
//!                                                                          │ seal on rows / bytes / age / linger
//!                                                                          ▼
//!                                                       spool: append batch (CRC, length-prefixed)
//!                                                                          ▼
//!            BEGIN; INSERT INTO writer_batches (writer_id, batch_id); COPY t1; COPY t2; ...; COMMIT
//!                                                                          ▼
//!                                                       spool: forget batch, delete drained segments
//! ```
//!
//! * **Rows** ([`rows`]) are table rows with the schema's exact columns; [`Row`] is what travels
//!   through a ring. Conversions from `kalshi_wire` records are provided.
//! * **Rings** ([`Producer`]): one bounded [`crossbeam_queue::ArrayQueue`] per producer. A full
//!   ring hands the row back ([`PushError::Full`]); nothing is ever dropped.
//! * **The writer thread** ([`Writer`]) drains the rings into a batch of COPY
//!   bodies written by hand in PostgreSQL's binary COPY format ([`copy`]), seals it when it
//!   reaches `batch_rows_max` rows, `batch_bytes_max` bytes or `batch_age_max` age, appends it
//!   to the [`spool`], and commits it in one explicit transaction together with its marker row in
//!   `writer_batches`. A failed or dropped transaction rolls back as a whole.
//!
//! # Exactly once
//!
//! A row is **acknowledged** when the batch holding it has been appended to the spool. Every
//! acknowledged row is committed exactly once, across database outages, database crashes, and
//! crashes of the writer process:
//!
//! * batches are committed in spool order, each in a transaction that first inserts
//!   `(writer_id, batch_id)` into `writer_batches` (primary key): the rows are in the database
//!   exactly when the marker is;
//! * a batch leaves the spool only after its commit returned; a crash between COMMIT and that
//!   point leaves it in the spool with its marker in the database, and on restart the writer asks
//!   which spooled batches have markers and skips them; should one be sent again anyway, its
//!   marker insert fails with a unique violation, the transaction rolls back, and the batch
//!   counts as already committed;
//! * batch ids increase strictly and are at least the wall-clock microseconds at sealing, so a
//!   restarted writer (even with an emptied spool) never reuses an id whose marker still exists
//!   unless the clock went back by more than the downtime; markers are pruned only below the
//!   oldest batch id still present in a spool segment.
//!
//! Rows still in a ring or in the open (unsealed) batch when the process dies were never
//! acknowledged and are lost with it; the gatherer's sequence-gap handling covers them like any
//! other capture gap. By default the spool is not fsynced ([`SpoolConfig::fsync`]), so the
//! guarantee covers process crashes (SIGKILL, panic, OOM kill) but not a power loss of the
//! machine; with `fsync` on it covers both.
//!
//! # Failures
//!
//! Database errors are classified ([`error`]) as `connection`, `timeout` or `constraint` and
//! counted in `writer_errors_total{type}`. Connection and timeout failures keep the batch in the
//! spool and retry with a capped exponential backoff while ingest continues into the spool. A
//! batch rejected for a row-level reason (SQLSTATE class 22 or 23) is committed again with each
//! table's rows isolated by bisection under savepoints: the good rows commit, the rejected ones go
//! to the dead-letter log (`dead-letters.ksp` in the spool directory, read with
//! [`read_dead_letters`]) with table, SQLSTATE and message, and
//! `writer_quarantined_rows_total{table}` counts them. A schema-level rejection (class 42,
//! permissions, a missing table) cannot be fixed by dropping rows: the batch stays and is
//! retried, with an error logged each time, until an operator fixes the schema; the spool fills
//! and then holds back ingest. A full spool stops the writer from draining the rings, so the
//! producers see full rings (backpressure), and `writer_spool_full` is 1.
//!
//! # Threading
//!
//! The writer is one plain OS thread, optionally pinned with `core_affinity`
//! ([`WriterConfig::core`]). It owns a blocking `postgres` client; it is not a glommio executor
//! because all its work is either CPU (encoding) or blocking database and file I/O, and a plain
//! thread keeps the shard cores' executors free of it. It never blocks on a producer and the
//! producers never block on it.

mod batch;
pub mod copy;
pub mod error;
pub mod metrics;
mod ring;
pub mod rows;
pub mod spool;
mod writer;

pub use copy::Table;
pub use error::{DbFailure, ErrorKind, WriterError, classify};
pub use metrics::WriterMetrics;
pub use ring::{Producer, PushError};
pub use rows::{
    ConvertError, DeltaRow, EventRow, LifecycleRow, MarketRow, Repair, Row, SequenceGapRow,
    SnapshotRow, Source, TickerRow, TradeRow,
};
pub use spool::{DeadLetter, SpoolConfig, SpoolProblem, SpoolRecovery, read_dead_letters};
pub use writer::{WriteMode, Writer, WriterConfig, WriterReport};
