//! The deduplicator live, through outages: a gatherer database stopped and restarted (its
//! writer spools and replays late rows), production stopped for about ten seconds; at the end
//! production equals the truth, and only the ranges that changed were merged again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;

fn sleep_until_us(ts: i64) {
    let now = now_us();
    if ts > now {
        std::thread::sleep(Duration::from_micros((ts - now) as u64));
    }
}

// Events are fed in real time (each pushed to a gatherer's writer when the wall clock passes
// its exchange time) while the deduplicator runs. Gatherer 3 alone sees every 47th event.
// Faults: gatherer 3's database is stopped for ~5 s (its writer spools; the deduplicator
// waits down_after, declares it down and goes on with gatherers 1 and 2; after the restart
// the spool replays and gatherer 3 is caught up: the ranges merged without it are merged
// again, the ranges it had already contributed are re-checked and skipped), then production
// is stopped for ~10 s (/health answers 503, dedup_rds_connected is 0; it catches up after).
// Checked against the truth at the end, plus /health's gatherers field and the metric names.
#[test]
fn outages_of_a_gatherer_and_production_lose_and_double_nothing() {
    let (mut gatherers, mut prod) = clusters(3);
    let start = now_us() / SEC * SEC + 2 * SEC;
    let secs = 24;
    let truth = truth(21, start, secs, 300);
    let caps = captures(&truth, 3, 5, 0.08, Some((2, 47)));
    let only_g3 = truth.groups.len() / 47;
    assert!(only_g3 > 10);
    let refs: Vec<&_> = gatherers.iter().collect();
    let cfg = dedup_config(&prod, &refs, start - SEC);
    let d = spawn_dedup(cfg);
    let spool = tempfile::tempdir().unwrap();
    // After the stream the writers keep committing (an unchanged markets row every 100 ms):
    // a gatherer's watermark is its last commit, and a live exchange never goes quiet.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let feeders: Vec<_> = caps
        .into_iter()
        .enumerate()
        .map(|(g, cap)| {
            let url = gatherers[g].url("kalshi");
            let dir = spool.path().join(format!("g{g}"));
            let side = side_rows(&truth, g);
            let m = side
                .iter()
                .rev()
                .find_map(|r| match r {
                    kalshi_writer::Row::Market(m) => Some(m.clone()),
                    _ => None,
                })
                .unwrap();
            let done = done.clone();
            std::thread::spawn(move || {
                let (w, p) = writer(&url, g, &dir);
                for row in side {
                    push(&p, row);
                }
                let mut seq = 0;
                for ev in &cap {
                    sleep_until_us(ev.ts() + 2000);
                    push(&p, row_for(ev, g, &mut seq));
                }
                while !done.load(std::sync::atomic::Ordering::Acquire) {
                    push(&p, kalshi_writer::Row::Market(m.clone()));
                    std::thread::sleep(Duration::from_millis(100));
                }
                w.shutdown().unwrap()
            })
        })
        .collect();

    // Steady state: sample the lag while nothing is wrong.
    let mut lag_max: f64 = 0.0;
    while now_us() < start + 5 * SEC {
        if let Some(l) = d.health().sync_lag_seconds
            && now_us() > start + 2 * SEC
        {
            lag_max = lag_max.max(l);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("steady-state sync lag max {lag_max:.3} s (1 s ranges, 300 ms grace)");

    // Gatherer 3's database goes away.
    let stopped_at = Instant::now();
    gatherers[2].stop().unwrap();
    wait_until("gatherer-3 down", Duration::from_secs(60), || {
        d.health().gatherers["gatherer-3"].state == "down"
    });
    let (code, body) = http_get(d.health_addr, "/health");
    assert_eq!(code, 200, "one gatherer down is still healthy: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["gatherers"]["gatherer-3"]["reachable"], false, "{body}");
    assert_eq!(v["gatherers"]["gatherer-1"]["reachable"], true, "{body}");
    // Merging goes on without it.
    let f = d.health().frontier_ts.unwrap();
    wait_until(
        "frontier moves without gatherer-3",
        Duration::from_secs(60),
        || d.health().frontier_ts.unwrap() >= f + 2 * SEC,
    );
    sleep_until_us(start + 10 * SEC);
    gatherers[2].start_again().unwrap();
    wait_until("gatherer-3 back in sync", Duration::from_secs(120), || {
        let h = d.health();
        let g = &h.gatherers["gatherer-3"];
        g.state == "live" && Some(g.cursor_ts) == h.frontier_ts
    });
    let outage = stopped_at.elapsed();

    // Production goes away for about ten seconds.
    prod.stop().unwrap();
    wait_until("/health 503", Duration::from_secs(60), || {
        http_get(d.health_addr, "/health").0 == 503
    });
    let (_, body) = http_get(d.health_addr, "/health");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["production"]["reachable"], false, "{body}");
    assert!(
        http_get(d.metrics_addr, "/metrics")
            .1
            .contains("dedup_rds_connected 0")
    );
    std::thread::sleep(Duration::from_secs(10));
    prod.start_again().unwrap();

    d.wait_synced(truth.end + 2 * SEC, Duration::from_secs(180));
    done.store(true, std::sync::atomic::Ordering::Release);
    for f in feeders {
        let report = f.join().unwrap();
        assert_eq!(report.pending_batches, 0);
    }
    wait_until("/health 200", Duration::from_secs(60), || {
        http_get(d.health_addr, "/health").0 == 200
    });
    let (_, metrics) = http_get(d.metrics_addr, "/metrics");
    for name in [
        "dedup_sync_lag_seconds ",
        "dedup_gatherer_health{gatherer=\"gatherer-1\"} 1",
        "dedup_gatherer_health{gatherer=\"gatherer-3\"} 1",
        "dedup_rds_connected 1",
        "dedup_duplicate_ratio ",
        "dedup_rows_written_total{table=\"orderbook_deltas\"}",
        "dedup_ranges_remerged_total ",
        "dedup_errors_total{target=\"production\",type=\"connection\"}",
    ] {
        assert!(metrics.contains(name), "{name} not in /metrics:\n{metrics}");
    }
    let totals = d.finish();
    let mut pc = client(&prod);
    assert_production_exact(&mut pc, &truth, 3);
    // Anti-entropy: the ranges merged while gatherer 3 was away were merged again (it had rows
    // in them), those it had contributed before were re-checked and skipped, and no more
    // ranges were re-merged than closed during its absence (1 s ranges; +3 for the edges).
    eprintln!("{totals:?}, gatherer-3 away {outage:?}");
    assert!(totals.ranges_remerged >= 1, "{totals:?}");
    assert!(totals.ranges_unchanged >= 1, "{totals:?}");
    assert!(
        totals.ranges_remerged <= outage.as_secs() + 3,
        "{totals:?} after {outage:?}"
    );
    assert!(
        totals.catchup_rows_written > 0,
        "gatherer 3 contributed rows only it saw"
    );
}
