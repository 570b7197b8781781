//! The writer thread: drain the rings, encode, spool, commit.

use std::io::Write;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::{error, info, warn};
use postgres::error::SqlState;
use postgres::{Client, NoTls, Statement};
use prometheus::Registry;

use crate::batch::Batch;
use crate::copy::{COPY_HEADER, COPY_TRAILER, TABLE_COUNT, Table, tuple_ranges};
use crate::error::{DbFailure, ErrorKind, WriterError, is_row_level};
use crate::metrics::WriterMetrics;
use crate::ring::{Producer, RingSet, Shared};
use crate::spool::{DeadLetter, Pending, Spool, SpoolConfig, SpoolRecovery, append_dead_letters};

/// How rows meet existing rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WriteMode {
    /// Plain `COPY` into each table (gatherer databases, which have no unique keys). Exactly-once
    /// comes from the batch markers. `markets` and `events` are always upserted.
    #[default]
    Append,
    /// `COPY` into a temporary staging table, then `INSERT ... ON CONFLICT DO NOTHING` (the
    /// production database, whose unique keys are the backstop of idempotent range writes).
    IgnoreDuplicates,
}

/// Writer settings. [`WriterConfig::new`] gives the defaults; see each field. Its `Debug`
/// output shows the database as `user@host:port/db`, never the password.
#[derive(Clone)]
pub struct WriterConfig {
    /// libpq URL or key=value string of the database. It may hold a password; it is never
    /// logged (only `user@host:port/db`).
    pub database_url: String,
    /// This writer's id in `writer_batches` (e.g. the gatherer's name). Must stay the same across
    /// restarts for the spool's markers to be found.
    pub writer_id: String,
    /// The disk spool.
    pub spool: SpoolConfig,
    /// Number of producers (rings). Default 1.
    pub producers: usize,
    /// Rows per ring. Default 65,536 (about 20 MB per ring); it absorbs one batch commit at
    /// 1M rows/s.
    pub ring_capacity: usize,
    /// Seal a batch at this many rows. Default 50,000 (see bench/README.md, "Writer").
    pub batch_rows_max: usize,
    /// Seal a batch at this many COPY bytes. Default 8 MiB.
    pub batch_bytes_max: usize,
    /// Seal a batch this long after its first row, whatever else is going on. Default 200 ms:
    /// the hard bound on the delay to the database when it is slow or down (design: within a
    /// second or two). At ordinary rates [`WriterConfig::batch_linger`] seals far earlier.
    pub batch_age_max: Duration,
    /// Group commit: seal the open batch as soon as its first row is this old, the rings are
    /// drained and no sealed batch is waiting for the database. The writer commits
    /// synchronously, so rows keep arriving in the rings while a batch commits; under load the
    /// next batch is therefore as large as the commit was long (the batch size adapts to the
    /// rate), and at a low rate a row waits about `batch_linger` plus one commit instead of
    /// `batch_age_max`. `None` seals only on `batch_rows_max`, `batch_bytes_max` or
    /// `batch_age_max`; a linger above `batch_age_max` has no effect. Default 5 ms (bench/README.md, "End to end": p99 tick-to-durable at
    /// 50,000 msgs/s).
    pub batch_linger: Option<Duration>,
    /// Append or ignore duplicates.
    pub mode: WriteMode,
    /// Pin the writer thread to this CPU core. Default none.
    pub core: Option<usize>,
    /// `statement_timeout` of the writer's session. Default 30 s.
    pub statement_timeout: Duration,
    /// `lock_timeout` of the writer's session; `None` leaves the server's. Default none.
    pub lock_timeout: Option<Duration>,
    /// Timeout of one connection attempt. Default 5 s.
    pub connect_timeout: Duration,
    /// First retry delay after a failure; doubles up to `retry_delay_max`. Default 100 ms.
    pub retry_delay_min: Duration,
    /// Longest retry delay. Default 5 s.
    pub retry_delay_max: Duration,
    /// How long [`Writer::shutdown`] keeps trying to commit spooled batches before leaving
    /// them in the spool for the next start. Default 10 s.
    pub shutdown_timeout: Duration,
    /// How long the writer sleeps when there is nothing to do. Default 1 ms.
    pub idle_sleep: Duration,
    /// When no batch has been sealed for this long and nothing is waiting, commit an empty batch
    /// (just its `writer_batches` marker). The newest marker is the writer's durable watermark,
    /// which the deduplicator reads to decide that a time range is complete; without this a
    /// quiet writer would hold every range open. `None` disables it. Default 1 s.
    pub idle_commit: Option<Duration>,
}

impl std::fmt::Debug for WriterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterConfig")
            .field("database", &describe_target(&self.database_url))
            .field("writer_id", &self.writer_id)
            .field("spool", &self.spool)
            .field("producers", &self.producers)
            .field("ring_capacity", &self.ring_capacity)
            .field("batch_rows_max", &self.batch_rows_max)
            .field("batch_bytes_max", &self.batch_bytes_max)
            .field("batch_age_max", &self.batch_age_max)
            .field("batch_linger", &self.batch_linger)
            .field("mode", &self.mode)
            .field("core", &self.core)
            .field("statement_timeout", &self.statement_timeout)
            .field("lock_timeout", &self.lock_timeout)
            .field("idle_commit", &self.idle_commit)
            .finish_non_exhaustive()
    }
}

impl WriterConfig {
    /// Defaults, for `database_url`, `writer_id` and a spool in `spool_dir`.
    #[must_use]
    pub fn new(
        database_url: impl Into<String>,
        writer_id: impl Into<String>,
        spool_dir: impl Into<std::path::PathBuf>,
    ) -> Self {
        Self {
            database_url: database_url.into(),
            writer_id: writer_id.into(),
            spool: SpoolConfig::new(spool_dir),
            producers: 1,
            ring_capacity: 65_536,
            batch_rows_max: 50_000,
            batch_bytes_max: 8 << 20,
            batch_age_max: Duration::from_millis(200),
            batch_linger: Some(Duration::from_millis(5)),
            mode: WriteMode::Append,
            core: None,
            statement_timeout: Duration::from_secs(30),
            lock_timeout: None,
            connect_timeout: Duration::from_secs(5),
            retry_delay_min: Duration::from_millis(100),
            retry_delay_max: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(10),
            idle_sleep: Duration::from_millis(1),
            idle_commit: Some(Duration::from_secs(1)),
        }
    }

    /// Check every value; the error names the key.
    ///
    /// # Errors
    ///
    /// [`WriterError::Config`].
    pub fn validate(&self) -> Result<(), WriterError> {
        let bad = |key, reason: &str| {
            Err(WriterError::Config {
                key,
                reason: reason.to_owned(),
            })
        };
        if self.writer_id.is_empty() || self.writer_id.len() > 200 {
            return bad("writer_id", "must be 1 to 200 bytes");
        }
        if postgres::Config::from_str(&self.database_url).is_err() {
            return bad(
                "database_url",
                "is not a libpq URL or key=value connection string",
            );
        }
        if self.producers == 0 || self.producers > 1024 {
            return bad("producers", "must be 1 to 1024");
        }
        if self.ring_capacity < 2 || self.ring_capacity > 1 << 24 {
            return bad("ring_capacity", "must be 2 to 16,777,216 rows");
        }
        if self.batch_rows_max == 0 || self.batch_rows_max > u32::MAX as usize {
            return bad("batch_rows_max", "must be at least 1 (and fit in 32 bits)");
        }
        if self.batch_bytes_max < 1024 || self.batch_bytes_max > 512 << 20 {
            return bad("batch_bytes_max", "must be 1 KiB to 512 MiB");
        }
        if self.batch_age_max.is_zero() {
            return bad("batch_age_max", "must be more than zero");
        }
        if self.batch_linger.is_some_and(|l| l.is_zero()) {
            return bad(
                "batch_linger",
                "must be more than zero (or unset to disable)",
            );
        }
        if self.idle_commit.is_some_and(|d| d.is_zero()) {
            return bad(
                "idle_commit",
                "must be more than zero (or unset to disable)",
            );
        }
        if self.spool.segment_bytes < 4096 {
            return bad("spool.segment_bytes", "must be at least 4 KiB");
        }
        if self.spool.max_bytes < 2 * self.batch_bytes_max as u64 {
            return bad(
                "spool.max_bytes",
                "must hold at least two batches (2 x batch_bytes_max)",
            );
        }
        if self.statement_timeout < Duration::from_millis(1) {
            return bad("statement_timeout", "must be at least 1 ms");
        }
        if self.retry_delay_min.is_zero() || self.retry_delay_max < self.retry_delay_min {
            return bad(
                "retry_delay_min",
                "must be more than zero and at most retry_delay_max",
            );
        }
        Ok(())
    }
}

/// What the writer did, returned by [`Writer::shutdown`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriterReport {
    /// What the spool held at start.
    pub recovery: SpoolRecovery,
    /// Rows committed, all tables.
    pub rows_committed: u64,
    /// Batches committed.
    pub batches_committed: u64,
    /// Spooled batches found already committed (their markers existed) and skipped.
    pub batches_already_committed: u64,
    /// Rows moved to the dead-letter log.
    pub rows_quarantined: u64,
    /// Spooled batches left uncommitted at exit (committed on the next start).
    pub pending_batches: usize,
    /// Rows in them.
    pub pending_rows: u64,
    /// The last database failure, if any.
    pub last_failure: Option<String>,
}

/// A running writer. Dropping it without [`Writer::shutdown`] also stops the thread (and
/// waits for it).
#[derive(Debug)]
pub struct Writer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<Result<WriterReport, WriterError>>>,
    metrics: WriterMetrics,
    recovery: SpoolRecovery,
}

impl Writer {
    /// Open the spool (recovering it), register the metrics into `registry` and start the
    /// writer thread. Returns the writer and one [`Producer`] per configured ring. The database
    /// need not be up: batches wait in the spool until it is.
    ///
    /// # Errors
    ///
    /// [`WriterError::Config`] for a bad setting or a metric name already registered,
    /// [`WriterError::SpoolLocked`] or [`WriterError::SpoolIo`] for the spool,
    /// [`WriterError::Pin`] for a core that does not exist, [`WriterError::Spawn`].
    pub fn start(
        config: WriterConfig,
        registry: &Registry,
    ) -> Result<(Writer, Vec<Producer>), WriterError> {
        config.validate()?;
        if let Some(core) = config.core {
            let cores = core_affinity::get_core_ids().unwrap_or_default();
            if !cores.iter().any(|c| c.id == core) {
                return Err(WriterError::Pin {
                    core,
                    reason: format!(
                        "no such core; this machine has {:?}",
                        cores.iter().map(|c| c.id).collect::<Vec<_>>()
                    ),
                });
            }
        }
        let metrics = WriterMetrics::register(registry).map_err(|e| WriterError::Config {
            key: "registry",
            reason: format!("could not register the writer metrics: {e}"),
        })?;
        let (spool, recovery) = Spool::open(config.spool.clone())?;
        for p in &recovery.problems {
            error!(
                "writer spool: cut segment {} at byte {} ({} bytes dropped): {}",
                p.path.display(),
                p.offset,
                p.dropped_bytes,
                p.reason
            );
            metrics.spool_corrupt.inc();
        }
        if recovery.batches > 0 {
            info!(
                "writer spool: found {} batches ({} rows) in {} segments; replaying those not committed",
                recovery.batches, recovery.rows, recovery.segments
            );
        }
        metrics.spool_batches.set(spool.pending().len() as i64);
        metrics.spool_bytes.set(spool.bytes() as i64);
        let shared = Arc::new(Shared::default());
        shared.running.store(true, Ordering::Release);
        let rings: Vec<Arc<RingSet>> = (0..config.producers)
            .map(|_| Arc::new(RingSet::new(config.ring_capacity)))
            .collect();
        let producers = rings
            .iter()
            .enumerate()
            .map(|(i, r)| Producer::new(i, Arc::clone(r), Arc::clone(&shared)))
            .collect();
        let occupancy = (0..config.producers)
            .map(|i| metrics.ring_occupancy.with_label_values(&[&i.to_string()]))
            .collect();
        let now_us = unix_now_us();
        let next_id = spool
            .max_id()
            .map_or(0, |m| m.saturating_add(1))
            .max(now_us.max(0) as u64);
        let mut core = WriterCore {
            open: Batch::with_capacity(config.batch_bytes_max.min(1 << 20)),
            mem: Batch::default(),
            spare: Batch::default(),
            open_rows: 0,
            open_bytes: 0,
            open_since: None,
            conn: None,
            next_attempt: Instant::now(),
            delay: config.retry_delay_min,
            next_id,
            check_markers: !spool.pending().is_empty(),
            spool_was_full: false,
            last_seal: Instant::now(),
            ring_empty_us: vec![0; config.producers],
            report: WriterReport {
                recovery: recovery.clone(),
                ..WriterReport::default()
            },
            target: describe_target(&config.database_url),
            occupancy,
            rings,
            spool,
            metrics: metrics.clone(),
            shared: Arc::clone(&shared),
            cfg: config,
        };
        let thread = std::thread::Builder::new()
            .name("kalshi-writer".to_owned())
            .spawn(move || {
                let _running = RunningGuard(Arc::clone(&core.shared));
                if let Some(id) = core.cfg.core
                    && !core_affinity::set_for_current(core_affinity::CoreId { id })
                {
                    warn!("writer: could not pin the writer thread to core {id}; running unpinned");
                }
                core.run()
            })
            .map_err(WriterError::Spawn)?;
        Ok((
            Writer {
                shared,
                thread: Some(thread),
                metrics,
                recovery,
            },
            producers,
        ))
    }

    /// The metrics (also registered in the registry given to [`Writer::start`]).
    #[must_use]
    pub fn metrics(&self) -> &WriterMetrics {
        &self.metrics
    }

    /// What spool recovery found at start.
    #[must_use]
    pub fn recovery(&self) -> &SpoolRecovery {
        &self.recovery
    }

    /// Rows acknowledged since start: rows of batches appended to the spool. Each of them is
    /// committed exactly once, whatever happens to the database or this process (see the crate
    /// documentation for the precise guarantee).
    #[must_use]
    pub fn rows_spooled(&self) -> u64 {
        self.shared.rows_spooled.load(Ordering::Acquire)
    }

    /// Whether the writer thread is running.
    #[must_use]
    pub fn is_running(&self) -> bool {
        self.shared.running.load(Ordering::Acquire)
    }

    /// Stop: drain the rings (producers should have stopped pushing), seal the last batch,
    /// commit everything spooled (for up to `shutdown_timeout` when the database is away) and
    /// return the report. Uncommitted batches stay in the spool for the next start.
    ///
    /// # Errors
    ///
    /// The error that stopped the thread ([`WriterError::SpoolIo`] and the like), or
    /// [`WriterError::Panicked`].
    pub fn shutdown(mut self) -> Result<WriterReport, WriterError> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<WriterReport, WriterError> {
        self.shared.stop.store(true, Ordering::Release);
        let Some(thread) = self.thread.take() else {
            return Err(WriterError::Internal("writer already shut down"));
        };
        match thread.join() {
            Ok(result) => result,
            Err(panic) => Err(WriterError::Panicked(
                panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default(),
            )),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _report = self.stop_and_join();
        }
    }
}

/// Clears `running` when the writer thread ends, however it ends.
struct RunningGuard(Arc<Shared>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::Release);
    }
}

/// Microseconds since the Unix epoch (batch ids and the spool age).
fn unix_now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// `user@host:port/db` of a connection string, without the password.
fn describe_target(url: &str) -> String {
    let Ok(config) = postgres::Config::from_str(url) else {
        return "<unparsable connection string>".to_owned();
    };
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".to_owned());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}@{host}:{port}/{}",
        config.get_user().unwrap_or("?"),
        config.get_dbname().unwrap_or("?")
    )
}

/// How a table's body reaches its table.
#[derive(Debug)]
struct TablePath {
    copy: Statement,
    /// For staged tables: the statement moving the staged rows into the table.
    merge: Option<Statement>,
    /// For staged tables: `TRUNCATE` of the staging table.
    clear: Option<Statement>,
}

/// A live connection with its prepared statements.
struct Conn {
    client: Client,
    marker: Statement,
    paths: Vec<TablePath>,
}

impl Conn {
    fn open(cfg: &WriterConfig) -> Result<Conn, postgres::Error> {
        // validate() checked that it parses.
        let mut pg = postgres::Config::from_str(&cfg.database_url).unwrap_or_default();
        pg.connect_timeout(cfg.connect_timeout);
        pg.keepalives(true);
        pg.keepalives_idle(Duration::from_secs(30));
        pg.application_name("kalshi-writer");
        let mut options = format!("-c statement_timeout={}", cfg.statement_timeout.as_millis());
        if let Some(lock) = cfg.lock_timeout {
            options.push_str(&format!(" -c lock_timeout={}", lock.as_millis().max(1)));
        }
        pg.options(&options);
        let mut client = pg.connect(NoTls)?;
        let marker = client.prepare(
            "INSERT INTO writer_batches (writer_id, batch_id, row_count) VALUES ($1, $2, $3)",
        )?;
        let mut paths = Vec::with_capacity(TABLE_COUNT);
        for table in Table::ALL {
            let cols = table.columns().join(", ");
            let staged = table.upsert_key().is_some() || cfg.mode == WriteMode::IgnoreDuplicates;
            if !staged {
                let copy = client.prepare(&format!(
                    "COPY {} ({cols}) FROM STDIN (FORMAT binary)",
                    table.name()
                ))?;
                paths.push(TablePath {
                    copy,
                    merge: None,
                    clear: None,
                });
                continue;
            }
            let stage = format!("kalshi_stage_{}", table.name());
            client.batch_execute(&format!(
                "CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS \
                 SELECT {cols} FROM {} WITH NO DATA",
                table.name()
            ))?;
            let merge = match table.upsert_key() {
                Some(key) => {
                    let set = table
                        .columns()
                        .iter()
                        .filter(|c| **c != key)
                        .map(|c| format!("{c} = EXCLUDED.{c}"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    format!(
                        "INSERT INTO {t} ({cols}) SELECT DISTINCT ON ({key}) {cols} FROM {stage} \
                         ORDER BY {key}, updated_ts DESC, ctid DESC \
                         ON CONFLICT ({key}) DO UPDATE SET {set} \
                         WHERE {t}.updated_ts <= EXCLUDED.updated_ts",
                        t = table.name()
                    )
                }
                None => format!(
                    "INSERT INTO {} ({cols}) SELECT {cols} FROM {stage} ORDER BY ctid \
                     ON CONFLICT DO NOTHING",
                    table.name()
                ),
            };
            paths.push(TablePath {
                copy: client
                    .prepare(&format!("COPY {stage} ({cols}) FROM STDIN (FORMAT binary)"))?,
                merge: Some(client.prepare(&merge)?),
                clear: Some(client.prepare(&format!("TRUNCATE {stage}"))?),
            });
        }
        Ok(Conn {
            client,
            marker,
            paths,
        })
    }
}

/// What committing a batch did.
enum Outcome {
    /// Committed; rows written per table and rows quarantined.
    Committed {
        rows: [u64; TABLE_COUNT],
        quarantined: [u64; TABLE_COUNT],
    },
    /// Its marker already existed: committed before (a replay after a crash).
    AlreadyCommitted,
}

/// A failure to send one body, with the client error when there is one.
struct SendError {
    failure: DbFailure,
    row_level: bool,
}

fn send_failure(
    err: &postgres::Error,
    action: &'static str,
    table: Option<Table>,
    batch: u64,
) -> SendError {
    SendError {
        failure: DbFailure::new(err, action, table, Some(batch)),
        row_level: is_row_level(err),
    }
}

/// The action of a failure to start a COPY (see `WriterCore::fail` for why it matters).
const COPY_START: &str = "starting COPY";

/// COPY one body (tuples without header and trailer) into `table` within `tx`.
fn send_body(
    tx: &mut postgres::Transaction<'_>,
    path: &TablePath,
    table: Table,
    body: &[&[u8]],
    batch: u64,
) -> Result<(), SendError> {
    const CHUNK: usize = 256 << 10;
    let mut w = tx
        .copy_in(&path.copy)
        .map_err(|e| send_failure(&e, COPY_START, Some(table), batch))?;
    let mut io = w.write_all(COPY_HEADER).err();
    for part in body {
        if io.is_some() {
            break;
        }
        for chunk in part.chunks(CHUNK) {
            if let Err(e) = w.write_all(chunk) {
                io = Some(e);
                break;
            }
        }
    }
    if io.is_none() {
        io = w.write_all(COPY_TRAILER).err();
    }
    if let Some(e) = io {
        // The client error is inside the io::Error when the connection failed while sending.
        if let Some(pg) = e
            .get_ref()
            .and_then(|i| i.downcast_ref::<postgres::Error>())
        {
            return Err(send_failure(pg, "sending COPY data", Some(table), batch));
        }
        return Err(SendError {
            failure: DbFailure {
                kind: ErrorKind::Connection,
                sqlstate: None,
                table: Some(table),
                batch_id: Some(batch),
                action: "sending COPY data",
                message: e.to_string(),
            },
            row_level: false,
        });
    }
    w.finish()
        .map_err(|e| send_failure(&e, "finishing COPY", Some(table), batch))?;
    if let (Some(merge), Some(clear)) = (&path.merge, &path.clear) {
        tx.execute(merge, &[])
            .map_err(|e| send_failure(&e, "merging staged rows", Some(table), batch))?;
        tx.execute(clear, &[])
            .map_err(|e| send_failure(&e, "clearing the staging table", Some(table), batch))?;
    }
    Ok(())
}

/// COPY `tuples` (byte ranges of `body`) into `table`, isolating rows the database rejects:
/// each attempt runs under a savepoint; a row-level failure splits the range in halves until
/// single rows, which go to `dead`. Returns the rows written.
#[allow(clippy::too_many_arguments)]
fn send_isolating(
    tx: &mut postgres::Transaction<'_>,
    path: &TablePath,
    table: Table,
    body: &[u8],
    tuples: &[core::ops::Range<usize>],
    batch: u64,
    dead: &mut Vec<DeadLetter>,
) -> Result<u64, SendError> {
    if tuples.is_empty() {
        return Ok(0);
    }
    let parts: Vec<&[u8]> = vec![&body[tuples[0].start..tuples[tuples.len() - 1].end]];
    let mut sp = tx
        .savepoint("kalshi_isolate")
        .map_err(|e| send_failure(&e, "taking a savepoint", Some(table), batch))?;
    match send_body(&mut sp, path, table, &parts, batch) {
        Ok(()) => {
            sp.commit()
                .map_err(|e| send_failure(&e, "releasing a savepoint", Some(table), batch))?;
            Ok(tuples.len() as u64)
        }
        Err(e) if e.row_level => {
            drop(sp);
            if tuples.len() == 1 {
                dead.push(DeadLetter {
                    batch_id: batch,
                    table,
                    sqlstate: e.failure.sqlstate.clone().unwrap_or_default(),
                    message: e.failure.message.clone(),
                    tuple: body[tuples[0].clone()].to_vec(),
                });
                error!(
                    "writer: quarantined one {} row of batch {batch}: SQLSTATE {}: {}",
                    table.name(),
                    e.failure.sqlstate.as_deref().unwrap_or("-"),
                    e.failure.message
                );
                return Ok(0);
            }
            let mid = tuples.len() / 2;
            let a = send_isolating(tx, path, table, body, &tuples[..mid], batch, dead)?;
            let b = send_isolating(tx, path, table, body, &tuples[mid..], batch, dead)?;
            Ok(a + b)
        }
        Err(e) => Err(e),
    }
}

/// Commit one batch: BEGIN, marker, each table, (dead letters), COMMIT.
fn commit_batch(
    conn: &mut Conn,
    batch: &Batch,
    writer_id: &str,
    isolate: bool,
    spool_dir: &std::path::Path,
) -> Result<Outcome, SendError> {
    let id = batch.id;
    let id_sql = i64::try_from(id).unwrap_or(i64::MAX);
    let rows_sql = i64::try_from(batch.rows()).unwrap_or(i64::MAX);
    let Conn {
        client,
        marker,
        paths,
    } = conn;
    let mut tx = client
        .transaction()
        .map_err(|e| send_failure(&e, "beginning the batch transaction", None, id))?;
    match tx.execute(&*marker, &[&writer_id, &id_sql, &rows_sql]) {
        Ok(_) => {}
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            return Ok(Outcome::AlreadyCommitted);
        }
        Err(e) => {
            return Err(send_failure(
                &e,
                "inserting the batch marker into writer_batches",
                None,
                id,
            ));
        }
    }
    let mut rows = [0u64; TABLE_COUNT];
    let mut quarantined = [0u64; TABLE_COUNT];
    let mut dead = Vec::new();
    for (table, section) in batch.tables() {
        let path = &paths[table as usize];
        if isolate {
            let tuples = tuple_ranges(&section.body).map_err(|m| SendError {
                failure: DbFailure {
                    kind: ErrorKind::Constraint,
                    sqlstate: None,
                    table: Some(table),
                    batch_id: Some(id),
                    action: "splitting a COPY body into rows",
                    message: m.to_string(),
                },
                row_level: false,
            })?;
            let before = dead.len();
            rows[table as usize] =
                send_isolating(&mut tx, path, table, &section.body, &tuples, id, &mut dead)?;
            quarantined[table as usize] = (dead.len() - before) as u64;
        } else {
            send_body(&mut tx, path, table, &[&section.body], id)?;
            rows[table as usize] = u64::from(section.rows);
        }
    }
    if !dead.is_empty() {
        // Durable before the commit that leaves these rows out.
        append_dead_letters(spool_dir, &dead).map_err(|e| SendError {
            failure: DbFailure {
                kind: ErrorKind::Constraint,
                sqlstate: None,
                table: None,
                batch_id: Some(id),
                action: "writing the dead-letter log",
                message: e.to_string(),
            },
            row_level: false,
        })?;
    }
    tx.commit()
        .map_err(|e| send_failure(&e, "committing the batch", None, id))?;
    Ok(Outcome::Committed { rows, quarantined })
}

/// The state of the writer thread.
struct WriterCore {
    cfg: WriterConfig,
    metrics: WriterMetrics,
    shared: Arc<Shared>,
    rings: Vec<Arc<RingSet>>,
    occupancy: Vec<prometheus::IntGauge>,
    spool: Spool,
    /// The batch being filled.
    open: Batch,
    /// The last sealed batch, kept so that committing it needs no re-read (id 0 when empty).
    mem: Batch,
    /// Buffer for batches read back from the spool.
    spare: Batch,
    open_rows: usize,
    open_bytes: usize,
    open_since: Option<Instant>,
    conn: Option<Conn>,
    /// No database work before this instant (retry backoff).
    next_attempt: Instant,
    delay: Duration,
    next_id: u64,
    /// Ask the database which spooled batches are committed, once connected.
    check_markers: bool,
    report: WriterReport,
    target: String,
    /// Whether the last seal failed for lack of spool room (for logging once per episode).
    spool_was_full: bool,
    /// When the last batch was sealed (for [`WriterConfig::idle_commit`]).
    last_seal: Instant,
    /// Per ring: a time (µs) at which the ring was seen empty, read *before* the pop that found
    /// it empty, so every row pushed before it has been drained. See [`WriterCore::seal`].
    ring_empty_us: Vec<i64>,
}

/// Rows taken from one ring per pass, so that several rings are served fairly.
const DRAIN_CHUNK: usize = 1024;

/// Batches committed per loop pass before the rings are drained again.
const COMMITS_PER_PASS: usize = 4;

impl WriterCore {
    fn run(&mut self) -> Result<WriterReport, WriterError> {
        let mut stop_deadline: Option<Instant> = None;
        loop {
            let stopping = self.shared.stop.load(Ordering::Acquire);
            if stopping && stop_deadline.is_none() {
                stop_deadline = Some(Instant::now() + self.cfg.shutdown_timeout);
            }
            let moved = if self.open_full() { 0 } else { self.drain() };
            let now = Instant::now();
            let rings_empty = self.rings.iter().all(|r| r.rows.is_empty());
            let age = self.open_since.map(|t| now.duration_since(t));
            let age_due = age.is_some_and(|a| a >= self.cfg.batch_age_max);
            // Group commit: the database is idle and the rings are drained, so waiting longer
            // only adds latency (see WriterConfig::batch_linger).
            let linger_due = rings_empty
                && self.spool.pending().is_empty()
                && age.zip(self.cfg.batch_linger).is_some_and(|(a, l)| a >= l);
            let floor_us = self.ring_empty_us.iter().copied().min().unwrap_or(0).max(0) as u64;
            if self.open_rows > 0
                && (self.open_full() || age_due || linger_due || (stopping && rings_empty))
            {
                self.seal()?;
            } else if self.open_rows == 0
                && stopping
                && rings_empty
                && self.spool.pending().is_empty()
                && floor_us >= self.next_id
            {
                // Shutting down with everything committed, but the last batch's id (the durable
                // watermark) is behind the arrival floor: one empty batch records the final floor.
                self.seal()?;
            } else if self.open_rows == 0
                && !stopping
                && self.spool.pending().is_empty()
                && self
                    .cfg
                    .idle_commit
                    .is_some_and(|idle| now.duration_since(self.last_seal) >= idle)
            {
                // Nothing to write for a while: an empty batch advances the durable watermark.
                self.seal()?;
            }
            let committed = self.commit_some(now);
            self.update_gauges();
            if stopping && rings_empty && self.open_rows == 0 {
                if self.spool.pending().is_empty() {
                    break;
                }
                if stop_deadline.is_some_and(|d| Instant::now() >= d) {
                    warn!(
                        "writer: shutting down with {} batches still in the spool at {}; \
                         they are committed on the next start",
                        self.spool.pending().len(),
                        self.spool.dir().display()
                    );
                    break;
                }
            }
            if moved == 0 && committed == 0 {
                std::thread::sleep(self.cfg.idle_sleep);
            }
        }
        self.report.pending_batches = self.spool.pending().len();
        self.report.pending_rows = self.spool.pending().iter().map(|p| p.rows).sum();
        self.update_gauges();
        Ok(std::mem::take(&mut self.report))
    }

    fn open_full(&self) -> bool {
        self.open_rows >= self.cfg.batch_rows_max || self.open_bytes >= self.cfg.batch_bytes_max
    }

    /// Move rows from the rings into the open batch until it is full or the rings are empty.
    fn drain(&mut self) -> usize {
        let mut moved = 0;
        loop {
            let mut pass = 0;
            for (ring, empty_us) in self.rings.iter().zip(self.ring_empty_us.iter_mut()) {
                // One clock read per ring visit, not per row.
                let visit_us = unix_now_us();
                for _ in 0..DRAIN_CHUNK {
                    if self.open_rows >= self.cfg.batch_rows_max
                        || self.open_bytes >= self.cfg.batch_bytes_max
                    {
                        break;
                    }
                    let Some(row) = ring.rows.pop() else {
                        *empty_us = visit_us;
                        break;
                    };
                    self.open_bytes += self.open.add(&row);
                    self.open_rows += 1;
                    ring.recycle(row);
                    pass += 1;
                }
            }
            if pass > 0 && self.open_since.is_none() {
                self.open_since = Some(Instant::now());
            }
            moved += pass;
            if pass == 0 || self.open_full() {
                return moved;
            }
        }
    }

    /// Give the open batch an id and append it to the spool, if there is room.
    fn seal(&mut self) -> Result<(), WriterError> {
        if !self.spool.has_room(self.open_bytes) {
            if !self.spool_was_full {
                error!(
                    "writer: spool {} is full ({} bytes, {} batches waiting for the database at {}); \
                     holding back ingest (producers see full rings) until batches commit",
                    self.spool.dir().display(),
                    self.spool.bytes(),
                    self.spool.pending().len(),
                    self.target
                );
                self.spool_was_full = true;
            }
            self.metrics.spool_full.set(1);
            return Ok(());
        }
        let now_us = unix_now_us();
        // The batch id is the writer's durable watermark once committed (the deduplicator reads
        // max(batch_id)). It is the *arrival floor*: the oldest time at which every ring was last
        // seen empty. A producer stamps `received_ts` before it pushes, and a ring seen empty at
        // time t has had every row pushed before t drained into this batch or an earlier one; so
        // once this batch commits, every row received before its id is committed. A ring that
        // never empties holds the id back (correct, only slower); an idle writer's id follows
        // the clock.
        let floor = self.ring_empty_us.iter().copied().min().unwrap_or(now_us);
        let id = self.next_id.max(floor.max(0) as u64);
        self.open.id = id;
        self.open.created_us = now_us;
        if let Err(e) = self.spool.append(&self.open) {
            // The spool cannot take it (disk full, I/O error): keep the batch open and retry;
            // until then the rings fill up and producers are held back.
            error!("writer: {e}; holding back ingest and retrying");
            self.metrics.spool_full.set(1);
            self.spool_was_full = true;
            self.open.id = 0;
            std::thread::sleep(self.delay);
            self.bump_delay();
            return Ok(());
        }
        if self.spool_was_full {
            // Cleared only once a batch is in the spool again: after a failed append (disk
            // full) too, not only after the size bound, or `writer_spool_full` (and /health)
            // would stay 1 for good.
            info!("writer: spool has room again; ingest resumes");
            self.spool_was_full = false;
            self.metrics.spool_full.set(0);
        }
        self.next_id = id + 1;
        self.shared
            .rows_spooled
            .fetch_add(self.open_rows as u64, Ordering::Release);
        std::mem::swap(&mut self.open, &mut self.mem);
        self.open.clear();
        self.open_rows = 0;
        self.open_bytes = 0;
        self.open_since = None;
        self.last_seal = Instant::now();
        Ok(())
    }

    fn bump_delay(&mut self) {
        self.delay = (self.delay * 2).min(self.cfg.retry_delay_max);
    }

    /// Commit up to [`COMMITS_PER_PASS`] spooled batches, oldest first. Returns how many.
    fn commit_some(&mut self, now: Instant) -> usize {
        if self.spool.pending().is_empty() || now < self.next_attempt {
            return 0;
        }
        if self.conn.is_none() && !self.connect() {
            return 0;
        }
        let mut done = 0;
        while done < COMMITS_PER_PASS {
            let Some(p) = self.spool.pending().front().copied() else {
                break;
            };
            match self.commit_pending(&p) {
                Ok(()) => done += 1,
                Err(()) => break,
            }
        }
        done
    }

    fn connect(&mut self) -> bool {
        match Conn::open(&self.cfg) {
            Ok(conn) => {
                if self.report.last_failure.is_some() {
                    info!("writer: connected to {}", self.target);
                }
                self.conn = Some(conn);
            }
            Err(e) => {
                let f = DbFailure::new(&e, "connecting", None, None);
                let f = DbFailure {
                    message: format!("{} ({})", f.message, self.target),
                    ..f
                };
                self.fail(f);
                return false;
            }
        }
        if self.check_markers && !self.check_markers() {
            return false;
        }
        true
    }

    /// Ask the database which spooled batches already have markers (a crash after COMMIT, before
    /// the spool heard of it), forget those, and prune markers older than the spool.
    fn check_markers(&mut self) -> bool {
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        let ids: Vec<i64> = self
            .spool
            .pending()
            .iter()
            .map(|p| i64::try_from(p.id).unwrap_or(i64::MAX))
            .collect();
        let found = conn.client.query(
            "SELECT batch_id FROM writer_batches WHERE writer_id = $1 AND batch_id = ANY($2)",
            &[&self.cfg.writer_id, &ids],
        );
        match found {
            Ok(rows) => {
                let mut n = 0;
                for row in rows {
                    let id: i64 = row.get(0);
                    if let Err(e) = self.spool.mark_committed(id as u64) {
                        error!("writer: {e}");
                    }
                    n += 1;
                }
                self.report.batches_already_committed += n;
                if n > 0 {
                    info!("writer: {n} spooled batches were already committed; skipping them");
                }
                self.check_markers = false;
                self.prune_markers();
                true
            }
            Err(e) => {
                self.fail(DbFailure::new(
                    &e,
                    "reading writer_batches for spool recovery",
                    None,
                    None,
                ));
                false
            }
        }
    }

    /// Delete markers of batches that are no longer in any spool segment (they can never be
    /// replayed). Failure is logged and retried at the next segment deletion.
    fn prune_markers(&mut self) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let below = self
            .spool
            .oldest_id_on_disk()
            .unwrap_or(self.next_id)
            .min(self.next_id);
        let below = i64::try_from(below).unwrap_or(i64::MAX);
        if let Err(e) = conn.client.execute(
            "DELETE FROM writer_batches WHERE writer_id = $1 AND batch_id < $2",
            &[&self.cfg.writer_id, &below],
        ) {
            warn!(
                "writer: could not prune old writer_batches markers: {}",
                DbFailure::new(&e, "pruning markers", None, None)
            );
        }
    }

    /// Commit one pending batch. `Err(())` means stop for now (failure handled and logged).
    fn commit_pending(&mut self, p: &Pending) -> Result<(), ()> {
        let from_memory = self.mem.id == p.id;
        if !from_memory && let Err(e) = self.spool.read(p, &mut self.spare) {
            // The record passed its checksum at append or recovery; a failure now is a disk
            // problem. Report it and move on rather than wedge the spool forever.
            error!(
                "writer: dropping spooled batch {} ({} rows) that cannot be read back: {e}",
                p.id, p.rows
            );
            self.metrics.spool_corrupt.inc();
            let _ignored = self.spool.mark_committed(p.id);
            return Ok(());
        }
        let started = Instant::now();
        let Some(conn) = self.conn.as_mut() else {
            return Err(());
        };
        let batch = if from_memory { &self.mem } else { &self.spare };
        let spool_dir = self.spool.dir().to_path_buf();
        let result = match commit_batch(conn, batch, &self.cfg.writer_id, false, &spool_dir) {
            Err(e) if e.failure.kind == ErrorKind::Constraint && e.row_level => {
                // Counted as one failed attempt; the isolating retry is another.
                self.metrics
                    .errors
                    .with_label_values(&[ErrorKind::Constraint.as_str()])
                    .inc();
                warn!(
                    "{}; isolating the rejected rows (they go to the dead-letter log)",
                    e.failure
                );
                commit_batch(conn, batch, &self.cfg.writer_id, true, &spool_dir)
            }
            other => other,
        };
        let bytes = batch.bytes();
        match result {
            Ok(Outcome::AlreadyCommitted) => {
                self.report.batches_already_committed += 1;
                self.after_commit(p.id);
                Ok(())
            }
            Ok(Outcome::Committed { rows, quarantined }) => {
                self.metrics
                    .flush_duration
                    .observe(started.elapsed().as_secs_f64());
                let total: u64 = rows.iter().sum();
                self.metrics.batch_rows.observe(total as f64);
                self.metrics.batch_bytes.observe(bytes as f64);
                self.metrics.batches_committed.inc();
                for t in Table::ALL {
                    let i = t as usize;
                    if rows[i] > 0 {
                        self.metrics.inserts_by_table[i].inc_by(rows[i]);
                    }
                    if quarantined[i] > 0 {
                        self.metrics
                            .quarantined
                            .with_label_values(&[t.name()])
                            .inc_by(quarantined[i]);
                        self.report.rows_quarantined += quarantined[i];
                    }
                }
                self.report.rows_committed += total;
                self.report.batches_committed += 1;
                self.delay = self.cfg.retry_delay_min;
                self.after_commit(p.id);
                Ok(())
            }
            Err(e) => {
                self.fail(e.failure);
                Err(())
            }
        }
    }

    fn after_commit(&mut self, id: u64) {
        if self.mem.id == id {
            self.mem.clear();
        }
        match self.spool.mark_committed(id) {
            Ok(0) => {}
            Ok(_) => self.prune_markers(),
            Err(e) => error!("writer: {e}"),
        }
    }

    /// Count, log and react to a failure: back off, and drop the connection when it broke.
    fn fail(&mut self, f: DbFailure) {
        self.metrics
            .errors
            .with_label_values(&[f.kind.as_str()])
            .inc();
        match f.kind {
            ErrorKind::Connection => {
                warn!(
                    "{f}; {} batches wait in the spool; retrying in {:?}",
                    self.spool.pending().len(),
                    self.delay
                );
                self.conn = None;
            }
            ErrorKind::Timeout => {
                warn!(
                    "{f}; the batch stays in the spool; retrying in {:?}",
                    self.delay
                );
            }
            ErrorKind::Constraint => {
                error!(
                    "{f}; the batch stays in the spool and is retried in {:?} \
                     (check the schema and grants)",
                    self.delay
                );
            }
        }
        if self.conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            self.conn = None;
        }
        if f.action == COPY_START && f.sqlstate.is_some() {
            // The server refused the COPY before entering COPY mode (lock or statement timeout,
            // cancel, undefined column, ...). The client sent a Sync with the COPY's Execute and
            // sends another with the CopyFail of the dropped sink, so the server answers with
            // two ReadyForQuery and the next statement on this session fails with "unexpected
            // message from server" (rust-postgres/rust-postgres#789), which would be counted as
            // a `connection` error that never happened. Drop the session; the retry reconnects.
            self.conn = None;
        }
        self.report.last_failure = Some(f.to_string());
        self.next_attempt = Instant::now() + self.delay;
        self.bump_delay();
    }

    fn update_gauges(&self) {
        for (ring, gauge) in self.rings.iter().zip(&self.occupancy) {
            gauge.set(ring.rows.len() as i64);
        }
        self.metrics.spool_bytes.set(self.spool.bytes() as i64);
        self.metrics
            .spool_batches
            .set(self.spool.pending().len() as i64);
        let age = self
            .spool
            .pending()
            .front()
            .map_or(0.0, |p| (unix_now_us() - p.created_us).max(0) as f64 / 1e6);
        self.metrics.spool_age_seconds.set(age);
    }
}
