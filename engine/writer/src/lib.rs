//! Writer core: bounded rings from the shard cores, binary COPY into PostgreSQL, and the disk spool.
