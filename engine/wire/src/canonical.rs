//! The canonical record JSON (`design.md` §9): one object per frame, in the platform's units.
//!
//! This is the format of `kalshi decode` and of the simulator's truth log. Every object starts
//! with `type`, `sid`, `seq` and `ticker` (null when absent), followed by the payload fields under
//! the wire's names with a unit suffix (`yes_price_e6`, `count_e2`, `exchange_ts` in µs). The
//! market-data types (`trade`, `orderbook_delta`, `orderbook_snapshot`, `ticker`) always carry
//! every field, null when the frame lacked it; the rarer lifecycle and control types omit absent
//! optional fields. `id` appears whenever the frame had one. Field order is fixed, so equal records
//! serialize to equal bytes.
//!
//! Examples:
//! ```text
//! {"type":"trade","sid":5,"seq":674041,"ticker":"KXCRYPTOLEAD15M-26SEP210115-HYPE","trade_id":"0723cb08","yes_price_e6":140000,"no_price_e6":860000,"count_e2":8212,"taker_side":"no","taker_outcome_side":"no","taker_book_side":"ask","is_block_trade":false,"exchange_ts":1789966900609000}
//! {"type":"orderbook_snapshot","sid":1,"seq":1,"ticker":"KXGOLDH-26AUG2711-T4615.99","market_id":"ef79...","use_yes_price":false,"yes":[[10000,141000]],"no":[[10000,10000],[20000,250000]]}
//! {"type":"error","kind":"precision","field":"msg.price_dollars","error":"field `msg.price_dollars`: more decimal places than the unit holds"}
//! ```

use core::fmt::Write as _;
use core::num::NonZeroU64;

use crate::error::DecodeError;
use crate::fixed::StackText;
use crate::json::{ObjectWriter, write_str};
use crate::record::{Aux, Decoded, Header, Level, MarketMetadata, Record, Text};

fn header_fields(object: &mut ObjectWriter<'_>, header: &Header) {
    if let Some(id) = header.id {
        object.u64("id", id.get());
    }
    object.opt_u64("sid", header.sid.map(NonZeroU64::get));
    object.opt_u64("seq", header.seq.map(NonZeroU64::get));
}

fn levels(object: &mut ObjectWriter<'_>, key: &str, levels: &[Level]) {
    let out = object.key(key);
    out.push(b'[');
    for (index, level) in levels.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.push(b'[');
        crate::fixed::write_i64(out, level.price_e6);
        out.push(b',');
        crate::fixed::write_i64(out, level.count_e2);
        out.push(b']');
    }
    out.push(b']');
}

fn some_text(object: &mut ObjectWriter<'_>, aux: &Aux, key: &str, text: Option<Text>) {
    if let Some(text) = text {
        object.str(key, aux.text(text));
    }
}

fn some_i64(object: &mut ObjectWriter<'_>, key: &str, value: Option<i64>) {
    if let Some(value) = value {
        object.i64(key, value);
    }
}

fn some_bool(object: &mut ObjectWriter<'_>, key: &str, value: Option<bool>) {
    if value.is_some() {
        object.opt_bool(key, value);
    }
}

fn metadata(object: &mut ObjectWriter<'_>, aux: &Aux, m: &MarketMetadata) {
    some_text(object, aux, "name", m.name);
    some_text(object, aux, "title", m.title);
    some_text(object, aux, "yes_sub_title", m.yes_sub_title);
    some_text(object, aux, "no_sub_title", m.no_sub_title);
    some_text(object, aux, "rules_primary", m.rules_primary);
    some_text(object, aux, "rules_secondary", m.rules_secondary);
    some_bool(object, "can_close_early", m.can_close_early);
    some_text(object, aux, "event_ticker", m.event_ticker);
    some_i64(object, "expected_expiration_ts", m.expected_expiration_ts);
    some_text(object, aux, "strike_type", m.strike_type);
    some_text(object, aux, "floor_strike", m.floor_strike.map(|s| s.text));
    some_text(object, aux, "cap_strike", m.cap_strike.map(|s| s.text));
    if let Some(custom) = m.custom_strike {
        // Re-serialized by the decoder from a parsed JSON value, so it is valid JSON.
        object.raw("custom_strike", aux.text(custom));
    }
}

fn string_list<'a>(object: &mut ObjectWriter<'_>, key: &str, items: impl Iterator<Item = &'a str>) {
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

/// Appends the canonical JSON object of a decoded frame (no trailing newline).
pub fn write_canonical(decoded: &Decoded<'_>, out: &mut Vec<u8>) {
    let aux = decoded.aux;
    let mut object = ObjectWriter::open(out);
    object.str("type", decoded.record.kind());
    match &decoded.record {
        Record::Trade(r) => {
            header_fields(&mut object, &r.header);
            object.str("ticker", r.ticker.as_str());
            object.str("trade_id", r.trade_id.as_str());
            object.i64("yes_price_e6", r.yes_price_e6);
            object.i64("no_price_e6", r.no_price_e6);
            object.i64("count_e2", r.count_e2);
            object.opt_str("taker_side", r.taker_side.map(|s| s.as_str()));
            object.opt_str(
                "taker_outcome_side",
                r.taker_outcome_side.map(|s| s.as_str()),
            );
            object.opt_str("taker_book_side", r.taker_book_side.map(|s| s.as_str()));
            object.opt_bool("is_block_trade", r.is_block_trade);
            object.opt_i64("exchange_ts", r.exchange_ts);
        }
        Record::Delta(r) => {
            header_fields(&mut object, &r.header);
            object.str("ticker", r.ticker.as_str());
            object.str("market_id", r.market_id.as_str());
            object.str("side", r.side.as_str());
            object.i64("price_e6", r.price_e6);
            object.i64("delta_e2", r.delta_e2);
            object.opt_i64("exchange_ts", r.exchange_ts);
            object.opt_bool("use_yes_price", decoded.use_yes_price);
        }
        Record::Snapshot(r) => {
            header_fields(&mut object, &r.header);
            object.str("ticker", r.ticker.as_str());
            object.str("market_id", r.market_id.as_str());
            object.opt_bool("use_yes_price", decoded.use_yes_price);
            levels(&mut object, "yes", decoded.yes_levels());
            levels(&mut object, "no", decoded.no_levels());
        }
        Record::Ticker(r) => {
            header_fields(&mut object, &r.header);
            object.str("ticker", r.ticker.as_str());
            object.str("market_id", r.market_id.as_str());
            object.opt_i64("price_e6", r.price_e6);
            object.opt_i64("yes_bid_e6", r.yes_bid_e6);
            object.opt_i64("yes_ask_e6", r.yes_ask_e6);
            object.opt_i64("yes_bid_size_e2", r.yes_bid_size_e2);
            object.opt_i64("yes_ask_size_e2", r.yes_ask_size_e2);
            object.opt_i64("last_trade_size_e2", r.last_trade_size_e2);
            object.opt_i64("volume_e2", r.volume_e2);
            object.opt_i64("open_interest_e2", r.open_interest_e2);
            object.opt_i64("dollar_volume_e6", r.dollar_volume_e6);
            object.opt_i64("dollar_open_interest_e6", r.dollar_open_interest_e6);
            object.opt_i64("exchange_ts", r.exchange_ts);
        }
        Record::MarketLifecycle(r) => {
            header_fields(&mut object, &r.header);
            object.str("ticker", r.ticker.as_str());
            object.str(
                "wire_type",
                if r.mve {
                    "multivariate_market_lifecycle"
                } else {
                    "market_lifecycle_v2"
                },
            );
            object.str("event_type", aux.text(r.event_type));
            some_i64(&mut object, "exchange_index", r.exchange_index);
            some_i64(&mut object, "open_ts", r.open_ts);
            some_i64(&mut object, "close_ts", r.close_ts);
            some_i64(&mut object, "determination_ts", r.determination_ts);
            some_i64(&mut object, "settled_ts", r.settled_ts);
            some_text(&mut object, aux, "result", r.result);
            some_i64(&mut object, "settlement_value_e6", r.settlement_value_e6);
            some_bool(&mut object, "is_deactivated", r.is_deactivated);
            some_text(
                &mut object,
                aux,
                "price_level_structure",
                r.price_level_structure,
            );
            if r.price_ranges > 0 {
                let out = object.key("price_ranges");
                out.push(b'[');
                for (index, range) in aux.price_ranges().iter().enumerate() {
                    if index > 0 {
                        out.push(b',');
                    }
                    let mut band = ObjectWriter::open(out);
                    band.i64("start_e6", range.start_e6);
                    band.i64("end_e6", range.end_e6);
                    band.i64("step_e6", range.step_e6);
                    band.close();
                }
                out.push(b']');
            }
            metadata(&mut object, aux, &r.metadata);
        }
        Record::EventLifecycle(r) => {
            header_fields(&mut object, &r.header);
            object.null("ticker");
            object.str("wire_type", r.kind.wire_type());
            object.str("event_type", r.kind.as_str());
            object.str("event_ticker", aux.text(r.event_ticker));
            some_text(&mut object, aux, "series_ticker", r.series_ticker);
            some_text(&mut object, aux, "title", r.title);
            some_text(&mut object, aux, "subtitle", r.subtitle);
            some_text(
                &mut object,
                aux,
                "collateral_return_type",
                r.collateral_return_type,
            );
            some_i64(&mut object, "exchange_index", r.exchange_index);
            some_i64(&mut object, "strike_date", r.strike_date);
            some_text(&mut object, aux, "strike_period", r.strike_period);
            if r.kind == crate::record::EventKind::FeeUpdate {
                object.opt_str("fee_type_override", aux.opt_text(r.fee_type_override));
                object.opt_str(
                    "fee_multiplier_override",
                    aux.scalar(r.fee_multiplier_override),
                );
            }
        }
        Record::Control(r) if r.kind == crate::record::ControlKind::Command => {
            header_fields(&mut object, &r.header);
            object.null("ticker");
            object.str("control", r.kind.as_str());
            some_text(&mut object, aux, "cmd", r.channel);
            if let Some(params) = r.message {
                // Re-serialized by the decoder from a parsed JSON value, so it is valid JSON.
                object.raw("params", aux.text(params));
            }
        }
        Record::Control(r) => {
            header_fields(&mut object, &r.header);
            object.null("ticker");
            object.str("control", r.kind.as_str());
            some_text(&mut object, aux, "channel", r.channel);
            some_i64(&mut object, "code", r.code);
            some_text(&mut object, aux, "msg", r.message);
            some_text(&mut object, aux, "market_ticker", r.market_ticker);
            if !r.market_tickers.is_empty() {
                string_list(&mut object, "market_tickers", aux.list(r.market_tickers));
            }
            if !r.market_ids.is_empty() {
                string_list(&mut object, "market_ids", aux.list(r.market_ids));
            }
            if r.kind == crate::record::ControlKind::SubscriptionList {
                let out = object.key("subscriptions");
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
        }
        Record::Unknown(r) => {
            header_fields(&mut object, &r.header);
            object.null("ticker");
            object.str("wire_type", aux.text(r.wire_type));
        }
    }
    object.close();
}

/// Appends the canonical error object for a frame that could not be decoded.
pub fn write_error(error: &DecodeError, out: &mut Vec<u8>) {
    let mut object = ObjectWriter::open(out);
    object.str("type", "error");
    object.str("kind", error.kind());
    object.opt_str("field", error.field());
    let mut message = StackText::<256>::new();
    let _ = write!(message, "{error}");
    object.str(
        "error",
        core::str::from_utf8(message.as_bytes()).unwrap_or("undescribable decode error"),
    );
    object.close();
}
