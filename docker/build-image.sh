#!/usr/bin/env bash
# Builds the images of the compose deployment from binaries built on the host.
#
#   cargo build --release && docker/build-image.sh              # mcp-fleet:latest
#   docker/build-image.sh pocketbase                             # pocketcoder-pocketbase:latest
#
# Env:
#   BASE              the base image (default: debian:bookworm-slim; where no registry can
#                     be reached, a local one: mcp-fleet-test/base:<key> from
#                     docker/test-images/build.sh)
#   TAG               the image tag (default: mcp-fleet:latest / pocketcoder-pocketbase:latest)
#   MCP_FLEET_BINARY  mcp-fleet: the binary to package (default: target/release/mcp-fleet)
#   STRIP             mcp-fleet: 1 strips debug info from the copy (default: 1, when `strip` exists)
#   POCKETBASE_BINARY pocketbase: the binary (default: the one scripts/pocketbase-env.sh installs)
# Prints the tag on stdout. Uses the legacy builder (DOCKER_BUILDKIT=0): no buildx needed,
# and a BASE the engine already has is never pulled.
set -euo pipefail
cd "$(dirname "$0")/.."

what="${1:-mcp-fleet}"
BASE="${BASE:-debian:bookworm-slim}"
ctx="$(mktemp -d "${TMPDIR:-/tmp}/mcp-fleet-image.XXXXXX")"
trap 'rm -rf "$ctx"' EXIT

case "$what" in
  mcp-fleet)
    TAG="${TAG:-mcp-fleet:latest}"
    dockerfile=docker/Dockerfile
    BIN="${MCP_FLEET_BINARY:-target/release/mcp-fleet}"
    [[ -x "$BIN" ]] || { echo "build-image.sh: no binary at $BIN (cargo build --release?)" >&2; exit 1; }
    cp "$BIN" "$ctx/mcp-fleet"
    if [[ "${STRIP:-1}" == 1 ]] && command -v strip >/dev/null 2>&1; then
      strip --strip-debug "$ctx/mcp-fleet"
    fi
    ;;
  pocketbase)
    TAG="${TAG:-pocketcoder-pocketbase:latest}"
    dockerfile=docker/pocketbase.Dockerfile
    BIN="${POCKETBASE_BINARY:-}"
    if [[ -z "$BIN" ]]; then
      eval "$(scripts/pocketbase-env.sh)"
      BIN="$MCP_FLEET_POCKETBASE"
    fi
    cp "$BIN" "$ctx/pocketbase"
    cp -r examples/pocketbase/pb_hooks examples/pocketbase/pb_migrations "$ctx/"
    ;;
  *) echo "usage: $0 [mcp-fleet|pocketbase]" >&2; exit 2 ;;
esac

pull=()
docker image inspect "$BASE" >/dev/null 2>&1 && pull=(--pull=false)
DOCKER_BUILDKIT=0 docker build "${pull[@]}" --build-arg "BASE=$BASE" \
  -f "$dockerfile" -t "$TAG" "$ctx" >&2
echo "$TAG"
