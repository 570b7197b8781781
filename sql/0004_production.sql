-- 0004_production: the production (archive) database (MigrateOptions.role = Production).
-- Chosen at runtime instead of 0004_gatherer.sql. Adds
--   * the deduplicator's state tables, dedup_watermarks and dedup_ranges. They live in production
--     only: the deduplicator's place in each gatherer's stream must commit atomically with the rows
--     it wrote, and gatherer databases are rolling buffers that may be rebuilt;
--   * the unique indexes the deduplicator relies on for idempotent writes (ON CONFLICT DO NOTHING
--     as the backstop of its range merge). A unique index on a partitioned table (or hypertable)
--     must contain the partition column, so every key includes its time column. For trades the
--     natural key is trade_id alone; (trade_id, exchange_ts) is equivalent provided every source
--     reports the same exchange time for a trade, which the deduplicator must ensure (it dedups
--     on trade_id before writing);
--   * indexes for people querying by market;
--   * access rights: deduplicator reads and writes everything here; kalshi_reader reads;
--     gatherer gets nothing at all in production.
-- NULLS NOT DISTINCT needs PostgreSQL 15, which the runner checks.

CREATE TABLE dedup_watermarks (
    gatherer     text        NOT NULL,
    table_name   text        NOT NULL,
    watermark_ts bigint      NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (gatherer, table_name)
);
COMMENT ON TABLE dedup_watermarks IS
    'Deduplicator state: per gatherer and table, the exchange_ts up to which that gatherer''s rows '
    'are durable and have been read.';
COMMENT ON COLUMN dedup_watermarks.gatherer IS 'Gatherer name, as in the deduplicator''s configuration.';
COMMENT ON COLUMN dedup_watermarks.table_name IS 'Time-series table the watermark is for.';
COMMENT ON COLUMN dedup_watermarks.watermark_ts IS 'Watermark, microseconds since the Unix epoch (exchange time).';
COMMENT ON COLUMN dedup_watermarks.updated_at IS 'When the watermark last moved.';

CREATE TABLE dedup_ranges (
    table_name  text        NOT NULL,
    range_start bigint      NOT NULL,
    range_end   bigint      NOT NULL,
    source      text        NOT NULL,
    row_count   bigint      NOT NULL,
    fingerprint bytea       NOT NULL,
    merged_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (table_name, range_start, source),
    CONSTRAINT dedup_ranges_bounds_check CHECK (range_end >= range_start)
);
COMMENT ON TABLE dedup_ranges IS
    'Deduplicator state: for each closed range of a table and each source (a gatherer, or merged '
    'for what was written here), the row count and an order-independent fingerprint of the keys. '
    'A range is merged again only when a source''s fingerprint changes.';
COMMENT ON COLUMN dedup_ranges.table_name IS 'Time-series table.';
COMMENT ON COLUMN dedup_ranges.range_start IS 'First exchange_ts of the closed range, microseconds since the Unix epoch (inclusive).';
COMMENT ON COLUMN dedup_ranges.range_end IS 'Last exchange_ts of the closed range, microseconds since the Unix epoch (inclusive).';
COMMENT ON COLUMN dedup_ranges.source IS 'Gatherer name, or merged for the rows written to production.';
COMMENT ON COLUMN dedup_ranges.row_count IS 'Rows the source had in the range.';
COMMENT ON COLUMN dedup_ranges.fingerprint IS 'Order-independent hash of the rows'' dedup keys.';
COMMENT ON COLUMN dedup_ranges.merged_at IS 'When the range was last merged.';

CREATE UNIQUE INDEX trades_dedup_key ON trades (trade_id, exchange_ts);
CREATE UNIQUE INDEX orderbook_deltas_dedup_key
    ON orderbook_deltas (ticker, exchange_ts, side, price_e6, delta_e2, occurrence);
CREATE UNIQUE INDEX orderbook_snapshots_dedup_key
    ON orderbook_snapshots (ticker, snapshot_ts, gatherer_id, source);
CREATE UNIQUE INDEX tickers_dedup_key
    ON tickers (ticker, exchange_ts, occurrence, price_e6, yes_bid_e6, yes_ask_e6, yes_bid_size_e2,
                yes_ask_size_e2, last_trade_size_e2, volume_e2, open_interest_e2, dollar_volume_e6,
                dollar_open_interest_e6)
    NULLS NOT DISTINCT;
CREATE UNIQUE INDEX market_lifecycle_dedup_key
    ON market_lifecycle (ticker, exchange_ts, event_type, mve, payload_md5, occurrence);
CREATE UNIQUE INDEX sequence_gaps_dedup_key
    ON sequence_gaps (gatherer_id, detected_ts, channel, sid, expected_seq, received_seq)
    NULLS NOT DISTINCT;

CREATE INDEX trades_ticker_exchange_ts_idx ON trades (ticker, exchange_ts);

GRANT SELECT, INSERT, UPDATE, DELETE
    ON trades, orderbook_deltas, orderbook_snapshots, tickers, market_lifecycle,
       markets, events, sequence_gaps, dedup_watermarks, dedup_ranges
    TO deduplicator;
GRANT SELECT ON kalshi_retention TO deduplicator;
GRANT EXECUTE ON FUNCTION kalshi_maintain_partitions(integer, bigint) TO deduplicator;

GRANT SELECT ON trades, orderbook_deltas, orderbook_snapshots, tickers, market_lifecycle,
                markets, events, sequence_gaps, kalshi_retention, dedup_watermarks, dedup_ranges
    TO kalshi_reader;
GRANT SELECT ON trades_v, orderbook_deltas_v, orderbook_snapshots_v, tickers_v, market_lifecycle_v,
                sequence_gaps_v
    TO deduplicator, kalshi_reader;

-- schema_migrations is created by the migration runner before version 1; reading it lets a
-- service that runs as one of these roles check that the schema is up to date.
GRANT SELECT ON schema_migrations TO deduplicator, kalshi_reader;
