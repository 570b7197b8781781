//! Bad input: every malformed frame gets an error that names the problem, the decoder keeps
//! working, and tolerated deviations (numbers for strings, unknown fields, a broken deprecated
//! timestamp next to a good one) still decode exactly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use kalshi_wire::fixed::FixedError;
use kalshi_wire::{DecodeError, Decoder, DecoderConfig, Record, write_error};

const GOOD: &[u8] = br#"{"type":"orderbook_delta","sid":1,"seq":2,"msg":{"market_ticker":"KXGOLDH-26AUG2711-T4615.99","market_id":"ef793c45-beed-4096-8a3a-1c70af894be7","price_dollars":"0.0100","delta_fp":"10.00","side":"yes","ts":"2026-08-27T13:56:23.996443Z","ts_ms":1787838983996}}"#;

fn delta_with(msg_fields: &str) -> Vec<u8> {
    format!(
        r#"{{"type":"orderbook_delta","sid":1,"seq":2,"msg":{{"market_ticker":"T","market_id":"m",{msg_fields}}}}}"#
    )
    .into_bytes()
}

fn error_of(decoder: &mut Decoder, frame: &[u8]) -> DecodeError {
    let mut frame = frame.to_vec();
    let error = decoder.decode(&mut frame).unwrap_err();
    // The next good frame still decodes after any error.
    let mut good = GOOD.to_vec();
    assert!(matches!(
        decoder.decode(&mut good).unwrap().record,
        Record::Delta(_)
    ));
    error
}

fn message(error: &DecodeError) -> String {
    let mut line = Vec::new();
    write_error(error, &mut line);
    let value: serde_json::Value = serde_json::from_slice(&line).unwrap();
    assert_eq!(value["type"], "error");
    value["error"].as_str().unwrap().to_owned()
}

// The acceptance list of the decoder issue, one case each.
#[test]
fn acceptance_cases() {
    let mut decoder = Decoder::default();

    let error = error_of(
        &mut decoder,
        br#"{"type":"trade","sid":1,"msg":{"trade_id":}"#,
    );
    assert!(matches!(error, DecodeError::Json { .. }), "{error:?}");
    assert!(message(&error).starts_with("malformed JSON at byte"));

    let error = error_of(&mut decoder, &GOOD[..GOOD.len() / 2]);
    assert!(matches!(error, DecodeError::Json { .. }), "{error:?}");

    let error = error_of(
        &mut decoder,
        &delta_with(r#""price_dollars":"0.1234567","delta_fp":"1.00","side":"yes""#),
    );
    assert_eq!(
        error,
        DecodeError::Value {
            field: "msg.price_dollars",
            reason: FixedError::Precision
        }
    );
    assert_eq!(
        message(&error),
        "field `msg.price_dollars`: more decimal places than the unit holds"
    );

    let trade = br#"{"type":"trade","sid":2,"seq":3,"msg":{"trade_id":"t","market_ticker":"T","yes_price_dollars":"0.5000","no_price_dollars":"0.5000","count_fp":"-5.00","ts_ms":1}}"#;
    let error = error_of(&mut decoder, trade);
    assert_eq!(
        error,
        DecodeError::Negative {
            field: "msg.count_fp"
        }
    );
    assert_eq!(
        message(&error),
        "field `msg.count_fp`: negative value where none is allowed"
    );

    let snapshot = br#"{"type":"orderbook_snapshot","sid":1,"seq":1,"msg":{"market_ticker":"T","market_id":"m","no_dollars_fp":[["0.5000","-1.00"]]}}"#;
    let error = error_of(&mut decoder, snapshot);
    assert_eq!(
        error,
        DecodeError::Negative {
            field: "msg.no_dollars_fp"
        }
    );

    let mut huge = GOOD.to_vec();
    huge.resize(10 << 20, b' ');
    let error = error_of(&mut decoder, &huge);
    assert_eq!(
        error,
        DecodeError::FrameTooLarge {
            len: 10 << 20,
            limit: DecoderConfig::default().frame_bytes_max
        }
    );
    assert_eq!(
        message(&error),
        "frame is 10485760 bytes, over the 4194304-byte limit"
    );
    assert_eq!(decoder.stats().errors, 6);
}

// Structural and domain errors, each naming its field.
#[test]
fn named_errors() {
    let mut decoder = Decoder::default();
    let cases: Vec<(Vec<u8>, DecodeError)> = vec![
        (b"[1,2]".to_vec(), DecodeError::NotObject),
        (b"\"text\"".to_vec(), DecodeError::NotObject),
        (br#"{"sid":1,"msg":{}}"#.to_vec(), DecodeError::MissingField { field: "type" }),
        (br#"{"type":7}"#.to_vec(), DecodeError::WrongType { field: "type", expected: "a string" }),
        (br#"{"type":"trade","sid":1}"#.to_vec(), DecodeError::MissingField { field: "msg" }),
        (br#"{"type":"ok","sid":0,"seq":1}"#.to_vec(), DecodeError::Invalid { field: "sid" }),
        (br#"{"type":"ok","sid":1,"seq":-4}"#.to_vec(), DecodeError::Invalid { field: "seq" }),
        (
            delta_with(r#""price_dollars":"0.5","delta_fp":"1.00","side":"maybe""#),
            DecodeError::Invalid { field: "msg.side" },
        ),
        (
            delta_with(r#""price_dollars":"0.5","side":"yes""#),
            DecodeError::MissingField { field: "msg.delta_fp" },
        ),
        (
            delta_with(r#""price_dollars":"-0.5","delta_fp":"1.00","side":"yes""#),
            DecodeError::Negative { field: "msg.price_dollars" },
        ),
        (
            delta_with(r#""price_dollars":"0.5","delta_fp":"1.001","side":"yes""#),
            DecodeError::Value { field: "msg.delta_fp", reason: FixedError::Precision },
        ),
        (
            delta_with(r#""price_dollars":"1e-2","delta_fp":"1","side":"yes""#),
            DecodeError::Value { field: "msg.price_dollars", reason: FixedError::Syntax },
        ),
        (
            delta_with(r#""price_dollars":[1],"delta_fp":"1","side":"yes""#),
            DecodeError::WrongType {
                field: "msg.price_dollars",
                expected: "a decimal string or number",
            },
        ),
        (
            delta_with(r#""price_dollars":"99999999999999","delta_fp":"1","side":"yes""#),
            DecodeError::Value { field: "msg.price_dollars", reason: FixedError::Overflow },
        ),
        (
            delta_with(r#""price_dollars":"0.5","delta_fp":"1","side":"yes","ts":"2026-02-30T00:00:00Z""#),
            DecodeError::Value { field: "msg.ts", reason: FixedError::Timestamp },
        ),
        (
            format!(
                r#"{{"type":"trade","msg":{{"trade_id":"t","market_ticker":"{}","yes_price_dollars":"0.5","count_fp":"1"}}}}"#,
                "X".repeat(64)
            )
            .into_bytes(),
            DecodeError::TooLong { field: "msg.market_ticker", limit: 63 },
        ),
        (
            br#"{"type":"trade","msg":{"trade_id":"t","market_ticker":"T","no_price_dollars":"1.5","count_fp":"1"}}"#.to_vec(),
            DecodeError::Invalid { field: "msg.yes_price_dollars" },
        ),
        (
            br#"{"type":"orderbook_snapshot","msg":{"market_ticker":"T","yes_dollars_fp":[["0.5"]]}}"#.to_vec(),
            DecodeError::WrongType { field: "msg.yes_dollars_fp", expected: "[price, count] pairs" },
        ),
        (br#"{"type":"error","id":3,"msg":{"msg":"x"}}"#.to_vec(), DecodeError::MissingField { field: "msg.code" }),
    ];
    for (frame, expected) in cases {
        let error = error_of(&mut decoder, &frame);
        assert_eq!(error, expected, "{}", String::from_utf8_lossy(&frame));
        assert!(!message(&error).is_empty());
    }
}

// Tolerated deviations decode to the exact values.
#[test]
fn tolerated_deviations() {
    let mut decoder = Decoder::default();
    // Numbers where strings are documented, strings where numbers are, unknown fields anywhere.
    let mut frame = br#"{"type":"orderbook_delta","sid":"1","seq":"2","new_top":{"x":[1,{"y":null}]},"msg":{"market_ticker":"T","price_dollars":0.52,"delta_fp":-15.82,"side":"no","ts_ms":"1787838983996","client_order_id":"c","subaccount":2,"future":[true]}}"#.to_vec();
    let Record::Delta(d) = decoder.decode(&mut frame).unwrap().record else {
        panic!()
    };
    assert_eq!((d.price_e6, d.delta_e2), (520_000, -1_582));
    assert_eq!(d.header.sid.unwrap().get(), 1);
    assert_eq!(d.exchange_ts, Some(1_787_838_983_996_000));
    assert!(d.market_id.is_empty());
    // A broken deprecated `ts` next to a good `ts_ms` is ignored.
    let mut frame =
        delta_with(r#""price_dollars":"0.5","delta_fp":"1","side":"yes","ts":"garbage","ts_ms":5"#);
    let Record::Delta(d) = decoder.decode(&mut frame).unwrap().record else {
        panic!()
    };
    assert_eq!(d.exchange_ts, Some(5_000));
    // A `ts` that disagrees with `ts_ms` loses to it.
    let mut frame = delta_with(
        r#""price_dollars":"0.5","delta_fp":"1","side":"yes","ts":"2026-08-27T13:56:23.996443Z","ts_ms":1"#,
    );
    let Record::Delta(d) = decoder.decode(&mut frame).unwrap().record else {
        panic!()
    };
    assert_eq!(d.exchange_ts, Some(1_000));
    // Integer dollars and trailing zeros past six decimals are exact.
    let mut frame = delta_with(r#""price_dollars":1,"delta_fp":"2.0000","side":"yes""#);
    let Record::Delta(d) = decoder.decode(&mut frame).unwrap().record else {
        panic!()
    };
    assert_eq!(
        (d.price_e6, d.delta_e2, d.exchange_ts),
        (1_000_000, 200, None)
    );
    // `id: 0` means no id.
    let mut frame = br#"{"type":"unsubscribed","id":0,"sid":2,"seq":7}"#.to_vec();
    assert!(
        decoder
            .decode(&mut frame)
            .unwrap()
            .record
            .header()
            .id
            .is_none()
    );
    // Escaped strings are unescaped exactly.
    let mut frame = br#"{"type":"event_lifecycle","sid":5,"seq":8,"msg":{"event_ticker":"E\u0041","title":"say \"hi\"\n"}}"#.to_vec();
    let decoded = decoder.decode(&mut frame).unwrap();
    let Record::EventLifecycle(e) = decoded.record else {
        panic!()
    };
    assert_eq!(decoded.aux.text(e.event_ticker), "EA");
    assert_eq!(decoded.aux.opt_text(e.title), Some("say \"hi\"\n"));
    assert_eq!(decoder.stats().errors, 0);
}

// A configured smaller limit is enforced exactly at its boundary.
#[test]
fn frame_limit_boundary() {
    let mut decoder = Decoder::new(DecoderConfig {
        frame_bytes_max: GOOD.len(),
    });
    let mut frame = GOOD.to_vec();
    assert!(decoder.decode(&mut frame).is_ok());
    let mut frame = GOOD.to_vec();
    frame.push(b' ');
    assert_eq!(
        decoder.decode(&mut frame).unwrap_err(),
        DecodeError::FrameTooLarge {
            len: GOOD.len() + 1,
            limit: GOOD.len()
        }
    );
}

// A frame nested past simd-json's depth limit (1024) is named as such, not a bare syntax error,
// and neither the decoder nor the next frame suffer.
#[test]
fn deep_nesting_is_named() {
    let mut decoder = Decoder::default();
    let depth = 100_000;
    let mut frame = br#"{"type":"trade","sid":1,"seq":1,"msg":"#.to_vec();
    frame.extend(std::iter::repeat_n(b'[', depth));
    frame.extend(std::iter::repeat_n(b']', depth));
    frame.push(b'}');
    let error = error_of(&mut decoder, &frame);
    assert!(
        matches!(
            error,
            DecodeError::Json {
                reason: "nested deeper than 1024 levels",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(message(&error).contains("nested deeper than 1024 levels"));
}
