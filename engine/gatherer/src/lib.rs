//! The gatherer's runtime: pinned glommio shard executors running WebSocket connections, the control plane (discovery, snapshot poller, trade backfill), endpoints, and shutdown.
