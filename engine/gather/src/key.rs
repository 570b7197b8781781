//! [`MarketKey`]: how the gatherer's long-lived state names a market.
//!
//! A gatherer holds every open market in several places at once: the registry, the snapshot
//! poller's schedule, and on its shard the subscription manager's desired set, each
//! subscription's confirmed set and the connection's book map. Decoded frames carry the ticker
//! inline ([`kalshi_wire::Ticker`], 64 bytes, so records travel through rings by value); keying
//! every one of those maps by that inline form cost 64 bytes per entry per map, well over half a
//! kilobyte per market once B-tree node slack is counted.
//!
//! So long-lived state keys markets by a [`MarketKey`], a reference-counted `str`: 16 bytes in a
//! map, with the text allocated once (by the registry, when it first learns the market) and
//! shared by every map and by the shard that owns it. Lookups from the hot path go by `&str`
//! (`Arc<str>: Borrow<str>`), so a decoded frame's inline ticker finds its book without
//! allocating; clones happen only when a market is added, which is off the hot path.

use std::sync::Arc;

/// A market's ticker as long-lived state holds it: shared, immutable, 16 bytes. Ordered and
/// compared as its text.
pub type MarketKey = Arc<str>;

/// A new key holding `ticker`.
#[must_use]
pub fn market_key(ticker: &str) -> MarketKey {
    Arc::from(ticker)
}
