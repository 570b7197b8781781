//! End-to-end capture tests: the real `kalshi-sim` and `kalshi-gatherer` binaries against a
//! throwaway PostgreSQL. Every check is against the simulator's ground truth (its truth log
//! and its books), never against the gatherer's own view.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Market, Scenario, check_books, check_trades, db, repaired_gaps, unrepaired_gaps};

fn market() -> Market {
    Market {
        series: 6,
        events_per_series: 10,
        markets_per_event: 6,
        actions_per_second: 800,
        new_event_every_secs: 4.0,
        market_lifetime_secs: 20.0,
    }
}

fn run_for(scenario: &mut Scenario, seconds: u64) {
    for _ in 0..seconds * 5 {
        scenario.gatherer.assert_running();
        std::thread::sleep(Duration::from_millis(200));
    }
}

// Completeness: 360 markets at start, a new event (6 markets) every 4 s, markets closing after
// 20 s and settling 4 s later, for 30 s. Then the exchange is paused and the gatherer stopped
// with SIGTERM (exit 0). Every trade of the truth log is stored, none twice from the WebSocket;
// every still-subscribed market's book, rebuilt from its latest stored snapshot and the later
// deltas, equals the simulator's book; the lifecycle and REST tables are filled.
#[test]
fn completeness() {
    let mut s = Scenario::start("complete", 11, &market(), |_| {});
    run_for(&mut s, 30);
    let metrics = s.gatherer.metrics_text();
    assert!(common::metric_value(&metrics, "conn_manager_connections_total") >= 3.0);
    let (truth, books) = s.finish();
    let mut client = db(&s.pg);
    let (trades, ws_only, by_rest) = check_trades(&truth, &mut client);
    let compared = check_books(&mut client, &books);
    assert!(trades > 1_000, "only {trades} trades in the run");
    assert!(compared > 100, "only {compared} books compared");
    // New listings and settlements went through the lifecycle channel and discovery.
    let lifecycle: i64 = client
        .query_one(
            "SELECT count(*) FROM market_lifecycle WHERE event_type IN ('created', 'determined', 'settled')",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(lifecycle > 10, "{lifecycle} lifecycle rows");
    let settled: i64 = client
        .query_one(
            "SELECT count(*) FROM markets WHERE status IN ('determined', 'finalized', 'closed')",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(settled > 0, "no market left the subscription");
    let rest_snapshots: i64 = client
        .query_one(
            "SELECT count(*) FROM orderbook_snapshots WHERE source = 'rest'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(rest_snapshots > 100, "{rest_snapshots} REST snapshots");
    // The start's missed window (seeded resume point) is a repaired connection gap.
    assert!(unrepaired_gaps(&mut client).is_empty());
    assert!(
        repaired_gaps(&mut client)
            .iter()
            .any(|(channel, repair)| channel == "connection" && repair == "reconnect")
    );
    println!(
        "completeness: {trades} trades ({ws_only} only over the WebSocket, {by_rest} also by REST backfill), {compared} books compared, {rest_snapshots} REST snapshots"
    );
}
