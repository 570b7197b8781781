-- 0004_gatherer: access rights on a gatherer's local database (MigrateOptions.role = Gatherer).
-- Chosen at runtime instead of 0004_production.sql. A gatherer database has no deduplicator state
-- tables and no unique indexes on its time-series tables.
--
--   gatherer      INSERT + SELECT on the time-series tables (append only: no UPDATE, DELETE,
--                 TRUNCATE); INSERT + SELECT + UPDATE on markets, events (upserts) and
--                 sequence_gaps (repaired_ts is filled in later); may run kalshi_maintain_partitions.
--                 Owns nothing, so it cannot ALTER or DROP anything, and cannot CREATE in public.
--   deduplicator  SELECT only: it reads ranges from gatherers and writes to production.
--   kalshi_reader SELECT only.

GRANT SELECT, INSERT ON trades, orderbook_deltas, orderbook_snapshots, tickers, market_lifecycle
    TO gatherer;
GRANT SELECT, INSERT, UPDATE ON markets, events, sequence_gaps TO gatherer;
GRANT SELECT ON kalshi_retention TO gatherer;
GRANT SELECT ON trades_v, orderbook_deltas_v, orderbook_snapshots_v, tickers_v, market_lifecycle_v,
                sequence_gaps_v
    TO gatherer;

GRANT SELECT ON trades, orderbook_deltas, orderbook_snapshots, tickers, market_lifecycle,
                markets, events, sequence_gaps, kalshi_retention,
                trades_v, orderbook_deltas_v, orderbook_snapshots_v, tickers_v, market_lifecycle_v,
                sequence_gaps_v
    TO deduplicator, kalshi_reader;

GRANT EXECUTE ON FUNCTION kalshi_maintain_partitions(integer, bigint) TO gatherer, deduplicator;

-- schema_migrations is created by the migration runner before version 1; reading it lets a
-- service that runs as one of these roles check that the schema is up to date.
GRANT SELECT ON schema_migrations TO gatherer, deduplicator, kalshi_reader;
