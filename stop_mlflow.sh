#!/usr/bin/env bash
# Stop what start_mlflow.sh started from this checkout: its local server and its own
# compose project (never another checkout's). Data is kept.
#
#   bash stop_mlflow.sh                   stop; runs, models and artifacts stay
#   bash stop_mlflow.sh --delete-data     stop AND delete every run, model and artifact
#                                         (asks first; add --yes to skip the question)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=mlflow_docker_setup/lib.sh
source "$ROOT/mlflow_docker_setup/lib.sh"

delete_data=0
assume_yes=0
for arg in "$@"; do
    case "$arg" in
        --delete-data) delete_data=1 ;;
        --yes) assume_yes=1 ;;
        *) die "unknown option '$arg' (use --delete-data, optionally with --yes)" ;;
    esac
done

docker_stack_here() {  # this checkout's compose project has containers, or volumes to delete
    docker_engine_available || return 1
    [ -n "$(project_containers)" ] || { [ "$delete_data" -eq 1 ] && [ -n "$(project_volumes)" ]; }
}

if [ "$delete_data" -eq 1 ] && [ "$assume_yes" -eq 0 ]; then
    echo "WARNING: this deletes every run, registered model and artifact of this checkout's"
    echo "tracking stack (Docker volumes of compose project $COMPOSE_PROJECT_NAME, and $LOCAL_DIR)."
    read -r -p "Type 'delete' to go on: " answer
    [ "$answer" = delete ] || die "nothing deleted"
fi

stopped=0
if local_server_running; then
    stop_local_server
    echo "Stopped the local MLflow server (data kept in $LOCAL_DIR)."
    stopped=1
elif [ -f "$PID_FILE" ]; then
    rm -f "$PID_FILE"  # stale: the server is already gone
fi

if docker_stack_here; then
    # compose finds the containers by the project's label, shared or not; the share
    # overlay would also ask for the certificate start_mlflow.sh provides.
    export MLFLOW_SHARE=0
    load_stack_env
    use_compose
    if [ "$delete_data" -eq 1 ]; then
        compose down --volumes --remove-orphans
        # Volumes of an overlay this stop was not given (a read replica started with
        # MLFLOW_READ_REPLICA=1 in the environment only): the project's label finds them.
        leftover="$(project_volumes)"
        # shellcheck disable=SC2086  # one argument per volume
        [ -z "$leftover" ] || docker volume rm $leftover >/dev/null
        echo "Stopped the tracking stack (compose project $COMPOSE_PROJECT_NAME) and deleted its volumes."
    else
        compose down --remove-orphans
        echo "Stopped the tracking stack (compose project $COMPOSE_PROJECT_NAME; its volumes are kept)."
    fi
    stopped=1
fi

if [ "$delete_data" -eq 1 ] && docker_engine_available && [ -n "$(project_images)" ]; then
    # Only this project's tag goes; layers other checkouts' images share stay.
    docker image rm $(project_images) >/dev/null
    echo "Removed the MLflow image built for compose project $COMPOSE_PROJECT_NAME."
fi
if [ "$delete_data" -eq 1 ] && [ -d "$LOCAL_DIR" ]; then
    rm -rf "$LOCAL_DIR"
    echo "Deleted $LOCAL_DIR."
fi
[ "$stopped" -eq 1 ] || echo "Nothing to stop: no local server is running and this checkout has no Docker stack (compose project $COMPOSE_PROJECT_NAME)."
