//! The merge against ground truth: three gatherers' captures of one simulated exchange, each
//! with its own drops, merged into production exactly; replays change nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;

// Three gatherers each miss about 10% of the simulator's events (different ones; every 53rd
// event only gatherer 3 saw; some identical same-µs delta pairs are captured only in part).
// After the deduplicator has merged every range, production must equal the truth: every
// trade once, deltas as a multiset (identical real deltas kept with their multiplicity,
// numbered by occurrence), books rebuilt from production equal the exchange's final books,
// tickers as multisets, lifecycle events (stored by each gatherer at its own receive time,
// copies up to 1.4 s apart and often in different ranges) each exactly once, identical ones
// 9 s apart twice, every gatherer's snapshots and gap rows once,
// newest markets/events. Then two replays: every gatherer re-checked from the start (all
// fingerprints match, nothing is re-merged or written), and a fresh deduplicator with its
// state wiped merging everything again (production unchanged).
#[test]
fn three_gatherers_merge_exactly_and_replays_change_nothing() {
    let (gatherers, prod) = clusters(3);
    let start = now_us() / SEC * SEC - 150 * SEC;
    let truth = truth(7, start, 20, 400);
    let caps = captures(&truth, 3, 11, 0.1, Some((2, 53)));
    let spool = tempfile::tempdir().unwrap();
    // The earliest writer shutdown: the writers' final watermarks are at or after it.
    let mut first_shutdown: Option<i64> = None;
    for (g, cap) in caps.iter().enumerate() {
        let (w, p) = writer(
            &gatherers[g].url("kalshi"),
            g,
            &spool.path().join(format!("g{g}")),
        );
        let mut seq = 0;
        for ev in cap {
            push(&p, row_for(ev, g, &mut seq));
        }
        for row in side_rows(&truth, g) {
            push(&p, row);
        }
        first_shutdown.get_or_insert_with(now_us);
        let report = w.shutdown().unwrap();
        assert_eq!(report.pending_batches, 0);
    }
    let first_shutdown = first_shutdown.unwrap();
    let refs: Vec<&_> = gatherers.iter().collect();
    let cfg = dedup_config(&prod, &refs, start - 2 * SEC);
    let d = spawn_dedup(cfg.clone());
    d.wait_synced(truth.end + SEC, Duration::from_secs(180));
    let mut pc = client(&prod);
    wait_until("markets synced", Duration::from_secs(60), || {
        pc.query_one(
            "SELECT count(*) FROM markets WHERE title = 'seen by gatherer 2'",
            &[],
        )
        .unwrap()
        .get::<_, i64>(0)
            == truth.tickers.len() as i64
    });
    // Caught up as far as the (stopped) writers' watermarks allow: a range closes once every
    // watermark is `grace` past its end, and the writers stopped no earlier than
    // `first_shutdown`, so every range ending two seconds before it closes.
    d.wait_synced(first_shutdown - 2 * SEC, Duration::from_secs(60));
    let h = d.health();
    let totals = d.finish();
    assert_production_exact(&mut pc, &truth, 3);
    assert!(h.healthy, "{h:?}");
    // Every row arrived before its range was read: the late scan re-read nothing.
    assert_eq!(totals.late_ranges_found, 0, "{totals:?}");
    // About 2/3 duplicates with three gatherers that each miss ~10%.
    let ratio = 1.0 - totals.merge_rows_written as f64 / totals.merge_rows_read as f64;
    assert!((0.55..0.70).contains(&ratio), "duplicate ratio {ratio}");
    // Fingerprints were stored per (range, table, source).
    let sources: Vec<String> = pc
        .query("SELECT DISTINCT source FROM dedup_ranges ORDER BY 1", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        sources,
        ["gatherer-1", "gatherer-2", "gatherer-3", "merged"]
    );
    let digest = production_digest(&mut pc);

    // Replay 1: re-check every gatherer from the start: all fingerprints match.
    let d = spawn_dedup(cfg.clone());
    d.wait_synced(truth.end + SEC, Duration::from_secs(60));
    d.shared.rechecks.lock().push((None, start - 2 * SEC));
    wait_until("re-check to start", Duration::from_secs(30), || {
        d.health()
            .gatherers
            .values()
            .all(|g| g.cursor_ts < truth.end)
    });
    let frontier = d.health().frontier_ts.unwrap();
    d.wait_synced(frontier, Duration::from_secs(120));
    let t = d.finish();
    assert_eq!(t.ranges_remerged, 0, "{t:?}");
    assert!(t.ranges_unchanged >= 3 * 20, "{t:?}");
    assert_eq!(t.catchup_rows_written, 0);
    assert_eq!(production_digest(&mut pc), digest);

    // Replay 2: wipe the deduplicator's state and merge everything again from scratch.
    pc.batch_execute("DELETE FROM dedup_ranges; DELETE FROM dedup_watermarks;")
        .unwrap();
    let d = spawn_dedup(cfg);
    d.wait_synced(truth.end + SEC, Duration::from_secs(180));
    let t = d.finish();
    assert!(t.merge_rows_read > 0);
    assert_eq!(t.merge_rows_written, 0, "{t:?}");
    assert_eq!(production_digest(&mut pc), digest);
}
