"""MLflow's SQL store on genuine MySQL (Oracle's server, Debian sid's packages), in process.

The server is tests/genuine_mysql.py's: chrooted into a cached sid root filesystem, on a
free port of 127.0.0.1, with the stack's settings (mlflow_docker_setup/mysql/mlflow.cnf).
"""

from __future__ import annotations

import re
import subprocess
import time
import uuid

import pytest
from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.store.db.utils import _get_latest_schema_revision, _get_schema_version
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

from genuine_mysql import STACK_CONFIG


def test_the_server_is_mysql_not_mariadb(genuine_mysql):
    [(version, comment, redo_capacity)] = genuine_mysql.query(
        "SELECT VERSION(), @@version_comment, @@innodb_redo_log_capacity")
    # Debian's package version is the server's (9.7.4-2 reports '9.7.4-2').
    assert version == genuine_mysql.version
    assert re.match(r"\d+\.\d+\.\d+", version) and int(version.split(".")[0]) >= 8
    assert "mariadb" not in f"{version} {comment}".lower()
    assert redo_capacity > 0  # a MySQL 8.0.30+ variable, which MariaDB does not have
    # MariaDB names its server so in every build, and answers to this variable; MySQL does neither.
    with pytest.raises(Exception, match="Unknown system variable"):
        genuine_mysql.query("SELECT @@aria_pagecache_buffer_size")


def test_it_listens_on_loopback_only(genuine_mysql):
    listening = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True, check=True).stdout
    addresses = {line.split()[3] for line in listening.splitlines() if line.split()[3].endswith(f":{genuine_mysql.port}")}
    assert addresses == {f"127.0.0.1:{genuine_mysql.port}"}


def test_the_stack_settings_are_in_force(genuine_mysql):
    [row] = genuine_mysql.query("SELECT @@character_set_server, @@collation_server, @@max_connections, "
                                "@@innodb_buffer_pool_size, @@skip_name_resolve, @@log_bin, "
                                "@@log_bin_trust_function_creators")
    # The binary log is on, as in MySQL's own image: MLflow's triggers need the last setting.
    max_connections = int(re.search(r"^max_connections\s*=\s*(\d+)", STACK_CONFIG.read_text(), re.M).group(1))
    assert row == ("utf8mb4", "utf8mb4_unicode_ci", max_connections, 256 * 1024 * 1024, 1, 1, 1)


def test_mlflow_store_creates_its_schema_and_tracks_runs(genuine_mysql, tmp_path):
    started = time.monotonic()
    store = SqlAlchemyStore(genuine_mysql.uri, str(tmp_path / "artifacts"))  # runs every migration
    migrated = time.monotonic() - started
    try:
        assert _get_schema_version(store.engine) == _get_latest_schema_revision()
        experiment_id = store.create_experiment(f"genuine-mysql-{uuid.uuid4().hex[:8]}")
        now = int(time.time() * 1000)
        accuracies = {"low": 0.41, "high": 0.93, "middle": 0.77}
        run_ids = {}
        for name, accuracy in accuracies.items():
            run = store.create_run(experiment_id, user_id="tester", start_time=now, tags=[], run_name=name)
            run_ids[name] = run.info.run_id
            store.log_batch(
                run.info.run_id,
                metrics=[Metric("accuracy", accuracy, now, 0), Metric("loss", 1 - accuracy, now, 0),
                         *(Metric("val_f1", accuracy * step / 4, now + step, step) for step in range(5))],
                params=[Param("lr", "0.001"), Param("optimizer", "adamw"), Param("model", name)],
                tags=[RunTag("team", "provenance"), RunTag("note", "ünïcödé ✓")])
        found = store.search_runs([experiment_id], "metrics.accuracy > 0.5", ViewType.ACTIVE_ONLY,
                                  order_by=["metrics.accuracy DESC"])
        assert [r.info.run_id for r in found] == [run_ids["high"], run_ids["middle"]]
        best = found[0]
        assert best.data.metrics == {"accuracy": 0.93, "loss": pytest.approx(0.07), "val_f1": 0.93}
        assert best.data.params == {"lr": "0.001", "optimizer": "adamw", "model": "high"}
        assert best.data.tags["team"] == "provenance" and best.data.tags["note"] == "ünïcödé ✓"
        history = store.get_metric_history(run_ids["high"], "val_f1")
        assert [(m.step, m.value) for m in history] == [(s, 0.93 * s / 4) for s in range(5)]
        ascending = store.search_runs([experiment_id], "", ViewType.ACTIVE_ONLY, order_by=["metrics.loss ASC"])
        assert [r.info.run_name for r in ascending] == ["high", "middle", "low"]
    finally:
        store.engine.dispose()
    print(f"\nMLflow's schema created on MySQL {genuine_mysql.version} in {migrated:.1f} s")
