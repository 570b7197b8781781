//! REST response bodies (`protocol.md` §6), as pure functions over the exchange. The server
//! maps a request to [`route`] (or calls the endpoint functions) and sends
//! [`RestResponse::status`] with [`RestResponse::body`] as `application/json`.
//!
//! Bodies not documented verbatim by Kalshi: an unknown ticker answers 404
//! `{"error":{"code":"not_found","message":"not found"}}` (the nested shape of §6.8), an unknown
//! path the same, and a bad integer parameter 400 with the bare `{"msg":...}` shape.

use kalshi_wire::fixed::{COUNT_SCALE, PRICE_SCALE, write_decimal, write_rfc3339_us};
use kalshi_wire::{Level, Side};
use serde_json::{Map, Value, json};

use crate::book::TopOfBook;
use crate::exchange::{Exchange, Market, MarketStatus};
use crate::load::LoadGen;
use crate::price::{ONE_DOLLAR_E6, PriceLevelStructure};

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

/// An optional integer parameter; 400 bare body when present but not an integer.
fn int_param(
    pairs: &[(String, String)],
    key: &str,
    params: &str,
) -> Result<Option<i64>, RestResponse> {
    match param(pairs, key) {
        None => Ok(None),
        Some(text) => text.parse().map(Some).map_err(|_| {
            bad_param(format!(
                "Parameter validation failed for {params}: invalid {key} {text:?}"
            ))
        }),
    }
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

/// The fields a REST Market object is built from (shared by the exchange and load mode).
struct MarketFields<'a> {
    ticker: &'a str,
    event_ticker: &'a str,
    title: &'a str,
    sub_title: &'a str,
    created_us: i64,
    updated_us: i64,
    open_us: i64,
    close_us: i64,
    status: &'a str,
    top: TopOfBook,
    last_price_e6: i64,
    volume_e2: i64,
    open_interest_e2: i64,
    structure: PriceLevelStructure,
    floor_strike: &'a str,
    result: Option<Side>,
}

fn market_value(f: &MarketFields<'_>) -> Value {
    let top = f.top;
    let ranges: Vec<Value> = f
        .structure
        .ranges()
        .iter()
        .map(|r| json!({"start": dollars(r.start_e6), "end": dollars(r.end_e6), "step": dollars(r.step_e6)}))
        .collect();
    let floor: f64 = f.floor_strike.parse().unwrap_or(0.0);
    let mut object = json!({
        "ticker": f.ticker,
        "event_ticker": f.event_ticker,
        "market_type": "binary",
        "title": f.title,
        "yes_sub_title": f.sub_title,
        "no_sub_title": f.sub_title,
        "created_time": time(f.created_us),
        "updated_time": time(f.updated_us),
        "open_time": time(f.open_us),
        "close_time": time(f.close_us),
        "expiration_time": time(f.close_us),
        "latest_expiration_time": time(f.close_us),
        "expected_expiration_time": time(f.close_us),
        "occurrence_datetime": time(f.close_us),
        "settlement_timer_seconds": 60,
        "status": f.status,
        "notional_value_dollars": "1.0000",
        "yes_bid_dollars": dollars(top.yes_bid_e6),
        "yes_ask_dollars": dollars(top.yes_ask_e6),
        "no_bid_dollars": dollars(ONE_DOLLAR_E6 - top.yes_ask_e6),
        "no_ask_dollars": dollars(ONE_DOLLAR_E6 - top.yes_bid_e6),
        "yes_bid_size_fp": count(top.yes_bid_size_e2),
        "yes_ask_size_fp": count(top.yes_ask_size_e2),
        "last_price_dollars": dollars(f.last_price_e6),
        "previous_yes_bid_dollars": "0.0000",
        "previous_yes_ask_dollars": "0.0000",
        "previous_price_dollars": "0.0000",
        "volume_fp": count(f.volume_e2),
        "volume_24h_fp": count(f.volume_e2),
        "liquidity_dollars": "0.0000",
        "open_interest_fp": count(f.open_interest_e2),
        "result": f.result.map_or("", Side::as_str),
        "can_close_early": false,
        "fractional_trading_enabled": true,
        "expiration_value": "",
        "rules_primary": format!("If the value is above {} at the close, then the market resolves to Yes.", f.floor_strike),
        "rules_secondary": "Simulated market.",
        "early_close_condition": "This market will not close early.",
        "price_level_structure": f.structure.as_str(),
        "price_ranges": ranges,
        "response_price_units": "usd_cent",
        "strike_type": "greater",
        "floor_strike": floor,
    });
    if let (Some(result), Value::Object(map)) = (f.result, &mut object) {
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

/// The REST Market object (field names and JSON types of `rest_samples.jsonl`).
#[must_use]
pub fn market_object(exchange: &Exchange, m: &Market) -> Value {
    let event = exchange.events().get(m.event);
    market_value(&MarketFields {
        ticker: &m.ticker,
        event_ticker: event.map_or("", |e| e.ticker.as_str()),
        title: &m.title,
        sub_title: &m.sub_title,
        created_us: m.created_us,
        updated_us: m.updated_us,
        open_us: m.open_us,
        close_us: m.close_us,
        status: m.status.as_str(),
        top: m.book.top(),
        last_price_e6: m.last_price_e6.unwrap_or(0),
        volume_e2: m.volume_e2,
        open_interest_e2: m.open_interest_e2,
        structure: m.structure,
        floor_strike: &m.floor_strike,
        result: m.result,
    })
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
    let depth = match int_param(&pairs, "depth", "GetMarketOrderbook") {
        Ok(v) => v.unwrap_or(0),
        Err(response) => return response,
    };
    if depth > 100 {
        return bad_param(
            "Parameter validation failed for GetMarketOrderbook: Key: 'GetMarketOrderbookParams.Depth' Error:Field validation for 'Depth' failed on the 'lte' tag".to_owned(),
        );
    }
    orderbook_body(&m.book.levels(Side::Yes), &m.book.levels(Side::No), depth)
}

/// `{"orderbook_fp":{"yes_dollars":[…],"no_dollars":[…]}}` from ascending levels, keeping the
/// `depth` best per side when `depth` > 0.
fn orderbook_body(yes: &[Level], no: &[Level], depth: i64) -> RestResponse {
    let side = |levels: &[Level]| -> Vec<Value> {
        let keep = if depth > 0 {
            usize::try_from(depth)
                .unwrap_or(usize::MAX)
                .min(levels.len())
        } else {
            levels.len()
        };
        levels
            .iter()
            .skip(levels.len() - keep)
            .map(|l| json!([dollars(l.price_e6), count(l.count_e2)]))
            .collect()
    };
    RestResponse::json(
        200,
        &json!({"orderbook_fp": {"yes_dollars": side(yes), "no_dollars": side(no)}}),
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
    let min_ts = match int_param(&pairs, "min_ts", "GetTrades") {
        Ok(v) => v,
        Err(response) => return response,
    };
    let max_ts = match int_param(&pairs, "max_ts", "GetTrades") {
        Ok(v) => v,
        Err(response) => return response,
    };
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
            let mut object = event_object(exchange, e);
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
        ["events", ticker] => get_event(exchange, ticker, query),
        ["series"] => get_series_list(exchange),
        ["series", ticker] => get_series(exchange, ticker),
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

/// The 429 body (`protocol.md` §6.9): `{"error":"too many requests"}`, a string, not an object.
#[must_use]
pub fn too_many_requests() -> RestResponse {
    RestResponse::json(429, &json!({"error": "too many requests"}))
}

/// Why a signed request or WebSocket handshake was refused (`protocol.md` §2.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// The signature does not verify.
    BadSignature,
    /// The key id is not known.
    UnknownKey,
    /// A signature header is missing.
    MissingHeader,
    /// The timestamp is outside the skew window.
    StaleTimestamp,
}

/// The verbatim 401 body for an auth failure (`protocol.md` §2.5).
#[must_use]
pub fn unauthorized(failure: AuthFailure) -> RestResponse {
    let body = match failure {
        AuthFailure::BadSignature => {
            json!({"error": {"code": "authentication_error", "message": "authentication_error", "details": "INCORRECT_API_KEY_SIGNATURE"}})
        }
        AuthFailure::UnknownKey => {
            json!({"error": {"code": "authentication_error", "message": "authentication_error", "details": "NOT_FOUND"}})
        }
        AuthFailure::MissingHeader => {
            json!({"error": {"code": "signature_is_missing_from_headers", "message": "signature is missing from headers"}})
        }
        AuthFailure::StaleTimestamp => {
            json!({"error": {"code": "header_timestamp_expired", "message": "header timestamp expired"}})
        }
    };
    RestResponse::json(401, &body)
}

fn series_object(exchange: &Exchange, index: usize) -> Value {
    let series = exchange.series().get(index);
    json!({
        "ticker": series.map_or("", |s| s.ticker.as_str()),
        "frequency": "hourly",
        "title": series.map_or("", |s| s.title.as_str()),
        "category": "Financials",
        "tags": [],
        "settlement_sources": [{"name": "Simulator", "url": "https://example.invalid/"}],
        "contract_url": "https://example.invalid/contract.pdf",
        "contract_terms_url": "https://example.invalid/terms.pdf",
        "fee_type": "quadratic",
        "fee_multiplier": 1,
        "additional_prohibitions": [],
        "product_metadata": {},
    })
}

/// `GET /series` → `{"series":[Series]}` (no filters; the simulator has few series).
#[must_use]
pub fn get_series_list(exchange: &Exchange) -> RestResponse {
    let series: Vec<Value> = (0..exchange.series().len())
        .map(|i| series_object(exchange, i))
        .collect();
    RestResponse::json(200, &json!({ "series": series }))
}

/// `GET /series/{ticker}` → `{"series": Series}`, 404 when unknown.
#[must_use]
pub fn get_series(exchange: &Exchange, ticker: &str) -> RestResponse {
    match exchange.series().iter().position(|s| s.ticker == ticker) {
        Some(index) => RestResponse::json(200, &json!({"series": series_object(exchange, index)})),
        None => not_found(),
    }
}

fn event_object(exchange: &Exchange, e: &crate::exchange::Event) -> Map<String, Value> {
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
    object
}

/// `GET /events/{event_ticker}` → `{"event": EventData, "markets": [Market]}`, 404 when
/// unknown. With `with_nested_markets=true` the markets are inside `event` (and the top-level
/// list is empty), as on Kalshi.
#[must_use]
pub fn get_event(exchange: &Exchange, ticker: &str, query: &str) -> RestResponse {
    let pairs = query_pairs(query);
    let nested = param(&pairs, "with_nested_markets") == Some("true");
    let Some(e) = exchange.events().iter().find(|e| e.ticker == ticker) else {
        return not_found();
    };
    let markets: Vec<Value> = e
        .markets
        .iter()
        .filter_map(|i| exchange.markets().get(*i))
        .map(|m| market_object(exchange, m))
        .collect();
    let mut event = event_object(exchange, e);
    if nested {
        event.insert("markets".into(), Value::Array(markets));
        RestResponse::json(200, &json!({"event": event, "markets": []}))
    } else {
        RestResponse::json(200, &json!({"event": event, "markets": markets}))
    }
}

/// The event ticker of a load market: its ticker without the last `-` part.
fn load_event_ticker(ticker: &str) -> &str {
    ticker.rsplit_once('-').map_or(ticker, |(event, _)| event)
}

fn load_market_object(load: &LoadGen, index: usize) -> Option<Value> {
    let ticker = load.ticker(index)?;
    let state = load.market_state(index)?;
    let structure = load.structure(index)?;
    let start = load.config().start_us;
    let floor = ticker.rsplit_once("-T").map_or("0", |(_, strike)| strike);
    Some(market_value(&MarketFields {
        ticker,
        event_ticker: load_event_ticker(ticker),
        title: ticker,
        sub_title: floor,
        created_us: start,
        updated_us: start,
        open_us: start,
        close_us: start.saturating_add(30 * 86_400 * 1_000_000),
        status: "active",
        top: state.top,
        last_price_e6: state.last_price_e6,
        volume_e2: state.volume_e2,
        open_interest_e2: state.open_interest_e2,
        structure,
        floor_strike: floor,
        result: None,
    }))
}

/// REST for load mode: `GET /exchange/status` (active), `/markets` (every load market is
/// `active`; `status`, `series_ticker`, `event_ticker`, `tickers`, `limit` ≤ 1000, cursor
/// paging), `/markets/{ticker}`, `/markets/{ticker}/orderbook` (current load books, `depth`),
/// and `/markets/trades` (always empty: load mode keeps no trade history). Anything else 404.
#[must_use]
pub fn route_load(load: &LoadGen, method: &str, target: &str) -> RestResponse {
    if method != "GET" {
        return not_found();
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let path = path.strip_prefix("/trade-api/v2").unwrap_or(path);
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let pairs = query_pairs(query);
    match parts.as_slice() {
        ["exchange", "status"] => RestResponse::json(
            200,
            &json!({"exchange_active": true, "trading_active": true}),
        ),
        ["markets"] => {
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
            let tickers: Option<Vec<&str>> =
                param(&pairs, "tickers").map(|t| t.split(',').collect());
            let matching: Vec<usize> = (0..load.market_count())
                .filter(|_| status.is_none_or(|s| s == "open"))
                .filter(|i| {
                    let ticker = load.ticker(*i).unwrap_or("");
                    series.is_none_or(|s| ticker.split('-').next() == Some(s))
                        && event.is_none_or(|e| load_event_ticker(ticker) == e)
                        && tickers.as_ref().is_none_or(|t| t.contains(&ticker))
                })
                .collect();
            let (page, cursor) = page(matching, decode_cursor(param(&pairs, "cursor")), limit);
            let markets: Vec<Value> = page
                .iter()
                .filter_map(|i| load_market_object(load, *i))
                .collect();
            RestResponse::json(200, &json!({"markets": markets, "cursor": cursor}))
        }
        ["markets", "trades"] => match limit(&pairs, 100, 1000, "GetTrades") {
            Ok(_) => RestResponse::json(200, &json!({"trades": [], "cursor": ""})),
            Err(response) => response,
        },
        ["markets", ticker] => match load
            .market_index(ticker)
            .and_then(|i| load_market_object(load, i))
        {
            Some(market) => RestResponse::json(200, &json!({ "market": market })),
            None => not_found(),
        },
        ["markets", ticker, "orderbook"] => {
            let depth = match int_param(&pairs, "depth", "GetMarketOrderbook") {
                Ok(v) => v.unwrap_or(0),
                Err(response) => return response,
            };
            match load.market_index(ticker).and_then(|i| load.market_state(i)) {
                Some(state) => orderbook_body(&state.yes, &state.no, depth),
                None => not_found(),
            }
        }
        _ => not_found(),
    }
}
