//! Renders records as current-format Kalshi frames (fixed-point strings, `ts_ms`).
//!
//! The exchange simulator uses this to speak the protocol, and the fuzz target uses it to check
//! that decoding is lossless: `decode(render(decode(frame)))` must equal `decode(frame)`. The
//! output follows `protocol.md` §5: prices with at least 4 decimals, counts with 2, snapshot sides
//! omitted when empty, deltas with both `ts` (RFC 3339, µs) and `ts_ms`.

use crate::fixed::{
    COUNT_SCALE, MICROS_PER_MILLI, MICROS_PER_SECOND, PRICE_SCALE, write_decimal, write_i64,
    write_rfc3339_us,
};
use crate::json::{ObjectWriter, write_str};
use crate::record::{
    Aux, ControlKind, Decoded, Header, Level, MarketMetadata, Record, Scalar, Text,
};

fn price(object: &mut ObjectWriter<'_>, key: &str, value_e6: i64) {
    let out = object.key(key);
    out.push(b'"');
    write_decimal(out, value_e6, PRICE_SCALE, 4);
    out.push(b'"');
}

fn count(object: &mut ObjectWriter<'_>, key: &str, value_e2: i64) {
    let out = object.key(key);
    out.push(b'"');
    write_decimal(out, value_e2, COUNT_SCALE, 2);
    out.push(b'"');
}

fn header_top(object: &mut ObjectWriter<'_>, header: &Header) {
    if let Some(id) = header.id {
        object.u64("id", id.get());
    }
    if let Some(sid) = header.sid {
        object.u64("sid", sid.get());
    }
    if let Some(seq) = header.seq {
        object.u64("seq", seq.get());
    }
}

fn levels(object: &mut ObjectWriter<'_>, key: &str, levels: &[Level]) {
    if levels.is_empty() {
        return;
    }
    let out = object.key(key);
    out.push(b'[');
    for (index, level) in levels.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"[\"");
        write_decimal(out, level.price_e6, PRICE_SCALE, 4);
        out.extend_from_slice(b"\",\"");
        write_decimal(out, level.count_e2, COUNT_SCALE, 2);
        out.extend_from_slice(b"\"]");
    }
    out.push(b']');
}

/// Writes a scalar with the JSON type it had on the wire.
fn scalar(object: &mut ObjectWriter<'_>, aux: &Aux, key: &str, value: Scalar) {
    if value.is_number {
        object.raw(key, aux.text(value.text));
    } else {
        object.str(key, aux.text(value.text));
    }
}

fn some_text(object: &mut ObjectWriter<'_>, aux: &Aux, key: &str, text: Option<Text>) {
    if let Some(text) = text {
        object.str(key, aux.text(text));
    }
}

fn some_seconds(object: &mut ObjectWriter<'_>, key: &str, micros: Option<i64>) {
    if let Some(micros) = micros {
        object.i64(key, micros.div_euclid(MICROS_PER_SECOND));
    }
}

fn has_metadata(m: &MarketMetadata) -> bool {
    *m != MarketMetadata::default()
}

fn metadata(object: &mut ObjectWriter<'_>, aux: &Aux, m: &MarketMetadata) {
    some_text(object, aux, "name", m.name);
    some_text(object, aux, "title", m.title);
    some_text(object, aux, "yes_sub_title", m.yes_sub_title);
    some_text(object, aux, "no_sub_title", m.no_sub_title);
    some_text(object, aux, "rules_primary", m.rules_primary);
    some_text(object, aux, "rules_secondary", m.rules_secondary);
    if let Some(flag) = m.can_close_early {
        object.raw("can_close_early", if flag { "true" } else { "false" });
    }
    some_text(object, aux, "event_ticker", m.event_ticker);
    some_seconds(object, "expected_expiration_ts", m.expected_expiration_ts);
    some_text(object, aux, "strike_type", m.strike_type);
    if let Some(value) = m.floor_strike {
        scalar(object, aux, "floor_strike", value);
    }
    if let Some(value) = m.cap_strike {
        scalar(object, aux, "cap_strike", value);
    }
    if let Some(text) = m.custom_strike {
        object.raw("custom_strike", aux.text(text));
    }
}

/// Appends the wire frame that carries `decoded`'s record.
pub fn render_frame(decoded: &Decoded<'_>, out: &mut Vec<u8>) {
    let aux = decoded.aux;
    let mut frame = ObjectWriter::open(out);
    match &decoded.record {
        Record::Trade(r) => {
            frame.str("type", "trade");
            header_top(&mut frame, &r.header);
            let mut msg = ObjectWriter::open(frame.key("msg"));
            msg.str("trade_id", r.trade_id.as_str());
            msg.str("market_ticker", r.ticker.as_str());
            price(&mut msg, "yes_price_dollars", r.yes_price_e6);
            price(&mut msg, "no_price_dollars", r.no_price_e6);
            count(&mut msg, "count_fp", r.count_e2);
            if let Some(side) = r.taker_side {
                msg.str("taker_side", side.as_str());
            }
            if let Some(side) = r.taker_outcome_side {
                msg.str("taker_outcome_side", side.as_str());
            }
            if let Some(side) = r.taker_book_side {
                msg.str("taker_book_side", side.as_str());
            }
            if let Some(block) = r.is_block_trade {
                msg.raw("is_block_trade", if block { "true" } else { "false" });
            }
            if let Some(ts) = r.exchange_ts {
                msg.i64("ts", ts.div_euclid(MICROS_PER_SECOND));
                msg.i64("ts_ms", ts.div_euclid(MICROS_PER_MILLI));
            }
            msg.close();
        }
        Record::Delta(r) => {
            frame.str("type", "orderbook_delta");
            header_top(&mut frame, &r.header);
            let mut msg = ObjectWriter::open(frame.key("msg"));
            msg.str("market_ticker", r.ticker.as_str());
            msg.str("market_id", r.market_id.as_str());
            price(&mut msg, "price_dollars", r.price_e6);
            count(&mut msg, "delta_fp", r.delta_e2);
            msg.str("side", r.side.as_str());
            if let Some(ts) = r.exchange_ts {
                let out = msg.key("ts");
                out.push(b'"');
                write_rfc3339_us(out, ts);
                out.push(b'"');
                msg.i64("ts_ms", ts.div_euclid(MICROS_PER_MILLI));
            }
            msg.close();
        }
        Record::Snapshot(r) => {
            frame.str("type", "orderbook_snapshot");
            header_top(&mut frame, &r.header);
            let mut msg = ObjectWriter::open(frame.key("msg"));
            msg.str("market_ticker", r.ticker.as_str());
            msg.str("market_id", r.market_id.as_str());
            levels(&mut msg, "yes_dollars_fp", decoded.yes_levels());
            levels(&mut msg, "no_dollars_fp", decoded.no_levels());
            msg.close();
        }
        Record::Ticker(r) => {
            frame.str("type", "ticker");
            header_top(&mut frame, &r.header);
            let mut msg = ObjectWriter::open(frame.key("msg"));
            msg.str("market_id", r.market_id.as_str());
            msg.str("market_ticker", r.ticker.as_str());
            let prices = [
                ("price_dollars", r.price_e6),
                ("yes_bid_dollars", r.yes_bid_e6),
                ("yes_ask_dollars", r.yes_ask_e6),
            ];
            for (key, value) in prices {
                if let Some(value) = value {
                    price(&mut msg, key, value);
                }
            }
            let counts = [
                ("volume_fp", r.volume_e2),
                ("open_interest_fp", r.open_interest_e2),
                ("yes_bid_size_fp", r.yes_bid_size_e2),
                ("yes_ask_size_fp", r.yes_ask_size_e2),
                ("last_trade_size_fp", r.last_trade_size_e2),
            ];
            for (key, value) in counts {
                if let Some(value) = value {
                    count(&mut msg, key, value);
                }
            }
            let dollars = [
                ("dollar_volume", r.dollar_volume_e6),
                ("dollar_open_interest", r.dollar_open_interest_e6),
            ];
            for (key, value) in dollars {
                match value {
                    Some(v) if v % 1_000_000 == 0 => msg.i64(key, v / 1_000_000),
                    Some(v) => {
                        let out = msg.key(key);
                        out.push(b'"');
                        write_decimal(out, v, PRICE_SCALE, 0);
                        out.push(b'"');
                    }
                    None => {}
                }
            }
            if let Some(ts) = r.exchange_ts {
                msg.i64("ts", ts.div_euclid(MICROS_PER_SECOND));
                msg.i64("ts_ms", ts.div_euclid(MICROS_PER_MILLI));
                let out = msg.key("time");
                out.push(b'"');
                write_rfc3339_us(out, ts);
                out.push(b'"');
            }
            msg.close();
        }
        Record::MarketLifecycle(r) => {
            let wire_type = if r.mve {
                "multivariate_market_lifecycle"
            } else {
                "market_lifecycle_v2"
            };
            frame.str("type", wire_type);
            header_top(&mut frame, &r.header);
            let mut msg = ObjectWriter::open(frame.key("msg"));
            msg.str("market_ticker", r.ticker.as_str());
            msg.str("event_type", aux.text(r.event_type));
            if let Some(index) = r.exchange_index {
                msg.i64("exchange_index", index);
            }
            some_seconds(&mut msg, "open_ts", r.open_ts);
            some_seconds(&mut msg, "close_ts", r.close_ts);
            some_seconds(&mut msg, "determination_ts", r.determination_ts);
            some_seconds(&mut msg, "settled_ts", r.settled_ts);
            some_text(&mut msg, aux, "result", r.result);
            if let Some(value) = r.settlement_value_e6 {
                price(&mut msg, "settlement_value", value);
            }
            if let Some(flag) = r.is_deactivated {
                msg.raw("is_deactivated", if flag { "true" } else { "false" });
            }
            some_text(
                &mut msg,
                aux,
                "price_level_structure",
                r.price_level_structure,
            );
            if r.price_ranges > 0 {
                let out = msg.key("price_ranges");
                out.push(b'[');
                for (index, range) in aux.price_ranges().iter().enumerate() {
                    if index > 0 {
                        out.push(b',');
                    }
                    let mut band = ObjectWriter::open(out);
                    price(&mut band, "start", range.start_e6);
                    price(&mut band, "end", range.end_e6);
                    price(&mut band, "step", range.step_e6);
                    band.close();
                }
                out.push(b']');
            }
            if has_metadata(&r.metadata) {
                let mut extra = ObjectWriter::open(msg.key("additional_metadata"));
                metadata(&mut extra, aux, &r.metadata);
                extra.close();
            }
            msg.close();
        }
        Record::EventLifecycle(r) => {
            frame.str("type", r.kind.wire_type());
            header_top(&mut frame, &r.header);
            let mut msg = ObjectWriter::open(frame.key("msg"));
            msg.str("event_ticker", aux.text(r.event_ticker));
            if let Some(index) = r.exchange_index {
                msg.i64("exchange_index", index);
            }
            some_text(&mut msg, aux, "title", r.title);
            some_text(&mut msg, aux, "subtitle", r.subtitle);
            some_text(
                &mut msg,
                aux,
                "collateral_return_type",
                r.collateral_return_type,
            );
            some_text(&mut msg, aux, "series_ticker", r.series_ticker);
            some_seconds(&mut msg, "strike_date", r.strike_date);
            some_text(&mut msg, aux, "strike_period", r.strike_period);
            if r.kind == crate::record::EventKind::FeeUpdate {
                match r.fee_type_override {
                    Some(text) => msg.str("fee_type_override", aux.text(text)),
                    None => msg.null("fee_type_override"),
                }
                match r.fee_multiplier_override {
                    Some(value) => scalar(&mut msg, aux, "fee_multiplier_override", value),
                    None => msg.null("fee_multiplier_override"),
                }
            }
            msg.close();
        }
        Record::Control(r) => render_control(&mut frame, aux, r),
        Record::Unknown(r) => {
            frame.str("type", aux.text(r.wire_type));
            header_top(&mut frame, &r.header);
        }
    }
    frame.close();
}

fn render_control(frame: &mut ObjectWriter<'_>, aux: &Aux, r: &crate::record::Control) {
    match r.kind {
        ControlKind::Subscribed => {
            frame.str("type", "subscribed");
            let header = Header {
                sid: None,
                ..r.header
            };
            header_top(frame, &header);
            let mut msg = ObjectWriter::open(frame.key("msg"));
            some_text(&mut msg, aux, "channel", r.channel);
            if let Some(sid) = r.header.sid {
                msg.u64("sid", sid.get());
            }
            msg.close();
        }
        ControlKind::Ok => {
            frame.str("type", "ok");
            header_top(frame, &r.header);
            if !r.market_tickers.is_empty() || !r.market_ids.is_empty() {
                let mut msg = ObjectWriter::open(frame.key("msg"));
                if !r.market_tickers.is_empty() {
                    list(&mut msg, "market_tickers", aux.list(r.market_tickers));
                }
                if !r.market_ids.is_empty() {
                    list(&mut msg, "market_ids", aux.list(r.market_ids));
                }
                msg.close();
            }
        }
        ControlKind::SubscriptionList => {
            frame.str("type", "ok");
            header_top(frame, &r.header);
            let out = frame.key("msg");
            out.push(b'[');
            for (index, (channel, sid)) in aux.subscriptions().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                let mut entry = ObjectWriter::open(out);
                entry.str("channel", channel);
                entry.u64("sid", sid);
                entry.close();
            }
            out.push(b']');
        }
        ControlKind::Command => {
            header_top(frame, &r.header);
            some_text(frame, aux, "cmd", r.channel);
            if let Some(params) = r.message {
                frame.raw("params", aux.text(params));
            }
        }
        ControlKind::Unsubscribed => {
            frame.str("type", "unsubscribed");
            header_top(frame, &r.header);
        }
        ControlKind::Error => {
            frame.str("type", "error");
            header_top(frame, &r.header);
            let mut msg = ObjectWriter::open(frame.key("msg"));
            if let Some(code) = r.code {
                let out = msg.key("code");
                write_i64(out, code);
            }
            some_text(&mut msg, aux, "msg", r.message);
            some_text(&mut msg, aux, "market_ticker", r.market_ticker);
            if !r.market_tickers.is_empty() {
                list(&mut msg, "market_tickers", aux.list(r.market_tickers));
            }
            msg.close();
        }
    }
}

fn list<'a>(object: &mut ObjectWriter<'_>, key: &str, items: impl Iterator<Item = &'a str>) {
    let out = object.key(key);
    out.push(b'[');
    for (index, item) in items.enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_str(out, item);
    }
    out.push(b']');
}
