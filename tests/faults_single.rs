//! Single-gatherer fault tests (issue 8): the runbook faults that concern one gatherer host —
//! its local database, its disks, its memory — injected on a rig of one `kalshi-gatherer`, its
//! own PostgreSQL and `kalshi-sim` (see `faults/single.rs`), which is far cheaper than the whole
//! platform of `faults_runbook.rs`. Each test injects one fault, checks the signal the runbook
//! names (the metric and its labels; the alert rule with `promtool test rules` over the
//! recorded series, time-dilated 15×), lifts the fault, measures the recovery, and ends with the
//! truth check of the local database against the simulator's truth log (`kalshi-verify`): every
//! trade present, none twice from the WebSocket, none invented; and, where the WebSocket stream
//! itself was never interrupted, every delta and every final book too.
//!
//! Faults that need privileges (tmpfs mounts, a cgroup v1 memory controller) print
//! `faults: SKIPPED <scenario>: <reason>` and return when the machine does not allow them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "faults/single.rs"]
mod single;

use std::time::{Duration, Instant};

use single::{Recorder, Rig, RigOptions, Tmpfs, labels, metric, skip};

/// The metrics recorded for the alert rules and the checks.
const NAMES: &[&str] = &[
    "writer_errors_total",
    "writer_inserts_total",
    "writer_spool_batches",
    "writer_spool_full",
    "writer_quarantined_rows_total",
    "writer_flush_duration_seconds_bucket",
    "writer_flush_duration_seconds_count",
    "writer_ring_occupancy",
    "kalshi_disk_usage_ratio",
    "ws_client_messages_received_total",
];

/// The last step a writer fault must be held to for `HighWriterErrorRate` to fire there. The
/// rule reads a 5-minute window (20 steps) and has `for: 5m` (20 more): the ratio is 1 once the
/// window holds an error and no longer holds the rows inserted before the fault (nothing is
/// inserted during it), then it must stay so for 20 steps; 2 steps of margin each for the
/// window edges of `increase()`.
fn high_error_rate_step(fault_start: usize, first_error: usize) -> usize {
    first_error.max(fault_start + 22) + 22
}

fn errors(page: &str, kind: &str) -> f64 {
    metric(page, "writer_errors_total", &format!("type=\"{kind}\""))
}

fn inserts(page: &str) -> f64 {
    metric(page, "writer_inserts_total", "")
}

fn spool_batches(page: &str) -> f64 {
    metric(page, "writer_spool_batches", "")
}

/// The writer's error counters: (connection, constraint, timeout).
fn error_counts(page: &str) -> (f64, f64, f64) {
    (
        errors(page, "connection"),
        errors(page, "constraint"),
        errors(page, "timeout"),
    )
}

fn high_error_rate() -> Vec<single::Labels> {
    vec![labels(&[
        ("severity", "warning"),
        ("job", "kalshi-gatherer"),
        ("instance", single::INSTANCE),
    ])]
}

/// After a writer fault is lifted: records until the spool backlog is replayed (at most the
/// one or two batches in flight that a keeping-up writer has) and rows are inserted again (the
/// runbook's verification). Returns the wall time it took.
fn record_recovery(rec: &mut Recorder, rig: &Rig, what: &str) -> Duration {
    let lifted = Instant::now();
    let inserted = inserts(&rec.last);
    rec.until(&rig.gatherer, 240, what, |p| {
        !p.is_empty() && spool_batches(p) <= 2.0 && inserts(p) > inserted
    });
    lifted.elapsed()
}

/// Mean flush duration between two scrapes (`earlier` may be empty: since the start).
fn mean_flush(later: &str, earlier: &str) -> f64 {
    let sum = metric(later, "writer_flush_duration_seconds_sum", "")
        - metric(earlier, "writer_flush_duration_seconds_sum", "");
    let count = metric(later, "writer_flush_duration_seconds_count", "")
        - metric(earlier, "writer_flush_duration_seconds_count", "");
    sum / count.max(1.0)
}

fn report(scenario: &str, injected: &str, recovery: Duration, truth: &kalshi_verify::Report) {
    let line = format!(
        "faults: {scenario}: injected {injected}; recovered in {:.1} s; truth: {} trades, {} deltas, {} books checked",
        recovery.as_secs_f64(),
        truth.trades_expected,
        truth.deltas_found,
        truth.books_checked
    );
    single::say(&line);
}

// High error rate, timeout: another session holds an ACCESS EXCLUSIVE lock on the table every
// batch COPYs into. First with `ALTER SYSTEM SET lock_timeout` (reloaded before the lock is
// taken: 55P03), then with the server's lock_timeout reset and the waiting writer statement
// cancelled (57014, the SQLSTATE a statement timeout raises). Only `writer_errors_total{type="timeout"}` grows, the spool holds every
// batch, HighWriterErrorRate fires; the blocker is ended as the runbook says
// (pg_terminate_backend) and the spool replays: nothing lost or doubled, deltas and books equal.
#[test]
fn writer_timeouts_are_labelled_timeout_and_lose_nothing() {
    let scenario = "writer-timeout";
    let mut rig = Rig::start(scenario, RigOptions::new(31));
    let mut rec = Recorder::new(NAMES);
    for _ in 0..5 {
        rec.step(&rig.gatherer);
    }
    let quiet_before = rec.len() - 1;
    let (conn0, cons0, time0) = error_counts(&rec.last);

    // lock_timeout first: a session applies a reloaded setting before its next statement, so
    // two steps later every statement of the writer carries it.
    let mut admin = rig.db();
    admin
        .batch_execute("ALTER SYSTEM SET lock_timeout = '300ms'")
        .unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    rec.step(&rig.gatherer);
    rec.step(&rig.gatherer);
    let mut blocker = rig.db();
    blocker
        .batch_execute(
            "SET lock_timeout = 0; BEGIN; LOCK TABLE orderbook_deltas IN ACCESS EXCLUSIVE MODE",
        )
        .unwrap();
    let blocker_pid: i32 = blocker
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let fault_start = rec.len();
    rec.until(&rig.gatherer, 120, "lock timeouts counted", |p| {
        errors(p, "timeout") > time0
    });
    let first_error = rec.len() - 1;
    while !rig.gatherer.log().contains("SQLSTATE 55P03") {
        assert!(
            rec.len() - first_error < 30,
            "no lock timeout (55P03) logged"
        );
        rec.step(&rig.gatherer);
    }
    let after_lock_timeouts = errors(&rec.last, "timeout");

    // Phase 2: no lock_timeout; the writer waits on the lock until its statement is cancelled.
    admin
        .batch_execute("ALTER SYSTEM RESET lock_timeout")
        .unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    let mut cancelled = 0;
    let hold_to = high_error_rate_step(fault_start, first_error);
    while rec.len() <= hold_to || cancelled < 2 {
        assert!(
            rec.len() - fault_start < 240,
            "the writer was never seen waiting on the lock"
        );
        let waiting = admin
            .query(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'kalshi-writer' \
                 AND wait_event_type = 'Lock'",
                &[],
            )
            .unwrap();
        for row in waiting {
            let pid: i32 = row.get(0);
            let done: bool = admin
                .query_one("SELECT pg_cancel_backend($1)", &[&pid])
                .unwrap()
                .get(0);
            cancelled += usize::from(done);
        }
        rec.step(&rig.gatherer);
        rig.gatherer.assert_running();
    }
    rec.until(&rig.gatherer, 60, "the cancelled statements counted", |p| {
        errors(p, "timeout") >= after_lock_timeouts + cancelled as f64
    });
    let last_fault = rec.len() - 1;
    let during = rec.last.clone();
    assert!(
        spool_batches(&during) > 0.0,
        "the spool should hold the batches the database refused"
    );

    // The runbook's resolution: find the blocker and end it.
    let ended: bool = admin
        .query_one("SELECT pg_terminate_backend($1)", &[&blocker_pid])
        .unwrap()
        .get(0);
    assert!(ended, "the blocking session was not terminated");
    drop(blocker);
    let recovery = record_recovery(&mut rec, &rig, "writer recovered after the lock");
    for _ in 0..3 {
        rec.step(&rig.gatherer);
    }
    let (conn1, cons1, time1) = error_counts(&rec.last);
    assert_eq!(
        (conn1, cons1),
        (conn0, cons0),
        "a lock/statement timeout must count only as type=\"timeout\""
    );
    assert!(
        time1 >= time0 + 2.0 + cancelled as f64 - 1.0,
        "timeouts: {time0} -> {time1}"
    );
    let log = rig.gatherer.log();
    for code in ["55P03", "57014"] {
        assert!(
            log.contains(&format!("SQLSTATE {code}")),
            "the writer log names no SQLSTATE {code}"
        );
    }
    rec.check(
        &rig.dir,
        scenario,
        "HighWriterErrorRate",
        last_fault,
        &high_error_rate(),
        &[quiet_before, rec.len() - 1],
    );
    let truth = rig.finish(false);
    report(
        scenario,
        &format!(
            "lock held {} steps, lock_timeout 300ms then {cancelled} cancels; timeout errors {time0} -> {time1}",
            last_fault + 1 - fault_start
        ),
        recovery,
        &truth,
    );
}

// High error rate, constraint (schema mismatch, class 42): a column of the table every batch
// COPYs into is renamed (as a migration of another release would), so every batch fails with
// 42703. Only `writer_errors_total{type="constraint"}` grows, nothing is quarantined (the batch
// is kept, not dead-lettered), the spool holds everything, HighWriterErrorRate fires; the
// column is renamed back (the matching schema) and the spool replays: nothing lost.
#[test]
fn schema_mismatch_is_labelled_constraint_and_replays() {
    let scenario = "writer-schema-mismatch";
    let mut rig = Rig::start(scenario, RigOptions::new(32));
    let mut rec = Recorder::new(NAMES);
    for _ in 0..5 {
        rec.step(&rig.gatherer);
    }
    let quiet_before = rec.len() - 1;
    let (conn0, cons0, time0) = error_counts(&rec.last);
    let mut admin = rig.db();
    admin
        .batch_execute("ALTER TABLE orderbook_deltas RENAME COLUMN delta_e2 TO delta_e2_renamed")
        .unwrap();
    let fault_start = rec.len();
    rec.until(&rig.gatherer, 120, "constraint errors counted", |p| {
        errors(p, "constraint") > cons0
    });
    let hold_to = high_error_rate_step(fault_start, rec.len() - 1);
    while rec.len() <= hold_to {
        rec.step(&rig.gatherer);
        rig.gatherer.assert_running();
    }
    let last_fault = rec.len() - 1;
    let during = rec.last.clone();
    assert!(
        spool_batches(&during) > 0.0,
        "the spool should hold the batches"
    );
    admin
        .batch_execute("ALTER TABLE orderbook_deltas RENAME COLUMN delta_e2_renamed TO delta_e2")
        .unwrap();
    let recovery = record_recovery(&mut rec, &rig, "writer recovered after the schema fix");
    for _ in 0..3 {
        rec.step(&rig.gatherer);
    }
    let (conn1, cons1, time1) = error_counts(&rec.last);
    assert_eq!(
        (conn1, time1),
        (conn0, time0),
        "a schema mismatch must count only as type=\"constraint\""
    );
    assert!(cons1 >= cons0 + 2.0, "constraint errors {cons0} -> {cons1}");
    assert_eq!(
        metric(&rec.last, "writer_quarantined_rows_total", ""),
        0.0,
        "a schema-level error must keep the batch, not quarantine its rows"
    );
    assert!(
        rig.gatherer.log().contains("SQLSTATE 42703"),
        "the writer log names no SQLSTATE 42703"
    );
    rec.check(
        &rig.dir,
        scenario,
        "HighWriterErrorRate",
        last_fault,
        &high_error_rate(),
        &[quiet_before, rec.len() - 1],
    );
    let truth = rig.finish(false);
    report(
        scenario,
        &format!(
            "orderbook_deltas.delta_e2 renamed for {} steps; constraint errors {cons0} -> {cons1}",
            last_fault + 1 - fault_start
        ),
        recovery,
        &truth,
    );
}

// High error rate, constraint (rejected rows, class 23): a CHECK constraint added NOT VALID to
// trades rejects every trade priced at 50 cents or more (as a migration with a wrong rule
// would). Each batch holding such a trade fails with 23514 and counts as
// `writer_errors_total{type="constraint"}` (nothing else); the writer isolates the rejected rows
// by bisection, commits the others and moves the rejected ones to the dead-letter log
// (`writer_quarantined_rows_total{table="trades"}` counts them, one dead letter each). The
// constraint is dropped; dead letters are not replayed by the writer, so the test replays them
// the way an operator would (COPY of the dead-letter tuples) and then the local database passes
// the full truth check: the dead-letter log plus the table hold every trade exactly once.
#[test]
fn rejected_rows_are_quarantined_not_lost() {
    let scenario = "writer-rejected-rows";
    let mut rig = Rig::start(scenario, RigOptions::new(37));
    let mut rec = Recorder::new(NAMES);
    for _ in 0..3 {
        rec.step(&rig.gatherer);
    }
    let (conn0, cons0, time0) = error_counts(&rec.last);
    let mut admin = rig.db();
    admin
        .batch_execute(
            "ALTER TABLE trades ADD CONSTRAINT kalshi_fault_price CHECK (yes_price_e6 < 500000) NOT VALID",
        )
        .unwrap();
    let quarantined = |p: &str| metric(p, "writer_quarantined_rows_total", "table=\"trades\"");
    let fault_start = rec.len();
    rec.until(&rig.gatherer, 120, "rows quarantined", |p| {
        quarantined(p) >= 10.0
    });
    while rec.len() - fault_start < 10 {
        rec.step(&rig.gatherer);
    }
    admin
        .batch_execute("ALTER TABLE trades DROP CONSTRAINT kalshi_fault_price")
        .unwrap();
    let recovery = record_recovery(&mut rec, &rig, "writer recovered after the fix");
    for _ in 0..2 {
        rec.step(&rig.gatherer);
    }
    let page = rec.last.clone();
    let (conn1, cons1, time1) = error_counts(&page);
    assert_eq!(
        (conn1, time1),
        (conn0, time0),
        "rejected rows must count only as type=\"constraint\""
    );
    assert!(cons1 > cons0, "constraint errors {cons0} -> {cons1}");
    // Every dead letter is a trade the constraint rejected, one per quarantined row.
    let dead = kalshi_writer::read_dead_letters(&rig.spool).unwrap();
    let columns = kalshi_writer::Table::Trades.columns();
    let price_at = columns.iter().position(|c| *c == "yes_price_e6").unwrap();
    let mut body = b"PGCOPY\n\xff\r\n\0".to_vec();
    body.extend(0i32.to_be_bytes());
    body.extend(0i32.to_be_bytes());
    for letter in &dead {
        assert_eq!(letter.table, kalshi_writer::Table::Trades, "{letter:?}");
        assert_eq!(letter.sqlstate, "23514", "{letter:?}");
        let fields = kalshi_writer::copy::tuple_fields(&letter.tuple).unwrap();
        let price = i64::from_be_bytes(fields[price_at].unwrap().try_into().unwrap());
        assert!(price >= 500_000, "a trade at {price} was quarantined");
        body.extend(&letter.tuple);
    }
    body.extend((-1i16).to_be_bytes());
    assert_eq!(dead.len() as f64, quarantined(&page));
    // The operator's replay of the dead letters.
    let mut copy = admin
        .copy_in(&format!(
            "COPY trades ({}) FROM STDIN (FORMAT binary)",
            columns.join(", ")
        ))
        .unwrap();
    std::io::Write::write_all(&mut copy, &body).unwrap();
    copy.finish().unwrap();
    let truth = rig.finish(false);
    report(
        scenario,
        &format!(
            "CHECK (yes_price_e6 < 500000) NOT VALID on trades for {} steps; {} rows quarantined and replayed; constraint errors {cons0} -> {cons1}",
            rec.len() - fault_start,
            dead.len()
        ),
        recovery,
        &truth,
    );
}

// Performance degradation: a statement trigger sleeps 0.6 s on every COPY into
// orderbook_deltas. `writer_flush_duration_seconds` shows it (flushes slower than 0.5 s are
// counted only during the fault; a lower bound the sleep guarantees, not a timing guess), no
// writer error is counted (slow is not failed), and nothing is lost: deltas and books equal.
#[test]
fn slow_database_raises_flush_latency_and_loses_nothing() {
    let scenario = "slow-database";
    let mut rig = Rig::start(scenario, RigOptions::new(33));
    let mut rec = Recorder::new(NAMES);
    for _ in 0..5 {
        rec.step(&rig.gatherer);
    }
    let slow = |p: &str| {
        metric(p, "writer_flush_duration_seconds_count", "")
            - metric(p, "writer_flush_duration_seconds_bucket", "le=\"0.5\"")
    };
    let counts0 = error_counts(&rec.last);
    let slow0 = slow(&rec.last);
    let mean_before = mean_flush(&rec.last, "");
    let fault_page = rec.last.clone();
    let mut admin = rig.db();
    admin
        .batch_execute(
            "CREATE FUNCTION kalshi_fault_slow() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN PERFORM pg_sleep(0.6); RETURN NULL; END $$; \
             CREATE TRIGGER kalshi_fault_slow AFTER INSERT ON orderbook_deltas \
             FOR EACH STATEMENT EXECUTE FUNCTION kalshi_fault_slow();",
        )
        .unwrap();
    let fault_start = rec.len();
    rec.until(&rig.gatherer, 120, "slow flushes counted", |p| {
        slow(p) >= slow0 + 5.0
    });
    while rec.len() - fault_start < 10 {
        rec.step(&rig.gatherer);
    }
    let slow1 = slow(&rec.last);
    let mean_fault = mean_flush(&rec.last, &fault_page);
    admin
        .batch_execute("DROP TRIGGER kalshi_fault_slow ON orderbook_deltas")
        .unwrap();
    let last_fault_page = rec.last.clone();
    let fast0 = metric(
        &rec.last,
        "writer_flush_duration_seconds_bucket",
        "le=\"0.25\"",
    );
    let lifted = Instant::now();
    rec.until(&rig.gatherer, 120, "flushes fast again", |p| {
        metric(p, "writer_flush_duration_seconds_bucket", "le=\"0.25\"") > fast0 + 2.0
    });
    let recovery = lifted.elapsed();
    for _ in 0..5 {
        rec.step(&rig.gatherer);
    }
    assert_eq!(
        error_counts(&rec.last),
        counts0,
        "a slow database is not a failing one: no writer error expected"
    );
    let mean_after = mean_flush(&rec.last, &last_fault_page);
    single::say(&format!(
        "faults: {scenario}: mean flush {:.3} s before, {mean_fault:.3} s during the fault, {mean_after:.3} s after",
        mean_before
    ));
    assert!(
        slow1 >= slow0 + 5.0,
        "flushes slower than 0.5 s: {slow0} -> {slow1}"
    );
    let truth = rig.finish(false);
    report(
        scenario,
        &format!(
            "pg_sleep(0.6) trigger for {} steps; flushes over 0.5 s: {slow0} -> {slow1}",
            rec.len() - fault_start
        ),
        recovery,
        &truth,
    );
}

fn disk_usage(page: &str, kind: &str) -> f64 {
    metric(page, "kalshi_disk_usage_ratio", &format!("kind=\"{kind}\""))
}

fn disk_usage_high(path: &std::path::Path, kind: &str) -> Vec<single::Labels> {
    vec![labels(&[
        ("severity", "warning"),
        ("job", "kalshi-gatherer"),
        ("instance", single::INSTANCE),
        ("path", &path.display().to_string()),
        ("kind", kind),
    ])]
}

// Disk full, spool: the spool directory is on a 96 MiB tmpfs that other data (a filler file)
// fills but for 1.5 MiB, and the local database is stopped, so the spool fills the rest until a
// write fails (no space left). The writer then holds the batch and stops draining its rings,
// the shard's ring fills and it stops reading its socket (backpressure: `writer_spool_full` is
// 1, the ring at capacity), nothing is dropped; `kalshi_disk_usage_ratio{kind="spool"}` is above
// 0.8 and DiskUsageHigh fires. The database is started again: the spool replays and ingest
// resumes (`writer_spool_full` back to 0) although the disk is still nearly full; then the
// filler is deleted (the runbook's "free space") and DiskUsageHigh clears. Every trade of the
// truth log is stored (the exchange may have cut the WebSocket the gatherer did not read:
// trades come back by REST backfill, every gap is repaired).
#[test]
fn spool_disk_full_holds_back_ingest_and_loses_nothing() {
    let scenario = "disk-full-spool";
    let base = single::work_dir(scenario);
    let fs = match Tmpfs::mount(&base.join("spoolfs"), "96m", None) {
        Ok(fs) => fs,
        Err(reason) => return skip(scenario, &reason),
    };
    let mut options = RigOptions::new(34);
    options.spool = Some(fs.path.clone());
    // Small rings and batches, so that the backpressure reaches the socket within seconds.
    options.writer_extra = "ring_capacity = 2048\nflush_rows = 1000".to_owned();
    let mut rig = Rig::start(scenario, options);
    let mut rec = Recorder::new(NAMES);
    for _ in 0..5 {
        rec.step(&rig.gatherer);
    }
    let quiet_before = rec.len() - 1;
    let usage0 = disk_usage(&rec.last, "spool");
    assert!(
        usage0 < 0.8,
        "the spool tmpfs is {usage0} full before the fault"
    );
    let filler = fs.fill_leaving("filler", 3 << 19);
    rig.pg.stop().unwrap();
    let fault_start = rec.len();
    rec.until(&rig.gatherer, 300, "the spool disk full", |p| {
        metric(p, "writer_spool_full", "") == 1.0 && disk_usage(p, "spool") > 0.8
    });
    let full_at = rec.len() - 1;
    // Hold: DiskUsageHigh needs `for: 5m` (20 steps) of ratio > 0.8.
    while rec.len() - fault_start < 25 || rec.len() - full_at < 12 {
        rec.step(&rig.gatherer);
        rig.gatherer.assert_running();
    }
    let last_fault = rec.len() - 1;
    let page = rec.last.clone();
    assert_eq!(metric(&page, "writer_spool_full", ""), 1.0);
    assert!(disk_usage(&page, "spool") > 0.8);
    // Backpressure reached the shard: its ring filled up.
    let ring_max = (full_at..rec.len())
        .filter_map(|s| rec.value(s, "writer_ring_occupancy", "producer=\"0\""))
        .fold(0.0, f64::max);
    assert!(
        ring_max >= 2048.0,
        "the shard's ring never filled (max {ring_max}): no backpressure"
    );
    assert!(
        rig.gatherer.log().contains("No space left"),
        "the writer log does not report the full disk"
    );
    rig.pg.start_again().unwrap();
    let lifted = Instant::now();
    rec.until(
        &rig.gatherer,
        240,
        "spool replayed and ingest resumed",
        |p| !p.is_empty() && metric(p, "writer_spool_full", "") == 0.0 && spool_batches(p) <= 2.0,
    );
    let recovery = lifted.elapsed();
    std::fs::remove_file(fs.path.join("filler")).unwrap();
    rec.until(&rig.gatherer, 60, "the spool disk below 80 %", |p| {
        disk_usage(p, "spool") < 0.8
    });
    for _ in 0..3 {
        rec.step(&rig.gatherer);
    }
    assert_eq!(metric(&rec.last, "writer_spool_full", ""), 0.0);
    rec.check(
        &rig.dir,
        scenario,
        "DiskUsageHigh",
        last_fault,
        &disk_usage_high(&fs.path, "spool"),
        &[quiet_before, rec.len() - 1],
    );
    let truth = rig.finish(true);
    let (gaps, open) = rig.gaps();
    assert_eq!(open, 0, "{open} of {gaps} gaps never repaired");
    report(
        scenario,
        &format!(
            "database stopped, spool tmpfs full ({filler} filler bytes) after {} steps, held {} steps; ring occupancy max {ring_max}; {gaps} gaps recorded and repaired; deltas {} of {} (books by snapshot)",
            full_at - fault_start,
            last_fault - full_at,
            truth.deltas_found,
            truth.deltas_expected
        ),
        recovery,
        &truth,
    );
    drop(rig);
    drop(fs);
}

// Disk full, database: the partitions of orderbook_deltas (every batch COPYs into them) are
// moved to a tablespace on a 16 MiB tmpfs, which is then filled by another file. Every batch
// fails with SQLSTATE 53100 (disk full), which the writer counts as
// `writer_errors_total{type="connection"}` (class 53, out of resources, see
// engine/writer/src/error.rs) and nothing else; the spool holds every batch;
// `kalshi_disk_usage_ratio{kind="data"}` (database.data_dir points at the tablespace) is above
// 0.8 and DiskUsageHigh fires, as does HighWriterErrorRate. The filler is deleted: the spool
// replays and nothing is lost, deltas and books included.
#[test]
fn database_disk_full_spools_and_recovers() {
    let scenario = "disk-full-database";
    let base = single::work_dir(scenario);
    let data = match Tmpfs::mount(&base.join("datafs"), "16m", Some("postgres")) {
        Ok(fs) => fs,
        Err(reason) => return skip(scenario, &reason),
    };
    // The spool on its own tmpfs too, so that DiskUsageHigh of the spool cannot come from the
    // machine's own disk.
    let spool = match Tmpfs::mount(&base.join("spoolfs"), "64m", None) {
        Ok(fs) => fs,
        Err(reason) => return skip(scenario, &reason),
    };
    let mut options = RigOptions::new(35);
    options.spool = Some(spool.path.clone());
    options.database_extra = format!("data_dir = \"{}\"", data.path.display());
    let mut rig = Rig::start(scenario, options);
    let mut admin = rig.db();
    admin
        .batch_execute(&format!(
            "CREATE TABLESPACE kalshi_fault LOCATION '{}'",
            data.path.display()
        ))
        .unwrap();
    let partitions: Vec<String> = admin
        .query(
            "SELECT inhrelid::regclass::text FROM pg_inherits \
             WHERE inhparent = 'orderbook_deltas'::regclass",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!partitions.is_empty());
    for p in &partitions {
        admin
            .batch_execute(&format!("ALTER TABLE {p} SET TABLESPACE kalshi_fault"))
            .unwrap();
    }
    let mut rec = Recorder::new(NAMES);
    for _ in 0..5 {
        rec.step(&rig.gatherer);
    }
    let quiet_before = rec.len() - 1;
    let (conn0, cons0, time0) = error_counts(&rec.last);
    assert!(disk_usage(&rec.last, "data") < 0.8);
    let filled = data.fill("filler");
    let fault_start = rec.len();
    rec.until(&rig.gatherer, 120, "disk-full errors counted", |p| {
        errors(p, "connection") > conn0
    });
    let hold_to = high_error_rate_step(fault_start, rec.len() - 1);
    while rec.len() <= hold_to {
        rec.step(&rig.gatherer);
        rig.gatherer.assert_running();
    }
    let last_fault = rec.len() - 1;
    let page = rec.last.clone();
    assert!(
        spool_batches(&page) > 2.0,
        "the spool should hold the batches"
    );
    assert!(disk_usage(&page, "data") > 0.8);
    assert!(
        rig.gatherer.log().contains("SQLSTATE 53100"),
        "the writer log names no SQLSTATE 53100"
    );
    std::fs::remove_file(data.path.join("filler")).unwrap();
    let recovery = record_recovery(&mut rec, &rig, "writer recovered after space was freed");
    for _ in 0..3 {
        rec.step(&rig.gatherer);
    }
    let (conn1, cons1, time1) = error_counts(&rec.last);
    assert_eq!(
        (cons1, time1),
        (cons0, time0),
        "disk full (53100) must count only as type=\"connection\""
    );
    assert!(conn1 >= conn0 + 2.0);
    rec.check(
        &rig.dir,
        scenario,
        "DiskUsageHigh",
        last_fault,
        &disk_usage_high(&data.path, "data"),
        &[quiet_before, rec.len() - 1],
    );
    rec.check(
        &rig.dir,
        scenario,
        "HighWriterErrorRate",
        last_fault,
        &high_error_rate(),
        &[quiet_before, rec.len() - 1],
    );
    let truth = rig.finish(false);
    report(
        scenario,
        &format!(
            "orderbook_deltas on a 16 MiB tablespace filled ({filled} filler bytes) for {} steps; connection errors {conn0} -> {conn1}",
            last_fault + 1 - fault_start
        ),
        recovery,
        &truth,
    );
    drop(admin);
    drop(rig);
    drop(spool);
    drop(data);
}

// Gatherer down, OOM kill: the running gatherer is moved into a cgroup v1 memory group (a child
// of the test's own) whose limit is then set 2 MiB above what it has charged there, with its
// spool on a tmpfs (tmpfs pages are charged to the writer's group and cannot be reclaimed
// without swap), so its own growth takes it over the limit and the kernel's OOM killer ends it
// (SIGKILL, `oom_kill` counted by the group).
// `up` is 0: with one gatherer that is AllGatherersDown (SingleGathererDown stays quiet: it is
// suppressed when no gatherer is up). Restarted outside the group with the same config and
// spool, it replays the spool, records the missed window as a gap and backfills it: every trade
// of the truth log is stored, none twice from the WebSocket.
#[test]
fn oom_killed_gatherer_restarts_and_backfills() {
    let scenario = "gatherer-oom-killed";
    let base = single::work_dir(scenario);
    let spool = match Tmpfs::mount(&base.join("spoolfs"), "256m", None) {
        Ok(fs) => fs,
        Err(reason) => return skip(scenario, &reason),
    };
    let group =
        match single::MemoryCgroup::create(&format!("kalshi-faults-oom-{}", std::process::id())) {
            Ok(g) => g,
            Err(reason) => return skip(scenario, &reason),
        };
    let mut options = RigOptions::new(36);
    options.spool = Some(spool.path.clone());
    let mut rig = Rig::start(scenario, options);
    let mut rec = Recorder::new(NAMES);
    for _ in 0..5 {
        rec.step(&rig.gatherer);
    }
    let quiet_before = rec.len() - 1;
    let pid = rig.gatherer.pid().unwrap();
    if let Err(e) = group.write("cgroup.procs", &pid.to_string()) {
        return skip(
            scenario,
            &format!("cannot move the gatherer into the group: {e}"),
        );
    }
    let usage = group.number("memory.usage_in_bytes");
    let limit = usage + (2 << 20);
    if let Err(e) = group.write("memory.limit_in_bytes", &limit.to_string()) {
        return skip(scenario, &format!("cannot set memory.limit_in_bytes: {e}"));
    }
    // With swap, tmpfs pages could be swapped out instead: bound memory + swap too (the file
    // exists when the kernel accounts swap).
    let _ = group.write("memory.memsw.limit_in_bytes", &limit.to_string());
    let fault_start = rec.len();
    let mut status = None;
    for _ in 0..300 {
        rec.step(&rig.gatherer);
        if let Some(s) = rig.gatherer.try_exit() {
            status = Some(s);
            break;
        }
    }
    let Some(status) = status else {
        panic!(
            "the gatherer was not OOM-killed within 300 steps (limit {limit}, usage {})",
            group.number("memory.usage_in_bytes")
        );
    };
    let killed_after = rec.len() - fault_start;
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "the gatherer ended with {status}");
    assert!(
        group.oom_kills() >= 1 || group.number("memory.failcnt") > 0,
        "the kernel reports no OOM kill in the group: {}",
        group.read("memory.oom_control")
    );
    let oom_kills = group.oom_kills();
    let down_from = rec.len();
    for _ in 0..7 {
        rec.step(&rig.gatherer);
    }
    let last_down = rec.len() - 1;
    assert_eq!(rec.value(last_down, "up", ""), Some(0.0));
    let restarted_at = rig.exchange_time_us();
    rig.gatherer.start();
    let restarted = Instant::now();
    rec.until(&rig.gatherer, 240, "the gatherer healthy again", |p| {
        !p.is_empty() && inserts(p) > 0.0
    });
    rig.gatherer.wait_healthy();
    let recovery = restarted.elapsed();
    for _ in 0..5 {
        rec.step(&rig.gatherer);
    }
    let all_down = vec![labels(&[("severity", "critical")])];
    rec.check(
        &rig.dir,
        scenario,
        "AllGatherersDown",
        last_down,
        &all_down,
        &[quiet_before, rec.len() - 1],
    );
    rec.check(
        &rig.dir,
        scenario,
        "SingleGathererDown",
        last_down,
        &[],
        &[quiet_before],
    );
    let truth = rig.finish(true);
    let mut db = rig.db();
    let row = db
        .query_one(
            "SELECT count(*), coalesce(sum(backfilled_trades), 0)::bigint FROM sequence_gaps \
             WHERE channel = 'connection' AND repaired_ts IS NOT NULL AND detected_ts >= $1",
            &[&(restarted_at - 60_000_000)],
        )
        .unwrap();
    let (gaps, backfilled): (i64, i64) = (row.get(0), row.get(1));
    assert!(gaps >= 1, "the restart recorded no repaired connection gap");
    let (_, open) = rig.gaps();
    assert_eq!(open, 0, "gaps never repaired");
    report(
        scenario,
        &format!(
            "limit usage+2 MiB ({limit} bytes); OOM-killed after {killed_after} steps (oom_kill {oom_kills}); down {} steps; gap recorded, {backfilled} trades backfilled",
            last_down + 1 - down_from + 1
        ),
        recovery,
        &truth,
    );
    drop(db);
    drop(rig);
    drop(group);
    drop(spool);
}
