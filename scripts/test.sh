#!/usr/bin/env bash
# The project's test command (README quick start): installs missing system packages, then runs
# every test of the workspace against real PostgreSQL clusters that the tests start themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo test --workspace --locked "$@"
