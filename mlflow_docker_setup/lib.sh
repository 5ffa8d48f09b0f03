# Shared by start_mlflow.sh and stop_mlflow.sh (sourced, not run). Expects $ROOT.

STACK_DIR="$ROOT/mlflow_docker_setup"
SECRETS_DIR="$STACK_DIR/secrets"  # generated per checkout, git-ignored (stack_secrets.py)
LOCAL_DIR="${MLFLOW_LOCAL_DIR:-$ROOT/.mlflow-local}"
LOCAL_PORT="${MLFLOW_LOCAL_PORT:-5000}"
PID_FILE="$LOCAL_DIR/mlflow.pid"
START_TIMEOUT="${MLFLOW_START_TIMEOUT:-180}"
SERVICES=(mysql minio create-bucket mlflow nginx)
ONE_SHOT_JOBS=(create-bucket create-auth-database setup-read-replica)

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

# NAME=value lines of a file, exported unless the variable is already in the environment
# (as compose does); with --check, only checked. A line that is not NAME=value stops the
# script, naming the line but not quoting it (secrets/stack.env holds passwords). As
# compose reads them: a Windows line end and one pair of surrounding quotes are no part
# of the value.
load_env_file() {
    local file="$1" check="${2:-}" line name value number=0
    local where="${file#"$ROOT/"}"
    [ -r "$file" ] || die "$where is missing or unreadable: restore it (git checkout -- $where)"
    while IFS= read -r line || [ -n "$line" ]; do
        number=$((number + 1))
        line="${line%$'\r'}"
        case "$line" in ''|'#'*) continue ;; esac
        name="${line%%=*}"
        [[ "$line" == *=* && "$name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] \
            || die "$where line $number is not NAME=value (or a # comment): fix or remove that line"
        value="${line#*=}"
        if [[ "$value" =~ ^\"(.*)\"$ || "$value" =~ ^\'(.*)\'$ ]]; then
            value="${BASH_REMATCH[1]}"
        fi
        [ -n "$check" ] || [ -n "${!name+set}" ] || export "$name=$value"
    done <"$file"
}

# The stack's settings from .env, then its generated secrets (once start_mlflow.sh has
# made them); a variable already in the environment wins.
load_stack_env() {
    load_env_file "$STACK_DIR/.env"
    [ ! -f "$SECRETS_DIR/stack.env" ] || load_env_file "$SECRETS_DIR/stack.env"
    case "${MLFLOW_SHARE:-0}" in
        0|1) ;;
        *) die "MLFLOW_SHARE must be 0 (local only) or 1 (shared: HTTPS and sign-in), not '${MLFLOW_SHARE}'" ;;
    esac
    # In start-up order: each service waits for those before it.
    SERVICES=(mysql minio create-bucket)
    if sharing; then
        SERVICES+=(create-auth-database)
    fi
    case "${MLFLOW_READ_REPLICA:-0}" in
        0) ;;
        1) SERVICES+=(mysql-replica setup-read-replica) ;;
        *) die "MLFLOW_READ_REPLICA must be 0 (one database) or 1 (a read replica beside it), not '${MLFLOW_READ_REPLICA}'" ;;
    esac
    SERVICES+=(mlflow nginx)
    [[ "${MLFLOW_SERVER_REPLICAS:-1}" =~ ^[1-9][0-9]*$ ]] \
        || die "MLFLOW_SERVER_REPLICAS must be a whole number of MLflow servers, 1 or more, not '${MLFLOW_SERVER_REPLICAS}'"
}

sharing() {
    [ "${MLFLOW_SHARE:-0}" = 1 ]
}

# One compose project per checkout: its folder name and a hash of its path, so that two
# clones never share containers, networks, volumes or image tags. Overridable.
project_name() {
    local base hash
    base="$(basename "$ROOT" | tr '[:upper:]' '[:lower:]' | tr -c 'a-z0-9_\n-' '-')"
    hash="$(printf '%s' "$ROOT" | sha256sum | cut -c1-8)"
    echo "mlflow-${base}-${hash}"
}
export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-$(project_name)}"

# Compose v2 (the docker CLI plugin) when present, else the standalone v1 docker-compose;
# MLFLOW_COMPOSE=v1|v2 picks one.
compose_version() {
    case "${MLFLOW_COMPOSE:-auto}" in
        v2) docker compose version >/dev/null 2>&1 || die "MLFLOW_COMPOSE=v2 but 'docker compose' is not installed"; echo v2 ;;
        v1) command -v docker-compose >/dev/null 2>&1 || die "MLFLOW_COMPOSE=v1 but 'docker-compose' is not installed"; echo v1 ;;
        auto)
            if docker compose version >/dev/null 2>&1; then echo v2
            elif command -v docker-compose >/dev/null 2>&1; then echo v1
            else die "neither 'docker compose' nor 'docker-compose' is installed: install the Docker Compose plugin"
            fi ;;
        *) die "MLFLOW_COMPOSE must be v1, v2 or auto, not '${MLFLOW_COMPOSE}'" ;;
    esac
}

# Resolved once by the script that uses compose (use_compose), not on every call: the
# health-polling loop calls compose several times a second.
use_compose() {
    COMPOSE_CLI="$(compose_version)" || exit 1
}

compose() {
    local files=(-f "$STACK_DIR/docker-compose.yml")
    if sharing; then
        files+=(-f "$STACK_DIR/docker-compose.share.yml")
    fi
    if [ "${MLFLOW_READ_REPLICA:-0}" = 1 ]; then
        files+=(-f "$STACK_DIR/docker-compose.read-replica.yml")
    fi
    if [ "${COMPOSE_CLI:?call use_compose first}" = v2 ]; then
        docker compose --project-directory "$STACK_DIR" "${files[@]}" "$@"
    else
        docker-compose --project-directory "$STACK_DIR" "${files[@]}" "$@"
    fi
}

# What this checkout's project has in the engine, found by compose's labels.
project_containers() {
    docker ps -aq --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME"
}
project_volumes() {
    docker volume ls -q --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME"
}
# The MLflow image compose built for this project (docker-compose.yml tags it so).
project_images() {
    docker images --format '{{.Repository}}:{{.Tag}}' \
        --filter "reference=mlflow-tracking-server:*-$COMPOSE_PROJECT_NAME"
}

# One running container of a service, or nothing: of the mlflow service any replica serves
# (they share the database and the artifact store). compose v1's ps lists stopped ones too.
running_container() {
    local id
    for id in $(compose ps -q "$1" 2>/dev/null); do
        if [ "$(docker inspect -f '{{.State.Running}}' "$id" 2>/dev/null)" = true ]; then
            echo "$id"
            return
        fi
    done
}

# Healthy for long-running services, exited with 0 for the one-shot jobs; every
# container of the service (the mlflow service has MLFLOW_SERVER_REPLICAS).
service_ok() {
    local ids state
    ids="$(compose ps -a -q "$1" 2>/dev/null)"
    [ -n "$ids" ] || return 1
    while read -r state; do
        if [[ " ${ONE_SHOT_JOBS[*]} " == *" $1 "* ]]; then
            [[ "$state" == "exited 0 "* ]] || return 1
        else
            [[ "$state" == *" healthy" ]] || return 1
        fi
    # shellcheck disable=SC2086  # one argument per container id
    done < <(docker inspect -f '{{.State.Status}} {{.State.ExitCode}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' $ids)
}

# A service that can no longer become healthy: one of its containers crashed and is
# restarting, or a one-shot job failed. Waiting on it would only run out the clock.
service_failed() {
    local ids state
    ids="$(compose ps -a -q "$1" 2>/dev/null)"
    [ -n "$ids" ] || return 1
    while read -r state; do
        case "$state" in
            "exited 0 "*) ;;
            exited*|dead*|restarting*) return 0 ;;
            *) [ "${state##* }" -gt 0 ] && return 0 ;;
        esac
    # shellcheck disable=SC2086  # one argument per container id
    done < <(docker inspect -f '{{.State.Status}} {{.State.ExitCode}} {{.RestartCount}}' $ids)
    return 1
}

wait_until_healthy() {
    local waited=0 service pending
    while [ "$waited" -lt "$START_TIMEOUT" ]; do
        pending=0
        for service in "${SERVICES[@]}"; do
            service_failed "$service" && return 1
            service_ok "$service" || pending=1
        done
        [ "$pending" -eq 0 ] && return 0
        sleep 1
        waited=$((waited + 1))
    done
    return 1
}

# Up with REPLICAS MLflow servers, and wait until every service is healthy.
compose_up_scaled() {
    if [ "$COMPOSE_CLI" = v2 ]; then
        compose up -d --remove-orphans --scale "mlflow=$1" --wait --wait-timeout "$START_TIMEOUT"
    else
        # docker-compose v1 has no --wait: poll the health of each service ourselves.
        compose up -d --remove-orphans --scale "mlflow=$1" && wait_until_healthy
    fi
}

# MLFLOW_SERVER_REPLICAS servers behind nginx. A stack not yet running starts with one
# first: a server's start-up creates or migrates the database's schema (MLFLOW_DB_UPGRADE)
# and, when shared, the first admin, and two servers doing that at once would collide.
compose_up_and_wait() {
    local replicas="${MLFLOW_SERVER_REPLICAS:-1}"
    if [ "$replicas" -gt 1 ] && [ -z "$(compose ps -q mlflow 2>/dev/null)" ]; then
        compose_up_scaled 1 || return 1
    fi
    compose_up_scaled "$replicas"
}

port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
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
    rm -rf "$LOCAL_DIR/run"
}
