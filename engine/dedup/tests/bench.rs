//! Throughput: merge three gatherers' copies of N delta rows into production, against the raw
//! binary COPY ceiling of a production database measured in the same run. Ignored by default
//! (it measures, it does not check speed); run it in release:
//!
//! ```text
//! BENCH_ROWS=1000000 cargo test --release -p kalshi-dedup --test bench -- --ignored --nocapture
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;
use kalshi_pg_harness::{PgCluster, PgOptions};
use kalshi_wire::Ticker;
use kalshi_wire::record::Side;
use kalshi_writer::copy::{COPY_HEADER, COPY_TRAILER, Table, encode_delta};
use kalshi_writer::{DeltaRow, Row};

fn delta(base: i64, i: i64, span_us: i64, n: i64, g: usize) -> DeltaRow {
    DeltaRow {
        exchange_ts: base + i * span_us / n,
        received_ts: base + i * span_us / n + 900 + g as i64,
        gatherer_id: g as i16 + 1,
        ticker: Ticker::new(&format!("KXBENCH-26JAN01-T{}", i % 200)).unwrap(),
        side: if i % 2 == 0 { Side::Yes } else { Side::No },
        price_e6: 10_000 + (i % 97) * 10_000,
        delta_e2: 100 + i % 13,
        sid: 1 + g as i64,
        seq: i,
        occurrence: 0,
    }
}

// Not a check: prints rows/s of the merge and of raw COPY into production's indexed
// orderbook_deltas, and their ratio.
#[test]
#[ignore = "benchmark; run in release with --ignored"]
fn merge_throughput_against_raw_copy() {
    let n: i64 = std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    let (gatherers, prod) = clusters(3);
    let span = 60 * SEC;
    let base = now_us() / SEC * SEC - 5 * span;
    let spool = tempfile::tempdir().unwrap();
    let loaders: Vec<_> = gatherers
        .iter()
        .enumerate()
        .map(|(g, pg)| {
            let url = pg.url("kalshi");
            let dir = spool.path().join(format!("g{g}"));
            std::thread::spawn(move || {
                let (w, p) = writer(&url, g, &dir);
                for i in 0..n {
                    push(&p, Row::Delta(delta(base, i, span, n, g)));
                }
                w.shutdown().unwrap();
            })
        })
        .collect();
    for l in loaders {
        l.join().unwrap();
    }

    // The merge.
    let refs: Vec<&_> = gatherers.iter().collect();
    let mut cfg = dedup_config(&prod, &refs, base);
    cfg.sync.batch_ranges_max = 20;
    let started = Instant::now();
    let d = spawn_dedup(cfg);
    d.wait_synced(base + span, Duration::from_secs(3600));
    let merge_secs = started.elapsed().as_secs_f64();
    let totals = d.finish();
    assert_eq!(totals.merge_rows_written, n as u64);
    let merge_rate = n as f64 / merge_secs;

    // The raw COPY ceiling of a production database (unique keys in place), same rows, in
    // transactions of about the merge's size (20 ranges).
    let raw = PgCluster::start(PgOptions::default()).unwrap();
    kalshi_storage::migrate(
        &mut client(&raw),
        &kalshi_storage::MigrateOptions::production(),
    )
    .unwrap();
    let mut c = client(&raw);
    let cols = Table::OrderbookDeltas.columns().join(", ");
    let per_tx = (n / 3).max(1);
    let started = Instant::now();
    let mut i = 0;
    while i < n {
        let mut body = Vec::new();
        for j in i..(i + per_tx).min(n) {
            encode_delta(&mut body, &delta(base, j, span, n, 0));
        }
        let mut tx = c.transaction().unwrap();
        let mut w = tx
            .copy_in(&format!(
                "COPY orderbook_deltas ({cols}) FROM STDIN (FORMAT binary)"
            ))
            .unwrap();
        w.write_all(COPY_HEADER).unwrap();
        w.write_all(&body).unwrap();
        w.write_all(COPY_TRAILER).unwrap();
        w.finish().unwrap();
        tx.commit().unwrap();
        i += per_tx;
    }
    let raw_rate = n as f64 / started.elapsed().as_secs_f64();
    let busy_rate = n as f64 / totals.busy_seconds;
    eprintln!(
        "merge: {n} rows x 3 gatherers in {merge_secs:.2} s wall (start-up included) = \
         {merge_rate:.0} rows/s written; in jobs {:.2} s = {busy_rate:.0} rows/s written \
         ({:.0} source rows/s read), {} jobs; raw COPY into production: {raw_rate:.0} rows/s; \
         ratio (jobs) {:.2}, ratio (wall) {:.2}",
        totals.busy_seconds,
        3.0 * busy_rate,
        totals.jobs,
        busy_rate / raw_rate,
        merge_rate / raw_rate
    );
}
