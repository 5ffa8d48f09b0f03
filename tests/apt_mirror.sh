# apt_mirror: the Debian mirror apt already uses (the first URIs: or deb line of its
# sources), for fetching from the same place outside apt's own lists. Sourced, not run.
apt_mirror() {
    cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
        | awk '/^URIs:/ { print $2; exit } /^deb / { print $2; exit }' || true
}
