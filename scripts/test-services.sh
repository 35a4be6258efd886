#!/usr/bin/env bash
# Installs the real services the integration tests start (tests/integration/):
#   * Prometheus + promtool + Alertmanager, from Debian packages;
#   * Arize Phoenix (an OTLP trace receiver with a REST API) in its own virtualenv, .venv-phoenix,
#     because its dependencies clash with ours and its licence (Elastic 2.0) keeps it test-only.
# Idempotent: each step runs only when what it provides is missing. Run as root on Debian.
set -euo pipefail

PHOENIX_VERSION="20.26.1"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PHOENIX_VENV="${REPO_ROOT}/.venv-phoenix"
PYTHON="${PYTHON:-python3}"

say() { printf '[test-services] %s\n' "$*"; }

install_prometheus() {
    local missing=()
    local bin
    for bin in prometheus promtool prometheus-alertmanager amtool; do
        command -v "$bin" >/dev/null 2>&1 || missing+=("$bin")
    done
    if ((${#missing[@]} == 0)); then
        say "prometheus, promtool and prometheus-alertmanager already installed"
        return
    fi
    say "missing ${missing[*]}: installing Debian packages prometheus, prometheus-alertmanager"
    apt-get update
    # Without --no-install-recommends apt also pulls node-exporter, smartmontools, ipmitool, ...
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        prometheus prometheus-alertmanager
    for bin in prometheus promtool prometheus-alertmanager amtool; do
        command -v "$bin" >/dev/null 2>&1 || { say "ERROR: $bin still missing after apt-get"; exit 1; }
    done
    say "installed: $(prometheus --version 2>&1 | head -n1)"
}

phoenix_installed_version() {
    "${PHOENIX_VENV}/bin/python" - <<'EOF' 2>/dev/null
from importlib.metadata import version
from importlib.util import find_spec

# Metadata alone survives a half-removed package; find_spec checks the code is there too,
# without the ~7 s it takes to import the server.
assert find_spec("phoenix") is not None
print(version("arize-phoenix"))
EOF
}

install_phoenix() {
    local have=""
    if [[ -x "${PHOENIX_VENV}/bin/python" ]]; then
        have="$(phoenix_installed_version || true)"
    fi
    if [[ "$have" == "$PHOENIX_VERSION" ]]; then
        say "arize-phoenix ${PHOENIX_VERSION} already installed in ${PHOENIX_VENV}"
        return
    fi
    if [[ ! -x "${PHOENIX_VENV}/bin/pip" ]]; then
        say "creating virtualenv ${PHOENIX_VENV} with $(${PYTHON} --version)"
        "${PYTHON}" -m venv "${PHOENIX_VENV}"
    fi
    say "installing arize-phoenix==${PHOENIX_VERSION} into ${PHOENIX_VENV} (found: ${have:-none})"
    "${PHOENIX_VENV}/bin/pip" install --disable-pip-version-check --quiet \
        "arize-phoenix==${PHOENIX_VERSION}"
    have="$(phoenix_installed_version)" || { say "ERROR: phoenix does not import"; exit 1; }
    [[ "$have" == "$PHOENIX_VERSION" ]] || { say "ERROR: got arize-phoenix $have"; exit 1; }
    say "installed arize-phoenix ${have}"
}

install_prometheus
install_phoenix
say "done"
