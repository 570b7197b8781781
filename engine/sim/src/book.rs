//! An aggregated binary order book: YES bids and NO bids, keyed by exact price (`protocol.md`
//! §4). Prices are micro-dollars in each side's own leg (a NO bid at 0.48 is stored at 480000);
//! sizes are hundredths of a contract. A level whose size reaches 0 is removed.

use std::collections::BTreeMap;

use kalshi_wire::{Level, Side};

use crate::price::ONE_DOLLAR_E6;

/// One market's book.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Book {
    yes: BTreeMap<i64, i64>,
    no: BTreeMap<i64, i64>,
}

/// Top of book in the YES view, as the `ticker` channel reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopOfBook {
    /// Best YES bid, 0 when the YES side is empty.
    pub yes_bid_e6: i64,
    /// Size at the best YES bid.
    pub yes_bid_size_e2: i64,
    /// Best YES ask (1 − best NO bid), 1.000000 when the NO side is empty.
    pub yes_ask_e6: i64,
    /// Size at the best YES ask (the best NO bid's size).
    pub yes_ask_size_e2: i64,
}

impl Book {
    fn side(&self, side: Side) -> &BTreeMap<i64, i64> {
        match side {
            Side::Yes => &self.yes,
            Side::No => &self.no,
        }
    }

    /// Applies a signed size change. Returns `false`, leaving the book unchanged, when the change
    /// would make the level negative.
    pub fn apply(&mut self, side: Side, price_e6: i64, delta_e2: i64) -> bool {
        let levels = match side {
            Side::Yes => &mut self.yes,
            Side::No => &mut self.no,
        };
        let current = levels.get(&price_e6).copied().unwrap_or(0);
        let next = current + delta_e2;
        if next < 0 {
            return false;
        }
        if next == 0 {
            levels.remove(&price_e6);
        } else {
            levels.insert(price_e6, next);
        }
        true
    }

    /// The best (highest) bid of a side, as `(price, size)`.
    #[must_use]
    pub fn best(&self, side: Side) -> Option<(i64, i64)> {
        self.side(side).last_key_value().map(|(p, s)| (*p, *s))
    }

    /// Resting size at a level (0 when absent).
    #[must_use]
    pub fn size_at(&self, side: Side, price_e6: i64) -> i64 {
        self.side(side).get(&price_e6).copied().unwrap_or(0)
    }

    /// Number of levels of a side.
    #[must_use]
    pub fn depth(&self, side: Side) -> usize {
        self.side(side).len()
    }

    /// The `index`-th level of a side in ascending price order.
    #[must_use]
    pub fn nth(&self, side: Side, index: usize) -> Option<(i64, i64)> {
        self.side(side).iter().nth(index).map(|(p, s)| (*p, *s))
    }

    /// A side's levels, ascending by price, in the side's own leg.
    #[must_use]
    pub fn levels(&self, side: Side) -> Vec<Level> {
        self.side(side)
            .iter()
            .map(|(p, s)| Level {
                price_e6: *p,
                count_e2: *s,
            })
            .collect()
    }

    /// NO levels in YES-leg price (1 − p), ascending (the `use_yes_price: true` convention).
    #[must_use]
    pub fn no_levels_yes_priced(&self) -> Vec<Level> {
        self.no
            .iter()
            .rev()
            .map(|(p, s)| Level {
                price_e6: ONE_DOLLAR_E6 - *p,
                count_e2: *s,
            })
            .collect()
    }

    /// Top of book in the YES view (`protocol.md` §4: empty NO side → ask 1.000000 size 0;
    /// empty YES side → bid 0 size 0).
    #[must_use]
    pub fn top(&self) -> TopOfBook {
        let (yes_bid_e6, yes_bid_size_e2) = self.best(Side::Yes).unwrap_or((0, 0));
        let (yes_ask_e6, yes_ask_size_e2) = self
            .best(Side::No)
            .map_or((ONE_DOLLAR_E6, 0), |(p, s)| (ONE_DOLLAR_E6 - p, s));
        TopOfBook {
            yes_bid_e6,
            yes_bid_size_e2,
            yes_ask_e6,
            yes_ask_size_e2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Levels aggregate, vanish at zero, refuse to go negative, and the derived top of book
    // follows protocol.md §4 including the empty-side sentinels.
    #[test]
    fn book_levels_and_top() {
        let mut book = Book::default();
        assert_eq!(
            book.top(),
            TopOfBook {
                yes_bid_e6: 0,
                yes_bid_size_e2: 0,
                yes_ask_e6: ONE_DOLLAR_E6,
                yes_ask_size_e2: 0
            }
        );
        assert!(book.apply(Side::Yes, 470_000, 300));
        assert!(book.apply(Side::Yes, 460_000, 100));
        assert!(book.apply(Side::No, 480_000, 300));
        assert!(!book.apply(Side::No, 480_000, -301));
        let top = book.top();
        assert_eq!((top.yes_bid_e6, top.yes_bid_size_e2), (470_000, 300));
        assert_eq!((top.yes_ask_e6, top.yes_ask_size_e2), (520_000, 300));
        assert!(book.apply(Side::No, 480_000, -300));
        assert_eq!(book.depth(Side::No), 0);
        assert!(book.apply(Side::No, 100_000, 5));
        assert!(book.apply(Side::No, 200_000, 7));
        let yes_priced = book.no_levels_yes_priced();
        assert_eq!(yes_priced[0].price_e6, 800_000);
        assert_eq!(yes_priced[1].price_e6, 900_000);
        assert_eq!(book.levels(Side::Yes)[0].price_e6, 460_000);
    }
}
