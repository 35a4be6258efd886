#!/usr/bin/env bash
# Install what the browser tests (tests/browser) and scripts/console-screenshots.py need, once:
#   - Debian's Chromium at /usr/bin/chromium (apt): Playwright drives it through
#     executable_path, so `playwright install` and its download of a browser are not needed;
#   - axe-core (npm, pinned) into .tools/axe: the accessibility rules the tests inject into
#     each page (page.add_script_tag), from the local file, never a CDN.
# Idempotent: a second run checks the versions and returns at once. Needs root for apt (or
# Chromium already installed) and node/npm for axe-core.
set -euo pipefail

AXE_VERSION="4.14.1"  # axe-core pinned: a new rule set could change what the tests refuse
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
AXE_DIR="$REPO_ROOT/.tools/axe"
AXE_JS="$AXE_DIR/node_modules/axe-core/axe.min.js"

if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "browser-tools: /usr/bin/chromium is missing and installing it needs root" >&2
        echo "  (run: sudo apt-get install -y --no-install-recommends chromium)" >&2
        exit 1
    fi
    # Another apt run (e.g. a parallel CI step) may hold the lock: wait for it, not fail.
    apt-get -o DPkg::Lock::Timeout=600 update
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y \
        --no-install-recommends chromium
fi
echo "browser-tools: $(/usr/bin/chromium --version 2>/dev/null | head -n 1)"

installed=""
if [ -f "$AXE_DIR/node_modules/axe-core/package.json" ]; then
    installed="$(node -p "require('$AXE_DIR/node_modules/axe-core/package.json').version")"
fi
if [ "$installed" != "$AXE_VERSION" ] || [ ! -f "$AXE_JS" ]; then
    if ! command -v npm >/dev/null; then
        echo "browser-tools: npm is needed to install axe-core $AXE_VERSION" >&2
        exit 1
    fi
    mkdir -p "$AXE_DIR"
    # Its own package.json so npm installs here and never touches a project file.
    [ -f "$AXE_DIR/package.json" ] || echo '{"name": "infertrail-browser-tools", "private": true}' >"$AXE_DIR/package.json"
    npm install --prefix "$AXE_DIR" --no-audit --no-fund --save-exact "axe-core@$AXE_VERSION"
fi
echo "browser-tools: axe-core $AXE_VERSION at $AXE_JS"
