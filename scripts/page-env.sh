#!/usr/bin/env bash
# The status-page test's browser: Debian's Chromium and playwright-core (npm,
# pinned in tests/page/package-lock.json), installed once and cached. Prints the
# `export` lines for eval on stdout; progress goes to stderr.
#   eval "$(scripts/page-env.sh)"
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "page-env.sh: $*" >&2; }
apt_install() {
  [[ $EUID -eq 0 ]] || { log "error: need root to apt-get install $*"; exit 1; }
  log "installing $* (apt-get)"
  apt-get update >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >&2
}

command -v chromium >/dev/null 2>&1 || apt_install chromium
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || apt_install nodejs npm

cache="${MCP_FLEET_CACHE:-$HOME/.cache/mcp-fleet}"
key="$(sha256sum tests/page/package-lock.json | cut -c1-16)"
dir="$cache/page-node-$key"
if [[ ! -d "$dir/node_modules/playwright-core" ]]; then
  log "installing tests/page's node modules into $dir"
  rm -rf "$dir" && mkdir -p "$dir"
  cp tests/page/package.json tests/page/package-lock.json "$dir/"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
echo "export MCP_FLEET_PAGE_NODE_MODULES=$dir/node_modules"
echo "export MCP_FLEET_CHROMIUM=$(command -v chromium)"
