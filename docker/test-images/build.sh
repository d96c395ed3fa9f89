#!/usr/bin/env bash
# Build (and cache) the mcp-fleet test images into the engine DOCKER_HOST points at.
#
#   eval "$(scripts/engine.sh up)" && docker/test-images/build.sh
#
# Images (no registry is reachable, so everything is built locally, FROM a debootstrap base):
#   mcp-fleet-test/base:<key>          Debian bookworm minbase + /opt/venv with the pinned PyPI servers
#   mcp-fleet-test/fetch:latest        mcp-server-fetch (stdio)
#   mcp-fleet-test/time:latest         mcp-server-time  (stdio)
#   mcp-fleet-test/testserver:latest   testserver/server.py (stdio, fault switches)
#   mcp-fleet-test/conformance:latest  conformance/server.py (stdio): the conformance suite's fixture
#
# Caching: <key> hashes the base recipe (build_rootfs below) and the pins; the rootfs tarball is
# kept in ${MCP_FLEET_CACHE:-$HOME/.cache/mcp-fleet}/base-<key>.tar. Each derived image carries the
# label org.mcp-fleet.test.inputs=<hash of base key + its build context> and is rebuilt only when
# that changes; every newly built image is smoke-checked (smoke.sh) and removed if the check fails.
# Env: MCP_FLEET_CACHE, MCP_FLEET_DEBIAN_MIRROR (default: the mirror apt uses), MCP_FLEET_REBUILD=1.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${MCP_FLEET_CACHE:-$HOME/.cache/mcp-fleet}"
SUITE=bookworm
INCLUDE=python3,python3-venv,ca-certificates
FETCH_PIN=2026.10.24   # mcp-server-fetch (pulls in mcp 2.x)
TIME_PIN=2026.10.19    # mcp-server-time
LABEL=org.mcp-fleet.test.inputs
IMAGES=(fetch time testserver conformance)
CHROOT_PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

T_ALL=$EPOCHREALTIME
WORK=""
BASE_IMAGE=""

log() { printf 'build.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1fs", b - a }'; }

apt_install() { # apt_install PKG... (CI runs on a fresh machine as root)
  [[ $EUID -eq 0 ]] || die "need root to apt-get install $*"
  log "installing $* (apt-get)"
  apt-get update >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >&2
}

mounts_under() { awk -v p="$1/" 'index($2, p) == 1 { print $2 }' /proc/self/mounts | sort -r; }

cleanup() {
  [[ -n "$WORK" && -d "$WORK" ]] || return 0
  local m
  # Unmount /proc (and anything a failed debootstrap left mounted), deepest first.
  for m in $(mounts_under "$WORK"); do umount "$m" 2>/dev/null || umount -l "$m" || true; done
  if [[ -n "$(mounts_under "$WORK")" ]]; then
    log "warning: mounts remain under $WORK; leaving it in place"
  else
    rm -rf --one-file-system "$WORK"
  fi
  WORK=""
}
trap cleanup EXIT
trap 'exit 130' INT TERM

detect_mirror() {
  local m=""
  if [[ -n "${MCP_FLEET_DEBIAN_MIRROR:-}" ]]; then echo "$MCP_FLEET_DEBIAN_MIRROR"; return; fi
  m="$( { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null || true; } \
        | grep -E '^[[:space:]]*(URIs:|deb[[:space:]])' \
        | grep -oE '(https?|file)://[^][:space:]]+' | grep -E '/debian/?$' | head -n1 || true)"
  echo "${m:-http://deb.debian.org/debian}"
}

# pip settings for the chroot: the host's cert bundle is copied in; index/proxy settings pass through.
pip_env() {
  local v idx
  echo "PIP_CERT=/etc/ssl/certs/ca-certificates.crt"
  echo "PIP_DISABLE_PIP_VERSION_CHECK=1"
  echo "PIP_DEFAULT_TIMEOUT=${PIP_DEFAULT_TIMEOUT:-180}"
  for v in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
    [[ -n "${!v:-}" ]] && echo "$v=${!v}"
  done
  if [[ -z "${PIP_INDEX_URL:-}" ]]; then
    idx="$(python3 -m pip config get global.index-url 2>/dev/null || true)"
    [[ -n "$idx" ]] && echo "PIP_INDEX_URL=$idx"
  fi
  return 0
}

# The base recipe. Its text (declare -f) and the pins form the base image key.
build_rootfs() { # build_rootfs ROOTFS MIRROR
  local root="$1" mirror="$2" t
  local -a penv
  t=$EPOCHREALTIME
  log "debootstrap $SUITE from $mirror (minbase + $INCLUDE)"
  if ! debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$root" "$mirror" >"$WORK/debootstrap.log" 2>&1; then
    tail -n 30 "$WORK/debootstrap.log" >&2
    die "debootstrap failed (log above)"
  fi
  log "debootstrap done in $(since "$t")"
  t=$EPOCHREALTIME
  install -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  cp -L --remove-destination /etc/resolv.conf "$root/etc/resolv.conf"
  mount -t proc proc "$root/proc"
  mapfile -t penv < <(pip_env)
  chroot "$root" /usr/bin/env -i PATH="$CHROOT_PATH" HOME=/root LANG=C.UTF-8 python3 -m venv /opt/venv
  chroot "$root" /usr/bin/env -i PATH="$CHROOT_PATH" HOME=/root LANG=C.UTF-8 "${penv[@]}" \
    /opt/venv/bin/pip install --no-cache-dir --no-input \
    "mcp-server-fetch==$FETCH_PIN" "mcp-server-time==$TIME_PIN" >&2
  chroot "$root" /usr/bin/env -i PATH="$CHROOT_PATH" /opt/venv/bin/pip freeze --all >"$root/opt/venv/pip-freeze.txt"
  umount "$root/proc"
  log "venv + pip install done in $(since "$t"); mcp $(grep -i '^mcp==' "$root/opt/venv/pip-freeze.txt" | cut -d= -f3)"
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
         "$root"/root/.cache "$root"/tmp/*
  : >"$root/etc/resolv.conf"
}

base_key() {
  { declare -f build_rootfs pip_env; echo "$SUITE $INCLUDE $FETCH_PIN $TIME_PIN $CHROOT_PATH"; } \
    | sha256sum | cut -c1-12
}

ensure_base() { # sets BASE_IMAGE (not a subshell, so the EXIT trap cleans up)
  local key image tarball t
  key="$(base_key)"
  image="mcp-fleet-test/base:$key"
  if docker image inspect "$image" >/dev/null 2>&1 && [[ -z "${MCP_FLEET_REBUILD:-}" ]]; then
    log "base $image: cached"
    BASE_IMAGE="$image"; return 0
  fi
  mkdir -p "$CACHE"
  tarball="$CACHE/base-$key.tar"
  if [[ -s "$tarball" && -z "${MCP_FLEET_REBUILD:-}" ]]; then
    log "base rootfs tarball cached: $tarball"
  else
    command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap debian-archive-keyring
    [[ $EUID -eq 0 ]] || die "building the base rootfs needs root (debootstrap, chroot, mount)"
    t=$EPOCHREALTIME
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/mcp-fleet-rootfs.XXXXXX")"
    build_rootfs "$WORK/rootfs" "$(detect_mirror)"
    tar -C "$WORK/rootfs" --numeric-owner -cf "$tarball.tmp.$$" .
    mv -f "$tarball.tmp.$$" "$tarball"
    cleanup
    log "base rootfs built and tarred in $(since "$t") -> $tarball ($(du -h "$tarball" | cut -f1))"
  fi
  t=$EPOCHREALTIME
  docker import \
    --change "ENV PATH=$CHROOT_PATH" --change 'ENV LANG=C.UTF-8' --change 'ENV PYTHONUNBUFFERED=1' \
    --message "mcp-fleet test base $key" "$tarball" "$image" >/dev/null
  log "imported $image in $(since "$t")"
  BASE_IMAGE="$image"
}

build_image() { # build_image NAME BASE_IMAGE
  local name="$1" base="$2" ctx="$HERE/$1" image="mcp-fleet-test/$1:latest" want have t
  want="$( { echo "$base"; (cd "$ctx" && find . -type f ! -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum); } \
           | sha256sum | cut -c1-16)"
  have="$(docker image inspect -f "{{ index .Config.Labels \"$LABEL\" }}" "$image" 2>/dev/null || true)"
  if [[ "$have" == "$want" && -z "${MCP_FLEET_REBUILD:-}" ]]; then
    log "$image: up to date ($want)"
    return 0
  fi
  t=$EPOCHREALTIME
  # Legacy builder: no BuildKit/buildx needed, and FROM a local image never pulls.
  DOCKER_BUILDKIT=0 docker build --pull=false --build-arg "BASE=$base" --label "$LABEL=$want" \
    -t "$image" "$ctx" >&2
  log "$image: built in $(since "$t")"
  if ! "$HERE/smoke.sh" "$image"; then
    docker rmi -f "$image" >/dev/null 2>&1 || true
    die "$image failed its smoke check (image removed so the next run rebuilds it)"
  fi
}

main() {
  local name
  command -v docker >/dev/null 2>&1 || apt_install docker.io
  command -v python3 >/dev/null 2>&1 || apt_install python3
  timeout 10 docker info >/dev/null 2>&1 \
    || die "no Docker engine answers at DOCKER_HOST=${DOCKER_HOST:-<default>}; run: eval \"\$(scripts/engine.sh up)\""
  ensure_base
  for name in "${IMAGES[@]}"; do build_image "$name" "$BASE_IMAGE"; done
  log "all images ready in $(since "$T_ALL"): $(printf 'mcp-fleet-test/%s:latest ' "${IMAGES[@]}")"
}

main "$@"
