#!/bin/sh
# The end-to-end benchmark in one command (bench/README.md, "End to end"):
# builds the simulator, load_client, the e2e driver, the typical Rust collector (and
# kalshi-gatherer when it builds), sets up the Python baseline's venv, then runs the driver.
#
#   scripts/bench-e2e.sh                  # full run (~15 min), report in bench/results/<date>.md
#   scripts/bench-e2e.sh --quick          # shorter windows (~6 min)
#   scripts/bench-e2e.sh --smoke          # < 2 min, zero-loss checks only, no report file (CI)
#
# Extra arguments go to the driver (e.g. --collectors python,rust-typical, --out FILE).
set -eu
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

cargo build --release -p kalshi-sim -p kalshi-bench --bins --examples
CARGO_TARGET_DIR="$CARGO_TARGET_DIR/rust-typical" \
    cargo build --release --manifest-path bench/baselines/rust-typical/Cargo.toml
if ! cargo build --release -p kalshi-gatherer 2>/dev/null; then
    echo "bench-e2e: kalshi-gatherer does not build here; its column will say pending" >&2
fi
bench/baselines/python/setup.sh

mode=full
for arg in "$@"; do
    case "$arg" in
        --quick) mode=quick ;;
        --smoke) mode=smoke ;;
    esac
done
out=""
case " $* " in
    *" --out "*) ;;
    *) if [ "$mode" != smoke ]; then
           out="--out bench/results/$(date -u +%Y-%m-%d-%H%M)-$mode.md"
       fi ;;
esac
# shellcheck disable=SC2086
exec "$CARGO_TARGET_DIR/release/e2e" --target-dir "$CARGO_TARGET_DIR" \
    --rust-typical-bin "$CARGO_TARGET_DIR/rust-typical/release/typical-collector" $out "$@"
