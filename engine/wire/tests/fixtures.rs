//! Decoding the recorded Kalshi frames: exact field values for every message kind, in the
//! current fixed-point format and in both legacy formats.
//!
//! The frames come from `tests/data/kalshi/ws_samples.jsonl`, a copy of the shared recordings
//! (live captures and documentation examples). The expected values below were computed by hand
//! from each payload, not produced by the decoder. Pure-cents frames (before 2025-09) are not in
//! the recordings; they are built here in the documented shape of `protocol.md` §5.16.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::levels;

use kalshi_wire::{
    BookSide, ControlKind, Decoder, EventKind, Level, Record, Side, render_frame, write_canonical,
};

fn fixtures() -> Vec<(String, Vec<u8>)> {
    common::ws_samples()
        .into_iter()
        .map(|(kind, payload)| {
            let frame = match kind.strip_suffix(".msg") {
                Some(wire_type) => serde_json::json!({"type": wire_type, "msg": payload}),
                None => payload,
            };
            (kind, serde_json::to_vec(&frame).unwrap())
        })
        .collect()
}

/// The fixture at `index`, checked to be of `kind` and to contain `marker`.
fn fixture(index: usize, kind: &str, marker: &str) -> Vec<u8> {
    let all = fixtures();
    let (found_kind, frame) = &all[index];
    assert_eq!(found_kind, kind, "fixture {index}");
    assert!(
        String::from_utf8_lossy(frame).contains(marker),
        "fixture {index} lacks {marker}"
    );
    frame.clone()
}

fn decode(decoder: &mut Decoder, mut frame: Vec<u8>) -> Record {
    decoder.decode(&mut frame).unwrap().record
}

// Current format delta (live demo capture): price and signed delta exact, µs time from `ts`.
#[test]
fn delta_current() {
    let mut decoder = Decoder::default();
    let Record::Delta(d) = decode(&mut decoder, fixture(3, "orderbook_delta", "-1.00")) else {
        panic!("not a delta")
    };
    assert_eq!(d.header.sid.unwrap().get(), 1);
    assert_eq!(d.header.seq.unwrap().get(), 2);
    assert_eq!(d.ticker.as_str(), "KXWTACHALLENGERMATCH-26JUN11JIMLEP-LEP");
    assert_eq!(d.market_id.as_str(), "f5ed38e2-0991-4c8f-817e-08c4fd9cbfdb");
    assert_eq!(d.price_e6, 520_000);
    assert_eq!(d.delta_e2, -100);
    assert_eq!(d.side, Side::No);
    // "2026-06-11T06:29:47.354803Z", consistent with ts_ms 1781159387354.
    assert_eq!(d.exchange_ts, Some(1_781_159_387_354_803));
    // A fractional size from a later live frame.
    let mut frame = br#"{"type":"orderbook_delta","sid":3,"seq":9,"msg":{"market_ticker":"T","market_id":"m","price_dollars":"0.0450","delta_fp":"-15.82","side":"yes","ts_ms":1787838983996}}"#.to_vec();
    let Record::Delta(d) = decoder.decode(&mut frame).unwrap().record else {
        panic!()
    };
    assert_eq!(
        (d.price_e6, d.delta_e2, d.side),
        (45_000, -1_582, Side::Yes)
    );
    assert_eq!(d.exchange_ts, Some(1_787_838_983_996_000));
}

// Transitional delta (cents plus `_dollars`/`_fp`): the fixed-point fields win.
#[test]
fn delta_transitional() {
    let mut decoder = Decoder::default();
    let Record::Delta(d) = decode(
        &mut decoder,
        fixture(66, "orderbook_delta", "\"delta\":-54"),
    ) else {
        panic!()
    };
    assert_eq!(
        (d.price_e6, d.delta_e2, d.side),
        (960_000, -5_400, Side::Yes)
    );
    assert_eq!(d.exchange_ts, Some(1_669_149_841_000_000));
}

// Legacy cents-only delta with a nanosecond `ts` (truncated to µs).
#[test]
fn delta_legacy_cents() {
    let mut decoder = Decoder::default();
    let Record::Delta(d) = decode(&mut decoder, fixture(36, "orderbook_delta", "\"price\":51"))
    else {
        panic!()
    };
    assert_eq!(d.ticker.as_str(), "KXMLBGAME-25AUG12SDSF-SD");
    assert_eq!((d.price_e6, d.delta_e2, d.side), (510_000, -100, Side::No));
    assert_eq!(d.exchange_ts, Some(1_755_032_432_539_836));
}

// Snapshots in the three formats give the same book; the legacy cents book is converted exactly.
#[test]
fn snapshots_all_formats() {
    let mut decoder = Decoder::default();
    let expected_yes = levels(&[(80_000, 30_000), (220_000, 33_300)]);
    let expected_no = levels(&[(540_000, 2_000), (560_000, 14_600)]);
    for (index, marker) in [(39, "yes_dollars_fp"), (65, "\"yes\":[[8,300]")] {
        let mut frame = fixture(index, "orderbook_snapshot", marker);
        let decoded = decoder.decode(&mut frame).unwrap();
        let Record::Snapshot(s) = decoded.record else {
            panic!()
        };
        assert_eq!(s.ticker.as_str(), "FED-23DEC-T3.00");
        assert_eq!(
            (s.header.sid.unwrap().get(), s.header.seq.unwrap().get()),
            (2, 2)
        );
        assert_eq!(decoded.yes_levels(), expected_yes.as_slice());
        assert_eq!(decoded.no_levels(), expected_no.as_slice());
    }
    let mut frame = fixture(35, "orderbook_snapshot.msg", "[3,80000]");
    let decoded = decoder.decode(&mut frame).unwrap();
    assert_eq!(
        decoded.yes_levels(),
        levels(&[
            (30_000, 8_000_000),
            (40_000, 810_000),
            (50_000, 2_000_000),
            (180_000, 100_000),
            (190_000, 180_000),
            (200_000, 50_300),
            (230_000, 20_000)
        ])
    );
    assert_eq!(decoded.no_levels().len(), 12);
    assert_eq!(
        decoded.no_levels()[0],
        Level {
            price_e6: 10_000,
            count_e2: 7_359_000
        }
    );
    assert_eq!(
        decoded.no_levels()[11],
        Level {
            price_e6: 740_000,
            count_e2: 300
        }
    );
    // An unknown market: empty sides omitted, market_id "".
    let mut frame = fixture(27, "orderbook_snapshot", "\"market_id\":\"\"");
    let decoded = decoder.decode(&mut frame).unwrap();
    let Record::Snapshot(s) = decoded.record else {
        panic!()
    };
    assert!(s.market_id.is_empty());
    assert_eq!((s.yes_levels, s.no_levels), (0, 0));
}

// Levels that arrive best-first (as the docs claim) are sorted ascending.
#[test]
fn snapshot_levels_sorted() {
    let mut decoder = Decoder::default();
    let mut frame = br#"{"type":"orderbook_snapshot","sid":1,"seq":1,"msg":{"market_ticker":"T","market_id":"m","yes_dollars_fp":[["0.5000","1.00"],["0.0100","2.00"],["0.2500","3.00"]]}}"#.to_vec();
    let decoded = decoder.decode(&mut frame).unwrap();
    assert_eq!(
        decoded.yes_levels(),
        levels(&[(10_000, 200), (250_000, 300), (500_000, 100)])
    );
    assert!(decoded.no_levels().is_empty());
}

// Current trade (live prod, 2026-09): every field, fractional count, ms time.
#[test]
fn trade_current() {
    let mut decoder = Decoder::default();
    let Record::Trade(t) = decode(&mut decoder, fixture(37, "trade", "0723cb08")) else {
        panic!()
    };
    assert_eq!(
        (t.header.sid.unwrap().get(), t.header.seq.unwrap().get()),
        (5, 674_041)
    );
    assert_eq!(t.trade_id.as_str(), "0723cb08");
    assert_eq!(t.ticker.as_str(), "KXCRYPTOLEAD15M-26SEP210115-HYPE");
    assert_eq!(
        (t.yes_price_e6, t.no_price_e6, t.count_e2),
        (140_000, 860_000, 8_212)
    );
    assert_eq!(t.taker_side, Some(Side::No));
    assert_eq!(t.taker_outcome_side, Some(Side::No));
    assert_eq!(t.taker_book_side, Some(BookSide::Ask));
    assert_eq!(t.is_block_trade, Some(false));
    assert_eq!(t.exchange_ts, Some(1_789_966_900_609_000));
}

// Transitional trade (prod, 2026-02): cents and fixed-point agree; time from seconds.
#[test]
fn trade_transitional() {
    let mut decoder = Decoder::default();
    let Record::Trade(t) = decode(&mut decoder, fixture(15, "trade", "f851595a")) else {
        panic!()
    };
    assert_eq!(
        (t.yes_price_e6, t.no_price_e6, t.count_e2),
        (770_000, 230_000, 7_500)
    );
    assert_eq!(t.taker_side, Some(Side::Yes));
    assert_eq!(t.taker_outcome_side, None);
    assert_eq!(t.exchange_ts, Some(1_770_897_981_000_000));
}

// Legacy cents-only trade: integer cents and integer count.
#[test]
fn trade_legacy_cents() {
    let mut decoder = Decoder::default();
    let mut frame = br#"{"type":"trade","sid":1,"seq":16,"msg":{"trade_id":"5b0276ef-7715-46f2-56d8-a1c7b9e59e58","market_ticker":"KXHIGHCHI-25OCT02-B80.5","yes_price":27,"no_price":73,"count":7,"taker_side":"yes","ts":1759350609}}"#.to_vec();
    let Record::Trade(t) = decoder.decode(&mut frame).unwrap().record else {
        panic!()
    };
    assert_eq!(
        (t.yes_price_e6, t.no_price_e6, t.count_e2),
        (270_000, 730_000, 700)
    );
    assert_eq!(t.exchange_ts, Some(1_759_350_609_000_000));
}

// Current ticker (live prod): `time` µs agrees with ts_ms and wins; whole-dollar fields scaled.
#[test]
fn ticker_current() {
    let mut decoder = Decoder::default();
    let Record::Ticker(t) = decode(&mut decoder, fixture(38, "ticker", "618700.14")) else {
        panic!()
    };
    assert_eq!(t.ticker.as_str(), "KXBTC15M-26JUL191145-45");
    assert_eq!(t.price_e6, Some(999_000));
    assert_eq!((t.yes_bid_e6, t.yes_ask_e6), (Some(0), Some(1_000_000)));
    assert_eq!((t.yes_bid_size_e2, t.yes_ask_size_e2), (Some(0), Some(0)));
    assert_eq!(t.last_trade_size_e2, Some(11));
    assert_eq!(t.volume_e2, Some(223_348_748));
    assert_eq!(t.open_interest_e2, Some(61_870_014));
    assert_eq!(t.dollar_volume_e6, Some(1_116_743_000_000));
    assert_eq!(t.dollar_open_interest_e6, Some(309_350_000_000));
    assert_eq!(t.exchange_ts, Some(1_784_475_900_544_125));
    assert!(t.header.seq.is_none(), "ticker frames are unsequenced");
}

// Transitional ticker (prod, 2026-02, with the undocumented `Clock`): fixed-point fields win.
#[test]
fn ticker_transitional() {
    let mut decoder = Decoder::default();
    let Record::Ticker(t) = decode(&mut decoder, fixture(10, "ticker", "KXXRP")) else {
        panic!()
    };
    assert_eq!(t.price_e6, Some(140_000));
    assert_eq!((t.yes_bid_e6, t.yes_ask_e6), (Some(40_000), Some(950_000)));
    assert_eq!(t.volume_e2, Some(1_344_600));
    assert_eq!(t.open_interest_e2, Some(89_200));
    assert_eq!(
        (t.yes_bid_size_e2, t.yes_ask_size_e2),
        (Some(1_400), Some(8_400))
    );
    assert_eq!(t.dollar_volume_e6, Some(6_723_000_000));
    assert_eq!(t.exchange_ts, Some(1_770_897_976_000_000));
}

// Legacy cents-only ticker, and the 2025 empty `price_dollars` meaning "never traded".
#[test]
fn ticker_legacy_cents() {
    let mut decoder = Decoder::default();
    let mut frame = br#"{"type":"ticker","sid":1,"msg":{"market_ticker":"KXETHD-25AUG1217-T4199.99","market_id":"x","price":14,"yes_bid":4,"yes_ask":95,"volume":13446,"open_interest":892,"dollar_volume":6723,"dollar_open_interest":446,"ts":1755032400,"Clock":13281241747}}"#.to_vec();
    let Record::Ticker(t) = decoder.decode(&mut frame).unwrap().record else {
        panic!()
    };
    assert_eq!(t.price_e6, Some(140_000));
    assert_eq!((t.yes_bid_e6, t.yes_ask_e6), (Some(40_000), Some(950_000)));
    assert_eq!(
        (t.volume_e2, t.open_interest_e2),
        (Some(1_344_600), Some(89_200))
    );
    assert_eq!(t.yes_bid_size_e2, None);
    assert_eq!(t.exchange_ts, Some(1_755_032_400_000_000));
    let mut frame = br#"{"type":"ticker","sid":1,"msg":{"market_ticker":"T","price_dollars":"","yes_bid_dollars":"0.0000"}}"#.to_vec();
    let Record::Ticker(t) = decoder.decode(&mut frame).unwrap().record else {
        panic!()
    };
    assert_eq!((t.price_e6, t.yes_bid_e6), (None, Some(0)));
}

// Market lifecycle: created (metadata, strikes), determined (no seq), metadata_updated, and the
// multivariate channel.
#[test]
fn market_lifecycle() {
    let mut decoder = Decoder::default();
    let mut frame = fixture(32, "market_lifecycle_v2", "Eva Lys");
    let decoded = decoder.decode(&mut frame).unwrap();
    let Record::MarketLifecycle(m) = decoded.record else {
        panic!()
    };
    let aux = decoded.aux;
    assert_eq!(aux.text(m.event_type), "created");
    assert_eq!(m.ticker.as_str(), "KXWTAMATCH-25OCT02LYSGAU-LYS");
    assert_eq!(m.open_ts, Some(1_759_352_700_000_000));
    assert_eq!(m.close_ts, Some(1_760_598_000_000_000));
    assert_eq!(
        aux.opt_text(m.metadata.title),
        Some("Will Eva Lys win the Lys vs Gauff match?")
    );
    assert_eq!(
        aux.opt_text(m.metadata.event_ticker),
        Some("KXWTAMATCH-25OCT02LYSGAU")
    );
    assert_eq!(m.metadata.can_close_early, Some(true));
    assert_eq!(
        aux.opt_text(m.metadata.custom_strike),
        Some(r#"{"tennis_competitor":"6c69f42c-5e27-4cfd-a9ea-8eb9fbb0bd12"}"#)
    );
    assert!(!m.mve);

    let mut frame = fixture(31, "market_lifecycle_v2", "determined");
    let decoded = decoder.decode(&mut frame).unwrap();
    let Record::MarketLifecycle(m) = decoded.record else {
        panic!()
    };
    assert_eq!(decoded.aux.text(m.event_type), "determined");
    assert_eq!(decoded.aux.opt_text(m.result), Some("no"));
    assert_eq!(m.determination_ts, Some(1_759_350_638_000_000));
    assert!(m.header.seq.is_none());

    let mut frame = fixture(42, "market_lifecycle_v2", "INXD-23SEP14-B4487");
    let decoded = decoder.decode(&mut frame).unwrap();
    let Record::MarketLifecycle(m) = decoded.record else {
        panic!()
    };
    assert_eq!(m.exchange_index, Some(0));
    assert_eq!(
        decoded.aux.opt_text(m.price_level_structure),
        Some("linear_cent")
    );
    assert_eq!(decoded.aux.scalar(m.metadata.floor_strike), Some("4487"));

    let mut frame = fixture(43, "market_lifecycle_v2", "metadata_updated");
    let decoded = decoder.decode(&mut frame).unwrap();
    let Record::MarketLifecycle(m) = decoded.record else {
        panic!()
    };
    assert_eq!(
        decoded.aux.opt_text(m.metadata.yes_sub_title),
        Some("above $95,000")
    );

    let mut frame = br#"{"type":"multivariate_market_lifecycle","sid":4,"seq":2,"msg":{"market_ticker":"KXMVE-1","event_type":"settled","settled_ts":1790000000,"price_level_structure":"deci_cent","price_ranges":[{"start":"0.0000","end":"1.0000","step":"0.0010"}],"settlement_value":"0.4500"}}"#.to_vec();
    let decoded = decoder.decode(&mut frame).unwrap();
    let Record::MarketLifecycle(m) = decoded.record else {
        panic!()
    };
    assert!(m.mve);
    assert_eq!(m.settled_ts, Some(1_790_000_000_000_000));
    assert_eq!(m.settlement_value_e6, Some(450_000));
    assert_eq!(decoded.aux.price_ranges()[0].step_e6, 1_000);
    assert_eq!(decoded.aux.price_ranges()[0].end_e6, 1_000_000);
}

// Event lifecycle and fee updates.
#[test]
fn event_lifecycle_and_fees() {
    let mut decoder = Decoder::default();
    let mut frame = fixture(44, "event_lifecycle", "KXQUICKSETTLE");
    let decoded = decoder.decode(&mut frame).unwrap();
    let Record::EventLifecycle(e) = decoded.record else {
        panic!()
    };
    assert_eq!(e.kind, EventKind::Created);
    assert_eq!(
        decoded.aux.text(e.event_ticker),
        "KXQUICKSETTLE-26JAN25H2150"
    );
    assert_eq!(
        decoded.aux.opt_text(e.collateral_return_type),
        Some("MECNET")
    );
    assert_eq!(decoded.aux.opt_text(e.series_ticker), Some("KXQUICKSETTLE"));
    let mut frame = fixture(45, "event_fee_update", "KXBTCD-26MAY2018");
    let decoded = decoder.decode(&mut frame).unwrap();
    let Record::EventLifecycle(e) = decoded.record else {
        panic!()
    };
    assert_eq!(e.kind, EventKind::FeeUpdate);
    assert_eq!(
        (e.fee_type_override, e.fee_multiplier_override),
        (None, None)
    );
    let mut frame = br#"{"type":"event_fee_update","sid":5,"seq":11,"msg":{"event_ticker":"E","fee_type_override":"flat","fee_multiplier_override":0.035}}"#.to_vec();
    let decoded = decoder.decode(&mut frame).unwrap();
    let Record::EventLifecycle(e) = decoded.record else {
        panic!()
    };
    assert_eq!(decoded.aux.scalar(e.fee_multiplier_override), Some("0.035"));
}

// Control frames: subscribed (sid from msg), ok consuming a seq, unsubscribed, errors with
// codes, list_subscriptions, and a recorded client command.
#[test]
fn control_frames() {
    let mut decoder = Decoder::default();
    let mut frame = fixture(1, "subscribed", "orderbook_delta");
    let decoded = decoder.decode(&mut frame).unwrap();
    let Record::Control(c) = decoded.record else {
        panic!()
    };
    assert_eq!(c.kind, ControlKind::Subscribed);
    assert_eq!(c.header.sid.unwrap().get(), 1);
    assert!(c.header.seq.is_none());
    assert_eq!(decoded.aux.opt_text(c.channel), Some("orderbook_delta"));

    let mut frame = fixture(25, "ok", "\"seq\":108");
    let decoded = decoder.decode(&mut frame).unwrap();
    let Record::Control(c) = decoded.record else {
        panic!()
    };
    assert_eq!(c.kind, ControlKind::Ok);
    assert_eq!(
        (c.header.sid.unwrap().get(), c.header.seq.unwrap().get()),
        (1, 108)
    );
    assert_eq!(
        decoded.aux.list(c.market_tickers).collect::<Vec<_>>(),
        ["KXGOLDH-26AUG2711-T4615.99", "KXGOLDH-26AUG2711-T4617.99"]
    );

    let mut frame = fixture(47, "unsubscribed", "102");
    let Record::Control(c) = decoder.decode(&mut frame).unwrap().record else {
        panic!()
    };
    assert_eq!(c.kind, ControlKind::Unsubscribed);
    assert_eq!(c.header.id.unwrap().get(), 102);
    assert_eq!(c.header.seq.unwrap().get(), 7);

    let mut frame = fixture(26, "error", "Unknown channel name");
    let decoded = decoder.decode(&mut frame).unwrap();
    let Record::Control(c) = decoded.record else {
        panic!()
    };
    assert_eq!((c.kind, c.code), (ControlKind::Error, Some(8)));
    assert_eq!(
        decoded.aux.opt_text(c.message),
        Some("Unknown channel name")
    );

    let mut frame = fixture(49, "ok (list_subscriptions response)", "fill");
    let decoded = decoder.decode(&mut frame).unwrap();
    let Record::Control(c) = decoded.record else {
        panic!()
    };
    assert_eq!(c.kind, ControlKind::SubscriptionList);
    assert_eq!(
        decoded.aux.subscriptions().collect::<Vec<_>>(),
        [("orderbook_delta", 1), ("ticker", 2), ("fill", 3)]
    );

    let mut frame = fixture(0, "subscribe (command sent)", "use_yes_price");
    let decoded = decoder.decode(&mut frame).unwrap();
    let Record::Control(c) = decoded.record else {
        panic!()
    };
    assert_eq!(c.kind, ControlKind::Command);
    assert_eq!(decoded.aux.opt_text(c.channel), Some("subscribe"));
}

// An unknown type is reported as such, with its name, and is not an error.
#[test]
fn unknown_type_is_reported() {
    let mut decoder = Decoder::default();
    let mut frame = fixture(68, "multivariate_lookup", "KXOSCAR");
    let decoded = decoder.decode(&mut frame).unwrap();
    let Record::Unknown(u) = decoded.record else {
        panic!()
    };
    assert_eq!(decoded.aux.text(u.wire_type), "multivariate_lookup");
    assert_eq!(decoder.stats().unknown, 1);
}

// Every recorded frame decodes, and rendering its record and decoding again gives the same
// canonical record (the decoder loses nothing it keeps).
#[test]
fn every_fixture_decodes_and_round_trips() {
    let mut decoder = Decoder::default();
    let mut second = Decoder::default();
    for (index, (kind, mut frame)) in fixtures().into_iter().enumerate() {
        let decoded = decoder
            .decode(&mut frame)
            .unwrap_or_else(|e| panic!("fixture {index} ({kind}): {e}"));
        let mut first_json = Vec::new();
        write_canonical(&decoded, &mut first_json);
        let mut rendered = Vec::new();
        render_frame(&decoded, &mut rendered);
        let again = second.decode(&mut rendered.clone()).unwrap_or_else(|e| {
            panic!(
                "fixture {index}: render {} fails: {e}",
                String::from_utf8_lossy(&rendered)
            )
        });
        let mut second_json = Vec::new();
        write_canonical(&again, &mut second_json);
        assert_eq!(
            String::from_utf8(first_json).unwrap(),
            String::from_utf8(second_json).unwrap(),
            "fixture {index} ({kind})"
        );
    }
}

// Every shared fixture in ../shared (which may be newer than our copy) still decodes.
#[test]
fn shared_fixtures_decode_when_present() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/kalshi/fixtures/ws_samples.jsonl"
    );
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    let mut decoder = Decoder::default();
    for line in text.lines() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        if value["kind"].as_str().unwrap().ends_with(".msg") {
            continue;
        }
        let mut frame = serde_json::to_vec(&value["payload"]).unwrap();
        decoder
            .decode(&mut frame)
            .unwrap_or_else(|e| panic!("{line}: {e}"));
    }
}
