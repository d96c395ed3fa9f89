#!/usr/bin/env bash
# Creates (once, then reuses) the Python virtualenv the gateway tests drive as
# real MCP clients: the official Python MCP SDK, pinned to the version our
# server images carry. Prints one line for eval on stdout; progress goes to
# stderr:
#   eval "$(scripts/python-env.sh)"    # sets MCP_FLEET_PYTHON
set -euo pipefail

MCP_VERSION=2.3.0
cache="${MCP_FLEET_CACHE:-$HOME/.cache/mcp-fleet}"
venv="$cache/venv"
stamp="$venv/.mcp-fleet-stamp"
want="mcp==$MCP_VERSION"

log() { echo "python-env: $*" >&2; }

if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]] \
    && "$venv/bin/python" -c 'import mcp.client.session' >/dev/null 2>&1; then
    log "reusing $venv ($want)"
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
    "$venv/bin/python" -c 'import mcp.client.session' >&2
    echo "$want" > "$stamp"
    log "ready: $venv"
fi

echo "export MCP_FLEET_PYTHON=$venv/bin/python"
