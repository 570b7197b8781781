#!/bin/sh
# The end-to-end benchmark in one command (bench/README.md, "End to end"):
# builds the simulator, load_client, the e2e driver, kalshi-gatherer, the typical Rust
# collector and the deduplicator's throughput bench, sets up the Python baseline's venv
# (installing python3-venv with apt-get when it is missing and we may), then runs the driver.
#
#   scripts/bench-e2e.sh                  # full run (< 15 min), report in bench/results/<date>-full.md
#   scripts/bench-e2e.sh --quick          # shorter windows (~7 min)
#   scripts/bench-e2e.sh --smoke          # CI: debug builds, one short run per collector with the
#                                         # zero-loss check and a 1,000-market storm, no report file
#
# Extra arguments go to the driver (e.g. --collectors python,rust-typical, --out FILE).
set -eu
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

mode=full
for arg in "$@"; do
    case "$arg" in
        --quick) mode=quick ;;
        --smoke) mode=smoke ;;
    esac
done

# The Python baseline needs python3 with venv (Debian: the python3-venv package).
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    echo "bench-e2e: python3 venv missing; installing python3-venv" >&2
    if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo -n"; fi
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
fi

if [ "$mode" = smoke ]; then
    profile=debug
    cargo_profile=""
else
    profile=release
    cargo_profile="--release"
fi
# One cargo invocation for every package (separate ones unify features differently and
# rebuild the shared crates); without the gatherer if it does not build.
# shellcheck disable=SC2086
if ! cargo build $cargo_profile -p kalshi-sim -p kalshi-bench -p kalshi-gatherer --bins --examples; then
    echo "bench-e2e: kalshi-gatherer does not build here; its column will say pending" >&2
    # shellcheck disable=SC2086
    cargo build $cargo_profile -p kalshi-sim -p kalshi-bench --bins --examples
fi
# shellcheck disable=SC2086
CARGO_TARGET_DIR="$CARGO_TARGET_DIR/rust-typical" \
    cargo build $cargo_profile --manifest-path bench/baselines/rust-typical/Cargo.toml
dedup=""
if [ "$mode" != smoke ]; then
    # The deduplicator's merge bench (engine/dedup/tests/bench.rs), run by the driver.
    bin=$(cargo test --release -p kalshi-dedup --test bench --no-run --message-format=json 2>/dev/null |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
    if [ -n "$bin" ]; then dedup="--dedup-bench-bin $bin"; fi
fi
bench/baselines/python/setup.sh

out=""
case " $* " in
    *" --out "*) ;;
    *) if [ "$mode" != smoke ]; then
           out="--out bench/results/$(date -u +%Y-%m-%d-%H%M)-$mode.md"
       fi ;;
esac
# shellcheck disable=SC2086
exec "$CARGO_TARGET_DIR/$profile/e2e" --target-dir "$CARGO_TARGET_DIR" --profile "$profile" \
    --rust-typical-bin "$CARGO_TARGET_DIR/rust-typical/$profile/typical-collector" $dedup $out "$@"
