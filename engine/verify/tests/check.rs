//! The checks against a real database filled from a simulated exchange: a faithful copy passes,
//! and every kind of damage (a lost trade, a doubled trade, a changed trade, a lost delta, a
//! doubled delta) is found.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;

use kalshi_pg_harness::{PgCluster, PgOptions};
use kalshi_sim_core::{Exchange, ExchangeConfig};
use kalshi_verify::{Report, TradeRule, Truth, Window, check};
use postgres::Client;
use serde_json::Value;

const START_US: i64 = 1_780_000_000_000_000;

struct Fixture {
    _cluster: PgCluster,
    client: Client,
    truth: Truth,
    window: Window,
    _dir: std::path::PathBuf,
}

fn fixture() -> Fixture {
    let mut exchange = Exchange::new(ExchangeConfig::default(), 7);
    for i in 0..=120 {
        exchange.step(START_US + i * 500_000);
    }
    let dir = std::env::temp_dir().join(format!("kalshi-verify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let truth_path = dir.join("truth.jsonl");
    let books_path = dir.join("books.jsonl");
    std::fs::write(&truth_path, exchange.truth_log()).unwrap();
    let mut books = Vec::new();
    exchange.write_final_books(&mut books);
    std::fs::write(&books_path, &books).unwrap();
    let truth = Truth::load(&truth_path, &books_path).unwrap();
    assert!(
        truth.trade_count() > 50,
        "the model made {} trades",
        truth.trade_count()
    );
    assert!(truth.delta_count() > 500);

    let cluster = PgCluster::start(PgOptions::default()).unwrap();
    let mut client = kalshi_storage::connect(&cluster.url("kalshi")).unwrap();
    kalshi_storage::migrate(&mut client, &kalshi_storage::MigrateOptions::gatherer()).unwrap();

    // Capture starts 10 s into the run: copy the truth's events from there on.
    let window = Window {
        from_ts: START_US + 10_000_000,
        to_ts: i64::MAX,
    };
    let mut trades = String::new();
    let mut deltas = String::new();
    for line in String::from_utf8(exchange.truth_log().to_vec())
        .unwrap()
        .lines()
    {
        let v: Value = serde_json::from_str(line).unwrap();
        let r = &v["record"];
        let ts = r["exchange_ts"].as_i64().unwrap_or(0);
        if ts < window.from_ts {
            continue;
        }
        match r["type"].as_str() {
            Some("trade") => writeln!(
                trades,
                "{ts}\t{ts}\t1\t{}\t{}\t{}\t{}\t{}\tws",
                r["ticker"].as_str().unwrap(),
                r["trade_id"].as_str().unwrap(),
                r["yes_price_e6"],
                r["no_price_e6"],
                r["count_e2"]
            )
            .unwrap(),
            Some("orderbook_delta") => writeln!(
                deltas,
                "{ts}\t{ts}\t1\t{}\t{}\t{}\t{}\t1\t1",
                r["ticker"].as_str().unwrap(),
                r["side"].as_str().unwrap(),
                r["price_e6"],
                r["delta_e2"]
            )
            .unwrap(),
            _ => {}
        }
    }
    copy(
        &mut client,
        "COPY trades (exchange_ts, received_ts, gatherer_id, ticker, trade_id, yes_price_e6, \
         no_price_e6, count_e2, source) FROM STDIN",
        &trades,
    );
    copy(
        &mut client,
        "COPY orderbook_deltas (exchange_ts, received_ts, gatherer_id, ticker, side, price_e6, \
         delta_e2, sid, seq) FROM STDIN",
        &deltas,
    );
    Fixture {
        _cluster: cluster,
        client,
        truth,
        window,
        _dir: dir,
    }
}

fn copy(client: &mut Client, sql: &str, text: &str) {
    use std::io::Write;
    let mut w = client.copy_in(sql).unwrap();
    w.write_all(text.as_bytes()).unwrap();
    w.finish().unwrap();
}

fn run(f: &mut Fixture, rule: TradeRule) -> Report {
    check(&mut f.client, &f.truth, f.window, rule).unwrap()
}

#[test]
fn finds_every_kind_of_damage() {
    let mut f = fixture();
    let report = run(&mut f, TradeRule::ExactlyOnce);
    assert!(report.passed(), "{report}");
    assert!(report.trades_expected > 0 && report.trades_expected == report.trades_found);
    assert_eq!(report.deltas_expected, report.deltas_found);
    assert_eq!(report.books_checked, f.truth.market_count());

    // A doubled trade from REST backfill: allowed in a gatherer database, not in production.
    f.client
        .execute(
            "INSERT INTO trades SELECT exchange_ts, received_ts, gatherer_id, ticker, trade_id, \
             yes_price_e6, no_price_e6, count_e2, taker_side, taker_outcome_side, taker_book_side, \
             is_block_trade, 'rest', sid, seq FROM trades ORDER BY exchange_ts LIMIT 1",
            &[],
        )
        .unwrap();
    assert!(run(&mut f, TradeRule::OnceFromWebSocket).passed());
    let r = run(&mut f, TradeRule::ExactlyOnce);
    assert_eq!(r.trades_duplicated_count, 1, "{r}");
    f.client
        .execute("DELETE FROM trades WHERE source = 'rest'", &[])
        .unwrap();

    // A lost trade.
    f.client
        .execute(
            "DELETE FROM trades WHERE trade_id = (SELECT trade_id FROM trades ORDER BY exchange_ts DESC LIMIT 1)",
            &[],
        )
        .unwrap();
    let r = run(&mut f, TradeRule::ExactlyOnce);
    assert_eq!((r.trades_missing_count, r.passed()), (1, false), "{r}");
    assert!(r.books_differing_count == 0, "deltas untouched: {r}");

    // A trade whose count was changed.
    f.client
        .execute(
            "UPDATE trades SET count_e2 = count_e2 + 1 WHERE trade_id = (SELECT min(trade_id) FROM trades)",
            &[],
        )
        .unwrap();
    let r = run(&mut f, TradeRule::ExactlyOnce);
    assert_eq!((r.trades_wrong.len(), r.trades_wrong_count), (1, 1), "{r}");

    // A lost delta: its market's multiset and book both differ.
    let mut g = fixture();
    g.client
        .execute(
            "DELETE FROM orderbook_deltas WHERE ctid = (SELECT ctid FROM orderbook_deltas ORDER BY exchange_ts LIMIT 1)",
            &[],
        )
        .unwrap();
    let r = run(&mut g, TradeRule::ExactlyOnce);
    assert_eq!(
        (r.delta_markets_differing_count, r.books_differing_count),
        (1, 1),
        "{r}"
    );

    // A doubled delta.
    let mut h = fixture();
    h.client
        .execute(
            "INSERT INTO orderbook_deltas SELECT * FROM orderbook_deltas ORDER BY exchange_ts DESC LIMIT 1",
            &[],
        )
        .unwrap();
    let r = run(&mut h, TradeRule::ExactlyOnce);
    assert_eq!(
        (r.delta_markets_differing_count, r.books_differing_count),
        (1, 1),
        "{r}"
    );
    assert_eq!(r.deltas_found, r.deltas_expected + 1);
}

#[test]
fn bad_truth_files_name_the_line() {
    let dir = std::env::temp_dir().join(format!("kalshi-verify-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let truth = dir.join("t.jsonl");
    let books = dir.join("b.jsonl");
    std::fs::write(
        &truth,
        "{\"market_seq\":null,\"record\":{\"type\":\"trade\"}}\n",
    )
    .unwrap();
    std::fs::write(&books, "").unwrap();
    let err = Truth::load(&truth, &books).unwrap_err().to_string();
    assert!(
        err.contains("t.jsonl:1") && err.contains("trade_id"),
        "{err}"
    );
    std::fs::write(&truth, "not json\n").unwrap();
    let err = Truth::load(&truth, &books).unwrap_err().to_string();
    assert!(err.contains("t.jsonl:1: not JSON"), "{err}");
    let err = Truth::load(&dir.join("missing"), &books)
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing"), "{err}");
}
