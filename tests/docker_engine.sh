# A Docker engine for the docker tests (sourced by tests/run.sh, not run).
#
# Where one answers, it is used as it is. In CI (CI=true), or with
# MLFLOW_TEST_DOCKER=install, a machine without one gets Debian's docker.io, and dockerd
# is started here and stopped when the tests end: only that daemon, never one found
# running. Compose v2 (the `docker compose` plugin) comes from Debian trixie's
# docker-compose package, unpacked beside the CLI without touching apt's sources, so both
# compose paths (v2's `up --wait`, v1's polling) are tested.

# shellcheck source=tests/apt_mirror.sh
source "$(dirname "${BASH_SOURCE[0]}")/apt_mirror.sh"

DOCKERD_PID=""
DOCKER_STATE="/var/cache/mlflow-tests"

docker_answers() {
    command -v docker >/dev/null 2>&1 && timeout 20 docker info >/dev/null 2>&1
}

install_compose_v2() {
    docker compose version >/dev/null 2>&1 && return
    local work="$DOCKER_STATE/compose-v2" mirror
    mirror="$(apt_mirror)"
    mkdir -p "$work/sources" "$work/lists/partial" "$work/cache/archives/partial"
    printf 'Types: deb\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "${mirror:-http://deb.debian.org/debian}" >"$work/sources/trixie.sources"
    local apt_options=(-o Dir::Etc::sourcelist=/dev/null -o Dir::Etc::sourceparts="$work/sources"
                       -o Dir::State::lists="$work/lists" -o Dir::Cache="$work/cache")
    echo "Installing the compose v2 plugin (Debian trixie's docker-compose 2.26.1)"
    if apt-get "${apt_options[@]}" update -qq >"$work/apt.log" 2>&1 \
        && (cd "$work" && apt-get "${apt_options[@]}" download docker-compose=2.26.1-4 >>"$work/apt.log" 2>&1); then
        dpkg-deb -x "$work"/docker-compose_2.26.1-4_*.deb "$work/unpacked"
        install -D -m 755 "$work/unpacked/usr/libexec/docker/cli-plugins/docker-compose" \
            /usr/local/lib/docker/cli-plugins/docker-compose
    elif [ "${CI:-}" = true ]; then
        echo "Could not fetch compose v2 (see $work/apt.log): CI tests both compose start paths, so it stops here" >&2
        return 1
    else
        echo "Could not fetch compose v2 (see $work/apt.log): the docker tests use docker-compose v1 only" >&2
    fi
}

stop_started_dockerd() {
    [ -n "$DOCKERD_PID" ] || return 0
    echo "Stopping the Docker engine the tests started (pid $DOCKERD_PID)"
    kill "$DOCKERD_PID" 2>/dev/null || true
    for _ in $(seq 1 60); do
        kill -0 "$DOCKERD_PID" 2>/dev/null || return 0
        sleep 1
    done
    kill -9 "$DOCKERD_PID" 2>/dev/null || true
}

# Prints nothing and changes nothing where an engine answers and no install is asked for.
prepare_docker_engine() {
    if ! docker_answers; then
        if [ "${CI:-}" != true ] && [ "${MLFLOW_TEST_DOCKER:-}" != install ]; then
            echo "No Docker engine answers: the docker tests will be skipped (CI=true or MLFLOW_TEST_DOCKER=install installs and starts one)"
            return
        fi
        command -v dockerd >/dev/null 2>&1 || install_system_packages docker.io
        mkdir -p "$DOCKER_STATE"
        echo "Starting a Docker engine for the tests (log: $DOCKER_STATE/dockerd.log)"
        dockerd >"$DOCKER_STATE/dockerd.log" 2>&1 &
        DOCKERD_PID=$!
        for _ in $(seq 1 60); do
            docker_answers && break
            kill -0 "$DOCKERD_PID" 2>/dev/null || break
            sleep 1
        done
        docker_answers || { tail -20 "$DOCKER_STATE/dockerd.log" >&2; echo "dockerd did not start" >&2; return 1; }
    fi
    command -v debootstrap >/dev/null 2>&1 || install_system_packages debootstrap
    command -v docker-compose >/dev/null 2>&1 || install_system_packages docker-compose
    install_compose_v2
}
