#!/usr/bin/env bash
# The one test command: installs what the tests need (Python packages, Debian packages, test-only
# services), then runs lint, types and the whole pytest suite. Exit code: non-zero if anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh dev
if [ -x scripts/test-services.sh ]; then
  scripts/test-services.sh
fi
echo "==> ruff"
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
echo "==> mypy"
.venv/bin/mypy
echo "==> pytest"
.venv/bin/python -m pytest "$@"
