#!/usr/bin/env bash
# A real Prometheus against a running platform: starts `kalshi demo` (simulator, three gatherers,
# the deduplicator, local PostgreSQL), points Debian's Prometheus at the demo's processes with
# the project's alert rules (the demo writes that prometheus.yml into its work directory), and
# checks that every metric the runbook queries returns series, that the histogram the runbook
# reads has buckets, and that all seven alert rules load and evaluate. Installs Debian's
# `prometheus` package when missing. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_get() {
    if [ "$(id -u)" -eq 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo DEBIAN_FRONTEND=noninteractive apt-get "$@"
    else
        echo "check-prometheus-scrape: need root or sudo to run apt-get $*" >&2
        return 1
    fi
}
if ! command -v prometheus >/dev/null 2>&1; then
    echo "== installing Debian's prometheus package"
    apt_get install -y --no-install-recommends prometheus >/dev/null ||
        { apt_get update >/dev/null && apt_get install -y --no-install-recommends prometheus >/dev/null; }
fi
prometheus --version 2>&1 | head -n 1

echo "== building the platform"
cargo build --locked -q -p kalshi-cli -p kalshi-sim -p kalshi-gatherer -p kalshi-deduplicator
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
KALSHI="$TARGET_DIR/debug/kalshi"

WORK="$(mktemp -d /tmp/kalshi-prom-check.XXXXXX)"
chmod 755 "$WORK"
DEMO_PID=""
PROM_PID=""
cleanup() {
    [ -n "$PROM_PID" ] && kill "$PROM_PID" 2>/dev/null || true
    [ -n "$DEMO_PID" ] && kill -INT "$DEMO_PID" 2>/dev/null || true
    [ -n "$DEMO_PID" ] && wait "$DEMO_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "== starting kalshi demo (work directory $WORK/demo)"
"$KALSHI" demo --duration 75 --keep --workdir "$WORK/demo" \
    --series 4 --events-per-series 3 --markets-per-event 6 >"$WORK/demo.out" 2>&1 &
DEMO_PID=$!
for _ in $(seq 1 240); do
    [ -f "$WORK/demo/prometheus.yml" ] && break
    if ! kill -0 "$DEMO_PID" 2>/dev/null; then
        cat "$WORK/demo.out" >&2
        echo "check-prometheus-scrape: the demo exited before it was up" >&2
        exit 1
    fi
    sleep 0.5
done
[ -f "$WORK/demo/prometheus.yml" ] || { echo "the demo never wrote prometheus.yml" >&2; exit 1; }

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
echo "== starting prometheus on 127.0.0.1:$PORT"
prometheus --config.file "$WORK/demo/prometheus.yml" --storage.tsdb.path "$WORK/tsdb" \
    --web.listen-address "127.0.0.1:$PORT" >"$WORK/prometheus.log" 2>&1 &
PROM_PID=$!

echo "== querying (every runbook metric must return series)"
python3 - "$PORT" <<'PY'
import json, sys, time, urllib.parse, urllib.request

port = sys.argv[1]
base = f"http://127.0.0.1:{port}/api/v1"

def get(path):
    with urllib.request.urlopen(base + path, timeout=5) as r:
        return json.load(r)

# The runbook's metric queries (RUNBOOK.md, "curl ... | grep NAME" and the alert expressions),
# each must return at least one series from a live process.
queries = {
    "ws_client_connected": 3,
    "ws_client_messages_received_total": 3,
    "conn_manager_connections_total": 3,
    "conn_manager_connections_healthy": 3,
    "writer_inserts_total": 3,
    "writer_errors_total": 3,
    "writer_flush_duration_seconds_bucket": 3,
    "sequence_gaps_total": 3,
    "kalshi_disk_usage_ratio": 3,
    "dedup_sync_lag_seconds": 1,
    "dedup_gatherer_health": 1,
    "dedup_rds_connected": 1,
    'up{job="kalshi-gatherer"} == 1': 3,
    'up{job="kalshi-deduplicator"} == 1': 1,
    'sum by (instance) (rate(ws_client_messages_received_total[30s])) > 0': 3,
}
deadline = time.time() + 90
missing = dict(queries)
while missing and time.time() < deadline:
    for q, want in list(missing.items()):
        try:
            res = get("/query?query=" + urllib.parse.quote(q))["data"]["result"]
        except Exception as e:  # Prometheus still starting
            res = []
        instances = {r["metric"].get("instance") for r in res}
        if len(instances) >= want:
            print(f"ok   {q}: {len(res)} series from {sorted(i for i in instances if i)}")
            del missing[q]
    if missing:
        time.sleep(2)
for q, want in missing.items():
    print(f"FAIL {q}: fewer than {want} instances returned series", file=sys.stderr)

rules = get("/rules")["data"]["groups"]
alerts = [r for g in rules for r in g["rules"] if r["type"] == "alerting"]
names = sorted(r["name"] for r in alerts)
expected = sorted(["SingleGathererDown", "AllGatherersDown", "AllWebSocketsDisconnected",
                   "HighWriterErrorRate", "DeduplicatorSyncStalled", "ProductionRDSUnreachable",
                   "DiskUsageHigh"])
bad_health = [r["name"] for r in alerts if r.get("health") not in ("ok", "unknown")]
firing = [r["name"] for r in alerts if r.get("state") == "firing"]
print(f"alert rules loaded: {names}; firing now: {firing}")
ok = not missing and names == expected and not bad_health and not firing
if names != expected:
    print(f"FAIL alert rules: expected {expected}", file=sys.stderr)
if bad_health:
    print(f"FAIL rules with evaluation errors: {bad_health}", file=sys.stderr)
if firing:
    print(f"FAIL alerts firing on a healthy platform: {firing}", file=sys.stderr)
sys.exit(0 if ok else 1)
PY

echo "== waiting for the demo's own truth check"
set +e
wait "$DEMO_PID"
STATUS=$?
set -e
DEMO_PID=""
tail -n 25 "$WORK/demo.out"
if [ "$STATUS" -ne 0 ]; then
    echo "check-prometheus-scrape: the demo failed ($STATUS)" >&2
    exit 1
fi
echo "== prometheus scrape check passed"
