//! REST response bodies (`protocol.md` §6), as pure functions over the exchange. The server
//! maps a request to [`route`] (or calls the endpoint functions) and sends
//! [`RestResponse::status`] with [`RestResponse::body`] as `application/json`.
//!
//! Bodies not documented verbatim by Kalshi: an unknown ticker answers 404
//! `{"error":{"code":"not_found","message":"not found"}}` (the nested shape of §6.8), an unknown
//! path the same, and a bad integer parameter 400 with the bare `{"msg":...}` shape.

use kalshi_wire::Side;
use kalshi_wire::fixed::{COUNT_SCALE, PRICE_SCALE, write_decimal, write_rfc3339_us};
use serde_json::{Map, Value, json};

use crate::exchange::{Exchange, Market, MarketStatus};
use crate::price::ONE_DOLLAR_E6;

/// An HTTP status and JSON body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestResponse {
    /// HTTP status code.
    pub status: u16,
    /// JSON body.
    pub body: Vec<u8>,
}

impl RestResponse {
    fn json(status: u16, value: &Value) -> Self {
        Self {
            status,
            body: serde_json::to_vec(value).unwrap_or_default(),
        }
    }
}

fn dollars(value_e6: i64) -> String {
    let mut out = Vec::new();
    write_decimal(&mut out, value_e6, PRICE_SCALE, 4);
    String::from_utf8(out).unwrap_or_default()
}

fn count(value_e2: i64) -> String {
    let mut out = Vec::new();
    write_decimal(&mut out, value_e2, COUNT_SCALE, 2);
    String::from_utf8(out).unwrap_or_default()
}

fn time(us: i64) -> String {
    let mut out = Vec::new();
    write_rfc3339_us(&mut out, us);
    String::from_utf8(out).unwrap_or_default()
}

fn not_found() -> RestResponse {
    RestResponse::json(
        404,
        &json!({"error": {"code": "not_found", "message": "not found"}}),
    )
}

fn bad_param(message: String) -> RestResponse {
    RestResponse::json(400, &json!({ "msg": message }))
}

/// Query parameters, percent-decoded, in order.
fn query_pairs(query: &str) -> Vec<(String, String)> {
    fn decode(text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    match u8::from_str_radix(text.get(i + 1..i + 3).unwrap_or(""), 16) {
                        Ok(b) => {
                            out.push(b);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

fn param<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

const CURSOR_KEY: u64 = 0x5a17_c0de_9e37_79b9;

fn encode_cursor(offset: usize) -> String {
    format!("CgSIM{:016x}", offset as u64 ^ CURSOR_KEY)
}

/// Decodes a cursor; anything not produced by [`encode_cursor`] means page 1.
fn decode_cursor(cursor: Option<&str>) -> usize {
    cursor
        .and_then(|c| c.strip_prefix("CgSIM"))
        .filter(|hex| hex.len() == 16)
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .map_or(0, |v| (v ^ CURSOR_KEY) as usize)
}

/// Parses `limit`: default when absent, 400 bare body above `max` (named after `params`).
fn limit(
    pairs: &[(String, String)],
    default: usize,
    max: usize,
    params: &str,
) -> Result<usize, RestResponse> {
    let Some(text) = param(pairs, "limit") else {
        return Ok(default);
    };
    let value: i64 = text.parse().map_err(|_| {
        bad_param(format!(
            "Parameter validation failed for {params}: invalid limit"
        ))
    })?;
    if value > max as i64 {
        return Err(bad_param(format!(
            "Parameter validation failed for {params}: Key: '{params}Params.Limit' Error:Field validation for 'Limit' failed on the 'lte' tag"
        )));
    }
    if value < 1 {
        return Ok(default);
    }
    Ok(value as usize)
}

fn page<T>(items: Vec<T>, offset: usize, limit: usize) -> (Vec<T>, String) {
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(offset).take(limit).collect();
    let next = offset + page.len();
    let cursor = if next < total && !page.is_empty() {
        encode_cursor(next)
    } else {
        String::new()
    };
    (page, cursor)
}

/// `GET /exchange/status`.
#[must_use]
pub fn exchange_status(exchange: &Exchange) -> RestResponse {
    let active = !exchange.is_paused();
    RestResponse::json(
        200,
        &json!({"exchange_active": active, "trading_active": active}),
    )
}

/// The REST Market object (field names and JSON types of `rest_samples.jsonl`).
#[must_use]
pub fn market_object(exchange: &Exchange, m: &Market) -> Value {
    let top = m.book.top();
    let event = exchange.events().get(m.event);
    let ranges: Vec<Value> = m
        .structure
        .ranges()
        .iter()
        .map(|r| json!({"start": dollars(r.start_e6), "end": dollars(r.end_e6), "step": dollars(r.step_e6)}))
        .collect();
    let floor: f64 = m.floor_strike.parse().unwrap_or(0.0);
    let mut object = json!({
        "ticker": m.ticker,
        "event_ticker": event.map_or("", |e| e.ticker.as_str()),
        "market_type": "binary",
        "title": m.title,
        "yes_sub_title": m.sub_title,
        "no_sub_title": m.sub_title,
        "created_time": time(m.created_us),
        "updated_time": time(m.updated_us),
        "open_time": time(m.open_us),
        "close_time": time(m.close_us),
        "expiration_time": time(m.close_us),
        "latest_expiration_time": time(m.close_us),
        "expected_expiration_time": time(m.close_us),
        "occurrence_datetime": time(m.close_us),
        "settlement_timer_seconds": 60,
        "status": m.status.as_str(),
        "notional_value_dollars": "1.0000",
        "yes_bid_dollars": dollars(top.yes_bid_e6),
        "yes_ask_dollars": dollars(top.yes_ask_e6),
        "no_bid_dollars": dollars(ONE_DOLLAR_E6 - top.yes_ask_e6),
        "no_ask_dollars": dollars(ONE_DOLLAR_E6 - top.yes_bid_e6),
        "yes_bid_size_fp": count(top.yes_bid_size_e2),
        "yes_ask_size_fp": count(top.yes_ask_size_e2),
        "last_price_dollars": dollars(m.last_price_e6.unwrap_or(0)),
        "previous_yes_bid_dollars": "0.0000",
        "previous_yes_ask_dollars": "0.0000",
        "previous_price_dollars": "0.0000",
        "volume_fp": count(m.volume_e2),
        "volume_24h_fp": count(m.volume_e2),
        "liquidity_dollars": "0.0000",
        "open_interest_fp": count(m.open_interest_e2),
        "result": m.result.map_or("", Side::as_str),
        "can_close_early": false,
        "fractional_trading_enabled": true,
        "expiration_value": "",
        "rules_primary": format!("If the value is above {} at the close, then the market resolves to Yes.", m.floor_strike),
        "rules_secondary": "Simulated market.",
        "early_close_condition": "This market will not close early.",
        "price_level_structure": m.structure.as_str(),
        "price_ranges": ranges,
        "response_price_units": "usd_cent",
        "strike_type": "greater",
        "floor_strike": floor,
    });
    if let (Some(result), Value::Object(map)) = (m.result, &mut object) {
        let value = if result == Side::Yes {
            ONE_DOLLAR_E6
        } else {
            0
        };
        map.insert(
            "settlement_value_dollars".into(),
            Value::String(dollars(value)),
        );
    }
    object
}

/// `GET /markets/{ticker}` → `{"market": Market}`, 404 when unknown.
#[must_use]
pub fn get_market(exchange: &Exchange, ticker: &str) -> RestResponse {
    match exchange.market(ticker) {
        Some(m) => RestResponse::json(200, &json!({"market": market_object(exchange, m)})),
        None => not_found(),
    }
}

/// `GET /markets?status=&series_ticker=&event_ticker=&tickers=&limit=&cursor=`.
#[must_use]
pub fn get_markets(exchange: &Exchange, query: &str) -> RestResponse {
    let pairs = query_pairs(query);
    let limit = match limit(&pairs, 100, 1000, "GetMarkets") {
        Ok(l) => l,
        Err(response) => return response,
    };
    let status = param(&pairs, "status");
    if let Some(s) = status
        && !["unopened", "open", "paused", "closed", "settled"].contains(&s)
    {
        return bad_param(format!(
            "Parameter validation failed for GetMarkets: invalid status {s}"
        ));
    }
    let series = param(&pairs, "series_ticker");
    let event = param(&pairs, "event_ticker");
    let tickers: Option<Vec<&str>> = param(&pairs, "tickers").map(|t| t.split(',').collect());
    let matching: Vec<&Market> = exchange
        .markets()
        .iter()
        .filter(|m| status.is_none_or(|s| m.status.filter_name() == s))
        .filter(|m| {
            let e = exchange.events().get(m.event);
            series.is_none_or(|s| {
                e.and_then(|e| exchange.series().get(e.series))
                    .is_some_and(|x| x.ticker == s)
            }) && event.is_none_or(|t| e.is_some_and(|e| e.ticker == t))
        })
        .filter(|m| {
            tickers
                .as_ref()
                .is_none_or(|t| t.contains(&m.ticker.as_str()))
        })
        .collect();
    let (page, cursor) = page(matching, decode_cursor(param(&pairs, "cursor")), limit);
    let markets: Vec<Value> = page.iter().map(|m| market_object(exchange, m)).collect();
    RestResponse::json(200, &json!({"markets": markets, "cursor": cursor}))
}

/// `GET /markets/{ticker}/orderbook?depth=N`: ascending levels, NO in NO-leg price; `depth`
/// 1–100 keeps the N best levels per side (still ascending), 0 or negative means all.
#[must_use]
pub fn get_orderbook(exchange: &Exchange, ticker: &str, query: &str) -> RestResponse {
    let pairs = query_pairs(query);
    let Some(m) = exchange.market(ticker) else {
        return not_found();
    };
    let depth: i64 = param(&pairs, "depth")
        .and_then(|d| d.parse().ok())
        .unwrap_or(0);
    let side = |side: Side| -> Vec<Value> {
        let levels = m.book.levels(side);
        let keep = if depth > 0 {
            (depth as usize).min(levels.len())
        } else {
            levels.len()
        };
        levels[levels.len() - keep..]
            .iter()
            .map(|l| json!([dollars(l.price_e6), count(l.count_e2)]))
            .collect()
    };
    RestResponse::json(
        200,
        &json!({"orderbook_fp": {"yes_dollars": side(Side::Yes), "no_dollars": side(Side::No)}}),
    )
}

/// `GET /markets/trades?ticker=&min_ts=&max_ts=&limit=&cursor=`, newest first.
#[must_use]
pub fn get_trades(exchange: &Exchange, query: &str) -> RestResponse {
    let pairs = query_pairs(query);
    let limit = match limit(&pairs, 100, 1000, "GetTrades") {
        Ok(l) => l,
        Err(response) => return response,
    };
    let ticker = param(&pairs, "ticker");
    let min_ts: Option<i64> = param(&pairs, "min_ts").and_then(|v| v.parse().ok());
    let max_ts: Option<i64> = param(&pairs, "max_ts").and_then(|v| v.parse().ok());
    let markets = exchange.markets();
    let matching: Vec<_> = exchange
        .trades()
        .iter()
        .rev()
        .filter(|t| ticker.is_none_or(|x| markets.get(t.market).is_some_and(|m| m.ticker == x)))
        .filter(|t| min_ts.is_none_or(|s| t.created_us.div_euclid(1_000_000) >= s))
        .filter(|t| max_ts.is_none_or(|s| t.created_us.div_euclid(1_000_000) <= s))
        .collect();
    let (page, cursor) = page(matching, decode_cursor(param(&pairs, "cursor")), limit);
    let trades: Vec<Value> = page
        .iter()
        .map(|t| {
            json!({
                "trade_id": t.trade_id.as_str(),
                "ticker": markets.get(t.market).map_or("", |m| m.ticker.as_str()),
                "count_fp": count(t.count_e2),
                "yes_price_dollars": dollars(t.yes_price_e6),
                "no_price_dollars": dollars(ONE_DOLLAR_E6 - t.yes_price_e6),
                "taker_side": t.taker.as_str(),
                "taker_outcome_side": t.taker.as_str(),
                "taker_book_side": if t.taker == Side::Yes { "bid" } else { "ask" },
                "created_time": time(t.created_us),
                "is_block_trade": false,
            })
        })
        .collect();
    RestResponse::json(200, &json!({"trades": trades, "cursor": cursor}))
}

/// `GET /events?series_ticker=&status=&with_nested_markets=&limit=(≤200)&cursor=`.
#[must_use]
pub fn get_events(exchange: &Exchange, query: &str) -> RestResponse {
    let pairs = query_pairs(query);
    let limit = match limit(&pairs, 200, 200, "GetEvents") {
        Ok(l) => l,
        Err(response) => return response,
    };
    let series = param(&pairs, "series_ticker");
    let status = param(&pairs, "status");
    let nested = param(&pairs, "with_nested_markets") == Some("true");
    let matching: Vec<_> = exchange
        .events()
        .iter()
        .filter(|e| {
            series.is_none_or(|s| {
                exchange
                    .series()
                    .get(e.series)
                    .is_some_and(|x| x.ticker == s)
            })
        })
        .filter(|e| {
            status.is_none_or(|s| {
                e.markets.iter().any(|i| {
                    exchange
                        .markets()
                        .get(*i)
                        .is_some_and(|m| m.status.filter_name() == s)
                })
            })
        })
        .collect();
    let (page, cursor) = page(matching, decode_cursor(param(&pairs, "cursor")), limit);
    let events: Vec<Value> = page
        .iter()
        .map(|e| {
            let mut object = Map::new();
            object.insert("event_ticker".into(), json!(e.ticker));
            object.insert(
                "series_ticker".into(),
                json!(
                    exchange
                        .series()
                        .get(e.series)
                        .map_or("", |s| s.ticker.as_str())
                ),
            );
            object.insert("title".into(), json!(e.title));
            object.insert("sub_title".into(), json!(e.subtitle));
            object.insert("collateral_return_type".into(), json!("MECNET"));
            object.insert("mutually_exclusive".into(), json!(false));
            object.insert("available_on_brokers".into(), json!(false));
            object.insert("product_metadata".into(), json!({}));
            object.insert("strike_date".into(), json!(time(e.strike_date_us)));
            if nested {
                let markets: Vec<Value> = e
                    .markets
                    .iter()
                    .filter_map(|i| exchange.markets().get(*i))
                    .map(|m| market_object(exchange, m))
                    .collect();
                object.insert("markets".into(), Value::Array(markets));
            }
            Value::Object(object)
        })
        .collect();
    RestResponse::json(200, &json!({"events": events, "cursor": cursor}))
}

/// Routes `GET path?query` (with or without the `/trade-api/v2` prefix) to an endpoint. Other
/// methods and unknown paths answer 404.
#[must_use]
pub fn route(exchange: &Exchange, method: &str, target: &str) -> RestResponse {
    if method != "GET" {
        return not_found();
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let path = path.strip_prefix("/trade-api/v2").unwrap_or(path);
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["exchange", "status"] => exchange_status(exchange),
        ["markets"] => get_markets(exchange, query),
        ["markets", "trades"] => get_trades(exchange, query),
        ["markets", ticker] => get_market(exchange, ticker),
        ["markets", ticker, "orderbook"] => get_orderbook(exchange, ticker, query),
        ["events"] => get_events(exchange, query),
        _ => not_found(),
    }
}

/// The status a `status=` filter selects, for callers that build their own queries.
#[must_use]
pub fn statuses_for_filter(filter: &str) -> Vec<MarketStatus> {
    [
        MarketStatus::Initialized,
        MarketStatus::Active,
        MarketStatus::Inactive,
        MarketStatus::Closed,
        MarketStatus::Determined,
        MarketStatus::Finalized,
    ]
    .into_iter()
    .filter(|s| s.filter_name() == filter)
    .collect()
}
