#!/bin/sh
# The one definition of how the tracking server runs. The compose service and the
# process-based twin (mlflow_stack.local_stack) both exec this script, so the
# flags below are the same everywhere; only the environment differs.
set -eu

: "${MLFLOW_BACKEND_STORE_URI:?set MLFLOW_BACKEND_STORE_URI, e.g. mysql+pymysql://user:pw@host:3306/mlflow?charset=utf8mb4}"
: "${MLFLOW_ARTIFACTS_DESTINATION:?set MLFLOW_ARTIFACTS_DESTINATION, e.g. s3://mlflow}"

# MLflow >= 3.5 rejects unknown Host headers (DNS-rebinding protection). nginx forwards
# the client's host name without its port, so list the names users type into a browser.
lan_name="${MLFLOW_LAN_HOSTNAME:-localhost}"
export MLFLOW_SERVER_ALLOWED_HOSTS="${MLFLOW_SERVER_ALLOWED_HOSTS:-localhost,localhost:*,127.0.0.1,127.0.0.1:*,[::1],[::1]:*,${lan_name},${lan_name}:*,${lan_name}.local,${lan_name}.local:*}"

# Only register model versions whose files the server itself stores, never an
# arbitrary path or URL a client names.
export MLFLOW_CREATE_MODEL_VERSION_SOURCE_VALIDATION_REGEX="${MLFLOW_CREATE_MODEL_VERSION_SOURCE_VALIDATION_REGEX:-^(mlflow-artifacts:/|models:/)}"

# The background job runner serves GenAI features (prompt optimisation, trace roll-ups)
# this stack does not use; it adds a pool of worker processes and start-up time.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"

# MLflow's usage telemetry: off unless asked for. The server would otherwise fetch its
# configuration from the internet when the UI opens, and report usage there; a
# self-hosted stack, often on a machine without internet, keeps both to itself.
export MLFLOW_DISABLE_TELEMETRY="${MLFLOW_DISABLE_TELEMETRY:-true}"

# The stack's app (mlflow_stack_server.app, installed with the server): MLflow's own with
# the stack's checks, above all that artifacts go only into the server's own store.
app=stack

# Sign-in and permissions when the stack is shared: MLflow's basic-auth app (app
# stack-shared), with its users in the database MLFLOW_AUTH_DATABASE_URI names and the
# stack's brake on password guessing as its authorization function. Nobody may read what
# they were not granted; the first admin's password comes from MLFLOW_AUTH_ADMIN_PASSWORD.
# Checking a password hash costs far more than a log_metric call, so each worker keeps a
# successful sign-in for MLFLOW_AUTH_CACHE_SECONDS (0: check every request); a changed
# password or a deleted user reaches the other worker within that time.
# The config holds the database password: it is written (mode 600) into MLFLOW_RUNTIME_DIR,
# a tmpfs in the container and a folder the twin removes at stop, never left behind.
if [ -n "${MLFLOW_AUTH_DATABASE_URI:-}" ]; then
    : "${MLFLOW_AUTH_ADMIN_PASSWORD:?set MLFLOW_AUTH_ADMIN_PASSWORD for the first admin}"
    : "${MLFLOW_FLASK_SERVER_SECRET_KEY:?set MLFLOW_FLASK_SERVER_SECRET_KEY (signs the sign-in forms)}"
    : "${MLFLOW_RUNTIME_DIR:?set MLFLOW_RUNTIME_DIR to a private folder that goes away with the server (a tmpfs)}"
    MLFLOW_AUTH_CONFIG_PATH="$(mktemp -p "$MLFLOW_RUNTIME_DIR" basic_auth.XXXXXX)"  # mode 600
    export MLFLOW_AUTH_CONFIG_PATH
    cat >"$MLFLOW_AUTH_CONFIG_PATH" <<CONFIG
[mlflow]
default_permission = NO_PERMISSIONS
database_uri = ${MLFLOW_AUTH_DATABASE_URI}
admin_username = ${MLFLOW_AUTH_ADMIN_USERNAME:-admin}
authorization_function = mlflow_stack_server.signin:authenticate_request
auth_cache_ttl_seconds = ${MLFLOW_AUTH_CACHE_SECONDS:-30}
CONFIG
    # Once, before the workers start: the auth database, its first admin, the brake's table.
    "$(dirname "$(command -v mlflow)")/python" -m mlflow_stack_server.bootstrap
    app=stack-shared
fi

# The tracking store: the stack's (default) or MLflow's own with
# MLFLOW_STACK_TRACKING_STORE=stock (docs/tracking-store.md). A wrong value stops here.
"$(dirname "$(command -v mlflow)")/python" -m mlflow_stack_server.tracking_store

# Upgrading MLflow: MLFLOW_DB_UPGRADE=1 migrates a database written by an older MLflow to
# this one's schema before the server starts. Migrations cannot be undone, so they are
# asked for, after a backup (docs/operations.md, "Upgrading"). It is `mlflow db upgrade URI` in that
# mlflow's Python, so the password never shows in `ps`.
#
# Without it, an older schema is refused here, in one line. MLflow's server does not
# refuse it: it creates the tables of a database it finds incomplete, and an older
# release's database lacks the newer tables, so the server migrated it in place, unasked.
# A new, empty database (no alembic_version yet) is MLflow's to create; one that does not
# answer yet is left to the server's own start-up, which waits for it.
if [ "${MLFLOW_DB_UPGRADE:-0}" = 1 ]; then
    "$(dirname "$(command -v mlflow)")/python" -c 'import os; from mlflow.db import upgrade
upgrade.main([os.environ["MLFLOW_BACKEND_STORE_URI"]], prog_name="mlflow db upgrade")'
else
    "$(dirname "$(command -v mlflow)")/python" -c 'import os, sys, sqlalchemy
from mlflow.exceptions import MlflowException
from mlflow.store.db.utils import _verify_schema
engine = sqlalchemy.create_engine(os.environ["MLFLOW_BACKEND_STORE_URI"])
try:
    if "alembic_version" in sqlalchemy.inspect(engine).get_table_names():
        _verify_schema(engine)
except sqlalchemy.exc.OperationalError:
    pass
except MlflowException as error:
    sys.exit("serve.sh: " + error.message.split(". Take a backup")[0] + ": back the database up, "
             "then start with MLFLOW_DB_UPGRADE=1 (docs/operations.md, Upgrading)")
finally:
    engine.dispose()'
fi

# Prometheus metrics on the server's own /metrics (MLflow's --expose-prometheus): request
# counts and latencies per endpoint and status. On unless MLFLOW_METRICS=0; nginx does not
# serve /metrics, Prometheus scrapes each server directly (docs/operations.md, "Metrics").
# The workers count into files (prometheus_client's multiprocess mode) that would be added
# to the next start's counts, so each start gets a fresh private folder (mktemp: mode 700)
# in MLFLOW_RUNTIME_DIR, which goes away with the server (a tmpfs in the container, a
# folder the twin and local mode remove at stop); that folder is this server's alone, so
# the folders of its earlier starts go now (a restart in the same container or pod).
case "${MLFLOW_METRICS:-1}" in
    1) [ -z "${MLFLOW_RUNTIME_DIR:-}" ] || rm -rf "$MLFLOW_RUNTIME_DIR"/metrics.*
       metrics_dir="$(mktemp -d "${MLFLOW_RUNTIME_DIR:-${TMPDIR:-/tmp}}/metrics.XXXXXX")"
       set -- --expose-prometheus "$metrics_dir" "$@"
       # Prometheus reaches each replica at its own address (compose's DNS for the service
       # name lists them all), so the Host of a scrape is that address and port: let it
       # past the host check. Only where the server listens on every interface (the
       # container); an IP literal is no name a DNS-rebinding page could use.
       if [ "${MLFLOW_HOST:-0.0.0.0}" = 0.0.0.0 ]; then
           for address in $(hostname -I 2>/dev/null || true); do
               case "$address" in *:*) address="[$address]" ;; esac
               MLFLOW_SERVER_ALLOWED_HOSTS="${MLFLOW_SERVER_ALLOWED_HOSTS},${address}:${MLFLOW_PORT:-5000}"
           done
       fi ;;
    0) ;;
    *) echo "serve.sh: MLFLOW_METRICS is '${MLFLOW_METRICS}': set 1 (the server's /metrics, the default) or 0 (none)" >&2
       exit 2 ;;
esac

# TCP_NODELAY on every accepted connection (mlflow_stack_server/nodelay.py): with
# --workers N, uvicorn leaves Nagle's algorithm on, and each answer on a reused connection
# then waited ~40 ms for the client's delayed ACK (uvicorn issue #3149).
# The backend store URI holds the database password: MLflow reads it from the
# environment (MLFLOW_BACKEND_STORE_URI), so it never shows in a process list.
exec mlflow server \
    --uvicorn-opts "--http mlflow_stack_server.nodelay:NoDelayHTTPProtocol" \
    --serve-artifacts \
    --artifacts-destination "${MLFLOW_ARTIFACTS_DESTINATION}" \
    --host "${MLFLOW_HOST:-0.0.0.0}" \
    --port "${MLFLOW_PORT:-5000}" \
    --workers "${MLFLOW_WORKERS:-2}" \
    --allowed-hosts "${MLFLOW_SERVER_ALLOWED_HOSTS}" \
    --app-name "$app" \
    "$@"
