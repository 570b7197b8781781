//! REST bodies a gatherer reads: order books (all three historical shapes) and trade pages,
//! decoded exactly from the recorded responses in `tests/data/kalshi/rest_samples.jsonl`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::levels;

use kalshi_wire::{BookSide, DecodeError, Decoder, Record, Side};

fn rest_payload(index: usize, kind: &str) -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/data/kalshi/rest_samples.jsonl"
    );
    let line = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .nth(index)
        .unwrap()
        .to_owned();
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(value["kind"], kind);
    serde_json::to_vec(&value["payload"]).unwrap()
}

// The current `orderbook_fp` shape (live prod, fractional sizes), NO levels in NO-leg price.
#[test]
fn orderbook_current_shape() {
    let mut decoder = Decoder::default();
    let mut body = rest_payload(20, "GET /markets/{ticker}/orderbook");
    let decoded = decoder
        .decode_rest_orderbook(&mut body, "KXCPI-26AUG-T1.0")
        .unwrap();
    let Record::Snapshot(s) = decoded.record else {
        panic!()
    };
    assert_eq!(s.ticker.as_str(), "KXCPI-26AUG-T1.0");
    assert_eq!(decoded.use_yes_price, Some(false));
    assert_eq!(
        decoded.yes_levels(),
        levels(&[(140_000, 18_501), (150_000, 3_218)])
    );
    assert_eq!(
        decoded.no_levels(),
        levels(&[(550_000, 973), (580_000, 11_550)])
    );
}

// The legacy shapes: cents-only `orderbook`, the transitional pair (fixed-point wins), a bare
// body, and null sides.
#[test]
fn orderbook_legacy_shapes() {
    let mut decoder = Decoder::default();
    let cases: [&[u8]; 4] = [
        br#"{"orderbook":{"yes":[[14,185]],"no":[[55,9]]}}"#,
        br#"{"orderbook":{"yes":[[14,185]],"no":[[55,9]],"yes_dollars":[["0.1400",185]],"no_dollars":[["0.5500",9]]},"orderbook_fp":{"yes_dollars":[["0.1400","185.00"]],"no_dollars":[["0.5500","9.00"]]}}"#,
        br#"{"yes_dollars":[["0.1400","185.00"]],"no_dollars":[["0.5500","9.00"]]}"#,
        br#"{"orderbook":{"yes_dollars":[["0.14",185]],"no_dollars":[["0.55",9]],"yes":null}}"#,
    ];
    for body in cases {
        let mut body = body.to_vec();
        let decoded = decoder.decode_rest_orderbook(&mut body, "T").unwrap();
        assert_eq!(decoded.yes_levels(), levels(&[(140_000, 18_500)]));
        assert_eq!(decoded.no_levels(), levels(&[(550_000, 900)]));
    }
    let mut body = br#"{"orderbook_fp":{"yes_dollars":null,"no_dollars":[]}}"#.to_vec();
    let decoded = decoder.decode_rest_orderbook(&mut body, "T").unwrap();
    assert!(decoded.yes_levels().is_empty() && decoded.no_levels().is_empty());
    let mut body = br#"{"error":{"code":"not_found"}}"#.to_vec();
    assert_eq!(
        decoder.decode_rest_orderbook(&mut body, "T").unwrap_err(),
        DecodeError::MissingField {
            field: "orderbook_fp"
        }
    );
}

// A recorded trades page: every field of the first trade, the count, and the cursor; the last
// page's empty cursor means no next page.
#[test]
fn trades_pages() {
    let mut decoder = Decoder::default();
    let mut body = rest_payload(19, "GET /markets/trades");
    let page = decoder.decode_rest_trades(&mut body).unwrap();
    assert_eq!(
        page.cursor,
        Some("EhIKEC4Yf1dC7Fly-I7MaD55Y-MaDAjavcDRBhDwop6bAg")
    );
    assert!(page.trades.len() > 1);
    let first = &page.trades[0];
    assert_eq!(
        first.trade_id.as_str(),
        "56932642-f55c-41a6-1cad-35b95c27373b"
    );
    assert_eq!(first.ticker.as_str(), "KXPGATOUR-USO26-JDAY");
    assert_eq!(
        (first.yes_price_e6, first.no_price_e6, first.count_e2),
        (30_000, 970_000, 777)
    );
    assert_eq!(first.taker_outcome_side, Some(Side::Yes));
    assert_eq!(first.taker_book_side, Some(BookSide::Bid));
    assert_eq!(first.is_block_trade, Some(false));
    // "2026-06-15T15:48:42.609997Z" (checked with Python datetime)
    assert_eq!(first.exchange_ts, Some(1_781_538_522_609_997));
    assert!(first.header.seq.is_none());

    let mut body = rest_payload(21, "GET /markets/trades");
    let page = decoder.decode_rest_trades(&mut body).unwrap();
    assert_eq!(page.cursor, None);
    assert_eq!(page.trades.len(), 1);
    assert_eq!(page.trades[0].count_e2, 5_000);
    assert_eq!(page.trades[0].exchange_ts, Some(1_785_940_291_825_908));

    let mut body = br#"{"trades":[{"trade_id":"t","ticker":"T","price":36,"count":2,"created_time":"2025-01-01T00:00:00Z"}],"cursor":""}"#.to_vec();
    let page = decoder.decode_rest_trades(&mut body).unwrap();
    assert_eq!(
        (page.trades[0].yes_price_e6, page.trades[0].no_price_e6),
        (360_000, 640_000)
    );
    assert_eq!(page.trades[0].count_e2, 200);

    let mut body = br#"{"trades":[{"trade_id":"t","ticker":"T","yes_price_dollars":"0.5","count_fp":"1.005"}]}"#.to_vec();
    assert_eq!(
        decoder.decode_rest_trades(&mut body).unwrap_err().field(),
        Some("trades[].count_fp")
    );
}
