//! The deduplicator end to end (issue 6's acceptance): the simulator, three gatherers, three
//! local databases, the deduplicator and production, all real processes and clusters. During
//! the run one gatherer is SIGKILLed and restarted, another gatherer's database is stopped for
//! 10 s, production is stopped for 10 s, and the simulator drops a different frame on each
//! gatherer's subscriptions. At the end production must hold, against the truth log, every
//! trade exactly once, every delta with its multiplicity (none doubled, those only one gatherer
//! saw present), and every market's book rebuilt from production equal to the final book.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use kalshi_cli::platform::{BookRule, Options, Platform};

fn wait(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn production_is_exact_through_combined_faults() {
    let workdir = std::env::temp_dir().join(format!("kalshi-dedup-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&workdir);
    let mut p = Platform::start(&Options {
        seed: 11,
        series: 3,
        events_per_series: 3,
        markets_per_event: 4,
        actions_per_second: 250,
        workdir: workdir.clone(),
        bin_dir: None,
    })
    .unwrap();
    wait("healthy gatherers", Duration::from_secs(180), || {
        assert!(p.exited().is_none(), "a process exited: {:?}", p.exited());
        p.all_healthy()
    });
    let from_ts = p.exchange_time_us().unwrap() + 3_000_000;
    // Steady state before any fault: the deduplicator's lag, sampled for 10 s (reported, not
    // asserted: the machine is shared).
    let lag_url = p.dedup.metrics_url.clone();
    let mut lag_max: f64 = 0.0;
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(500));
        let lag = p.get(&lag_url).and_then(|(_, body)| {
            kalshi_cli::platform::parse_metrics(&body)
                .get("dedup_sync_lag_seconds")
                .copied()
        });
        if let Some(lag) = lag {
            lag_max = lag_max.max(lag);
        }
    }
    eprintln!("dedup e2e: steady-state dedup_sync_lag_seconds max {lag_max:.2} s over 10 s");

    // A different frame dropped on each connection: one connection at a time, a second apart.
    let stats = p.sim_stats().unwrap();
    let mut dropped = 0;
    for conn in stats["connections"].as_array().unwrap() {
        let id = conn["id"].as_u64().unwrap();
        let Some(sub) = conn["subscriptions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["channel"] == "orderbook_delta")
        else {
            continue;
        };
        let sid = sub["sid"].as_u64().unwrap();
        p.control(&format!("/skip-seq?conn={id}&sid={sid}"))
            .unwrap();
        dropped += 1;
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(
        dropped >= 3,
        "expected a delta subscription per gatherer: {stats}"
    );

    // One gatherer SIGKILLed, then restarted with the same config and spool.
    p.gatherers[1].service.kill9();
    std::thread::sleep(Duration::from_secs(3));
    p.gatherers[1].service.start().unwrap();

    // Another gatherer's database stopped for 10 s (it spools meanwhile).
    p.gatherers[2].db.stop().unwrap();
    std::thread::sleep(Duration::from_secs(10));
    p.gatherers[2].db.start_again().unwrap();

    // Production stopped for 10 s (the deduplicator keeps its place).
    p.production.stop().unwrap();
    std::thread::sleep(Duration::from_secs(10));
    p.production.start_again().unwrap();

    wait("the platform to recover", Duration::from_secs(180), || {
        assert!(p.exited().is_none(), "a process exited: {:?}", p.exited());
        p.all_healthy()
    });
    std::thread::sleep(Duration::from_secs(3));

    let reports = p
        // No WebSocket outage in this run: every delta must be there (the exact rule).
        .halt_and_verify_with(from_ts, Duration::from_secs(240), BookRule::Exact)
        .unwrap();
    for (g, r) in reports.gatherers.iter().enumerate() {
        eprintln!("dedup e2e: gatherer-{} database: {r}", g + 1);
    }
    eprintln!("dedup e2e: production: {}", reports.production);
    let prod = &reports.production;
    assert!(
        prod.passed(),
        "production does not match the truth:\n{prod}"
    );
    assert!(prod.trades_expected > 100, "too few trades checked: {prod}");
    assert!(prod.deltas_expected > 500, "too few deltas checked: {prod}");
    // The killed gatherer really missed data that production has from the others.
    assert!(
        !reports.gatherers[1].passed(),
        "gatherer-2 was killed for 3 s yet its database is complete: {}",
        reports.gatherers[1]
    );
    for (name, status) in &reports.exits {
        assert!(
            status.is_some_and(|s| s.success()),
            "{name} did not exit cleanly: {status:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&workdir);
}
