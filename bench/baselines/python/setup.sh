#!/bin/sh
# Creates bench/baselines/python/.venv with the pinned dependencies of collector.py.
# Usage: bench/baselines/python/setup.sh   (idempotent; needs python3 with venv and PyPI access)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if [ ! -x "$here/.venv/bin/python" ]; then
    python3 -m venv "$here/.venv"
fi
"$here/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
"$here/.venv/bin/python" -c 'import websockets, asyncpg; print("python baseline ready:", "websockets", websockets.__version__, "asyncpg", asyncpg.__version__)'
