//! What the deduplicator reads and writes for each table: column order, dedup key, time column
//! and merge kind.
//!
//! Every time-series table is read from the gatherers and written to production with the same
//! column list, chosen so that
//!
//! * the **dedup key** is the first `key_fields` fields of a tuple, so the key of a row is one
//!   contiguous byte slice of the binary COPY tuple (length prefixes included, which keeps the
//!   encoding unambiguous);
//! * the **time column** (`exchange_ts`, `snapshot_ts` or `detected_ts`) is always field 1, so a
//!   row's range is found without knowing the table;
//! * for multiset tables the `occurrence` column (`int4 NOT NULL`) is the **last** field, so the
//!   merge sets it by overwriting the tuple's last four bytes.
//!
//! Fields that identify the capture rather than the event (`received_ts`, `gatherer_id`, `sid`,
//! `seq`) are outside the key: the same exchange event seen by two gatherers has the same key.
//! `market_lifecycle.payload` is the canonical record JSON, which carries the capturing
//! subscription's `sid` and `seq`; the gatherer read strips those two keys
//! (`payload - 'sid' - 'seq'`) so that the payload, and with it the generated `payload_md5` of
//! production's unique key, is the same from every gatherer.

use kalshi_writer::Table;

/// How a table's rows from several sources combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeKind {
    /// Multiset union: for each key the largest count seen by any one source; copies are
    /// numbered 0..k-1 in the `occurrence` column (deltas, tickers, lifecycle).
    Multiset,
    /// Set union: each key once (trades by `trade_id`, snapshots by
    /// `(ticker, snapshot_ts, gatherer_id, source)`).
    Set,
    /// Each key once, and an existing production row takes the newer content (the gap ledger,
    /// whose `repaired_ts` is filled in later).
    Upsert,
}

/// One time-series table as the deduplicator sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableSpec {
    /// The table.
    pub table: Table,
    /// The time column ranges are cut on; field 1 of every tuple.
    pub time_column: &'static str,
    /// The SQL expression of a row's arrival time in a gatherer's database (what the late-row
    /// scan's cursor runs on, [`crate::late`]): `received_ts`, or for the gap ledger, whose
    /// final row is written at repair, `coalesce(repaired_ts, detected_ts)`.
    pub arrival: &'static str,
    /// Columns in COPY order (read and write).
    pub columns: &'static [&'static str],
    /// The dedup key is the first this many fields.
    pub key_fields: usize,
    /// How sources combine.
    pub kind: MergeKind,
}

/// The time-series tables, in the order a range transaction writes them.
pub const SPECS: [TableSpec; 6] = [
    TableSpec {
        table: Table::Trades,
        time_column: "exchange_ts",
        arrival: "received_ts",
        columns: &[
            "trade_id",
            "exchange_ts",
            "received_ts",
            "gatherer_id",
            "ticker",
            "yes_price_e6",
            "no_price_e6",
            "count_e2",
            "taker_side",
            "taker_outcome_side",
            "taker_book_side",
            "is_block_trade",
            "source",
            "sid",
            "seq",
        ],
        key_fields: 1,
        kind: MergeKind::Set,
    },
    TableSpec {
        table: Table::OrderbookDeltas,
        time_column: "exchange_ts",
        arrival: "received_ts",
        columns: &[
            "ticker",
            "exchange_ts",
            "side",
            "price_e6",
            "delta_e2",
            "received_ts",
            "gatherer_id",
            "sid",
            "seq",
            "occurrence",
        ],
        key_fields: 5,
        kind: MergeKind::Multiset,
    },
    TableSpec {
        table: Table::OrderbookSnapshots,
        time_column: "snapshot_ts",
        arrival: "received_ts",
        columns: &[
            "ticker",
            "snapshot_ts",
            "gatherer_id",
            "source",
            "received_ts",
            "sid",
            "seq",
            "yes_price_e6",
            "yes_count_e2",
            "no_price_e6",
            "no_count_e2",
        ],
        key_fields: 4,
        kind: MergeKind::Set,
    },
    TableSpec {
        table: Table::Tickers,
        time_column: "exchange_ts",
        arrival: "received_ts",
        columns: &[
            "ticker",
            "exchange_ts",
            "price_e6",
            "yes_bid_e6",
            "yes_ask_e6",
            "yes_bid_size_e2",
            "yes_ask_size_e2",
            "last_trade_size_e2",
            "volume_e2",
            "open_interest_e2",
            "dollar_volume_e6",
            "dollar_open_interest_e6",
            "received_ts",
            "gatherer_id",
            "sid",
            "seq",
            "occurrence",
        ],
        key_fields: 12,
        kind: MergeKind::Multiset,
    },
    TableSpec {
        table: Table::MarketLifecycle,
        time_column: "exchange_ts",
        arrival: "received_ts",
        columns: &[
            "ticker",
            "exchange_ts",
            "event_type",
            "mve",
            "payload",
            "received_ts",
            "gatherer_id",
            "sid",
            "seq",
            "occurrence",
        ],
        key_fields: 5,
        kind: MergeKind::Multiset,
    },
    TableSpec {
        table: Table::SequenceGaps,
        time_column: "detected_ts",
        arrival: "coalesce(repaired_ts, detected_ts)",
        columns: &[
            "gatherer_id",
            "detected_ts",
            "channel",
            "sid",
            "expected_seq",
            "received_seq",
            "tickers",
            "repair",
            "repaired_ts",
            "backfilled_trades",
            "note",
        ],
        key_fields: 6,
        kind: MergeKind::Upsert,
    },
];

impl TableSpec {
    /// The spec of `table`, if it is a time-series table.
    #[must_use]
    pub fn of(table: Table) -> Option<&'static TableSpec> {
        SPECS.iter().find(|s| s.table == table)
    }

    /// The SQL name.
    #[must_use]
    pub const fn name(&self) -> &'static str {
        self.table.name()
    }

    /// The column list, comma-separated.
    #[must_use]
    pub fn column_list(&self) -> String {
        self.columns.join(", ")
    }

    /// `COPY (SELECT ...) TO STDOUT (FORMAT binary)` of the rows with `time_column` in
    /// `[$lo, $hi)`, the bounds inlined as integer literals (COPY takes no parameters).
    #[must_use]
    pub fn copy_out_sql(&self, lo: i64, hi: i64, strip_capture_keys: bool) -> String {
        let select = self
            .columns
            .iter()
            .map(|c| {
                if *c == "payload" && strip_capture_keys {
                    "(payload - 'sid' - 'seq') AS payload".to_owned()
                } else {
                    (*c).to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        // The gap ledger is append-only on a gatherer: a gap has a detection row and, once
        // repaired, a second row with the same key and `repaired_ts` set. The merge keeps the
        // first row of a key from a source (`MergeKind::Upsert`), so the repaired row must come
        // first, or production would hold every gap as never repaired.
        let order = if self.table == Table::SequenceGaps {
            " ORDER BY repaired_ts IS NULL, repaired_ts DESC"
        } else {
            ""
        };
        format!(
            "COPY (SELECT {select} FROM {t} WHERE {tc} >= {lo} AND {tc} < {hi}{order}) TO STDOUT (FORMAT binary)",
            t = self.name(),
            tc = self.time_column,
        )
    }

    /// The statement moving staged rows (`stage`) into the table, skipping rows production
    /// already has: `ON CONFLICT DO NOTHING` on the unique keys; trades also skip a `trade_id`
    /// production holds at another time; the gap ledger takes newer repair details.
    #[must_use]
    pub fn merge_sql(&self, stage: &str) -> String {
        let cols = self.column_list();
        let t = self.name();
        match self.table {
            Table::Trades => format!(
                "INSERT INTO {t} ({cols}) SELECT DISTINCT ON (trade_id) {cols} FROM {stage} s \
                 WHERE NOT EXISTS (SELECT 1 FROM {t} p WHERE p.trade_id = s.trade_id) \
                 ORDER BY trade_id, exchange_ts ON CONFLICT DO NOTHING"
            ),
            Table::SequenceGaps => format!(
                "INSERT INTO {t} ({cols}) SELECT {cols} FROM {stage} \
                 ON CONFLICT (gatherer_id, detected_ts, channel, sid, expected_seq, received_seq) \
                 DO UPDATE SET tickers = EXCLUDED.tickers, repair = EXCLUDED.repair, \
                 repaired_ts = EXCLUDED.repaired_ts, backfilled_trades = EXCLUDED.backfilled_trades, \
                 note = EXCLUDED.note \
                 WHERE ({t}.tickers, {t}.repair, {t}.repaired_ts, {t}.backfilled_trades, {t}.note) \
                 IS DISTINCT FROM (EXCLUDED.tickers, EXCLUDED.repair, EXCLUDED.repaired_ts, \
                 EXCLUDED.backfilled_trades, EXCLUDED.note)"
            ),
            _ => format!(
                "INSERT INTO {t} ({cols}) SELECT {cols} FROM {stage} ON CONFLICT DO NOTHING"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Checks the layout rules the merge relies on, for every table: the time column is field
    // 1, multiset tables end with `occurrence`, and the key and column lists are consistent
    // with the writer's column set (same columns, another order).
    #[test]
    fn layout_rules() {
        for spec in SPECS {
            assert_eq!(spec.columns[1], spec.time_column, "{}", spec.name());
            assert!(spec.key_fields >= 1 && spec.key_fields < spec.columns.len());
            if spec.kind == MergeKind::Multiset {
                assert_eq!(spec.columns.last(), Some(&"occurrence"), "{}", spec.name());
            }
            let mut ours: Vec<&str> = spec.columns.to_vec();
            let mut writer: Vec<&str> = spec.table.columns().to_vec();
            ours.sort_unstable();
            writer.sort_unstable();
            assert_eq!(ours, writer, "{}", spec.name());
            assert_eq!(TableSpec::of(spec.table), Some(&spec));
        }
        assert!(TableSpec::of(Table::Markets).is_none());
        let gaps = TableSpec::of(Table::SequenceGaps)
            .unwrap()
            .copy_out_sql(1, 2, true);
        assert!(
            gaps.contains("ORDER BY repaired_ts IS NULL, repaired_ts DESC"),
            "{gaps}"
        );
        let sql = SPECS[4].copy_out_sql(1, 2, true);
        assert!(
            sql.contains("(payload - 'sid' - 'seq') AS payload"),
            "{sql}"
        );
        assert!(
            sql.contains("exchange_ts >= 1 AND exchange_ts < 2"),
            "{sql}"
        );
    }
}
