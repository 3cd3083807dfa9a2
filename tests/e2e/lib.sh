# Shared settings and helpers for scripts/e2e-ha and scripts/demo-screenshots (sourced).
# shellcheck shell=bash

E2E_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# The runner's Python files are run from the clone; keep bytecode out of it.
export PYTHONDONTWRITEBYTECODE=1
REPO_DIR="$(cd "$E2E_DIR/../.." && pwd)"

# Downloads and the Debian chroot live outside the clone, so a fresh clone reuses them.
E2E_CACHE="${ROAMCORE_E2E_CACHE:-${XDG_CACHE_HOME:-/var/cache}/roamcore-e2e}"
E2E_ROOT="$E2E_CACHE/root"

# Home Assistant Core 2026.3 and later require Python >= 3.14.2 (the wheel's
# Requires-Python). Debian forky (testing) ships python3 3.14; bookworm and trixie do not.
HA_VERSION="${HA_VERSION:-2026.11.0}"
DEBIAN_SUITE="${DEBIAN_SUITE:-forky}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

# Paths inside the chroot.
C_VENV=/opt/ha-venv

log() { printf '[e2e %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

require_root() {
    [ "$(id -u)" = 0 ] || die "must run as root: it builds a chroot and creates network namespaces"
}

# Runs a command inside the chroot in a private mount namespace, so the /proc, /sys and
# /dev mounts disappear with the command and nothing stays mounted under $E2E_ROOT.
in_chroot() {
    unshare --mount --propagation private -- /bin/sh -c '
        root="$1"; shift
        mount -t proc proc "$root/proc" || exit 90
        mount --bind -o ro /sys "$root/sys" 2>/dev/null || true
        mount -t tmpfs -o mode=1777 tmpfs "$root/dev/shm" || true
        mount -t devpts -o newinstance,ptmxmode=0666 devpts "$root/dev/pts" 2>/dev/null || true
        exec chroot "$root" /usr/bin/env -i \
            PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
            HOME=/root LANG=C.UTF-8 TZ=UTC \
            SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
            PIP_DISABLE_PIP_VERSION_CHECK=1 "$@"
    ' sh "$E2E_ROOT" "$@"
}

# Runs a command as the first process of a new PID namespace inside a new network
# namespace that has nothing but its own loopback. Multicast is routed to the loopback,
# because Home Assistant's zeroconf must join its multicast groups or every aiohttp
# client session fails. Its mDNS packets then stay inside the namespace.
# When the command exits, the kernel kills every process left in the PID namespace, and
# the network namespace is deleted.
run_in_test_namespace() {
    local netns="roamcore-e2e-$$" status=0
    ip netns add "$netns"
    # shellcheck disable=SC2064
    trap "ip netns delete '$netns' 2>/dev/null || true" EXIT
    ip -n "$netns" link set lo up multicast on
    ip -n "$netns" route add 224.0.0.0/4 dev lo
    ip -n "$netns" -6 route add ff00::/8 dev lo table local 2>/dev/null || true
    ip netns exec "$netns" unshare --pid --fork --kill-child --mount-proc "$@" || status=$?
    ip netns delete "$netns" 2>/dev/null || true
    trap - EXIT
    return "$status"
}
