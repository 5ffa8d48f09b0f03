#!/usr/bin/env bash
# Permanently delete what was deleted in this checkout's tracking stack (compose, or local
# mode): `mlflow gc` for runs, logged models and experiments deleted more than an age ago,
# with their artifacts. Deleting in MLflow only marks; this cannot be undone, so back up
# first (backup_mlflow.sh). Nothing that is not deleted is touched. The stack must run.
#
#   bash gc_mlflow.sh                          what was deleted more than 30 days ago
#   bash gc_mlflow.sh --older-than 7d          ... more than 7 days ago (12h, 1d6h, 0s: MLflow's format)
#   bash gc_mlflow.sh --run-ids ID,ID --older-than 0s   only these deleted runs, now
#
# The work is done by python -m mlflow_stack.gc (docs/operations.md, "Deleted runs: gc").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=mlflow_docker_setup/lib.sh
source "$ROOT/mlflow_docker_setup/lib.sh"
# shellcheck source=scripts/python_env.sh
source "$ROOT/scripts/python_env.sh"

mode="$(stack_mode)"  # exits here on a bad MLFLOW_STACK_MODE (set -e)
[ -x "$VENV/bin/python" ] || die "no Python environment at $VENV: run bash start_mlflow.sh first"
load_stack_env
if [ "$mode" = docker ]; then
    use_compose
    mlflow="$(running_container mlflow)"
    [ -n "$mlflow" ] || die "the stack of compose project $COMPOSE_PROJECT_NAME is not running: start it with bash start_mlflow.sh"
    stack=(--mlflow-container "$mlflow")
else
    local_server_running || die "the local MLflow server is not running (gc deletes artifacts through it): start it with bash start_mlflow.sh"
    # SQLite: no password. The artifacts are deleted through the server.
    export MLFLOW_BACKEND_STORE_URI="sqlite:///$LOCAL_DIR/mlflow.db"
    stack=(--tracking-uri "http://127.0.0.1:$LOCAL_PORT")
fi
exec "$VENV/bin/python" -m mlflow_stack.gc "${stack[@]}" "$@"
