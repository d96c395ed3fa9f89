#!/usr/bin/env bash
# The virtualenv the gateway tests drive as real MCP clients: the official
# Python MCP SDK, pinned to the version our server images carry, and PyJWT
# (with `cryptography`) to make the identity tests' tokens.
#   eval "$(scripts/python-env.sh)"    # sets MCP_FLEET_PYTHON
set -euo pipefail
exec "$(dirname "$0")/venv.sh" sdk-venv "mcp==2.3.0 PyJWT[crypto]==2.15.1" MCP_FLEET_PYTHON bin/python \
    sh -c '"$VENV/bin/python" -c "import mcp.client.session, jwt, cryptography"'
