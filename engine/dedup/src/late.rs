//! Late rows (sans-IO): rows that arrive in a gatherer's database after their range was read.
//!
//! A range of exchange time closes when every live gatherer's durable watermark is `grace`
//! past its end. A row can still arrive later than that while its gatherer stays live: a REST
//! trade backfill after a gap or reconnect arrives seconds to minutes after the trades
//! happened, and under CPU load even WebSocket frames reach the gatherer more than `grace`
//! after the exchange stamped them. The merge of the range has then already read that
//! gatherer. Such a row has to be found and its range merged again.
//!
//! # The arrival cursor
//!
//! Per gatherer the deduplicator keeps a cursor `L` on **arrival time** (`received_ts`; for the
//! gap ledger, whose final row is written at repair, `coalesce(repaired_ts, detected_ts)`),
//! persisted in production's `dedup_late_cursors`. The invariant: every row of the gatherer
//! that arrived at or before `L` is in production, or lies in a range that has not been read
//! from that gatherer yet (at or past its planner cursor), which the normal merge or catch-up
//! will read later.
//!
//! Each scan takes the window `(L, U]` with `U = W - grace`, `W` the gatherer's durable
//! watermark. Every row that arrived at or before `U` is committed: kalshi-writer stamps a row
//! on receipt, seals it into a batch whose id is at least the seal time, and commits batches in
//! id order, so when batch `W` is committed every row sealed before it is too; a row that
//! arrived before `W - grace` was sealed before `W` unless it waited more than `grace` in a
//! ring or an open batch (the same assumption that closing a range makes). The scan asks the
//! gatherer, per table, which range starts below the gatherer's planner cursor received rows
//! in the window ([`candidate_sql`]; BRIN indexes on `received_ts` make this cheap); those
//! ranges are merged again through the catch-up path (fingerprint compare, then only the
//! copies production lacks are written), and `L` moves to `U` in the same production
//! transaction as the last of them. A crash in between repeats an idempotent re-merge.
//!
//! # Coverage: not re-reading what the merge just read
//!
//! Almost every row arrives within `grace` of its exchange time, and the merge that reads its
//! range has seen it. To keep those rows out of the window's candidates, each committed job
//! records a [`Coverage`] per source: the job read ranges `[lo, hi)` after a probe showed
//! watermark `W`, so every row of those ranges that arrived at or before `W - grace` was read.
//! A row is a candidate only when no coverage entry of its range reaches its arrival time.
//! Coverage is an optimisation only: without it (after a restart) every row of the window in
//! a read range is a candidate, and the fingerprint check skips the ranges that did not
//! change. Entries whose reach is at or below `L` can no longer exclude anything and are
//! dropped.

use crate::spec::TableSpec;

/// Job reads that cover rows: every row of `[lo, hi)` that arrived at or before `upto` was
/// read from the gatherer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Coverage {
    /// First range start read.
    pub lo: i64,
    /// End of the last range read (exclusive).
    pub hi: i64,
    /// Arrival time up to which the read saw every row (`W - grace` at the read).
    pub upto: i64,
}

/// Most coverage entries kept per gatherer; the oldest are dropped beyond it (which only makes
/// scans find more candidates).
pub const COVERAGE_MAX: usize = 256;

/// One gatherer's late-scan state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LateState {
    /// The arrival cursor `L`, once loaded from production.
    pub cursor: Option<i64>,
    coverage: Vec<Coverage>,
}

impl LateState {
    /// A state at `cursor` with no coverage.
    #[must_use]
    pub fn new(cursor: Option<i64>) -> Self {
        Self {
            cursor,
            coverage: Vec::new(),
        }
    }

    /// Record a committed read (see [`Coverage`]).
    pub fn record(&mut self, c: Coverage) {
        if self.cursor.is_some_and(|l| c.upto <= l) || c.hi <= c.lo {
            return;
        }
        if self.coverage.len() >= COVERAGE_MAX {
            self.coverage.remove(0);
        }
        self.coverage.push(c);
    }

    /// The entries that can still exclude rows.
    #[must_use]
    pub fn coverage(&self) -> &[Coverage] {
        &self.coverage
    }

    /// Move the cursor to `to` (never back) and drop entries it made useless.
    pub fn advance(&mut self, to: i64) {
        let l = self.cursor.map_or(to, |c| c.max(to));
        self.cursor = Some(l);
        self.coverage.retain(|c| c.upto > l);
    }
}

/// The window to scan: `(cursor, upto]` with `upto = watermark - grace`, at most `step_max`
/// long; `None` when there is nothing new.
#[must_use]
pub fn scan_window(
    cursor: i64,
    watermark: i64,
    grace_us: i64,
    step_max: i64,
) -> Option<(i64, i64)> {
    let upto = watermark
        .saturating_sub(grace_us)
        .min(cursor.saturating_add(step_max.max(1)));
    (upto > cursor).then_some((cursor, upto))
}

/// The query listing the range starts (width `width`) of `spec`'s table below `before` that
/// received rows with arrival time ([`TableSpec::arrival`]) in `(after, upto]` not covered by
/// `coverage`. Every bound is an integer inlined as a literal.
#[must_use]
pub fn candidate_sql(
    spec: &TableSpec,
    width: i64,
    after: i64,
    upto: i64,
    before: i64,
    coverage: &[Coverage],
) -> String {
    let (table, time_col, arrival) = (spec.name(), spec.time_column, spec.arrival);
    let w = width.max(1);
    let mut covered = String::new();
    for c in coverage {
        if !covered.is_empty() {
            covered.push_str(" OR ");
        }
        covered.push_str(&format!(
            "(t >= {} AND t < {} AND a <= {})",
            c.lo, c.hi, c.upto
        ));
    }
    let filter = if covered.is_empty() {
        String::new()
    } else {
        format!(" WHERE NOT ({covered})")
    };
    format!(
        "SELECT DISTINCT t - ((t % {w}) + {w}) % {w} AS range_start FROM \
         (SELECT {time_col} AS t, {arrival} AS a FROM {table} \
         WHERE {arrival} > {after} AND {arrival} <= {upto} AND {time_col} < {before}) x{filter}"
    )
}

/// Split sorted, distinct range starts into runs of consecutive ranges, each at most `max`
/// ranges long: `(start, ranges)`.
#[must_use]
pub fn runs(starts: &[i64], width: i64, max: usize) -> Vec<(i64, usize)> {
    let mut out: Vec<(i64, usize)> = Vec::new();
    for &s in starts {
        match out.last_mut() {
            Some((start, n)) if *start + *n as i64 * width == s && *n < max.max(1) => *n += 1,
            _ => out.push((s, 1)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // The window trails the watermark by grace, is bounded by the step, and is empty when the
    // cursor is already there.
    #[test]
    fn window() {
        assert_eq!(scan_window(100, 1000, 300, 10_000), Some((100, 700)));
        assert_eq!(scan_window(100, 1000, 300, 50), Some((100, 150)));
        assert_eq!(scan_window(700, 1000, 300, 50), None);
        assert_eq!(scan_window(800, 1000, 300, 50), None);
    }

    // Coverage entries below the cursor are dropped or never kept; the cursor never moves
    // back; the candidate query carries each entry and the bounds.
    #[test]
    fn coverage_and_sql() {
        let mut s = LateState::new(Some(1000));
        s.record(Coverage {
            lo: 0,
            hi: 10,
            upto: 900,
        });
        assert!(s.coverage().is_empty());
        s.record(Coverage {
            lo: 10,
            hi: 20,
            upto: 1500,
        });
        s.record(Coverage {
            lo: 20,
            hi: 30,
            upto: 2500,
        });
        assert_eq!(s.coverage().len(), 2);
        s.advance(1500);
        assert_eq!(s.coverage().len(), 1);
        s.advance(1200);
        assert_eq!(s.cursor, Some(1500));
        let sql = candidate_sql(&crate::spec::SPECS[0], 10, 1500, 3000, 30, s.coverage());
        assert!(
            sql.contains("received_ts > 1500 AND received_ts <= 3000 AND exchange_ts < 30"),
            "{sql}"
        );
        assert!(
            sql.contains("NOT ((t >= 20 AND t < 30 AND a <= 2500))"),
            "{sql}"
        );
        assert!(sql.contains("t - ((t % 10) + 10) % 10"), "{sql}");
        assert!(sql.contains("FROM trades WHERE"), "{sql}");
        for _ in 0..COVERAGE_MAX + 5 {
            s.record(Coverage {
                lo: 0,
                hi: 1,
                upto: 9999,
            });
        }
        assert_eq!(s.coverage().len(), COVERAGE_MAX);
    }

    // Consecutive ranges form runs, capped in length; gaps split them.
    #[test]
    fn runs_of_ranges() {
        assert_eq!(
            runs(&[10, 20, 30, 50, 60, 100], 10, 2),
            vec![(10, 2), (30, 1), (50, 2), (100, 1)]
        );
        assert!(runs(&[], 10, 5).is_empty());
    }
}
