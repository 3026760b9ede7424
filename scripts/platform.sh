#!/usr/bin/env bash
# Local container platform for llamacpp.cluster tests and the demo.
#
# Installs rootful podman from Debian/Ubuntu packages, configures it for hosts like
# CI's (runc runtime, explicit ulimits within the host's hard limits, iptables for
# netavark, cgroupfs when PID 1 is not systemd) and builds the local node image
# (debootstrap minbase + systemd + python3, imported without any registry). That is all the
# demo needs. With --tests it also installs what only the test suite uses (the host
# compiler and curl, shellcheck, Debian's aarch64 GCC, qemu-user) and builds an arm64 node
# image that runs under qemu-user emulation (binfmt_misc registration with the F flag) and a
# Debian 13 (trixie) node image of the host's architecture.
# Idempotent: every step checks first and skips work already done.
#
# Usage: scripts/platform.sh [--tests] [--rebuild-image] [--no-smoke]
set -euo pipefail

IMAGE="${LLAMACPP_NODE_IMAGE:-localhost/llamacpp-node:bookworm}"
ARM_IMAGE="${LLAMACPP_NODE_ARM_IMAGE:-localhost/llamacpp-node:bookworm-arm64}"
# The second Debian release the tests run a cluster on (molecule/trixie).
TRIXIE_IMAGE="${LLAMACPP_NODE_TRIXIE_IMAGE:-localhost/llamacpp-node:trixie}"
QEMU=/usr/bin/qemu-aarch64-static
BINFMT=/proc/sys/fs/binfmt_misc
SUITE="${LLAMACPP_NODE_SUITE:-bookworm}"
CACHE_DIR="${LLAMACPP_CLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llamacpp-cluster}"
CONF_FILE=/etc/containers/containers.conf.d/50-llamacpp-cluster.conf
# iptables is only a Suggests of podman, but netavark fails without it.
PACKAGES=(podman runc conmon netavark aardvark-dns iptables uidmap catatonit debootstrap)
# For the tests only: the host's compiler (build_flags probes it) and curl (model downloads
# over loopback), the shell linter of ansible-test sanity, Debian's aarch64 GCC 12 (Arm CPU
# flags are proven against a real Arm compiler; the emulated arm64 image compiles with it),
# and qemu-user-static for the arm64 image.
TEST_PACKAGES=(gcc g++ curl openssl shellcheck gcc-aarch64-linux-gnu g++-aarch64-linux-gnu qemu-user-static
  chromium chromium-driver)
# Packages baked into the node image: systemd as PID 1 and what Ansible needs.
IMAGE_PACKAGES=systemd,systemd-sysv,python3,python3-apt,sudo,dbus,iproute2,procps,ca-certificates
# The emulated arm64 image also carries the build role's packages (roles/build/vars/Debian.yml):
# apt under qemu takes minutes a run, and installing packages is proven on the native nodes.
EMULATED_BUILD_PACKAGES=build-essential,cmake,ninja-build,ccache,git,libssl-dev,libgomp1
# Where that image keeps the cross compiler it compiles with (embed_cross_compiler).
CROSS_DIR=/opt/llamacpp-cross
MIN_FREE_MIB="${LLAMACPP_MIN_FREE_MIB:-4096}"

rebuild_image=0
smoke=1
tests=0
for arg in "$@"; do
  case "$arg" in
    --tests) tests=1 ;;
    --rebuild-image) rebuild_image=1 ;;
    --no-smoke) smoke=0 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
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
  # Changes whenever the way an image is built changes, so an outdated image is rebuilt.
  { declare -f build_image emulation_fixes embed_cross_compiler; echo "$SUITE $IMAGE_PACKAGES $1"; } \
    | sha256sum | cut -c1-16
}

register_binfmt() {
  # Runs arm64 binaries through qemu; F (fix binary) opens the interpreter at registration,
  # so it works inside containers that do not have it.
  [ -x "$QEMU" ] || die "$QEMU is missing; fix: apt-get install qemu-user-static"
  if [ ! -e "$BINFMT/register" ]; then
    "${SUDO[@]}" mount -t binfmt_misc binfmt_misc "$BINFMT" \
      || die "cannot mount binfmt_misc on $BINFMT; fix: modprobe binfmt_misc (the kernel must allow it), then re-run"
  fi
  local entry="$BINFMT/qemu-aarch64"
  if [ -e "$entry" ] && grep -qx enabled "$entry" && grep -qx "interpreter $QEMU" "$entry" \
    && grep -q '^flags: .*F' "$entry"; then
    log "binfmt_misc: qemu-aarch64 registered ($(grep '^flags' "$entry"))"
    return
  fi
  [ -e "$entry" ] && echo -1 | "${SUDO[@]}" tee "$entry" >/dev/null
  printf '%s' ':qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:'"$QEMU"':F' \
    | "${SUDO[@]}" tee "$BINFMT/register" >/dev/null \
    || die "could not register qemu-aarch64 in binfmt_misc; fix: check dmesg, then re-run"
  log "binfmt_misc: registered $QEMU for aarch64 ELF (flags F)"
}

emulation_fixes() {
  # systemd 252 under qemu-user: LoadCredential= fails (243/CREDENTIALS), so the early-boot
  # units that ask for credentials get them switched off.
  local rootfs=$1 unit
  for unit in systemd-sysusers systemd-tmpfiles-setup systemd-tmpfiles-setup-dev systemd-tmpfiles-clean \
    systemd-sysctl systemd-firstboot; do
    "${SUDO[@]}" mkdir -p "$rootfs/etc/systemd/system/$unit.service.d"
    printf '[Service]\nLoadCredential=\n' | "${SUDO[@]}" tee "$rootfs/etc/systemd/system/$unit.service.d/50-no-credentials.conf" >/dev/null
  done
}

embed_cross_compiler() {
  # Under qemu-user, GCC compiles about 10 times slower than natively (ggml-cpu's ops.cpp: 82 s
  # against 9 s): a cold build of the RPC server took over 25 minutes. So the emulated image
  # compiles with Debian's aarch64 cross GCC 12 - the same GCC 12.2 as the image's own gcc,
  # built to run on x86_64 - copied from this host into $CROSS_DIR with the x86_64 libraries it
  # loads (x86_64 programs run natively in the container). /usr/local/bin/cc and c++ come first
  # on PATH, so CMake and the build_flags probe take it: same flags, same aarch64 code, at native
  # speed. Everything else (cmake, ninja, ccache, the tests, rpc-server) runs emulated.
  local rootfs=$1 packages lib pair
  # The compiler, its binutils and its runtime libraries; not its C library: the image's own
  # glibc headers and libraries (/usr/include/aarch64-linux-gnu, /usr/lib/aarch64-linux-gnu),
  # which this GCC searches too, are what the binaries link against.
  packages=$(dpkg-query -W -f='${Package}\n' \
    | grep -E '^(g(cc|\+\+)(-12)?|cpp(-12)?|binutils)-aarch64-linux-gnu(-base)?$|-arm64-cross$' \
    | grep -vE '^(libc6|libc6-dev|linux-libc-dev)-arm64-cross$' || true)
  [ -n "$packages" ] || die "Debian's aarch64 cross compiler is not installed; fix: apt-get install g++-aarch64-linux-gnu"
  "${SUDO[@]}" mkdir -p "$rootfs$CROSS_DIR"
  # shellcheck disable=SC2086
  dpkg -L $packages | sort -u | while IFS= read -r f; do
    if [ -L "$f" ] || [ -f "$f" ]; then printf '%s\0' "${f#/}"; fi
  done | "${SUDO[@]}" tar -C / --null --no-recursion -T - -cf - | "${SUDO[@]}" tar -C "$rootfs$CROSS_DIR" -xf -
  # The x86_64 loader and libraries of those programs, where the loader looks for them.
  "${SUDO[@]}" mkdir -p "$rootfs/usr/lib/x86_64-linux-gnu" "$rootfs/usr/lib64"
  [ -e "$rootfs/lib64" ] || "${SUDO[@]}" ln -s usr/lib64 "$rootfs/lib64"
  # shellcheck disable=SC2086
  for lib in $(dpkg -L $packages | sort -u | while IFS= read -r f; do
      if [ -f "$f" ] && [ ! -L "$f" ] && { [ -x "$f" ] || [[ "$f" == *.so* ]]; }; then ldd "$f" 2>/dev/null || true; fi
    done | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u); do
    "${SUDO[@]}" cp -L "$lib" "$rootfs/usr/lib/x86_64-linux-gnu/$(basename "$lib")"
  done
  "${SUDO[@]}" cp -L /lib64/ld-linux-x86-64.so.2 "$rootfs/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
  "${SUDO[@]}" ln -sf ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$rootfs/usr/lib64/ld-linux-x86-64.so.2"
  "${SUDO[@]}" mkdir -p "$rootfs/usr/local/bin"
  for pair in cc:gcc gcc:gcc c++:g++ g++:g++; do
    "${SUDO[@]}" ln -sf "$CROSS_DIR/usr/bin/aarch64-linux-gnu-${pair#*:}-12" "$rootfs/usr/local/bin/${pair%%:*}"
  done
  "${SUDO[@]}" chroot "$rootfs" /usr/local/bin/c++ --version >/dev/null \
    || die "the cross compiler copied into the arm64 image does not run there; see $rootfs$CROSS_DIR"
}

build_image() {
  # build_image IMAGE ARCH STOPSIGNAL
  local image=$1 arch=$2 stopsignal=$3 recipe packages=$IMAGE_PACKAGES emulated=0
  if [ "$arch" != "$(dpkg --print-architecture)" ]; then
    emulated=1
    packages="$packages,$EMULATED_BUILD_PACKAGES"
  fi
  recipe=$(image_recipe "$arch $stopsignal $packages")
  if [ "$rebuild_image" -eq 0 ] && "${SUDO[@]}" podman image exists "$image" \
    && [ "$("${SUDO[@]}" podman image inspect --format '{{ index .Config.Labels "llamacpp.recipe" }}' "$image")" = "$recipe" ]; then
    log "image present: $image (recipe $recipe)"
    return
  fi
  local mirror rootfs old_id
  old_id=$("${SUDO[@]}" podman image inspect --format '{{ .Id }}' "$image" 2>/dev/null || true)
  mirror=$(debian_mirror)
  rootfs=$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")
  # shellcheck disable=SC2064
  trap "${SUDO[*]} rm -rf '$rootfs'" EXIT
  log "debootstrap $SUITE/$arch from $mirror (about 90 s; 6 minutes emulated, with the build packages)"
  "${SUDO[@]}" debootstrap --arch="$arch" --variant=minbase --include="$packages" "$SUITE" "$rootfs" "$mirror" \
    >"$CACHE_DIR/debootstrap-$arch.log" 2>&1 \
    || die "debootstrap failed (log: $CACHE_DIR/debootstrap-$arch.log); fix: check that $mirror is reachable"
  if [ "$emulated" -eq 1 ]; then
    emulation_fixes "$rootfs"
    embed_cross_compiler "$rootfs"
  fi
  # Each container gets its own machine-id at boot; apt caches stay out of the image.
  "${SUDO[@]}" truncate -s 0 "$rootfs/etc/machine-id"
  "${SUDO[@]}" rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  # Without package lists, make the lists look old so apt's cache_valid_time updates them.
  "${SUDO[@]}" touch -d @0 "$rootfs/var/lib/apt/lists"
  "${SUDO[@]}" tar -C "$rootfs" -c . | "${SUDO[@]}" podman import --arch "$arch" \
    --change 'CMD ["/sbin/init"]' --change 'ENV container=podman' \
    --change "STOPSIGNAL $stopsignal" --change "LABEL llamacpp.recipe=$recipe" --quiet - "$image" >/dev/null \
    || die "podman import of $image failed; fix: check 'podman info' and re-run"
  "${SUDO[@]}" rm -rf "$rootfs"
  trap - EXIT
  # The replaced image, unless a container still uses it.
  if [ -n "$old_id" ]; then "${SUDO[@]}" podman rmi "$old_id" >/dev/null 2>&1 || true; fi
  log "built image $image (recipe $recipe)"
}

smoke_check() {
  # smoke_check IMAGE ARCH SECONDS: a container of IMAGE must boot systemd to "running".
  local image=$1 arch=$2 limit=$3 name="llamacpp-smoke-$$" state="" i
  "${SUDO[@]}" podman run -d --rm --arch "$arch" --name "$name" --systemd=always "$image" >/dev/null \
    || die "cannot start a container from $image; fix: see 'podman info', or re-run with --rebuild-image"
  for i in $(seq 1 "$limit"); do
    # Under emulation systemctl may run before systemd listens: wait for its socket first.
    if "${SUDO[@]}" podman exec "$name" test -S /run/systemd/private 2>/dev/null; then
      state=$("${SUDO[@]}" podman exec "$name" systemctl is-system-running 2>/dev/null || true)
      case "$state" in running|degraded) break ;; esac
    fi
    sleep 1
  done
  if [ "$state" != running ]; then
    "${SUDO[@]}" podman exec "$name" systemctl --failed --no-legend 2>/dev/null || true
    "${SUDO[@]}" podman rm -f "$name" >/dev/null 2>&1 || true
    die "a container of $image did not boot to 'running' (state: '${state:-none}'); fix: re-run with --rebuild-image"
  fi
  "${SUDO[@]}" podman rm -f -t 10 "$name" >/dev/null
  log "smoke check: systemd in a container of $image is running (after ${i} s)"
}

check_disk
if [ "$tests" -eq 1 ]; then PACKAGES+=("${TEST_PACKAGES[@]}"); fi
install_packages
write_config
build_image "$IMAGE" "$(dpkg --print-architecture)" 'SIGRTMIN+3'
if [ "$smoke" -eq 1 ]; then
  smoke_check "$IMAGE" "$(dpkg --print-architecture)" 60
fi
if [ "$tests" -eq 0 ]; then
  log "ready for the demo (${SECONDS} s); 'scripts/platform.sh --tests' adds what the test suite needs"
  exit 0
fi
# The molecule scenarios mount these compiler caches into their builders.
mkdir -p "$CACHE_DIR/ccache/bookworm" "$CACHE_DIR/ccache/bookworm-arm64" "$CACHE_DIR/ccache/trixie"
# Debian 13 nodes, native (molecule/trixie): the same recipe with the other release.
SUITE=trixie build_image "$TRIXIE_IMAGE" "$(dpkg --print-architecture)" 'SIGRTMIN+3'
if [ "$smoke" -eq 1 ]; then
  smoke_check "$TRIXIE_IMAGE" "$(dpkg --print-architecture)" 60
fi
if [ "$(dpkg --print-architecture)" = arm64 ]; then
  # Native: registering qemu here would capture the host's own binaries.
  build_image "$ARM_IMAGE" arm64 'SIGRTMIN+3'
else
  register_binfmt
  # qemu-user shifts real-time signals: systemd in the emulated image halts on SIGRTMIN+5.
  build_image "$ARM_IMAGE" arm64 'SIGRTMIN+5'
fi
if [ "$smoke" -eq 1 ]; then
  smoke_check "$ARM_IMAGE" arm64 180
fi
log "ready (${SECONDS} s)"
