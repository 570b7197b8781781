-- 0006_late_gatherer: arrival-time indexes for the deduplicator's late-row scan, on a gatherer's
-- local database (MigrateOptions.role = Gatherer). Chosen at runtime instead of
-- 0006_late_production.sql.
--
-- The deduplicator merges closed ranges of exchange time. A row whose exchange time lies in a
-- range that has already been merged can still arrive later (a REST trade backfill after a gap,
-- WebSocket frames delayed past the closing grace under load). To find such rows without
-- re-reading history, the deduplicator keeps a per-gatherer cursor on the time rows ARRIVED and
-- asks, each cycle, which closed ranges received rows since the cursor:
--   SELECT DISTINCT <range of exchange_ts> FROM t WHERE received_ts > $cursor AND received_ts <= $upto ...
-- received_ts follows the physical append order of the tables (the writer appends rows in the
-- order they were received, give or take a batch), so a BRIN index serves that range cheaply,
-- like the BRIN indexes on the exchange-time columns, and costs almost nothing on insert.
--
-- sequence_gaps has no received_ts: a gap row arrives at detection (detected_ts) and its final
-- row at repair (repaired_ts). It is small, so a plain btree on the arrival expression.

CREATE INDEX trades_received_ts_brin              ON trades              USING brin (received_ts);
CREATE INDEX orderbook_deltas_received_ts_brin    ON orderbook_deltas    USING brin (received_ts);
CREATE INDEX orderbook_snapshots_received_ts_brin ON orderbook_snapshots USING brin (received_ts);
CREATE INDEX tickers_received_ts_brin             ON tickers             USING brin (received_ts);
CREATE INDEX market_lifecycle_received_ts_brin    ON market_lifecycle    USING brin (received_ts);
CREATE INDEX sequence_gaps_arrival_idx ON sequence_gaps ((coalesce(repaired_ts, detected_ts)));
