#!/usr/bin/env bash
# Checks monitoring/: the Prometheus config and alert rules (promtool check config / check rules),
# the alert unit tests (promtool test rules), and the Grafana dashboard and metric names
# (monitoring/check_metrics.py). Installs Debian's `prometheus` package (which ships promtool)
# when promtool is missing. Exits non-zero on the first failing step.
set -euo pipefail
cd "$(dirname "$0")/.."

# Runs apt-get as root, through sudo when not root; fails with a clear message otherwise.
apt_get() {
    if [ "$(id -u)" -eq 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo DEBIAN_FRONTEND=noninteractive apt-get "$@"
    else
        echo "check-monitoring: need root or sudo to run apt-get $*" >&2
        return 1
    fi
}

# Installs Debian packages, running `apt-get update` first only if the plain install fails.
apt_install() {
    apt_get install -y --no-install-recommends "$@" >/dev/null ||
        { apt_get update >/dev/null && apt_get install -y --no-install-recommends "$@" >/dev/null; }
}

if ! command -v promtool >/dev/null 2>&1; then
    echo "== installing promtool (Debian package prometheus)"
    # The package's postinst may try to start the prometheus service; in containers without an
    # init system policy-rc.d denies it, which is what we want for a check.
    apt_install prometheus
fi
promtool --version 2>&1 | head -n 1

# check_metrics.py needs PyYAML: use python3 if it has it, else Debian's python3 with python3-yaml.
PYTHON=python3
if ! "$PYTHON" -c 'import yaml' >/dev/null 2>&1; then
    if ! /usr/bin/python3 -c 'import yaml' >/dev/null 2>&1; then
        echo "== installing python3-yaml"
        apt_install python3 python3-yaml
    fi
    PYTHON=/usr/bin/python3
fi

echo "== promtool check config monitoring/prometheus.yml"
promtool check config monitoring/prometheus.yml

echo "== promtool check rules monitoring/alerts.yml"
promtool check rules monitoring/alerts.yml

echo "== promtool test rules monitoring/alerts_test.yml"
promtool test rules monitoring/alerts_test.yml

echo "== dashboard JSON and metric names (monitoring/check_metrics.py)"
"$PYTHON" -m json.tool monitoring/grafana/kalshi.json >/dev/null
"$PYTHON" monitoring/check_metrics.py monitoring

echo "== monitoring checks passed"
