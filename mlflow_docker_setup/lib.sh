# Shared by start_mlflow.sh and stop_mlflow.sh (sourced, not run). Expects $ROOT.

STACK_DIR="$ROOT/mlflow_docker_setup"
LOCAL_DIR="${MLFLOW_LOCAL_DIR:-$ROOT/.mlflow-local}"
LOCAL_PORT="${MLFLOW_LOCAL_PORT:-5000}"
PID_FILE="$LOCAL_DIR/mlflow.pid"
START_TIMEOUT="${MLFLOW_START_TIMEOUT:-180}"

die() {
    echo "$(basename "$0"): $*" >&2
    exit 1
}

docker_engine_available() {
    command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1
}

stack_mode() {
    case "${MLFLOW_STACK_MODE:-auto}" in
        docker)
            docker_engine_available || die "MLFLOW_STACK_MODE=docker but no Docker engine answers: start Docker, or use MLFLOW_STACK_MODE=local"
            echo docker ;;
        local) echo local ;;
        auto) if docker_engine_available; then echo docker; else echo local; fi ;;
        *) die "MLFLOW_STACK_MODE must be docker, local or auto, not '${MLFLOW_STACK_MODE}'" ;;
    esac
}

load_stack_env() {
    set -a
    # shellcheck source=/dev/null
    source "$STACK_DIR/.env"
    set +a
}

# Compose v2 plugin when present, else the standalone v1 docker-compose.
compose() {
    if docker compose version >/dev/null 2>&1; then
        docker compose --project-directory "$STACK_DIR" -f "$STACK_DIR/docker-compose.yml" "$@"
    elif command -v docker-compose >/dev/null 2>&1; then
        docker-compose --project-directory "$STACK_DIR" -f "$STACK_DIR/docker-compose.yml" "$@"
    else
        die "neither 'docker compose' nor 'docker-compose' is installed: install the Docker Compose plugin"
    fi
}

# Healthy for long-running services, exited with 0 for the one-shot bucket job.
service_ok() {
    local id
    id="$(compose ps -q "$1" 2>/dev/null)"
    [ -n "$id" ] || return 1
    if [ "$1" = create-bucket ]; then
        [ "$(docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$id")" = "exited 0" ]
    else
        [ "$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$id")" = healthy ]
    fi
}

compose_up_and_wait() {
    if docker compose version >/dev/null 2>&1; then
        compose up -d --build --wait --wait-timeout "$START_TIMEOUT"
        return
    fi
    # docker-compose v1 has no --wait: poll the health of each service ourselves.
    compose up -d --build || return 1
    local waited=0 service pending
    while [ "$waited" -lt "$START_TIMEOUT" ]; do
        pending=0
        for service in mysql minio create-bucket mlflow nginx; do
            service_ok "$service" || pending=1
        done
        [ "$pending" -eq 0 ] && return 0
        sleep 2
        waited=$((waited + 2))
    done
    return 1
}

port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

find_mlflow() {
    if [ -x "$ROOT/.venv/bin/mlflow" ]; then
        echo "$ROOT/.venv/bin/mlflow"
    else
        command -v mlflow
    fi
}

http_ok() {
    "$(dirname "$(find_mlflow)")/python" -c \
        'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$1" 2>/dev/null
}

# True when the pid file names a live process that is still our server (not a reused pid).
local_server_running() {
    [ -f "$PID_FILE" ] || return 1
    local pid
    pid="$(cat "$PID_FILE")"
    kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "mlflow"
}

stop_local_server() {
    local pid
    pid="$(cat "$PID_FILE")"
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$PID_FILE"
}
