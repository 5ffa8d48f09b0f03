# debian_rootfs SUITE DEST: a minimal Debian root filesystem (debootstrap --variant=minbase)
# of SUITE in DEST, fetched from the machine's own Debian mirror, with apt inside set up as
# here; no downloaded packages or package lists left in it. Sourced, not run; needs root.
# Used by build.sh (the stand-in images' bookworm and sid bases) and mysql/rootfs.sh (genuine MySQL).

# shellcheck source=tests/apt_mirror.sh
source "$(dirname "${BASH_SOURCE[0]}")/../apt_mirror.sh"

debian_rootfs() {
    local suite=$1 dest=$2 mirror codename=""
    command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install debootstrap" >&2; return 1; }
    mirror="$(apt_mirror)"
    mirror="${mirror:-http://deb.debian.org/debian}"
    mkdir -p "$dest"
    debootstrap --variant=minbase "$suite" "$dest" "$mirror" >"$dest.debootstrap.log" 2>&1 \
        || { tail -20 "$dest.debootstrap.log" >&2; return 1; }
    rm -f "$dest.debootstrap.log"
    # The machine's own apt sources where they are for the same release (debootstrap's
    # single line for SUITE otherwise), and its apt settings.
    codename="$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")"
    if [ "$suite" = "$codename" ]; then
        if [ -d /etc/apt/sources.list.d ]; then
            cp -r /etc/apt/sources.list.d "$dest/etc/apt/"
            find "$dest/etc/apt/sources.list.d" -name '*.disabled*' -delete
        fi
        if [ -f /etc/apt/sources.list ]; then cp /etc/apt/sources.list "$dest/etc/apt/"; fi
    fi
    cp /etc/apt/apt.conf.d/99artifact-registry "$dest/etc/apt/apt.conf.d/" 2>/dev/null || true
    # sid's Release file is not refreshed on this machine's mirror: apt would call it expired.
    if [ "$suite" = sid ]; then
        echo 'Acquire::Check-Valid-Until "false";' >"$dest/etc/apt/apt.conf.d/99mlflow-sid-valid-until"
    fi
    rm -rf "$dest/var/cache/apt/archives/"*.deb "$dest/var/lib/apt/lists/"*
}
