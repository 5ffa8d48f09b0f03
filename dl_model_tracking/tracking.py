"""What logging by hand needs besides MLflow's calls: loggable metrics and parameters, pinned
model requirements, and scikit-learn's binary metrics."""

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
from mlflow.utils.validation import MAX_ENTITY_KEY_LENGTH, MAX_PARAM_VAL_LENGTH

logger = logging.getLogger(__name__)

FULL_PARAMS_ARTIFACT = "params/full_values.json"
# What a logged model needs to be loaded again: the packages its pickle refers to.
MODEL_DISTRIBUTIONS = ["torch", "lightning-flash", "pytorch-lightning", "torchmetrics",
                       "transformers", "sentence-transformers", "datasets", "sentencepiece",
                       "numpy", "pandas", "setuptools", "mlflow"]


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


def _param_value(value: Any) -> str:
    if isinstance(value, (list, tuple)) and all(not isinstance(v, (list, tuple, dict)) for v in value):
        return json.dumps([v if isinstance(v, (int, float, str, bool, type(None))) else str(v) for v in value])
    return str(value)


def params_within_limits(params: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """Split parameters into what ``mlflow.log_params`` accepts and every value in full.

    A value longer than MLflow's limit is cut short with a pointer to
    ``params/full_values.json``, where the full values belong (``mlflow.log_dict``). A key
    over the key limit is an error, raised before anything is logged.
    """
    too_long_keys = [key for key in params if len(key) > MAX_ENTITY_KEY_LENGTH]
    if too_long_keys:
        raise ValueError(
            f"parameter names longer than MLflow's {MAX_ENTITY_KEY_LENGTH} characters: "
            + ", ".join(repr(k[:60] + "...") for k in too_long_keys) + "; shorten them"
        )
    full = {key: _param_value(value) for key, value in params.items()}
    loggable = {}
    marker = f"...[cut; full value in {FULL_PARAMS_ARTIFACT}]"
    for key, value in full.items():
        if len(value) > MAX_PARAM_VAL_LENGTH:
            logger.warning("parameter %r is %d characters, over MLflow's %d: logged cut short, "
                           "full value in %s", key, len(value), MAX_PARAM_VAL_LENGTH, FULL_PARAMS_ARTIFACT)
            value = value[: MAX_PARAM_VAL_LENGTH - len(marker)] + marker
        loggable[key] = value
    return loggable, full


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


# -- scikit-learn's binary metrics ---------------------------------------------------------
def binary_classification_report(y_true: list[str], y_pred: list[str], positive_label: str = "positive"):
    """Precision, recall and F1 of the positive class, and a confusion-matrix figure.

    The figure is made without pyplot, so the caller's plotting backend is left alone and
    nothing needs closing.
    """
    from matplotlib.figure import Figure
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
    display = ConfusionMatrixDisplay.from_predictions(y_true, y_pred, labels=labels, colorbar=False,
                                                      ax=Figure().subplots())
    display.ax_.set_title("Test set confusion matrix")
    return {k: float(v) for k, v in metrics.items()}, display.figure_
