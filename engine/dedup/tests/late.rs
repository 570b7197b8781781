//! Late rows: rows whose exchange time lies in ranges merged minutes ago arrive in a live
//! gatherer's database (a REST trade backfill, delayed WebSocket frames). The late-row scan
//! finds their ranges by arrival time and merges them again; production ends equal to the
//! truth, and a late arrival of rows production already holds writes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use kalshi_writer::Row;

fn count(pc: &mut postgres::Client, table: &str) -> i64 {
    pc.query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .unwrap()
        .get(0)
}

// The truth is 20 s of exchange time four minutes ago. Every 29th event group is seen by
// gatherer 3 alone; of those, its trades and deltas are held back. The three writers commit
// everything else and keep committing (a markets row every 100 ms, as a live exchange would),
// and the deduplicator merges every range up to the present. Then gatherer 3 writes the held
// back rows in two waves, stamped with their arrival time (now), while it stays live: their
// ranges closed minutes ago. Production must end equal to the truth (every held-back trade and
// delta added by late jobs, nothing twice). Then gatherer 1 receives REST copies of trades it
// already had (a backfill overlapping the stream): their ranges are found and re-checked, but
// nothing is written. Finally a re-check of every gatherer from the start changes nothing.
#[test]
fn rows_arriving_minutes_after_their_range_closed_are_merged() {
    let (gatherers, prod) = clusters(3);
    let start = now_us() / SEC * SEC - 240 * SEC;
    let truth = truth(31, start, 20, 300);
    let caps = captures(&truth, 3, 17, 0.1, Some((2, 29)));
    // Gatherer 3's held-back rows: trades and deltas of the groups only it saw.
    let mut held: Vec<Ev> = Vec::new();
    let mut g3_now: Vec<Ev> = Vec::new();
    let only_g3: std::collections::HashSet<usize> =
        (0..truth.groups.len()).filter(|gi| gi % 29 == 28).collect();
    {
        // Rebuild which captured events belong to the only-g3 groups (captures keeps order).
        let mut late_keys = std::collections::HashSet::new();
        for gi in &only_g3 {
            for ev in &truth.groups[*gi] {
                if matches!(ev, Ev::Trade { .. } | Ev::Delta { .. }) {
                    late_keys.insert(format!("{ev:?}"));
                }
            }
        }
        for ev in &caps[2] {
            if late_keys.contains(&format!("{ev:?}")) {
                held.push(ev.clone());
            } else {
                g3_now.push(ev.clone());
            }
        }
    }
    let held_trades = held
        .iter()
        .filter(|e| matches!(e, Ev::Trade { .. }))
        .count();
    assert!(
        held_trades >= 5 && held.len() - held_trades >= 20,
        "{held_trades} / {}",
        held.len()
    );

    let spool = tempfile::tempdir().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let (late_tx, late_rx) = std::sync::mpsc::channel::<Vec<Row>>();
    let mut late_rx = Some(late_rx);
    let (redo_tx, redo_rx) = std::sync::mpsc::channel::<Vec<Row>>();
    let mut redo_rx = Some(redo_rx);
    let feeders: Vec<_> = (0..3)
        .map(|g| {
            let url = gatherers[g].url("kalshi");
            let dir = spool.path().join(format!("g{g}"));
            let cap = if g == 2 {
                g3_now.clone()
            } else {
                caps[g].clone()
            };
            let side = side_rows(&truth, g);
            let m = side
                .iter()
                .rev()
                .find_map(|r| match r {
                    Row::Market(m) => Some(m.clone()),
                    _ => None,
                })
                .unwrap();
            let done = done.clone();
            let extra = match g {
                0 => redo_rx.take(),
                2 => late_rx.take(),
                _ => None,
            };
            std::thread::spawn(move || {
                let (w, p) = writer(&url, g, &dir);
                for row in side {
                    push(&p, row);
                }
                let mut seq = 0;
                for ev in &cap {
                    push(&p, row_for(ev, g, &mut seq));
                }
                while !done.load(Ordering::Acquire) {
                    if let Some(rx) = &extra {
                        while let Ok(rows) = rx.try_recv() {
                            for mut row in rows {
                                // Stamped on arrival, as a gatherer does.
                                match &mut row {
                                    Row::Trade(t) => t.received_ts = now_us(),
                                    Row::Delta(x) => x.received_ts = now_us(),
                                    _ => {}
                                }
                                push(&p, row);
                            }
                        }
                    }
                    push(&p, Row::Market(m.clone()));
                    std::thread::sleep(Duration::from_millis(100));
                }
                w.shutdown().unwrap()
            })
        })
        .collect();

    // The first rows carry receive times minutes old: let them commit before the
    // deduplicator starts (a gatherer stamps rows on receipt; these are not late arrivals).
    for g in 0..3 {
        let cap = if g == 2 { &g3_now } else { &caps[g] };
        let want = cap
            .iter()
            .filter(|e| matches!(e, Ev::Trade { .. } | Ev::Delta { .. }))
            .count() as i64;
        let mut gc = client(&gatherers[g]);
        wait_until("first rows committed", Duration::from_secs(60), || {
            count(&mut gc, "trades") + count(&mut gc, "orderbook_deltas") == want
        });
    }
    let refs: Vec<&_> = gatherers.iter().collect();
    let cfg = dedup_config(&prod, &refs, start - 2 * SEC);
    let d = spawn_dedup(cfg.clone());
    d.wait_synced(now_us() - 2 * SEC, Duration::from_secs(180));
    let mut pc = client(&prod);
    let trades_before = count(&mut pc, "trades");
    let truth_trades = truth
        .events()
        .filter(|e| matches!(e, Ev::Trade { .. }))
        .count() as i64;
    assert_eq!(
        trades_before,
        truth_trades - held_trades as i64,
        "before the late rows, production lacks exactly the held-back trades"
    );

    // The late rows, stamped with their arrival time, in two waves a few seconds apart.
    let stamp = |evs: &[Ev], g: usize, seq0: i64| -> Vec<Row> {
        let mut seq = seq0;
        evs.iter()
            .map(|ev| {
                let mut row = row_for(ev, g, &mut seq);
                if let Row::Trade(t) = &mut row {
                    t.source = kalshi_writer::Source::Rest;
                    t.sid = None;
                    t.seq = None;
                }
                row
            })
            .collect()
    };
    let half = held.len() / 2;
    late_tx.send(stamp(&held[..half], 2, 1_000_000)).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    late_tx.send(stamp(&held[half..], 2, 2_000_000)).unwrap();
    let deltas_truth = truth
        .events()
        .filter(|e| matches!(e, Ev::Delta { .. }))
        .count() as i64;
    wait_until("late rows merged", Duration::from_secs(120), || {
        count(&mut pc, "trades") == truth_trades
            && count(&mut pc, "orderbook_deltas") == deltas_truth
    });
    assert_production_exact(&mut pc, &truth, 3);
    let digest = production_digest(&mut pc);

    // Gatherer 1 gets REST copies of 20 trades it already has: re-checked, nothing written.
    let dup: Vec<Ev> = caps[0]
        .iter()
        .filter(|e| matches!(e, Ev::Trade { .. }))
        .take(20)
        .cloned()
        .collect();
    let t = d.finish();
    eprintln!("{t:?}");
    assert!(t.late_ranges_found >= 2, "{t:?}");
    assert!(t.late_ranges_remerged >= 2, "{t:?}");
    assert_eq!(t.late_rows_written, held.len() as u64, "{t:?}");
    let d = spawn_dedup(cfg.clone());
    d.wait_synced(now_us() - 2 * SEC, Duration::from_secs(60));
    redo_tx.send(stamp(&dup, 0, 3_000_000)).unwrap();
    wait_until(
        "REST duplicates re-checked",
        Duration::from_secs(60),
        || {
            let (_, m) = http_get(d.metrics_addr, "/metrics");
            m.lines()
                .find(|l| {
                    l.starts_with("dedup_late_ranges_remerged_total{gatherer=\"gatherer-1\"}")
                })
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| v >= 1.0)
        },
    );
    let (_, metrics) = http_get(d.metrics_addr, "/metrics");
    assert!(
        metrics.contains("dedup_late_ranges_total{gatherer=\"gatherer-1\"}"),
        "{metrics}"
    );
    // A re-check of every gatherer from the start: every fingerprint matches.
    d.shared.rechecks.lock().push((None, start - 2 * SEC));
    wait_until("re-check to start", Duration::from_secs(30), || {
        d.health()
            .gatherers
            .values()
            .all(|g| g.cursor_ts < truth.end)
    });
    d.wait_synced(now_us() - 2 * SEC, Duration::from_secs(120));
    let t = d.finish();
    eprintln!("{t:?}");
    assert_eq!(t.late_rows_written, 0, "{t:?}");
    assert_eq!(t.catchup_rows_written, 0, "{t:?}");
    assert_eq!(production_digest(&mut pc), digest);
    assert_production_exact(&mut pc, &truth, 3);
    done.store(true, Ordering::Release);
    for f in feeders {
        assert_eq!(f.join().unwrap().pending_batches, 0);
    }
}
