-- 0002_timeseries_native: the time-series tables on plain PostgreSQL, RANGE-partitioned by UTC day
-- on their BIGINT microsecond time column, each with a DEFAULT partition as a safety net.
--
-- Chosen at runtime instead of 0002_timeseries_timescale.sql when TimescaleDB is not available
-- (or is turned off). The column lists here and there must stay identical; a unit test in
-- kalshi-storage compares them.
--
-- No unique indexes here: on gatherers they cut COPY throughput about 5x. Production adds the
-- deduplication keys in 0004_production.sql. Every table gets a BRIN index on its time column,
-- which costs next to nothing on insert and serves the deduplicator's range reads.

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
) PARTITION BY RANGE (exchange_ts);

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
) PARTITION BY RANGE (exchange_ts);

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
) PARTITION BY RANGE (snapshot_ts);

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
) PARTITION BY RANGE (exchange_ts);

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
) PARTITION BY RANGE (exchange_ts);
-- END TABLES

CREATE TABLE trades_default              PARTITION OF trades              DEFAULT;
CREATE TABLE orderbook_deltas_default    PARTITION OF orderbook_deltas    DEFAULT;
CREATE TABLE orderbook_snapshots_default PARTITION OF orderbook_snapshots DEFAULT;
CREATE TABLE tickers_default             PARTITION OF tickers             DEFAULT;
CREATE TABLE market_lifecycle_default    PARTITION OF market_lifecycle    DEFAULT;

CREATE INDEX trades_exchange_ts_brin              ON trades              USING brin (exchange_ts);
CREATE INDEX orderbook_deltas_exchange_ts_brin    ON orderbook_deltas    USING brin (exchange_ts);
CREATE INDEX orderbook_snapshots_snapshot_ts_brin ON orderbook_snapshots USING brin (snapshot_ts);
CREATE INDEX tickers_exchange_ts_brin             ON tickers             USING brin (exchange_ts);
CREATE INDEX market_lifecycle_exchange_ts_brin    ON market_lifecycle    USING brin (exchange_ts);

-- ---------------------------------------------------------------------------------------------
-- Partition maintenance
-- ---------------------------------------------------------------------------------------------

-- Create one daily partition [lo, hi) of parent, named part. If the DEFAULT partition already
-- holds rows of that day (a replay, a skewed clock), a plain CREATE ... PARTITION OF would fail,
-- so the partition is built as a standalone table, the rows are moved into it from the default
-- partition, and it is attached. All of it happens in the caller's transaction.
CREATE FUNCTION kalshi_create_day_partition(parent text, time_column text, lo bigint, hi bigint,
                                            part text)
    RETURNS boolean
    LANGUAGE plpgsql
    SET search_path = public, pg_temp
    AS $$
DECLARE
    default_part text := parent || '_default';
    has_rows     boolean := false;
    cols         text;
BEGIN
    IF to_regclass(default_part) IS NOT NULL THEN
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM ONLY %I WHERE %I >= $1 AND %I < $2)',
                       default_part, time_column, time_column)
            INTO has_rows USING lo, hi;
    END IF;
    IF NOT has_rows THEN
        EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%s) TO (%s)',
                       part, parent, lo, hi);
        RETURN false;
    END IF;

    SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO cols
      FROM pg_attribute
     WHERE attrelid = parent::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = '';
    EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS '
                   'INCLUDING GENERATED)', part, parent);
    EXECUTE format('WITH moved AS (DELETE FROM ONLY %I WHERE %I >= $1 AND %I < $2 RETURNING %s) '
                   'INSERT INTO %I (%s) SELECT %s FROM moved',
                   default_part, time_column, time_column, cols, part, cols, cols)
        USING lo, hi;
    EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%s) TO (%s)',
                   parent, part, lo, hi);
    RETURN true;
END
$$;
COMMENT ON FUNCTION kalshi_create_day_partition(text, text, bigint, bigint, text) IS
    'Internal to kalshi_maintain_partitions: create one daily partition, moving any rows of that '
    'day out of the DEFAULT partition first. Returns true when rows were moved.';

-- The maintenance entry point: run by the migration runner on every start and meant to be called
-- daily (by the services or cron). For each table in kalshi_retention it
--   1. creates the daily partitions from yesterday to today + ahead_days (UTC days);
--   2. gives rows sitting in the DEFAULT partition their own daily partitions, for days from
--      2000-01-01 (or the retention cut-off) up to today + ahead_days: replays of old recordings
--      end up partitioned like everything else, while absurd times (0, far future) stay in the
--      default partition;
--   3. when retention_days is set, drops daily partitions that end at or before
--      (start of today - retention_days days) and deletes such rows from the DEFAULT partition.
-- now_us defaults to unix_now_us(); tests pass other values. SECURITY DEFINER so that the
-- gatherer and deduplicator roles, which have no DDL rights, can run it.
CREATE FUNCTION kalshi_maintain_partitions(ahead_days integer DEFAULT 3, now_us bigint DEFAULT NULL)
    RETURNS TABLE (action text, parent_table text, partition_table text)
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = public, pg_temp
    AS $$
DECLARE
    day_us    constant bigint := 86400000000;
    floor_us  constant bigint := 946684800000000;  -- 2000-01-01T00:00:00Z
    pol       record;
    today     bigint;
    lo        bigint;
    cutoff    bigint;
    adopt_lo  bigint;
    part      text;
    moved     boolean;
    day_start bigint;
    child     record;
BEGIN
    IF ahead_days IS NULL OR ahead_days < 0 THEN
        RAISE EXCEPTION 'kalshi_maintain_partitions: ahead_days must be >= 0, got %', ahead_days;
    END IF;
    -- One maintainer at a time per database.
    PERFORM pg_advisory_xact_lock(hashtext('kalshi_maintain_partitions'));
    now_us := coalesce(now_us, unix_now_us());
    today := (now_us / day_us) * day_us;

    FOR pol IN SELECT r.table_name, r.time_column, r.retention_days
                 FROM kalshi_retention r ORDER BY r.table_name LOOP
        cutoff := CASE WHEN pol.retention_days IS NULL THEN NULL
                       ELSE today - pol.retention_days::bigint * day_us END;

        -- 1. Yesterday .. today + ahead.
        FOR i IN -1 .. ahead_days LOOP
            lo := today + i::bigint * day_us;
            CONTINUE WHEN cutoff IS NOT NULL AND lo + day_us <= cutoff;
            part := pol.table_name || '_p' || to_char(timestamp 'epoch' + lo * interval '1 microsecond', 'YYYYMMDD');
            IF to_regclass(part) IS NULL THEN
                moved := kalshi_create_day_partition(pol.table_name, pol.time_column, lo, lo + day_us, part);
                action := CASE WHEN moved THEN 'created_from_default' ELSE 'created' END;
                parent_table := pol.table_name;
                partition_table := part;
                RETURN NEXT;
            END IF;
        END LOOP;

        -- 2. Days that only exist in the default partition.
        IF to_regclass(pol.table_name || '_default') IS NOT NULL THEN
            adopt_lo := greatest(floor_us, coalesce(cutoff, floor_us));
            FOR day_start IN EXECUTE format(
                    'SELECT DISTINCT (%I / $1) * $1 FROM ONLY %I WHERE %I >= $2 AND %I < $3 ORDER BY 1',
                    pol.time_column, pol.table_name || '_default', pol.time_column, pol.time_column)
                USING day_us, adopt_lo, today + (ahead_days + 1)::bigint * day_us LOOP
                part := pol.table_name || '_p' || to_char(timestamp 'epoch' + day_start * interval '1 microsecond', 'YYYYMMDD');
                IF to_regclass(part) IS NULL THEN
                    PERFORM kalshi_create_day_partition(pol.table_name, pol.time_column,
                                                        day_start, day_start + day_us, part);
                    action := 'created_from_default';
                    parent_table := pol.table_name;
                    partition_table := part;
                    RETURN NEXT;
                END IF;
            END LOOP;
        END IF;

        -- 3. Retention.
        IF cutoff IS NOT NULL THEN
            FOR child IN
                SELECT c.relname
                  FROM pg_inherits i
                  JOIN pg_class c ON c.oid = i.inhrelid
                 WHERE i.inhparent = pol.table_name::regclass
                   AND c.relname ~ ('^' || pol.table_name || '_p[0-9]{8}$')
                 ORDER BY c.relname
            LOOP
                lo := ((to_date(right(child.relname, 8), 'YYYYMMDD') - date '1970-01-01')::bigint) * day_us;
                IF lo + day_us <= cutoff THEN
                    EXECUTE format('DROP TABLE %I', child.relname);
                    action := 'dropped';
                    parent_table := pol.table_name;
                    partition_table := child.relname;
                    RETURN NEXT;
                END IF;
            END LOOP;
            IF to_regclass(pol.table_name || '_default') IS NOT NULL THEN
                EXECUTE format('DELETE FROM ONLY %I WHERE %I < $1',
                               pol.table_name || '_default', pol.time_column)
                    USING cutoff;
            END IF;
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION kalshi_maintain_partitions(integer, bigint) IS
    'Create daily partitions from yesterday to today+ahead_days (UTC), move rows out of the DEFAULT '
    'partitions into daily partitions, and drop partitions older than kalshi_retention. Returns '
    'one row per partition created or dropped. Safe to call any time; callers serialize.';

REVOKE ALL ON FUNCTION kalshi_create_day_partition(text, text, bigint, bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION kalshi_maintain_partitions(integer, bigint) FROM PUBLIC;
