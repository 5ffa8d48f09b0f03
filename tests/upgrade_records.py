"""Every kind of record a tracking server keeps, written and read back, for tests/test_upgrade.py.

Run by the Python of a venv holding some MLflow release (2.x or 3.x, the full package),
with MLFLOW_TRACKING_URI naming the server:

    python upgrade_records.py log TAG     logs one of each record, prints what it sent
    python upgrade_records.py read TAG    prints everything the server holds for TAG

The last line printed is JSON. `read` gives the same JSON for the same records under any
of these releases, so a snapshot taken before an upgrade compares with one taken after.
"""

import hashlib
import json
import os
import sys
import tempfile

import mlflow
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

MAJOR = int(mlflow.__version__.split(".")[0])
client = MlflowClient()


def names(tag):
    return {"experiment": f"upgrade-{tag}", "model": f"upgrade-{tag}"}


class Doubler(mlflow.pyfunc.PythonModel):
    """The logged model: a pyfunc whose answer shows it loaded (pickled by value)."""

    def predict(self, context, model_input, params=None):
        return model_input * 2


def log(tag):
    import numpy as np
    import pandas as pd

    name = names(tag)
    experiment_id = client.create_experiment(name["experiment"], tags={"team": "upgrade", "tag": tag})
    history = [(step, 1.0 / (step + 1), 1_700_000_000_000 + step * 1000) for step in range(60)]
    blob = bytes(range(256)) * 400  # binary, 100 KiB
    text = f"logged by MLflow {mlflow.__version__}\nnon-ASCII: é ✓\n"
    table = pd.DataFrame({"x": np.arange(6, dtype="float64"), "y": np.arange(6, dtype="float64") * 2})
    with mlflow.start_run(experiment_id=experiment_id, run_name="trained",
                          description="a run from before the upgrade") as run:
        mlflow.log_params({"lr": "0.001", "epochs": "3", "optimizer": "adam"})
        mlflow.set_tags({"stage": "before-upgrade", "client": mlflow.__version__})
        for step, value, timestamp in history:
            client.log_metric(run.info.run_id, "loss", value, timestamp=timestamp, step=step)
        mlflow.log_metrics({"f1": 0.75, "precision": 0.5})
        dataset = mlflow.data.from_pandas(table, source="s3://datasets/upgrade.csv", name="upgrade-data",
                                          targets="y")
        mlflow.log_input(dataset, context="training", tags={"split": "train"})
        with tempfile.TemporaryDirectory() as folder:
            for relative, content in (("notes/readme.txt", text.encode()), ("blob.bin", blob)):
                path = os.path.join(folder, relative)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as f:
                    f.write(content)
            mlflow.log_artifacts(folder)
        where = {"name": "model"} if MAJOR >= 3 else {"artifact_path": "model"}
        # Explicit requirements: inferring them re-imports the model in a subprocess (slow).
        mlflow.pyfunc.log_model(python_model=Doubler(), pip_requirements=["pandas"], **where)
    with mlflow.start_run(experiment_id=experiment_id, run_name="deleted") as dropped:
        mlflow.log_param("kept", "even when deleted")
    client.delete_run(dropped.info.run_id)

    client.create_registered_model(name["model"], tags={"owner": "upgrade-test"}, description="doubles")
    version = mlflow.register_model(f"runs:/{run.info.run_id}/model", name["model"])
    client.update_model_version(name["model"], version.version, description="first")
    client.create_model_version(name["model"], f"{run.info.artifact_uri}/notes", run_id=run.info.run_id)
    client.set_registered_model_alias(name["model"], "champion", version.version)
    client.set_model_version_tag(name["model"], version.version, "reviewer", "upgrade-test")
    return {"run_id": run.info.run_id, "experiment_id": experiment_id, "metric_history": history,
            "artifact_sha256": {"notes/readme.txt": sha256(text.encode()), "blob.bin": sha256(blob)},
            "model": name["model"], "champion": version.version}


def sha256(content):
    return hashlib.sha256(content).hexdigest()


def fields(entity, *attributes):
    return {attribute: getattr(entity, attribute, None) for attribute in attributes}


def tree_sha256(folder):
    """Every file under `folder`, by relative path: its SHA-256."""
    found = {}
    for root, _, files in os.walk(folder):
        for file in files:
            path = os.path.join(root, file)
            with open(path, "rb") as f:
                found[os.path.relpath(path, folder)] = sha256(f.read())
    return found


def artifacts(**where):
    with tempfile.TemporaryDirectory() as folder:
        return tree_sha256(mlflow.artifacts.download_artifacts(dst_path=folder, **where))


def read_run(run):
    inputs = [{**fields(d.dataset, "name", "digest", "source_type", "source", "schema", "profile"),
               "tags": {t.key: t.value for t in d.tags}} for d in run.inputs.dataset_inputs]
    return {
        **fields(run.info, "run_id", "run_name", "experiment_id", "user_id", "status", "start_time",
                 "end_time", "artifact_uri", "lifecycle_stage"),
        "params": run.data.params, "tags": run.data.tags, "metrics": run.data.metrics,
        "metric_history": {key: sorted([m.step, m.value, m.timestamp]
                                       for m in client.get_metric_history(run.info.run_id, key))
                           for key in run.data.metrics},
        "dataset_inputs": sorted(inputs, key=json.dumps),
        "artifacts": artifacts(run_id=run.info.run_id, artifact_path="")
        if run.info.lifecycle_stage == "active" else None,
    }


def read(tag):
    name = names(tag)
    experiment = client.get_experiment_by_name(name["experiment"])
    runs = client.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL,
                              order_by=["attributes.start_time ASC"])
    model = client.get_registered_model(name["model"])
    versions = sorted(client.search_model_versions(f"name='{name['model']}'"), key=lambda v: int(v.version))
    return {
        "experiment": {**fields(experiment, "experiment_id", "name", "artifact_location", "lifecycle_stage",
                                "creation_time", "last_update_time"), "tags": experiment.tags},
        "runs": [read_run(run) for run in runs],
        "registered_model": {**fields(model, "name", "description", "creation_timestamp",
                                      "last_updated_timestamp"),
                             "tags": model.tags, "aliases": model.aliases},
        "versions": [{**fields(v, "name", "version", "source", "run_id", "status", "description",
                               "creation_timestamp", "last_updated_timestamp"),
                      "tags": v.tags, "aliases": sorted(v.aliases),
                      "artifacts": artifacts(artifact_uri=f"models:/{v.name}/{v.version}")} for v in versions],
    }


if __name__ == "__main__":
    command, tag = sys.argv[1:3]
    print(json.dumps({"version": mlflow.__version__, **{"log": log, "read": read}[command](tag)}))
