"""One MLflow client's smoke run against the stack, for tests/test_old_clients.py.

Run by the Python of a venv holding some MLflow client (1.x to 3.x, mlflow-skinny is
enough: no pandas here), with MLFLOW_TRACKING_URI naming the stack and one argument: a
JSON object of what to send (experiment, params, metric history, tags, artifact text,
model name, alias). Every step is tried even when an earlier one failed (one that needs
an earlier result then fails too); the last line printed is JSON: the client's version,
each step's outcome ("ok", "absent: ..." when this client has no such call, else the
error in one line) and what was read back from the server.
"""

import json
import os
import sys
import tempfile
import traceback

import mlflow
from mlflow.tracking import MlflowClient

spec = json.loads(sys.argv[1])
client = MlflowClient()
steps = {}
read = {}
state = {}


class Absent(Exception):
    """This client has no such call (aliases before 2.3, say)."""


def step(name):
    """Run the decorated function here and now, recording its outcome as step `name`."""
    def run(fn):
        try:
            fn()
        except Absent as error:
            steps[name] = f"absent: {error}"
        except Exception as error:
            steps[name] = " ".join(f"{type(error).__name__}: {error}".split())[:400]
            traceback.print_exc(file=sys.stderr)
        else:
            steps[name] = "ok"
        return fn
    return run


def call(owner, attribute):
    if not hasattr(owner, attribute):
        raise Absent(f"{type(owner).__name__}.{attribute} is not in this client")
    return getattr(owner, attribute)


@step("experiment")
def _():
    mlflow.set_experiment(spec["experiment"])  # 1.x returns None: look it up
    experiment = client.get_experiment_by_name(spec["experiment"])
    state["experiment_id"] = experiment.experiment_id
    read["artifact_location"] = experiment.artifact_location


@step("run")
def _():
    run = mlflow.start_run(experiment_id=state["experiment_id"])
    state["run_id"] = read["run_id"] = run.info.run_id


@step("params")
def _():
    first, *rest = spec["params"].items()
    mlflow.log_param(*first)
    mlflow.log_params(dict(rest))


@step("metrics")
def _():
    for step_number, value in spec["metric_history"]:
        mlflow.log_metric(spec["metric"], value, step=step_number)


@step("tags")
def _():
    for key, value in spec["tags"].items():
        mlflow.set_tag(key, value)


@step("log_artifact")
def _():
    path = os.path.join(tempfile.mkdtemp(), spec["artifact_file"])
    with open(path, "wb") as out:
        out.write(spec["artifact_text"].encode())
    mlflow.log_artifact(path, artifact_path=spec["artifact_dir"])


@step("end_run")
def _():
    mlflow.end_run()


@step("read_run")
def _():
    run = client.get_run(state["run_id"])
    read["params"] = dict(run.data.params)
    read["tags"] = {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")}
    read["latest_metrics"] = dict(run.data.metrics)
    read["status"] = run.info.status
    read["artifact_uri"] = run.info.artifact_uri


@step("metric_history")
def _():
    history = client.get_metric_history(state["run_id"], spec["metric"])
    read["metric_history"] = sorted([m.step, m.value] for m in history)


@step("list_artifacts")
def _():
    read["artifacts"] = sorted(f.path for f in client.list_artifacts(state["run_id"], spec["artifact_dir"]))


@step("download_artifact")
def _():
    path = client.download_artifacts(state["run_id"], f"{spec['artifact_dir']}/{spec['artifact_file']}",
                                     tempfile.mkdtemp())
    with open(path, "rb") as downloaded:
        read["artifact_text"] = downloaded.read().decode()


@step("search_runs")
def _():
    runs = client.search_runs([state["experiment_id"]], spec["search_filter"])
    read["search_run_ids"] = [r.info.run_id for r in runs]


@step("register_model")
def _():
    # What mlflow.register_model("runs:/<id>/<dir>", name) does up to 2.x; MLflow 3 takes
    # that URI only for its logged models, so every client names the source the same way.
    client.create_registered_model(spec["model_name"])
    version = client.create_model_version(spec["model_name"], f"{read['artifact_uri']}/{spec['artifact_dir']}",
                                          state["run_id"])
    state["version"] = version.version


@step("get_model_version")
def _():
    version = client.get_model_version(spec["model_name"], state["version"])
    read["model_version"] = {"name": version.name, "version": str(version.version), "run_id": version.run_id,
                             "source": version.source, "status": version.status}


@step("model_download")
def _():
    # The registered version's files through its models:/ URI (the registry's download URI).
    from mlflow.tracking.artifact_utils import _download_artifact_from_uri

    root = _download_artifact_from_uri(f"models:/{spec['model_name']}/{state['version']}",
                                       output_path=tempfile.mkdtemp())
    with open(os.path.join(root, spec["artifact_file"]), "rb") as downloaded:
        read["model_artifact_text"] = downloaded.read().decode()


@step("set_alias")
def _():
    call(client, "set_registered_model_alias")(spec["model_name"], spec["alias"], state["version"])


@step("get_alias")
def _():
    version = call(client, "get_model_version_by_alias")(spec["model_name"], spec["alias"])
    read["alias_version"] = str(version.version)


print(json.dumps({"client_version": mlflow.__version__, "steps": steps, "read": read}))
