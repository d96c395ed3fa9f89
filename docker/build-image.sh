#!/usr/bin/env bash
# Builds the mcp-fleet image from a binary built on the host.
#
#   cargo build --release && docker/build-image.sh
#
# Env:
#   MCP_FLEET_BINARY  the binary to package      (default: target/release/mcp-fleet)
#   BASE              the base image             (default: debian:bookworm-slim; here, with
#                     no registry: mcp-fleet-test/base:<key> from docker/test-images/build.sh)
#   TAG               the image tag              (default: mcp-fleet:latest)
#   STRIP             1 strips debug info from the copy (default: 1, when `strip` exists)
# Uses the legacy builder (DOCKER_BUILDKIT=0): no buildx needed, and a local BASE is never pulled.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN="${MCP_FLEET_BINARY:-target/release/mcp-fleet}"
BASE="${BASE:-debian:bookworm-slim}"
TAG="${TAG:-mcp-fleet:latest}"
[[ -x "$BIN" ]] || { echo "build-image.sh: no binary at $BIN (cargo build --release?)" >&2; exit 1; }

ctx="$(mktemp -d "${TMPDIR:-/tmp}/mcp-fleet-image.XXXXXX")"
trap 'rm -rf "$ctx"' EXIT
cp "$BIN" "$ctx/mcp-fleet"
if [[ "${STRIP:-1}" == 1 ]] && command -v strip >/dev/null 2>&1; then
  strip --strip-debug "$ctx/mcp-fleet"
fi
pull=()
docker image inspect "$BASE" >/dev/null 2>&1 && pull=(--pull=false)
DOCKER_BUILDKIT=0 docker build "${pull[@]}" --build-arg "BASE=$BASE" \
  -f docker/Dockerfile -t "$TAG" "$ctx" >&2
echo "$TAG"
