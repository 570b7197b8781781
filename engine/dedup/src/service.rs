//! The range-sync service: connections, probes, jobs, the production transaction.
//!
//! One thread runs [`Deduplicator::run`]. Each pass it (re)connects production and loads the
//! dedup state, probes every gatherer's durable watermark, asks each live gatherer whose late
//! scan is due which merged ranges received rows since its arrival cursor ([`crate::late`]),
//! lets the [`Planner`] decide, runs at most one job (a merge of new ranges, else a late-row
//! re-merge, else one gatherer's catch-up), re-syncs `markets` and `events` when due, and
//! publishes metrics and the health snapshot.
//!
//! # A job
//!
//! 1. Read the job's ranges from each source with `COPY (SELECT ...) TO STDOUT (FORMAT
//!    binary)`, one statement per table covering all the job's ranges.
//! 2. Catch-up only: fingerprint the gatherer's rows per (range, table) and compare with the
//!    fingerprints stored in `dedup_ranges`; only changed pairs go on, with production's own
//!    rows of those ranges read as the merge base (so only missing copies are written).
//! 3. Merge per range ([`crate::merge`]).
//! 4. In **one** production transaction: COPY the merged tuples into temporary staging tables,
//!    move them into the real tables with `INSERT ... ON CONFLICT DO NOTHING` (trades also skip
//!    a `trade_id` stored at another time; the gap ledger upserts), upsert the fingerprints into
//!    `dedup_ranges` and the cursors and frontier into `dedup_watermarks`, and COMMIT. A failure
//!    anywhere rolls the whole job back; it is retried after a backoff. Replaying a committed
//!    job writes nothing, because merged copies are numbered canonically and production's
//!    unique keys hold the rest.
//!
//! kalshi-writer's `Writer` thread is not used for production: its batches carry their own
//! `writer_batches` marker, but the range's watermark and fingerprints must commit in the same
//! transaction as its rows, and the merge already knows its exact batch boundaries (one job).
//! The rows are encoded by the gatherers' writers in kalshi-writer's binary COPY format and
//! passed through byte for byte (only `occurrence` is set), so no re-encoding happens here.

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kalshi_storage::{MigrateOptions, migrate};
use kalshi_writer::copy::{COPY_HEADER, COPY_TRAILER};
use kalshi_writer::{ErrorKind, Table, classify};
use log::{error, info, warn};
use parking_lot::Mutex;
use postgres::{Client, NoTls};
use prometheus::Registry;

use crate::MERGED_SOURCE;
use crate::config::{Config, DbTarget};
use crate::late::{Coverage, LateState, candidate_sql, runs, scan_window};
use crate::merge::{
    Fingerprint, LifeCopy, TupleRef, last_i32, merge_lifecycle, merge_range, parse_stream,
    parse_tuples, split_ranges,
};
use crate::metrics::DedupMetrics;
use crate::plan::{GathererStatus, Job, JobKind, PlanConfig, Planner};
use crate::spec::{MergeKind, SPECS, TableSpec};

/// Errors that stop the service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DedupError {
    /// Metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// Production's schema could not be migrated (not retried: an operator must act).
    #[error("production migration failed: {0}")]
    Migrate(#[from] kalshi_storage::StorageError),
}

/// Per-gatherer health, as served in `/health`'s `gatherers` field.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct GathererHealth {
    /// The last probe succeeded.
    pub reachable: bool,
    /// `live`, `waiting` or `down`.
    pub state: String,
    /// Durable watermark, µs since the epoch.
    pub watermark_ts: Option<i64>,
    /// Now minus the watermark, seconds.
    pub lag_seconds: Option<f64>,
    /// Next range start to read from it, µs.
    pub cursor_ts: i64,
    /// Rows read from it since start.
    pub rows: u64,
}

/// The service's state as `/health` reports it.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct HealthSnapshot {
    /// `ok` or `unhealthy`.
    pub status: String,
    /// Whether `/health` answers 200.
    #[serde(skip)]
    pub healthy: bool,
    /// Production connected.
    pub production: ProductionHealth,
    /// End of the newest range written, µs.
    pub frontier_ts: Option<i64>,
    /// Now minus the frontier, seconds.
    pub sync_lag_seconds: Option<f64>,
    /// Per gatherer, by name.
    pub gatherers: std::collections::BTreeMap<String, GathererHealth>,
    /// Why it is unhealthy.
    pub problems: Vec<String>,
}

/// Production's part of the health snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProductionHealth {
    /// Connected and the state loaded.
    pub reachable: bool,
}

/// An admin re-check: the gatherer (`None`: every gatherer) and the range start to re-read
/// from, µs.
pub type Recheck = (Option<String>, i64);

/// Handles shared with the HTTP side.
#[derive(Clone, Debug, Default)]
pub struct Shared {
    /// Latest health.
    pub health: Arc<Mutex<HealthSnapshot>>,
    /// Pending admin re-checks.
    pub rechecks: Arc<Mutex<Vec<Recheck>>>,
    /// `dedup_sync_lag_seconds`, which the metrics endpoint recomputes from the frontier at each
    /// scrape: the service loop sets it only between jobs, so a job blocked in production (a
    /// held lock) would otherwise freeze the lag at its last value until the statement failed.
    pub sync_lag: Option<prometheus::Gauge>,
}

impl Shared {
    /// Brings the health snapshot's lag to `now_us` (µs since the epoch): the lag grows while a
    /// job is blocked, and `/health` turns unhealthy once it passes `lag_max_secs`. Also sets
    /// `dedup_sync_lag_seconds`. Returns the snapshot.
    #[must_use]
    pub fn health_at(&self, now_us: i64, lag_max_secs: f64) -> HealthSnapshot {
        let mut h = self.health.lock().clone();
        if let Some(frontier) = h.frontier_ts {
            let lag = (now_us.saturating_sub(frontier)) as f64 / 1e6;
            if let Some(g) = &self.sync_lag {
                g.set(lag);
            }
            h.sync_lag_seconds = Some(lag);
            let already = h.problems.iter().any(|p| p.starts_with("sync lag"));
            if lag > lag_max_secs && !already {
                h.problems
                    .push(format!("sync lag {lag:.1} s exceeds {lag_max_secs} s"));
                h.healthy = false;
                "unhealthy".clone_into(&mut h.status);
            }
        }
        h
    }
}

/// Totals since start (also in the metrics), for tests and the bench.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Totals {
    /// Rows read by normal merges.
    pub merge_rows_read: u64,
    /// Rows written by normal merges.
    pub merge_rows_written: u64,
    /// Rows written by catch-ups.
    pub catchup_rows_written: u64,
    /// Ranges merged.
    pub ranges_merged: u64,
    /// Catch-up ranges merged again (fingerprint changed).
    pub ranges_remerged: u64,
    /// Catch-up ranges skipped (fingerprint unchanged).
    pub ranges_unchanged: u64,
    /// Ranges merged again because rows arrived in them after they were read (late rows).
    pub late_ranges_remerged: u64,
    /// Rows written by late-row jobs.
    pub late_rows_written: u64,
    /// Late-row candidate ranges found by scans.
    pub late_ranges_found: u64,
    /// Jobs committed.
    pub jobs: u64,
    /// Time spent in committed jobs (read, merge, write), seconds.
    pub busy_seconds: f64,
}

struct Source {
    target: crate::config::GathererTarget,
    client: Option<Client>,
    next_attempt: Instant,
    delay: Duration,
    rows: u64,
    /// Last markets/events fingerprint synced, per state table.
    state_fp: HashMap<&'static str, Fingerprint>,
    /// Late-row scan: arrival cursor and coverage.
    late: LateState,
    /// Late jobs found by the last scan, not yet committed.
    late_jobs: VecDeque<Job>,
    /// Where the arrival cursor goes when the last of `late_jobs` commits.
    late_upto: Option<i64>,
    /// When the next late scan is due.
    next_late_scan: Instant,
}

/// A failure inside a pass.
enum Failure {
    Gatherer(usize, postgres::Error),
    Production(postgres::Error),
    Data(String),
}

/// The deduplicator. See the module documentation.
pub struct Deduplicator {
    cfg: Config,
    sources: Vec<Source>,
    prod: Option<Client>,
    prod_next_attempt: Instant,
    prod_delay: Duration,
    planner: Option<Planner>,
    metrics: DedupMetrics,
    shared: Shared,
    totals: Totals,
    rows_per_range: f64,
    next_state_sync: Instant,
    last_probe: Instant,
    job_delay_until: Instant,
    job_delay: Duration,
}

impl std::fmt::Debug for Deduplicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deduplicator")
            .field("production", &self.cfg.production)
            .field("frontier", &self.planner.as_ref().map(Planner::frontier))
            .field("totals", &self.totals)
            .finish_non_exhaustive()
    }
}

/// µs since the Unix epoch.
#[must_use]
pub fn unix_now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

fn dur_us(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn connect(target: &DbTarget, app: &str) -> Result<Client, postgres::Error> {
    target.pg_config(app)?.connect(NoTls)
}

/// The 4-letter kind label of a failure.
fn kind_label(e: &postgres::Error) -> &'static str {
    match classify(e) {
        ErrorKind::Connection => "connection",
        ErrorKind::Timeout => "timeout",
        ErrorKind::Constraint => "constraint",
    }
}

impl Deduplicator {
    /// A deduplicator for `cfg`, registering its metrics in `registry`. Nothing connects
    /// until [`Deduplicator::run`] (or [`Deduplicator::step`]).
    ///
    /// # Errors
    ///
    /// [`DedupError::Metrics`] when the metric names are taken.
    pub fn new(cfg: Config, registry: &Registry) -> Result<Self, DedupError> {
        let metrics = DedupMetrics::register(registry)?;
        let now = Instant::now();
        let sources = cfg
            .gatherers
            .iter()
            .map(|t| {
                metrics
                    .gatherer_health
                    .with_label_values(&[&t.name])
                    .set(0.0);
                Source {
                    target: t.clone(),
                    client: None,
                    next_attempt: now,
                    delay: cfg.sync.retry_delay_min,
                    rows: 0,
                    state_fp: HashMap::new(),
                    late: LateState::default(),
                    late_jobs: VecDeque::new(),
                    late_upto: None,
                    next_late_scan: now,
                }
            })
            .collect();
        let shared = Shared {
            sync_lag: Some(metrics.sync_lag_seconds.clone()),
            ..Shared::default()
        };
        Ok(Self {
            prod_delay: cfg.sync.retry_delay_min,
            job_delay: cfg.sync.retry_delay_min,
            cfg,
            sources,
            prod: None,
            prod_next_attempt: now,
            planner: None,
            metrics,
            shared,
            totals: Totals::default(),
            rows_per_range: 0.0,
            next_state_sync: now,
            last_probe: now - Duration::from_secs(3600),
            job_delay_until: now,
        })
    }

    /// The handles the HTTP endpoints read.
    #[must_use]
    pub fn shared(&self) -> Shared {
        self.shared.clone()
    }

    /// Totals since start.
    #[must_use]
    pub fn totals(&self) -> Totals {
        self.totals
    }

    /// The frontier (end of the newest merged range), once production's state is loaded.
    #[must_use]
    pub fn frontier(&self) -> Option<i64> {
        self.planner.as_ref().map(Planner::frontier)
    }

    /// The planner's view of the gatherers, once production's state is loaded.
    #[must_use]
    pub fn planner(&self) -> Option<&Planner> {
        self.planner.as_ref()
    }

    /// Run until `stop` is set. A job in progress when it is set finishes (its transaction
    /// commits or rolls back) before this returns.
    ///
    /// # Errors
    ///
    /// [`DedupError::Migrate`] when production's migrations fail (fatal).
    pub fn run(&mut self, stop: &AtomicBool) -> Result<(), DedupError> {
        while !stop.load(Ordering::Acquire) {
            let worked = self.step()?;
            if !worked {
                std::thread::sleep(self.cfg.sync.poll_interval.min(Duration::from_millis(50)));
            }
        }
        info!("deduplicator: stopping; the last job committed");
        Ok(())
    }

    /// One pass: connect, probe, at most one job, state sync, metrics. Returns whether a job
    /// ran (so the caller need not sleep).
    ///
    /// # Errors
    ///
    /// [`DedupError::Migrate`] (fatal).
    pub fn step(&mut self) -> Result<bool, DedupError> {
        self.ensure_production()?;
        let now_i = Instant::now();
        if now_i.duration_since(self.last_probe) >= self.cfg.sync.poll_interval {
            self.last_probe = now_i;
            self.probe_gatherers();
        }
        self.apply_rechecks();
        if self.prod.is_some() && self.planner.is_some() && Instant::now() >= self.job_delay_until {
            for i in 0..self.sources.len() {
                if let Err(f) = self.late_scan(i) {
                    self.fail(f, "scanning for late rows");
                }
            }
        }
        let mut worked = false;
        if self.prod.is_some() && self.planner.is_some() && Instant::now() >= self.job_delay_until {
            if let Some(job) = self.next_job() {
                let started = Instant::now();
                match self.run_job(&job) {
                    Ok(()) => {
                        self.metrics
                            .job_duration
                            .observe(started.elapsed().as_secs_f64());
                        if let Some(p) = self.planner.as_mut() {
                            p.handle_done(&job);
                        }
                        self.totals.jobs += 1;
                        self.totals.busy_seconds += started.elapsed().as_secs_f64();
                        self.job_delay = self.cfg.sync.retry_delay_min;
                        worked = true;
                    }
                    Err(f) => self.fail(f, "running a range job"),
                }
            }
            if Instant::now() >= self.next_state_sync {
                self.next_state_sync = Instant::now() + self.cfg.sync.state_sync_interval;
                if let Err(f) = self.sync_state_tables() {
                    self.fail(f, "syncing markets and events");
                }
            }
        }
        self.publish();
        Ok(worked)
    }

    fn ranges_max(&self) -> usize {
        let by_rows = if self.rows_per_range > 0.0 {
            (self.cfg.sync.batch_rows_target as f64 / self.rows_per_range) as usize
        } else {
            self.cfg.sync.batch_ranges_max
        };
        by_rows.clamp(1, self.cfg.sync.batch_ranges_max)
    }

    fn next_job(&self) -> Option<Job> {
        let planner = self.planner.as_ref()?;
        let max = self.ranges_max();
        planner
            .poll_merge(unix_now_us(), max)
            .or_else(|| {
                self.sources
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| {
                        planner.gatherers().get(*i).map(|g| g.status) == Some(GathererStatus::Live)
                    })
                    .find_map(|(_, s)| s.late_jobs.front().cloned())
            })
            .or_else(|| planner.poll_catchup(max))
    }

    /// When due, ask live gatherer `i` which ranges it has read received rows since its
    /// arrival cursor ([`crate::late`]), and queue late jobs for them; with none, move the
    /// cursor right away.
    fn late_scan(&mut self, i: usize) -> Result<(), Failure> {
        let now = Instant::now();
        let Some(planner) = self.planner.as_ref() else {
            return Ok(());
        };
        let Some(g) = planner.gatherers().get(i) else {
            return Ok(());
        };
        let src = &self.sources[i];
        if g.status != GathererStatus::Live
            || !src.late_jobs.is_empty()
            || now < src.next_late_scan
            || src.client.is_none()
        {
            return Ok(());
        }
        let (Some(cursor), Some(watermark)) = (src.late.cursor, g.watermark) else {
            return Ok(());
        };
        let before = g.cursor;
        let width = planner.config().width_us;
        let Some((after, upto)) = scan_window(
            cursor,
            watermark,
            dur_us(self.cfg.sync.grace),
            dur_us(self.cfg.sync.late_scan_step),
        ) else {
            return Ok(());
        };
        let max = self.ranges_max();
        let src = &mut self.sources[i];
        src.next_late_scan = now + self.cfg.sync.late_scan_interval;
        let Some(client) = src.client.as_mut() else {
            return Ok(());
        };
        let mut starts: Vec<i64> = Vec::new();
        for spec in &SPECS {
            let sql = candidate_sql(spec, width, after, upto, before, src.late.coverage());
            let rows = client
                .query(sql.as_str(), &[])
                .map_err(|e| Failure::Gatherer(i, e))?;
            starts.extend(rows.iter().map(|r| r.get::<_, i64>(0)));
        }
        starts.sort_unstable();
        starts.dedup();
        if starts.is_empty() {
            let name = src.target.name.clone();
            let prod = self
                .prod
                .as_mut()
                .ok_or(Failure::Data("no production".into()))?;
            prod.execute(
                "UPDATE dedup_late_cursors SET received_ts = $2, updated_at = now() \
                 WHERE gatherer = $1 AND received_ts < $2",
                &[&name, &upto],
            )
            .map_err(Failure::Production)?;
            self.sources[i].late.advance(upto);
            return Ok(());
        }
        let found = starts.len() as u64;
        self.totals.late_ranges_found += found;
        self.metrics
            .late_ranges
            .with_label_values(&[&src.target.name])
            .inc_by(found);
        info!(
            "deduplicator: gatherer {}: {found} merged ranges received rows late (arrived in \
             ({after}, {upto}] µs, first range {} µs); merging them again",
            src.target.name, starts[0]
        );
        src.late_jobs = runs(&starts, width, max)
            .into_iter()
            .map(|(start, ranges)| Job {
                kind: JobKind::Late,
                start,
                ranges,
                width,
                sources: vec![i],
            })
            .collect();
        src.late_upto = Some(upto);
        Ok(())
    }

    fn fail(&mut self, f: Failure, doing: &str) {
        let now = unix_now_us();
        match f {
            Failure::Gatherer(i, e) => {
                let name = self.sources[i].target.name.clone();
                self.metrics
                    .errors
                    .with_label_values(&[&name, kind_label(&e)])
                    .inc();
                warn!("deduplicator: gatherer {name}: {doing}: {e}; reconnecting");
                self.sources[i].client = None;
                if let Some(p) = self.planner.as_mut() {
                    p.handle_probe(i, now, None);
                    p.handle_tick(now);
                }
            }
            Failure::Production(e) => {
                self.metrics
                    .errors
                    .with_label_values(&["production", kind_label(&e)])
                    .inc();
                warn!(
                    "deduplicator: production {}: {doing}: {e}; retrying in {:?}",
                    self.cfg.production.describe(),
                    self.job_delay
                );
                if self.prod.as_ref().is_none_or(Client::is_closed)
                    || classify(&e) == ErrorKind::Connection
                {
                    self.prod = None;
                    self.metrics.rds_connected.set(0);
                }
                self.job_delay_until = Instant::now() + self.job_delay;
                self.job_delay = (self.job_delay * 2).min(self.cfg.sync.retry_delay_max);
            }
            Failure::Data(msg) => {
                self.metrics
                    .errors
                    .with_label_values(&["production", "data"])
                    .inc();
                error!(
                    "deduplicator: {doing}: {msg}; retrying in {:?}",
                    self.job_delay
                );
                self.job_delay_until = Instant::now() + self.job_delay;
                self.job_delay = (self.job_delay * 2).min(self.cfg.sync.retry_delay_max);
            }
        }
    }

    fn ensure_production(&mut self) -> Result<(), DedupError> {
        if self.prod.as_ref().is_some_and(Client::is_closed) {
            warn!("deduplicator: production connection closed; reconnecting");
            self.prod = None;
            self.metrics.rds_connected.set(0);
        }
        if self.prod.is_some() || Instant::now() < self.prod_next_attempt {
            return Ok(());
        }
        let mut client = match connect(&self.cfg.production, "kalshi-deduplicator") {
            Ok(c) => c,
            Err(e) => {
                self.metrics
                    .errors
                    .with_label_values(&["production", kind_label(&e)])
                    .inc();
                warn!(
                    "deduplicator: cannot connect to production {}: {e}; retrying in {:?}",
                    self.cfg.production.describe(),
                    self.prod_delay
                );
                self.prod_next_attempt = Instant::now() + self.prod_delay;
                self.prod_delay = (self.prod_delay * 2).min(self.cfg.sync.retry_delay_max);
                return Ok(());
            }
        };
        if self.planner.is_none() && self.cfg.migrate {
            let report = migrate(&mut client, &MigrateOptions::production())?;
            if !report.applied.is_empty() {
                info!(
                    "deduplicator: applied {} production migrations",
                    report.applied.len()
                );
            }
        }
        let setup = prepare_stages(&mut client).and_then(|()| {
            if self.planner.is_none() {
                self.load_state(&mut client)
            } else {
                Ok(())
            }
        });
        match setup {
            Ok(()) => {
                info!(
                    "deduplicator: connected to production {}",
                    self.cfg.production.describe()
                );
                self.prod = Some(client);
                self.prod_delay = self.cfg.sync.retry_delay_min;
                self.metrics.rds_connected.set(1);
            }
            Err(e) => {
                self.metrics
                    .errors
                    .with_label_values(&["production", kind_label(&e)])
                    .inc();
                warn!("deduplicator: production setup failed: {e}; retrying");
                self.prod_next_attempt = Instant::now() + self.prod_delay;
                self.prod_delay = (self.prod_delay * 2).min(self.cfg.sync.retry_delay_max);
            }
        }
        Ok(())
    }

    /// Load the frontier and cursors from `dedup_watermarks`; on a fresh database, write the
    /// starting point for every configured gatherer.
    fn load_state(&mut self, client: &mut Client) -> Result<(), postgres::Error> {
        let tables: Vec<&str> = SPECS.iter().map(TableSpec::name).collect();
        let rows = client.query(
            "SELECT gatherer, min(watermark_ts) FROM dedup_watermarks \
             WHERE table_name = ANY($1) GROUP BY gatherer",
            &[&tables],
        )?;
        let mut stored: HashMap<String, i64> = HashMap::new();
        for r in rows {
            stored.insert(r.get(0), r.get(1));
        }
        let width = dur_us(self.cfg.sync.range_width).max(1);
        let frontier = match stored.get(MERGED_SOURCE) {
            Some(f) => *f,
            None => {
                let start = self
                    .cfg
                    .sync
                    .start_us
                    .unwrap_or_else(|| unix_now_us() - dur_us(self.cfg.sync.start_lookback));
                start.div_euclid(width) * width
            }
        };
        let mut names: Vec<String> = self.sources.iter().map(|s| s.target.name.clone()).collect();
        names.push(MERGED_SOURCE.to_owned());
        // New gatherers (and a fresh database) start at the frontier; existing rows stay.
        client.execute(
            "INSERT INTO dedup_watermarks (gatherer, table_name, watermark_ts) \
             SELECT g, t, $3 FROM unnest($1::text[]) g, unnest($2::text[]) t \
             ON CONFLICT (gatherer, table_name) DO NOTHING",
            &[&names, &tables, &frontier],
        )?;
        let gatherers = self
            .sources
            .iter()
            .map(|s| (s.target.name.clone(), stored.get(&s.target.name).copied()))
            .collect();
        let plan = PlanConfig {
            width_us: width,
            grace_us: dur_us(self.cfg.sync.grace),
            down_after_us: dur_us(self.cfg.sync.down_after),
            late_window_us: dur_us(self.cfg.sync.late_window),
        };
        // Late-row cursors: a fresh production starts at the frontier (nothing below it was
        // merged); a production merged by an older build re-scans the late window once.
        let fresh = !stored.contains_key(MERGED_SOURCE);
        let late_start = if fresh {
            frontier
        } else {
            frontier.saturating_sub(dur_us(self.cfg.sync.late_window))
        };
        let gatherer_names: Vec<String> =
            self.sources.iter().map(|s| s.target.name.clone()).collect();
        client.execute(
            "INSERT INTO dedup_late_cursors (gatherer, received_ts) \
             SELECT g, $2 FROM unnest($1::text[]) g ON CONFLICT (gatherer) DO NOTHING",
            &[&gatherer_names, &late_start],
        )?;
        let mut late: HashMap<String, i64> = HashMap::new();
        for r in client.query("SELECT gatherer, received_ts FROM dedup_late_cursors", &[])? {
            late.insert(r.get(0), r.get(1));
        }
        for src in &mut self.sources {
            src.late = LateState::new(late.get(&src.target.name).copied());
            src.late_jobs.clear();
            src.late_upto = None;
        }
        let planner = Planner::new(plan, frontier, gatherers);
        info!(
            "deduplicator: production state loaded: frontier {} µs, cursors {:?}",
            planner.frontier(),
            planner
                .gatherers()
                .iter()
                .map(|g| (g.name.as_str(), g.cursor))
                .collect::<Vec<_>>()
        );
        self.planner = Some(planner);
        Ok(())
    }

    fn probe_gatherers(&mut self) {
        let now = unix_now_us();
        for i in 0..self.sources.len() {
            let result = self.probe(i);
            if let Some(p) = self.planner.as_mut() {
                p.handle_probe(i, now, result);
            }
        }
        if let Some(p) = self.planner.as_mut() {
            for t in p.handle_tick(now) {
                let name = &p.gatherers()[t.gatherer].name;
                match t.to {
                    GathererStatus::Live => info!(
                        "deduplicator: gatherer {name} is live again (was {}){}",
                        t.from.as_str(),
                        t.rewound_to
                            .map(|c| format!("; re-checking its ranges from {c} µs"))
                            .unwrap_or_default()
                    ),
                    GathererStatus::Waiting => warn!(
                        "deduplicator: gatherer {name} is unreachable; ranges wait for it for up \
                         to {:?}",
                        self.cfg.sync.down_after
                    ),
                    GathererStatus::Down => error!(
                        "deduplicator: gatherer {name} is DOWN (unreachable or its watermark \
                         stopped); merging without it, it is caught up when it returns"
                    ),
                }
            }
        }
    }

    /// Probe one gatherer: `Some(watermark)` when reachable.
    fn probe(&mut self, i: usize) -> Option<Option<i64>> {
        let src = &mut self.sources[i];
        if src.client.as_ref().is_some_and(Client::is_closed) {
            src.client = None;
        }
        if src.client.is_none() {
            if Instant::now() < src.next_attempt {
                return None;
            }
            match connect(&src.target.db, "kalshi-deduplicator") {
                Ok(c) => {
                    info!(
                        "deduplicator: connected to gatherer {} ({})",
                        src.target.name,
                        src.target.db.describe()
                    );
                    src.client = Some(c);
                    src.delay = self.cfg.sync.retry_delay_min;
                }
                Err(e) => {
                    self.metrics
                        .errors
                        .with_label_values(&[&src.target.name, kind_label(&e)])
                        .inc();
                    log::debug!("deduplicator: gatherer {}: connect: {e}", src.target.name);
                    src.next_attempt = Instant::now() + src.delay;
                    src.delay = (src.delay * 2).min(self.cfg.sync.retry_delay_max);
                    return None;
                }
            }
        }
        let client = src.client.as_mut()?;
        match client.query_one(
            "SELECT max(batch_id) FROM writer_batches WHERE writer_id = $1",
            &[&src.target.writer_id],
        ) {
            Ok(row) => Some(row.get::<_, Option<i64>>(0)),
            Err(e) => {
                self.metrics
                    .errors
                    .with_label_values(&[&src.target.name, kind_label(&e)])
                    .inc();
                warn!(
                    "deduplicator: gatherer {}: reading its watermark: {e}",
                    src.target.name
                );
                src.client = None;
                src.next_attempt = Instant::now() + src.delay;
                None
            }
        }
    }

    fn apply_rechecks(&mut self) {
        let pending: Vec<_> = std::mem::take(&mut *self.shared.rechecks.lock());
        let Some(p) = self.planner.as_mut() else {
            if !pending.is_empty() {
                self.shared.rechecks.lock().extend(pending);
            }
            return;
        };
        for (who, from) in pending {
            for i in 0..p.gatherers().len() {
                if who.as_ref().is_none_or(|w| *w == p.gatherers()[i].name) {
                    p.rewind(i, from);
                    info!(
                        "deduplicator: admin re-check of gatherer {} from {from} µs",
                        p.gatherers()[i].name
                    );
                }
            }
        }
    }

    /// COPY one table's rows of `[lo, hi)` out of gatherer `i`.
    fn read_gatherer(
        &mut self,
        i: usize,
        spec: &TableSpec,
        lo: i64,
        hi: i64,
    ) -> Result<Vec<u8>, Failure> {
        let Some(client) = self.sources[i].client.as_mut() else {
            return Err(Failure::Data(format!(
                "gatherer {} is not connected",
                self.sources[i].target.name
            )));
        };
        copy_out(client, &spec.copy_out_sql(lo, hi, true)).map_err(|e| Failure::Gatherer(i, e))
    }

    fn run_job(&mut self, job: &Job) -> Result<(), Failure> {
        let (lo, hi) = (job.start, job.end());
        let tol = dur_us(self.cfg.sync.lifecycle_tolerance);
        let names: Vec<String> = job
            .sources
            .iter()
            .map(|&s| self.sources[s].target.name.clone())
            .collect();
        // What the reads below are sure to see (the coverage recorded after the commit): every
        // row that arrived at or before the last probed watermark minus grace.
        let grace = dur_us(self.cfg.sync.grace);
        let covered: Vec<Option<i64>> = job
            .sources
            .iter()
            .map(|&s| {
                self.planner
                    .as_ref()
                    .and_then(|p| p.gatherers().get(s))
                    .and_then(|g| g.watermark)
                    .map(|w| w.saturating_sub(grace))
            })
            .collect();
        // 1. Read every table from every source (lifecycle rows from `tol` earlier: copies of
        //    an event just before the job take part in the matching).
        let mut streams: Vec<Vec<Vec<u8>>> = Vec::with_capacity(SPECS.len());
        for spec in &SPECS {
            let read_lo = if spec.table == Table::MarketLifecycle {
                lo.saturating_sub(tol)
            } else {
                lo
            };
            let mut per_source = Vec::with_capacity(job.sources.len());
            for &s in &job.sources {
                per_source.push(self.read_gatherer(s, spec, read_lo, hi)?);
            }
            streams.push(per_source);
        }
        // 2. Stored fingerprints (catch-up, late) and production's base rows of changed tables.
        let catchup = job.kind != JobKind::Merge;
        let stored = if catchup {
            let name = self.sources[job.sources[0]].target.name.clone();
            let prod = self
                .prod
                .as_mut()
                .ok_or(Failure::Data("no production".into()))?;
            load_fingerprints(prod, &name, lo, hi).map_err(Failure::Production)?
        } else {
            HashMap::new()
        };
        let mut bodies: Vec<Vec<u8>> = vec![Vec::new(); SPECS.len()];
        let mut fps: Vec<FpRow> = Vec::new();
        let mut rows_in = vec![vec![0u64; SPECS.len()]; job.sources.len()];
        let mut changed_ranges = vec![false; job.ranges];
        let mut total_in = 0u64;
        let mut life_fuzzy = 0u64;
        for (t, spec) in SPECS.iter().enumerate() {
            let fields = spec.columns.len();
            let multiset = spec.kind == MergeKind::Multiset;
            let lifecycle = spec.table == Table::MarketLifecycle;
            let mut tuples = Vec::with_capacity(job.sources.len());
            let mut lookback = Vec::with_capacity(job.sources.len());
            for (si, stream) in streams[t].iter().enumerate() {
                let body = parse_stream(stream).map_err(|e| Failure::Data(e.to_string()))?;
                let mut parsed = parse_tuples(body, fields, spec.key_fields, multiset)
                    .map_err(|e| Failure::Data(format!("{}: {e}", spec.name())))?;
                let before: Vec<TupleRef<'_>> = if lifecycle {
                    let (b, inside): (Vec<_>, Vec<_>) =
                        parsed.into_iter().partition(|x| x.time < lo);
                    parsed = inside;
                    b
                } else {
                    Vec::new()
                };
                rows_in[si][t] = parsed.len() as u64;
                total_in += parsed.len() as u64;
                let (split, outside) = split_ranges(&parsed, lo, job.width, job.ranges);
                if outside > 0 {
                    return Err(Failure::Data(format!(
                        "{}: {outside} rows outside the requested range",
                        spec.name()
                    )));
                }
                tuples.push(split);
                lookback.push(before);
            }
            // Which ranges of this table need merging.
            let mut need = vec![!catchup; job.ranges];
            let mut source_fps = vec![vec![Fingerprint::default(); job.ranges]; job.sources.len()];
            for (si, split) in tuples.iter().enumerate() {
                for (r, rows) in split.iter().enumerate() {
                    source_fps[si][r] = Fingerprint::of_tuples(rows);
                }
            }
            if catchup {
                for (r, n) in need.iter_mut().enumerate() {
                    let start = lo + r as i64 * job.width;
                    let old = stored
                        .get(&(spec.name(), start))
                        .copied()
                        .unwrap_or_default();
                    *n = old != source_fps[0][r];
                }
            }
            if !need.iter().any(|n| *n) {
                continue;
            }
            // A new range without lifecycle rows from any source has nothing to match.
            if lifecycle && !catchup && tuples.iter().all(|s| s.iter().all(Vec::is_empty)) {
                continue;
            }
            // Production's rows of this table as the base of a catch-up diff; for lifecycle
            // rows always, from 2·tol before to tol after the job (the matching's reach).
            let (base_lo, base_hi) = if lifecycle {
                (lo.saturating_sub(2 * tol), hi.saturating_add(tol))
            } else {
                (lo, hi)
            };
            let base_stream = if catchup || lifecycle {
                let prod = self
                    .prod
                    .as_mut()
                    .ok_or(Failure::Data("no production".into()))?;
                Some(
                    copy_out(prod, &spec.copy_out_sql(base_lo, base_hi, false))
                        .map_err(Failure::Production)?,
                )
            } else {
                None
            };
            let base_all = match &base_stream {
                Some(s) => {
                    let body = parse_stream(s).map_err(|e| Failure::Data(e.to_string()))?;
                    parse_tuples(body, fields, spec.key_fields, multiset)
                        .map_err(|e| Failure::Data(format!("production {}: {e}", spec.name())))?
                }
                None => Vec::new(),
            };
            let base_split = base_stream
                .as_ref()
                .map(|_| split_ranges(&base_all, lo, job.width, job.ranges).0);
            if lifecycle {
                let copies: Vec<Vec<LifeCopy<'_>>> = (0..job.sources.len())
                    .map(|si| {
                        let mut v: Vec<LifeCopy<'_>> = lookback[si]
                            .iter()
                            .map(|x| LifeCopy {
                                tuple: *x,
                                eligible: false,
                            })
                            .collect();
                        for (r, rows) in tuples[si].iter().enumerate() {
                            v.extend(rows.iter().map(|x| LifeCopy {
                                tuple: *x,
                                eligible: need[r],
                            }));
                        }
                        v
                    })
                    .collect();
                let from = bodies[t].len();
                let m = merge_lifecycle(&copies, &base_all, tol, &mut bodies[t]);
                life_fuzzy += m.matched_fuzzy;
                let emitted = parse_tuples(&bodies[t][from..], fields, spec.key_fields, true)
                    .map_err(|e| Failure::Data(format!("merged {}: {e}", spec.name())))?;
                let emitted_split = split_ranges(&emitted, lo, job.width, job.ranges).0;
                for r in 0..job.ranges {
                    if !need[r] {
                        continue;
                    }
                    changed_ranges[r] = true;
                    let start = lo + r as i64 * job.width;
                    let mut merged = Fingerprint::default();
                    let base_r = base_split.as_ref().map_or(&[][..], |b| b[r].as_slice());
                    for x in base_r.iter().chain(emitted_split[r].iter()) {
                        merged.add_keyed(x.key(), u32::try_from(last_i32(x)).unwrap_or(0));
                    }
                    let per: Vec<(&str, Fingerprint)> = names
                        .iter()
                        .enumerate()
                        .map(|(si, n)| (n.as_str(), source_fps[si][r]))
                        .collect();
                    push_fps(&mut fps, spec, start, job.width, &per, catchup, merged);
                }
                continue;
            }
            for r in 0..job.ranges {
                if !need[r] {
                    continue;
                }
                changed_ranges[r] = true;
                let start = lo + r as i64 * job.width;
                let sources: Vec<&[TupleRef<'_>]> =
                    tuples.iter().map(|s| s[r].as_slice()).collect();
                let base = base_split.as_ref().map(|b| b[r].as_slice());
                let m = merge_range(spec.kind, &sources, base, &mut bodies[t]);
                let per: Vec<(&str, Fingerprint)> = names
                    .iter()
                    .enumerate()
                    .map(|(si, n)| (n.as_str(), source_fps[si][r]))
                    .collect();
                push_fps(&mut fps, spec, start, job.width, &per, catchup, m.merged);
            }
        }
        // 4. One production transaction.
        let mut cursor_names: Vec<String> = if job.kind == JobKind::Late {
            Vec::new()
        } else {
            job.sources
                .iter()
                .map(|&s| self.sources[s].target.name.clone())
                .collect()
        };
        if job.kind == JobKind::Merge {
            cursor_names.push(MERGED_SOURCE.to_owned());
        }
        // The last late job of a scan moves that gatherer's arrival cursor with it.
        let late_cursor = match job.kind {
            JobKind::Late => {
                let src = &self.sources[job.sources[0]];
                match (src.late_jobs.len(), src.late_upto) {
                    (1, Some(upto)) => Some((src.target.name.clone(), upto)),
                    _ => None,
                }
            }
            _ => None,
        };
        let prod = self
            .prod
            .as_mut()
            .ok_or(Failure::Data("no production".into()))?;
        // New ranges normally have no rows in production yet: COPY them straight into the
        // tables (the unique keys still check). Should production hold some anyway (its dedup
        // state was reset, or rows were loaded by hand), the transaction fails on a key and is
        // redone through the staging tables, which skip what exists.
        let direct = job.kind == JobKind::Merge;
        let late_ref = late_cursor.as_ref().map(|(n, u)| (n.as_str(), *u));
        let written = match commit_job(prod, &bodies, &fps, &cursor_names, hi, direct, late_ref) {
            Err(e) if direct && e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION) => {
                info!(
                    "deduplicator: production already has rows in [{lo}, {hi}); merging them \
                     through the staging tables"
                );
                commit_job(prod, &bodies, &fps, &cursor_names, hi, false, late_ref)
            }
            other => other,
        }
        .map_err(Failure::Production)?;
        // Bookkeeping after the commit.
        for (si, &s) in job.sources.iter().enumerate() {
            if let Some(upto) = covered[si] {
                self.sources[s].late.record(Coverage { lo, hi, upto });
            }
        }
        if job.kind == JobKind::Late {
            let src = &mut self.sources[job.sources[0]];
            src.late_jobs.pop_front();
            if let Some((_, upto)) = late_cursor {
                src.late.advance(upto);
                src.late_upto = None;
            }
        }
        if life_fuzzy > 0 {
            self.metrics.lifecycle_matched.inc_by(life_fuzzy);
        }
        let written_total: u64 = written.iter().sum();
        for (t, spec) in SPECS.iter().enumerate() {
            if written[t] > 0 {
                self.metrics
                    .rows_written
                    .with_label_values(&[spec.name()])
                    .inc_by(written[t]);
            }
            for (si, &s) in job.sources.iter().enumerate() {
                if rows_in[si][t] > 0 {
                    self.metrics
                        .rows_read
                        .with_label_values(&[&self.sources[s].target.name, spec.name()])
                        .inc_by(rows_in[si][t]);
                    self.sources[s].rows += rows_in[si][t];
                }
            }
        }
        let per_range = total_in as f64 / job.ranges as f64;
        self.rows_per_range = if self.rows_per_range == 0.0 {
            per_range
        } else {
            0.7 * self.rows_per_range + 0.3 * per_range
        };
        match job.kind {
            JobKind::Merge => {
                self.totals.merge_rows_read += total_in;
                self.totals.merge_rows_written += written_total;
                self.totals.ranges_merged += job.ranges as u64;
                self.metrics.ranges_merged.inc_by(job.ranges as u64);
                if self.totals.merge_rows_read > 0 {
                    self.metrics.duplicate_ratio.set(
                        1.0 - self.totals.merge_rows_written as f64
                            / self.totals.merge_rows_read as f64,
                    );
                }
            }
            JobKind::Late => {
                let changed = changed_ranges.iter().filter(|c| **c).count() as u64;
                let unchanged = job.ranges as u64 - changed;
                let name = self.sources[job.sources[0]].target.name.clone();
                self.totals.late_rows_written += written_total;
                self.totals.late_ranges_remerged += changed;
                self.totals.ranges_unchanged += unchanged;
                self.metrics.ranges_unchanged.inc_by(unchanged);
                self.metrics
                    .late_ranges_remerged
                    .with_label_values(&[&name])
                    .inc_by(changed);
                self.metrics
                    .late_rows_written
                    .with_label_values(&[&name])
                    .inc_by(written_total);
                if changed > 0 || written_total > 0 {
                    info!(
                        "deduplicator: late rows of gatherer {name} in [{lo}, {hi}): {changed} \
                         ranges changed, {unchanged} unchanged, {written_total} rows added"
                    );
                }
            }
            JobKind::Catchup => {
                let changed = changed_ranges.iter().filter(|c| **c).count() as u64;
                let unchanged = job.ranges as u64 - changed;
                self.totals.catchup_rows_written += written_total;
                self.totals.ranges_remerged += changed;
                self.totals.ranges_unchanged += unchanged;
                self.metrics.ranges_remerged.inc_by(changed);
                self.metrics.ranges_unchanged.inc_by(unchanged);
                if changed > 0 || written_total > 0 {
                    info!(
                        "deduplicator: catch-up of gatherer {} over [{lo}, {hi}): {changed} ranges \
                         changed, {unchanged} unchanged, {written_total} rows added",
                        self.sources[job.sources[0]].target.name
                    );
                }
            }
        }
        Ok(())
    }

    /// Upsert `markets` and `events` from every live gatherer whose copy changed since the
    /// last sync (newest `updated_ts` wins).
    fn sync_state_tables(&mut self) -> Result<(), Failure> {
        let live: Vec<usize> = match &self.planner {
            Some(p) => (0..self.sources.len())
                .filter(|&i| p.gatherers()[i].status == GathererStatus::Live)
                .collect(),
            None => return Ok(()),
        };
        for i in live {
            for table in [Table::Markets, Table::Events] {
                let cols = table.columns().join(", ");
                let sql = format!(
                    "COPY (SELECT {cols} FROM {}) TO STDOUT (FORMAT binary)",
                    table.name()
                );
                let Some(client) = self.sources[i].client.as_mut() else {
                    continue;
                };
                let stream = copy_out(client, &sql).map_err(|e| Failure::Gatherer(i, e))?;
                let body = parse_stream(&stream).map_err(|e| Failure::Data(e.to_string()))?;
                let ranges = kalshi_writer::copy::tuple_ranges(body)
                    .map_err(|e| Failure::Data(format!("{}: {e}", table.name())))?;
                let mut fp = Fingerprint::default();
                for r in &ranges {
                    fp.add(&body[r.clone()]);
                }
                if self.sources[i].state_fp.get(table.name()) == Some(&fp) {
                    continue;
                }
                let prod = self
                    .prod
                    .as_mut()
                    .ok_or(Failure::Data("no production".into()))?;
                let n = upsert_state(prod, table, body).map_err(Failure::Production)?;
                self.metrics
                    .state_rows_written
                    .with_label_values(&[table.name()])
                    .inc_by(n);
                self.sources[i].state_fp.insert(table.name(), fp);
            }
        }
        Ok(())
    }

    fn publish(&mut self) {
        let now = unix_now_us();
        let mut h = HealthSnapshot {
            production: ProductionHealth {
                reachable: self.prod.is_some() && self.planner.is_some(),
            },
            ..HealthSnapshot::default()
        };
        if let Some(p) = &self.planner {
            let lag = (now - p.frontier()) as f64 / 1e6;
            self.metrics.sync_lag_seconds.set(lag);
            self.metrics.frontier_seconds.set(p.frontier() as f64 / 1e6);
            h.frontier_ts = Some(p.frontier());
            h.sync_lag_seconds = Some(lag);
            for (i, g) in p.gatherers().iter().enumerate() {
                let live = g.status == GathererStatus::Live;
                self.metrics
                    .gatherer_health
                    .with_label_values(&[&g.name])
                    .set(if live { 1.0 } else { 0.0 });
                let lag_g = g.watermark.map(|w| (now - w) as f64 / 1e6);
                if let Some(l) = lag_g {
                    self.metrics
                        .gatherer_lag_seconds
                        .with_label_values(&[&g.name])
                        .set(l);
                }
                h.gatherers.insert(
                    g.name.clone(),
                    GathererHealth {
                        reachable: g.reachable,
                        state: g.status.as_str().to_owned(),
                        watermark_ts: g.watermark,
                        lag_seconds: lag_g,
                        cursor_ts: g.cursor,
                        rows: self.sources[i].rows,
                    },
                );
            }
            if lag > self.cfg.http.health_lag_max.as_secs_f64() {
                h.problems.push(format!(
                    "sync lag {lag:.1} s exceeds {} s",
                    self.cfg.http.health_lag_max.as_secs()
                ));
            }
            if !p
                .gatherers()
                .iter()
                .any(|g| g.status == GathererStatus::Live)
            {
                h.problems.push("no gatherer is live".to_owned());
            }
        } else {
            for s in &self.sources {
                h.gatherers.insert(
                    s.target.name.clone(),
                    GathererHealth {
                        state: "unknown".to_owned(),
                        ..GathererHealth::default()
                    },
                );
            }
        }
        if !h.production.reachable {
            h.problems.push("production is unreachable".to_owned());
        }
        h.healthy = h.problems.is_empty();
        h.status = if h.healthy { "ok" } else { "unhealthy" }.to_owned();
        *self.shared.health.lock() = h;
    }
}

/// One `dedup_ranges` row to upsert.
struct FpRow {
    table: &'static str,
    start: i64,
    end: i64,
    source: String,
    fp: Fingerprint,
}

/// The fingerprint rows of one merged range: each source's (empty ones only when
/// `keep_empty`, i.e. for catch-up and late jobs, which compare against them) and the merged
/// result's.
fn push_fps(
    fps: &mut Vec<FpRow>,
    spec: &TableSpec,
    start: i64,
    width: i64,
    sources: &[(&str, Fingerprint)],
    keep_empty: bool,
    merged: Fingerprint,
) {
    for (name, fp) in sources {
        if fp.count > 0 || keep_empty {
            fps.push(FpRow {
                table: spec.name(),
                start,
                end: start + width - 1,
                source: (*name).to_owned(),
                fp: *fp,
            });
        }
    }
    if merged.count > 0 {
        fps.push(FpRow {
            table: spec.name(),
            start,
            end: start + width - 1,
            source: MERGED_SOURCE.to_owned(),
            fp: merged,
        });
    }
}

fn copy_out(client: &mut Client, sql: &str) -> Result<Vec<u8>, postgres::Error> {
    let mut reader = client.copy_out(sql)?;
    let mut out = Vec::new();
    if let Err(e) = reader.read_to_end(&mut out) {
        // The client error travels inside the io::Error.
        let inner = e
            .into_inner()
            .and_then(|i| i.downcast::<postgres::Error>().ok());
        return match inner {
            Some(pg) => Err(*pg),
            None => {
                // Not a database error: report through a closed-connection probe.
                drop(reader);
                client.simple_query("SELECT 1").map(|_| out)
            }
        };
    }
    Ok(out)
}

fn stage_name(table: Table) -> String {
    format!("dedup_stage_{}", table.name())
}

/// Create the session's temporary staging tables (once per connection).
fn prepare_stages(client: &mut Client) -> Result<(), postgres::Error> {
    let mut sql = String::new();
    for spec in &SPECS {
        sql.push_str(&format!(
            "CREATE TEMP TABLE IF NOT EXISTS {} ON COMMIT DELETE ROWS AS \
             SELECT {} FROM {} WITH NO DATA;",
            stage_name(spec.table),
            spec.column_list(),
            spec.name()
        ));
    }
    for table in [Table::Markets, Table::Events] {
        sql.push_str(&format!(
            "CREATE TEMP TABLE IF NOT EXISTS {} ON COMMIT DELETE ROWS AS \
             SELECT {} FROM {} WITH NO DATA;",
            stage_name(table),
            table.columns().join(", "),
            table.name()
        ));
    }
    client.batch_execute(&sql)
}

fn send_copy(
    tx: &mut postgres::Transaction<'_>,
    sql: &str,
    body: &[u8],
) -> Result<(), postgres::Error> {
    let mut w = tx.copy_in(sql)?;
    let mut result = w.write_all(COPY_HEADER);
    for chunk in body.chunks(256 << 10) {
        if result.is_err() {
            break;
        }
        result = w.write_all(chunk);
    }
    if result.is_ok() {
        result = w.write_all(COPY_TRAILER);
    }
    if let Err(e) = result
        && let Some(pg) = e
            .into_inner()
            .and_then(|i| i.downcast::<postgres::Error>().ok())
    {
        return Err(*pg);
    }
    w.finish()?;
    Ok(())
}

/// The production transaction of one job. Returns rows written per table.
fn commit_job(
    client: &mut Client,
    bodies: &[Vec<u8>],
    fps: &[FpRow],
    cursor_names: &[String],
    cursor: i64,
    direct: bool,
    late_cursor: Option<(&str, i64)>,
) -> Result<Vec<u64>, postgres::Error> {
    let mut tx = client.transaction()?;
    let mut written = vec![0u64; SPECS.len()];
    for (t, spec) in SPECS.iter().enumerate() {
        if bodies[t].is_empty() {
            continue;
        }
        // Trades are checked against trade_ids stored at other times, and the gap ledger is
        // upserted: both always go through their staging table.
        if direct
            && matches!(
                spec.table,
                Table::OrderbookDeltas
                    | Table::Tickers
                    | Table::MarketLifecycle
                    | Table::OrderbookSnapshots
            )
        {
            send_copy(
                &mut tx,
                &format!(
                    "COPY {} ({}) FROM STDIN (FORMAT binary)",
                    spec.name(),
                    spec.column_list()
                ),
                &bodies[t],
            )?;
            written[t] = bodies_rows(&bodies[t]);
            continue;
        }
        let stage = stage_name(spec.table);
        send_copy(
            &mut tx,
            &format!(
                "COPY {stage} ({}) FROM STDIN (FORMAT binary)",
                spec.column_list()
            ),
            &bodies[t],
        )?;
        // The staging table empties itself at COMMIT (ON COMMIT DELETE ROWS); each is used once
        // per transaction.
        written[t] = tx.execute(spec.merge_sql(&stage).as_str(), &[])?;
    }
    if !fps.is_empty() {
        let tables: Vec<&str> = fps.iter().map(|f| f.table).collect();
        let starts: Vec<i64> = fps.iter().map(|f| f.start).collect();
        let ends: Vec<i64> = fps.iter().map(|f| f.end).collect();
        let sources: Vec<&str> = fps.iter().map(|f| f.source.as_str()).collect();
        let counts: Vec<i64> = fps
            .iter()
            .map(|f| i64::try_from(f.fp.count).unwrap_or(i64::MAX))
            .collect();
        let hashes: Vec<Vec<u8>> = fps.iter().map(|f| f.fp.hash_bytes().to_vec()).collect();
        tx.execute(
            "INSERT INTO dedup_ranges (table_name, range_start, range_end, source, row_count, fingerprint) \
             SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::text[], $5::int8[], $6::bytea[]) \
             ON CONFLICT (table_name, range_start, source) DO UPDATE SET \
             range_end = EXCLUDED.range_end, row_count = EXCLUDED.row_count, \
             fingerprint = EXCLUDED.fingerprint, merged_at = now()",
            &[&tables, &starts, &ends, &sources, &counts, &hashes],
        )?;
    }
    let tables: Vec<&str> = SPECS.iter().map(TableSpec::name).collect();
    tx.execute(
        "INSERT INTO dedup_watermarks (gatherer, table_name, watermark_ts) \
         SELECT g, t, $3 FROM unnest($1::text[]) g, unnest($2::text[]) t \
         ON CONFLICT (gatherer, table_name) DO UPDATE SET \
         watermark_ts = EXCLUDED.watermark_ts, updated_at = now()",
        &[&cursor_names, &tables, &cursor],
    )?;
    if let Some((gatherer, received_ts)) = late_cursor {
        tx.execute(
            "INSERT INTO dedup_late_cursors (gatherer, received_ts) VALUES ($1, $2) \
             ON CONFLICT (gatherer) DO UPDATE SET received_ts = \
             greatest(dedup_late_cursors.received_ts, EXCLUDED.received_ts), updated_at = now()",
            &[&gatherer, &received_ts],
        )?;
    }
    tx.commit()?;
    Ok(written)
}

/// Tuples in a COPY body (the merge produced it, so it parses).
fn bodies_rows(body: &[u8]) -> u64 {
    kalshi_writer::copy::tuple_ranges(body).map_or(0, |r| r.len() as u64)
}

/// Stored fingerprints of `source` for ranges starting in `[lo, hi)`, by (table, start).
fn load_fingerprints(
    client: &mut Client,
    source: &str,
    lo: i64,
    hi: i64,
) -> Result<HashMap<(&'static str, i64), Fingerprint>, postgres::Error> {
    let rows = client.query(
        "SELECT table_name, range_start, row_count, fingerprint FROM dedup_ranges \
         WHERE source = $1 AND range_start >= $2 AND range_start < $3",
        &[&source, &lo, &hi],
    )?;
    let mut out = HashMap::new();
    for r in rows {
        let table: String = r.get(0);
        let Some(spec) = SPECS.iter().find(|s| s.name() == table) else {
            continue;
        };
        let bytes: Vec<u8> = r.get(3);
        if let Some(fp) = Fingerprint::from_stored(r.get(2), &bytes) {
            out.insert((spec.name(), r.get::<_, i64>(1)), fp);
        }
    }
    Ok(out)
}

/// Upsert a state table's rows (a COPY body) into production: newest `updated_ts` wins.
fn upsert_state(client: &mut Client, table: Table, body: &[u8]) -> Result<u64, postgres::Error> {
    let Some(key) = table.upsert_key() else {
        return Ok(0);
    };
    let cols = table.columns().join(", ");
    let stage = stage_name(table);
    let set = table
        .columns()
        .iter()
        .filter(|c| **c != key)
        .map(|c| format!("{c} = EXCLUDED.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut tx = client.transaction()?;
    send_copy(
        &mut tx,
        &format!("COPY {stage} ({cols}) FROM STDIN (FORMAT binary)"),
        body,
    )?;
    let n = tx.execute(
        format!(
            "INSERT INTO {t} ({cols}) SELECT DISTINCT ON ({key}) {cols} FROM {stage} \
             ORDER BY {key}, updated_ts DESC \
             ON CONFLICT ({key}) DO UPDATE SET {set} WHERE {t}.updated_ts < EXCLUDED.updated_ts",
            t = table.name()
        )
        .as_str(),
        &[],
    )?;
    tx.commit()?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The lag is measured at read time: a service loop blocked in a job (a held lock in
    // production) must not freeze it.
    #[test]
    fn lag_grows_while_the_loop_is_blocked() {
        let gauge = prometheus::Gauge::new("lag", "lag").unwrap();
        let shared = Shared {
            sync_lag: Some(gauge.clone()),
            ..Shared::default()
        };
        {
            let mut h = shared.health.lock();
            h.frontier_ts = Some(1_000_000_000);
            h.sync_lag_seconds = Some(1.0);
            h.healthy = true;
            h.status = "ok".to_owned();
        }
        let h = shared.health_at(1_000_000_000 + 5_000_000, 30.0);
        assert!(h.healthy);
        assert_eq!(h.sync_lag_seconds, Some(5.0));
        assert_eq!(gauge.get(), 5.0);

        let h = shared.health_at(1_000_000_000 + 45_500_000, 30.0);
        assert!(!h.healthy);
        assert_eq!(h.status, "unhealthy");
        assert_eq!(h.sync_lag_seconds, Some(45.5));
        assert_eq!(gauge.get(), 45.5);
        assert_eq!(h.problems, vec!["sync lag 45.5 s exceeds 30 s".to_owned()]);
        // The stored snapshot is not changed by reading it.
        assert!(shared.health.lock().healthy);

        // Before production's state is loaded there is no frontier and no lag.
        let empty = Shared::default();
        assert_eq!(empty.health_at(5, 30.0).sync_lag_seconds, None);
    }
}
