#!/usr/bin/env bash
# Regenerates tests/data/kalshi/ws_samples.canonical.jsonl, the expected `kalshi decode` output
# for the recorded frames. Review the diff before committing: it is a regression guard, and every
# change in it must be explained by a deliberate change to the decoder or the canonical format.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run -q -p kalshi-cli -- decode --fixtures tests/data/kalshi/ws_samples.jsonl \
    > tests/data/kalshi/ws_samples.canonical.jsonl
git diff --stat tests/data/kalshi/ws_samples.canonical.jsonl || true
