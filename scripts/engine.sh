#!/usr/bin/env bash
# Start/stop a Docker engine for mcp-fleet tests.
#
#   eval "$(scripts/engine.sh up)"   # reuse a live engine or start a private one
#   scripts/engine.sh down           # stop the private engine, only if we started it
#   scripts/engine.sh status         # say which engine would be used (exit 1 if none)
#
# stdout of `up` is only the `export DOCKER_HOST=...` line; progress goes to stderr.
# The private engine keeps its data root under /tmp so images persist across runs.
set -euo pipefail

DIR="${MCP_FLEET_DOCKER_DIR:-/tmp/mcp-fleet-docker}"
SOCK="$DIR/docker.sock"
PRIVATE_HOST="unix://$SOCK"
PIDFILE="$DIR/dockerd.pid"
LOG="$DIR/dockerd.log"
MARKER="$DIR/started-by-mcp-fleet"
START_TIMEOUT="${MCP_FLEET_ENGINE_TIMEOUT:-60}"
STOP_TIMEOUT="${MCP_FLEET_ENGINE_STOP_TIMEOUT:-30}"

log() { printf 'engine.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# answers HOST: true when an engine at HOST replies to `docker info` within a few seconds.
answers() {
  command -v docker >/dev/null 2>&1 || return 1
  DOCKER_HOST="$1" timeout 5 docker info >/dev/null 2>&1
}

# pid of our private dockerd if its pid file names a live dockerd process.
live_pid() {
  local pid
  [[ -s "$PIDFILE" ]] || return 1
  pid="$(tr -dc '0-9' <"$PIDFILE")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == dockerd ]] || return 1
  printf '%s\n' "$pid"
}

wait_for() { # wait_for HOST SECONDS PID
  local host="$1" secs="$2" pid="$3" start=$SECONDS
  while (( SECONDS - start < secs )); do
    answers "$host" && return 0
    kill -0 "$pid" 2>/dev/null || live_pid >/dev/null || return 1
    sleep 0.5
  done
  return 1
}

ensure_dockerd() {
  command -v dockerd >/dev/null 2>&1 && command -v docker >/dev/null 2>&1 && return 0
  [[ $EUID -eq 0 ]] || die "dockerd is missing and we are not root: install docker.io"
  log "installing docker.io (apt-get)"
  apt-get update >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker.io >&2
  command -v dockerd >/dev/null 2>&1 || die "dockerd still missing after installing docker.io"
}

cmd_up() {
  local host pid
  # 1. An engine the caller already points at, or the default socket.
  if [[ -n "${DOCKER_HOST:-}" && "${DOCKER_HOST}" != "$PRIVATE_HOST" ]]; then
    if answers "$DOCKER_HOST"; then
      log "reusing engine at DOCKER_HOST=$DOCKER_HOST"
      printf 'export DOCKER_HOST=%q\n' "$DOCKER_HOST"; return 0
    fi
    log "DOCKER_HOST=$DOCKER_HOST does not answer; falling back"
  elif [[ -z "${DOCKER_HOST:-}" && -S /var/run/docker.sock ]]; then
    host="unix:///var/run/docker.sock"
    if answers "$host"; then
      log "reusing engine at $host"
      printf 'export DOCKER_HOST=%q\n' "$host"; return 0
    fi
  fi

  # 2. Our private engine from an earlier run, still alive.
  if pid="$(live_pid)"; then
    log "private dockerd (pid $pid) is running; waiting for it to answer"
    wait_for "$PRIVATE_HOST" "$START_TIMEOUT" "$pid" \
      || die "private dockerd pid $pid does not answer at $PRIVATE_HOST; see $LOG (or: $0 down)"
    log "reusing private engine at $PRIVATE_HOST"
    printf 'export DOCKER_HOST=%q\n' "$PRIVATE_HOST"; return 0
  fi

  # 3. Start a private engine.
  [[ $EUID -eq 0 ]] || die "starting a private dockerd needs root"
  ensure_dockerd
  mkdir -p "$DIR/data" "$DIR/exec"
  rm -f "$PIDFILE" "$MARKER"
  [[ -S "$SOCK" ]] && rm -f "$SOCK"
  log "starting private dockerd at $PRIVATE_HOST (log: $LOG)"
  local t0=$SECONDS
  local -a extra=()
  read -r -a extra <<<"${MCP_FLEET_DOCKERD_ARGS:-}"
  # setsid: the engine outlives the shell that ran `up` (CI steps, eval).
  setsid dockerd \
    --host "$PRIVATE_HOST" \
    --data-root "$DIR/data" \
    --exec-root "$DIR/exec" \
    --pidfile "$PIDFILE" \
    "${extra[@]}" \
    </dev/null >>"$LOG" 2>&1 &
  pid=$!
  printf '%s\n' "$pid" >"$MARKER"
  if ! wait_for "$PRIVATE_HOST" "$START_TIMEOUT" "$pid"; then
    log "dockerd did not answer within ${START_TIMEOUT}s (pid $pid); last lines of $LOG:"
    tail -n 30 "$LOG" >&2 || true
    kill "$pid" 2>/dev/null || true
    rm -f "$MARKER"
    exit 1
  fi
  log "private dockerd (pid $pid) answers after $((SECONDS - t0))s"
  printf 'export DOCKER_HOST=%q\n' "$PRIVATE_HOST"
}

cmd_down() {
  local pid start
  if [[ ! -e "$MARKER" ]]; then
    log "no marker at $MARKER: we did not start an engine; nothing to stop"
    return 0
  fi
  if ! pid="$(live_pid)"; then
    pid="$(tr -dc '0-9' <"$MARKER")"
    if [[ -z "$pid" ]] || ! kill -0 "$pid" 2>/dev/null \
       || [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" != dockerd ]]; then
      log "private dockerd is not running"
      rm -f "$MARKER"; return 0
    fi
  fi
  log "stopping private dockerd (pid $pid)"
  kill -TERM "$pid"
  start=$SECONDS
  while kill -0 "$pid" 2>/dev/null; do
    if (( SECONDS - start >= STOP_TIMEOUT )); then
      log "dockerd pid $pid still running after ${STOP_TIMEOUT}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 1
      break
    fi
    sleep 0.2
  done
  rm -f "$MARKER"
  log "stopped after $((SECONDS - start))s"
}

cmd_status() {
  local host="${DOCKER_HOST:-}"
  [[ -z "$host" ]] && host="unix:///var/run/docker.sock"
  if answers "$host"; then echo "$host answers"; return 0; fi
  if answers "$PRIVATE_HOST"; then echo "$PRIVATE_HOST answers"; return 0; fi
  echo "no engine answers"; return 1
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
