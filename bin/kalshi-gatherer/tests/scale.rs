//! Capture at scale and across shard cores: a few thousand markets with new listings and
//! settlements during the run, captured by a gatherer with two shard cores. Checked against
//! the simulator's truth log and final books, and the placement against `shard_for`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Market, Scenario, check_books, check_trades, db, unrepaired_gaps};

// 2,400 markets at start (24 series × 10 events × 10 markets), a new event of 10 markets every
// 3 s; the first event of each series closes 30 s in (240 markets settle during the run: they
// are determined 2 s after closing and settled 2 s later), the others later; a low action
// rate so that a debug build on a loaded 2-core machine keeps up. Two shard cores
// (`engine.shard_cores = [0, 2]`, not pinned).
//
// Checked: every truth trade is stored exactly once from the WebSocket (or by backfill); every
// market's book rebuilt from its latest stored snapshot plus the later deltas equals the
// simulator's; each shard holds exactly the live markets `shard_for(ticker, 2)` gives it (the
// per-shard gauge against the `markets` table, with both shards non-empty).
//
// Earlier failures had two causes that fit their evidence, both fixed: a connection that dropped before its
// trade subscription was confirmed had its resume window replaced by the next connection's
// later one (start-window trades lost at a load average of ~27), and the final checks stopped
// the gatherer before it had read every delta (a book one delta short in a CI run).
#[test]
fn completeness_across_two_shards_at_scale() {
    let market = Market {
        series: 24,
        events_per_series: 10,
        markets_per_event: 10,
        actions_per_second: 300,
        new_event_every_secs: 3.0,
        market_lifetime_secs: 300.0,
    };
    let mut s = Scenario::start("scale", 21, &market, |config| {
        config.shard_cores = vec![0, 2];
        config.writer_core = 1;
        config.markets_per_subscription = 500;
        config.poller_interval_s = 60;
    });
    for _ in 0..45 * 5 {
        s.gatherer.assert_running();
        std::thread::sleep(Duration::from_millis(200));
    }
    // Placement, checked once the exchange is halted (no lifecycle changes) and every trade is
    // stored: each shard's gauge settles to the number of live markets that hash to it.
    let (truth, books) = s.finish_with(|gatherer, client| {
        let started = std::time::Instant::now();
        let last = loop {
            let live: BTreeSet<String> = client
                .query(
                    "SELECT ticker FROM markets WHERE status IN ('initialized', 'active', 'inactive')",
                    &[],
                )
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            let mut expected = [0_usize; 2];
            for ticker in &live {
                expected[kalshi_gather::shard_for(ticker, 2)] += 1;
            }
            let metrics = gatherer.metrics_text();
            let gauge = |shard: usize| {
                common::metric_value(
                    &metrics,
                    &format!("gatherer_shard_markets{{shard=\"{shard}\"}}"),
                ) as usize
            };
            let got = [gauge(0), gauge(1)];
            let last = format!("expected {expected:?}, gauges {got:?}");
            if expected == got && expected.iter().all(|&n| n > 500) {
                break last;
            }
            assert!(
                started.elapsed() < common::PATIENCE,
                "shard gauges never matched shard_for: {last}"
            );
            std::thread::sleep(Duration::from_millis(500));
        };
        println!("placement: {last}");
    });
    let mut client = db(&s.pg);
    let (trades, ws_only, by_rest) = check_trades(&truth, &mut client);
    let compared = check_books(&mut client, &books);
    let markets: i64 = client
        .query_one("SELECT count(*) FROM markets", &[])
        .unwrap()
        .get(0);
    let settled: i64 = client
        .query_one(
            "SELECT count(*) FROM markets WHERE status IN ('determined', 'finalized', 'closed')",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(markets > 2_400, "{markets} markets");
    assert!(
        settled > 100,
        "only {settled} markets left the subscription"
    );
    assert!(trades > 2_000, "only {trades} trades in the run");
    assert!(compared > 2_000, "only {compared} books compared");
    assert!(unrepaired_gaps(&mut client).is_empty());
    println!(
        "scale: {markets} markets ({settled} settled or closed), {trades} trades ({ws_only} WebSocket only, {by_rest} also by backfill), {compared} books compared"
    );
}
