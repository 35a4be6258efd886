#!/usr/bin/env bash
# Creates ./.venv and installs infertrail into it (with the dev extra when asked). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "infertrail needs Python >= 3.11; $PY is $("$PY" --version 2>&1)" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PY" -m venv .venv
fi
stamp=".venv/.installed${extras:+-$extras}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ src/infertrail/_native.c -nt "$stamp" ] \
  || [ src/infertrail/_shortest_table.h -nt "$stamp" ] \
  || [ hatch_build.py -nt "$stamp" ]; then
  echo "==> installing infertrail${extras:+[$extras]} into .venv"
  .venv/bin/python -m pip install --quiet --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/python -m pip install --quiet -e ".${extras:+[$extras]}" 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/python -c 'import infertrail' # fail here, not later, if the install did not work
  touch "$stamp"
fi
