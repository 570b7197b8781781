#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian/Ubuntu machine: the PostgreSQL
# server binaries (initdb, postgres, pg_ctl). Idempotent; does nothing when they are present.
set -euo pipefail

have_postgres() {
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null 2>&1
}

if have_postgres; then
    exit 0
fi

echo "install-deps: PostgreSQL server binaries not found; installing the 'postgresql' package" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends postgresql postgresql-contrib
have_postgres || { echo "install-deps: postgresql installed but initdb still not found" >&2; exit 1; }
