#![allow(clippy::unwrap_used, clippy::expect_used)]
//! REST over real HTTP: cursor paging to the end, the limit cap, garbage cursors, the token
//! bucket's 429s, orderbook depth, and response shapes against the recorded samples in
//! `tests/data/kalshi/rest_samples.jsonl`.

mod common;

use std::collections::BTreeSet;

use common::{Sim, temp_dir, write_config};
use serde_json::Value;

const SAMPLES: &str = include_str!("../../../tests/data/kalshi/rest_samples.jsonl");

fn sim(extra: &str) -> Sim {
    sim_args(extra, &[])
}

fn sim_args(extra: &str, args: &[&str]) -> Sim {
    let dir = temp_dir("rest");
    let config = write_config(
        &dir,
        &format!(
            "seed = 5\n[auth]\nenabled = false\n[rest]\nrate_per_sec = 0\n[market]\nseries = 5\nevents_per_series = 4\nmarkets_per_event = 10\nnew_event_every_secs = 0\n{extra}"
        ),
    );
    let mut all = vec!["--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    Sim::start(&all)
}

fn get(sim: &Sim, target: &str) -> Value {
    let (status, body) = sim.get(target);
    assert_eq!(status, 200, "{target}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn tickers(page: &Value) -> Vec<String> {
    page["markets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["ticker"].as_str().unwrap().to_owned())
        .collect()
}

// Paging /markets with limit 7 until `cursor:""` visits every market exactly once (the same
// set as one 1000-market page); the last page's cursor is present and empty; limit 1001 is a
// 400 with the bare `msg` body; a garbage cursor gives page 1.
#[test]
fn markets_paging() {
    let sim = sim("");
    let all = get(&sim, "/trade-api/v2/markets?limit=1000");
    assert_eq!(all["cursor"], "");
    let all = tickers(&all);
    assert_eq!(all.len(), 5 * 4 * 10);

    let mut seen = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let target = if cursor.is_empty() {
            "/trade-api/v2/markets?limit=7".to_owned()
        } else {
            format!("/trade-api/v2/markets?limit=7&cursor={cursor}")
        };
        let page = get(&sim, &target);
        pages += 1;
        seen.extend(tickers(&page));
        cursor = page["cursor"]
            .as_str()
            .expect("cursor is always present")
            .to_owned();
        if cursor.is_empty() {
            break;
        }
        assert!(pages < 100, "paging does not end");
    }
    assert_eq!(pages, all.len().div_ceil(7));
    assert_eq!(seen, all);
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), seen.len());

    let (status, body) = sim.get("/trade-api/v2/markets?limit=1001");
    assert_eq!(status, 400);
    assert_eq!(
        body,
        r#"{"msg":"Parameter validation failed for GetMarkets: Key: 'GetMarketsParams.Limit' Error:Field validation for 'Limit' failed on the 'lte' tag"}"#
    );
    let first = get(&sim, "/trade-api/v2/markets?limit=7");
    let garbage = get(&sim, "/trade-api/v2/markets?limit=7&cursor=garbage%21");
    assert_eq!(tickers(&first), tickers(&garbage));

    // Series filter: only that series' markets, paged to the end.
    let series = get(
        &sim,
        "/trade-api/v2/markets?series_ticker=KXSIMBTCD&limit=1000",
    );
    assert_eq!(tickers(&series).len(), 4 * 10);
    assert!(tickers(&series).iter().all(|t| t.starts_with("KXSIMBTCD-")));
}

// The token bucket: 1 token/s, capacity 20, cost 10 -> two requests pass; the next two (sent
// well within the 10 s one request's cost takes to refill) answer 429 with the documented body.
#[test]
fn rate_limit_429() {
    let sim = sim_args("", &["--rest-rate", "1", "--rest-burst", "20"]);
    let statuses: Vec<(u16, String)> = (0..4)
        .map(|_| sim.get("/trade-api/v2/exchange/status"))
        .collect();
    assert_eq!(statuses[0].0, 200);
    assert_eq!(statuses[1].0, 200);
    for (status, body) in &statuses[2..] {
        assert_eq!(*status, 429);
        assert_eq!(body, r#"{"error":"too many requests"}"#);
    }
}

fn sample(kind: &str) -> Value {
    SAMPLES
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["kind"] == kind)
        .unwrap_or_else(|| panic!("no sample {kind}"))["payload"]
        .clone()
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every key of `theirs` exists in `ours` with the same JSON type, except `optional` keys
/// (which may be absent, but have the same type when present).
fn same_shape(ours: &Value, theirs: &Value, optional: &[&str], what: &str) {
    let (Value::Object(o), Value::Object(t)) = (ours, theirs) else {
        panic!("{what}: not objects");
    };
    for (key, value) in t {
        match o.get(key) {
            Some(mine) => assert_eq!(json_type(mine), json_type(value), "{what}.{key}"),
            None => assert!(optional.contains(&key.as_str()), "{what}: missing {key}"),
        }
    }
}

// Over the wire, the simulator's bodies have the recorded samples' keys and JSON types:
// exchange status, market (single), market list page, orderbook, trades.
#[test]
fn shapes_match_recorded_samples() {
    let sim = sim("");
    // Let some trades happen.
    let mut trades = get(&sim, "/trade-api/v2/markets/trades?limit=5");
    while trades["trades"].as_array().unwrap().is_empty() {
        std::thread::sleep(std::time::Duration::from_millis(20));
        trades = get(&sim, "/trade-api/v2/markets/trades?limit=5");
    }
    same_shape(
        &get(&sim, "/trade-api/v2/exchange/status"),
        &sample("GET /exchange/status"),
        &[],
        "status",
    );
    let list = get(&sim, "/trade-api/v2/markets?limit=3");
    let ticker = tickers(&list)[0].clone();
    let single = get(&sim, &format!("/trade-api/v2/markets/{ticker}"));
    // Fields of the sample's market that describe things the simulator does not model
    // (tennis custom strikes, MVE legs, sub-titles of older shapes) may be absent.
    let optional = [
        "custom_strike",
        "mve_collection_ticker",
        "mve_selected_legs",
        "primary_participant_key",
        "is_provisional",
        "subtitle",
        "fee_waiver_expiration_time",
        "settlement_value_dollars",
        "settlement_ts",
        "cap_strike",
        "functional_strike",
        "floor_strike",
        "strike_type",
        "tick_size",
    ];
    same_shape(
        &single["market"],
        &sample("GET /markets/{ticker}")["market"],
        &optional,
        "market",
    );
    same_shape(
        &list,
        &sample("GET /markets?limit=5 (page 1)"),
        &[],
        "markets page",
    );
    let orderbook = get(&sim, &format!("/trade-api/v2/markets/{ticker}/orderbook"));
    same_shape(
        &orderbook,
        &sample("GET /markets/{ticker}/orderbook"),
        &[],
        "orderbook",
    );
    same_shape(
        &orderbook["orderbook_fp"],
        &sample("GET /markets/{ticker}/orderbook")["orderbook_fp"],
        &[],
        "orderbook_fp",
    );
    same_shape(&trades, &sample("GET /markets/trades"), &[], "trades page");
    same_shape(
        &trades["trades"][0],
        &sample("GET /markets/trades")["trades"][0],
        &[],
        "trade",
    );
    let (status, body) = sim.get("/trade-api/v2/markets/NOPE-NOT-A-MARKET");
    assert_eq!(status, 404, "{body}");
}

// Orderbook depth N returns the N best levels of the full book, still ascending (taken while
// the exchange is paused, so both requests see the same book).
#[test]
fn orderbook_depth() {
    let sim = sim("");
    let ticker = common::open_tickers(&sim)[0].clone();
    sim.control("/pause");
    let full = get(&sim, &format!("/trade-api/v2/markets/{ticker}/orderbook"));
    let top = get(
        &sim,
        &format!("/trade-api/v2/markets/{ticker}/orderbook?depth=2"),
    );
    for side in ["yes_dollars", "no_dollars"] {
        let levels = full["orderbook_fp"][side].as_array().unwrap();
        let prices: Vec<i64> = levels
            .iter()
            .map(|l| common::fixed(l[0].as_str().unwrap(), 4))
            .collect();
        assert!(
            prices.windows(2).all(|w| w[0] < w[1]),
            "{side} not ascending: {prices:?}"
        );
        let keep = levels.len().min(2);
        assert_eq!(
            top["orderbook_fp"][side].as_array().unwrap()[..],
            levels[levels.len() - keep..]
        );
    }
}

// Methods other than GET/HEAD on REST paths answer 405; HEAD has no body.
#[test]
fn methods() {
    let sim = sim("");
    let (status, body) = common::http(&sim.listen, "POST", "/trade-api/v2/markets", &[]);
    assert_eq!(status, 405, "{body}");
    let (status, body) = common::http(&sim.listen, "HEAD", "/trade-api/v2/exchange/status", &[]);
    assert_eq!((status, body.as_str()), (200, ""));
}
