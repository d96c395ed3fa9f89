#!/usr/bin/env bash
# kubernetes-validate (PyPI), which checks rendered manifests against the JSON
# schemas of a Kubernetes release; the schemas ship inside the wheel, so
# validating needs no network.
#   eval "$(scripts/kubernetes-validate-env.sh)"    # sets MCP_FLEET_KUBERNETES_VALIDATE
set -euo pipefail
exec "$(dirname "$0")/venv.sh" kubernetes-validate-venv "kubernetes-validate==1.37.0" \
    MCP_FLEET_KUBERNETES_VALIDATE bin/kubernetes-validate \
    sh -c '"$VENV/bin/kubernetes-validate" --version'
