-- 0001_core: what every Kalshi database has, whatever its role and storage flavour.
--
--   * helper functions for the integer units (unix_now_us, kalshi_ts, kalshi_e6, kalshi_e2);
--   * the three roles (gatherer, deduplicator, kalshi_reader), created only when missing;
--   * the state tables markets and events, and the gap ledger sequence_gaps;
--   * kalshi_retention, the per-table time column and retention setting that partition
--     maintenance (native) or the TimescaleDB policies (timescale) follow.
--
-- Applied by kalshi-storage's migration runner inside one transaction. Requires PostgreSQL 15+.

-- Nobody but the owner creates objects in public (PostgreSQL 15 already defaults to this).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------
-- Unit helpers
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION unix_now_us() RETURNS bigint
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT (extract(epoch FROM now()) * 1000000)::bigint $$;
COMMENT ON FUNCTION unix_now_us() IS
    'Now (transaction start) in microseconds since the Unix epoch: the unit of every *_ts column. '
    'Also the TimescaleDB integer-now function.';

CREATE FUNCTION kalshi_ts(us bigint) RETURNS timestamptz
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT timestamptz '1970-01-01 00:00:00+00' + us * interval '1 microsecond' $$;
COMMENT ON FUNCTION kalshi_ts(bigint) IS
    'Microseconds since the Unix epoch as timestamptz, exact to the microsecond for any real date.';

CREATE FUNCTION kalshi_e6(v bigint) RETURNS numeric
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT v::numeric * 0.000001 $$;
COMMENT ON FUNCTION kalshi_e6(bigint) IS
    'Micro-dollars (*_e6) as an exact dollar NUMERIC with 6 decimals.';

CREATE FUNCTION kalshi_e2(v bigint) RETURNS numeric
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT v::numeric * 0.01 $$;
COMMENT ON FUNCTION kalshi_e2(bigint) IS
    'Hundredths of a contract (*_e2) as an exact contract-count NUMERIC with 2 decimals.';

-- ---------------------------------------------------------------------------------------------
-- Roles (cluster-wide; NOLOGIN until an operator gives them a login and password)
-- ---------------------------------------------------------------------------------------------

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['gatherer', 'deduplicator', 'kalshi_reader'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                -- Another database of this cluster created it at the same moment.
                NULL;
            END;
        END IF;
    END LOOP;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- State tables (current state, upserted; small, so they keep their primary keys)
-- ---------------------------------------------------------------------------------------------

CREATE TABLE markets (
    ticker                text     PRIMARY KEY,
    event_ticker          text     NOT NULL,
    series_ticker         text,
    status                text     NOT NULL,
    title                 text,
    yes_sub_title         text,
    no_sub_title          text,
    market_type           text,
    open_ts               bigint,
    close_ts              bigint,
    price_level_structure text,
    price_ranges          jsonb,
    metadata              jsonb,
    updated_ts            bigint   NOT NULL,
    gatherer_id           smallint NOT NULL
);
CREATE INDEX markets_event_ticker_idx ON markets (event_ticker);

CREATE TABLE events (
    event_ticker           text     PRIMARY KEY,
    series_ticker          text,
    title                  text,
    sub_title              text,
    collateral_return_type text,
    mutually_exclusive     boolean,
    strike_date            bigint,
    strike_period          text,
    updated_ts             bigint   NOT NULL,
    gatherer_id            smallint NOT NULL
);

-- ---------------------------------------------------------------------------------------------
-- The gap ledger: one row per detected sequence gap (rare, so not partitioned)
-- ---------------------------------------------------------------------------------------------

CREATE TABLE sequence_gaps (
    id                bigint   GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    detected_ts       bigint   NOT NULL,
    gatherer_id       smallint NOT NULL,
    channel           text     NOT NULL,
    sid               bigint,
    expected_seq      bigint,
    received_seq      bigint,
    tickers           text[]   NOT NULL DEFAULT '{}',
    repair            text     NOT NULL
        CHECK (repair IN ('get_snapshot', 'resubscribe', 'reconnect', 'rest_backfill', 'none')),
    repaired_ts       bigint,
    backfilled_trades integer,
    note              text
);
CREATE INDEX sequence_gaps_detected_ts_idx ON sequence_gaps (detected_ts);

-- ---------------------------------------------------------------------------------------------
-- Retention settings of the time-series tables (read by kalshi_maintain_partitions)
-- ---------------------------------------------------------------------------------------------

CREATE TABLE kalshi_retention (
    table_name     text    PRIMARY KEY,
    time_column    text    NOT NULL,
    retention_days integer CHECK (retention_days IS NULL OR retention_days > 0)
);
INSERT INTO kalshi_retention (table_name, time_column, retention_days) VALUES
    ('trades',              'exchange_ts', NULL),
    ('orderbook_deltas',    'exchange_ts', NULL),
    ('orderbook_snapshots', 'snapshot_ts', NULL),
    ('tickers',             'exchange_ts', NULL),
    ('market_lifecycle',    'exchange_ts', NULL);
