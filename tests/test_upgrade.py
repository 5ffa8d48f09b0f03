"""Upgrading MLflow in place: a store written by an older server keeps every record.

An older MLflow server (its full package in a venv of its own, built once and kept under
.cache/old-servers/, git-ignored) runs with serve.sh's flags on a fresh database of the
twin's MariaDB and a fresh bucket of its S3 store; the old client logs one of each record
(tests/upgrade_records.py) and reads everything back. Then the old server stops and this
checkout's serve.sh starts the pinned server on the same database and bucket, migrating
the schema first as MLFLOW_DB_UPGRADE=1 asks (README, "Upgrading"); the pinned client
reads everything again, and it must all be there, unchanged, artifacts byte for byte,
and the logged model must load and predict.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.store.db.utils import _get_latest_schema_revision

from client_venvs import CACHE, NEEDS_PKG_RESOURCES, venv_python
from dl_model_tracking.local_stack import (SERVE_SCRIPT, STACK_DIR, LocalStack, Service, ensure_private_bucket,
                                           free_port, http_ok)

pytestmark = pytest.mark.stack

RECORDS_SCRIPT = Path(__file__).with_name("upgrade_records.py")
IMAGE_REQUIREMENTS = STACK_DIR / "mlflow" / "requirements.txt"
SERVER_PLUGIN = STACK_DIR / "mlflow" / "server_plugin"

# The releases a stack is upgraded from, and the schema migrations each takes to 3.17.2
# (counted in mlflow/store/db_migrations/versions/ of each wheel):
# - 3.16.1, the release before the pin: 2 migrations (trace analytics columns, the job
#   executor's tables);
# - 2.22.5, the last 2.x, what a reader of an older stack has: 39, among them MLflow 3's
#   logged-model tables, new foreign-key cascades and an index on the metrics table.
OLD_SERVERS = ("3.16.1", "2.22.5")

# MLflow 2.x's server imports FallbackAsyncAdaptedQueuePool, which SQLAlchemy 2.1 removed,
# while its requirement leaves SQLAlchemy below 3.
OLD_SQLALCHEMY = "sqlalchemy<2.1"


def server_requirements(version: str) -> tuple[str, ...]:
    """The server image's requirements, with MLflow at `version`; for 3.x (run through
    serve.sh, which names the plugin's app) the server plugin too, as the image has it."""
    lines = [line.strip() for line in IMAGE_REQUIREMENTS.read_text().splitlines()]
    image = [line for line in lines if line and not line.startswith(("#", "mlflow=="))]
    old_needs = [NEEDS_PKG_RESOURCES, OLD_SQLALCHEMY] if version.startswith("2.") else [str(SERVER_PLUGIN)]
    return (f"mlflow=={version}", *image, *old_needs)


@pytest.fixture(scope="module")
def twin(stack, tmp_path_factory):
    """A twin whose MariaDB and S3 store this test may use as administrator: the session's,
    or one of its own when the session runs against a stack started elsewhere."""
    if isinstance(stack, LocalStack):
        yield stack
    else:
        with LocalStack(tmp_path_factory.mktemp("upgrade-twin")).start() as own:
            yield own


def fresh_store(twin: LocalStack, name: str) -> dict[str, str]:
    """An empty database (as the MySQL image makes it) and bucket: the server's environment."""
    user = twin.config["MYSQL_USER"]
    with twin.root_connection() as conn:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}`")
            cur.execute(f"GRANT ALL ON `{name}`.* TO %s@'%%'", (user,))
    ensure_private_bucket(twin.s3_client(), name.replace("_", "-"))
    return {"MLFLOW_BACKEND_STORE_URI": twin._database_uri(name),
            "MLFLOW_ARTIFACTS_DESTINATION": f"s3://{name.replace('_', '-')}", **twin.s3_env}


def schema_revision(twin: LocalStack, database: str) -> str:
    with twin.root_connection(database=database) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT version_num FROM alembic_version")
            return cur.fetchone()[0]


def server(python: Path, store: dict[str, str], port: int, log: Path, argv: list[str]) -> Service:
    """An MLflow server from `python`'s environment on `store`, started and healthy."""
    service = Service(name="mlflow", argv=argv, log_path=log,
                      ready=lambda: http_ok(f"http://127.0.0.1:{port}/health"),
                      env={**store, "MLFLOW_HOST": "127.0.0.1", "MLFLOW_PORT": str(port),
                           "PATH": f"{python.parent}{os.pathsep}{os.environ['PATH']}"})
    service.start()
    try:
        service.wait_ready(time.monotonic() + 300)
    except Exception:
        service.stop()
        pytest.fail(f"the MLflow server ({python}) did not start; its log ends:\n{service.log_tail()}",
                    pytrace=False)
    return service


def old_server_argv(version: str, port: int) -> list[str]:
    """How the stack ran `version`: serve.sh; for 2.x, serve.sh's flags but
    --allowed-hosts, which came with MLflow 3.5."""
    if not version.startswith("2."):
        return ["sh", str(SERVE_SCRIPT)]
    return ["mlflow", "server", "--serve-artifacts", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"]


def nginx_in_front(port: int, workdir: Path) -> LocalStack:
    """The stack's nginx (its site and proxy settings), in front of the running server on
    `port`: clients reach the servers as users do, through the answers nginx rewrites."""
    front = LocalStack(workdir)
    front.mlflow_port = port
    workdir.mkdir()
    front._start_nginx()
    return front


def records(python: Path, command: str, tag: str, tracking_uri: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["MLFLOW_TRACKING_URI"] = tracking_uri
    result = subprocess.run([str(python), str(RECORDS_SCRIPT), command, tag], env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0 and result.stdout.strip(), (
        f"`upgrade_records.py {command}` under {python} failed (exit {result.returncode}):\n"
        + "\n".join(result.stderr.splitlines()[-30:]))
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("old", OLD_SERVERS)
def test_an_upgrade_in_place_keeps_every_record(old, twin, tmp_path):
    python = venv_python(CACHE / "old-servers" / f"mlflow-{old}", server_requirements(old))
    tag = f"{old.replace('.', '')}_{uuid.uuid4().hex[:8]}"
    database = f"upgrade_{tag}"
    store = fresh_store(twin, database)
    port = free_port()
    saved_uri = mlflow.get_tracking_uri()
    old_server = server(python, store, port, tmp_path / "old-server.log", old_server_argv(old, port))
    try:
        front = nginx_in_front(port, tmp_path / "nginx")  # stays up across the upgrade, as in compose
    except BaseException:
        old_server.stop()
        raise
    try:
        try:
            sent = records(python, "log", tag, front.tracking_uri)
            before = records(python, "read", tag, front.tracking_uri)
        finally:
            old_server.stop()
        old_revision = schema_revision(twin, database)
        assert old_revision != _get_latest_schema_revision(), f"MLflow {old} wrote {mlflow.__version__}'s schema"

        # The upgrade, as the stack does it when asked: serve.sh migrates, then starts the server.
        started = time.monotonic()
        new_server = server(Path(sys.executable), store, port, tmp_path / "new-server.log",
                            ["env", "MLFLOW_DB_UPGRADE=1", "sh", str(SERVE_SCRIPT)])
        print(f"\nMLflow {old} -> {mlflow.__version__}: schema {old_revision} migrated and server healthy "
              f"in {time.monotonic() - started:.1f} s")
        try:
            after = records(Path(sys.executable), "read", tag, front.tracking_uri)
            mlflow.set_tracking_uri(front.tracking_uri)
            prediction = mlflow.pyfunc.load_model(f"models:/{sent['model']}@champion").predict(
                pd.DataFrame({"x": [1.0, 2.5]}))
        finally:
            new_server.stop()
    finally:
        mlflow.set_tracking_uri(saved_uri)
        front.stop()
    assert schema_revision(twin, database) == _get_latest_schema_revision()
    assert (sent.pop("version"), before.pop("version"), after.pop("version")) == (old, old, mlflow.__version__)

    # Every record is as the old server gave it, field by field.
    for kind in before:
        assert after[kind] == before[kind], f"{kind} changed in the upgrade from MLflow {old}"
    # And is what the old client sent.
    trained = next(run for run in after["runs"] if run["run_id"] == sent["run_id"])
    assert trained["metric_history"]["loss"] == sorted(list(point) for point in sent["metric_history"])
    assert {path: trained["artifacts"][path] for path in sent["artifact_sha256"]} == sent["artifact_sha256"]
    assert [run["lifecycle_stage"] for run in after["runs"]] == ["active", "deleted"]
    assert after["registered_model"]["aliases"] == {"champion": sent["champion"]}
    assert prediction["x"].tolist() == [2.0, 5.0]
