#!/usr/bin/env bash
# The Node packages the tests drive as real MCP clients: the official conformance
# suite (@modelcontextprotocol/conformance) and TypeScript SDK, at the exact versions
# of tests/clients/package-lock.json, installed once with `npm ci` into a cache.
#   eval "$(scripts/node-env.sh)"    # sets MCP_FLEET_NODE_MODULES
set -euo pipefail

src="$(cd "$(dirname "$0")/../tests/clients" && pwd)"
dir="${MCP_FLEET_CACHE:-$HOME/.cache/mcp-fleet}/node"
stamp="$dir/.mcp-fleet-stamp"
want="$(cat "$src/package.json" "$src/package-lock.json" | sha256sum | cut -c1-16)"

log() { echo "node-env.sh: $*" >&2; }

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    log "installing nodejs and npm (apt-get)"
    apt-get update >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm >&2
fi
major="$(node -p 'process.versions.node.split(".")[0]')"
if (( major < 20 )); then
    log "error: Node $(node --version) is too old; the conformance suite and the SDK need Node 20 or later"
    exit 1
fi

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$dir/node_modules/.bin/conformance" ]]; then
    log "reusing $dir ($want)"
else
    log "npm ci into $dir (lock $want)"
    rm -rf "$dir"
    mkdir -p "$dir"
    cp "$src/package.json" "$src/package-lock.json" "$dir/"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) >&2
    "$dir/node_modules/.bin/conformance" --version >&2
    echo "$want" > "$stamp"
    log "ready: $dir"
fi

echo "export MCP_FLEET_NODE_MODULES=$dir/node_modules"
