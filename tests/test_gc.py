"""mlflow gc for the stack (gc_mlflow.sh, python -m mlflow_stack.gc), on the twin and on the
compose stack: of three runs with params, metrics, tags, artifacts and a logged model each,
the one deleted (with its model) longer ago than --older-than loses its rows and its
objects in the S3 store; the run that is not deleted and the one deleted since keep theirs,
counted row by row and object by object before and after. Bad input stops in one line and
deletes nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from client_uri import tracking_uri
from mlflow_stack.backup import ContainerMySQL, HostMySQL
from mlflow_stack.compose_stack import ComposeStack
from mlflow_stack.local_stack import LocalStack
from mlflow_stack.settings import REPO_ROOT

RUN_TABLES = ("runs", "params", "metrics", "latest_metrics", "tags")
MODEL_TABLES = ("logged_models", "logged_model_params", "logged_model_tags", "logged_model_metrics")
DAY_MS = 86_400_000


def database(stack):
    """The stack's backend store, through the backup module's MySQL clients."""
    if isinstance(stack, ComposeStack):
        return ContainerMySQL(stack.container("mysql"), None)
    assert isinstance(stack, LocalStack), "gc runs against the twin this session started"
    c = stack.config
    return HostMySQL("127.0.0.1", stack.mysql_port, c["MYSQL_USER"], c["MYSQL_PASSWORD"], c["MYSQL_DATABASE"], None)


def gc(stack, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The command as a user runs it: gc_mlflow.sh in the compose stack's checkout; on the
    twin, the module with the twin's server and database (and ``env``)."""
    if isinstance(stack, ComposeStack):
        shutil.copy2(REPO_ROOT / "gc_mlflow.sh", stack.checkout / "gc_mlflow.sh")  # the checkout has start's files only
        return stack.script("gc_mlflow.sh", *args)
    env = {**os.environ, **stack.s3_env, "MLFLOW_BACKEND_STORE_URI": stack.backend_store_uri, **(env or {})}
    return subprocess.run([sys.executable, "-m", "mlflow_stack.gc", "--tracking-uri", stack.mlflow_uri, *args],
                          env=env, capture_output=True, text=True, timeout=600)


def log_run(experiment_id: str, name: str, tmp_path: Path) -> tuple[str, str]:
    """A run as training logs one: params, metrics over steps, tags, files, and a logged
    model with files and a metric of its own. Its id and the model's."""
    with mlflow.start_run(experiment_id=experiment_id, run_name=name) as run:
        mlflow.log_params({"lr": 0.01, "layers": 3})
        for step in range(3):
            mlflow.log_metrics({"loss": 1.0 / (step + 1), "acc": step / 3}, step=step)
        mlflow.set_tags({"stage": "test", "owner": name})
        mlflow.log_text(f"notes of {name}", "notes/readme.txt")
        mlflow.log_dict({"name": name}, "config.json")
        model = mlflow.initialize_logged_model(name=f"model-{name}", source_run_id=run.info.run_id,
                                               experiment_id=experiment_id, params={"kind": "test"},
                                               tags={"owner": name})
        folder = tmp_path / f"model-{name}"
        folder.mkdir()
        (folder / "weights.bin").write_bytes(os.urandom(2048))
        (folder / "MLmodel").write_text(f"name: {name}\n")
        MlflowClient().log_model_artifacts(model.model_id, str(folder))
        mlflow.log_metric("val_acc", 0.5, model_id=model.model_id)
        mlflow.finalize_logged_model(model.model_id, "READY")
        return run.info.run_id, model.model_id


def rows(db, run_id: str, model_id: str) -> dict[str, int]:
    """Rows of the run and of its model, per table."""
    selects = [f"SELECT '{t}', COUNT(*) FROM `{t}` WHERE run_uuid = '{run_id}'" for t in RUN_TABLES]
    selects += [f"SELECT '{t}', COUNT(*) FROM `{t}` WHERE model_id = '{model_id}'" for t in MODEL_TABLES]
    return {table: int(count) for table, count in db.query(db.database, " UNION ALL ".join(selects))}


def objects(stack, *ids: str) -> dict[str, str]:
    """Every object in the artifact store whose key names one of ``ids``, with its ETag."""
    found = {}
    for page in stack.s3_client().get_paginator("list_objects_v2").paginate(Bucket=stack.bucket):
        found.update({o["Key"]: o["ETag"] for o in page.get("Contents", []) if any(i in o["Key"] for i in ids)})
    return found


def state(stack, db, runs: dict[str, tuple[str, str]]) -> dict[str, dict]:
    return {name: {"rows": rows(db, *ids), "objects": objects(stack, *ids)} for name, ids in runs.items()}


@pytest.fixture
def three_runs(each_stack, tmp_path):
    """'old' deleted (and its model) 31 days ago, as far as the database knows; 'recent'
    deleted just now; 'kept' never deleted. Each with everything a run can hold."""
    experiment_id = mlflow.create_experiment(f"gc-{uuid.uuid4().hex[:12]}")
    runs = {name: log_run(experiment_id, name, tmp_path) for name in ("old", "recent", "kept")}
    client = MlflowClient()
    for name in ("old", "recent"):
        run_id, model_id = runs[name]
        client.delete_run(run_id)
        client.delete_logged_model(model_id)
    db = database(each_stack)
    run_id, model_id = runs["old"]
    # Time passing, for the deletion only: gc reads runs.deleted_time and the model's last update.
    db.query(db.database, f"UPDATE runs SET deleted_time = deleted_time - {31 * DAY_MS} WHERE run_uuid = '{run_id}'")
    db.query(db.database, f"UPDATE logged_models SET last_updated_timestamp_ms = last_updated_timestamp_ms - "
                          f"{31 * DAY_MS} WHERE model_id = '{model_id}'")
    return runs, db


def test_gc_removes_the_old_deleted_run_and_nothing_else(each_stack, three_runs):
    runs, db = three_runs
    before = state(each_stack, db, runs)
    for name, found in before.items():  # what gc could remove is there to count
        assert found["rows"] == {"runs": 1, "params": 2, "metrics": 7, "latest_metrics": 3, "tags": found["rows"]["tags"],
                                 "logged_models": 1, "logged_model_params": 1, "logged_model_tags": found["rows"][
                                     "logged_model_tags"], "logged_model_metrics": 1}, name
        assert found["rows"]["tags"] >= 2 and found["rows"]["logged_model_tags"] >= 1
        keys = sorted(found["objects"])
        assert len(keys) == 4, keys  # readme.txt and config.json; the model's weights.bin and MLmodel
        assert any(runs[name][0] in key for key in keys) and any(runs[name][1] in key for key in keys)

    result = gc(each_stack)  # the default: --older-than 30d
    assert result.returncode == 0, result.stdout + result.stderr
    old_run, old_model = runs["old"]
    assert f"Run with ID {old_run} has been permanently deleted." in result.stdout
    assert f"Logged model with ID {old_model} has been permanently deleted." in result.stdout
    after = state(each_stack, db, runs)
    assert after["old"] == {"rows": dict.fromkeys([*RUN_TABLES, *MODEL_TABLES], 0), "objects": {}}
    assert after["recent"] == before["recent"] and after["kept"] == before["kept"]
    assert MlflowClient().get_run(runs["kept"][0]).data.params == {"lr": "0.01", "layers": "3"}


def test_bad_input_stops_in_one_line_and_deletes_nothing(each_stack, three_runs):
    runs, db = three_runs
    before = state(each_stack, db, runs)
    old, recent, kept = (runs[name][0] for name in ("old", "recent", "kept"))
    refusals = [
        (["--older-than", "a month"], 2, "gc: --older-than 'a month' is not an age: write it as MLflow does, "
                                         "e.g. 30d, 12h, 1d6h, 90m or 0s"),
        (["--run-ids", "12,x"], 2, "gc: --run-ids '12,x': give run ids (32 hex digits) separated by commas; "
                                   "'12' is not one"),
        (["--run-ids", kept], 1, f"gc: run {kept} is not deleted (gc only removes deleted runs: delete it in the UI "
                                 "or with MlflowClient().delete_run first); nothing was deleted"),
        (["--run-ids", "0" * 32], 1, f"gc: no run {'0' * 32} in this stack; nothing was deleted"),
        # The old run first: MLflow's own gc would have deleted it before reaching the recent one.
        (["--run-ids", f"{old},{recent}"], 1, f"gc: run {recent} was deleted less than 30d ago: add --older-than 0s "
                                              "to remove it now; nothing was deleted"),
    ]
    for args, code, line in refusals:
        result = gc(each_stack, *args)
        assert (result.returncode, result.stderr.strip().splitlines()) == (code, [line]), result.stderr
        assert state(each_stack, db, runs) == before, args
    # The control: good input deletes, and with --run-ids that run only (MLflow's gc would
    # also take every deleted logged model past the age: both deleted ones here).
    result = gc(each_stack, "--run-ids", recent, "--older-than", "0s")
    assert result.returncode == 0, result.stderr
    after = state(each_stack, db, runs)
    # The model stays, but for the metric the run logged to it (MLflow's schema deletes a
    # logged_model_metrics row with its run).
    assert after["recent"] == {"rows": {**before["recent"]["rows"], **dict.fromkeys(RUN_TABLES, 0),
                                        "logged_model_metrics": 0},
                               "objects": {key: etag for key, etag in before["recent"]["objects"].items()
                                           if recent not in key}}
    assert len(after["recent"]["objects"]) == 2  # the model's files
    assert after["old"] == before["old"] and after["kept"] == before["kept"]


def test_on_a_shared_stack_gc_deletes_through_the_server_as_its_first_admin(shared_twin, tmp_path, monkeypatch):
    """In a shared compose stack gc runs in the MLflow container, whose environment names the
    auth database and the first admin's password (docker-compose.share.yml): gc signs in to
    the server with them to delete the artifacts. Here the shared twin, with those variables;
    without them the server refuses the deletion, gc stops in one line and the run keeps its
    rows and files (nothing lost)."""
    user, password = shared_twin.admin_credentials
    for name, value in (("MLFLOW_TRACKING_USERNAME", user), ("MLFLOW_TRACKING_PASSWORD", password),
                        ("MLFLOW_TRACKING_SERVER_CERT_PATH", str(shared_twin.ca_file))):
        monkeypatch.setenv(name, value)
    with tracking_uri(shared_twin.tracking_uri):
        run_id, model_id = log_run(mlflow.create_experiment(f"gc-{uuid.uuid4().hex[:12]}"), "shared", tmp_path)
        MlflowClient().delete_run(run_id)
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name)
    db, runs = database(shared_twin), {"shared": (run_id, model_id)}
    before = state(shared_twin, db, runs)
    assert before["shared"]["rows"]["runs"] == 1 and len(before["shared"]["objects"]) == 4

    refused = gc(shared_twin, "--run-ids", run_id, "--older-than", "0s")
    line, = refused.stderr.strip().splitlines()
    assert refused.returncode == 1 and line.startswith(
        "gc: mlflow gc stopped: the tracking server did not delete a run's artifacts (401 Client Error") and line.endswith(
        "sign in as an admin (MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD); that run and the ones after it "
        "are kept"), refused.stderr
    assert state(shared_twin, db, runs) == before

    container_env = {"MLFLOW_AUTH_DATABASE_URI": shared_twin._database_uri(shared_twin.config["MLFLOW_AUTH_DATABASE"]),
                     "MLFLOW_AUTH_ADMIN_PASSWORD": password}
    result = gc(shared_twin, "--run-ids", run_id, "--older-than", "0s", env=container_env)
    assert result.returncode == 0, result.stderr
    after = state(shared_twin, db, runs)["shared"]
    assert {table: after["rows"][table] for table in RUN_TABLES} == dict.fromkeys(RUN_TABLES, 0)
    assert sorted(after["objects"]) == sorted(key for key in before["shared"]["objects"] if model_id in key)
