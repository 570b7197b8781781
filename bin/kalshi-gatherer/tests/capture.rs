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
// 20 s and settling 4 s later, for 30 s. Then the exchange is halted and the gatherer stopped
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

fn quieter_market() -> Market {
    Market {
        actions_per_second: 400,
        ..market()
    }
}

// Faults injected on the simulator's control endpoint while it runs: a skipped seq on every
// connection's first subscription (orderbook_delta; market_lifecycle_v2 on the lifecycle
// connection) and on the trade subscription, a malformed frame, error 25 on the orderbook
// subscription, 30 REST answers of 429, every connection dropped, and an exchange pause.
// Afterwards: the same trade completeness holds (the lost trade frames come back by REST
// backfill), the books match, every detected gap has a repaired row in the ledger, the
// malformed frame was counted, and the process never stopped.
#[test]
fn faults_are_repaired() {
    let mut s = Scenario::start("faults", 12, &quieter_market(), |_| {});
    run_for(&mut s, 3);
    s.sim.control("/skip-seq?conn=all&sid=1");
    run_for(&mut s, 3);
    s.sim.control("/skip-seq?conn=all&sid=2");
    run_for(&mut s, 3);
    s.sim.control("/malformed?conn=all");
    run_for(&mut s, 2);
    s.sim.control("/overflow?conn=all&sid=1");
    run_for(&mut s, 3);
    s.sim.control("/force-429?count=30");
    run_for(&mut s, 3);
    s.sim.control("/close?conn=all");
    run_for(&mut s, 4);
    s.sim.control("/pause");
    run_for(&mut s, 3);
    s.sim.control("/resume");
    s.gatherer.wait_healthy();
    run_for(&mut s, 4);
    let metrics = s.gatherer.metrics_text();
    assert!(common::metric_value(&metrics, "parse_errors_total") >= 1.0);
    assert!(common::metric_value(&metrics, "sequence_gaps_total") >= 4.0);
    let (truth, books) = s.finish();
    let mut client = db(&s.pg);
    let (trades, ws_only, by_rest) = check_trades(&truth, &mut client);
    let compared = check_books(&mut client, &books);
    let unrepaired = unrepaired_gaps(&mut client);
    assert!(unrepaired.is_empty(), "gaps never repaired: {unrepaired:?}");
    let repaired = repaired_gaps(&mut client);
    for (channel, repair) in [
        ("orderbook_delta", "get_snapshot"),
        ("trade", "rest_backfill"),
        ("orderbook_delta", "resubscribe"),
        ("connection", "reconnect"),
    ] {
        assert!(
            repaired.iter().any(|(c, r)| c == channel && r == repair),
            "no repaired {channel} gap by {repair}: {repaired:?}"
        );
    }
    println!(
        "faults: {trades} trades ({ws_only} WebSocket only, {by_rest} also by backfill), {compared} books, {} repaired gaps",
        repaired.len()
    );
}

// The local database is stopped for 10 s mid-run and started again: the writer spools and
// replays; every trade is stored exactly once from the WebSocket, no delta row is doubled, and
// the books still rebuild to the simulator's.
#[test]
fn database_outage_loses_and_doubles_nothing() {
    let mut s = Scenario::start("dbdown", 13, &quieter_market(), |_| {});
    run_for(&mut s, 4);
    s.pg.stop().unwrap();
    run_for(&mut s, 10);
    s.pg.start_again().unwrap();
    run_for(&mut s, 4);
    let (truth, books) = s.finish();
    let mut client = db(&s.pg);
    let (trades, _, _) = check_trades(&truth, &mut client);
    let compared = check_books(&mut client, &books);
    let doubled: i64 = client
        .query_one(
            "SELECT count(*) FROM (SELECT ticker, sid, seq, received_ts FROM orderbook_deltas \
             GROUP BY 1, 2, 3, 4 HAVING count(*) > 1) d",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(doubled, 0, "delta rows stored twice");
    println!("database outage: {trades} trades, {compared} books");
}

// SIGTERM mid-run (exit 0), 5 s down while the exchange trades on, then a restart: the missed
// window is a `connection` gap whose repair row records the backfilled trades, and every trade
// of the truth log is stored (those of the window by REST only).
#[test]
fn restart_records_and_backfills_the_missed_window() {
    let mut s = Scenario::start("restart", 14, &quieter_market(), |_| {});
    run_for(&mut s, 5);
    let status = s.gatherer.terminate();
    assert!(status.success(), "{}", s.gatherer.stderr());
    let restarted_at = common::now_us();
    std::thread::sleep(Duration::from_secs(5));
    s.gatherer = common::Gatherer::start(&s.config, &s.dir, "2");
    s.gatherer.wait_healthy();
    run_for(&mut s, 5);
    let (truth, books) = s.finish();
    let mut client = db(&s.pg);
    let (trades, _, by_rest) = check_trades(&truth, &mut client);
    check_books(&mut client, &books);
    let row = client
        .query_one(
            "SELECT count(*), coalesce(sum(backfilled_trades), 0)::bigint FROM sequence_gaps \
             WHERE channel = 'connection' AND repaired_ts IS NOT NULL AND detected_ts > $1",
            &[&restarted_at],
        )
        .unwrap();
    let (gaps, backfilled): (i64, i64) = (row.get(0), row.get(1));
    assert!(gaps >= 1, "no repaired connection gap after the restart");
    assert!(
        backfilled > 0,
        "the restart gap recorded no backfilled trades"
    );
    assert!(unrepaired_gaps(&mut client).is_empty());
    println!("restart: {trades} trades, {by_rest} by REST, {gaps} gaps, {backfilled} backfilled");
}
