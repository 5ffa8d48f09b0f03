"""docs/book-to-today.md: each place where the book's chapter-3 code breaks on
the pinned packages, shown failing in the book's form and working in the notebooks' form,
so that the list goes stale loudly when a package changes.

Covered elsewhere, and not repeated here:
- IMDB's download without internet, and the offline sample: tests/test_data.py
  (test_unreachable_download_says_what_to_do, test_download_fetches_and_unzips_once).
- runs:/<id>/model loading in seconds on the S3-backed stack: tests/test_stack.py
  (test_a_missing_artifact_is_answered_404_and_a_plain_client_loads_runs_uris).
- MLflow 1.x clients: tests/test_stack.py (test_mlflow_1x_registry_calls_reach_the_registry)
  and tests/test_old_clients.py.
- Autologging, then mlflow.pytorch.load_model and predicting raw text: tests/test_notebooks.py.
"""

from __future__ import annotations

import importlib
import logging
import pickle
import re
import subprocess
import sys
import uuid
from types import SimpleNamespace

import flash
import mlflow
import pytest
import torchmetrics
from flash.text import TextClassificationData
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from pytorch_lightning import seed_everything
from pytorch_lightning.utilities.model_summary import ModelSummary
from pytorch_lightning.utilities.rank_zero import LightningDeprecationWarning

from dl_model_tracking.data import load_imdb, write_sample_dataset
from mlflow_stack.local_stack import free_port
from dl_model_tracking.model import build_classifier, predict_labels
from mlflow_stack.settings import REPO_ROOT
from dl_model_tracking.tracking import model_pip_requirements

MODEL_ARTIFACT_PATH = "dl_model"  # the book's name for the model it logs by hand


@pytest.fixture(scope="module")
def trained(stack, offline_assets, tmp_path_factory):
    """The non-autologging notebook's run, made short: fine-tune with the chapter's F1 metric,
    test, then log and register the model, each with today's call."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("PL_GLOBAL_SEED", raising=False)  # seed_everything sets it; leave no trace
        seed_everything(7)
    datamodule = load_imdb(offline_assets["data_dir"], batch_size=32)
    model = build_classifier(datamodule, backbone=offline_assets["backbone"],
                             metrics=torchmetrics.F1Score(num_classes=datamodule.num_classes))
    trainer = flash.Trainer(max_epochs=1, limit_train_batches=10, enable_progress_bar=False,
                            default_root_dir=str(tmp_path_factory.mktemp("book-breaks")))
    experiment_id = mlflow.create_experiment(f"test-{uuid.uuid4().hex[:12]}")
    registered_name = f"book-breaks-{uuid.uuid4().hex[:8]}"
    with mlflow.start_run(experiment_id=experiment_id) as run:
        trainer.finetune(model, datamodule=datamodule, strategy="freeze")
        test_results = trainer.test(model, datamodule=datamodule)
        model_info = mlflow.pytorch.log_model(
            model, name=MODEL_ARTIFACT_PATH, serialization_format="pickle",
            pip_requirements=model_pip_requirements(), registered_model_name=registered_name)
    return SimpleNamespace(datamodule=datamodule, model=model, trainer=trainer, test_results=test_results,
                           experiment_id=experiment_id, run_id=run.info.run_id, model_info=model_info,
                           registered_name=registered_name)


def test_from_csv_takes_input_field_and_a_batch_size(tmp_path):
    files = write_sample_dataset(tmp_path, sizes={"train": 40, "val": 10, "test": 10})
    splits = dict(train_file=str(files.train), val_file=str(files.val), test_file=str(files.test))
    with pytest.raises(TypeError, match="required positional argument: 'input_field'"):
        TextClassificationData.from_csv(input_fields="review", target_fields="sentiment", **splits)
    with pytest.raises(TypeError, match="`batch_size` should be provided"):
        TextClassificationData.from_csv("review", "sentiment", **splits)
    # Today's call, as load_imdb makes it for the notebooks (its datamodule: tests/test_data.py).
    assert load_imdb(tmp_path, batch_size=8).batch_size == 8


@pytest.mark.stack
def test_f1_is_now_f1score_and_names_the_metrics(trained):
    with pytest.raises(AttributeError, match="no attribute 'F1'"):
        torchmetrics.F1(2)
    # The book's run reported test_f1; the metric's new name is in every key now.
    assert list(trained.model.val_metrics) == ["f1score"]
    assert set(trained.test_results[0]) == {"test_f1score", "test_cross_entropy"}


@pytest.mark.stack
def test_trainer_test_needs_the_model_and_the_datamodule(trained):
    with pytest.raises(ValueError, match="invalid dataloader"):
        trained.trainer.test()
    # With the datamodule alone, Lightning reloads the best checkpoint, and torch's safe
    # loading refuses the metric object pickled in the checkpoint's hyperparameters.
    with pytest.raises(pickle.UnpicklingError, match=r"(?s)Weights only load failed.*F1Score"):
        trained.trainer.test(datamodule=trained.datamodule)
    # Today's call, made in the fixture, scored the model just trained.
    assert trained.test_results[0]["test_f1score"] > 0.75


@pytest.mark.stack
def test_model_summary_is_imported_from_utilities(trained):
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("pytorch_lightning.core.memory")
    summary = ModelSummary(trained.model, max_depth=3)
    # The freeze strategy trains only the classification head: 128 x 2 weights and 2 biases.
    assert summary.trainable_parameters == 128 * 2 + 2
    assert "BertForSequenceClassification" in str(summary)


@pytest.mark.stack
def test_task_predict_is_gone_and_a_trainer_predicts(trained):
    model = mlflow.pytorch.load_model(f"runs:/{trained.run_id}/{MODEL_ARTIFACT_PATH}")
    with pytest.raises(AttributeError, match="`flash.Task.predict` has been removed"):
        model.predict({"This is great news"})
    assert predict_labels(model, ["This is great news"]) == ["positive"]


@pytest.mark.stack
def test_a_model_that_predicted_can_still_be_logged(trained):
    assert predict_labels(trained.model, ["This is great news"]) == ["positive"]
    with mlflow.start_run(experiment_id=trained.experiment_id):
        info = mlflow.pytorch.log_model(trained.model, name="after-predicting", serialization_format="pickle",
                                        pip_requirements=model_pip_requirements())
    reloaded = mlflow.pytorch.load_model(info.model_uri)
    assert predict_labels(reloaded, ["This is great news"]) == ["positive"]
    assert trained.model.trainer == trained.trainer  # its own trainer back (== sees through the weak proxy)


@pytest.mark.stack
def test_pyfunc_still_takes_no_raw_text(trained):
    model = mlflow.pyfunc.load_model(f"runs:/{trained.run_id}/{MODEL_ARTIFACT_PATH}")
    with pytest.raises(TypeError, match="does not support List or Dict input"):
        model.predict(["This is great news"])


@pytest.mark.stack
def test_log_model_needs_name_and_the_pickle_format(trained, caplog):
    mlflow_logger = logging.getLogger("mlflow")  # MLflow's loggers do not propagate to caplog's
    mlflow_logger.addHandler(caplog.handler)
    try:
        with mlflow.start_run(experiment_id=trained.experiment_id):
            with pytest.raises(MlflowException, match="'pt2', then input_example is required"):
                mlflow.pytorch.log_model(pytorch_model=trained.model, artifact_path=MODEL_ARTIFACT_PATH)
    finally:
        mlflow_logger.removeHandler(caplog.handler)
    assert "`artifact_path` is deprecated" in caplog.text
    # Today's call, made in the fixture, logged and registered the model in one go.
    version = MlflowClient().get_model_version(trained.registered_name,
                                               trained.model_info.registered_model_version)
    assert version.status == "READY" and version.run_id == trained.run_id


@pytest.mark.stack
def test_registry_stages_warn_and_aliases_take_their_place(trained):
    client = MlflowClient()
    name, version = trained.registered_name, str(trained.model_info.registered_model_version)
    with pytest.warns(FutureWarning, match="registry stages will be removed"):
        client.transition_model_version_stage(name, version, "Staging")
    assert client.get_model_version(name, version).current_stage == "Staging"
    client.set_registered_model_alias(name, "champion", version)
    assert client.get_model_version_by_alias(name, "champion").version == version


@pytest.mark.stack
def test_the_books_s3_variables_change_nothing(experiment_id, monkeypatch):
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "minio")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "minio123")
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_text("model internals", "notes.txt")
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
    assert mlflow.artifacts.load_text(f"{run.info.artifact_uri}/notes.txt") == "model internals"


def test_gpus_argument_still_works_but_is_deprecated(tmp_path):
    with pytest.warns(LightningDeprecationWarning, match="`Trainer\\(gpus=0\\)` is deprecated"):
        flash.Trainer(max_epochs=1, gpus=0, default_root_dir=str(tmp_path))


def python_fails(code: str) -> str:
    """The stderr of a fresh interpreter running ``code``, which must fail."""
    result = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True,
                            timeout=300, cwd=REPO_ROOT)
    assert result.returncode != 0, result.stdout[-2000:]
    return result.stderr


def test_numpy_and_setuptools_pins_are_still_needed():
    requirements = (REPO_ROOT / "requirements.txt").read_text()
    assert int(re.search(r"^numpy==(\d+)\.", requirements, re.M).group(1)) < 2
    assert int(re.search(r"^setuptools==(\d+)\.", requirements, re.M).group(1)) < 82
    # NumPy 2 removed np.Inf, which Lightning 1.9's checkpoint callback (in every Trainer) uses.
    assert "module 'numpy' has no attribute 'Inf'" in python_fails(
        "import numpy; del numpy.Inf; import pytorch_lightning; pytorch_lightning.Trainer()")
    # setuptools 82 removed pkg_resources, which importing Lightning 1.9 needs.
    assert "pkg_resources" in python_fails(
        "import sys; sys.modules['pkg_resources'] = None; import pytorch_lightning")
