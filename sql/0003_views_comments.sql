-- 0003_views_comments: documentation of every table and column (COMMENT ON), and views that show
-- the integer units as exact NUMERIC dollars / contracts and the microsecond times as timestamptz.
-- Same for both storage flavours and both roles.

-- ---------------------------------------------------------------------------------------------
-- trades
-- ---------------------------------------------------------------------------------------------
COMMENT ON TABLE trades IS
    'Every trade seen, one row per capture: several per trade on a gatherer only if it was both '
    'streamed and backfilled; exactly one per trade_id in production. Partitioned by exchange_ts.';
COMMENT ON COLUMN trades.exchange_ts IS 'Exchange time of the trade (ts_ms / created_time), microseconds since the Unix epoch.';
COMMENT ON COLUMN trades.received_ts IS 'Gatherer clock when the frame or REST page arrived, microseconds since the Unix epoch.';
COMMENT ON COLUMN trades.gatherer_id IS 'Id of the gatherer that captured the row.';
COMMENT ON COLUMN trades.ticker IS 'Market ticker.';
COMMENT ON COLUMN trades.trade_id IS 'Exchange trade id; the deduplication key.';
COMMENT ON COLUMN trades.yes_price_e6 IS 'YES price in micro-dollars (1e-6 USD).';
COMMENT ON COLUMN trades.no_price_e6 IS 'NO price in micro-dollars (1e-6 USD).';
COMMENT ON COLUMN trades.count_e2 IS 'Contracts traded, in hundredths of a contract.';
COMMENT ON COLUMN trades.taker_side IS 'Side the taker bought: yes or no (NULL when not reported).';
COMMENT ON COLUMN trades.taker_outcome_side IS 'Taker outcome side as reported by the exchange, verbatim (NULL when not reported).';
COMMENT ON COLUMN trades.taker_book_side IS 'Book side the taker hit: bid or ask (NULL when not reported).';
COMMENT ON COLUMN trades.is_block_trade IS 'Whether the exchange flagged a block trade (NULL when not reported).';
COMMENT ON COLUMN trades.source IS 'ws = streamed on the trade channel; rest = backfilled from GET /markets/trades.';
COMMENT ON COLUMN trades.sid IS 'WebSocket subscription id (NULL for REST).';
COMMENT ON COLUMN trades.seq IS 'WebSocket sequence number within sid (NULL when absent).';

-- ---------------------------------------------------------------------------------------------
-- orderbook_deltas
-- ---------------------------------------------------------------------------------------------
COMMENT ON TABLE orderbook_deltas IS
    'Order book level changes from the orderbook_delta channel. NO-side prices are stored as the '
    'NO-leg price (Kalshi REST convention: a NO bid at 0.40 is price_e6 = 400000 with side = no), '
    'never converted to the YES equivalent. Partitioned by exchange_ts; kept 7 days on gatherers '
    'by default, forever in production.';
COMMENT ON COLUMN orderbook_deltas.exchange_ts IS 'Exchange time of the delta (ts / ts_ms), microseconds since the Unix epoch.';
COMMENT ON COLUMN orderbook_deltas.received_ts IS 'Gatherer clock when the frame arrived, microseconds since the Unix epoch.';
COMMENT ON COLUMN orderbook_deltas.gatherer_id IS 'Id of the gatherer that captured the row.';
COMMENT ON COLUMN orderbook_deltas.ticker IS 'Market ticker.';
COMMENT ON COLUMN orderbook_deltas.side IS 'Book side: yes or no.';
COMMENT ON COLUMN orderbook_deltas.price_e6 IS 'Level price in micro-dollars; for side = no this is the NO-leg price.';
COMMENT ON COLUMN orderbook_deltas.delta_e2 IS 'Signed change of resting contracts at the level, in hundredths of a contract.';
COMMENT ON COLUMN orderbook_deltas.sid IS 'WebSocket subscription id.';
COMMENT ON COLUMN orderbook_deltas.seq IS 'Sequence number within sid (shared by all markets of the subscription).';
COMMENT ON COLUMN orderbook_deltas.occurrence IS
    'Index among identical (ticker, exchange_ts, side, price_e6, delta_e2) rows of one stream, '
    'set by the deduplicator in production so that two real identical deltas are both kept; 0 on gatherers.';

-- ---------------------------------------------------------------------------------------------
-- orderbook_snapshots
-- ---------------------------------------------------------------------------------------------
COMMENT ON TABLE orderbook_snapshots IS
    'Full order books: WS orderbook_snapshot messages and REST GET /markets/{ticker}/orderbook polls. '
    'Levels are parallel arrays sorted by price ascending; NO levels are in NO-leg prices. '
    'REST snapshots are distinct observations and are all kept, each with its gatherer. '
    'Partitioned by snapshot_ts.';
COMMENT ON COLUMN orderbook_snapshots.snapshot_ts IS
    'When the snapshot was taken, microseconds since the Unix epoch; a WS snapshot has no exchange time, so its receive time.';
COMMENT ON COLUMN orderbook_snapshots.received_ts IS 'Gatherer clock when the snapshot arrived, microseconds since the Unix epoch.';
COMMENT ON COLUMN orderbook_snapshots.gatherer_id IS 'Id of the gatherer that captured the row.';
COMMENT ON COLUMN orderbook_snapshots.ticker IS 'Market ticker.';
COMMENT ON COLUMN orderbook_snapshots.source IS 'ws = orderbook_snapshot message; rest = REST orderbook poll.';
COMMENT ON COLUMN orderbook_snapshots.sid IS 'WebSocket subscription id (NULL for REST).';
COMMENT ON COLUMN orderbook_snapshots.seq IS 'WebSocket sequence number (NULL for REST).';
COMMENT ON COLUMN orderbook_snapshots.yes_price_e6 IS 'YES level prices in micro-dollars, ascending.';
COMMENT ON COLUMN orderbook_snapshots.yes_count_e2 IS 'Resting contracts at each YES level, hundredths, parallel to yes_price_e6.';
COMMENT ON COLUMN orderbook_snapshots.no_price_e6 IS 'NO level prices (NO-leg price) in micro-dollars, ascending.';
COMMENT ON COLUMN orderbook_snapshots.no_count_e2 IS 'Resting contracts at each NO level, hundredths, parallel to no_price_e6.';

-- ---------------------------------------------------------------------------------------------
-- tickers
-- ---------------------------------------------------------------------------------------------
COMMENT ON TABLE tickers IS
    'Ticker channel updates (price, top of book, volume, open interest). Fields the message did not '
    'carry are NULL. Partitioned by exchange_ts.';
COMMENT ON COLUMN tickers.exchange_ts IS 'Exchange time of the update (ts / ts_ms), microseconds since the Unix epoch.';
COMMENT ON COLUMN tickers.received_ts IS 'Gatherer clock when the frame arrived, microseconds since the Unix epoch.';
COMMENT ON COLUMN tickers.gatherer_id IS 'Id of the gatherer that captured the row.';
COMMENT ON COLUMN tickers.ticker IS 'Market ticker.';
COMMENT ON COLUMN tickers.price_e6 IS 'Last traded price, micro-dollars.';
COMMENT ON COLUMN tickers.yes_bid_e6 IS 'Best YES bid, micro-dollars.';
COMMENT ON COLUMN tickers.yes_ask_e6 IS 'Best YES ask, micro-dollars.';
COMMENT ON COLUMN tickers.yes_bid_size_e2 IS 'Contracts at the best YES bid, hundredths.';
COMMENT ON COLUMN tickers.yes_ask_size_e2 IS 'Contracts at the best YES ask, hundredths.';
COMMENT ON COLUMN tickers.last_trade_size_e2 IS 'Size of the last trade, hundredths of a contract.';
COMMENT ON COLUMN tickers.volume_e2 IS 'Traded volume, hundredths of a contract.';
COMMENT ON COLUMN tickers.open_interest_e2 IS 'Open interest, hundredths of a contract.';
COMMENT ON COLUMN tickers.dollar_volume_e6 IS 'Traded volume in micro-dollars.';
COMMENT ON COLUMN tickers.dollar_open_interest_e6 IS 'Open interest in micro-dollars.';
COMMENT ON COLUMN tickers.sid IS 'WebSocket subscription id (NULL when absent).';
COMMENT ON COLUMN tickers.seq IS 'WebSocket sequence number (NULL when absent).';
COMMENT ON COLUMN tickers.occurrence IS 'Index among identical-content rows of one stream, set by the deduplicator in production; 0 on gatherers.';

-- ---------------------------------------------------------------------------------------------
-- market_lifecycle
-- ---------------------------------------------------------------------------------------------
COMMENT ON TABLE market_lifecycle IS
    'Market (and event) lifecycle messages, with the message kept whole in payload. '
    'Partitioned by exchange_ts.';
COMMENT ON COLUMN market_lifecycle.exchange_ts IS
    'The event''s own time field when it has one, else received_ts; microseconds since the Unix epoch.';
COMMENT ON COLUMN market_lifecycle.received_ts IS 'Gatherer clock when the frame arrived, microseconds since the Unix epoch.';
COMMENT ON COLUMN market_lifecycle.gatherer_id IS 'Id of the gatherer that captured the row.';
COMMENT ON COLUMN market_lifecycle.ticker IS 'Market ticker (the event ticker for event-level lifecycle messages).';
COMMENT ON COLUMN market_lifecycle.event_type IS 'Lifecycle event type as sent (created, activated, deactivated, close_date_updated, determined, settled, ...).';
COMMENT ON COLUMN market_lifecycle.mve IS 'Whether the market is a multivariate-event (combo) market.';
COMMENT ON COLUMN market_lifecycle.payload IS 'The message body, verbatim as JSON.';
COMMENT ON COLUMN market_lifecycle.sid IS 'WebSocket subscription id (NULL when absent).';
COMMENT ON COLUMN market_lifecycle.seq IS 'WebSocket sequence number (NULL when absent).';
COMMENT ON COLUMN market_lifecycle.occurrence IS 'Index among identical-content rows of one stream, set by the deduplicator in production; 0 on gatherers.';
COMMENT ON COLUMN market_lifecycle.payload_md5 IS 'md5 of payload (generated), so that content can be part of a unique key without indexing large JSON.';

-- ---------------------------------------------------------------------------------------------
-- markets, events, sequence_gaps, kalshi_retention
-- ---------------------------------------------------------------------------------------------
COMMENT ON TABLE markets IS 'Current state of every market seen (REST discovery and lifecycle), one row per ticker, upserted.';
COMMENT ON COLUMN markets.ticker IS 'Market ticker.';
COMMENT ON COLUMN markets.event_ticker IS 'Ticker of the event the market belongs to.';
COMMENT ON COLUMN markets.series_ticker IS 'Ticker of the series (NULL when unknown).';
COMMENT ON COLUMN markets.status IS 'Market status as reported (initialized, active, closed, settled, ...).';
COMMENT ON COLUMN markets.title IS 'Market title.';
COMMENT ON COLUMN markets.yes_sub_title IS 'Label of the YES outcome.';
COMMENT ON COLUMN markets.no_sub_title IS 'Label of the NO outcome.';
COMMENT ON COLUMN markets.market_type IS 'binary or scalar.';
COMMENT ON COLUMN markets.open_ts IS 'Open time, microseconds since the Unix epoch.';
COMMENT ON COLUMN markets.close_ts IS 'Close time, microseconds since the Unix epoch.';
COMMENT ON COLUMN markets.price_level_structure IS 'Price level structure name as reported.';
COMMENT ON COLUMN markets.price_ranges IS 'Tick-size ranges as reported, JSON.';
COMMENT ON COLUMN markets.metadata IS 'Every other field of the market object, JSON.';
COMMENT ON COLUMN markets.updated_ts IS 'When this row was last written, microseconds since the Unix epoch.';
COMMENT ON COLUMN markets.gatherer_id IS 'Id of the gatherer that last wrote the row.';

COMMENT ON TABLE events IS 'Current state of every event seen, one row per event ticker, upserted.';
COMMENT ON COLUMN events.event_ticker IS 'Event ticker.';
COMMENT ON COLUMN events.series_ticker IS 'Ticker of the series (NULL when unknown).';
COMMENT ON COLUMN events.title IS 'Event title.';
COMMENT ON COLUMN events.sub_title IS 'Event subtitle.';
COMMENT ON COLUMN events.collateral_return_type IS 'Collateral return type as reported.';
COMMENT ON COLUMN events.mutually_exclusive IS 'Whether the event''s markets are mutually exclusive (NULL when unknown).';
COMMENT ON COLUMN events.strike_date IS 'Strike date, microseconds since the Unix epoch (NULL when none).';
COMMENT ON COLUMN events.strike_period IS 'Strike period as reported (NULL when none).';
COMMENT ON COLUMN events.updated_ts IS 'When this row was last written, microseconds since the Unix epoch.';
COMMENT ON COLUMN events.gatherer_id IS 'Id of the gatherer that last wrote the row.';

COMMENT ON TABLE sequence_gaps IS 'Gap ledger: one row per detected sequence gap, with how and when it was repaired.';
COMMENT ON COLUMN sequence_gaps.id IS 'Row id (assigned by the database that holds the row).';
COMMENT ON COLUMN sequence_gaps.detected_ts IS 'When the gap was detected, microseconds since the Unix epoch.';
COMMENT ON COLUMN sequence_gaps.gatherer_id IS 'Id of the gatherer that detected the gap.';
COMMENT ON COLUMN sequence_gaps.channel IS 'WebSocket channel of the subscription (orderbook_delta, trade, ...).';
COMMENT ON COLUMN sequence_gaps.sid IS 'Subscription id whose sequence jumped (NULL for a whole-connection gap).';
COMMENT ON COLUMN sequence_gaps.expected_seq IS 'The seq that should have come next.';
COMMENT ON COLUMN sequence_gaps.received_seq IS 'The seq that came instead (NULL when the connection dropped).';
COMMENT ON COLUMN sequence_gaps.tickers IS 'Markets affected (all markets of the subscription).';
COMMENT ON COLUMN sequence_gaps.repair IS 'How it was repaired: get_snapshot, resubscribe, reconnect, rest_backfill or none.';
COMMENT ON COLUMN sequence_gaps.repaired_ts IS 'When the repair completed, microseconds since the Unix epoch (NULL while pending).';
COMMENT ON COLUMN sequence_gaps.backfilled_trades IS 'Trades recovered by REST backfill for the gap window (NULL when not attempted).';
COMMENT ON COLUMN sequence_gaps.note IS 'Free-form detail.';

COMMENT ON TABLE kalshi_retention IS
    'Per time-series table: its time column and how many days to keep (NULL = forever). '
    'Read by kalshi_maintain_partitions; the migration runner sets orderbook_deltas from its options.';
COMMENT ON COLUMN kalshi_retention.table_name IS 'Time-series table.';
COMMENT ON COLUMN kalshi_retention.time_column IS 'Its BIGINT microsecond partitioning column.';
COMMENT ON COLUMN kalshi_retention.retention_days IS 'Keep today plus this many previous UTC days; NULL keeps everything.';

-- ---------------------------------------------------------------------------------------------
-- Views for people writing SQL (security_invoker: readers need SELECT on the base tables too)
-- ---------------------------------------------------------------------------------------------

CREATE VIEW trades_v WITH (security_invoker = true) AS
SELECT kalshi_ts(exchange_ts)   AS exchange_time,
       kalshi_ts(received_ts)   AS received_time,
       gatherer_id,
       ticker,
       trade_id,
       kalshi_e6(yes_price_e6)  AS yes_price,
       kalshi_e6(no_price_e6)   AS no_price,
       kalshi_e2(count_e2)      AS count,
       taker_side,
       taker_outcome_side,
       taker_book_side,
       is_block_trade,
       source,
       sid,
       seq,
       exchange_ts,
       received_ts
  FROM trades;
COMMENT ON VIEW trades_v IS 'trades with dollars and contracts as exact NUMERIC and times as timestamptz (raw *_ts kept for fast filtering).';

CREATE VIEW orderbook_deltas_v WITH (security_invoker = true) AS
SELECT kalshi_ts(exchange_ts) AS exchange_time,
       kalshi_ts(received_ts) AS received_time,
       gatherer_id,
       ticker,
       side,
       kalshi_e6(price_e6)    AS price,
       kalshi_e2(delta_e2)    AS delta,
       sid,
       seq,
       occurrence,
       exchange_ts,
       received_ts
  FROM orderbook_deltas;
COMMENT ON VIEW orderbook_deltas_v IS 'orderbook_deltas with price in dollars (NO-leg for side = no), delta in contracts, times as timestamptz.';

CREATE VIEW orderbook_snapshots_v WITH (security_invoker = true) AS
SELECT kalshi_ts(snapshot_ts) AS snapshot_time,
       kalshi_ts(received_ts) AS received_time,
       gatherer_id,
       ticker,
       source,
       sid,
       seq,
       ARRAY(SELECT kalshi_e6(p) FROM unnest(yes_price_e6) WITH ORDINALITY AS u(p, i) ORDER BY i) AS yes_price,
       ARRAY(SELECT kalshi_e2(c) FROM unnest(yes_count_e2) WITH ORDINALITY AS u(c, i) ORDER BY i) AS yes_count,
       ARRAY(SELECT kalshi_e6(p) FROM unnest(no_price_e6)  WITH ORDINALITY AS u(p, i) ORDER BY i) AS no_price,
       ARRAY(SELECT kalshi_e2(c) FROM unnest(no_count_e2)  WITH ORDINALITY AS u(c, i) ORDER BY i) AS no_count,
       snapshot_ts,
       received_ts
  FROM orderbook_snapshots;
COMMENT ON VIEW orderbook_snapshots_v IS 'orderbook_snapshots with level prices in dollars and sizes in contracts (NUMERIC arrays), times as timestamptz.';

CREATE VIEW tickers_v WITH (security_invoker = true) AS
SELECT kalshi_ts(exchange_ts)             AS exchange_time,
       kalshi_ts(received_ts)             AS received_time,
       gatherer_id,
       ticker,
       kalshi_e6(price_e6)                AS price,
       kalshi_e6(yes_bid_e6)              AS yes_bid,
       kalshi_e6(yes_ask_e6)              AS yes_ask,
       kalshi_e2(yes_bid_size_e2)         AS yes_bid_size,
       kalshi_e2(yes_ask_size_e2)         AS yes_ask_size,
       kalshi_e2(last_trade_size_e2)      AS last_trade_size,
       kalshi_e2(volume_e2)               AS volume,
       kalshi_e2(open_interest_e2)        AS open_interest,
       kalshi_e6(dollar_volume_e6)        AS dollar_volume,
       kalshi_e6(dollar_open_interest_e6) AS dollar_open_interest,
       sid,
       seq,
       occurrence,
       exchange_ts,
       received_ts
  FROM tickers;
COMMENT ON VIEW tickers_v IS 'tickers with dollars and contracts as exact NUMERIC and times as timestamptz.';

CREATE VIEW market_lifecycle_v WITH (security_invoker = true) AS
SELECT kalshi_ts(exchange_ts) AS exchange_time,
       kalshi_ts(received_ts) AS received_time,
       gatherer_id,
       ticker,
       event_type,
       mve,
       payload,
       sid,
       seq,
       exchange_ts,
       received_ts
  FROM market_lifecycle;
COMMENT ON VIEW market_lifecycle_v IS 'market_lifecycle with times as timestamptz.';

CREATE VIEW sequence_gaps_v WITH (security_invoker = true) AS
SELECT id,
       kalshi_ts(detected_ts) AS detected_time,
       gatherer_id,
       channel,
       sid,
       expected_seq,
       received_seq,
       received_seq - expected_seq AS missed,
       tickers,
       repair,
       kalshi_ts(repaired_ts) AS repaired_time,
       backfilled_trades,
       note
  FROM sequence_gaps;
COMMENT ON VIEW sequence_gaps_v IS 'sequence_gaps with times as timestamptz and the number of missed sequence numbers.';
