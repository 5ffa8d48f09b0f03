#!/usr/bin/env bash
# Start the MLflow tracking stack.
#
# With a Docker engine: the compose stack in mlflow_docker_setup/ (MySQL, MinIO, the
# bucket job, MLflow, nginx); returns once every service is healthy and prints the URLs.
# Without one: a local MLflow server from the same serve.sh, with a SQLite backend store
# and artifacts on disk under .mlflow-local/ (durable across stop and start).
#
# MLFLOW_STACK_MODE=docker|local forces a mode; MLFLOW_LOCAL_PORT (5000) and
# MLFLOW_LOCAL_DIR (.mlflow-local) configure local mode.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=mlflow_docker_setup/lib.sh
source "$ROOT/mlflow_docker_setup/lib.sh"

start_docker() {
    load_stack_env
    if [ -z "$(compose ps -q nginx 2>/dev/null)" ]; then
        for var in NGINX_PORT MINIO_API_PORT MINIO_CONSOLE_PORT; do
            if port_busy "${!var}"; then
                die "port ${!var} ($var) is in use by another program: stop it, or set $var in mlflow_docker_setup/.env"
            fi
        done
    fi
    export MLFLOW_LAN_HOSTNAME="${MLFLOW_LAN_HOSTNAME:-$(hostname)}"
    echo "Starting the tracking stack with Docker (this builds the MLflow image the first time)..."
    if ! compose_up_and_wait; then
        echo "The stack did not become healthy. Service states and logs of the failing ones:" >&2
        compose ps >&2 || true
        for service in mysql minio create-bucket mlflow nginx; do
            if ! service_ok "$service"; then
                echo "----- $service -----" >&2
                compose logs --tail=40 "$service" >&2 || true
            fi
        done
        die "start-up failed; fix the service named above and run start_mlflow.sh again"
    fi
    cat <<EOF
Tracking stack is up.
  MLflow UI and API : http://localhost:${NGINX_PORT}/   (clients: mlflow.set_tracking_uri("http://localhost"))
  MinIO console     : http://localhost:${MINIO_CONSOLE_PORT}/   (login ${MINIO_ROOT_USER} / see MINIO_ROOT_PASSWORD in mlflow_docker_setup/.env)
  MinIO S3 API      : http://localhost:${MINIO_API_PORT}
Stop it with: bash stop_mlflow.sh (data is kept)
EOF
}

start_local() {
    echo "No Docker engine here: starting a local MLflow server instead"
    echo "(SQLite backend store and artifacts under $LOCAL_DIR; no MySQL, MinIO or nginx)."
    if local_server_running; then
        echo "Already running (pid $(cat "$PID_FILE")) at http://localhost:${LOCAL_PORT}/"
        return
    fi
    local mlflow_bin
    mlflow_bin="$(find_mlflow)" || die "mlflow not found: create the environment first: python3.11 -m venv .venv && .venv/bin/pip install -r requirements.txt"
    if port_busy "$LOCAL_PORT"; then
        die "port $LOCAL_PORT is in use by another program: stop it, or pick another port: MLFLOW_LOCAL_PORT=5001 bash start_mlflow.sh"
    fi
    mkdir -p "$LOCAL_DIR/artifacts"
    # setsid: the server and its workers form one process group that stop_mlflow.sh ends.
    MLFLOW_BACKEND_STORE_URI="sqlite:///$LOCAL_DIR/mlflow.db" \
    MLFLOW_ARTIFACTS_DESTINATION="$LOCAL_DIR/artifacts" \
    MLFLOW_HOST=127.0.0.1 MLFLOW_PORT="$LOCAL_PORT" \
    PATH="$(dirname "$mlflow_bin"):$PATH" \
        setsid sh "$STACK_DIR/mlflow/serve.sh" >>"$LOCAL_DIR/mlflow.log" 2>&1 </dev/null &
    echo $! >"$PID_FILE"
    local waited=0
    until http_ok "http://127.0.0.1:${LOCAL_PORT}/health"; do
        if ! kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
            rm -f "$PID_FILE"
            tail -n 30 "$LOCAL_DIR/mlflow.log" >&2
            die "the local MLflow server exited during start-up; its log ($LOCAL_DIR/mlflow.log) ends as shown above"
        fi
        if [ "$waited" -ge "$START_TIMEOUT" ]; then
            tail -n 30 "$LOCAL_DIR/mlflow.log" >&2
            stop_local_server
            die "the local MLflow server was not healthy after ${START_TIMEOUT}s; see $LOCAL_DIR/mlflow.log"
        fi
        sleep 1
        waited=$((waited + 1))
    done
    cat <<EOF
Local MLflow server is up (pid $(cat "$PID_FILE")).
  MLflow UI and API : http://localhost:${LOCAL_PORT}/
  Point clients at it: export MLFLOW_TRACKING_URI=http://localhost:${LOCAL_PORT}
  Data              : $LOCAL_DIR (kept by stop_mlflow.sh)
Stop it with: bash stop_mlflow.sh
EOF
}

mode="$(stack_mode)"  # exits here on a bad MLFLOW_STACK_MODE (set -e)
case "$mode" in
    docker) start_docker ;;
    local) start_local ;;
esac
