#!/usr/bin/env bash
# Builds the end-to-end environment, idempotently, in $E2E_CACHE (outside the clone):
# a Debian forky chroot with Python 3.14 and a venv holding Home Assistant Core and every
# package Home Assistant would otherwise pip-install at run time. Each step is skipped when
# its marker file exists (with the expected content), and each prints how long it took.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_root
t_setup=$(now)

# Packages inside the chroot. python3-venv brings python3 (3.14 on forky), and tzdata is
# for zoneinfo. libturbojpeg0 is there because the camera integration, which Home
# Assistant always loads, warns without it. g++ and python3-dev are there because
# pymicro-vad and pyspeex-noise (requirements of assist_pipeline, a default integration)
# may have no cp314 wheels on PyPI and are then compiled.
CHROOT_PACKAGES="python3 python3-venv python3-dev g++ tzdata ca-certificates libturbojpeg0"

step_start() { log "setup: $*"; t_step=$(now); }
step_done() { log "setup:   done in $(elapsed "$t_step") s"; }

mkdir -p "$E2E_CACHE"

if ! command -v debootstrap >/dev/null 2>&1; then
    step_start "apt-get install debootstrap (host)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    step_done
fi

if [ ! -e "$E2E_ROOT/.e2e-debootstrap-done" ]; then
    if [ -e "$E2E_ROOT" ]; then
        # Left over from an interrupted run. Our mounts live in private namespaces, so
        # nothing should be mounted there; check before deleting anyway.
        if grep -q " $E2E_ROOT/" /proc/mounts; then
            die "something is mounted under $E2E_ROOT; unmount it, then run again"
        fi
        log "setup: removing the incomplete chroot $E2E_ROOT"
        rm -rf --one-file-system "$E2E_ROOT"
    fi
    step_start "debootstrap $DEBIAN_SUITE (minbase) into $E2E_ROOT"
    # Debootstrap on bookworm has no script named forky; the sid script is the generic one.
    debootstrap --variant=minbase --include=ca-certificates "$DEBIAN_SUITE" "$E2E_ROOT" \
        "$DEBIAN_MIRROR" /usr/share/debootstrap/scripts/sid > "$E2E_CACHE/debootstrap.log" 2>&1 \
        || { tail -20 "$E2E_CACHE/debootstrap.log" >&2; die "debootstrap failed (log: $E2E_CACHE/debootstrap.log)"; }
    touch "$E2E_ROOT/.e2e-debootstrap-done"
    step_done
fi

# Chroot basics, rewritten on every run because they are cheap.
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$E2E_ROOT/etc/hosts"
cp -L /etc/resolv.conf "$E2E_ROOT/etc/resolv.conf" 2>/dev/null || true
# Trust the host's extra CAs, because PyPI may be reached through a TLS-inspecting proxy
# whose CA the host keeps in /usr/local/share/ca-certificates.
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
    mkdir -p "$E2E_ROOT/usr/local/share/ca-certificates"
    if ! cmp -s <(cat /usr/local/share/ca-certificates/*.crt) \
                <(cat "$E2E_ROOT"/usr/local/share/ca-certificates/*.crt 2>/dev/null); then
        cp -f /usr/local/share/ca-certificates/*.crt "$E2E_ROOT/usr/local/share/ca-certificates/"
        if [ -x "$E2E_ROOT/usr/sbin/update-ca-certificates" ]; then
            in_chroot update-ca-certificates >/dev/null 2>&1 || true
        fi
    fi
fi
# Release files of testing may be past their Valid-Until date on a mirror.
echo 'Acquire::Check-Valid-Until "false";' > "$E2E_ROOT/etc/apt/apt.conf.d/99e2e-no-valid-until"
echo 'APT::Install-Recommends "false";' > "$E2E_ROOT/etc/apt/apt.conf.d/99e2e-no-recommends"
# Package scripts must never start daemons inside the chroot.
printf '#!/bin/sh\nexit 101\n' > "$E2E_ROOT/usr/sbin/policy-rc.d"
chmod 755 "$E2E_ROOT/usr/sbin/policy-rc.d"

if [ "$(cat "$E2E_ROOT/.e2e-apt-done" 2>/dev/null)" != "$CHROOT_PACKAGES" ]; then
    step_start "apt-get install in the chroot: $CHROOT_PACKAGES"
    in_chroot apt-get update -qq
    # shellcheck disable=SC2086
    in_chroot /usr/bin/env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $CHROOT_PACKAGES >/dev/null
    in_chroot apt-get clean
    echo "$CHROOT_PACKAGES" > "$E2E_ROOT/.e2e-apt-done"
    step_done
fi

if [ ! -x "$E2E_ROOT$C_VENV/bin/python" ]; then
    step_start "python3 -m venv $C_VENV"
    in_chroot python3 -m venv "$C_VENV"
    step_done
fi

if [ "$(cat "$E2E_ROOT/.e2e-ha-done" 2>/dev/null)" != "$HA_VERSION" ]; then
    step_start "install homeassistant==$HA_VERSION into the venv (uv)"
    in_chroot "$C_VENV/bin/pip" install -q uv
    in_chroot "$C_VENV/bin/python" -m uv pip install --python "$C_VENV/bin/python" -q \
        "homeassistant==$HA_VERSION"
    rm -f "$E2E_ROOT/.e2e-requirements-done"
    echo "$HA_VERSION" > "$E2E_ROOT/.e2e-ha-done"
    step_done
fi

# Home Assistant runs in a network namespace with no way out, so it cannot pip-install
# the requirements of the integrations it loads: install them now.
mkdir -p "$E2E_ROOT/opt/e2e"
cp -f "$E2E_DIR/ha_requirements.py" "$E2E_ROOT/opt/e2e/"
in_chroot "$C_VENV/bin/python" /opt/e2e/ha_requirements.py > "$E2E_ROOT/opt/e2e/requirements.txt"
if ! cmp -s "$E2E_ROOT/opt/e2e/requirements.txt" "$E2E_ROOT/.e2e-requirements-done"; then
    step_start "install $(wc -l < "$E2E_ROOT/opt/e2e/requirements.txt") run-time requirements of Home Assistant"
    constraints="$(in_chroot "$C_VENV/bin/python" -c \
        'import homeassistant, os; print(os.path.join(os.path.dirname(homeassistant.__file__), "package_constraints.txt"))')"
    in_chroot "$C_VENV/bin/python" -m uv pip install --python "$C_VENV/bin/python" -q \
        --index-strategy unsafe-first-match --constraint "$constraints" \
        -r /opt/e2e/requirements.txt
    cp "$E2E_ROOT/opt/e2e/requirements.txt" "$E2E_ROOT/.e2e-requirements-done"
    step_done
fi
# The same test Home Assistant makes before it decides to pip-install a requirement.
in_chroot "$C_VENV/bin/python" /opt/e2e/ha_requirements.py --check \
    || die "Home Assistant's run-time requirements are not all installed"

log "setup: finished in $(elapsed "$t_setup") s (Home Assistant $HA_VERSION, $(du -sh --one-file-system "$E2E_ROOT" | cut -f1) in $E2E_ROOT)"
