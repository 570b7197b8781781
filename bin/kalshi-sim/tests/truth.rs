#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The truth log and final books of the real binary: the same seed gives a byte-identical log
//! (a client connected or not); replaying the log's deltas from empty books gives the final
//! books; and a WebSocket client's books (snapshot + deltas, both price conventions) at the end
//! of the run equal the final books.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{Book, Sim, apply, final_books, fixed, open_tickers, read_lines, temp_dir};
use serde_json::json;

const START: &str = "1796000000000000";

fn run(dir: &Path, seed: &str, duration: &str, speed: &str) -> Sim {
    Sim::start(&[
        "--no-auth",
        "--seed",
        seed,
        "--start-time-us",
        START,
        "--duration",
        duration,
        "--speed",
        speed,
        "--actions-per-second",
        "2000",
        "--truth-log",
        dir.join("truth.jsonl").to_str().unwrap(),
        "--final-books",
        dir.join("books.jsonl").to_str().unwrap(),
    ])
}

// Two runs with one seed write byte-identical truth logs and final books, even though the
// second has a client subscribed to everything; another seed writes a different log.
#[test]
fn same_seed_same_truth() {
    let (one, two, other) = (temp_dir("det1"), temp_dir("det2"), temp_dir("det3"));
    run(&one, "42", "60", "40").wait();
    let sim = run(&two, "42", "60", "40");
    let tickers = open_tickers(&sim);
    let mut client = sim.ws();
    client.command(
        "subscribe",
        Some(json!({"channels": ["orderbook_delta", "trade", "ticker", "market_lifecycle_v2"], "market_tickers": tickers})),
    );
    let _ = client.until_end();
    sim.wait();
    run(&other, "43", "60", "40").wait();
    let read = |dir: &Path, name: &str| std::fs::read(dir.join(name)).unwrap();
    assert!(read(&one, "truth.jsonl").len() > 10_000);
    assert!(
        read(&one, "truth.jsonl") == read(&two, "truth.jsonl"),
        "truth logs differ"
    );
    assert!(
        read(&one, "books.jsonl") == read(&two, "books.jsonl"),
        "final books differ"
    );
    assert!(read(&one, "truth.jsonl") != read(&other, "truth.jsonl"));
}

// Replaying every delta of the truth log from empty books reproduces each final book and its
// market_seq; the log's market_seq per delta counts 1, 2, 3 … per market.
#[test]
fn truth_log_replays_to_final_books() {
    let dir = temp_dir("replay");
    run(&dir, "9", "120", "100").wait();
    let mut books: BTreeMap<String, (u64, Book)> = BTreeMap::new();
    for line in read_lines(&dir.join("truth.jsonl")) {
        let record = &line["record"];
        if record["type"] != "orderbook_delta" {
            continue;
        }
        let ticker = record["ticker"].as_str().unwrap().to_owned();
        let entry = books.entry(ticker).or_default();
        let market_seq = line["market_seq"].as_u64().unwrap();
        assert_eq!(market_seq, entry.0 + 1, "{line}");
        entry.0 = market_seq;
        apply(
            &mut entry.1,
            record["side"].as_str().unwrap(),
            record["price_e6"].as_i64().unwrap(),
            record["delta_e2"].as_i64().unwrap(),
        );
    }
    let finals = final_books(&dir.join("books.jsonl"));
    assert!(books.len() > 10);
    for (ticker, (seq, book)) in &finals {
        let replayed = books.get(ticker).cloned().unwrap_or_default();
        assert_eq!((replayed.0, &replayed.1), (*seq, book), "{ticker}");
    }
}

/// Rebuilds books from a client's snapshots and deltas (prices in e6; NO side converted back
/// to NO-leg price when the subscription used YES prices).
fn client_books(log: &[serde_json::Value], use_yes_price: bool) -> BTreeMap<String, Book> {
    let mut books: BTreeMap<String, Book> = BTreeMap::new();
    let price = |side: &str, text: &str| {
        let p = fixed(text, 4) * 100;
        if use_yes_price && side == "no" {
            1_000_000 - p
        } else {
            p
        }
    };
    for f in log {
        let msg = &f["msg"];
        match f["type"].as_str() {
            Some("orderbook_snapshot") => {
                let book = books
                    .entry(msg["market_ticker"].as_str().unwrap().to_owned())
                    .or_default();
                book.clear();
                for (side, key) in [("yes", "yes_dollars_fp"), ("no", "no_dollars_fp")] {
                    let Some(levels) = msg.get(key) else { continue };
                    let levels = levels.as_array().unwrap();
                    assert!(!levels.is_empty(), "an empty side omits its key: {f}");
                    let prices: Vec<i64> = levels
                        .iter()
                        .map(|l| fixed(l[0].as_str().unwrap(), 4))
                        .collect();
                    assert!(prices.windows(2).all(|w| w[0] < w[1]), "levels ascend: {f}");
                    for level in levels {
                        book.insert(
                            (side.to_owned(), price(side, level[0].as_str().unwrap())),
                            fixed(level[1].as_str().unwrap(), 2),
                        );
                    }
                }
            }
            Some("orderbook_delta") => {
                let side = msg["side"].as_str().unwrap();
                let book = books
                    .get_mut(msg["market_ticker"].as_str().unwrap())
                    .expect("delta before snapshot");
                apply(
                    book,
                    side,
                    price(side, msg["price_dollars"].as_str().unwrap()),
                    fixed(msg["delta_fp"].as_str().unwrap(), 2),
                );
            }
            _ => {}
        }
    }
    books
}

// Two clients (NO-leg prices and YES prices) follow every open market until the run ends;
// their rebuilt books equal the final books of those markets.
#[test]
fn client_books_equal_final_books() {
    let dir = temp_dir("books");
    let sim = run(&dir, "3", "40", "20");
    let tickers = open_tickers(&sim);
    let mut clients: Vec<(bool, common::Client)> = [false, true]
        .into_iter()
        .map(|yes| {
            let mut client = sim.ws();
            client.command(
                "subscribe",
                Some(json!({"channels": ["orderbook_delta"], "market_tickers": tickers, "use_yes_price": yes})),
            );
            (yes, client)
        })
        .collect();
    for (_, client) in &mut clients {
        assert_eq!(
            client.until_end(),
            common::End::Closed("simulator shutting down".into())
        );
        common::check_seq(&client.log);
    }
    sim.wait();
    let finals = final_books(&dir.join("books.jsonl"));
    for (yes, client) in &clients {
        let books = client_books(&client.log, *yes);
        for ticker in &tickers {
            assert_eq!(
                books.get(ticker),
                Some(&finals[ticker].1),
                "{ticker} (use_yes_price {yes})"
            );
        }
    }
}
