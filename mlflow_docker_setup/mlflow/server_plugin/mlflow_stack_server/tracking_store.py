"""Which stores serve a ``mysql`` or ``sqlite`` backend URI (the ``mlflow.tracking_store``
and ``mlflow.model_registry_store`` entry points): this stack's faster tracking store, or
MLflow's own; and the model registry's, MLflow's own either way.

MLflow's server picks its store class itself for database URIs (a read replica, workspaces);
an entry point for ``mysql`` replaces that choice, so the builders make it again, the same way,
except that with a read replica the stack's stores read from it only to search
(replica_reads.py): the registry's reads stay on the primary.
The store module is imported inside the builder: importing MLflow's store while MLflow's
client registers its entry points fails with a partially initialised ``mlflow.tracking``.
"""

import logging
import os

# The MLflow release fast_sql_store was proven equal against (tests/test_store_equality.py):
# the pinned one. Under any other, MLflow's own store serves, and the log says why.
PROVEN_WITH_MLFLOW = "3.17.2"

# "stock" serves MLflow's own SqlAlchemyStore (for an A/B, or for a user who wants it).
STORE_SWITCH = "MLFLOW_STACK_TRACKING_STORE"
STORE_CHOICES = ("fast", "stock")


def chosen_store() -> str:
    choice = os.environ.get(STORE_SWITCH, "fast").strip().lower() or "fast"
    if choice not in STORE_CHOICES:
        raise ValueError(f"{STORE_SWITCH}={choice!r}: use one of {', '.join(STORE_CHOICES)}")
    return choice


def _stack_stores_serve(log: bool = False) -> bool:
    """False with MLFLOW_STACK_TRACKING_STORE=stock, or under an MLflow the stack's store was
    not proven with (then, with ``log``, the log says so)."""
    from mlflow import __version__ as mlflow_version

    if chosen_store() == "stock":
        return False
    if mlflow_version != PROVEN_WITH_MLFLOW:
        if log:
            logging.getLogger("mlflow_stack_server").warning(
                "mlflow-stack-server: MLflow's own tracking store serves: the stack's store is "
                "proven with MLflow %s, this is %s", PROVEN_WITH_MLFLOW, mlflow_version)
        return False
    return True


def build_tracking_store(store_uri, artifact_uri=None):
    from mlflow.environment_variables import MLFLOW_ENABLE_WORKSPACES
    from mlflow.server.constants import READ_REPLICA_BACKEND_STORE_URI_ENV_VAR
    from mlflow.store.tracking import DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH
    from mlflow.tracking._tracking_service.utils import _SERVER_ARTIFACT_ROOT_ENV_VAR

    if artifact_uri is None:  # a client's own store: MLflow's client falls back the same way
        artifact_uri = os.environ.get(
            _SERVER_ARTIFACT_ROOT_ENV_VAR, DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH
        )
    read_db_uri = os.environ.get(READ_REPLICA_BACKEND_STORE_URI_ENV_VAR)
    if MLFLOW_ENABLE_WORKSPACES.get():
        # Workspaces add their own scoping to every query; the fast paths do not know it.
        from mlflow.store.tracking.sqlalchemy_workspace_store import (
            WorkspaceAwareSqlAlchemyStore as store_class,
        )
    elif not _stack_stores_serve(log=True):
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as store_class
    else:
        from mlflow_stack_server.fast_sql_store import FastSqlAlchemyStore as store_class
    return store_class(store_uri, artifact_uri, read_db_uri=read_db_uri)


def build_registry_store(store_uri):
    from mlflow.environment_variables import MLFLOW_ENABLE_WORKSPACES
    from mlflow.server.constants import READ_REPLICA_BACKEND_STORE_URI_ENV_VAR

    read_db_uri = os.environ.get(READ_REPLICA_BACKEND_STORE_URI_ENV_VAR)
    if MLFLOW_ENABLE_WORKSPACES.get():
        from mlflow.store.model_registry.sqlalchemy_workspace_store import (
            WorkspaceAwareSqlAlchemyStore as store_class,
        )
    else:
        from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as store_class

        if _stack_stores_serve():
            # register_model reads back the version it created: never from a lagging replica.
            read_db_uri = None
    return store_class(store_uri, read_db_uri=read_db_uri)


if __name__ == "__main__":  # serve.sh, before the workers start: a wrong switch in one line
    try:
        print(f"mlflow-stack-server: {STORE_SWITCH}={chosen_store()}")
    except ValueError as error:
        raise SystemExit(f"serve.sh: {error}") from None
