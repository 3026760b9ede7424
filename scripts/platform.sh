#!/usr/bin/env bash
# Local container platform for llamacpp.cluster tests and the demo.
#
# Installs rootful podman from Debian/Ubuntu packages, configures it for hosts like
# CI's (runc runtime, explicit ulimits within the host's hard limits, iptables for
# netavark, cgroupfs when PID 1 is not systemd) and builds the local node image
# (debootstrap minbase + systemd + python3, imported without any registry).
# Idempotent: every step checks first and skips work already done.
#
# Usage: scripts/platform.sh [--rebuild-image] [--no-smoke]
set -euo pipefail

IMAGE="${LLAMACPP_NODE_IMAGE:-localhost/llamacpp-node:bookworm}"
SUITE="${LLAMACPP_NODE_SUITE:-bookworm}"
CACHE_DIR="${LLAMACPP_CLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llamacpp-cluster}"
CONF_FILE=/etc/containers/containers.conf.d/50-llamacpp-cluster.conf
# iptables is only a Suggests of podman, but netavark fails without it. For the tests:
# the shell linter of ansible-test sanity, and Debian's aarch64 GCC 12 (Arm CPU flags are
# proven against a real Arm compiler).
PACKAGES=(podman runc conmon netavark aardvark-dns iptables uidmap catatonit debootstrap shellcheck
  gcc-aarch64-linux-gnu)
# Packages baked into the node image: systemd as PID 1 and what Ansible needs.
IMAGE_PACKAGES=systemd,systemd-sysv,python3,python3-apt,sudo,dbus,iproute2,procps,ca-certificates
MIN_FREE_MIB="${LLAMACPP_MIN_FREE_MIB:-4096}"

rebuild_image=0
smoke=1
for arg in "$@"; do
  case "$arg" in
    --rebuild-image) rebuild_image=1 ;;
    --no-smoke) smoke=0 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "platform: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

log() { printf 'platform: %s\n' "$*"; }
die() { printf 'platform: error: %s\n' "$*" >&2; exit 1; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || die "must run as root or with sudo available; fix: run 'sudo $0'"
  SUDO=(sudo)
fi

command -v apt-get >/dev/null 2>&1 \
  || die "this script supports Debian/Ubuntu hosts (apt-get not found); fix: install podman and debootstrap by hand, then re-run"

check_disk() {
  mkdir -p "$CACHE_DIR"
  local free_mib
  free_mib=$(df -Pm "$CACHE_DIR" | awk 'NR==2 {print $4}')
  if [ "${free_mib:-0}" -lt "$MIN_FREE_MIB" ]; then
    die "only ${free_mib} MiB free under $CACHE_DIR (need ${MIN_FREE_MIB}); fix: free disk space or set LLAMACPP_CLUSTER_CACHE to a larger disk"
  fi
}

install_packages() {
  local missing=() pkg
  for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null | grep -qx installed || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    log "packages present: ${PACKAGES[*]}"
    return
  fi
  log "installing ${missing[*]}"
  "${SUDO[@]}" apt-get update -qq >/dev/null \
    || die "apt-get update failed; fix: check the apt sources and network, then re-run"
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "could not install ${missing[*]}; fix: make them installable with apt-get (sources, disk), then re-run"
}

write_config() {
  local cgroup_manager=cgroupfs events_logger=file nofile nproc content
  if [ -d /run/systemd/system ]; then
    cgroup_manager=systemd
    events_logger=journald
  fi
  nofile=$(ulimit -Hn)
  nproc=$(ulimit -Hu)
  [ "$nofile" = unlimited ] && nofile=1048576
  if [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; then nproc=32768; fi
  content="# Managed by llamacpp.cluster scripts/platform.sh; re-run it instead of editing.
[containers]
default_ulimits = [\"nofile=${nofile}:${nofile}\", \"nproc=${nproc}:${nproc}\"]

[engine]
runtime = \"runc\"
cgroup_manager = \"${cgroup_manager}\"
events_logger = \"${events_logger}\"

[network]
network_backend = \"netavark\"
"
  if [ -f "$CONF_FILE" ] && [ "$(cat "$CONF_FILE")" = "$(printf '%s' "$content")" ]; then
    log "podman configuration up to date: $CONF_FILE"
    return
  fi
  "${SUDO[@]}" mkdir -p "$(dirname "$CONF_FILE")"
  printf '%s' "$content" | "${SUDO[@]}" tee "$CONF_FILE.tmp" >/dev/null
  "${SUDO[@]}" mv "$CONF_FILE.tmp" "$CONF_FILE"
  log "wrote podman configuration $CONF_FILE (runc, $cgroup_manager, nofile=$nofile nproc=$nproc)"
}

debian_mirror() {
  local uri
  uri=$(grep -hoE '^(URIs:|deb) +[^ ]+' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | awk '{print $2}' | grep -E '/debian/?$' | head -n1 || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

image_recipe() {
  # Changes whenever the way the image is built changes, so an outdated image is rebuilt.
  { declare -f build_image; echo "$SUITE $IMAGE_PACKAGES"; } | sha256sum | cut -c1-16
}

build_image() {
  local recipe
  recipe=$(image_recipe)
  if [ "$rebuild_image" -eq 0 ] && "${SUDO[@]}" podman image exists "$IMAGE" \
    && [ "$("${SUDO[@]}" podman image inspect --format '{{ index .Config.Labels "llamacpp.recipe" }}' "$IMAGE")" = "$recipe" ]; then
    log "image present: $IMAGE (recipe $recipe)"
    return
  fi
  local mirror rootfs old_id
  old_id=$("${SUDO[@]}" podman image inspect --format '{{ .Id }}' "$IMAGE" 2>/dev/null || true)
  mirror=$(debian_mirror)
  rootfs=$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")
  # shellcheck disable=SC2064
  trap "${SUDO[*]} rm -rf '$rootfs'" EXIT
  log "debootstrap $SUITE from $mirror (about 90 s)"
  "${SUDO[@]}" debootstrap --variant=minbase --include="$IMAGE_PACKAGES" "$SUITE" "$rootfs" "$mirror" \
    >"$CACHE_DIR/debootstrap.log" 2>&1 \
    || die "debootstrap failed (log: $CACHE_DIR/debootstrap.log); fix: check that $mirror is reachable"
  # Each container gets its own machine-id at boot; apt caches stay out of the image.
  "${SUDO[@]}" truncate -s 0 "$rootfs/etc/machine-id"
  "${SUDO[@]}" rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  # Without package lists, make the lists look old so apt's cache_valid_time updates them.
  "${SUDO[@]}" touch -d @0 "$rootfs/var/lib/apt/lists"
  "${SUDO[@]}" tar -C "$rootfs" -c . | "${SUDO[@]}" podman import \
    --change 'CMD ["/sbin/init"]' --change 'ENV container=podman' \
    --change 'STOPSIGNAL SIGRTMIN+3' --change "LABEL llamacpp.recipe=$recipe" --quiet - "$IMAGE" >/dev/null \
    || die "podman import of $IMAGE failed; fix: check 'podman info' and re-run"
  "${SUDO[@]}" rm -rf "$rootfs"
  trap - EXIT
  # The replaced image, unless a container still uses it.
  if [ -n "$old_id" ]; then "${SUDO[@]}" podman rmi "$old_id" >/dev/null 2>&1 || true; fi
  log "built image $IMAGE (recipe $recipe)"
}

smoke_check() {
  local name="llamacpp-smoke-$$" state="" i
  "${SUDO[@]}" podman run -d --rm --name "$name" --systemd=always "$IMAGE" >/dev/null \
    || die "cannot start a container from $IMAGE; fix: see 'podman info', or re-run with --rebuild-image"
  for i in $(seq 1 60); do
    state=$("${SUDO[@]}" podman exec "$name" systemctl is-system-running 2>/dev/null || true)
    case "$state" in running|degraded) break ;; esac
    sleep 1
  done
  if [ "$state" != running ]; then
    "${SUDO[@]}" podman exec "$name" systemctl --failed --no-legend 2>/dev/null || true
    "${SUDO[@]}" podman rm -f "$name" >/dev/null 2>&1 || true
    die "a container of $IMAGE did not boot to 'running' (state: '${state:-none}'); fix: re-run with --rebuild-image"
  fi
  "${SUDO[@]}" podman rm -f -t 5 "$name" >/dev/null
  log "smoke check: systemd in a container of $IMAGE is running (after ${i} s)"
}

check_disk
install_packages
write_config
build_image
[ "$smoke" -eq 1 ] && smoke_check
log "ready (${SECONDS} s)"
