"""Which tracking store serves: the stack's (mlflow_stack_server.fast_sql_store) for the
stack's database URIs, wherever the server runs, with MLflow's own choices kept (a read
replica, workspaces) and one switch back to MLflow's store."""

from pathlib import Path

import pytest
import requests
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow.store.tracking.sqlalchemy_workspace_store import WorkspaceAwareSqlAlchemyStore

from mlflow_stack.compose_stack import ComposeStack
from mlflow_stack_server.fast_sql_store import FastSqlAlchemyStore
from mlflow_stack_server.tracking_store import STORE_SWITCH, build_registry_store, build_tracking_store

SERVED_LINE = "mlflow-stack-server: tracking store FastSqlAlchemyStore"


def server_log(running) -> str:
    if isinstance(running, ComposeStack):
        return running.container_logs(lines=None)
    return running.services["mlflow"].log_path.read_text()


@pytest.mark.parametrize("uri", ["mysql+pymysql://u:p@127.0.0.1:1/mlflow", "mysql://u:p@h/db", "sqlite:///x.db"])
def test_the_server_and_the_client_build_the_stacks_store_for_its_database_uris(uri):
    from mlflow.server.handlers import _tracking_store_registry as server_registry
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry as client_registry

    assert server_registry.get_store_builder(uri) is build_tracking_store
    assert client_registry.get_store_builder(uri) is build_tracking_store


def test_the_switch_serves_mlflows_own_store_and_a_bad_value_says_what_to_use(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert type(build_tracking_store(uri, str(tmp_path))) is FastSqlAlchemyStore
    monkeypatch.setenv(STORE_SWITCH, "stock")
    assert type(build_tracking_store(uri, str(tmp_path))) is SqlAlchemyStore
    monkeypatch.setenv(STORE_SWITCH, "fastest")
    with pytest.raises(ValueError, match=f"{STORE_SWITCH}='fastest': use one of fast, stock"):
        build_tracking_store(uri, str(tmp_path))


def test_a_read_replica_given_to_the_server_is_still_used(tmp_path, monkeypatch):
    """`mlflow server --read-replica-backend-store-uri` reaches stores through this variable;
    overriding the mysql/sqlite schemes must not lose it."""
    from mlflow.server.constants import READ_REPLICA_BACKEND_STORE_URI_ENV_VAR

    primary, replica = f"sqlite:///{tmp_path}/primary.db", f"sqlite:///{tmp_path}/replica.db"
    SqlAlchemyStore(replica, str(tmp_path))  # MLflow's schema in the replica's file
    monkeypatch.setenv(READ_REPLICA_BACKEND_STORE_URI_ENV_VAR, replica)
    store = build_tracking_store(primary, str(tmp_path))
    assert isinstance(store, FastSqlAlchemyStore)
    assert str(store.read_engine.url) == replica != str(store.engine.url)


@pytest.fixture
def replica_that_replicates_nothing(tmp_path, monkeypatch):
    """A primary and a "replica" that are two databases of their own, so where each read
    went shows: the replica holds one run the primary does not. Yields (primary, that run)."""
    from mlflow.server.constants import READ_REPLICA_BACKEND_STORE_URI_ENV_VAR

    primary, replica = f"sqlite:///{tmp_path}/primary.db", f"sqlite:///{tmp_path}/replica.db"
    SqlAlchemyStore(primary, str(tmp_path))  # MLflow's schema and Default experiment in each
    only_there = SqlAlchemyStore(replica, str(tmp_path)).create_run("0", "u", 0, [], "only-on-the-replica")
    monkeypatch.setenv(READ_REPLICA_BACKEND_STORE_URI_ENV_VAR, replica)
    yield primary, only_there.info.run_id


def test_with_a_read_replica_the_stacks_store_reads_only_searches_from_it(replica_that_replicates_nothing,
                                                                          tmp_path, monkeypatch):
    """A client reads its own writes back (MLflow's store would read them from the replica,
    where a lagging one lacks them); searches come from the replica."""
    primary, only_on_replica = replica_that_replicates_nothing
    store = build_tracking_store(primary, str(tmp_path))
    run_id = store.create_run("0", "u", 0, [], "on-the-primary").info.run_id
    assert store.get_run(run_id).info.run_name == "on-the-primary"
    assert store.get_experiment_by_name("Default") is not None
    assert [run.info.run_id for run in store.search_runs(["0"], "", ViewType.ALL)] == [only_on_replica]
    with pytest.raises(MlflowException, match="not found"):
        store.get_run(only_on_replica)
    monkeypatch.setenv(STORE_SWITCH, "stock")
    stock = build_tracking_store(primary, str(tmp_path))
    with pytest.raises(MlflowException, match="not found"):
        stock.get_run(run_id)  # MLflow's routing: every read from the replica
    assert stock.get_run(only_on_replica).info.run_name == "only-on-the-replica"


@pytest.mark.parametrize("uri", ["mysql+pymysql://u:p@127.0.0.1:1/mlflow", "sqlite:///x.db"])
def test_the_model_registry_reads_from_the_primary_even_with_a_read_replica(replica_that_replicates_nothing,
                                                                           monkeypatch, uri):
    """register_model reads back the version it created: never from a lagging replica."""
    from mlflow.server.handlers import _model_registry_store_registry as server_registry
    from mlflow.tracking._model_registry.utils import _get_store_registry

    assert server_registry.get_store_builder(uri) is build_registry_store
    assert _get_store_registry().get_store_builder(uri) is build_registry_store
    primary, _ = replica_that_replicates_nothing
    assert build_registry_store(primary).read_engine is None
    monkeypatch.setenv(STORE_SWITCH, "stock")
    assert build_registry_store(primary).read_engine is not None


def test_workspaces_get_mlflows_workspace_aware_store(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ENABLE_WORKSPACES", "true")
    store = build_tracking_store(f"sqlite:///{tmp_path}/mlflow.db", str(tmp_path))
    assert type(store) is WorkspaceAwareSqlAlchemyStore


def test_the_running_server_serves_the_stacks_store_and_still_reports_an_sql_store(each_stack):
    """The twin and the compose image: the plugin is installed where the server runs."""
    assert SERVED_LINE in server_log(each_stack)
    info = requests.get(f"{each_stack.tracking_uri}/api/3.0/mlflow/server-info", timeout=10)
    assert info.status_code == 200, info.text
    assert info.json()["store_type"] == "SqlStore"


def test_a_wrong_switch_stops_the_server_start_in_one_line(tmp_path):
    import os
    import subprocess
    import sys

    from mlflow_stack.local_stack import SERVE_SCRIPT

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           STORE_SWITCH: "fastest", "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{tmp_path}/mlflow.db",
           "MLFLOW_ARTIFACTS_DESTINATION": f"file://{tmp_path}", "MLFLOW_PORT": "9", "MLFLOW_HOST": "127.0.0.1"}
    started = subprocess.run(["sh", str(SERVE_SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    assert started.returncode != 0
    assert started.stderr.strip() == f"serve.sh: {STORE_SWITCH}='fastest': use one of fast, stock"
    assert not (tmp_path / "mlflow.db").exists()  # stopped before anything was made


def test_the_store_is_proven_with_the_pinned_mlflow_and_any_other_gets_mlflows_own(tmp_path, monkeypatch, caplog):
    import mlflow

    from mlflow_stack.local_stack import STACK_DIR
    from mlflow_stack_server.tracking_store import PROVEN_WITH_MLFLOW

    pins = (STACK_DIR / "mlflow" / "requirements.txt").read_text().splitlines()
    assert f"mlflow=={PROVEN_WITH_MLFLOW}" in pins and mlflow.__version__ == PROVEN_WITH_MLFLOW
    monkeypatch.setattr(mlflow, "__version__", "3.16.1")  # as in an older server's environment
    with caplog.at_level("WARNING", logger="mlflow_stack_server"):
        store = build_tracking_store(f"sqlite:///{tmp_path}/mlflow.db", str(tmp_path))
    assert type(store) is SqlAlchemyStore
    assert "proven with MLflow 3.17.2, this is 3.16.1" in caplog.text
