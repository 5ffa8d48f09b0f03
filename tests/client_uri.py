"""This process's MLflow client pointed at a server for a while, then put back exactly as it was.

mlflow.set_tracking_uri also exports MLFLOW_TRACKING_URI (for subprocesses), so putting it
back with set_tracking_uri(mlflow.get_tracking_uri()) would leave that variable set to
MLflow's default, and a session fixture started later would take it for a user's server.
"""

import contextlib
import os

import mlflow
from mlflow.tracking._tracking_service import utils as tracking_utils


@contextlib.contextmanager
def tracking_uri(uri: str):
    previous = tracking_utils._tracking_uri  # None when only the variable (or nothing) set it
    variable = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)
        if variable is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = variable
