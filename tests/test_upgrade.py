"""Upgrading MLflow in place: a store written by an older server keeps every record.

An older MLflow server (its full package in a venv of its own, built once and kept under
.cache/old-servers/, git-ignored) runs with serve.sh's flags on a fresh database of the
twin's MariaDB and a fresh bucket of its S3 store; the old client logs one of each record
(tests/upgrade_records.py) and reads everything back. Then the old server stops and this
checkout's serve.sh starts the pinned server on the same database and bucket, migrating
the schema first as MLFLOW_DB_UPGRADE=1 asks (docs/operations.md, "Upgrading"); the pinned client
reads everything again, and it must all be there, unchanged, artifacts byte for byte,
and the logged model must load and predict.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.store.db.utils import _get_latest_schema_revision

from client_venvs import CACHE, NEEDS_PKG_RESOURCES, venv_python
from mlflow_stack.local_stack import (SERVE_SCRIPT, STACK_DIR, LocalStack, Service, StackStartError,
                                           ensure_private_bucket, free_port, serve_script_service)
from starting import start_or_fail
from test_start_stop import local_env, run  # noqa: F401 (local_env is a fixture)

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

# What the pinned server says when it will not run on an older schema (docs/operations.md,
# "Upgrading"), and what MLflow's `mlflow db upgrade` logs whenever it runs, even with
# no migration to apply (a server that starts on an existing database never logs it).
OUT_OF_DATE = "Detected out-of-date database schema"
UPGRADE_RAN = "Updating database tables"


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


def server_service(python: Path, store: dict[str, str], port: int, log: Path, argv: list[str]) -> Service:
    """An MLflow server from `python`'s environment on `store`, not yet started."""
    return serve_script_service(store, port, log, python, argv)


def server(python: Path, store: dict[str, str], port: int, log: Path, argv: list[str]) -> Service:
    """An MLflow server from `python`'s environment on `store`, started and healthy."""
    service = server_service(python, store, port, log, argv)
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


def schema(twin: LocalStack, database: str) -> dict:
    """The database's schema: its alembic revision, every table's columns and indexes."""
    with twin.root_connection(database=database) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT table_name, column_name, column_type, is_nullable, column_default "
                        "FROM information_schema.columns WHERE table_schema = %s "
                        "ORDER BY table_name, ordinal_position", (database,))
            columns = cur.fetchall()
            cur.execute("SELECT table_name, index_name, seq_in_index, column_name, non_unique "
                        "FROM information_schema.statistics WHERE table_schema = %s "
                        "ORDER BY table_name, index_name, seq_in_index", (database,))
            indexes = cur.fetchall()
    return {"revision": schema_revision(twin, database), "columns": columns, "indexes": indexes}


def table_contents(twin: LocalStack, database: str) -> dict[str, tuple[int, int]]:
    """Every table's row count and checksum (CHECKSUM TABLE: over every value of every row)."""
    with twin.root_connection(database=database) as conn:
        with conn.cursor() as cur:
            cur.execute("SHOW TABLES")
            contents = {}
            for (table,) in cur.fetchall():
                cur.execute(f"SELECT COUNT(*) FROM `{table}`")
                (count,) = cur.fetchone()
                cur.execute(f"CHECKSUM TABLE `{table}`")
                contents[table] = (count, cur.fetchone()[1])
    return contents


def refused_start(python: Path, store: dict[str, str], port: int, log: Path, argv: list[str]) -> str:
    """Start a server that must not run on `store`; its log, once it has exited."""
    service = server_service(python, store, port, log, argv)
    service.start()
    try:
        service.wait_ready(time.monotonic() + 300)
    except StackStartError:
        return log.read_text(errors="replace")
    finally:
        service.stop()
    pytest.fail(f"the server started; its log ends:\n{service.log_tail()}", pytrace=False)


@pytest.mark.parametrize("old", OLD_SERVERS)
def test_a_plain_start_refuses_an_old_database_and_leaves_its_schema(old, twin, tmp_path):
    """docs/operations.md, "Upgrading": the pinned server refuses a database an older MLflow wrote, and
    serve.sh without MLFLOW_DB_UPGRADE=1 never migrates it. Control: the same database then
    migrates when asked, so the refusal was its schema's and left it upgradable."""
    python = venv_python(CACHE / "old-servers" / f"mlflow-{old}", server_requirements(old))
    database = f"upgrade_{old.replace('.', '')}_{uuid.uuid4().hex[:8]}"
    store = fresh_store(twin, database)
    port = free_port()
    server(python, store, port, tmp_path / "old-server.log", old_server_argv(old, port)).stop()  # its tables
    before = schema(twin, database)
    assert before["revision"] != _get_latest_schema_revision(), f"MLflow {old} wrote {mlflow.__version__}'s schema"

    log = refused_start(Path(sys.executable), store, port, tmp_path / "plain-start.log", ["sh", str(SERVE_SCRIPT)])
    assert OUT_OF_DATE in log and UPGRADE_RAN not in log
    assert schema(twin, database) == before

    upgrade_log = tmp_path / "upgrade-start.log"
    server(Path(sys.executable), store, port, upgrade_log, ["env", "MLFLOW_DB_UPGRADE=1", "sh", str(SERVE_SCRIPT)]).stop()
    assert UPGRADE_RAN in upgrade_log.read_text()
    assert schema_revision(twin, database) == _get_latest_schema_revision()


def test_the_upgrade_leaves_a_current_database_as_it_is(twin, tmp_path):
    """docs/operations.md, "Upgrading": MLFLOW_DB_UPGRADE=1 does nothing on a current database. One of
    each record, written by the pinned server; a start with the upgrade asked for runs it
    (control: its log says so) and leaves the schema, every table's rows and every record
    as they were."""
    python = Path(sys.executable)
    tag = f"current_{uuid.uuid4().hex[:8]}"
    database = f"upgrade_{tag}"
    store = fresh_store(twin, database)
    port = free_port()
    first = server(python, store, port, tmp_path / "first-start.log", ["sh", str(SERVE_SCRIPT)])
    try:
        front = nginx_in_front(port, tmp_path / "nginx")  # which rewrites the presigned artifact URLs
    except BaseException:
        first.stop()
        raise
    try:
        try:
            records(python, "log", tag, front.tracking_uri)
            before = records(python, "read", tag, front.tracking_uri)
        finally:
            first.stop()
        schema_before, contents_before = schema(twin, database), table_contents(twin, database)
        assert schema_before["revision"] == _get_latest_schema_revision()

        log = tmp_path / "upgrade-start.log"
        again = server(python, store, port, log, ["env", "MLFLOW_DB_UPGRADE=1", "sh", str(SERVE_SCRIPT)])
        try:
            after = records(python, "read", tag, front.tracking_uri)
        finally:
            again.stop()
    finally:
        front.stop()
    assert UPGRADE_RAN in log.read_text()
    assert schema(twin, database) == schema_before
    assert table_contents(twin, database) == contents_before
    assert after == before


def sqlite_revision(path: Path) -> str:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]


def test_local_mode_migrates_an_old_sqlite_file_only_when_asked(local_env, tmp_path):
    """docs/operations.md, "Upgrading": the local server (no Docker) migrates its SQLite file the same
    way. The previous release's server writes one of each record into the file and artifact
    folder start_mlflow.sh's local mode uses; a plain local start is refused and leaves the
    file; MLFLOW_DB_UPGRADE=1 migrates it, and every record reads back as before."""
    old = OLD_SERVERS[0]
    python = venv_python(CACHE / "old-servers" / f"mlflow-{old}", server_requirements(old))
    local_dir = Path(local_env["MLFLOW_LOCAL_DIR"])
    (local_dir / "artifacts").mkdir(parents=True)
    database, server_log = local_dir / "mlflow.db", local_dir / "mlflow.log"
    port = int(local_env["MLFLOW_LOCAL_PORT"])
    uri = f"http://127.0.0.1:{port}"
    tag = f"local{old.replace('.', '')}_{uuid.uuid4().hex[:8]}"
    # The store start_mlflow.sh's local mode names (start_local).
    store = {"MLFLOW_BACKEND_STORE_URI": f"sqlite:///{database}",
             "MLFLOW_ARTIFACTS_DESTINATION": f"file://{local_dir / 'artifacts'}"}
    old_server = server(python, store, port, tmp_path / "old-server.log", old_server_argv(old, port))
    try:
        records(python, "log", tag, uri)
        before = records(python, "read", tag, uri)
    finally:
        old_server.stop()
    old_revision = sqlite_revision(database)
    assert old_revision != _get_latest_schema_revision()

    refused = run("start_mlflow.sh", local_env)
    assert refused.returncode != 0 and "exited during start-up" in refused.stderr, refused.stdout + refused.stderr
    plain_log = server_log.read_text()
    assert OUT_OF_DATE in plain_log and UPGRADE_RAN not in plain_log
    assert sqlite_revision(database) == old_revision

    started = run("start_mlflow.sh", {**local_env, "MLFLOW_DB_UPGRADE": "1"})
    try:
        assert started.returncode == 0, started.stderr
        after = records(Path(sys.executable), "read", tag, uri)
    finally:
        stopped = run("stop_mlflow.sh", local_env)
    assert stopped.returncode == 0 and "Stopped the local MLflow server" in stopped.stdout, stopped.stderr
    assert UPGRADE_RAN in server_log.read_text()[len(plain_log):]
    assert sqlite_revision(database) == _get_latest_schema_revision()
    assert (before.pop("version"), after.pop("version")) == (old, mlflow.__version__)
    assert after == before


def server_version(tracking_uri: str) -> str:
    """The MLflow release of the server behind ``tracking_uri`` (its /version answer)."""
    with urllib.request.urlopen(f"{tracking_uri}/version", timeout=30) as answer:
        return answer.read().decode().strip()


def test_a_compose_stack_on_an_older_image_is_migrated_only_when_asked(new_checkout):
    """docs/operations.md, "Upgrading", on the compose stack: a checkout whose server image was
    built from the previous release's pin holds records; after `git pull` (here: the pin put
    back), a plain start is refused with the server's reason and leaves the data;
    MLFLOW_DB_UPGRADE=1 rebuilds the image from the new pin, migrates, and every record reads
    back as before."""
    old = OLD_SERVERS[0]
    python = venv_python(CACHE / "old-servers" / f"mlflow-{old}", server_requirements(old))
    stack = new_checkout("checkout-upgrade", MLFLOW_START_TIMEOUT="120")
    pins = stack.checkout / "mlflow_docker_setup" / "mlflow" / "requirements.txt"
    pinned = pins.read_text()
    assert f"mlflow=={mlflow.__version__}\n" in pinned
    pins.write_text(pinned.replace(f"mlflow=={mlflow.__version__}\n", f"mlflow=={old}\n"))
    tag = f"compose{old.replace('.', '')}_{uuid.uuid4().hex[:8]}"
    try:
        start_or_fail(stack, f"the compose stack on MLflow {old}'s image")
        assert server_version(stack.tracking_uri) == old
        records(python, "log", tag, stack.tracking_uri)
        before = records(python, "read", tag, stack.tracking_uri)
        assert stack.stop().returncode == 0, stack.last_output

        pins.write_text(pinned)  # what `git pull` brings: the new pin
        refused = stack.script("start_mlflow.sh")
        assert refused.returncode != 0 and OUT_OF_DATE in refused.stderr, stack.last_output
        assert UPGRADE_RAN not in refused.stderr
        assert stack.resources()["volumes"], "the refused start deleted the stack's data"

        stack.env["MLFLOW_DB_UPGRADE"] = "1"
        start_or_fail(stack, "the compose stack started with MLFLOW_DB_UPGRADE=1")
        assert server_version(stack.tracking_uri) == mlflow.__version__
        assert UPGRADE_RAN in stack.container_logs(lines=None, services=("mlflow",))
        after = records(Path(sys.executable), "read", tag, stack.tracking_uri)
    finally:
        stack.stop(delete_data=True)
    assert (before.pop("version"), after.pop("version")) == (old, mlflow.__version__)
    assert after == before


def test_the_mlflow_internal_the_start_script_checks_the_schema_with_is_still_there():
    """serve.sh refuses an older schema through mlflow.store.db.utils._verify_schema, a private
    name (3.17.2): an upgrade that renames or drops it fails here, by name."""
    from mlflow.store.db import utils

    assert callable(getattr(utils, "_verify_schema", None)), "update mlflow_docker_setup/mlflow/serve.sh"
    serve = SERVE_SCRIPT.read_text()
    assert "from mlflow.store.db.utils import _verify_schema" in serve


# The MLflow code mlflow_stack_server.fast_sql_store replaces or re-makes, as tested (3.17.2):
# the first 16 hex digits of the SHA-256 of each one's source.
FAST_STORE_REPLACES = {
    "SqlAlchemyStore._search_runs": "5235efb440f86762",
    "SqlAlchemyStore.log_batch": "5616623d30fd5426",
    "SqlAlchemyStore._update_latest_metrics_if_necessary": "9a68eb580f007f5e",
    "SqlAlchemyStore._log_metrics_once": "f1c94a7256af5033",
    "SqlAlchemyStore._log_params": "35754b45b5a5d30a",
    "SqlAlchemyStore._set_tags": "a47520dc63cd5d01",
    "TrackingStoreRegistryWrapper._get_sqlalchemy_store": "7e6d626580ab91f4",
    # With a read replica: what replica_reads.py re-makes (the session routing MLflow sets up
    # in the stores' constructors) and tracking_store.py's registry builder.
    "SqlAlchemyStore.__init__": "bdd2e1a3d33927c3",
    "RegistrySqlAlchemyStore.__init__": "b9b2486e52a57d94",
    "db_utils._get_routing_session_maker": "1df525f636ca97fe",
    "db_utils._get_managed_session_maker": "1f18307528cb24b6",
    "ModelRegistryStoreRegistryWrapper._get_sqlalchemy_store": "b703f8862eabc611",
    # The order the metric bound of a search relies on (values first, then NaN, then missing;
    # one join per key, in order).
    "sqlalchemy_store._get_orderby_clauses": "c048293f9b23c520",
}


def test_the_mlflow_code_the_fast_store_replaces_is_the_code_it_was_proven_against():
    """An MLflow upgrade that changes a method the stack's store overrides (or the server's
    choice of store class, which its builders make again, or the read-replica routing that
    replica_reads.py re-makes) fails here, by name: re-read the change, carry it into
    fast_sql_store.py / tracking_store.py / replica_reads.py, re-run
    tests/test_store_equality.py, then record the new digests."""
    import hashlib
    import inspect

    from mlflow.server.handlers import ModelRegistryStoreRegistryWrapper, TrackingStoreRegistryWrapper
    from mlflow.store.db import utils as db_utils
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistrySqlAlchemyStore
    from mlflow.store.tracking import sqlalchemy_store
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    owners = {"SqlAlchemyStore": SqlAlchemyStore, "TrackingStoreRegistryWrapper": TrackingStoreRegistryWrapper,
              "RegistrySqlAlchemyStore": RegistrySqlAlchemyStore, "db_utils": db_utils,
              "sqlalchemy_store": sqlalchemy_store,
              "ModelRegistryStoreRegistryWrapper": ModelRegistryStoreRegistryWrapper}
    digests = {}
    for name in FAST_STORE_REPLACES:
        owner, method = name.split(".")
        source = inspect.getsource(getattr(owners[owner], method))
        digests[name] = hashlib.sha256(source.encode()).hexdigest()[:16]
    changed = [name for name, digest in FAST_STORE_REPLACES.items() if digests[name] != digest]
    assert not changed, f"MLflow {mlflow.__version__} changed what the stack's store overrides: {changed}"
