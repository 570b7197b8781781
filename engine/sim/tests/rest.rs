#![allow(clippy::unwrap_used, clippy::expect_used)]
//! REST bodies: shapes against the recorded samples, paging, filters and error bodies.

use kalshi_sim_core::{Exchange, ExchangeConfig, route};
use serde_json::Value;

const START_US: i64 = 1_796_000_000_000_000;
const SAMPLES: &str = include_str!("../../../tests/data/kalshi/rest_samples.jsonl");

fn exchange() -> Exchange {
    let mut exchange = Exchange::new(ExchangeConfig::default(), 9);
    for step in 0..=200 {
        exchange.step(START_US + step * 500_000);
    }
    exchange
}

fn get(exchange: &Exchange, target: &str) -> (u16, Value) {
    let response = route(exchange, "GET", target);
    (
        response.status,
        serde_json::from_slice(&response.body).unwrap(),
    )
}

fn sample(kind: &str) -> Value {
    SAMPLES
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["kind"] == kind)
        .unwrap()["payload"]
        .clone()
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every key of `ours` exists in `theirs` with the same JSON type, and every key of `theirs`
/// except `optional` exists in `ours`.
fn same_shape(ours: &Value, theirs: &Value, optional: &[&str]) {
    let (o, t) = (ours.as_object().unwrap(), theirs.as_object().unwrap());
    for (key, value) in o {
        let their = t.get(key).unwrap_or_else(|| panic!("extra key {key}"));
        assert_eq!(json_type(value), json_type(their), "type of {key}");
    }
    for key in t.keys() {
        assert!(
            o.contains_key(key) || optional.contains(&key.as_str()),
            "missing {key}"
        );
    }
}

// Market, trade, orderbook and status objects match the recorded samples' key sets and types.
#[test]
fn shapes_match_samples() {
    let exchange = exchange();
    let (status, body) = get(&exchange, "/trade-api/v2/exchange/status");
    assert_eq!(status, 200);
    same_shape(&body, &sample("GET /exchange/status"), &[]);

    let ticker = exchange.markets()[0].ticker.clone();
    let (status, body) = get(&exchange, &format!("/trade-api/v2/markets/{ticker}"));
    assert_eq!(status, 200);
    // The sample is a tennis market: custom_strike is its own; floor_strike comes from the
    // list sample, which has it as a number.
    let mut reference = sample("GET /markets/{ticker}")["market"].clone();
    reference["floor_strike"] = serde_json::json!(3.5);
    same_shape(&body["market"], &reference, &["custom_strike"]);
    same_shape(&body, &sample("GET /markets/{ticker}"), &[]);

    let (_, body) = get(
        &exchange,
        &format!("/trade-api/v2/markets/{ticker}/orderbook"),
    );
    let reference = sample("GET /markets/{ticker}/orderbook");
    same_shape(&body, &reference, &[]);
    same_shape(&body["orderbook_fp"], &reference["orderbook_fp"], &[]);
    let level = &body["orderbook_fp"]["yes_dollars"][0];
    assert!(level[0].is_string() && level[1].is_string());

    let (_, body) = get(&exchange, "/trade-api/v2/markets/trades?limit=3");
    let reference = sample("GET /markets/trades");
    same_shape(&body, &reference, &[]);
    same_shape(&body["trades"][0], &reference["trades"][0], &[]);
}

// Orderbook: ascending levels, depth keeps the N best, NO in NO-leg price; REST tops agree.
#[test]
fn orderbook_depth_and_404() {
    let exchange = exchange();
    let market = exchange
        .markets()
        .iter()
        .find(|m| m.book.depth(kalshi_wire::Side::Yes) >= 3)
        .unwrap();
    let (_, all) = get(&exchange, &format!("/markets/{}/orderbook", market.ticker));
    let (_, two) = get(
        &exchange,
        &format!("/markets/{}/orderbook?depth=2", market.ticker),
    );
    let prices = |v: &Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|l| l[0].as_str().unwrap().parse().unwrap())
            .collect()
    };
    let yes_all = prices(&all["orderbook_fp"]["yes_dollars"]);
    let yes_two = prices(&two["orderbook_fp"]["yes_dollars"]);
    assert!(yes_all.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(yes_two, yes_all[yes_all.len() - 2..].to_vec());
    let (status, body) = get(&exchange, "/markets/NOPE/orderbook");
    assert_eq!(status, 404);
    assert!(body["error"].is_object());
    assert_eq!(get(&exchange, "/markets/NOPE").0, 404);
}

// /markets: limit > 1000 → the bare 400 body; cursor paging to the end with cursor "" on the
// last page; a garbage cursor gives page 1; status and series filters.
#[test]
fn markets_paging_and_filters() {
    let exchange = exchange();
    let response = route(&exchange, "GET", "/trade-api/v2/markets?limit=1001");
    assert_eq!(response.status, 400);
    assert_eq!(
        String::from_utf8(response.body).unwrap(),
        r#"{"msg":"Parameter validation failed for GetMarkets: Key: 'GetMarketsParams.Limit' Error:Field validation for 'Limit' failed on the 'lte' tag"}"#
    );
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (_, body) = get(&exchange, &format!("/markets?limit=5&cursor={cursor}"));
        for m in body["markets"].as_array().unwrap() {
            seen.push(m["ticker"].as_str().unwrap().to_owned());
        }
        cursor = body["cursor"].as_str().unwrap().to_owned();
        if cursor.is_empty() {
            break;
        }
    }
    assert_eq!(seen.len(), exchange.markets().len());
    let (_, first) = get(&exchange, "/markets?limit=5");
    let (_, garbage) = get(&exchange, "/markets?limit=5&cursor=GARBAGE");
    assert_eq!(first, garbage);
    let (_, open) = get(&exchange, "/markets?status=open&limit=1000");
    assert!(
        open["markets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["status"] == "active")
    );
    let series = &exchange.series()[1].ticker;
    let (_, by_series) = get(
        &exchange,
        &format!("/markets?series_ticker={series}&limit=1000"),
    );
    let list = by_series["markets"].as_array().unwrap();
    assert!(!list.is_empty());
    assert!(
        list.iter()
            .all(|m| m["ticker"].as_str().unwrap().starts_with(series.as_str()))
    );
    let (_, events) = get(&exchange, "/events?with_nested_markets=true");
    assert_eq!(
        events["events"].as_array().unwrap().len(),
        exchange.events().len()
    );
    assert!(events["events"][0]["markets"].is_array());
}

// /markets/trades: newest first, ticker and time filters, paging to the end.
#[test]
fn trades_newest_first() {
    let exchange = exchange();
    let (_, body) = get(&exchange, "/markets/trades?limit=1000");
    let times: Vec<String> = body["trades"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["created_time"].as_str().unwrap().to_owned())
        .collect();
    assert!(times.len() > 10);
    assert!(times.windows(2).all(|w| w[0] >= w[1]));
    let ticker = body["trades"][0]["ticker"].as_str().unwrap().to_owned();
    let (_, one) = get(
        &exchange,
        &format!("/markets/trades?ticker={ticker}&limit=1000"),
    );
    assert!(
        one["trades"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["ticker"] == ticker.as_str())
    );
    let min_ts = START_US / 1_000_000 + 50;
    let (_, late) = get(
        &exchange,
        &format!("/markets/trades?min_ts={min_ts}&limit=1000"),
    );
    let expected = exchange
        .trades()
        .iter()
        .filter(|t| t.created_us >= min_ts * 1_000_000)
        .count();
    assert!(expected < exchange.trades().len());
    assert_eq!(late["trades"].as_array().unwrap().len(), expected.min(1000));
    let mut count = 0;
    let mut cursor = String::new();
    loop {
        let (_, page) = get(
            &exchange,
            &format!("/markets/trades?limit=7&cursor={cursor}"),
        );
        count += page["trades"].as_array().unwrap().len();
        cursor = page["cursor"].as_str().unwrap().to_owned();
        if cursor.is_empty() {
            break;
        }
    }
    assert_eq!(count, exchange.trades().len());
}

// Every market object in the recorded /markets pages (open, determined, finalized) has the
// key set and JSON types of ours, apart from fields the simulator's markets do not have
// (MVE legs, custom strikes, settlement times of old markets); list bodies match too.
#[test]
fn list_shapes_match_every_recorded_page() {
    let exchange = exchange();
    let (_, ours) = get(&exchange, "/trade-api/v2/markets?limit=2");
    let ours_market = &ours["markets"][0];
    let optional = [
        "custom_strike",
        "mve_collection_ticker",
        "mve_selected_legs",
        "settlement_ts",
        "settlement_value_dollars",
        "cap_strike",
        "functional_strike",
        "primary_participant_key",
        "is_provisional",
        "fee_waiver_expiration_time",
        "subtitle",
        "tick_size",
    ];
    let mut pages = 0;
    for line in SAMPLES.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let kind = v["kind"].as_str().unwrap();
        if !kind.starts_with("GET /markets?") && !kind.starts_with("GET /markets with") {
            continue;
        }
        let payload = &v["payload"];
        if payload.get("markets").is_none() {
            continue;
        }
        pages += 1;
        same_shape(&ours, payload, &[]);
        for market in payload["markets"].as_array().unwrap() {
            let mut reference = market.clone();
            // Our markets have a numeric floor_strike; recorded ones without any strike use
            // custom_strike instead.
            if reference.get("floor_strike").is_none() {
                reference["floor_strike"] = serde_json::json!(1.5);
            }
            if reference.get("strike_type").is_none() {
                reference["strike_type"] = serde_json::json!("greater");
            }
            for key in [
                "early_close_condition",
                "response_price_units",
                "expected_expiration_time",
                "occurrence_datetime",
                "expiration_time",
                "title",
            ] {
                if reference.get(key).is_none() {
                    reference[key] = ours_market[key].clone();
                }
            }
            same_shape(ours_market, &reference, &optional);
        }
    }
    assert!(pages >= 5, "{pages}");
    // A determined market carries settlement_value_dollars as a string, like the sample.
    let determined = exchange
        .markets()
        .iter()
        .find(|m| m.result.is_some())
        .map(|m| m.ticker.clone());
    if let Some(ticker) = determined {
        let (_, body) = get(&exchange, &format!("/markets/{ticker}"));
        assert!(body["market"]["settlement_value_dollars"].is_string());
    }
}

// Error bodies are the documented ones, byte for byte where Kalshi's are recorded verbatim.
#[test]
fn error_bodies() {
    let sample_text = |kind: &str| serde_json::to_vec(&sample(kind)).unwrap();
    let limited = kalshi_sim_core::too_many_requests();
    assert_eq!(limited.status, 429);
    assert_eq!(limited.body, sample_text("HTTP 429 body"));
    use kalshi_sim_core::{AuthFailure, unauthorized};
    for (failure, kind) in [
        (AuthFailure::BadSignature, "401 bad signature"),
        (AuthFailure::UnknownKey, "401 unknown key id"),
        (AuthFailure::MissingHeader, "401 missing signature header"),
        (
            AuthFailure::StaleTimestamp,
            "401 timestamp 30 s in the past",
        ),
    ] {
        let response = unauthorized(failure);
        assert_eq!(response.status, 401);
        let ours: Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(ours, sample(kind), "{kind}");
    }
    let exchange = exchange();
    let (status, body) = get(&exchange, "/markets?limit=1001");
    assert_eq!(
        (status, &body),
        (
            400,
            &sample("GET /markets?limit=1001 -> 400 bare {\"msg\":...}")
        )
    );
    for target in [
        "/markets/trades?limit=1001",
        "/markets/trades?min_ts=yesterday",
        "/markets/trades?max_ts=1.5",
        "/events?limit=201",
        "/markets?status=active",
        "/markets?limit=ten",
    ] {
        let (status, body) = get(&exchange, target);
        assert_eq!(status, 400, "{target}");
        assert!(
            body["msg"]
                .as_str()
                .unwrap()
                .starts_with("Parameter validation failed")
        );
    }
    let ticker = exchange.markets()[0].ticker.clone();
    assert_eq!(
        get(&exchange, &format!("/markets/{ticker}/orderbook?depth=101")).0,
        400
    );
    for target in ["/nope", "/markets/NOPE", "/events/NOPE", "/series/NOPE"] {
        let (status, body) = get(&exchange, target);
        assert_eq!(status, 404, "{target}");
        assert_eq!(body["error"]["code"], "not_found");
    }
    assert_eq!(
        route(&exchange, "POST", "/trade-api/v2/markets").status,
        404
    );
}

// /events paging to the end, /events/{ticker}, /series and /series/{ticker}, max_ts filter,
// and /exchange/status following a pause.
#[test]
fn events_series_and_status() {
    let mut exchange = exchange();
    let mut seen = 0;
    let mut cursor = String::new();
    loop {
        let (_, body) = get(&exchange, &format!("/events?limit=2&cursor={cursor}"));
        seen += body["events"].as_array().unwrap().len();
        cursor = body["cursor"].as_str().unwrap().to_owned();
        if cursor.is_empty() {
            break;
        }
    }
    assert_eq!(seen, exchange.events().len());
    let event = exchange.events()[0].clone();
    let (status, body) = get(&exchange, &format!("/events/{}", event.ticker));
    assert_eq!(status, 200);
    assert_eq!(body["event"]["event_ticker"], event.ticker.as_str());
    assert_eq!(
        body["markets"].as_array().unwrap().len(),
        event.markets.len()
    );
    let (_, nested) = get(
        &exchange,
        &format!("/events/{}?with_nested_markets=true", event.ticker),
    );
    assert_eq!(
        nested["event"]["markets"].as_array().unwrap().len(),
        event.markets.len()
    );
    let (_, series) = get(&exchange, "/series");
    assert_eq!(
        series["series"].as_array().unwrap().len(),
        exchange.series().len()
    );
    let first = &exchange.series()[0].ticker;
    let (status, one) = get(&exchange, &format!("/series/{first}"));
    assert_eq!(status, 200);
    assert_eq!(one["series"]["ticker"], first.as_str());
    assert!(one["series"]["fee_type"].is_string() && one["series"]["tags"].is_array());
    let max_ts = START_US / 1_000_000 + 5;
    let (_, early) = get(
        &exchange,
        &format!("/markets/trades?max_ts={max_ts}&limit=1000"),
    );
    let expected = exchange
        .trades()
        .iter()
        .filter(|t| t.created_us.div_euclid(1_000_000) <= max_ts)
        .count();
    assert!(expected > 0 && expected < 1000 && expected < exchange.trades().len());
    assert_eq!(early["trades"].as_array().unwrap().len(), expected);
    exchange.set_paused(true);
    let (_, status) = get(&exchange, "/exchange/status");
    assert_eq!(status["exchange_active"], false);
    exchange.set_paused(false);
    let (_, status) = get(&exchange, "/exchange/status");
    assert_eq!(status["exchange_active"], true);
}

// Load-mode REST: the same market/orderbook shapes, paging over every load market, books equal
// to the generator's, series filter.
#[test]
fn load_mode_rest() {
    use kalshi_sim_core::{LoadConfig, LoadGen, route_load};
    let mut load = LoadGen::new(LoadConfig {
        markets: 35,
        ..LoadConfig::default()
    })
    .unwrap();
    for _ in 0..2_000 {
        load.next_event();
    }
    let lget = |target: &str| -> (u16, Value) {
        let r = route_load(&load, "GET", target);
        (r.status, serde_json::from_slice(&r.body).unwrap())
    };
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (_, body) = lget(&format!("/trade-api/v2/markets?limit=10&cursor={cursor}"));
        for m in body["markets"].as_array().unwrap() {
            seen.push(m["ticker"].as_str().unwrap().to_owned());
        }
        cursor = body["cursor"].as_str().unwrap().to_owned();
        if cursor.is_empty() {
            break;
        }
    }
    assert_eq!(seen, load.tickers());
    let ticker = load.ticker(3).unwrap().to_owned();
    let (_, market) = lget(&format!("/markets/{ticker}"));
    let mut reference = sample("GET /markets/{ticker}")["market"].clone();
    reference["floor_strike"] = serde_json::json!(3.5);
    same_shape(&market["market"], &reference, &["custom_strike"]);
    let (_, book) = lget(&format!("/markets/{ticker}/orderbook"));
    let state = load.market_state(3).unwrap();
    let yes = book["orderbook_fp"]["yes_dollars"].as_array().unwrap();
    assert_eq!(yes.len(), state.yes.len());
    let top = yes.last().unwrap()[0].as_str().unwrap();
    assert_eq!(
        kalshi_wire::fixed::parse_decimal(top.as_bytes(), kalshi_wire::fixed::PRICE_SCALE).unwrap(),
        state.yes.last().unwrap().price_e6
    );
    let (_, two) = lget(&format!("/markets/{ticker}/orderbook?depth=2"));
    assert!(two["orderbook_fp"]["no_dollars"].as_array().unwrap().len() <= 2);
    let series = ticker.split('-').next().unwrap();
    let (_, by_series) = lget(&format!("/markets?series_ticker={series}&limit=1000"));
    let list = by_series["markets"].as_array().unwrap();
    assert!(!list.is_empty() && list.len() < 35);
    assert!(
        list.iter()
            .all(|m| m["ticker"].as_str().unwrap().starts_with(series))
    );
    assert_eq!(
        lget("/markets?status=settled").1["markets"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(lget("/markets?limit=1001").0, 400);
    assert_eq!(lget("/markets/NOPE").0, 404);
    assert_eq!(lget("/exchange/status").1["exchange_active"], true);
}
