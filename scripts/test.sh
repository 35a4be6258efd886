#!/usr/bin/env bash
# The one test command: installs what the tests need (Python packages, Debian packages, test-only
# services), then runs lint, types and the whole pytest suite. Exit code: non-zero if anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."
# The C speedups (src/infertrail/_native.c) need a compiler and OpenSSL's headers; without them the
# install is pure Python, which tests/unit/audit/test_native.py reports as a failure here. The
# sanitizer tests (tests/fuzz) build it again with gcc's AddressSanitizer and UBSan runtimes,
# which Debian's gcc brings (libasan8, libubsan1).
if ! command -v gcc >/dev/null 2>&1 || [ ! -f /usr/include/openssl/sha.h ] \
  || [ ! -e "$(gcc -print-file-name=libasan.so)" ]; then
  echo "==> installing gcc and libssl-dev (for infertrail._native and its sanitizer build)"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gcc libc6-dev libssl-dev
fi
# tests/e2e/test_timestamps.py runs a real RFC 3161 time-stamp authority with the openssl binary.
if ! command -v openssl >/dev/null 2>&1; then
  echo "==> installing openssl (the time-stamp authority of the timestamp tests)"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openssl
fi
scripts/bootstrap.sh dev
if [ -x scripts/test-services.sh ]; then
  scripts/test-services.sh
fi
# tests/browser drive the web console in Debian's Chromium with axe-core's accessibility rules,
# and `infertrail report --format pdf` prints through the same Chromium.
scripts/browser-tools.sh
echo "==> ruff"
.venv/bin/ruff check src tests bench scripts
.venv/bin/ruff format --check src tests bench scripts
echo "==> mypy"
.venv/bin/mypy
echo "==> import contracts (docs/architecture.md's layers)"
.venv/bin/lint-imports
echo "==> pytest"
# NannyML 0.13.1 in .venv-nannyml: the CBPE oracle of tests/oracle (fast when it is there).
# Required here: without it the oracle test would skip, and CBPE would go unchecked.
scripts/nannyml-venv.sh >/dev/null
export INFERTRAIL_REQUIRE_ORACLE=1
# Tests marked fuzz (tests/fuzz) fuzz each C entry point this many seconds with coverage, then
# half as long under ASan + UBSan: about 4 minutes in all at 10.
export INFERTRAIL_FUZZ_SECONDS="${INFERTRAIL_FUZZ_SECONDS:-10}"
.venv/bin/python -m pytest "$@"
echo "==> pytest tests/llm (the demo LLM and its route, in .venv-llm: torch CPU, the openai client)"
LLM_PYTHON_BIN="$(scripts/llm-venv.sh)"
"$LLM_PYTHON_BIN" -m pytest tests/llm -q -p no:cacheprovider
