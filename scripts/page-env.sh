#!/usr/bin/env bash
# The status-page test's browser: Debian's Chromium, installed when missing
# (playwright-core, which drives it, comes from scripts/node-env.sh). Prints the
# `export` line for eval on stdout; progress goes to stderr.
#   eval "$(scripts/page-env.sh)"
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
  [[ $EUID -eq 0 ]] || { echo "page-env.sh: need root to install chromium" >&2; exit 1; }
  echo "page-env.sh: installing chromium (apt-get)" >&2
  apt-get update >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >&2
fi
echo "export MCP_FLEET_CHROMIUM=$(command -v chromium)"
