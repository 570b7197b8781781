//! Faults: the database killed and stopped mid-stream, the writer process killed mid-flush, a
//! damaged spool, a full spool, rejected rows, and a statement timeout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use kalshi_storage::MigrateOptions;
use kalshi_wire::{Ticker, TradeId};
use kalshi_writer::{
    ErrorKind, LifecycleRow, PushError, Row, Table, TradeRow, WriteMode, Writer, copy,
    read_dead_letters,
};
use postgres::error::SqlState;
use prometheus::Registry;
use rand::Rng;

// Checks that a database crash and a database shutdown in the middle of a stream lose and
// double nothing: a producer pushes 40,000 deltas at a steady pace for about 5 s while the
// cluster is SIGKILLed, left down for ~1.5 s, restarted, then stopped (fast shutdown) and
// restarted again. Afterwards every seq 0..40,000 is in the table exactly once, in insertion
// (ctid) order, and connection errors were counted.
#[test]
fn database_killed_and_stopped_mid_stream() {
    let mut pg = cluster(&MigrateOptions::gatherer());
    let dir = tempfile::tempdir().unwrap();
    let (writer, mut producers) = Writer::start(
        config(&pg.url("kalshi"), "g1", dir.path()),
        &Registry::new(),
    )
    .unwrap();
    let producer = producers.remove(0);
    const N: i64 = 40_000;
    let base = base_ts();
    let feeder = std::thread::spawn(move || {
        let start = Instant::now();
        for seq in 0..N {
            // 8,000 rows/s: the stream spans the whole fault sequence below.
            let due = Duration::from_micros(seq as u64 * 125);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
            producer
                .push_wait(Row::Delta(delta(base, seq)), Duration::from_secs(60))
                .unwrap();
        }
    });
    std::thread::sleep(Duration::from_millis(800));
    pg.kill().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let spooled_while_down = writer.metrics().spool_batches.get();
    pg.start_again().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    pg.stop().unwrap();
    std::thread::sleep(Duration::from_millis(800));
    pg.start_again().unwrap();
    feeder.join().unwrap();
    let report = writer.shutdown().unwrap();

    assert!(
        spooled_while_down > 1,
        "batches spooled while down: {spooled_while_down}"
    );
    assert_eq!(report.pending_batches, 0, "{report:?}");
    let mut c = client(&pg);
    assert_exact_sequence(&delta_seqs_in_insert_order(&mut c), N);
    assert!(report.last_failure.is_some());
    assert_eq!(report.rows_committed, N as u64);
}

// Checks the counters of the previous scenario from the metrics side in a shorter run: after a
// kill, `writer_errors_total{type="connection"}` is non-zero, the spool gauges rose, and once
// the database is back they return to zero.
#[test]
fn connection_errors_and_spool_gauges() {
    let mut pg = cluster(&MigrateOptions::gatherer());
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::new();
    let (writer, producers) =
        Writer::start(config(&pg.url("kalshi"), "g1", dir.path()), &registry).unwrap();
    pg.kill().unwrap();
    let base = base_ts();
    for seq in 0..5000 {
        producers[0]
            .push_wait(Row::Delta(delta(base, seq)), Duration::from_secs(10))
            .unwrap();
    }
    wait_until("spooled batches", Duration::from_secs(30), || {
        writer.metrics().spool_batches.get() >= 5
    });
    assert!(writer.metrics().errors_of(ErrorKind::Connection) > 0);
    assert!(writer.metrics().spool_bytes.get() > 0);
    pg.start_again().unwrap();
    wait_until("spool drained", Duration::from_secs(60), || {
        writer.metrics().spool_batches.get() == 0
    });
    assert_eq!(writer.metrics().inserts_of(Table::OrderbookDeltas), 5000);
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    assert!(
        text.contains("writer_errors_total{type=\"connection\"}"),
        "{text}"
    );
    assert!(text.contains("writer_flush_duration_seconds_bucket"));
    assert!(text.contains("writer_inserts_total{table=\"orderbook_deltas\"} 5000"));
    writer.shutdown().unwrap();
    assert_exact_sequence(&delta_seqs_in_insert_order(&mut client(&pg)), 5000);
}

/// Entry point of the child process of `writer_process_killed_mid_flush`: does nothing unless
/// the parent set `KALSHI_WRITER_CHILD`. The child writes deltas `start..count` (where `start`
/// is what the database holds after spool recovery), printing `SPOOLED <n>` every few
/// milliseconds with the number of rows acknowledged (spooled) so far.
#[test]
fn child_writer_process() {
    let Ok(url) = std::env::var("KALSHI_WRITER_CHILD") else {
        return;
    };
    let dir = std::env::var("KALSHI_WRITER_CHILD_SPOOL").unwrap();
    let count: i64 = std::env::var("KALSHI_WRITER_CHILD_COUNT")
        .unwrap()
        .parse()
        .unwrap();
    let base: i64 = std::env::var("KALSHI_WRITER_CHILD_BASE")
        .unwrap()
        .parse()
        .unwrap();
    let mut cfg = config(&url, "crash", std::path::Path::new(&dir));
    // Small batches, so that a kill lands mid-flush often.
    cfg.batch_rows_max = 400;
    cfg.batch_age_max = Duration::from_millis(5);
    let (writer, producers) = Writer::start(cfg, &Registry::new()).unwrap();
    // Replay what the spool holds, then resume after what the database has.
    wait_until("spool replay", Duration::from_secs(60), || {
        writer.metrics().spool_batches.get() == 0
    });
    let mut c = kalshi_storage::connect(&url).unwrap();
    let start: i64 = c
        .query_one("SELECT count(*) FROM orderbook_deltas", &[])
        .unwrap()
        .get(0);
    println!("RESUME {start}");
    let done = Arc::new(AtomicBool::new(false));
    let feeder = {
        let done = Arc::clone(&done);
        let p = producers.into_iter().next().unwrap();
        std::thread::spawn(move || {
            for seq in start..count {
                p.push_wait(Row::Delta(delta(base, seq)), Duration::from_secs(60))
                    .unwrap();
                if seq % 16 == 0 {
                    // Pace the stream a little so that the run spans a few hundred ms.
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            done.store(true, Ordering::Release);
        })
    };
    while !done.load(Ordering::Acquire) {
        println!("SPOOLED {}", start as u64 + writer.rows_spooled());
        std::thread::sleep(Duration::from_millis(2));
    }
    feeder.join().unwrap();
    let report = writer.shutdown().unwrap();
    println!("DONE {}", report.rows_committed);
}

/// Run the child; kill it with SIGKILL after `kill_after` (None: let it finish). Returns the
/// resume point it printed and the largest acknowledged count it printed before dying.
fn run_child(
    url: &str,
    spool: &std::path::Path,
    base: i64,
    n: i64,
    kill_after: Option<Duration>,
) -> (i64, u64, bool) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_writer_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("KALSHI_WRITER_CHILD", url)
        .env("KALSHI_WRITER_CHILD_SPOOL", spool)
        .env("KALSHI_WRITER_CHILD_COUNT", n.to_string())
        .env("KALSHI_WRITER_CHILD_BASE", base.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut resume = None;
    let mut acked = 0u64;
    let mut finished = false;
    let mut kill_at = None;
    let limit = Instant::now() + Duration::from_secs(120);
    loop {
        match rx.recv_timeout(Duration::from_millis(5)) {
            Ok(line) => {
                // libtest prints "test child_writer_process ... " without a line break first.
                let line = match line.find(|c: char| c.is_ascii_uppercase()) {
                    Some(i) => line[i..].to_owned(),
                    None => line,
                };
                if let Some(v) = line.strip_prefix("RESUME ") {
                    resume = Some(v.trim().parse::<i64>().unwrap());
                    kill_at = kill_after.map(|d| Instant::now() + d);
                } else if let Some(v) = line.strip_prefix("SPOOLED ") {
                    acked = acked.max(v.trim().parse().unwrap());
                } else if line.starts_with("DONE ") {
                    finished = true;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if kill_at.is_some_and(|k| Instant::now() >= k) {
            // SIGKILL: no destructors, no flush.
            child.kill().unwrap();
            kill_at = None;
        }
        assert!(Instant::now() < limit, "child writer hung");
    }
    child.wait().unwrap();
    reader.join().unwrap();
    (
        resume.expect("child printed no RESUME line"),
        acked,
        finished,
    )
}

// Checks exactly-once across crashes of the writer process. A child process (this test binary
// re-run on `child_writer_process`) streams deltas 0..60,000 through a writer with small
// batches and prints how many rows are acknowledged (in the spool). It is SIGKILLed at a random
// moment, twice; each restart recovers the spool, replays the uncommitted batches and resumes
// after the rows the database holds. The guarantee checked: every row acknowledged before a
// kill is in the database after the restart (resume point >= last acknowledged count), and at
// the end the table holds every seq exactly once, in order.
#[test]
fn writer_process_killed_mid_flush() {
    let pg = cluster(&MigrateOptions::gatherer());
    let dir = tempfile::tempdir().unwrap();
    let url = pg.url("kalshi");
    let base = base_ts();
    const N: i64 = 60_000;
    let mut rng = rand::rng();
    let mut last_acked = 0u64;
    for round in 0..2 {
        let kill = Duration::from_millis(rng.random_range(100..500));
        let (resume, acked, finished) = run_child(&url, dir.path(), base, N, Some(kill));
        eprintln!(
            "round {round}: killed after {kill:?}; resumed at {resume}, {acked} acknowledged, finished {finished}"
        );
        assert!(
            resume as u64 >= last_acked,
            "round {round}: {last_acked} rows were acknowledged but only {resume} survived"
        );
        if finished {
            // The child finished before the kill; nothing more to test in this round.
            last_acked = N as u64;
            break;
        }
        last_acked = acked;
    }
    let (resume, _, finished) = run_child(&url, dir.path(), base, N, None);
    assert!(finished, "the last run must finish");
    assert!(
        resume as u64 >= last_acked.min(N as u64),
        "{last_acked} acknowledged, {resume} survived"
    );
    let mut c = client(&pg);
    assert_exact_sequence(&delta_seqs_in_insert_order(&mut c), N);
    // Every marker left belongs to a batch of this writer; the spool is empty.
    let left: i64 = c
        .query_one(
            "SELECT count(*) FROM writer_batches WHERE writer_id <> 'crash'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}

// Checks recovery from a torn spool tail. With the database down, a writer spools 5 batches of
// 1,000 rows and shuts down with them pending. The last segment is then cut in the middle of its
// last record (a crash mid-append). A new writer reports the cut (offset and reason), keeps the
// 4 intact batches and commits exactly their rows, 0..4000, in order.
#[test]
fn torn_spool_segment_is_recovered() {
    let mut pg = cluster(&MigrateOptions::gatherer());
    pg.stop().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = pg.url("kalshi");
    let base = base_ts();
    let mut cfg = config(&url, "g1", dir.path());
    cfg.shutdown_timeout = Duration::from_millis(200);
    cfg.batch_age_max = Duration::from_secs(60);
    // Batches seal on batch_rows_max only (no group commit), so their count is known.
    cfg.batch_linger = None;
    let (writer, producers) = Writer::start(cfg.clone(), &Registry::new()).unwrap();
    for seq in 0..5000 {
        producers[0]
            .push_wait(Row::Delta(delta(base, seq)), Duration::from_secs(10))
            .unwrap();
    }
    let report = writer.shutdown().unwrap();
    assert_eq!(report.pending_batches, 5, "{report:?}");
    let seg = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("seg-"))
        .max()
        .unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 1000).unwrap();
    drop(f);

    pg.start_again().unwrap();
    let (writer, _producers) = Writer::start(cfg, &Registry::new()).unwrap();
    let rec = writer.recovery().clone();
    assert_eq!(rec.batches, 4, "{rec:?}");
    assert_eq!(rec.rows, 4000);
    assert_eq!(rec.problems.len(), 1);
    assert_eq!(rec.problems[0].path, seg);
    assert!(rec.problems[0].reason.contains("torn"), "{rec:?}");
    assert_eq!(writer.metrics().spool_corrupt.get(), 1);
    let report = writer.shutdown().unwrap();
    assert_eq!(report.rows_committed, 4000);
    assert_exact_sequence(&delta_seqs_in_insert_order(&mut client(&pg)), 4000);
}

// Checks backpressure from a full spool. With the database down and a spool bounded to 64 KiB,
// a producer pushes until its 256-row ring stays full for a second: no row is dropped (each
// refused row is handed back), `writer_spool_full` is 1, and the spool stays within its bound.
// When the database comes back, the producer pushes the rest; all 8,000 rows arrive exactly
// once, in order.
#[test]
fn full_spool_holds_back_producers() {
    let mut pg = cluster(&MigrateOptions::gatherer());
    pg.stop().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&pg.url("kalshi"), "g1", dir.path());
    cfg.batch_bytes_max = 4096;
    cfg.spool.max_bytes = 64 << 10;
    cfg.spool.segment_bytes = 16 << 10;
    cfg.ring_capacity = 256;
    let (writer, producers) = Writer::start(cfg, &Registry::new()).unwrap();
    let p = &producers[0];
    let base = base_ts();
    const N: i64 = 8000;
    let mut seq = 0;
    let mut full_since: Option<Instant> = None;
    let limit = Instant::now() + Duration::from_secs(60);
    while seq < N {
        match p.try_push(Row::Delta(delta(base, seq))) {
            Ok(()) => {
                seq += 1;
                full_since = None;
            }
            Err(PushError::Full(Row::Delta(back))) => {
                assert_eq!(back.seq, seq, "the refused row comes back");
                let since = *full_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(1) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("unexpected push error {e:?}"),
        }
        assert!(Instant::now() < limit, "the ring never stayed full");
    }
    assert!(seq < N, "the spool never filled");
    assert_eq!(p.len(), p.capacity());
    assert_eq!(writer.metrics().spool_full.get(), 1);
    assert!(writer.metrics().spool_bytes.get() <= 64 << 10);
    let blocked_at = seq;

    pg.start_again().unwrap();
    for s in blocked_at..N {
        p.push_wait(Row::Delta(delta(base, s)), Duration::from_secs(60))
            .unwrap();
    }
    let report = writer.shutdown().unwrap();
    assert_eq!(report.rows_committed, N as u64);
    assert_exact_sequence(&delta_seqs_in_insert_order(&mut client(&pg)), N);
}

fn trade(base: i64, i: i64, id: &str) -> TradeRow {
    TradeRow {
        exchange_ts: base + i,
        received_ts: base + i,
        gatherer_id: 1,
        ticker: Ticker::new("KXT").unwrap(),
        trade_id: TradeId::new(id).unwrap(),
        yes_price_e6: 500_000,
        no_price_e6: 500_000,
        count_e2: 100 + i,
        taker_side: None,
        taker_outcome_side: None,
        taker_book_side: None,
        is_block_trade: None,
        source: kalshi_writer::Source::Ws,
        sid: Some(1),
        seq: Some(i),
    }
}

// Checks the policy for rejected rows. Against production (unique keys) in Append mode, one
// batch holds 10 trades of which one repeats an earlier trade (23505) and 3 lifecycle rows of
// which one has a payload that is not JSON (22P02). The batch fails, is classified as
// `constraint`, and is committed again with the rows isolated: the 9 + 2 good rows are stored
// once, the 2 bad rows are in the dead-letter log with their table and SQLSTATE, and the
// quarantine counter says 2. A second writer in IgnoreDuplicates mode then writes the same
// trades again: nothing is rejected and nothing is doubled.
#[test]
fn rejected_rows_are_isolated_and_quarantined() {
    let pg = cluster(&MigrateOptions::production());
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&pg.url("kalshi"), "p1", dir.path());
    cfg.batch_age_max = Duration::from_secs(60);
    // Batches seal on batch_rows_max only (no group commit), so their count is known.
    cfg.batch_linger = None;
    let (writer, producers) = Writer::start(cfg.clone(), &Registry::new()).unwrap();
    let p = &producers[0];
    let base = base_ts();
    let mut rows = Vec::new();
    for i in 0..10 {
        let id = if i == 6 {
            "t-2".to_owned()
        } else {
            format!("t-{i}")
        };
        // Row 6 repeats trade 2 (same id and exchange time).
        let t = if i == 6 {
            TradeRow {
                count_e2: 999,
                ..trade(base, 2, &id)
            }
        } else {
            trade(base, i, &id)
        };
        rows.push(Row::Trade(t));
    }
    for (i, payload) in [r#"{"a":1}"#, r#"{"a":"#, r#"{"b":[true]}"#]
        .iter()
        .enumerate()
    {
        let mut l = Box::new(LifecycleRow::default());
        l.exchange_ts = base + i as i64;
        l.received_ts = base;
        l.gatherer_id = 1;
        l.ticker = Ticker::new("KXL").unwrap();
        l.event_type = format!("e{i}");
        l.payload = (*payload).to_owned();
        rows.push(Row::Lifecycle(l));
    }
    for r in rows {
        p.push_wait(r, Duration::from_secs(10)).unwrap();
    }
    let report = writer.shutdown().unwrap();
    assert_eq!(report.rows_quarantined, 2, "{report:?}");
    assert_eq!(report.rows_committed, 11);
    assert_eq!(report.pending_batches, 0);

    let mut c = client(&pg);
    let ids: Vec<String> = c
        .query(
            "SELECT trade_id FROM trades ORDER BY exchange_ts, trade_id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let want: Vec<String> = [0, 1, 2, 3, 4, 5, 7, 8, 9]
        .iter()
        .map(|i| format!("t-{i}"))
        .collect();
    assert_eq!(ids, want);
    let events: Vec<String> = c
        .query(
            "SELECT event_type FROM market_lifecycle ORDER BY event_type",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(events, ["e0", "e2"]);

    let mut dead = read_dead_letters(dir.path()).unwrap();
    dead.sort_by_key(|d| d.table);
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!(dead[0].table, Table::Trades);
    assert_eq!(dead[0].sqlstate, SqlState::UNIQUE_VIOLATION.code());
    let fields = copy::tuple_fields(&dead[0].tuple).unwrap();
    assert_eq!(fields[4], Some(&b"t-2"[..]));
    assert_eq!(fields[7], Some(&999i64.to_be_bytes()[..]));
    assert_eq!(dead[1].table, Table::MarketLifecycle);
    assert_eq!(
        dead[1].sqlstate,
        SqlState::INVALID_TEXT_REPRESENTATION.code()
    );
    assert!(dead[1].message.contains("json"), "{}", dead[1].message);

    // IgnoreDuplicates: the same trades again, nothing rejected, nothing doubled.
    let dir2 = tempfile::tempdir().unwrap();
    let mut cfg2 = config(&pg.url("kalshi"), "p2", dir2.path());
    cfg2.mode = WriteMode::IgnoreDuplicates;
    let (writer, producers) = Writer::start(cfg2, &Registry::new()).unwrap();
    for i in 0..10 {
        producers[0]
            .push_wait(
                Row::Trade(trade(base, i, &format!("t-{i}"))),
                Duration::from_secs(10),
            )
            .unwrap();
    }
    let report = writer.shutdown().unwrap();
    assert_eq!(report.rows_quarantined, 0);
    assert!(report.last_failure.is_none(), "{report:?}");
    let n: i64 = c
        .query_one("SELECT count(*) FROM trades", &[])
        .unwrap()
        .get(0);
    // t-6 is new (its first write was the duplicate of t-2), the other 9 already existed.
    assert_eq!(n, 10);
}

// Checks that a statement timeout is classified as `timeout` and the batch is retried rather
// than lost: another session holds an ACCESS EXCLUSIVE lock on orderbook_deltas, so the writer's
// COPY waits until its 300 ms statement_timeout cancels it (SQLSTATE 57014), on every retry,
// and only `timeout` is counted. After the lock is released the rows are committed exactly once.
#[test]
fn statement_timeout_is_classified_as_timeout() {
    let pg = cluster(&MigrateOptions::gatherer());
    let mut locker = client(&pg);
    let mut tx = locker.transaction().unwrap();
    tx.batch_execute("LOCK TABLE orderbook_deltas IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&pg.url("kalshi"), "g1", dir.path());
    cfg.statement_timeout = Duration::from_millis(300);
    let (writer, producers) = Writer::start(cfg, &Registry::new()).unwrap();
    let base = base_ts();
    for seq in 0..2000 {
        producers[0]
            .push_wait(Row::Delta(delta(base, seq)), Duration::from_secs(10))
            .unwrap();
    }
    // Several attempts: each refused COPY must count as one timeout and nothing else (a
    // refused COPY used to leave the session one message out of step, so the next attempt
    // failed as a spurious `connection` error).
    wait_until("three timeout errors", Duration::from_secs(60), || {
        writer.metrics().errors_of(ErrorKind::Timeout) >= 3
    });
    assert_eq!(writer.metrics().errors_of(ErrorKind::Constraint), 0);
    assert_eq!(writer.metrics().errors_of(ErrorKind::Connection), 0);
    tx.rollback().unwrap();
    let report = writer.shutdown().unwrap();
    assert!(
        report
            .last_failure
            .as_deref()
            .unwrap_or("")
            .contains("57014"),
        "{report:?}"
    );
    assert_exact_sequence(&delta_seqs_in_insert_order(&mut locker), 2000);
}
