#!/usr/bin/env bash
# Back up this checkout's tracking stack (compose, or local mode) into one dated archive:
# the backend store (a mysqldump in one transaction, or SQLite's online backup), every
# artifact object, and a manifest with counts and checksums. Works while the stack runs.
#
#   bash backup_mlflow.sh [--output DIR]    archive into DIR (default ./backups)
#
# Restore with restore_mlflow.sh. The work is done by python -m mlflow_stack.backup.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=mlflow_docker_setup/lib.sh
source "$ROOT/mlflow_docker_setup/lib.sh"
# shellcheck source=scripts/python_env.sh
source "$ROOT/scripts/python_env.sh"

# Runs the backup module on this checkout's stack, in the mode start_mlflow.sh chooses:
# SUBCOMMAND (create|restore), then the user's arguments.
run_backup_module() {
    local command="$1" mode
    shift
    mode="$(stack_mode)"  # exits here on a bad MLFLOW_STACK_MODE (set -e)
    [ -x "$VENV/bin/python" ] || die "no Python environment at $VENV: run bash start_mlflow.sh first"
    load_stack_env
    local stack=()
    if [ "$mode" = docker ]; then
        use_compose
        local mysql mlflow
        mysql="$(running_container mysql)"
        mlflow="$(running_container mlflow)"
        if [ -z "$mysql" ] || [ -z "$mlflow" ]; then
            die "the stack of compose project $COMPOSE_PROJECT_NAME is not running: start it with bash start_mlflow.sh"
        fi
        # MinIO's keys for the S3 API on loopback; the database password stays in its container.
        export AWS_ACCESS_KEY_ID="$MINIO_ROOT_USER" AWS_SECRET_ACCESS_KEY="$MINIO_ROOT_PASSWORD"
        export AWS_EC2_METADATA_DISABLED=true
        stack=(--mysql-container "$mysql" --mlflow-container "$mlflow" --auth-database "$MLFLOW_AUTH_DATABASE"
               --s3-endpoint-url "http://127.0.0.1:${MINIO_API_PORT}" --bucket "$MLFLOW_BUCKET")
    else
        stack=(--sqlite "$LOCAL_DIR/mlflow.db" --artifacts-dir "$LOCAL_DIR/artifacts")
    fi
    "$VENV/bin/python" -m mlflow_stack.backup "$command" "${stack[@]}" "$@"
}

# restore_mlflow.sh sources this file for run_backup_module.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    run_backup_module create "$@"
fi
