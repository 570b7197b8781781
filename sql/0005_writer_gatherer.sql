-- 0005_writer_gatherer: the writer's commit markers on a gatherer's local database
-- (MigrateOptions.role = Gatherer). Chosen at runtime instead of 0005_writer_production.sql; the
-- table is the same in both, only the grants differ.
--
-- Every batch the writer (kalshi-writer) commits carries a batch id that is unique per writer
-- and increases monotonically. The batch's rows and its writer_batches row are written in one
-- transaction, so the marker exists exactly when the rows do. After a crash or an outage the
-- writer replays the batches of its disk spool and skips those whose marker is present; the
-- primary key is the backstop: a second commit of the same batch fails on the marker and rolls
-- its rows back. Markers of batches that have left the spool are deleted by the writer.

CREATE TABLE writer_batches (
    writer_id    text        NOT NULL,
    batch_id     bigint      NOT NULL,
    row_count    bigint      NOT NULL CHECK (row_count >= 0),
    committed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (writer_id, batch_id)
);
COMMENT ON TABLE writer_batches IS
    'Writer commit markers: one row per committed batch, written in the batch''s own transaction, '
    'so a spooled batch is replayed only when its marker is missing (exactly-once across outages '
    'and writer crashes).';
COMMENT ON COLUMN writer_batches.writer_id IS 'Writer instance (configured id, e.g. the gatherer name).';
COMMENT ON COLUMN writer_batches.batch_id IS 'Batch id, increasing per writer (at least the creation time in microseconds since the Unix epoch).';
COMMENT ON COLUMN writer_batches.row_count IS 'Rows the batch wrote, all tables together.';
COMMENT ON COLUMN writer_batches.committed_at IS 'Commit time (transaction start).';

-- The writer runs as gatherer: it inserts markers, reads them on recovery and prunes old ones.
GRANT SELECT, INSERT, DELETE ON writer_batches TO gatherer;
GRANT SELECT ON writer_batches TO deduplicator, kalshi_reader;
