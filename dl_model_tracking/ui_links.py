"""Links into the MLflow UI that open its model-training view.

MLflow 3.17's UI opens in its GenAI mode (traces, an "Overview", the run under "Evaluation
runs") unless told otherwise. It takes its mode from a ``workflowType`` parameter of the
route after ``#``, then from the browser's last choice, and the experiment's
``mlflow.experimentKind`` tag does not change it (docs/mlflow-ui.md). Every link this
project prints carries the parameter, so it opens the runs table in any browser.

``python -m dl_model_tracking.ui_links URL`` prints the UI's link for a tracking server
(start_mlflow.sh).
"""

from __future__ import annotations

import sys
from urllib.parse import quote

MODEL_TRAINING = "workflowType=machine_learning"


def ui_url(tracking_uri: str, route: str = "/experiments") -> str:
    """The UI page at ``route`` (a hash route, e.g. ``/experiments/1/runs``), model-training view."""
    return f"{tracking_uri.rstrip('/')}/#{route}?{MODEL_TRAINING}"


def experiment_url(tracking_uri: str, experiment_id: str) -> str:
    """The experiment's runs table."""
    return ui_url(tracking_uri, f"/experiments/{experiment_id}/runs")


def run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """The run's page: parameters, metrics, artifacts, the logged model."""
    return ui_url(tracking_uri, f"/experiments/{experiment_id}/runs/{run_id}")


def model_version_url(tracking_uri: str, name: str, version: str | int) -> str:
    """The registered model version's page."""
    return ui_url(tracking_uri, f"/models/{quote(name, safe='')}/versions/{version}")


if __name__ == "__main__":
    print(ui_url(sys.argv[1]))
