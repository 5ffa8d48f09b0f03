#!/usr/bin/env bash
# Restore an archive written by backup_mlflow.sh into this checkout's stack (compose, or
# local mode), which must be running and empty: a fresh stack from start_mlflow.sh.
# The archive's checksum and manifest are checked before anything is written; an archive
# from a newer MLflow is refused, one from an older MLflow is restored then upgraded
# (mlflow db upgrade). The stack keeps its own database users and secrets.
#
#   bash restore_mlflow.sh ARCHIVE                restore into a fresh, empty stack
#   bash restore_mlflow.sh ARCHIVE --overwrite    replace the records of a stack that has some
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=backup_mlflow.sh
source "$ROOT/backup_mlflow.sh"
[ $# -ge 1 ] || die "usage: bash restore_mlflow.sh ARCHIVE [--overwrite]"
run_backup_module restore "$@"
