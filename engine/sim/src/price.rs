//! Tick sizes: the `price_level_structure` of a market and its `price_ranges` (`protocol.md`
//! §3.3). Prices are micro-dollars; a bid price is valid when it lies strictly between 0 and
//! 1.000000 and on the grid of one of the structure's bands.

use kalshi_wire::PriceRange;

/// One dollar in micro-dollars.
pub const ONE_DOLLAR_E6: i64 = 1_000_000;

const fn band(start_e6: i64, end_e6: i64, step_e6: i64) -> PriceRange {
    PriceRange {
        start_e6,
        end_e6,
        step_e6,
    }
}

const LINEAR_CENT: [PriceRange; 1] = [band(0, ONE_DOLLAR_E6, 10_000)];
const DECI_CENT: [PriceRange; 1] = [band(0, ONE_DOLLAR_E6, 1_000)];
const TAPERED_DECI_CENT: [PriceRange; 3] = [
    band(0, 100_000, 1_000),
    band(100_000, 900_000, 10_000),
    band(900_000, ONE_DOLLAR_E6, 1_000),
];

/// The documented price level structures the simulator lists markets with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PriceLevelStructure {
    /// 0–1, step 0.01.
    LinearCent,
    /// 0–1, step 0.001.
    DeciCent,
    /// 0–0.10 step 0.001, 0.10–0.90 step 0.01, 0.90–1.00 step 0.001.
    TaperedDeciCent,
}

impl PriceLevelStructure {
    /// All structures, in the order series are assigned them.
    pub const ALL: [PriceLevelStructure; 3] = [
        PriceLevelStructure::LinearCent,
        PriceLevelStructure::DeciCent,
        PriceLevelStructure::TaperedDeciCent,
    ];

    /// The wire spelling.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            PriceLevelStructure::LinearCent => "linear_cent",
            PriceLevelStructure::DeciCent => "deci_cent",
            PriceLevelStructure::TaperedDeciCent => "tapered_deci_cent",
        }
    }

    /// The `price_ranges` bands.
    #[must_use]
    pub const fn ranges(self) -> &'static [PriceRange] {
        match self {
            PriceLevelStructure::LinearCent => &LINEAR_CENT,
            PriceLevelStructure::DeciCent => &DECI_CENT,
            PriceLevelStructure::TaperedDeciCent => &TAPERED_DECI_CENT,
        }
    }

    /// Whether `price_e6` is a valid resting bid price: strictly inside (0, 1) and on a band's
    /// grid.
    #[must_use]
    pub fn is_valid_price(self, price_e6: i64) -> bool {
        price_e6 > 0
            && price_e6 < ONE_DOLLAR_E6
            && self.ranges().iter().any(|r| {
                price_e6 >= r.start_e6
                    && price_e6 <= r.end_e6
                    && (price_e6 - r.start_e6) % r.step_e6 == 0
            })
    }

    /// The smallest valid price.
    #[must_use]
    pub fn min_price(self) -> i64 {
        self.tick_up(0).unwrap_or(ONE_DOLLAR_E6)
    }

    /// The largest valid price.
    #[must_use]
    pub fn max_price(self) -> i64 {
        self.tick_down(ONE_DOLLAR_E6).unwrap_or(0)
    }

    /// The smallest valid price strictly above `price_e6`, if any.
    #[must_use]
    pub fn tick_up(self, price_e6: i64) -> Option<i64> {
        self.ranges()
            .iter()
            .filter_map(|r| {
                if price_e6 < r.start_e6 {
                    Some(r.start_e6)
                } else if price_e6 < r.end_e6 {
                    Some(r.start_e6 + ((price_e6 - r.start_e6) / r.step_e6 + 1) * r.step_e6)
                } else {
                    None
                }
            })
            .filter(|p| self.is_valid_price(*p))
            .min()
    }

    /// The largest valid price strictly below `price_e6`, if any.
    #[must_use]
    pub fn tick_down(self, price_e6: i64) -> Option<i64> {
        self.ranges()
            .iter()
            .filter_map(|r| {
                if price_e6 > r.end_e6 {
                    Some(r.end_e6)
                } else if price_e6 > r.start_e6 {
                    Some(r.start_e6 + ((price_e6 - 1 - r.start_e6) / r.step_e6) * r.step_e6)
                } else {
                    None
                }
            })
            .filter(|p| self.is_valid_price(*p))
            .max()
    }

    /// `price_e6` if valid, else the largest valid price below it, else the smallest valid
    /// price.
    #[must_use]
    pub fn snap_down(self, price_e6: i64) -> i64 {
        if self.is_valid_price(price_e6) {
            price_e6
        } else {
            self.tick_down(price_e6).unwrap_or_else(|| self.min_price())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Grid validity and tick walking across the tapered structure's band boundaries.
    #[test]
    fn ticks_follow_the_bands() {
        let t = PriceLevelStructure::TaperedDeciCent;
        assert!(t.is_valid_price(1_000));
        assert!(t.is_valid_price(99_000));
        assert!(t.is_valid_price(100_000));
        assert!(!t.is_valid_price(101_000));
        assert!(t.is_valid_price(110_000));
        assert!(t.is_valid_price(901_000));
        assert!(!t.is_valid_price(0));
        assert!(!t.is_valid_price(ONE_DOLLAR_E6));
        assert_eq!(t.tick_up(100_000), Some(110_000));
        assert_eq!(t.tick_down(100_000), Some(99_000));
        assert_eq!(t.tick_up(899_000), Some(900_000));
        assert_eq!(t.tick_up(900_000), Some(901_000));
        assert_eq!(t.tick_down(110_000), Some(100_000));
        assert_eq!(t.min_price(), 1_000);
        assert_eq!(t.max_price(), 999_000);
        assert_eq!(t.snap_down(105_000), 100_000);
        let c = PriceLevelStructure::LinearCent;
        assert_eq!(c.min_price(), 10_000);
        assert_eq!(c.max_price(), 990_000);
        assert!(!c.is_valid_price(15_000));
        assert_eq!(c.tick_up(990_000), None);
        assert_eq!(c.tick_down(10_000), None);
        let d = PriceLevelStructure::DeciCent;
        assert_eq!(d.tick_up(1_000), Some(2_000));
        assert_eq!(d.snap_down(1_500), 1_000);
    }
}
