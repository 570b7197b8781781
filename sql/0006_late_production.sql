-- 0006_late_production: the deduplicator's late-row scan cursors, in production
-- (MigrateOptions.role = Production). Chosen at runtime instead of 0006_late_gatherer.sql.
--
-- Per gatherer, the arrival time (received_ts; for the gap ledger coalesce(repaired_ts,
-- detected_ts)) up to which that gatherer's rows have been checked for late arrivals into
-- ranges that were already merged. The deduplicator advances it in the same transaction as the
-- re-merge of the ranges it found, so a crash in between only repeats an idempotent re-merge.

CREATE TABLE dedup_late_cursors (
    gatherer    text        NOT NULL PRIMARY KEY,
    received_ts bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE dedup_late_cursors IS
    'Deduplicator state: per gatherer, the arrival time up to which its rows were checked for late '
    'arrivals into already merged ranges (which are then merged again).';
COMMENT ON COLUMN dedup_late_cursors.gatherer IS 'Gatherer name, as in the deduplicator''s configuration.';
COMMENT ON COLUMN dedup_late_cursors.received_ts IS 'Arrival-time cursor, microseconds since the Unix epoch (received_ts).';
COMMENT ON COLUMN dedup_late_cursors.updated_at IS 'When the cursor last moved.';

GRANT SELECT, INSERT, UPDATE, DELETE ON dedup_late_cursors TO deduplicator;
GRANT SELECT ON dedup_late_cursors TO kalshi_reader;
