//! Helpers shared by the writer integration tests.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use std::path::Path;
use std::time::{Duration, Instant};

use kalshi_pg_harness::{PgCluster, PgOptions};
use kalshi_storage::{MigrateOptions, connect, migrate};
use kalshi_wire::Ticker;
use kalshi_wire::record::Side;
use kalshi_writer::{DeltaRow, WriterConfig};
use postgres::Client;

/// Microseconds in a day.
pub const DAY_US: i64 = 86_400_000_000;

/// A fresh cluster whose database `kalshi` is migrated with `opts`.
pub fn cluster(opts: &MigrateOptions) -> PgCluster {
    let pg = PgCluster::start(PgOptions::default()).unwrap();
    migrate(&mut client(&pg), opts).unwrap();
    pg
}

/// A superuser client on `kalshi`.
pub fn client(pg: &PgCluster) -> Client {
    connect(&pg.url("kalshi")).unwrap()
}

/// A writer configuration for tests: small batches and short delays so that faults show
/// quickly.
pub fn config(url: &str, id: &str, spool: &Path) -> WriterConfig {
    let mut c = WriterConfig::new(url, id, spool);
    c.batch_rows_max = 1000;
    c.batch_age_max = Duration::from_millis(20);
    c.retry_delay_min = Duration::from_millis(20);
    c.retry_delay_max = Duration::from_millis(300);
    c.connect_timeout = Duration::from_secs(2);
    c.shutdown_timeout = Duration::from_secs(20);
    c
}

/// Start of the current UTC day in µs plus one hour: every row of a test lands in one daily
/// partition, whose physical order is the insertion order.
pub fn base_ts() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    now / DAY_US * DAY_US + 3_600_000_000
}

/// The deterministic delta number `seq` of a test stream.
pub fn delta(base: i64, seq: i64) -> DeltaRow {
    DeltaRow {
        exchange_ts: base + seq,
        received_ts: base + seq + 7,
        gatherer_id: 1,
        ticker: Ticker::new("KXTEST-26JAN01-T1").unwrap(),
        side: if seq % 2 == 0 { Side::Yes } else { Side::No },
        price_e6: 10_000 + (seq % 990) * 1000,
        delta_e2: seq % 17 - 8,
        sid: 1,
        seq,
        occurrence: 0,
    }
}

/// The `seq` column of `orderbook_deltas` in physical (insertion) order. Every row of a test is
/// in one partition, so `ctid` order is the order the rows were written in.
pub fn delta_seqs_in_insert_order(c: &mut Client) -> Vec<i64> {
    let parts: i64 = c
        .query_one("SELECT count(DISTINCT tableoid) FROM orderbook_deltas", &[])
        .unwrap()
        .get(0);
    assert!(parts <= 1, "test rows spread over {parts} partitions");
    c.query("SELECT seq FROM orderbook_deltas ORDER BY ctid", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Assert that `seqs` is exactly `0..n` in order, with a useful message otherwise.
pub fn assert_exact_sequence(seqs: &[i64], n: i64) {
    let mut sorted = seqs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        seqs.len(),
        "{} duplicated rows",
        seqs.len() - sorted.len()
    );
    assert_eq!(seqs.len() as i64, n, "row count");
    if let Some(i) = seqs.iter().enumerate().position(|(i, s)| *s != i as i64) {
        panic!(
            "rows out of order at position {i}: {:?}",
            &seqs[i..(i + 5).min(seqs.len())]
        );
    }
}

/// Wait until `cond` holds, failing after `limit` (a generous bound against hanging, not a
/// timing assertion).
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
