#!/usr/bin/env bash
# Smoke-check MCP stdio server images: initialize + notifications/initialized + tools/list.
#   docker/test-images/smoke.sh                 # all mcp-fleet-test images
#   docker/test-images/smoke.sh IMAGE...        # just these
# Runs each image locked down, with no network, as the daemon would.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TIMEOUT="${SMOKE_TIMEOUT:-60}"

smoke_one() {
  local image="$1" name t0
  local -a checks=()
  case "$image" in
    mcp-fleet-test/fetch:*) checks=(--expect-tool fetch) ;;
    mcp-fleet-test/time:*) checks=(--expect-tool get_current_time --expect-tool convert_time) ;;
    mcp-fleet-test/testserver:*)
      checks=(--expect-tool echo --expect-tool add
              --call echo '{"text":"hello"}' hello --call add '{"a":2,"b":3}' 5) ;;
    mcp-fleet-test/conformance:*)
      checks=(--expect-tool test_sampling --expect-tool test_tool_with_progress
              --call test_simple_text '{}' 'This is a simple text response for testing.') ;;
  esac
  name="mcp-fleet-smoke-$$-$RANDOM"
  t0=$EPOCHREALTIME
  echo "smoke: $image" >&2
  if ! python3 "$HERE/smoke.py" --timeout "$TIMEOUT" "${checks[@]}" \
      --on-timeout "docker rm -f $name >/dev/null 2>&1" -- \
      docker run -i --rm --name "$name" --network none --init \
        --security-opt no-new-privileges --cap-drop ALL \
        --memory 256m --pids-limit 128 "$image"; then
    docker rm -f "$name" >/dev/null 2>&1 || true
    echo "smoke: FAILED for $image" >&2
    return 1
  fi
  awk -v a="$t0" -v b="$EPOCHREALTIME" -v i="$image" 'BEGIN { printf "smoke: %s passed in %.1fs\n", i, b - a }' >&2
}

if (( $# == 0 )); then
  set -- mcp-fleet-test/fetch:latest mcp-fleet-test/time:latest mcp-fleet-test/testserver:latest \
         mcp-fleet-test/conformance:latest
fi
rc=0
for img in "$@"; do smoke_one "$img" || rc=1; done
exit "$rc"
