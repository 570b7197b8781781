//! The client-to-server command encoder (`protocol.md` §5.4).
//!
//! Commands are `{"id":N,"cmd":"...","params":{...}}`. Two rules of this encoder protect the
//! data:
//! * `subscribe` always carries `use_yes_price` explicitly. Kalshi has announced that the
//!   default will flip from `false` to `true`; a gatherer that relies on the default would
//!   silently start reading NO-side prices in the other convention on that day.
//! * `update_subscription` names the subscription as `"sids":[sid]`, the form of Kalshi's own
//!   examples; the singular `"sid"` is also accepted by the exchange, but one form keeps captures
//!   comparable.
//!
//! `update_subscription` does not take `use_yes_price`: the convention belongs to the
//! subscription and was fixed when it was created.

use crate::json::{ObjectWriter, write_str};

/// An `update_subscription` action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateAction {
    /// Add markets to a market-filtered subscription (snapshots follow for `orderbook_delta`).
    AddMarkets,
    /// Remove markets.
    DeleteMarkets,
    /// Re-send snapshots for the given markets without touching the subscription.
    GetSnapshot,
    /// cfbenchmarks: subscribe to index ids.
    SubscribeIndices,
    /// cfbenchmarks: unsubscribe from index ids.
    UnsubscribeIndices,
    /// cfbenchmarks: list the index ids.
    IndexList,
    /// pyth: subscribe to underlyings.
    SubscribeUnderlyings,
    /// pyth: unsubscribe from underlyings.
    UnsubscribeUnderlyings,
    /// pyth: list the underlyings.
    UnderlyingList,
}

impl UpdateAction {
    /// The wire spelling.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            UpdateAction::AddMarkets => "add_markets",
            UpdateAction::DeleteMarkets => "delete_markets",
            UpdateAction::GetSnapshot => "get_snapshot",
            UpdateAction::SubscribeIndices => "subscribe_indices",
            UpdateAction::UnsubscribeIndices => "unsubscribe_indices",
            UpdateAction::IndexList => "indexlist",
            UpdateAction::SubscribeUnderlyings => "subscribe_underlyings",
            UpdateAction::UnsubscribeUnderlyings => "unsubscribe_underlyings",
            UpdateAction::UnderlyingList => "underlying_list",
        }
    }
}

/// A command to encode. Every command has a client-chosen `id` (unique per connection, ≥ 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// `subscribe` to one or more channels.
    Subscribe {
        /// Command id.
        id: u64,
        /// Channel names (`orderbook_delta`, `trade`, `ticker`, `market_lifecycle_v2`, ...).
        channels: &'a [&'a str],
        /// Market filter; empty means none (the firehose for `trade`/`ticker`).
        market_tickers: &'a [&'a str],
        /// NO-side price convention for `orderbook_delta`; always sent.
        use_yes_price: bool,
        /// `send_initial_snapshot` (ticker channel), sent only when set.
        send_initial_snapshot: Option<bool>,
        /// `skip_ticker_ack`, sent only when set.
        skip_ticker_ack: Option<bool>,
    },
    /// `unsubscribe` from subscriptions.
    Unsubscribe {
        /// Command id.
        id: u64,
        /// Subscription ids.
        sids: &'a [u64],
    },
    /// `update_subscription` of exactly one subscription.
    UpdateSubscription {
        /// Command id.
        id: u64,
        /// The subscription.
        sid: u64,
        /// What to do.
        action: UpdateAction,
        /// Markets for the market actions.
        market_tickers: &'a [&'a str],
        /// Index ids for the cfbenchmarks actions.
        index_ids: &'a [&'a str],
        /// Underlyings for the pyth actions.
        underlying_tickers: &'a [&'a str],
        /// `send_initial_snapshot` (ticker channel), sent only when set.
        send_initial_snapshot: Option<bool>,
    },
    /// `list_subscriptions`.
    ListSubscriptions {
        /// Command id.
        id: u64,
    },
}

fn strings(object: &mut ObjectWriter<'_>, key: &str, items: &[&str]) {
    let out = object.key(key);
    out.push(b'[');
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_str(out, item);
    }
    out.push(b']');
}

fn flag(object: &mut ObjectWriter<'_>, key: &str, value: Option<bool>) {
    if let Some(value) = value {
        object.raw(key, if value { "true" } else { "false" });
    }
}

/// Appends the JSON text of `command`.
pub fn encode_command(command: &Command<'_>, out: &mut Vec<u8>) {
    let mut object = ObjectWriter::open(out);
    match *command {
        Command::Subscribe {
            id,
            channels,
            market_tickers,
            use_yes_price,
            send_initial_snapshot,
            skip_ticker_ack,
        } => {
            object.u64("id", id);
            object.str("cmd", "subscribe");
            let mut params = ObjectWriter::open(object.key("params"));
            strings(&mut params, "channels", channels);
            if !market_tickers.is_empty() {
                strings(&mut params, "market_tickers", market_tickers);
            }
            params.raw(
                "use_yes_price",
                if use_yes_price { "true" } else { "false" },
            );
            flag(&mut params, "send_initial_snapshot", send_initial_snapshot);
            flag(&mut params, "skip_ticker_ack", skip_ticker_ack);
            params.close();
        }
        Command::Unsubscribe { id, sids } => {
            object.u64("id", id);
            object.str("cmd", "unsubscribe");
            let mut params = ObjectWriter::open(object.key("params"));
            let out = params.key("sids");
            out.push(b'[');
            for (index, sid) in sids.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                crate::fixed::write_u64(out, *sid);
            }
            out.push(b']');
            params.close();
        }
        Command::UpdateSubscription {
            id,
            sid,
            action,
            market_tickers,
            index_ids,
            underlying_tickers,
            send_initial_snapshot,
        } => {
            object.u64("id", id);
            object.str("cmd", "update_subscription");
            let mut params = ObjectWriter::open(object.key("params"));
            let out = params.key("sids");
            out.push(b'[');
            crate::fixed::write_u64(out, sid);
            out.push(b']');
            if !market_tickers.is_empty() {
                strings(&mut params, "market_tickers", market_tickers);
            }
            if !index_ids.is_empty() {
                strings(&mut params, "index_ids", index_ids);
            }
            if !underlying_tickers.is_empty() {
                strings(&mut params, "underlying_tickers", underlying_tickers);
            }
            params.str("action", action.as_str());
            flag(&mut params, "send_initial_snapshot", send_initial_snapshot);
            params.close();
        }
        Command::ListSubscriptions { id } => {
            object.u64("id", id);
            object.str("cmd", "list_subscriptions");
        }
    }
    object.close();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(command: Command<'_>) -> String {
        let mut out = Vec::new();
        encode_command(&command, &mut out);
        String::from_utf8(out).unwrap()
    }

    // Byte-exact forms of each command, matching the shapes in protocol.md §5.4.
    #[test]
    fn commands_match_the_protocol() {
        assert_eq!(
            encode(Command::Subscribe {
                id: 1,
                channels: &["orderbook_delta", "trade"],
                market_tickers: &["KXWTACHALLENGERMATCH-26JUN11JIMLEP-LEP"],
                use_yes_price: true,
                send_initial_snapshot: None,
                skip_ticker_ack: None,
            }),
            r#"{"id":1,"cmd":"subscribe","params":{"channels":["orderbook_delta","trade"],"market_tickers":["KXWTACHALLENGERMATCH-26JUN11JIMLEP-LEP"],"use_yes_price":true}}"#
        );
        assert_eq!(
            encode(Command::Subscribe {
                id: 5,
                channels: &["market_lifecycle_v2"],
                market_tickers: &[],
                use_yes_price: false,
                send_initial_snapshot: None,
                skip_ticker_ack: Some(true),
            }),
            r#"{"id":5,"cmd":"subscribe","params":{"channels":["market_lifecycle_v2"],"use_yes_price":false,"skip_ticker_ack":true}}"#
        );
        assert_eq!(
            encode(Command::Unsubscribe {
                id: 124,
                sids: &[1, 2]
            }),
            r#"{"id":124,"cmd":"unsubscribe","params":{"sids":[1,2]}}"#
        );
        for (action, name) in [
            (UpdateAction::AddMarkets, "add_markets"),
            (UpdateAction::DeleteMarkets, "delete_markets"),
            (UpdateAction::GetSnapshot, "get_snapshot"),
        ] {
            assert_eq!(
                encode(Command::UpdateSubscription {
                    id: 127,
                    sid: 456,
                    action,
                    market_tickers: &["MARKET-1", "MARKET-2"],
                    index_ids: &[],
                    underlying_tickers: &[],
                    send_initial_snapshot: None,
                }),
                format!(
                    r#"{{"id":127,"cmd":"update_subscription","params":{{"sids":[456],"market_tickers":["MARKET-1","MARKET-2"],"action":"{name}"}}}}"#
                )
            );
        }
        assert_eq!(
            encode(Command::ListSubscriptions { id: 3 }),
            r#"{"id":3,"cmd":"list_subscriptions"}"#
        );
    }

    // Every encoded command is valid JSON, even with hostile ticker text.
    #[test]
    fn commands_are_valid_json() {
        let tickers = ["A\"B", "C\\D", "E\nF"];
        let text = encode(Command::Subscribe {
            id: 9,
            channels: &["ticker"],
            market_tickers: &tickers,
            use_yes_price: false,
            send_initial_snapshot: Some(true),
            skip_ticker_ack: None,
        });
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["params"]["market_tickers"][0], "A\"B");
        assert_eq!(value["params"]["use_yes_price"], false);
    }
}
