#!/usr/bin/env bash
# The one test command (README, CI): installs what the tests need on a Debian machine,
# builds the pinned Python environment in .venv, then runs pytest with any arguments
# given, e.g. `bash tests/run.sh -m "not notebooks"`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# System packages: MariaDB and nginx for the no-Docker twin of the stack, docker-compose
# to validate the compose file, envsubst (gettext-base) to check the nginx template,
# Chromium and its driver for the browser tests.
system_packages=(mariadb-server nginx docker-compose gettext-base chromium chromium-driver)
missing=()
for package in "${system_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "Installing system packages: ${missing[*]}"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Python environment, rebuilt only when requirements.txt changed.
if [ ! -x .venv/bin/python ]; then
    python3.11 -m venv .venv 2>/dev/null || python3 -m venv .venv
fi
stamp=.venv/.requirements.sha256
if ! sha256sum --status -c "$stamp" 2>/dev/null; then
    .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
    sha256sum requirements.txt pyproject.toml >"$stamp"
fi

exec .venv/bin/python -m pytest "$@"
