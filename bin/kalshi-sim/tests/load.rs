#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Load mode through the real binary: a client subscribed to every load market receives
//! contiguous seq per sid, and its books (subscribe snapshot + deltas) at the end of the run
//! equal the generator's final books written on exit.

mod common;

use common::{End, Sim, apply, check_seq, fixed, read_lines, temp_dir};
use serde_json::json;

#[test]
fn load_mode_books_match_truth() {
    let dir = temp_dir("load");
    let books_path = dir.join("books.jsonl");
    let sim = Sim::start(&[
        "--no-auth",
        "--load-rate",
        "20000",
        "--load-markets",
        "25",
        "--duration",
        "3",
        "--final-books",
        books_path.to_str().unwrap(),
    ]);
    let (status, body) = sim.get("/trade-api/v2/markets?limit=1000");
    assert_eq!(status, 200);
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    let tickers: Vec<String> = page["markets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["ticker"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(tickers.len(), 25);
    assert_eq!(page["cursor"], "");
    let mut client = sim.ws();
    client.command(
        "subscribe",
        Some(
            json!({"channels": ["orderbook_delta", "trade", "ticker"], "market_tickers": tickers}),
        ),
    );
    assert_eq!(
        client.until_end(),
        End::Closed("simulator shutting down".into())
    );
    sim.wait();
    check_seq(&client.log);

    let mut books: std::collections::BTreeMap<String, common::Book> = Default::default();
    let mut deltas = 0;
    for f in &client.log {
        let msg = &f["msg"];
        match f["type"].as_str() {
            Some("orderbook_snapshot") => {
                let book = books
                    .entry(msg["market_ticker"].as_str().unwrap().into())
                    .or_default();
                for (side, key) in [("yes", "yes_dollars_fp"), ("no", "no_dollars_fp")] {
                    for level in msg
                        .get(key)
                        .and_then(|l| l.as_array())
                        .into_iter()
                        .flatten()
                    {
                        book.insert(
                            (side.into(), fixed(level[0].as_str().unwrap(), 4) * 100),
                            fixed(level[1].as_str().unwrap(), 2),
                        );
                    }
                }
            }
            Some("orderbook_delta") => {
                deltas += 1;
                let book = books
                    .get_mut(msg["market_ticker"].as_str().unwrap())
                    .unwrap();
                apply(
                    book,
                    msg["side"].as_str().unwrap(),
                    fixed(msg["price_dollars"].as_str().unwrap(), 4) * 100,
                    fixed(msg["delta_fp"].as_str().unwrap(), 2),
                );
            }
            _ => {}
        }
    }
    assert!(deltas > 1000, "only {deltas} deltas");
    let lines = read_lines(&books_path);
    assert!(lines[0]["events"].as_u64().unwrap() > 1000);
    for line in &lines[1..] {
        let mut truth = common::Book::new();
        for side in ["yes", "no"] {
            for level in line[side].as_array().unwrap() {
                truth.insert(
                    (side.into(), level[0].as_i64().unwrap()),
                    level[1].as_i64().unwrap(),
                );
            }
        }
        let ticker = line["ticker"].as_str().unwrap();
        assert_eq!(books.get(ticker), Some(&truth), "{ticker}");
    }
}

// `POST /halt` ends load-mode generation for good while the connection stays open: the event
// count in /stats stops moving although a client is still subscribed.
#[test]
fn halt_stops_load_generation() {
    let sim = Sim::start(&["--no-auth", "--load-rate", "5000", "--load-markets", "5"]);
    let mut client = sim.ws();
    client.command(
        "subscribe",
        Some(
            json!({"channels": ["orderbook_delta"], "market_tickers": common::open_tickers(&sim)}),
        ),
    );
    // Generation is running: some deltas arrive.
    for _ in 0..50 {
        client.until(|f| f["type"] == "orderbook_delta");
    }
    let halted = sim.control("/halt");
    assert_eq!(halted["halted"], true, "{halted}");
    let at_halt = sim.stats()["load"]["events"].as_u64().unwrap();
    // Half a second at 5,000 events/s is ~2,500 events, a few hundred KB: the socket buffers
    // take that from an idle reader, so the client is no brake and only the halt can stop the
    // count.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let later = sim.stats()["load"]["events"].as_u64().unwrap();
    assert_eq!(later, at_halt, "load mode kept generating after /halt");
    sim.terminate();
}
