#!/usr/bin/env bash
# A real Prometheus server (Debian's `prometheus`) for the metrics test,
# installed when missing. Prints the `export` line for eval on stdout.
#   eval "$(scripts/prometheus-env.sh)"
set -euo pipefail
if ! command -v prometheus >/dev/null 2>&1; then
  [[ $EUID -eq 0 ]] || { echo "prometheus-env.sh: need root to install prometheus" >&2; exit 1; }
  echo "prometheus-env.sh: installing prometheus (apt-get)" >&2
  apt-get update >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >&2
fi
echo "export MCP_FLEET_PROMETHEUS=$(command -v prometheus)"
