#!/usr/bin/env bash
# Creates or updates ./.venv-llm: infertrail with the demo LLM (the [demo,llm] extras: torch,
# transformers, tokenizers) and what tests/llm needs under pytest. Its own venv because torch
# is large (~1 GB installed) and only the LLM uses it; .venv stays without it.
# Idempotent: a stamp holds the requirements, so a second run is a no-op unless they changed or
# pyproject.toml (which pins the extras) is newer than the stamp. Prints the venv's python.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=".venv-llm"
PY="${LLM_PYTHON:-python3.11}"
# pytest-timeout: pyproject's [tool.pytest.ini_options] sets `timeout`.
REQUIREMENTS=("-e" ".[demo,llm]" "pytest>=8,<10" "pytest-timeout>=2.3,<3" "httpx>=0.27,<1" "openai>=1.50,<3")
stamp="$VENV/.installed"
wanted="${REQUIREMENTS[*]}"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ] && [ -x "$VENV/bin/python" ] \
  && [ ! pyproject.toml -nt "$stamp" ]; then
  echo "$VENV/bin/python"
  exit 0
fi
if ! command -v "$PY" >/dev/null 2>&1; then
  echo "llm-venv: $PY not found (infertrail needs Python >= 3.11); set LLM_PYTHON" >&2
  exit 1
fi
echo "==> creating or updating $VENV (infertrail[demo,llm]: torch CPU, transformers)" >&2
rm -f "$stamp"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet "${REQUIREMENTS[@]}" 2>&1 | grep -v '^WARNING: Location' >&2 || true
# Fail here if it did not install, and if torch is a CUDA build (GBs the demo never uses).
"$VENV/bin/python" -c '
import sys, torch, transformers, tokenizers, infertrail.models.llm
if torch.version.cuda is not None:
    sys.exit(f"llm-venv: torch {torch.__version__} is a CUDA build; the demo LLM wants the CPU one")
'
echo "$wanted" >"$stamp"
echo "$VENV/bin/python"
