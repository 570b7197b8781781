//! The registry of markets the gatherer subscribes to, kept from REST discovery and the
//! lifecycle channels, producing add/remove deltas routed to shards by [`shard_for`].
//!
//! ## Which markets
//! Every market that can still trade: REST statuses `initialized` (listed, opens by time with
//! no WS event, so it is subscribed before it opens), `active` and `inactive` (paused; it may
//! be `activated` again). A market leaves when it is `determined` or `settled`
//! (`market_lifecycle_v2` / `multivariate_market_lifecycle`), or when a complete discovery pass
//! no longer lists it among those statuses (closing by time emits no WS event).
//!
//! ## Discovery
//! A pass walks `GET /markets?status=unopened`, `=open` and `=paused` with cursor paging.
//! Discovery is off the hot path, so pages are parsed with serde_json, tolerantly (unknown
//! fields ignored, missing optional fields absent). A cursor that repeats is an error (Kalshi
//! silently restarts at page 1 on a bad cursor, so a loop is possible), and only a pass that
//! completed removes markets.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use std::borrow::Cow;
use std::sync::Arc;

use kalshi_wire::{Aux, EventLifecycle, MarketLifecycle, Ticker};
use serde::Deserialize;

use crate::key::{MarketKey, market_key};

use crate::shard::shard_for;

/// What the registry knows about one market (the `markets` row). It is kept for every
/// subscribed market, so it is lean: the ticker is the shared [`MarketKey`], event and series
/// tickers are shared by the markets of an event, and the status is one of a fixed vocabulary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarketInfo {
    /// Ticker (shared with the shards and the poller: allocated once per market).
    pub ticker: MarketKey,
    /// Event ticker (from REST or the `created` metadata; derived from the ticker when only
    /// an `activated` event was seen: the part before the last `-`).
    pub event_ticker: Arc<str>,
    /// Series ticker, when its event is known.
    pub series_ticker: Option<Arc<str>>,
    /// Status in the REST vocabulary: `initialized`, `active` or `inactive` while subscribed;
    /// `determined`, `finalized` or `closed` in a [`MarketDelta::Removed`].
    pub status: &'static str,
    /// Title.
    pub title: Option<String>,
    /// `open_time` / `open_ts`, µs.
    pub open_ts: Option<i64>,
    /// `close_time` / `close_ts`, µs.
    pub close_ts: Option<i64>,
    /// Multivariate (MVE) market.
    pub mve: bool,
    /// When the registry last changed this entry, µs.
    pub updated_ts: i64,
}

/// What the registry knows about one event (the `events` row).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventInfo {
    /// Event ticker.
    pub event_ticker: String,
    /// Series ticker.
    pub series_ticker: Option<String>,
    /// Title.
    pub title: Option<String>,
    /// Subtitle.
    pub sub_title: Option<String>,
    /// `collateral_return_type`.
    pub collateral_return_type: Option<String>,
    /// `strike_date`, µs.
    pub strike_date: Option<i64>,
    /// `strike_period`.
    pub strike_period: Option<String>,
    /// Last change, µs.
    pub updated_ts: i64,
}

/// A change for the shards and the state tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MarketDelta {
    /// Subscribe this market on `shard`; upsert its `markets` row.
    Added {
        /// The owning shard.
        shard: usize,
        /// The market.
        market: MarketInfo,
    },
    /// The market's row changed (status, close time); no subscription change.
    Updated {
        /// The market.
        market: MarketInfo,
    },
    /// Unsubscribe this market on `shard`; its row is `market`, whose `status` says why
    /// (`determined`, `finalized`, `closed`, ...) and whose `updated_ts` is the removal's.
    Removed {
        /// The owning shard.
        shard: usize,
        /// The market's last state, with the removal's status and time.
        market: MarketInfo,
    },
    /// An event row to upsert.
    Event(EventInfo),
}

/// A discovery page that could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The body is not a markets page.
    #[error("markets page is not valid: {0}")]
    BadPage(String),
    /// The same cursor came back twice: the pass is aborted.
    #[error("cursor {0:?} repeated; discovery pass aborted")]
    CursorLoop(String),
    /// No pass is running.
    #[error("no discovery pass is running")]
    NoPass,
}

// Pages borrow from the response body (a string is copied only when it has escapes): a
// discovery pass parses every market, and short-lived copies of every field would fragment the
// heap that holds the long-lived registry.
#[derive(Deserialize)]
struct MarketsPage<'a> {
    #[serde(default, borrow)]
    markets: Option<Vec<RestMarket<'a>>>,
    #[serde(default)]
    cursor: Option<String>,
}

#[derive(Deserialize)]
struct RestMarket<'a> {
    #[serde(borrow)]
    ticker: Cow<'a, str>,
    #[serde(default, borrow)]
    event_ticker: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    status: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    title: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    open_time: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    close_time: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    mve_collection_ticker: Option<Cow<'a, str>>,
}

/// The REST statuses of markets that can still trade.
const LIVE_STATUSES: [&str; 3] = ["initialized", "active", "inactive"];
/// The `status=` filters of a discovery pass (`protocol.md` §6.2 maps them to the above).
const PASS_FILTERS: [&str; 3] = ["unopened", "open", "paused"];

#[derive(Debug)]
struct Pass {
    filter: usize,
    cursor: Option<String>,
    seen_cursors: BTreeSet<String>,
    seen: BTreeSet<MarketKey>,
}

/// The market registry. See the module documentation.
#[derive(Debug)]
pub struct MarketRegistry {
    n_shards: usize,
    page_limit: u32,
    include_mve: bool,
    markets: BTreeMap<MarketKey, MarketInfo>,
    events: BTreeMap<String, EventInfo>,
    /// Event and series tickers, shared by the [`MarketInfo`]s that name them.
    names: BTreeSet<Arc<str>>,
    pass: Option<Pass>,
    deltas: VecDeque<MarketDelta>,
    /// Markets refused because their ticker does not fit a [`Ticker`].
    pub rejected_tickers: u64,
}

fn parse_time(text: Option<&str>) -> Option<i64> {
    let text = text?;
    kalshi_wire::fixed::parse_rfc3339_us(text.as_bytes())
        .ok()
        .filter(|&us| us > 0)
}

fn derived_event(ticker: &str) -> &str {
    ticker.rsplit_once('-').map_or(ticker, |(event, _)| event)
}

impl MarketRegistry {
    /// An empty registry for `n_shards` shards.
    #[must_use]
    pub fn new(n_shards: usize, page_limit: u32, include_mve: bool) -> Self {
        Self {
            n_shards: n_shards.max(1),
            page_limit: page_limit.clamp(1, 1_000),
            include_mve,
            markets: BTreeMap::new(),
            events: BTreeMap::new(),
            names: BTreeSet::new(),
            pass: None,
            deltas: VecDeque::new(),
            rejected_tickers: 0,
        }
    }

    /// The shared copy of an event or series ticker.
    fn name(&mut self, text: &str) -> Arc<str> {
        if let Some(name) = self.names.get(text) {
            return name.clone();
        }
        let name: Arc<str> = Arc::from(text);
        self.names.insert(name.clone());
        name
    }

    /// The series of `event_ticker`, when its event is known.
    fn series_of(&mut self, event_ticker: &str) -> Option<Arc<str>> {
        let series = self.events.get(event_ticker)?.series_ticker.clone()?;
        Some(self.name(&series))
    }

    /// Number of markets subscribed.
    #[must_use]
    pub fn len(&self) -> usize {
        self.markets.len()
    }

    /// Whether no market is subscribed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.markets.is_empty()
    }

    /// One market.
    #[must_use]
    pub fn get(&self, ticker: &str) -> Option<&MarketInfo> {
        self.markets.get(ticker)
    }

    /// Every market, by ticker.
    pub fn markets(&self) -> impl Iterator<Item = &MarketInfo> + '_ {
        self.markets.values()
    }

    /// The markets of one shard.
    pub fn shard_markets(&self, shard: usize) -> impl Iterator<Item = &MarketKey> + '_ {
        let n = self.n_shards;
        self.markets
            .keys()
            .filter(move |t| shard_for(t, n) == shard)
    }

    /// The next change, if any.
    pub fn poll_delta(&mut self) -> Option<MarketDelta> {
        self.deltas.pop_front()
    }

    fn add(&mut self, market: MarketInfo) {
        let shard = shard_for(&market.ticker, self.n_shards);
        match self.markets.get(&market.ticker) {
            None => {
                self.markets.insert(market.ticker.clone(), market.clone());
                self.deltas.push_back(MarketDelta::Added { shard, market });
            }
            Some(old) if *old != market => {
                let mut market = market;
                if market.series_ticker.is_none() {
                    market.series_ticker.clone_from(&old.series_ticker);
                }
                let changed = old.status != market.status
                    || old.close_ts != market.close_ts
                    || old.open_ts != market.open_ts
                    || old.title != market.title
                    || old.event_ticker != market.event_ticker;
                self.markets.insert(market.ticker.clone(), market.clone());
                if changed {
                    self.deltas.push_back(MarketDelta::Updated { market });
                }
            }
            Some(_) => {}
        }
    }

    fn remove(&mut self, now_us: i64, ticker: &str, status: &'static str) {
        if let Some(mut market) = self.markets.remove(ticker) {
            market.status = status;
            market.updated_ts = now_us;
            self.deltas.push_back(MarketDelta::Removed {
                shard: shard_for(ticker, self.n_shards),
                market,
            });
        }
    }

    /// Starts a discovery pass (restarting one that is running).
    pub fn begin_discovery(&mut self) {
        self.pass = Some(Pass {
            filter: 0,
            cursor: None,
            seen_cursors: BTreeSet::new(),
            seen: BTreeSet::new(),
        });
    }

    /// Whether a pass is running.
    #[must_use]
    pub const fn discovery_running(&self) -> bool {
        self.pass.is_some()
    }

    /// The path and query of the next `GET /markets` request of the running pass, relative to
    /// the REST base URL; `None` when no pass is running.
    #[must_use]
    pub fn discovery_request(&self) -> Option<String> {
        let pass = self.pass.as_ref()?;
        let filter = PASS_FILTERS.get(pass.filter)?;
        let mut path = format!("/markets?status={filter}&limit={}", self.page_limit);
        if !self.include_mve {
            path.push_str("&mve_filter=exclude");
        }
        if let Some(cursor) = &pass.cursor {
            path.push_str("&cursor=");
            for byte in cursor.bytes() {
                if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
                    path.push(char::from(byte));
                } else {
                    path.push_str(&format!("%{byte:02X}"));
                }
            }
        }
        Some(path)
    }

    /// Applies one page of the running pass (the answer to
    /// [`MarketRegistry::discovery_request`]). When the last page of the last status filter
    /// is applied, markets not seen in the pass are removed and the pass ends.
    ///
    /// # Errors
    /// A body that is not a markets page (the pass stays at this page: retry the request), or
    /// a repeated cursor (the pass is aborted, nothing is removed).
    pub fn handle_discovery_page(&mut self, now_us: i64, body: &[u8]) -> Result<(), RegistryError> {
        if self.pass.is_none() {
            return Err(RegistryError::NoPass);
        }
        let page: MarketsPage =
            serde_json::from_slice(body).map_err(|e| RegistryError::BadPage(e.to_string()))?;
        for market in page.markets.unwrap_or_default() {
            if Ticker::new(&market.ticker).is_none() {
                self.rejected_tickers += 1;
                continue;
            }
            let status = market.status.unwrap_or_default();
            let status: &str = &status;
            let Some(&status) = LIVE_STATUSES.iter().find(|s| **s == status) else {
                continue;
            };
            // The registry's own key when the market is known: one allocation per market.
            let ticker = self
                .markets
                .get_key_value(&*market.ticker)
                .map_or_else(|| market_key(&market.ticker), |(key, _)| key.clone());
            if let Some(pass) = self.pass.as_mut() {
                pass.seen.insert(ticker.clone());
            }
            let event_ticker = self.name(
                market
                    .event_ticker
                    .as_deref()
                    .unwrap_or_else(|| derived_event(&market.ticker)),
            );
            let series_ticker = self.series_of(&event_ticker);
            self.add(MarketInfo {
                ticker,
                event_ticker,
                series_ticker,
                status,
                title: market.title.map(Cow::into_owned),
                open_ts: parse_time(market.open_time.as_deref()),
                close_ts: parse_time(market.close_time.as_deref()),
                mve: market.mve_collection_ticker.is_some_and(|c| !c.is_empty())
                    || market.ticker.starts_with("KXMVE"),
                updated_ts: now_us,
            });
        }
        let Some(pass) = self.pass.as_mut() else {
            return Err(RegistryError::NoPass);
        };
        match page.cursor.filter(|c| !c.is_empty()) {
            Some(cursor) => {
                if !pass.seen_cursors.insert(cursor.clone()) {
                    self.pass = None;
                    return Err(RegistryError::CursorLoop(cursor));
                }
                pass.cursor = Some(cursor);
            }
            None => {
                pass.filter += 1;
                pass.cursor = None;
                pass.seen_cursors.clear();
                if pass.filter == PASS_FILTERS.len() {
                    let seen = core::mem::take(&mut pass.seen);
                    self.pass = None;
                    let gone: Vec<MarketKey> = self
                        .markets
                        .keys()
                        .filter(|t| !seen.contains(*t))
                        .cloned()
                        .collect();
                    for ticker in gone {
                        self.remove(now_us, &ticker, "closed");
                    }
                }
            }
        }
        Ok(())
    }

    /// Abandons the running pass (a request failed for good); nothing is removed.
    pub fn abort_discovery(&mut self) {
        self.pass = None;
    }

    /// Applies a `market_lifecycle_v2` / `multivariate_market_lifecycle` record.
    pub fn apply_market_lifecycle(&mut self, now_us: i64, record: &MarketLifecycle, aux: &Aux) {
        let ticker = record.ticker;
        let event_type = aux.text(record.event_type);
        let existing = self.markets.get(ticker.as_str()).cloned();
        let event_ticker = self.name(
            aux.opt_text(record.metadata.event_ticker)
                .unwrap_or_else(|| derived_event(ticker.as_str())),
        );
        let base = || MarketInfo {
            ticker: market_key(ticker.as_str()),
            event_ticker: event_ticker.clone(),
            series_ticker: None,
            status: "initialized",
            title: aux.opt_text(record.metadata.title).map(str::to_owned),
            open_ts: record.open_ts,
            close_ts: record.close_ts,
            mve: record.mve || ticker.as_str().starts_with("KXMVE"),
            updated_ts: now_us,
        };
        match event_type {
            "created" => {
                let mut market = existing.unwrap_or_else(base);
                if aux.opt_text(record.metadata.event_ticker).is_some() {
                    market.event_ticker = event_ticker.clone();
                }
                market.series_ticker = self.series_of(&market.event_ticker);
                market.open_ts = record.open_ts.or(market.open_ts);
                market.close_ts = record.close_ts.or(market.close_ts);
                if market.title.is_none() {
                    market.title = aux.opt_text(record.metadata.title).map(str::to_owned);
                }
                market.updated_ts = now_us;
                self.add(market);
            }
            "activated" | "deactivated" => {
                let mut market = existing.unwrap_or_else(base);
                let deactivated = record.is_deactivated.unwrap_or(event_type == "deactivated");
                market.status = if deactivated { "inactive" } else { "active" };
                market.updated_ts = now_us;
                self.add(market);
            }
            "close_date_updated" => {
                if let Some(mut market) = existing {
                    market.close_ts = record.close_ts.or(market.close_ts);
                    market.updated_ts = now_us;
                    self.add(market);
                }
            }
            "determined" => self.remove(now_us, ticker.as_str(), "determined"),
            "settled" => self.remove(now_us, ticker.as_str(), "finalized"),
            _ => {}
        }
    }

    /// Applies an `event_lifecycle` record (event creation); fee updates are ignored here.
    pub fn apply_event_lifecycle(&mut self, now_us: i64, record: &EventLifecycle, aux: &Aux) {
        if record.kind != kalshi_wire::EventKind::Created {
            return;
        }
        let event = EventInfo {
            event_ticker: aux.text(record.event_ticker).to_owned(),
            series_ticker: aux
                .opt_text(record.series_ticker)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            title: aux.opt_text(record.title).map(str::to_owned),
            sub_title: aux.opt_text(record.subtitle).map(str::to_owned),
            collateral_return_type: aux
                .opt_text(record.collateral_return_type)
                .map(str::to_owned),
            strike_date: record.strike_date,
            strike_period: aux.opt_text(record.strike_period).map(str::to_owned),
            updated_ts: now_us,
        };
        if event.event_ticker.is_empty() {
            return;
        }
        self.events
            .insert(event.event_ticker.clone(), event.clone());
        self.deltas.push_back(MarketDelta::Event(event));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kalshi_sim_core::{Exchange, ExchangeConfig, MarketStatus};
    use kalshi_wire::Decoder;

    fn drain(registry: &mut MarketRegistry) -> Vec<MarketDelta> {
        core::iter::from_fn(|| registry.poll_delta()).collect()
    }

    // A discovery pass over the simulator's REST pages (5 markets a page) finds exactly the
    // markets the simulator reports as initialized, active or inactive, routes each to
    // shard_for's shard, and a later pass removes markets that closed.
    #[test]
    fn discovery_over_sim_pages() {
        let mut exchange = Exchange::new(ExchangeConfig::default(), 4);
        let t0 = 1_800_000_000_000_000;
        exchange.step(t0);
        exchange.step(t0 + 400_000_000);
        let mut registry = MarketRegistry::new(3, 5, true);
        let pass = |registry: &mut MarketRegistry, exchange: &Exchange| {
            registry.begin_discovery();
            let mut pages = 0;
            while let Some(path) = registry.discovery_request() {
                let response =
                    kalshi_sim_core::route(exchange, "GET", &format!("/trade-api/v2{path}"));
                registry.handle_discovery_page(t0, &response.body).unwrap();
                pages += 1;
            }
            pages
        };
        assert!(pass(&mut registry, &exchange) > 3);
        let live: BTreeSet<String> = exchange
            .markets()
            .iter()
            .filter(|m| {
                matches!(
                    m.status,
                    MarketStatus::Initialized | MarketStatus::Active | MarketStatus::Inactive
                )
            })
            .map(|m| m.ticker.clone())
            .collect();
        assert!(!live.is_empty());
        let found: BTreeSet<String> = registry.markets().map(|m| m.ticker.to_string()).collect();
        assert_eq!(found, live);
        for delta in drain(&mut registry) {
            let MarketDelta::Added { shard, market } = delta else {
                panic!("{delta:?}")
            };
            assert_eq!(shard, shard_for(&market.ticker, 3));
            assert!(!market.event_ticker.is_empty());
            assert!(market.close_ts.is_some());
        }
        let total: usize = (0..3).map(|s| registry.shard_markets(s).count()).sum();
        assert_eq!(total, registry.len());
        // Much later every original market has closed.
        exchange.step(t0 + 4_000_000_000);
        pass(&mut registry, &exchange);
        let removed = drain(&mut registry)
            .into_iter()
            .filter(|d| matches!(d, MarketDelta::Removed { .. }))
            .count();
        assert!(removed >= live.len() / 2, "{removed}");
    }

    // A cursor that comes back is a loop: the pass aborts and nothing is removed; a page that
    // is not JSON is an error and the pass stays where it was.
    #[test]
    fn discovery_errors() {
        let mut registry = MarketRegistry::new(1, 1000, false);
        assert_eq!(
            registry.handle_discovery_page(0, b"{}"),
            Err(RegistryError::NoPass)
        );
        registry.begin_discovery();
        let first = registry.discovery_request().unwrap();
        assert_eq!(
            first,
            "/markets?status=unopened&limit=1000&mve_filter=exclude"
        );
        let page = br#"{"markets":[{"ticker":"KXA-26-T1","event_ticker":"KXA-26","status":"initialized","close_time":"2026-06-25T16:00:00Z"}],"cursor":"abc="}"#;
        registry.handle_discovery_page(1, page).unwrap();
        assert_eq!(
            registry.discovery_request().unwrap(),
            "/markets?status=unopened&limit=1000&mve_filter=exclude&cursor=abc%3D"
        );
        assert!(matches!(
            registry.handle_discovery_page(2, b"not json"),
            Err(RegistryError::BadPage(_))
        ));
        assert_eq!(
            registry.handle_discovery_page(2, page),
            Err(RegistryError::CursorLoop("abc=".to_owned()))
        );
        assert!(!registry.discovery_running());
        assert_eq!(registry.len(), 1);
        assert_eq!(
            registry.get("KXA-26-T1").unwrap().close_ts,
            Some(1_782_403_200_000_000)
        );
    }

    // Lifecycle frames (decoded by kalshi-wire): an event, then `created` adds the market with
    // its event's series, `deactivated` updates it, `determined` removes it.
    #[test]
    fn lifecycle_updates() {
        let mut registry = MarketRegistry::new(2, 1000, true);
        let mut decoder = Decoder::default();
        let mut apply = |registry: &mut MarketRegistry, frame: &str| {
            let mut bytes = frame.as_bytes().to_vec();
            let decoded = decoder.decode(&mut bytes).unwrap();
            match decoded.record {
                kalshi_wire::Record::MarketLifecycle(l) => {
                    registry.apply_market_lifecycle(5, &l, decoded.aux)
                }
                kalshi_wire::Record::EventLifecycle(e) => {
                    registry.apply_event_lifecycle(5, &e, decoded.aux)
                }
                other => panic!("{other:?}"),
            }
        };
        apply(
            &mut registry,
            r#"{"type":"event_lifecycle","sid":5,"seq":8,"msg":{"event_ticker":"KXQ-26JAN25","title":"T","collateral_return_type":"MECNET","series_ticker":"KXQ"}}"#,
        );
        apply(
            &mut registry,
            r#"{"type":"market_lifecycle_v2","sid":5,"seq":9,"msg":{"market_ticker":"KXQ-26JAN25-B2","event_type":"created","open_ts":1769378400,"close_ts":1769379000,"additional_metadata":{"event_ticker":"KXQ-26JAN25","title":"Two?"}}}"#,
        );
        apply(
            &mut registry,
            r#"{"type":"market_lifecycle_v2","sid":5,"seq":10,"msg":{"market_ticker":"KXQ-26JAN25-B2","event_type":"deactivated","is_deactivated":true}}"#,
        );
        apply(
            &mut registry,
            r#"{"type":"market_lifecycle_v2","sid":5,"seq":11,"msg":{"market_ticker":"KXQ-26JAN25-B2","event_type":"determined","result":"yes","determination_ts":1769379100}}"#,
        );
        let deltas = drain(&mut registry);
        assert_eq!(deltas.len(), 4, "{deltas:?}");
        let MarketDelta::Event(event) = &deltas[0] else {
            panic!()
        };
        assert_eq!(event.series_ticker.as_deref(), Some("KXQ"));
        let MarketDelta::Added { shard, market } = &deltas[1] else {
            panic!()
        };
        assert_eq!(*shard, shard_for("KXQ-26JAN25-B2", 2));
        assert_eq!(market.series_ticker.as_deref(), Some("KXQ"));
        assert_eq!(market.open_ts, Some(1_769_378_400_000_000));
        let MarketDelta::Updated { market } = &deltas[2] else {
            panic!()
        };
        assert_eq!(market.status, "inactive");
        assert!(
            matches!(&deltas[3], MarketDelta::Removed { market, .. } if market.status == "determined")
        );
        assert!(registry.is_empty());
    }
}
