#!/usr/bin/env bash
# Debian programs the tests drive for real: Chromium (the status page, driven by
# playwright-core from scripts/node-env.sh), Prometheus (scraping /metrics) and
# kubectl (rendering manifests/ with its kustomize: scripts/manifests-check; an
# existing kubectl is used as it is, else Debian's kubernetes-client).
# Installs the missing ones in one apt-get run; prints the `export` lines for
# eval on stdout (progress goes to stderr).
#   eval "$(scripts/debian-env.sh)"
set -euo pipefail
missing=()
for want in chromium:chromium prometheus:prometheus kubectl:kubernetes-client; do
  command -v "${want%%:*}" >/dev/null 2>&1 || missing+=("${want#*:}")
done
if (( ${#missing[@]} )); then
  [[ $EUID -eq 0 ]] || { echo "debian-env.sh: need root to install ${missing[*]}" >&2; exit 1; }
  echo "debian-env.sh: installing ${missing[*]} (apt-get)" >&2
  apt-get update >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2
fi
echo "export MCP_FLEET_CHROMIUM=$(command -v chromium)"
echo "export MCP_FLEET_PROMETHEUS=$(command -v prometheus)"
echo "export MCP_FLEET_KUBECTL=$(command -v kubectl)"
