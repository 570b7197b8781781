-- 0002_timeseries_timescale: the time-series tables as TimescaleDB hypertables.
--
-- Chosen at runtime instead of 0002_timeseries_native.sql when the timescaledb extension is
-- available (and preloaded) and MigrateOptions.timescale is not Off. The column lists here and in
-- the native file must stay identical; a unit test in kalshi-storage compares them.
--
-- UNTESTED IN CI: TimescaleDB is not packaged for the CI machines, so only the native path is
-- exercised by the test suite. Written against the TimescaleDB 2.x API (create_hypertable with an
-- integer time column, set_integer_now_func, add_compression_policy, add_retention_policy).
--
-- Hypertables are chunked by one UTC day (86 400 000 000 microseconds) on the BIGINT time column;
-- unix_now_us() is their integer-now function, so the policies below understand "1 day" and
-- "7 days" in microseconds. Compression is enabled by kalshi_maintain_partitions rather than here,
-- so that the production migration (0004) can still add its unique indexes to uncompressed tables.
-- No unique indexes here, exactly as on the native path.

CREATE EXTENSION IF NOT EXISTS timescaledb;

-- BEGIN TABLES
CREATE TABLE trades (
    exchange_ts        bigint   NOT NULL,
    received_ts        bigint   NOT NULL,
    gatherer_id        smallint NOT NULL,
    ticker             text     NOT NULL,
    trade_id           text     NOT NULL,
    yes_price_e6       bigint   NOT NULL,
    no_price_e6        bigint   NOT NULL,
    count_e2           bigint   NOT NULL,
    taker_side         text     CHECK (taker_side IN ('yes', 'no')),
    taker_outcome_side text,
    taker_book_side    text     CHECK (taker_book_side IN ('bid', 'ask')),
    is_block_trade     boolean,
    source             text     NOT NULL CHECK (source IN ('ws', 'rest')),
    sid                bigint,
    seq                bigint
);

CREATE TABLE orderbook_deltas (
    exchange_ts bigint   NOT NULL,
    received_ts bigint   NOT NULL,
    gatherer_id smallint NOT NULL,
    ticker      text     NOT NULL,
    side        text     NOT NULL CHECK (side IN ('yes', 'no')),
    price_e6    bigint   NOT NULL,
    delta_e2    bigint   NOT NULL,
    sid         bigint   NOT NULL,
    seq         bigint   NOT NULL,
    occurrence  integer  NOT NULL DEFAULT 0
);

CREATE TABLE orderbook_snapshots (
    snapshot_ts  bigint   NOT NULL,
    received_ts  bigint   NOT NULL,
    gatherer_id  smallint NOT NULL,
    ticker       text     NOT NULL,
    source       text     NOT NULL CHECK (source IN ('ws', 'rest')),
    sid          bigint,
    seq          bigint,
    yes_price_e6 bigint[] NOT NULL,
    yes_count_e2 bigint[] NOT NULL,
    no_price_e6  bigint[] NOT NULL,
    no_count_e2  bigint[] NOT NULL,
    CONSTRAINT orderbook_snapshots_yes_levels_check
        CHECK (cardinality(yes_price_e6) = cardinality(yes_count_e2)),
    CONSTRAINT orderbook_snapshots_no_levels_check
        CHECK (cardinality(no_price_e6) = cardinality(no_count_e2))
);

CREATE TABLE tickers (
    exchange_ts             bigint   NOT NULL,
    received_ts             bigint   NOT NULL,
    gatherer_id             smallint NOT NULL,
    ticker                  text     NOT NULL,
    price_e6                bigint,
    yes_bid_e6              bigint,
    yes_ask_e6              bigint,
    yes_bid_size_e2         bigint,
    yes_ask_size_e2         bigint,
    last_trade_size_e2      bigint,
    volume_e2               bigint,
    open_interest_e2        bigint,
    dollar_volume_e6        bigint,
    dollar_open_interest_e6 bigint,
    sid                     bigint,
    seq                     bigint,
    occurrence              integer  NOT NULL DEFAULT 0
);

CREATE TABLE market_lifecycle (
    exchange_ts bigint   NOT NULL,
    received_ts bigint   NOT NULL,
    gatherer_id smallint NOT NULL,
    ticker      text     NOT NULL,
    event_type  text     NOT NULL,
    mve         boolean  NOT NULL DEFAULT false,
    payload     jsonb    NOT NULL,
    sid         bigint,
    seq         bigint,
    occurrence  integer  NOT NULL DEFAULT 0,
    payload_md5 uuid     GENERATED ALWAYS AS (md5(payload::text)::uuid) STORED
);
-- END TABLES

SELECT create_hypertable(t.rel, t.col, chunk_time_interval => 86400000000::bigint,
                         create_default_indexes => false, if_not_exists => true)
  FROM (VALUES ('trades'::regclass, 'exchange_ts'::name),
               ('orderbook_deltas', 'exchange_ts'),
               ('orderbook_snapshots', 'snapshot_ts'),
               ('tickers', 'exchange_ts'),
               ('market_lifecycle', 'exchange_ts')) AS t(rel, col);

SELECT set_integer_now_func(t.rel, 'unix_now_us', replace_if_exists => true)
  FROM (VALUES ('trades'::regclass), ('orderbook_deltas'), ('orderbook_snapshots'),
               ('tickers'), ('market_lifecycle')) AS t(rel);

-- Plain btree indexes on the time column (TimescaleDB prunes chunks by time itself; these serve
-- the deduplicator's range reads inside a chunk).
CREATE INDEX trades_exchange_ts_idx              ON trades              (exchange_ts);
CREATE INDEX orderbook_deltas_exchange_ts_idx    ON orderbook_deltas    (exchange_ts);
CREATE INDEX orderbook_snapshots_snapshot_ts_idx ON orderbook_snapshots (snapshot_ts);
CREATE INDEX tickers_exchange_ts_idx             ON tickers             (exchange_ts);
CREATE INDEX market_lifecycle_exchange_ts_idx    ON market_lifecycle    (exchange_ts);

-- The TimescaleDB counterpart of the native maintenance function, with the same signature so that
-- callers need not know the flavour. Chunks are created by TimescaleDB on insert, so there is
-- nothing to create ahead; this function instead
--   1. enables compression (segment by ticker, order by time) on each table that lacks it, and
--      adds a compression policy for chunks older than 1 day;
--   2. makes each table's retention policy match kalshi_retention.retention_days (adds, replaces
--      or removes the policy).
-- ahead_days and now_us are accepted and ignored.
CREATE FUNCTION kalshi_maintain_partitions(ahead_days integer DEFAULT 3, now_us bigint DEFAULT NULL)
    RETURNS TABLE (action text, parent_table text, partition_table text)
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = public, pg_temp
    AS $$
DECLARE
    day_us  constant bigint := 86400000000;
    pol     record;
    current bigint;
    wanted  bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('kalshi_maintain_partitions'));
    FOR pol IN SELECT r.table_name, r.time_column, r.retention_days
                 FROM kalshi_retention r ORDER BY r.table_name LOOP
        IF NOT EXISTS (SELECT 1 FROM timescaledb_information.hypertables h
                        WHERE h.hypertable_name = pol.table_name AND h.compression_enabled) THEN
            EXECUTE format('ALTER TABLE %I SET (timescaledb.compress, '
                           'timescaledb.compress_segmentby = %L, timescaledb.compress_orderby = %L)',
                           pol.table_name, 'ticker', pol.time_column || ' ASC');
            PERFORM add_compression_policy(pol.table_name::regclass, compress_after => day_us,
                                           if_not_exists => true);
            action := 'compression_enabled';
            parent_table := pol.table_name;
            partition_table := NULL;
            RETURN NEXT;
        END IF;

        SELECT (j.config ->> 'drop_after')::bigint INTO current
          FROM timescaledb_information.jobs j
         WHERE j.proc_name = 'policy_retention' AND j.hypertable_name = pol.table_name
         LIMIT 1;
        wanted := CASE WHEN pol.retention_days IS NULL THEN NULL
                       ELSE pol.retention_days::bigint * day_us END;
        IF current IS DISTINCT FROM wanted THEN
            PERFORM remove_retention_policy(pol.table_name::regclass, if_exists => true);
            IF wanted IS NOT NULL THEN
                PERFORM add_retention_policy(pol.table_name::regclass, drop_after => wanted);
            END IF;
            action := CASE WHEN wanted IS NULL THEN 'retention_removed' ELSE 'retention_set' END;
            parent_table := pol.table_name;
            partition_table := NULL;
            RETURN NEXT;
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION kalshi_maintain_partitions(integer, bigint) IS
    'TimescaleDB flavour: enable compression (after 1 day) and make retention policies match '
    'kalshi_retention. Returns one row per change. ahead_days and now_us are ignored.';

REVOKE ALL ON FUNCTION kalshi_maintain_partitions(integer, bigint) FROM PUBLIC;
