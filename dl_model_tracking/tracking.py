"""Logging by hand what autologging would log: metrics, parameters and the model."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
from collections.abc import Mapping
from importlib import metadata
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.utils.validation import MAX_ENTITY_KEY_LENGTH, MAX_PARAM_VAL_LENGTH

logger = logging.getLogger(__name__)

FULL_PARAMS_ARTIFACT = "params/full_values.json"
# What a logged model needs to be loaded again: the packages its pickle refers to.
MODEL_DISTRIBUTIONS = ["torch", "lightning-flash", "pytorch-lightning", "torchmetrics",
                       "transformers", "sentence-transformers", "datasets", "sentencepiece",
                       "numpy", "pandas", "setuptools", "mlflow"]


class ModelNotFound(LookupError):
    """A model URI names nothing the tracking server has."""


# -- metrics --------------------------------------------------------------------------
def metrics_to_floats(metrics: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """Split ``trainer.callback_metrics`` into loggable floats and what was dropped (and why)."""
    kept: dict[str, float] = {}
    dropped: dict[str, str] = {}
    for name, value in metrics.items():
        if hasattr(value, "numel"):  # a tensor
            if value.numel() != 1:
                dropped[name] = f"a tensor of {value.numel()} values, not one number"
                continue
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            dropped[name] = f"not a number ({type(value).__name__})"
            continue
        value = float(value)
        if not math.isfinite(value):
            dropped[name] = f"{value} is not a finite number"
            continue
        kept[name] = value
    return kept, dropped


def log_callback_metrics(metrics: Mapping[str, Any], step: int | None = None) -> dict[str, float]:
    """``mlflow.log_metrics`` of every numeric metric; warns naming each one dropped."""
    kept, dropped = metrics_to_floats(metrics)
    for name, reason in dropped.items():
        logger.warning("metric %r not logged: %s", name, reason)
    if kept:
        mlflow.log_metrics(kept, step=step)
    return kept


# -- parameters -------------------------------------------------------------------------
def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings become dotted keys; everything else is kept as it is."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


def collect_params(trainer, model) -> dict[str, Any]:
    """The chapter's hand-logged parameters: epochs, the first optimizer and its defaults, hparams."""
    params: dict[str, Any] = {"epochs": trainer.max_epochs}
    if trainer.optimizers:
        optimizer = trainer.optimizers[0]
        params["optimizer_name"] = type(optimizer).__name__
        params.update(flatten(optimizer.defaults, prefix="optimizer."))
    params.update(flatten(dict(model.hparams), prefix="hparams."))
    return params


def _param_value(value: Any) -> str:
    if isinstance(value, (list, tuple)) and all(not isinstance(v, (list, tuple, dict)) for v in value):
        return json.dumps([v if isinstance(v, (int, float, str, bool, type(None))) else str(v) for v in value])
    return str(value)


def log_params_within_limits(params: Mapping[str, Any]) -> dict[str, str]:
    """``mlflow.log_params`` that keeps within MLflow's limits and loses nothing.

    A value longer than MLflow's limit is logged cut short with a pointer, and every
    value in full goes to the artifact ``params/full_values.json``. A key over the key
    limit is an error, raised before anything is logged.
    """
    too_long_keys = [key for key in params if len(key) > MAX_ENTITY_KEY_LENGTH]
    if too_long_keys:
        raise ValueError(
            f"parameter names longer than MLflow's {MAX_ENTITY_KEY_LENGTH} characters: "
            + ", ".join(repr(k[:60] + "...") for k in too_long_keys) + "; shorten them"
        )
    full = {key: _param_value(value) for key, value in params.items()}
    logged = {}
    marker = f"...[cut; full value in {FULL_PARAMS_ARTIFACT}]"
    for key, value in full.items():
        if len(value) > MAX_PARAM_VAL_LENGTH:
            logger.warning("parameter %r is %d characters, over MLflow's %d: logged cut short, "
                           "full value in %s", key, len(value), MAX_PARAM_VAL_LENGTH, FULL_PARAMS_ARTIFACT)
            value = value[: MAX_PARAM_VAL_LENGTH - len(marker)] + marker
        logged[key] = value
    mlflow.log_params(logged)
    mlflow.log_dict(full, FULL_PARAMS_ARTIFACT)
    return logged


# -- the model --------------------------------------------------------------------------
def model_pip_requirements() -> list[str]:
    """Pins of the installed packages the model needs, so MLflow need not infer them.

    Inference re-imports the model in a subprocess (seconds per logged model); these
    pins come from the running environment, so the record stays exact.
    """
    pins = []
    for name in MODEL_DISTRIBUTIONS:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        pins.append(f"{name}=={version.split('+')[0]}")
    return pins


@contextlib.contextmanager
def pinned_model_requirements():
    """While active, models logged without explicit requirements get :func:`model_pip_requirements`.

    Autologging calls ``mlflow.pytorch.log_model`` without requirements, so MLflow infers
    them by importing the model in a subprocess (about 8 s per run here) and offers no
    setting to avoid it. The pins recorded instead are those of the running environment,
    the same packages inference would find.
    """
    original = mlflow.pytorch.log_model

    @functools.wraps(original)
    def log_model(*args, **kwargs):
        if not any(kwargs.get(k) for k in ("pip_requirements", "extra_pip_requirements", "conda_env")):
            kwargs["pip_requirements"] = model_pip_requirements()
        return original(*args, **kwargs)

    mlflow.pytorch.log_model = log_model
    try:
        yield
    finally:
        mlflow.pytorch.log_model = original


def log_and_register_model(model, registered_model_name: str | None, name: str = "model"):
    """Log a flash/PyTorch model to the active run and register it, in one call.

    MLflow 3's default ``pt2`` format needs a tensor input example, which a text model
    cannot give; the pickle format is what autologging stores too.
    """
    from .provenance import record_registration

    info = mlflow.pytorch.log_model(
        model,
        name=name,
        serialization_format="pickle",
        pip_requirements=model_pip_requirements(),
        registered_model_name=registered_model_name,
    )
    if registered_model_name:
        record_registration(registered_model_name, info.registered_model_version)
    return info


def load_logged_model(model_uri: str):
    """``mlflow.pytorch.load_model`` with a clear error when the URI names nothing."""
    try:
        return mlflow.pytorch.load_model(model_uri)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise ModelNotFound(
                f"No model at {model_uri!r}: {error.message}. Use a URI of a logged model, "
                "e.g. runs:/<run_id>/model or models:/<registered name>/<version>."
            ) from None
        raise
    except OSError as error:
        raise ModelNotFound(f"No model at {model_uri!r}: {error}") from None


def log_model_summary(model, max_depth: int = 3) -> str:
    """The Lightning model summary, as the run's ``model_summary.txt`` artifact."""
    from pytorch_lightning.utilities.model_summary import ModelSummary

    summary = str(ModelSummary(model, max_depth=max_depth))
    mlflow.log_text(summary, "model_summary.txt")
    return summary


# -- scikit-learn's binary metrics ---------------------------------------------------------
def binary_classification_report(y_true: list[str], y_pred: list[str], positive_label: str = "positive"):
    """Precision, recall and F1 of the positive class, and a confusion-matrix figure."""
    import matplotlib

    matplotlib.use("Agg")
    from sklearn.metrics import ConfusionMatrixDisplay, accuracy_score, f1_score, precision_score, recall_score

    if len(y_true) != len(y_pred) or not y_true:
        raise ValueError(f"need as many predictions as labels, and some: {len(y_true)} vs {len(y_pred)}")
    metrics = {
        "test_binary_precision": precision_score(y_true, y_pred, pos_label=positive_label, zero_division=0),
        "test_binary_recall": recall_score(y_true, y_pred, pos_label=positive_label, zero_division=0),
        "test_binary_f1": f1_score(y_true, y_pred, pos_label=positive_label, zero_division=0),
        "test_binary_accuracy": accuracy_score(y_true, y_pred),
    }
    labels = sorted(set(y_true) | set(y_pred))
    display = ConfusionMatrixDisplay.from_predictions(y_true, y_pred, labels=labels, colorbar=False)
    display.ax_.set_title("Test set confusion matrix")
    return {k: float(v) for k, v in metrics.items()}, display.figure_


def log_binary_classification_report(model, test_file, positive_label: str = "positive") -> dict[str, float]:
    """Score ``model`` on a test CSV with scikit-learn; log the metrics and the figure."""
    import matplotlib.pyplot as plt

    from .data import read_split
    from .model import predict_labels

    reviews, y_true = read_split(test_file)
    metrics, figure = binary_classification_report(y_true, predict_labels(model, reviews), positive_label)
    mlflow.log_metrics(metrics)
    mlflow.log_figure(figure, "confusion_matrix.png")
    plt.close(figure)
    return metrics
