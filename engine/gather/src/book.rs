//! The per-market order book the gatherer keeps to check the integrity of the delta stream.
//!
//! A Kalshi book holds bids only, on two sides (YES and NO; `protocol.md` §4). The gatherer does
//! not need the book to capture data (deltas and snapshots go to the database as they arrive),
//! but it keeps one per market because the book is how corruption shows: a delta before the
//! market's first snapshot, or a delta that drives a level below zero, means frames were lost or
//! misapplied, and that market must be resynced (`design.md` §5). Each REST snapshot is also
//! compared with the live book.
//!
//! ## Memory
//! A shard holds tens of thousands of books, so a book is small: one `Vec<u64>` holding both
//! sides (YES levels first, then NO), each side sorted by ascending price, plus a split index
//! and a state byte (32 bytes inline). A level is packed into one `u64`: the price in
//! micro-dollars in the top [`PRICE_BITS`] bits (prices are within 0..=1 dollar, so
//! 1,000,000 fits in 20 bits) and the size in hundredths of a contract in the low
//! [`SIZE_BITS`] bits (up to about 1.76e11 contracts). Because the price is in the high bits,
//! the packed values sort by price, and a level is found by binary search. A typical book of
//! 10–40 levels a side takes 160–640 bytes of heap.
//!
//! ## Allocation
//! Snapshots size the vector with some headroom (and shrink one that is far too large); deltas
//! update in place, and insert only when the level is new, which allocates only when the
//! headroom is used up. A removed level never frees memory until the next snapshot.
//!
//! ## Price convention
//! The book stores prices exactly as the wire quotes them. On the WebSocket, NO-side prices
//! follow the subscription's `use_yes_price` flag; REST always quotes NO-leg prices, so
//! [`Book::compare`] converts when told the book uses YES-leg prices.

use kalshi_wire::{Level, Side};

/// Bits of a packed level that hold the price.
pub const PRICE_BITS: u32 = 20;
/// Bits of a packed level that hold the size.
pub const SIZE_BITS: u32 = 44;
/// The largest price a book can hold, in micro-dollars (just above 1 dollar).
pub const PRICE_MAX_E6: i64 = (1 << PRICE_BITS) - 1;
/// The largest size a book level can hold, in hundredths of a contract.
pub const SIZE_MAX_E2: i64 = (1 << SIZE_BITS) - 1;
/// One dollar in micro-dollars: a YES-leg price `p` is the NO-leg price `ONE_DOLLAR_E6 - p`.
pub const ONE_DOLLAR_E6: i64 = 1_000_000;

const _: () = assert!(PRICE_BITS + SIZE_BITS == 64);
const _: () = assert!(PRICE_MAX_E6 >= ONE_DOLLAR_E6);

const fn pack(price_e6: i64, size_e2: i64) -> u64 {
    ((price_e6 as u64) << SIZE_BITS) | (size_e2 as u64)
}

const fn price_of(level: u64) -> i64 {
    (level >> SIZE_BITS) as i64
}

const fn size_of_level(level: u64) -> i64 {
    (level & (SIZE_MAX_E2 as u64)) as i64
}

/// Where a book is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BookState {
    /// No snapshot yet: deltas cannot be applied.
    AwaitingSnapshot,
    /// Built from a snapshot and the deltas since.
    Live,
    /// Known to be wrong (an integrity error, or a gap on its subscription); waits for the
    /// snapshot of the resync that was requested.
    Invalid,
}

/// Why a snapshot or delta could not be applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BookError {
    /// A delta arrived before the market's first snapshot.
    #[error("delta before any snapshot")]
    DeltaBeforeSnapshot,
    /// A delta arrived while the book waits for a resync snapshot; it was not applied. The
    /// resync is already under way, so this needs no new one.
    #[error("book is invalid and awaiting a resync snapshot")]
    AwaitingResync,
    /// The delta would drive a level below zero.
    #[error("{} level {price_e6} would go negative: size {size_e2} + delta {delta_e2}", side.as_str())]
    NegativeLevel {
        /// The side.
        side: Side,
        /// The price, micro-dollars.
        price_e6: i64,
        /// The level's size before the delta, hundredths.
        size_e2: i64,
        /// The delta, hundredths.
        delta_e2: i64,
    },
    /// A price outside `0..=PRICE_MAX_E6`.
    #[error("price {price_e6} outside the book's range")]
    PriceOutOfRange {
        /// The price, micro-dollars.
        price_e6: i64,
    },
    /// A size outside `0..=SIZE_MAX_E2`.
    #[error("size {size_e2} outside the book's range")]
    SizeOutOfRange {
        /// The size, hundredths.
        size_e2: i64,
    },
    /// A snapshot listed the same price twice on one side.
    #[error("snapshot lists {} price {price_e6} twice", side.as_str())]
    DuplicateLevel {
        /// The side.
        side: Side,
        /// The price, micro-dollars.
        price_e6: i64,
    },
}

impl BookError {
    /// Whether the market needs a new resync (every error but [`BookError::AwaitingResync`]).
    #[must_use]
    pub const fn needs_resync(&self) -> bool {
        !matches!(self, BookError::AwaitingResync)
    }
}

/// One level that differs between the live book and a REST snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LevelDifference {
    /// The side.
    pub side: Side,
    /// The price, in the live book's convention.
    pub price_e6: i64,
    /// Size in the live book (0 when absent).
    pub live_e2: i64,
    /// Size in the REST snapshot (0 when absent).
    pub rest_e2: i64,
}

/// The result of comparing a live book with a REST snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Comparison {
    /// Every level agrees.
    Equal,
    /// The levels that differ, YES side first, each side by ascending price.
    Differ(Vec<LevelDifference>),
    /// The live book is not [`BookState::Live`], so there is nothing to compare.
    NotLive,
}

/// One market's book. See the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Book {
    levels: Vec<u64>,
    yes_len: u32,
    state: BookState,
}

impl Default for Book {
    fn default() -> Self {
        Self::new()
    }
}

fn check_level(price_e6: i64, size_e2: i64) -> Result<(), BookError> {
    if !(0..=PRICE_MAX_E6).contains(&price_e6) {
        return Err(BookError::PriceOutOfRange { price_e6 });
    }
    if !(0..=SIZE_MAX_E2).contains(&size_e2) {
        return Err(BookError::SizeOutOfRange { size_e2 });
    }
    Ok(())
}

impl Book {
    /// An empty book awaiting its first snapshot. Allocates nothing.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            levels: Vec::new(),
            yes_len: 0,
            state: BookState::AwaitingSnapshot,
        }
    }

    /// The book's state.
    #[must_use]
    pub const fn state(&self) -> BookState {
        self.state
    }

    /// Marks the book invalid (its subscription had a gap): deltas are refused with
    /// [`BookError::AwaitingResync`] until the next snapshot. A book that never had a snapshot
    /// stays [`BookState::AwaitingSnapshot`].
    pub fn invalidate(&mut self) {
        if self.state == BookState::Live {
            self.state = BookState::Invalid;
        }
    }

    /// Replaces the book with a snapshot. Levels may come in any order; zero sizes are skipped.
    ///
    /// # Errors
    /// A price or size the book cannot hold, or a price listed twice on a side; the book is then
    /// [`BookState::Invalid`].
    pub fn apply_snapshot(&mut self, yes: &[Level], no: &[Level]) -> Result<(), BookError> {
        let result = self.fill(yes, no);
        self.state = if result.is_ok() {
            BookState::Live
        } else {
            BookState::Invalid
        };
        result
    }

    fn fill(&mut self, yes: &[Level], no: &[Level]) -> Result<(), BookError> {
        self.levels.clear();
        self.yes_len = 0;
        let wanted = yes.len() + no.len();
        let target = wanted + wanted / 4 + 4;
        if self.levels.capacity() < wanted {
            self.levels.reserve_exact(target);
        } else if self.levels.capacity() > 2 * target + 16 {
            self.levels.shrink_to(target);
        }
        for (side, levels) in [(Side::Yes, yes), (Side::No, no)] {
            let start = self.levels.len();
            for level in levels {
                check_level(level.price_e6, level.count_e2)?;
                if level.count_e2 > 0 {
                    self.levels.push(pack(level.price_e6, level.count_e2));
                }
            }
            let side_levels = &mut self.levels[start..];
            side_levels.sort_unstable();
            if let Some(pair) = side_levels
                .windows(2)
                .find(|pair| price_of(pair[0]) == price_of(pair[1]))
            {
                return Err(BookError::DuplicateLevel {
                    side,
                    price_e6: price_of(pair[0]),
                });
            }
            if side == Side::Yes {
                self.yes_len = self.levels.len() as u32;
            }
        }
        Ok(())
    }

    /// Applies a signed size change at `(side, price_e6)`. A level that reaches zero is removed.
    ///
    /// # Errors
    /// [`BookError::DeltaBeforeSnapshot`], [`BookError::AwaitingResync`], or an integrity error
    /// ([`BookError::NegativeLevel`], a price or size out of range) after which the book is
    /// [`BookState::Invalid`] and unchanged by this delta.
    pub fn apply_delta(
        &mut self,
        side: Side,
        price_e6: i64,
        delta_e2: i64,
    ) -> Result<(), BookError> {
        match self.state {
            BookState::AwaitingSnapshot => return Err(BookError::DeltaBeforeSnapshot),
            BookState::Invalid => return Err(BookError::AwaitingResync),
            BookState::Live => {}
        }
        let result = self.change(side, price_e6, delta_e2);
        if result.is_err() {
            self.state = BookState::Invalid;
        }
        result
    }

    fn change(&mut self, side: Side, price_e6: i64, delta_e2: i64) -> Result<(), BookError> {
        check_level(price_e6, 0)?;
        let split = self.yes_len as usize;
        let (start, end) = match side {
            Side::Yes => (0, split),
            Side::No => (split, self.levels.len()),
        };
        let offset = self.levels[start..end].partition_point(|&l| price_of(l) < price_e6);
        let index = start + offset;
        let existing = self
            .levels
            .get(index)
            .filter(|_| index < end)
            .copied()
            .filter(|&l| price_of(l) == price_e6);
        let size_e2 = existing.map_or(0, size_of_level);
        let new_e2 = size_e2
            .checked_add(delta_e2)
            .ok_or(BookError::SizeOutOfRange {
                size_e2: SIZE_MAX_E2,
            })?;
        if new_e2 < 0 {
            return Err(BookError::NegativeLevel {
                side,
                price_e6,
                size_e2,
                delta_e2,
            });
        }
        if new_e2 > SIZE_MAX_E2 {
            return Err(BookError::SizeOutOfRange { size_e2: new_e2 });
        }
        match (existing.is_some(), new_e2 == 0) {
            (true, true) => {
                self.levels.remove(index);
                if side == Side::Yes {
                    self.yes_len -= 1;
                }
            }
            (true, false) => self.levels[index] = pack(price_e6, new_e2),
            (false, true) => {}
            (false, false) => {
                self.levels.insert(index, pack(price_e6, new_e2));
                if side == Side::Yes {
                    self.yes_len += 1;
                }
            }
        }
        Ok(())
    }

    fn side(&self, side: Side) -> &[u64] {
        let split = self.yes_len as usize;
        match side {
            Side::Yes => self.levels.get(..split).unwrap_or(&[]),
            Side::No => self.levels.get(split..).unwrap_or(&[]),
        }
    }

    /// The levels of one side, ascending by price.
    pub fn levels(&self, side: Side) -> impl ExactSizeIterator<Item = Level> + '_ {
        self.side(side).iter().map(|&l| Level {
            price_e6: price_of(l),
            count_e2: size_of_level(l),
        })
    }

    /// The size at `(side, price_e6)`, 0 when there is no level.
    #[must_use]
    pub fn size_at(&self, side: Side, price_e6: i64) -> i64 {
        let levels = self.side(side);
        let index = levels.partition_point(|&l| price_of(l) < price_e6);
        levels
            .get(index)
            .filter(|&&l| price_of(l) == price_e6)
            .map_or(0, |&l| size_of_level(l))
    }

    /// The best (highest) bid of a side.
    #[must_use]
    pub fn best(&self, side: Side) -> Option<Level> {
        self.levels(side).last()
    }

    /// Heap bytes held (capacity, not length).
    #[must_use]
    pub fn heap_bytes(&self) -> usize {
        self.levels.capacity() * core::mem::size_of::<u64>()
    }

    /// Compares the live book with a REST snapshot. REST quotes NO levels in NO-leg price;
    /// pass `book_uses_yes_price = true` when this book's subscription used `use_yes_price`,
    /// and the REST NO prices are converted to YES-leg (`1 - p`) first. Levels may be in any
    /// order; zero sizes count as absent. Allocates only for the (rare) comparison itself.
    #[must_use]
    pub fn compare(
        &self,
        rest_yes: &[Level],
        rest_no: &[Level],
        book_uses_yes_price: bool,
    ) -> Comparison {
        if self.state != BookState::Live {
            return Comparison::NotLive;
        }
        let mut differences = Vec::new();
        for (side, rest) in [(Side::Yes, rest_yes), (Side::No, rest_no)] {
            let convert = side == Side::No && book_uses_yes_price;
            let mut rest: Vec<(i64, i64)> = rest
                .iter()
                .filter(|l| l.count_e2 != 0)
                .map(|l| {
                    let price = if convert {
                        ONE_DOLLAR_E6 - l.price_e6
                    } else {
                        l.price_e6
                    };
                    (price, l.count_e2)
                })
                .collect();
            rest.sort_unstable();
            let live: Vec<(i64, i64)> = self
                .levels(side)
                .map(|l| (l.price_e6, l.count_e2))
                .collect();
            let (mut i, mut j) = (0, 0);
            while i < live.len() || j < rest.len() {
                let a = live.get(i).copied();
                let b = rest.get(j).copied();
                let (price_e6, live_e2, rest_e2) = match (a, b) {
                    (Some(a), Some(b)) if a.0 == b.0 => {
                        i += 1;
                        j += 1;
                        (a.0, a.1, b.1)
                    }
                    (Some(a), Some(b)) if a.0 < b.0 => {
                        i += 1;
                        (a.0, a.1, 0)
                    }
                    (Some(a), None) => {
                        i += 1;
                        (a.0, a.1, 0)
                    }
                    (_, Some(b)) => {
                        j += 1;
                        (b.0, 0, b.1)
                    }
                    (None, None) => break,
                };
                if live_e2 != rest_e2 {
                    differences.push(LevelDifference {
                        side,
                        price_e6,
                        live_e2,
                        rest_e2,
                    });
                }
            }
        }
        if differences.is_empty() {
            Comparison::Equal
        } else {
            Comparison::Differ(differences)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};
    use std::collections::BTreeMap;

    fn level(price_e6: i64, count_e2: i64) -> Level {
        Level { price_e6, count_e2 }
    }

    fn collect(book: &Book, side: Side) -> Vec<(i64, i64)> {
        book.levels(side)
            .map(|l| (l.price_e6, l.count_e2))
            .collect()
    }

    // The inline size is what every market pays even with no levels.
    #[test]
    fn book_is_small() {
        assert_eq!(core::mem::size_of::<Book>(), 32);
        assert_eq!(Book::new().heap_bytes(), 0);
    }

    // The rules of design.md §5: a delta before a snapshot and a level going negative are
    // errors that ask for a resync; further deltas wait; a snapshot repairs the book.
    #[test]
    fn integrity_errors() {
        let mut book = Book::new();
        assert_eq!(
            book.apply_delta(Side::Yes, 10_000, 100),
            Err(BookError::DeltaBeforeSnapshot)
        );
        assert!(BookError::DeltaBeforeSnapshot.needs_resync());
        book.apply_snapshot(
            &[level(10_000, 141_000)],
            &[level(20_000, 250_000), level(10_000, 10_000)],
        )
        .unwrap();
        assert_eq!(
            collect(&book, Side::No),
            vec![(10_000, 10_000), (20_000, 250_000)]
        );
        book.apply_delta(Side::Yes, 10_000, 1_000).unwrap();
        assert_eq!(book.size_at(Side::Yes, 10_000), 142_000);
        let error = book.apply_delta(Side::No, 10_000, -10_001).unwrap_err();
        assert_eq!(
            error,
            BookError::NegativeLevel {
                side: Side::No,
                price_e6: 10_000,
                size_e2: 10_000,
                delta_e2: -10_001
            }
        );
        assert_eq!(
            error.to_string(),
            "no level 10000 would go negative: size 10000 + delta -10001"
        );
        assert_eq!(book.state(), BookState::Invalid);
        // Unchanged by the refused delta.
        assert_eq!(book.size_at(Side::No, 10_000), 10_000);
        let waiting = book.apply_delta(Side::No, 10_000, 5).unwrap_err();
        assert_eq!(waiting, BookError::AwaitingResync);
        assert!(!waiting.needs_resync());
        book.apply_snapshot(&[], &[]).unwrap();
        assert_eq!(book.state(), BookState::Live);
        assert!(
            book.apply_delta(Side::Yes, 5, -1)
                .unwrap_err()
                .needs_resync()
        );
        // Range and duplicate checks.
        let mut book = Book::new();
        assert_eq!(
            book.apply_snapshot(&[level(PRICE_MAX_E6 + 1, 1)], &[]),
            Err(BookError::PriceOutOfRange {
                price_e6: PRICE_MAX_E6 + 1
            })
        );
        assert_eq!(
            book.apply_snapshot(&[level(5, 1), level(5, 2)], &[]),
            Err(BookError::DuplicateLevel {
                side: Side::Yes,
                price_e6: 5
            })
        );
        book.apply_snapshot(&[level(5, SIZE_MAX_E2)], &[]).unwrap();
        assert_eq!(
            book.apply_delta(Side::Yes, 5, 1),
            Err(BookError::SizeOutOfRange {
                size_e2: SIZE_MAX_E2 + 1
            })
        );
        book.apply_snapshot(&[], &[]).unwrap();
        assert_eq!(
            book.apply_delta(Side::Yes, -1, 1),
            Err(BookError::PriceOutOfRange { price_e6: -1 })
        );
        // Gap invalidation, and a book that never had a snapshot stays awaiting one.
        let mut book = Book::new();
        book.invalidate();
        assert_eq!(book.state(), BookState::AwaitingSnapshot);
        book.apply_snapshot(&[], &[]).unwrap();
        book.invalidate();
        assert_eq!(book.state(), BookState::Invalid);
    }

    // Random snapshots and deltas against a BTreeMap model that applies the protocol's rules
    // directly: sizes, levels, best bids and every error agree at every step.
    #[test]
    fn matches_a_btreemap_model() {
        let mut rng = StdRng::seed_from_u64(42);
        for _round in 0..200 {
            let mut book = Book::new();
            let mut model: Option<BTreeMap<(u8, i64), i64>> = None;
            for _step in 0..400 {
                if rng.random_ratio(1, 60) || model.is_none() && rng.random_ratio(1, 3) {
                    let mut sides = [Vec::new(), Vec::new()];
                    let mut fresh = BTreeMap::new();
                    for (s, levels) in sides.iter_mut().enumerate() {
                        for _ in 0..rng.random_range(0..40) {
                            let price = rng.random_range(0..=100) * 10_000;
                            if fresh.contains_key(&(s as u8, price)) {
                                continue;
                            }
                            let size = rng.random_range(1..100_000);
                            fresh.insert((s as u8, price), size);
                            levels.push(level(price, size));
                        }
                        // Wire order is ascending; shuffle sometimes to exercise defensive sort.
                        if rng.random_bool(0.5) {
                            levels.reverse();
                        }
                    }
                    book.apply_snapshot(&sides[0], &sides[1]).unwrap();
                    model = Some(fresh);
                    continue;
                }
                let s = rng.random_range(0..2u8);
                let side = if s == 0 { Side::Yes } else { Side::No };
                let price = rng.random_range(0..=100) * 10_000;
                let delta = rng.random_range(-60_000..60_000);
                let result = book.apply_delta(side, price, delta);
                match &mut model {
                    None => assert_eq!(result, Err(BookError::DeltaBeforeSnapshot)),
                    Some(map) => {
                        let old = map.get(&(s, price)).copied().unwrap_or(0);
                        if old + delta < 0 {
                            assert_eq!(
                                result,
                                Err(BookError::NegativeLevel {
                                    side,
                                    price_e6: price,
                                    size_e2: old,
                                    delta_e2: delta
                                })
                            );
                            // Resync from the model's state, as a fresh snapshot would.
                            let yes: Vec<Level> = map
                                .iter()
                                .filter(|(k, _)| k.0 == 0)
                                .map(|(k, v)| level(k.1, *v))
                                .collect();
                            let no: Vec<Level> = map
                                .iter()
                                .filter(|(k, _)| k.0 == 1)
                                .map(|(k, v)| level(k.1, *v))
                                .collect();
                            assert_eq!(
                                book.apply_delta(side, price, 1),
                                Err(BookError::AwaitingResync)
                            );
                            book.apply_snapshot(&yes, &no).unwrap();
                        } else {
                            result.unwrap();
                            if old + delta == 0 {
                                map.remove(&(s, price));
                            } else {
                                map.insert((s, price), old + delta);
                            }
                        }
                    }
                }
                if let Some(map) = &model {
                    for (s, side) in [(0u8, Side::Yes), (1, Side::No)] {
                        let expected: Vec<(i64, i64)> = map
                            .iter()
                            .filter(|(k, _)| k.0 == s)
                            .map(|(k, v)| (k.1, *v))
                            .collect();
                        assert_eq!(collect(&book, side), expected);
                        assert_eq!(
                            book.best(side).map(|l| (l.price_e6, l.count_e2)),
                            expected.last().copied()
                        );
                    }
                }
            }
        }
    }

    // Comparison with a REST snapshot, in both NO-side conventions.
    #[test]
    fn compare_with_rest() {
        let mut book = Book::new();
        assert_eq!(book.compare(&[], &[], false), Comparison::NotLive);
        // Live book in YES-leg convention: a NO bid at NO-leg 0.48 is stored at 0.52.
        book.apply_snapshot(&[level(470_000, 300)], &[level(520_000, 300)])
            .unwrap();
        assert_eq!(
            book.compare(&[level(470_000, 300)], &[level(480_000, 300)], true),
            Comparison::Equal
        );
        assert_eq!(
            book.compare(
                &[level(470_000, 300), level(10_000, 0)],
                &[level(480_000, 200), level(490_000, 5)],
                true
            ),
            Comparison::Differ(vec![
                LevelDifference {
                    side: Side::No,
                    price_e6: 510_000,
                    live_e2: 0,
                    rest_e2: 5
                },
                LevelDifference {
                    side: Side::No,
                    price_e6: 520_000,
                    live_e2: 300,
                    rest_e2: 200
                },
            ])
        );
        // NO-leg convention: compared as is.
        let mut book = Book::new();
        book.apply_snapshot(
            &[level(140_000, 18_501), level(150_000, 3_218)],
            &[level(550_000, 973), level(580_000, 11_550)],
        )
        .unwrap();
        assert_eq!(
            book.compare(
                &[level(150_000, 3_218), level(140_000, 18_501)],
                &[level(580_000, 11_550), level(550_000, 973)],
                false
            ),
            Comparison::Equal
        );
        assert_eq!(
            book.compare(
                &[level(140_000, 18_501)],
                &[level(550_000, 973), level(580_000, 11_550)],
                false
            ),
            Comparison::Differ(vec![LevelDifference {
                side: Side::Yes,
                price_e6: 150_000,
                live_e2: 3_218,
                rest_e2: 0
            }])
        );
    }

    // Capacity management: a snapshot keeps headroom, deltas within it never reallocate, and a
    // much smaller snapshot gives memory back.
    #[test]
    fn capacity_management() {
        let mut book = Book::new();
        let yes: Vec<Level> = (1..=40).map(|p| level(p * 10_000, 100)).collect();
        book.apply_snapshot(&yes, &yes).unwrap();
        let capacity = book.heap_bytes() / 8;
        assert!(capacity >= 80 + 20, "{capacity}");
        for p in 41..=60 {
            book.apply_delta(Side::No, p * 10_000, 1).unwrap();
        }
        assert_eq!(book.heap_bytes() / 8, capacity);
        book.apply_snapshot(&[level(10_000, 1)], &[]).unwrap();
        assert!(book.heap_bytes() / 8 <= 2 * 6 + 16, "{}", book.heap_bytes());
    }
}
