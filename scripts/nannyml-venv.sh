#!/usr/bin/env bash
# Creates or updates ./.venv-nannyml: NannyML 0.13.1, the oracle that tests/oracle and
# bench/cbpe.py run our CBPE estimates against. It cannot share .venv: NannyML 0.13.1 needs
# Python < 3.13, lightgbm < 4.6 and was only tested upstream with numpy 2.0 and pandas 2.2
# (infertrail runs numpy 2.4 and pandas 3), so it lives in its own Python 3.11 venv and is only
# ever driven through a subprocess. Idempotent: a stamp holding the requirements makes a second
# run a no-op. Prints the venv's python on success.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=".venv-nannyml"
PY="${NANNYML_PYTHON:-python3.11}"
# statsmodels: nannyml.plots imports it at `import nannyml`, but its wheel does not require it.
REQUIREMENTS=("nannyml==0.13.1" "pandas>=2.2,<2.3" "numpy>=2.0,<2.1" "lightgbm<4.6" "statsmodels>=0.14,<0.15")
stamp="$VENV/.installed"
wanted="${REQUIREMENTS[*]}"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ] && [ -x "$VENV/bin/python" ]; then
  echo "$VENV/bin/python"
  exit 0
fi
if ! command -v "$PY" >/dev/null 2>&1; then
  echo "nannyml-venv: $PY not found (NannyML 0.13.1 needs Python 3.9 to 3.12); set NANNYML_PYTHON" >&2
  exit 1
fi
echo "==> creating $VENV (NannyML 0.13.1, the CBPE oracle)" >&2
rm -f "$stamp"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet "${REQUIREMENTS[@]}" 2>&1 | grep -v '^WARNING: Location' >&2 || true
# NannyML reports usage to its vendor unless this is set; every caller sets it too.
NML_DISABLE_USAGE_LOGGING=1 "$VENV/bin/python" -c 'import nannyml' # fail here if it did not install
echo "$wanted" >"$stamp"
echo "$VENV/bin/python"
