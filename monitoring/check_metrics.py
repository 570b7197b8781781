#!/usr/bin/env python3
"""Static checks of the monitoring files that promtool does not do.

* Every metric name used in an alert expression or a dashboard query is in metrics.txt.
* alerts.yml defines exactly the runbook's alerts, each with a summary and a RUNBOOK.md link.
* alerts_test.yml tests each alert both firing and not firing.
* grafana/kalshi.json is valid, importable-looking dashboard JSON: unique panel ids, panels on the
  24-column grid, every query on the `datasource` template variable, and the required areas
  covered (ingest, connections, writer, flush latency, gaps, dedup lag, gatherer health, disk).

Usage: check_metrics.py MONITORING_DIR. Exits 1 and prints every problem when something fails.
"""

import json
import os
import re
import sys

import yaml

EXPECTED_ALERTS = {
    "SingleGathererDown",
    "AllGatherersDown",
    "AllWebSocketsDisconnected",
    "HighWriterErrorRate",
    "DeduplicatorSyncStalled",
    "ProductionRDSUnreachable",
    "DiskUsageHigh",
}

# Metrics the dashboard must show: one per area the operators watch.
DASHBOARD_MUST_USE = {
    "ws_client_messages_received_total": "ingest (messages/s per gatherer)",
    "conn_manager_connections_healthy": "connections",
    "ws_client_connected": "connections",
    "writer_inserts_total": "writer inserts/s",
    "writer_errors_total": "writer errors by type",
    "writer_flush_duration_seconds_bucket": "flush latency percentiles",
    "sequence_gaps_total": "sequence gaps",
    "dedup_sync_lag_seconds": "dedup lag",
    "dedup_gatherer_health": "gatherer health",
    "dedup_rds_connected": "production database",
    "kalshi_disk_usage_ratio": "disk",
    "up": "services up",
}

PROMQL_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or",
    "unless", "inf", "nan", "atan2",
}


def metric_names(expr):
    """Return the set of metric names a PromQL expression selects.

    Good enough for the expressions of this project: strings, label matchers, range/subquery
    brackets, grouping clauses and Grafana variables are removed, then every remaining identifier
    that is not a function call or a keyword is a metric name.
    """
    text = re.sub(r"\$\{[^}]*\}|\$\w+", " ", expr)  # Grafana variables
    text = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', text)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text
    )
    names = set()
    for m in re.finditer(r"(?<![\w.:])([a-zA-Z_:][\w:]*)", text):
        name = m.group(1)
        rest = text[m.end():]
        if re.match(r"\s*\(", rest) or name in PROMQL_KEYWORDS:
            continue
        names.add(name)
    return names


def self_test():
    """The extractor must find what is there and nothing else (or the check could never fail)."""
    cases = {
        'sum by (job, instance) (rate(writer_errors_total{type="x"}[5m])) / 2 > 0.01': {
            "writer_errors_total"
        },
        'histogram_quantile(0.99, sum by (le) (rate(a_bucket{i=~"$g|d"}[$__rate_interval])))': {
            "a_bucket"
        },
        'up{job="kalshi-gatherer"} == 0 unless on () (max(up) == 0) or absent(nope_total)': {
            "up",
            "nope_total",
        },
        "foo offset 5m + bar * 1e-3": {"foo", "bar"},
    }
    for expr, want in cases.items():
        got = metric_names(expr)
        if got != want:
            raise SystemExit(f"check_metrics self-test: {expr!r} gave {got}, want {want}")


def load_allowed(path):
    allowed = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                allowed.add(line)
    return allowed


def check_alerts(mdir, allowed, errors):
    with open(os.path.join(mdir, "alerts.yml"), encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    seen = []
    for group in doc.get("groups", []):
        for rule in group.get("rules", []):
            name = rule.get("alert")
            if name is None:
                continue
            seen.append(name)
            for metric in sorted(metric_names(rule.get("expr", ""))):
                if metric not in allowed:
                    errors.append(f"alerts.yml: {name} uses unknown metric {metric!r}")
            ann = rule.get("annotations", {})
            if not ann.get("summary"):
                errors.append(f"alerts.yml: {name} has no summary annotation")
            if not re.fullmatch(r"RUNBOOK\.md#[a-z0-9-]+", ann.get("runbook_url", "")):
                errors.append(f"alerts.yml: {name} has no RUNBOOK.md#anchor runbook_url")
    if sorted(seen) != sorted(EXPECTED_ALERTS):
        errors.append(
            f"alerts.yml: alerts are {sorted(seen)}, want exactly {sorted(EXPECTED_ALERTS)}"
        )

    with open(os.path.join(mdir, "alerts_test.yml"), encoding="utf-8") as f:
        tests = yaml.safe_load(f)
    firing, quiet = set(), set()
    for case in tests.get("tests", []):
        for t in case.get("alert_rule_test", []):
            (firing if t.get("exp_alerts") else quiet).add(t.get("alertname"))
    for name in sorted(EXPECTED_ALERTS):
        if name not in firing:
            errors.append(f"alerts_test.yml: no test where {name} fires")
        if name not in quiet:
            errors.append(f"alerts_test.yml: no test where {name} does not fire")


def walk_panels(panels):
    for p in panels:
        yield p
        yield from walk_panels(p.get("panels", []))


def check_dashboard(mdir, allowed, errors):
    path = os.path.join(mdir, "grafana", "kalshi.json")
    try:
        with open(path, encoding="utf-8") as f:
            dash = json.load(f)
    except (OSError, ValueError) as e:
        errors.append(f"{path}: not valid JSON: {e}")
        return
    for key in ("title", "uid", "panels", "schemaVersion", "templating"):
        if key not in dash:
            errors.append(f"kalshi.json: missing top-level key {key!r}")
    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    ds = variables.get("datasource")
    if ds is None or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        errors.append("kalshi.json: no `datasource` template variable of type prometheus")

    ids, used = set(), set()
    for p in walk_panels(dash.get("panels", [])):
        pid, title = p.get("id"), p.get("title", "?")
        if pid in ids:
            errors.append(f"kalshi.json: duplicate panel id {pid} ({title})")
        ids.add(pid)
        grid = p.get("gridPos", {})
        if not all(isinstance(grid.get(k), int) for k in ("x", "y", "w", "h")) or (
            grid.get("x", 0) + grid.get("w", 0) > 24
        ):
            errors.append(f"kalshi.json: panel {title!r} has a bad gridPos {grid}")
        if p.get("type") == "row":
            continue
        if p.get("datasource", {}).get("uid") != "${datasource}":
            errors.append(f"kalshi.json: panel {title!r} is not on the ${{datasource}} variable")
        targets = p.get("targets", [])
        if not targets:
            errors.append(f"kalshi.json: panel {title!r} has no queries")
        for t in targets:
            if t.get("datasource", {}).get("uid") != "${datasource}":
                errors.append(f"kalshi.json: a query of {title!r} is not on ${{datasource}}")
            expr = t.get("expr", "")
            if not expr:
                errors.append(f"kalshi.json: a query of {title!r} has no expr")
            for metric in sorted(metric_names(expr)):
                used.add(metric)
                if metric not in allowed:
                    errors.append(f"kalshi.json: panel {title!r} uses unknown metric {metric!r}")
    for v in variables.values():
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else ""
        m = re.match(r"label_values\((.*),\s*\w+\)$", q)
        for metric in sorted(metric_names(m.group(1)) if m else set()):
            if metric not in allowed:
                errors.append(f"kalshi.json: variable {v.get('name')} uses unknown metric {metric!r}")
    for metric, area in DASHBOARD_MUST_USE.items():
        if metric not in used:
            errors.append(f"kalshi.json: no panel shows {area} ({metric})")


def main():
    if len(sys.argv) != 2:
        raise SystemExit("usage: check_metrics.py MONITORING_DIR")
    mdir = sys.argv[1]
    self_test()
    allowed = load_allowed(os.path.join(mdir, "metrics.txt"))
    errors = []
    check_alerts(mdir, allowed, errors)
    check_dashboard(mdir, allowed, errors)
    for e in errors:
        print(f"FAIL: {e}", file=sys.stderr)
    if errors:
        sys.exit(1)
    print(f"check_metrics: alerts and dashboard OK ({len(allowed)} known metric names)")


if __name__ == "__main__":
    main()
