//! A batch: the COPY bodies of every table, written to the spool and committed as one unit.

use crate::copy::{self, TABLE_COUNT, Table};
use crate::rows::Row;

/// The COPY body of one table within a batch.
#[derive(Debug, Default, Clone)]
pub(crate) struct Section {
    /// Tuples in `body`.
    pub(crate) rows: u32,
    /// Tuples, without COPY header or trailer.
    pub(crate) body: Vec<u8>,
}

/// Rows of every table, encoded, with the batch's identity once sealed.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// Batch id (0 while open).
    pub(crate) id: u64,
    /// When the batch was sealed, µs since the Unix epoch (for the spool age gauge).
    pub(crate) created_us: i64,
    /// One body per [`Table`], indexed by discriminant.
    pub(crate) sections: [Section; TABLE_COUNT],
}

impl Batch {
    /// An empty batch whose hot bodies have `capacity` bytes reserved.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        let mut batch = Self::default();
        for table in [Table::OrderbookDeltas, Table::Trades, Table::Tickers] {
            batch.sections[table as usize].body.reserve(capacity);
        }
        batch
    }

    /// Total rows.
    pub(crate) fn rows(&self) -> u64 {
        self.sections.iter().map(|s| u64::from(s.rows)).sum()
    }

    /// Total body bytes.
    pub(crate) fn bytes(&self) -> usize {
        self.sections.iter().map(|s| s.body.len()).sum()
    }

    /// Forget the rows, keeping the buffers.
    pub(crate) fn clear(&mut self) {
        self.id = 0;
        self.created_us = 0;
        for s in &mut self.sections {
            s.rows = 0;
            s.body.clear();
        }
    }

    /// The non-empty sections with their tables, in table order.
    pub(crate) fn tables(&self) -> impl Iterator<Item = (Table, &Section)> {
        Table::ALL
            .iter()
            .zip(self.sections.iter())
            .filter(|(_, s)| s.rows > 0)
            .map(|(t, s)| (*t, s))
    }

    /// Encode `row` into its table's body. Returns the row's byte count.
    pub(crate) fn add(&mut self, row: &Row) -> usize {
        let table = match row {
            Row::Delta(_) => Table::OrderbookDeltas,
            Row::Trade(_) => Table::Trades,
            Row::Ticker(_) => Table::Tickers,
            Row::Snapshot(_) => Table::OrderbookSnapshots,
            Row::Lifecycle(_) => Table::MarketLifecycle,
            Row::Market(_) => Table::Markets,
            Row::Event(_) => Table::Events,
            Row::SequenceGap(_) => Table::SequenceGaps,
        };
        let section = &mut self.sections[table as usize];
        let body = &mut section.body;
        let before = body.len();
        match row {
            Row::Delta(r) => copy::encode_delta(body, r),
            Row::Trade(r) => copy::encode_trade(body, r),
            Row::Ticker(r) => copy::encode_ticker(body, r),
            Row::Snapshot(r) => copy::encode_snapshot(body, r),
            Row::Lifecycle(r) => copy::encode_lifecycle(body, r),
            Row::Market(r) => copy::encode_market(body, r),
            Row::Event(r) => copy::encode_event(body, r),
            Row::SequenceGap(r) => copy::encode_sequence_gap(body, r),
        }
        section.rows += 1;
        body.len() - before
    }
}
