#!/bin/sh
# One-shot job: create the artifact bucket and keep it private. Safe to re-run.
set -eu
mc alias set stack "http://minio:9000" "${MINIO_ROOT_USER}" "${MINIO_ROOT_PASSWORD}"
mc mb --ignore-existing "stack/${MLFLOW_BUCKET}"
# Many published stacks make the bucket public ("download"); artifacts are served by
# the MLflow proxy, so nobody needs anonymous access.
mc anonymous set none "stack/${MLFLOW_BUCKET}"
echo "bucket ${MLFLOW_BUCKET} is ready and private"
