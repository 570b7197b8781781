//! Memory per subscribed market: the gatherer's resident set size (VmRSS) once it has discovered
//! and subscribed every market of a simulated exchange, for several market counts. The cost per
//! market is the slope between counts (the fixed base, code and buffers, cancels out).
//!
//! A measurement, not a gate: it is `#[ignore]`d and run by hand, in release:
//!
//! ```sh
//! cargo test --release -p kalshi-gatherer --test memory -- --ignored --nocapture
//! KALSHI_MEMORY_MARKETS=1000,10000,100000 cargo test --release -p kalshi-gatherer --test memory -- --ignored --nocapture
//! ```
//! The figures go in bench/README.md ("Gatherer memory").

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Gatherer, GathererConfig, Market, Sim, keys, postgres, temp_dir, wait_until};

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn measure(markets: usize) -> (u64, f64) {
    let dir = temp_dir(&format!("memory-{markets}"));
    let keys = keys(&dir);
    // 10 markets per event, 10 events per series: `markets` / 100 series.
    let market = Market {
        series: markets.div_ceil(100),
        events_per_series: 10,
        markets_per_event: 10,
        actions_per_second: 200,
        new_event_every_secs: 0.0,
        market_lifetime_secs: 86_400.0,
    };
    let sim = Sim::start(&dir, &keys.id, &keys.public, 3, &market);
    let pg = postgres();
    let mut config = GathererConfig::new(&sim, &keys, &pg.url("kalshi"), &dir);
    // The simulator refuses more than 1000 markets per subscription (error 26), as Kalshi does.
    config.markets_per_subscription = 1000;
    config.poller_interval_s = 3600;
    let mut gatherer = Gatherer::start(&config, &dir, "memory");
    // Every market subscribed and its snapshot applied: the books are all in memory. (100k
    // markets take minutes on a small machine: a longer bound than `wait_healthy`'s.)
    wait_until("all markets subscribed", Duration::from_secs(900), || {
        let (status, _) = gatherer.health();
        status == 200
    });
    std::thread::sleep(Duration::from_secs(5));
    let pid = gatherer.pid().unwrap();
    let samples: Vec<u64> = (0..5)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(500));
            rss_kib(pid)
        })
        .collect();
    let rss = *samples.iter().max().unwrap();
    let messages = gatherer.metric("ws_client_messages_received_total");
    let status = gatherer.terminate();
    assert!(status.success(), "{}", gatherer.stderr());
    (rss, messages)
}

#[test]
#[ignore = "a measurement; run in release with --ignored --nocapture"]
fn rss_per_subscribed_market() {
    let counts: Vec<usize> = std::env::var("KALSHI_MEMORY_MARKETS")
        .unwrap_or_else(|_| "1000,10000".to_owned())
        .split(',')
        .map(|c| c.trim().parse().unwrap())
        .collect();
    let mut results = Vec::new();
    for &n in &counts {
        let (rss, messages) = measure(n);
        eprintln!("markets {n:>7}: VmRSS {rss:>8} KiB after {messages:.0} messages");
        results.push((n, rss));
    }
    let (n0, r0) = results[0];
    for &(n, r) in &results[1..] {
        let per_market = (r as f64 - r0 as f64) * 1024.0 / (n - n0) as f64;
        eprintln!("per market between {n0} and {n}: {per_market:.0} bytes");
    }
}
