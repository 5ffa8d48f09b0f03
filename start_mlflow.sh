#!/usr/bin/env bash
# Start the MLflow tracking stack, after preparing the notebooks' Python environment
# (.venv, from the pinned requirements.txt; reused while that file is unchanged).
#
# With a Docker engine: the compose stack in mlflow_docker_setup/ (MySQL, MinIO, the
# bucket job, MLflow, nginx) as this checkout's own compose project; returns once every
# service is healthy and prints the URLs.
# Without one: a local MLflow server from the same serve.sh, with a SQLite backend store
# and artifacts on disk under .mlflow-local/ (durable across stop and start).
#
# Secrets (database, MinIO, sign-in) are generated for this checkout at first start into
# mlflow_docker_setup/secrets/. MLFLOW_SHARE=1 (in .env or the environment) shares the
# Docker stack: HTTPS on every interface, MLflow's sign-in, strong secrets enforced.
#
# MLFLOW_STACK_MODE=docker|local forces a mode; MLFLOW_LOCAL_PORT (5000) and
# MLFLOW_LOCAL_DIR (.mlflow-local) configure local mode; MLFLOW_COMPOSE=v1|v2 picks the
# compose CLI; COMPOSE_PROJECT_NAME overrides the project name derived from the checkout.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=mlflow_docker_setup/lib.sh
source "$ROOT/mlflow_docker_setup/lib.sh"
# shellcheck source=scripts/python_env.sh
source "$ROOT/scripts/python_env.sh"

# Images the stack runs but does not build: present locally, or pulled now. A registry
# that cannot be reached is one clear line, not a compose failure with empty logs.
ensure_images() {
    local var image
    for var in MYSQL_IMAGE MINIO_IMAGE MC_IMAGE NGINX_IMAGE PYTHON_IMAGE; do
        image="${!var}"
        docker image inspect "$image" >/dev/null 2>&1 && continue
        echo "Pulling $image"
        if ! timeout 600 docker pull -q "$image" >/dev/null 2>"$LOG_DIR/pull.log"; then
            die "cannot get image $image ($var): $(tail -n 1 "$LOG_DIR/pull.log"). Without a reachable registry, set $var in mlflow_docker_setup/.env to an image you have (docker images), or run without Docker: MLFLOW_STACK_MODE=local bash start_mlflow.sh"
        fi
    done
}

# The MLflow image, built with the machine's own added CA certificates trusted, so pip
# works behind a TLS-inspecting proxy as it does on the host.
build_server_image() {
    local certs="$STACK_DIR/mlflow/ca-certificates"
    find "$certs" -name '*.crt' -delete
    cp /usr/local/share/ca-certificates/*.crt "$certs/" 2>/dev/null || true
    echo "Building the MLflow server image (the first time takes a few minutes; log: $LOG_DIR/build.log)"
    if ! compose build mlflow >"$LOG_DIR/build.log" 2>&1; then
        tail -n 15 "$LOG_DIR/build.log" >&2
        die "building the MLflow image failed (output above). If pip could not reach the package index, set PIP_INDEX_URL in mlflow_docker_setup/.env to a mirror and put its CA certificate in mlflow_docker_setup/mlflow/ca-certificates/, or run without Docker: MLFLOW_STACK_MODE=local bash start_mlflow.sh"
    fi
}

# Loopback unless shared: publishing on the network without sign-in is refused.
choose_bind_address() {
    if sharing; then
        export NGINX_BIND_ADDRESS="${NGINX_BIND_ADDRESS:-0.0.0.0}"
    elif [ -z "${NGINX_BIND_ADDRESS:-}" ]; then
        export NGINX_BIND_ADDRESS=127.0.0.1
    elif [[ ! "$NGINX_BIND_ADDRESS" =~ ^(127\.[0-9.]+|::1)$ ]]; then
        die "NGINX_BIND_ADDRESS=$NGINX_BIND_ADDRESS would put the stack on the network without sign-in: set MLFLOW_SHARE=1 to share it (HTTPS and sign-in), or leave NGINX_BIND_ADDRESS empty"
    fi
}

# Shared: strong secrets or no start; nginx's certificate (the user's, or one made here).
prepare_sharing() {
    local paths
    paths="$("$VENV/bin/python" -m mlflow_stack.stack_secrets share "$SECRETS_DIR")" \
        || die "not started (nothing was changed)"
    { read -r MLFLOW_TLS_CERT_FILE; read -r MLFLOW_TLS_KEY_FILE; read -r MLFLOW_TLS_CA_FILE || true; } <<<"$paths"
    export MLFLOW_TLS_CERT_FILE MLFLOW_TLS_KEY_FILE
}

start_docker() {
    use_compose
    choose_bind_address
    export MLFLOW_LAN_HOSTNAME="${MLFLOW_LAN_HOSTNAME:-$(hostname)}"
    local ports=(NGINX_PORT MINIO_API_PORT MINIO_CONSOLE_PORT)
    if sharing; then
        export NGINX_HTTPS_PORT="${NGINX_HTTPS_PORT:-443}"
        ports+=(NGINX_HTTPS_PORT)
        prepare_sharing
    fi
    LOG_DIR="$(mktemp -d)"
    trap 'rm -rf "$LOG_DIR"' EXIT
    echo "Starting the tracking stack with Docker (compose project $COMPOSE_PROJECT_NAME)"
    local was_running=""
    [ -z "$(running_container mlflow)" ] || was_running=1
    if [ -z "$(compose ps -q nginx 2>/dev/null)" ]; then
        for var in "${ports[@]}"; do
            if port_busy "${!var}"; then
                die "port ${!var} ($var) is in use by another program: stop it, or set $var in mlflow_docker_setup/.env"
            fi
        done
    fi
    ensure_images
    build_server_image
    local had_data
    had_data="$(project_volumes)"
    if ! compose_up_and_wait; then
        echo "The stack did not become healthy. Service states and logs of the failing ones:" >&2
        compose ps >&2 || true
        for service in "${SERVICES[@]}"; do
            service_ok "$service" && continue
            if [ -z "$(compose ps -a -q "$service" 2>/dev/null)" ]; then
                echo "----- $service: not started (it waits for the services above) -----" >&2
            else
                echo "----- $service -----" >&2
                compose logs --no-color --tail=40 "$service" >&2 || true
            fi
        done
        # Leave nothing half-created behind; volumes only if this start created them. A stack
        # that was serving before this start keeps running: stopping it would stop its users.
        if [ -n "$was_running" ]; then
            die "this start failed on the running stack, which was left running; fix the service named above and run start_mlflow.sh again"
        elif [ -n "$had_data" ]; then
            compose down >/dev/null 2>&1 || true
        else
            compose down --volumes >/dev/null 2>&1 || true
        fi
        die "start-up failed; fix the service named above and run start_mlflow.sh again"
    fi
    local url="http://localhost"
    [ "$NGINX_PORT" = 80 ] || url="$url:$NGINX_PORT"
    if sharing; then
        url="https://${MLFLOW_LAN_HOSTNAME}"
        [ "$NGINX_HTTPS_PORT" = 443 ] || url="$url:$NGINX_HTTPS_PORT"
    fi
    cat <<EOF
Tracking stack is up (compose project $COMPOSE_PROJECT_NAME).
  MLflow UI         : $(ui_link "$url")
  MLflow API        : $url   (clients: mlflow.set_tracking_uri("$url"))
  MLflow servers    : ${MLFLOW_SERVER_REPLICAS:-1} behind nginx (MLFLOW_SERVER_REPLICAS)
  MinIO console     : http://localhost:${MINIO_CONSOLE_PORT}/   (login ${MINIO_ROOT_USER} / MINIO_ROOT_PASSWORD in mlflow_docker_setup/secrets/stack.env)
  MinIO S3 API      : http://localhost:${MINIO_API_PORT}   (this machine only)
EOF
    if sharing; then
        announce_sharing
    else
        announce_direct_s3
    fi
    echo "Stop it with: bash stop_mlflow.sh (data is kept)"
}

# The book's way: a client on this machine writes an s3:// experiment's artifacts straight
# to MinIO with the root keys. Not offered when shared: those keys bypass the sign-in, and
# MinIO listens on loopback only. The secret is read from its file, never printed.
announce_direct_s3() {
    local file secret
    file="$(printf '%q' "$SECRETS_DIR/stack.env")"
    secret="\"\$(grep ^MINIO_ROOT_PASSWORD= $file | cut -d= -f2-)\""
    if [ "$(grep ^MINIO_ROOT_PASSWORD= "$SECRETS_DIR/stack.env" | cut -d= -f2-)" != "$MINIO_ROOT_PASSWORD" ]; then
        secret='"$MINIO_ROOT_PASSWORD"   # the value this stack was started with'
    fi
    cat <<EOF
  The book's way    : clients write artifacts straight to MinIO, for an experiment created with
                      artifact_location="s3://${MLFLOW_BUCKET}/<prefix>" (README, "URLs and credentials"), after:
    export MLFLOW_S3_ENDPOINT_URL=http://localhost:${MINIO_API_PORT}
    export AWS_ACCESS_KEY_ID=${MINIO_ROOT_USER}
    export AWS_SECRET_ACCESS_KEY=${secret}
EOF
}

announce_sharing() {
    local trust="your certificate's issuer, as for any site"
    if [ -n "$MLFLOW_TLS_CA_FILE" ]; then
        trust="$MLFLOW_TLS_CA_FILE   (MLFLOW_TRACKING_SERVER_CERT_PATH=<that file>)"
    fi
    cat <<EOF
  Shared            : HTTPS on $NGINX_BIND_ADDRESS port $NGINX_HTTPS_PORT (plain HTTP on $NGINX_PORT redirects), sign-in required
  Clients trust     : $trust
  Users             : .venv/bin/mlflow-users --help   (create users, grant permissions)
EOF
    # The first admin's password, printed on the first shared start only.
    local shown="$SECRETS_DIR/admin-password-shown"  # stack_secrets.ADMIN_SHOWN_MARKER
    if [ ! -f "$shown" ]; then
        cat <<EOF
  First sign-in     : admin / $MLFLOW_ADMIN_PASSWORD
                      shown once; read it again with: grep MLFLOW_ADMIN_PASSWORD mlflow_docker_setup/secrets/stack.env
                      (once changed in MLflow, that file no longer knows it)
EOF
        touch "$shown"
    fi
}

# The UI's link in its model-training view, built where the notebooks' links are
# (dl_model_tracking/ui_links.py; docs/mlflow-ui.md).
ui_link() {
    "$VENV/bin/python" -m dl_model_tracking.ui_links "$1"
}

http_ok() {
    "$VENV/bin/python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$1" 2>/dev/null
}

start_local() {
    if [ "${MLFLOW_SERVER_REPLICAS:-1}" != 1 ]; then
        die "MLFLOW_SERVER_REPLICAS=$MLFLOW_SERVER_REPLICAS needs the Docker stack (nginx balances over the servers); local mode runs one server. Start Docker, or set MLFLOW_SERVER_REPLICAS=1"
    fi
    if [ "${MLFLOW_READ_REPLICA:-0}" = 1 ]; then
        die "MLFLOW_READ_REPLICA=1 needs the Docker stack (a second MySQL server); local mode keeps its runs in one SQLite file. Start Docker, or set MLFLOW_READ_REPLICA=0"
    fi
    if sharing; then
        die "MLFLOW_SHARE=1 needs the Docker stack (nginx serves HTTPS, MySQL keeps the users); the local server listens on this machine only. Start Docker, or set MLFLOW_SHARE=0"
    fi
    if [ "${MLFLOW_STACK_MODE:-auto}" = local ]; then
        echo "MLFLOW_STACK_MODE=local: starting a local MLflow server"
    else
        echo "No Docker engine here: starting a local MLflow server instead"
    fi
    echo "(SQLite backend store and artifacts under $LOCAL_DIR; no MySQL, MinIO or nginx)."
    if local_server_running; then
        echo "Already running (pid $(cat "$PID_FILE")) at http://localhost:${LOCAL_PORT}/"
        return
    fi
    local mlflow_bin="$VENV/bin/mlflow"
    if port_busy "$LOCAL_PORT"; then
        die "port $LOCAL_PORT is in use by another program: stop it, or pick another port: MLFLOW_LOCAL_PORT=5001 bash start_mlflow.sh"
    fi
    mkdir -p "$LOCAL_DIR/artifacts"
    # serve.sh's private files (the metrics' counters), removed at stop.
    rm -rf "$LOCAL_DIR/run" && mkdir -m 700 "$LOCAL_DIR/run"
    # A file:// destination (not a bare path) is served by mlflow-stack-server's
    # repository, which answers a full disk with 507 instead of a retried 500.
    local artifacts
    artifacts="$(cd "$LOCAL_DIR/artifacts" && pwd)"
    # setsid: the server and its workers form one process group that stop_mlflow.sh ends.
    MLFLOW_BACKEND_STORE_URI="sqlite:///$LOCAL_DIR/mlflow.db" \
    MLFLOW_ARTIFACTS_DESTINATION="file://$artifacts" \
    MLFLOW_HOST=127.0.0.1 MLFLOW_PORT="$LOCAL_PORT" MLFLOW_RUNTIME_DIR="$LOCAL_DIR/run" \
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
  MLflow UI         : $(ui_link "http://localhost:${LOCAL_PORT}")
  MLflow API        : http://localhost:${LOCAL_PORT}
  Point clients at it: export MLFLOW_TRACKING_URI=http://localhost:${LOCAL_PORT}
  Data              : $LOCAL_DIR (kept by stop_mlflow.sh)
Stop it with: bash stop_mlflow.sh
EOF
}

# A broken .env or mode stops the start before anything is prepared or started.
load_env_file "$STACK_DIR/.env" --check
mode="$(stack_mode)"  # exits here on a bad MLFLOW_STACK_MODE (set -e)
ensure_python_env
# A Docker stack older than generated secrets keeps the passwords this project once
# committed in its volumes: its first start after the change keeps using them.
legacy=()
if [ "$mode" = docker ] && [ ! -f "$SECRETS_DIR/stack.env" ] && [ -n "$(project_volumes)" ]; then
    legacy=(--legacy)
fi
"$VENV/bin/python" -m mlflow_stack.stack_secrets ensure "$SECRETS_DIR" "${legacy[@]}" \
    || die "cannot write the stack's secrets into $SECRETS_DIR"
load_stack_env
case "$mode" in
    docker) start_docker ;;
    local) start_local ;;
esac
