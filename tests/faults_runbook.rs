//! The runbook as a test suite (issue 8): one platform (simulator, three gatherers with their
//! local PostgreSQL, deduplicator, production) runs a sequence of scenarios. Each injects one
//! fault from RUNBOOK.md, checks with promtool that the runbook's alert fires over the metrics
//! recorded meanwhile (see `faults/promtool.rs` for the time dilation), lifts the fault, runs
//! the runbook's verification (the metrics it names recover) and prints the measured recovery
//! time. The run ends with the truth check: production holds every trade of the exchange's
//! truth log exactly once and its books equal the exchange's final books.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "faults/promtool.rs"]
mod promtool;

use std::time::{Duration, Instant};

use kalshi_cli::platform::{Options, Platform, parse_metrics};
use promtool::Recorder;

fn metric(platform: &Platform, url: &str, name: &str) -> Option<f64> {
    platform
        .get(url)
        .filter(|(s, _)| *s == 200)
        .and_then(|(_, b)| parse_metrics(&b).get(name).copied())
}

/// Records steps until `done` holds (panics after `limit` steps). Returns the steps taken.
fn record_until(
    rec: &mut Recorder,
    p: &Platform,
    limit: usize,
    what: &str,
    mut done: impl FnMut(&Platform) -> bool,
) -> usize {
    for n in 1..=limit {
        rec.step(p);
        if done(p) {
            return n;
        }
    }
    panic!("{what}: not reached within {limit} steps");
}

fn labels(pairs: &[(&'static str, &str)]) -> promtool::Labels {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

fn gaps(p: &Platform, g: usize) -> (i64, i64) {
    let mut c =
        postgres::Client::connect(&p.gatherers[g].db.url("kalshi"), postgres::NoTls).unwrap();
    let row = c
        .query_one(
            // A gap is one detection; the gatherer writes a second row with the same detection
            // when the repair completes (see tests/README.md), so "unrepaired" is a detection
            // with no repaired row.
            "SELECT count(DISTINCT (detected_ts, channel, sid)), \
                    count(DISTINCT (detected_ts, channel, sid)) FILTER (WHERE NOT EXISTS ( \
                        SELECT 1 FROM sequence_gaps r WHERE r.detected_ts = g.detected_ts \
                        AND r.channel = g.channel AND r.sid IS NOT DISTINCT FROM g.sid \
                        AND r.repaired_ts IS NOT NULL)) \
             FROM sequence_gaps g",
            &[],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

fn wait_gaps_repaired(p: &Platform, g: usize, more_than: i64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (total, open) = gaps(p, g);
        if total > more_than && open == 0 {
            eprintln!(
                "faults: {what}: gatherer-{} has {total} gaps recorded, all repaired",
                g + 1
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: gatherer-{}: {total} gaps (before: {more_than}), {open} unrepaired",
            g + 1
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
#[ignore = "in progress: scenarios (b)-(d) are written but not yet passing in one run; run with --ignored"]
fn runbook_faults_are_alerted_survived_and_lose_nothing() {
    promtool::promtool();
    let workdir = std::env::temp_dir().join(format!("kalshi-faults-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&workdir);
    let mut p = Platform::start(&Options {
        seed: 7,
        series: 3,
        events_per_series: 2,
        markets_per_event: 4,
        actions_per_second: 200,
        workdir: workdir.clone(),
        bin_dir: None,
    })
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    while !p.all_healthy() {
        assert!(
            Instant::now() < deadline,
            "the gatherers never became healthy"
        );
        assert!(p.exited().is_none(), "a process exited: {:?}", p.exited());
        std::thread::sleep(Duration::from_millis(500));
    }
    let from_ts = p.exchange_time_us().unwrap() + 3_000_000;
    std::thread::sleep(Duration::from_secs(4));
    let mut recoveries = Vec::new();

    // (a) Gatherer down: one gatherer SIGKILLed, then restarted with the same config and spool.
    {
        let scenario = "gatherer-down-one-killed";
        let g2 = &p.gatherers[1].service;
        let health = g2.health_url.clone();
        let metrics_url = g2.metrics_url.clone();
        let (gaps_before, _) = gaps(&p, 1);
        let mut rec = Recorder::new(&["writer_inserts_total"]);
        for _ in 0..3 {
            rec.step(&p);
        }
        let down_at = rec.len();
        p.gatherers[1].service.kill9();
        for _ in 0..7 {
            rec.step(&p);
        }
        let last_down = rec.len() - 1;
        p.gatherers[1].service.start().unwrap();
        let lifted = Instant::now();
        record_until(&mut rec, &p, 120, "gatherer-2 healthy again", |p| {
            p.get(&health).is_some_and(|(s, _)| s == 200)
        });
        let healthy = lifted.elapsed();
        // Runbook verification: metrics scraped, data flowing (inserts grow).
        let before = metric(&p, &metrics_url, "writer_inserts_total").unwrap_or(0.0);
        record_until(&mut rec, &p, 60, "gatherer-2 inserting again", |p| {
            metric(p, &metrics_url, "writer_inserts_total").unwrap_or(0.0) > before
        });
        rec.check(
            &workdir,
            scenario,
            "SingleGathererDown",
            last_down,
            &[labels(&[
                ("severity", "warning"),
                ("job", "kalshi-gatherer"),
                ("instance", "gatherer-2"),
            ])],
            &[down_at.saturating_sub(1), rec.len() - 1],
        );
        rec.check(&workdir, scenario, "AllGatherersDown", last_down, &[], &[]);
        wait_gaps_repaired(&p, 1, gaps_before, scenario);
        eprintln!("faults: {scenario}: healthy {healthy:?} after restart");
        recoveries.push((scenario, healthy));
    }

    // (b) High error rate: gatherer-1's local database stopped, then started again.
    {
        let scenario = "high-error-rate-local-db-stopped";
        let url = p.gatherers[0].service.metrics_url.clone();
        let mut rec = Recorder::new(&["writer_inserts_total", "writer_errors_total"]);
        for _ in 0..3 {
            rec.step(&p);
        }
        let errors_before = errors_of(&p, &url, "connection");
        p.gatherers[0].db.stop().unwrap();
        // Long enough that, at 15 s of rule time per step, the 5-minute window holds only
        // errors for more than the rule's `for: 5m`.
        for _ in 0..45 {
            rec.step(&p);
        }
        let last_down = rec.len() - 1;
        let connection_errors = errors_of(&p, &url, "connection") - errors_before;
        assert!(
            connection_errors > 0.0,
            "{scenario}: writer_errors_total{{type=\"connection\"}} did not grow"
        );
        for kind in ["constraint", "timeout"] {
            let n = errors_of(&p, &url, kind);
            assert_eq!(
                n, 0.0,
                "{scenario}: writer_errors_total{{type=\"{kind}\"}} is {n}"
            );
        }
        let spooled = metric(&p, &url, "writer_spool_batches").unwrap_or(0.0);
        assert!(
            spooled > 0.0,
            "{scenario}: no batch was spooled while the database was down"
        );
        p.gatherers[0].db.start_again().unwrap();
        let lifted = Instant::now();
        // Runbook verification: errors stop, inserts continue, the spool drains to 0.
        let inserts = metric(&p, &url, "writer_inserts_total").unwrap_or(0.0);
        record_until(&mut rec, &p, 180, "gatherer-1 spool replayed", |p| {
            metric(p, &url, "writer_spool_batches") == Some(0.0)
                && metric(p, &url, "writer_inserts_total").unwrap_or(0.0) > inserts
        });
        let recovered = lifted.elapsed();
        let settled = errors_of(&p, &url, "connection");
        for _ in 0..3 {
            rec.step(&p);
        }
        assert_eq!(
            errors_of(&p, &url, "connection"),
            settled,
            "{scenario}: connection errors still rising after recovery"
        );
        rec.check(
            &workdir,
            scenario,
            "HighWriterErrorRate",
            last_down,
            &[labels(&[
                ("severity", "warning"),
                ("job", "kalshi-gatherer"),
                ("instance", "gatherer-1"),
            ])],
            &[2],
        );
        eprintln!(
            "faults: {scenario}: {connection_errors} connection errors, {spooled} bytes spooled; spool replayed {recovered:?} after restart"
        );
        recoveries.push((scenario, recovered));
    }

    // (c) RDS unreachable: production stopped ~40 s, then back.
    {
        let scenario = "production-unreachable";
        let url = p.dedup.metrics_url.clone();
        let mut rec = Recorder::new(&["dedup_rds_connected", "dedup_sync_lag_seconds"]);
        for _ in 0..3 {
            rec.step(&p);
        }
        p.production.stop().unwrap();
        // Real seconds matter here: the lag gauge is wall time and must pass 30 s.
        record_until(&mut rec, &p, 120, "dedup lag above 30 s", |p| {
            metric(p, &url, "dedup_sync_lag_seconds").unwrap_or(0.0) > 30.0
        });
        for _ in 0..6 {
            rec.step(&p);
        }
        let last_down = rec.len() - 1;
        p.production.start_again().unwrap();
        let lifted = Instant::now();
        record_until(
            &mut rec,
            &p,
            180,
            "production reconnected and lag back under 10 s",
            |p| {
                metric(p, &url, "dedup_rds_connected") == Some(1.0)
                    && metric(p, &url, "dedup_sync_lag_seconds").is_some_and(|l| l < 10.0)
            },
        );
        let recovered = lifted.elapsed();
        rec.step(&p);
        let dedup = labels(&[
            ("severity", "critical"),
            ("job", "kalshi-deduplicator"),
            ("instance", "deduplicator"),
        ]);
        rec.check(
            &workdir,
            scenario,
            "ProductionRDSUnreachable",
            last_down,
            std::slice::from_ref(&dedup),
            &[2, rec.len() - 1],
        );
        rec.check(
            &workdir,
            scenario,
            "DeduplicatorSyncStalled",
            last_down,
            &[dedup],
            &[2, rec.len() - 1],
        );
        eprintln!("faults: {scenario}: caught up {recovered:?} after production came back");
        recoveries.push((scenario, recovered));
    }

    // (d) WebSocket down: the exchange pauses (every connection closed), then resumes.
    {
        let scenario = "websocket-down-exchange-paused";
        let before: Vec<i64> = (0..3).map(|g| gaps(&p, g).0).collect();
        let mut rec = Recorder::new(&["conn_manager_connections_healthy"]);
        for _ in 0..3 {
            rec.step(&p);
        }
        p.control("/pause").unwrap();
        for _ in 0..8 {
            rec.step(&p);
        }
        let last_down = rec.len() - 1;
        p.control("/resume").unwrap();
        let lifted = Instant::now();
        let urls: Vec<String> = p
            .gatherers
            .iter()
            .map(|g| g.service.metrics_url.clone())
            .collect();
        record_until(&mut rec, &p, 180, "every gatherer connected again", |p| {
            urls.iter()
                .all(|u| metric(p, u, "conn_manager_connections_healthy").unwrap_or(0.0) > 0.0)
        });
        let recovered = lifted.elapsed();
        rec.step(&p);
        let expected: Vec<promtool::Labels> = (1..=3)
            .map(|g| {
                vec![
                    ("severity", "critical".to_owned()),
                    ("job", "kalshi-gatherer".to_owned()),
                    ("instance", format!("gatherer-{g}")),
                ]
            })
            .collect();
        rec.check(
            &workdir,
            scenario,
            "AllWebSocketsDisconnected",
            last_down,
            &expected,
            &[2, rec.len() - 1],
        );
        // The runbook: "check that the outage was recorded and repaired".
        for (g, b) in before.iter().enumerate() {
            wait_gaps_repaired(&p, g, *b, scenario);
        }
        eprintln!("faults: {scenario}: all connected {recovered:?} after resume");
        recoveries.push((scenario, recovered));
    }

    // The truth check over the whole run.
    let reports = p
        .halt_and_verify(from_ts, Duration::from_secs(180))
        .unwrap();
    for (g, r) in reports.gatherers.iter().enumerate() {
        eprintln!("faults: gatherer-{} database: {r}", g + 1);
    }
    eprintln!("faults: production: {}", reports.production);
    for (scenario, t) in &recoveries {
        eprintln!("faults: recovery time {scenario}: {:.1} s", t.as_secs_f64());
    }
    assert!(
        reports.production.passed(),
        "production does not match the exchange's truth:\n{}",
        reports.production
    );
    assert!(
        reports.production.trades_expected > 50,
        "too few trades checked"
    );
    let _ = std::fs::remove_dir_all(&workdir);
}

fn errors_of(p: &Platform, url: &str, kind: &str) -> f64 {
    let Some((_, body)) = p.get(url) else {
        return f64::NAN;
    };
    let needle = format!("writer_errors_total{{type=\"{kind}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&needle))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}
