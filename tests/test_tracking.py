"""The hand-logging helpers, with good and bad input, against the stack."""

from __future__ import annotations

import logging
import math

import mlflow
import pytest
import torch
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

from dl_model_tracking.tracking import (
    FULL_PARAMS_ARTIFACT,
    binary_classification_report,
    flatten,
    metrics_to_floats,
    model_pip_requirements,
    params_within_limits,
)


def test_callback_metrics_become_floats_and_the_rest_is_named():
    kept, dropped = metrics_to_floats({
        "val_f1": torch.tensor(0.75), "epoch": 2, "train_loss": torch.tensor([0.5]),
        "nan_loss": torch.tensor(float("nan")), "inf": math.inf, "per_class": torch.tensor([0.1, 0.9]),
        "note": "fine", "flag": True,
    })
    assert kept == {"val_f1": 0.75, "epoch": 2.0, "train_loss": 0.5}
    assert set(dropped) == {"nan_loss", "inf", "per_class", "note", "flag"}
    assert "not a finite number" in dropped["nan_loss"] and "2 values" in dropped["per_class"]


@pytest.mark.stack
def test_a_nan_metric_is_left_out_with_its_reason_and_the_others_are_logged(experiment_id):
    # As the hand-logging notebook does it.
    with mlflow.start_run(experiment_id=experiment_id) as run:
        cur_metrics, left_out = metrics_to_floats({"test_f1": torch.tensor(0.9), "test_loss": float("nan")})
        mlflow.log_metrics(cur_metrics)
    assert left_out == {"test_loss": "nan is not a finite number"}
    assert mlflow.get_run(run.info.run_id).data.metrics == {"test_f1": pytest.approx(0.9)}


def test_flatten_nests_with_dots():
    assert flatten({"a": 1, "b": {"c": 2, "d": {"e": 3}}}) == {"a": 1, "b.c": 2, "b.d.e": 3}


@pytest.mark.stack
def test_too_long_param_value_is_cut_with_a_pointer_and_kept_in_full(experiment_id, caplog):
    long_value = "x" * (MAX_PARAM_VAL_LENGTH + 500)
    with mlflow.start_run(experiment_id=experiment_id) as run, caplog.at_level(logging.WARNING):
        params, full_values = params_within_limits({"label_map": long_value, "betas": (0.9, 0.999)})
        mlflow.log_params(params)
        mlflow.log_dict(full_values, FULL_PARAMS_ARTIFACT)
    stored = mlflow.get_run(run.info.run_id).data.params
    assert len(stored["label_map"]) == MAX_PARAM_VAL_LENGTH
    assert stored["label_map"].endswith(f"full value in {FULL_PARAMS_ARTIFACT}]")
    assert stored["betas"] == "[0.9, 0.999]"
    assert "'label_map' is 6500 characters" in caplog.text
    full = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/{FULL_PARAMS_ARTIFACT}")
    assert full["label_map"] == long_value


def test_too_long_param_key_is_refused_with_what_to_do():
    with pytest.raises(ValueError, match="longer than MLflow's 250 characters: 'kkk.*; shorten them"):
        params_within_limits({"ok": 1, "k" * 300: 2})


def test_model_requirements_pin_the_running_environment():
    pins = model_pip_requirements()
    assert f"torch=={torch.__version__.split('+')[0]}" in pins  # the torch this process runs
    assert f"mlflow=={mlflow.__version__}" in pins
    assert any(p.startswith("lightning-flash==0.8.2") for p in pins)


def test_binary_report_scores_the_positive_class():
    y_true = ["positive", "positive", "negative", "negative", "positive"]
    y_pred = ["positive", "negative", "negative", "positive", "positive"]
    metrics, figure = binary_classification_report(y_true, y_pred)
    assert metrics == pytest.approx({"test_binary_precision": 2 / 3, "test_binary_recall": 2 / 3,
                                     "test_binary_f1": 2 / 3, "test_binary_accuracy": 3 / 5})
    assert figure.axes[0].get_title() == "Test set confusion matrix"
    with pytest.raises(ValueError, match="as many predictions as labels"):
        binary_classification_report(y_true, y_pred[:2])


@pytest.mark.stack
def test_models_logged_inside_a_tracked_run_get_pinned_requirements(experiment_id):
    from dl_model_tracking.provenance import start_run

    model = torch.nn.Linear(2, 2)
    with start_run(experiment_id, run_name="pins"):
        # As autologging calls it: no requirements given.
        info = mlflow.pytorch.log_model(model, name="model", serialization_format="pickle")
    location = mlflow.get_logged_model(info.model_id).artifact_location
    requirements = mlflow.artifacts.load_text(f"{location}/requirements.txt").split()
    assert requirements == model_pip_requirements()
    assert not hasattr(mlflow.pytorch.log_model, "__wrapped__"), "the pinning must end with the run"
