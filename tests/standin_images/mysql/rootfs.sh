#!/usr/bin/env bash
# Genuine MySQL (Oracle's server and clients, as Debian packages them) in a Debian sid root
# filesystem, built once and kept in a cache outside the repository: the base of the
# mlflow-standin/mysql image (build.sh imports it) and the server tests/genuine_mysql.py
# runs on the host, chrooted. Debian's stable releases ship only MariaDB; sid ships MySQL.
#
#   bash tests/standin_images/mysql/rootfs.sh [DEST]
#
# DEST defaults to $MLFLOW_MYSQL_ROOTFS, else ~/.cache/mlflow-stack/mysql-sid-rootfs. It is
# rebuilt only when missing or when this script or debian_rootfs.sh changed. Prints, on
# stdout only: ROOTFS=<path>, MYSQL_VERSION=<Debian version of the server built, which
# sid moves on>, ROOTFS_ID=<changes with every build>. Needs root (debootstrap, chroot).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEST="${1:-${MLFLOW_MYSQL_ROOTFS:-${XDG_CACHE_HOME:-$HOME/.cache}/mlflow-stack/mysql-sid-rootfs}}"
INFO=etc/mlflow-standin-rootfs  # what was built, inside the root filesystem

# shellcheck source=tests/standin_images/debian_rootfs.sh
source "$HERE/../debian_rootfs.sh"

source_hash="$(cat "$HERE/rootfs.sh" "$HERE/../debian_rootfs.sh" | sha256sum | cut -c1-16)"

info() {  # KEY: its value in DEST's record
    sed -n "s/^$1=//p" "$DEST/$INFO" 2>/dev/null || true
}

report() {
    echo "ROOTFS=$DEST"
    echo "MYSQL_VERSION=$(info mysql_version)"
    echo "ROOTFS_ID=$(info id)"
}

build() {  # into $1
    local rootfs=$1 version
    local apt=(chroot "$rootfs" env DEBIAN_FRONTEND=noninteractive apt-get -q -o Dpkg::Use-Pty=0)
    debian_rootfs sid "$rootfs"
    # Only the server and the clients (mysql, mysqladmin, mysqldump), none of their
    # recommendations: the compose healthcheck and backups use the clients.
    { "${apt[@]}" update && "${apt[@]}" install -y --no-install-recommends mysql-server-core mysql-client; } \
        >"$rootfs.apt.log" 2>&1 || { tail -20 "$rootfs.apt.log" >&2; return 1; }
    rm -f "$rootfs.apt.log"
    # The account the server runs as (Debian creates it in mysql-server's scripts, not -core's),
    # and the mount point of a host instance's files (tests/genuine_mysql.py).
    chroot "$rootfs" groupadd --system mysql
    chroot "$rootfs" useradd --system --gid mysql --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin mysql
    mkdir -p "$rootfs/instance"
    version="$(chroot "$rootfs" dpkg-query -W -f '${Version}' mysql-server-core)"
    chroot "$rootfs" /usr/sbin/mysqld --version >&2
    chroot "$rootfs" apt-get clean
    rm -rf "$rootfs/var/lib/apt/lists/"*
    printf 'source=%s\nmysql_version=%s\nid=%s-%s\nbuilt=%s\n' "$source_hash" "$version" \
        "$version" "$(date -u +%Y%m%dT%H%M%SZ)" "$(date -u +%FT%TZ)" >"$rootfs/$INFO"
}

mkdir -p "$(dirname "$DEST")"
exec 9>"$DEST.lock"
flock 9  # one build at a time; a second caller waits and reuses it

if [ "$(info source)" = "$source_hash" ] && [ -x "$DEST/usr/sbin/mysqld" ]; then
    report
    exit 0
fi

started=$SECONDS
echo "Building a Debian sid root filesystem with genuine MySQL in $DEST (about a minute)" >&2
rm -rf "$DEST.new" "$DEST.old"
trap 'rm -rf "$DEST.new"' EXIT  # a failed build leaves nothing half-made
build "$DEST.new"
trap - EXIT
[ ! -e "$DEST" ] || mv "$DEST" "$DEST.old"
mv "$DEST.new" "$DEST"
rm -rf "$DEST.old"
echo "Built MySQL $(info mysql_version) in $DEST in $((SECONDS - started)) s" >&2
report
