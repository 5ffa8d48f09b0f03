"""The tutorial notebooks, executed end to end against the stack, then checked on the server."""

from __future__ import annotations

import math
import re
import uuid

import mlflow
import nbformat
import pytest
from mlflow import MlflowClient

from dl_model_tracking.model import predict_labels
from mlflow_stack.settings import DEFAULT_REGISTERED_MODEL_NAME

# The notebooks and stack markers come from the fixtures (conftest's FIXTURE_MARKERS), so
# the counter's own test below runs without a stack.

# A Python warning as the kernel shows it ("path:line: FutureWarning: ..."), or printed.
PYTHON_WARNING = re.compile(r"\w*Warning: ")
# What an executed notebook may still say on stderr, all of it meant for the reader:
# MLflow creating the test's fresh experiment (1), flash naming the backbone's provider for
# each classifier built (1 in the chapter, 2 by hand), Lightning's model summary, which
# shows the frozen backbone (11), "`Trainer.fit` stopped" (1), MLflow's warning that
# pickled models run code when loaded (1, explained in the notebook), and registration
# (3: registered or new version, waiting, created), in the chapter also the note that
# runs:/<id>/model resolved to the run's logged model (1, explained there).
QUIET_BOUNDS = {"dl_model_tracking.ipynb": 19, "dl_model-non-auto-tracking.ipynb": 19}


def bucket_keys(stack, prefix: str) -> list[str]:
    s3 = stack.s3_client()
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=stack.bucket, Prefix=prefix)
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


def warning_lines(notebook: dict) -> list[str]:
    """What a reader meets as warnings: every non-blank stderr line, and any other printed
    line naming a Python warning."""
    lines = []
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            if output.get("output_type") != "stream":
                continue
            text = output["text"] if isinstance(output["text"], str) else "".join(output["text"])
            lines += [line for line in text.splitlines()
                      if line.strip() and (output["name"] == "stderr" or PYTHON_WARNING.search(line))]
    return lines


def test_the_warning_counter_reports_stderr_and_printed_warnings():
    stderr = nbformat.v4.new_output("stream", name="stderr", text=(
        "/x/flash/__init__.py:21: FutureWarning: In the future `np.bool` ...\n"
        "  if not hasattr(numpy, tp_name):\n\nGPU available: False, used: False\n"))
    stdout = nbformat.v4.new_output("stream", name="stdout", text="accuracy 0.9\nUserWarning: printed\n")
    result = nbformat.v4.new_output("execute_result", data={"text/plain": "'FutureWarning: a value'"})
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("A FutureWarning: in prose is not output"),
        nbformat.v4.new_code_cell("...", outputs=[stderr]),
        nbformat.v4.new_code_cell("...", outputs=[stdout, result])])
    assert warning_lines(notebook) == [
        "/x/flash/__init__.py:21: FutureWarning: In the future `np.bool` ...",
        "  if not hasattr(numpy, tp_name):", "GPU available: False, used: False", "UserWarning: printed"]
    assert warning_lines(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("...", outputs=[result])])) == []


def assert_quiet(name: str, notebook: dict) -> None:
    """``notebook``: the executed copy run_notebook hands back (test-artifacts/ may hold
    another run's by now)."""
    lines = warning_lines(notebook)
    listing = "\n".join(lines)
    assert not [line for line in lines if PYTHON_WARNING.search(line)], listing
    assert len(lines) <= QUIET_BOUNDS[name], listing


def test_chapter_notebook_shows_no_python_warnings_and_little_on_stderr(chapter_notebook):
    assert_quiet("dl_model_tracking.ipynb", chapter_notebook["notebook"])


def test_autolog_run_is_finished_with_parameters_and_metrics(chapter_notebook):
    experiment = mlflow.get_experiment_by_name(chapter_notebook["experiment"])
    runs = mlflow.search_runs([experiment.experiment_id], filter_string="attributes.run_name = 'chapter03'",
                              output_format="list")
    assert [r.info.run_id for r in runs] == [chapter_notebook["run_id"]]
    run = runs[0]
    assert run.info.status == "FINISHED" and run.info.lifecycle_stage == "active"
    assert run.data.params["epochs"] == "2"
    assert run.data.params["optimizer_name"] == "Adam"
    for prefix in ("train_", "val_", "test_"):
        assert any(name.startswith(prefix) for name in run.data.metrics), prefix
    # The offline short run really learns.
    assert run.data.metrics["test_accuracy"] >= 0.8


def test_autologged_model_loads_and_predicts_labels_from_raw_text(chapter_notebook):
    model = mlflow.pytorch.load_model(f"runs:/{chapter_notebook['run_id']}/model")
    assert predict_labels(model, ["This is great news"]) == ["positive"]
    assert predict_labels(model, ["The plot was awful, boring and dull."]) == ["negative"]


def test_registered_version_points_at_the_autologged_model(chapter_notebook):
    client = MlflowClient()
    version = client.get_model_version(DEFAULT_REGISTERED_MODEL_NAME, chapter_notebook["version"])
    assert version.run_id == chapter_notebook["run_id"]
    assert version.source.startswith("models:/m-")
    logged = mlflow.get_logged_model(version.source.removeprefix("models:/"))
    assert logged.source_run_id == chapter_notebook["run_id"]
    assert logged.name == "model"


def test_autologged_model_files_are_in_the_bucket(chapter_notebook, stack):
    run = mlflow.get_run(chapter_notebook["run_id"])
    model_id = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id], output_format="list")[0].model_id
    keys = bucket_keys(stack, f"{run.info.experiment_id}/models/{model_id}/artifacts/")
    names = {key.rsplit("/", 1)[-1] for key in keys}
    assert {"MLmodel", "model.pth", "requirements.txt"} <= names, keys


@pytest.fixture(scope="module")
def manual_notebook(run_notebook):
    experiment = f"dl_model_chapter03-{uuid.uuid4().hex[:8]}"
    return {**run_notebook("dl_model-non-auto-tracking.ipynb", EXPERIMENT_NAME=experiment),
            "experiment": experiment}


def test_manual_notebook_shows_no_python_warnings_and_little_on_stderr(manual_notebook):
    assert_quiet("dl_model-non-auto-tracking.ipynb", manual_notebook["notebook"])


def test_manual_run_has_the_four_test_metrics_and_the_hand_logged_parameters(manual_notebook):
    run = mlflow.get_run(manual_notebook["run_id"])
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    for name in ("test_accuracy", "test_f1score", "test_precision", "test_recall"):
        assert 0.8 <= metrics[name] <= 1, name  # well above chance on the balanced sample
    params = run.data.params
    assert params["epochs"] == "2"
    assert params["optimizer_name"] == "Adam"
    assert float(params["optimizer.lr"]) > 0 and "optimizer.betas" in params
    assert params["hparams.num_classes"] == "2"
    assert params["hparams.backbone"].endswith("bert-tiny-offline")


def test_manual_run_has_binary_metrics_summary_and_confusion_matrix(manual_notebook):
    run = mlflow.get_run(manual_notebook["run_id"])
    metrics = run.data.metrics
    for name in ("test_binary_precision", "test_binary_recall", "test_binary_f1"):
        assert 0.8 <= metrics[name] <= 1, name
    # Computed from the same predictions: F1 is the harmonic mean of precision and recall.
    precision, recall = metrics["test_binary_precision"], metrics["test_binary_recall"]
    assert math.isclose(metrics["test_binary_f1"], 2 * precision * recall / (precision + recall), rel_tol=1e-5)
    artifacts = {a.path for a in MlflowClient().list_artifacts(run.info.run_id)}
    assert {"model_summary.txt", "confusion_matrix.png", "params"} <= artifacts


def test_manual_run_registered_its_model(manual_notebook):
    client = MlflowClient()
    versions = [v for v in client.search_model_versions(f"name='{DEFAULT_REGISTERED_MODEL_NAME}'")
                if v.run_id == manual_notebook["run_id"]]
    assert len(versions) == 1
    model = mlflow.pytorch.load_model(f"models:/{DEFAULT_REGISTERED_MODEL_NAME}/{versions[0].version}")
    assert predict_labels(model, ["This is great news"]) == ["positive"]


def test_provenance_notebook_promotes_with_a_reason_and_draws_the_graph(chapter_notebook, run_notebook):
    name, version = chapter_notebook["model_name"], chapter_notebook["version"]
    result = run_notebook("model_provenance.ipynb", VERSION=version, MODEL_NAME=name)
    client = MlflowClient()
    model_version = client.get_model_version(name, version)
    assert "champion" in model_version.aliases
    assert model_version.current_stage == "Staging"
    from dl_model_tracking.provenance import history

    reasons = {e["action"]: e["reason"] for e in history(name, version)}
    assert reasons["alias_set"].startswith("best test F1 so far")
    assert reasons["stage_changed"].startswith("candidate for production")
    assert (result["workdir"] / "nlp_dl_model-provenance.png").read_bytes()[:4] == b"\x89PNG"
