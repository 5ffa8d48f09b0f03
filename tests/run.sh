#!/usr/bin/env bash
# The one test command (README, docs/tests.md, CI): installs what the tests need on a Debian machine,
# builds the pinned Python environment in .venv, prepares a Docker engine for the docker
# tests (see tests/docker_engine.sh), then runs pytest with any arguments given,
# e.g. `bash tests/run.sh -m "not notebooks"`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

install_system_packages() {
    local missing=() package sudo=""
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    [ "${#missing[@]}" -gt 0 ] || return 0
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "Installing system packages: ${missing[*]}"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# MariaDB and nginx for the no-Docker twin of the stack, docker-compose to validate the
# compose file, envsubst (gettext-base) to check the nginx template, Chromium and its
# driver for the browser tests.
install_system_packages mariadb-server nginx docker-compose gettext-base chromium chromium-driver

# The tests run in this checkout's own .venv, whatever MLFLOW_VENV says.
unset MLFLOW_VENV
# shellcheck source=scripts/python_env.sh
source scripts/python_env.sh
ensure_python_env

# shellcheck source=tests/docker_engine.sh
source tests/docker_engine.sh
trap stop_started_dockerd EXIT
prepare_docker_engine

status=0
# The slowest tests of every run, to spot start-ups paid more than once (docs/tests.md).
.venv/bin/python -m pytest --durations=15 "$@" || status=$?
exit "$status"
