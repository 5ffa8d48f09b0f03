"""The book's way: a client writes the artifacts of an experiment whose artifact location is
the bucket (``s3://<bucket>/<prefix>``) straight to S3, with MLFLOW_S3_ENDPOINT_URL and the
S3 keys in its environment. On the twin and on the compose stack, and the lines the twin
and start_mlflow.sh print so a reader can do it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid

import boto3
import mlflow
import pytest
import torch
from botocore.exceptions import NoCredentialsError
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.s3_artifact_repo import _cached_get_s3_client

from mlflow_stack.local_stack import s3_client
from mlflow_stack.settings import REPO_ROOT, stack_env
from test_stack import get

pytestmark = pytest.mark.stack

BOOK_VARIABLES = ("MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


@pytest.fixture
def client_env(monkeypatch):
    """Sets a client's S3 variables as a user exports them before starting Python.

    Within one process, boto3 keeps the first credentials it finds (its default session) and
    MLflow keeps a boto client per endpoint for 5 minutes: both are reset on every change, or
    a variable changed afterwards would go unseen. No credentials file and no instance
    metadata: a client without keys fails here instead of looking elsewhere."""
    for name in (*BOOK_VARIABLES, "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)

    def use(env: dict[str, str]) -> None:
        _cached_get_s3_client.cache_clear()
        monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
        for name in BOOK_VARIABLES:
            if name in env:
                monkeypatch.setenv(name, env[name])
            else:
                monkeypatch.delenv(name, raising=False)

    yield use
    _cached_get_s3_client.cache_clear()


def direct_experiment(stack) -> tuple[str, str]:
    """A new experiment whose artifact location is a prefix of the stack's bucket."""
    prefix = f"direct-{uuid.uuid4().hex[:8]}"
    name = f"dl_model_chapter03_{prefix}"
    return mlflow.create_experiment(name, artifact_location=f"s3://{stack.bucket}/{prefix}"), prefix


def test_the_books_way_writes_straight_to_the_bucket_and_everything_reads_it(each_stack, client_env, tmp_path):
    stack = each_stack
    experiment, prefix = direct_experiment(stack)
    client_env(stack.s3_env)
    payload = os.urandom(3 * 1024 * 1024)
    (tmp_path / "weights.bin").write_bytes(payload)
    model = torch.nn.Linear(4, 2)
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.log_artifact(str(tmp_path / "weights.bin"), "checkpoints")
        logged = mlflow.pytorch.log_model(model, name="model", serialization_format="pickle",
                                          pip_requirements=["torch"])
    run_id = run.info.run_id
    assert run.info.artifact_uri == f"s3://{stack.bucket}/{prefix}/{run_id}/artifacts"

    # In the bucket under the experiment's prefix, as the stack's own S3 client reads it.
    s3 = stack.s3_client()
    stored = s3.get_object(Bucket=stack.bucket, Key=f"{prefix}/{run_id}/artifacts/checkpoints/weights.bin")
    assert stored["Body"].read() == payload
    model_files = s3.list_objects_v2(Bucket=stack.bucket, Prefix=f"{prefix}/models/{logged.model_id}/artifacts/")
    assert {"MLmodel", "data/model.pth"} <= {o["Key"].split("/artifacts/", 1)[1] for o in model_files["Contents"]}

    # The client reads it back, and loads the model.
    back = MlflowClient().download_artifacts(run_id, "checkpoints/weights.bin", str(tmp_path / "back"))
    assert open(back, "rb").read() == payload
    loaded = mlflow.pytorch.load_model(f"runs:/{run_id}/model")
    assert torch.equal(loaded.weight, model.weight)

    # The server holds the keys too: the UI lists and shows the run's files.
    status, body = get(f"{stack.tracking_uri}/ajax-api/2.0/mlflow/artifacts/list?run_uuid={run_id}&path=checkpoints")
    assert status == 200 and json.loads(body)["files"] == [
        {"path": "checkpoints/weights.bin", "is_dir": False, "file_size": len(payload)}]
    assert get(f"{stack.tracking_uri}/get-artifact?path=checkpoints/weights.bin&run_uuid={run_id}") == (200, payload)

    # The registry takes the logged model; a version naming the bucket path itself is refused
    # (serve.sh lets the registry point only into the server's own store).
    name = f"direct-model-{uuid.uuid4().hex[:8]}"
    version = mlflow.register_model(f"runs:/{run_id}/model", name)
    assert version.source == f"models:/{logged.model_id}"
    assert torch.equal(mlflow.pytorch.load_model(f"models:/{name}/{version.version}").weight, model.weight)
    with pytest.raises(MlflowException, match="Invalid model version source"):
        MlflowClient().create_model_version(name, f"{run.info.artifact_uri}/checkpoints", run_id=run_id)


def test_without_the_keys_the_client_can_neither_write_nor_read(each_stack, client_env, tmp_path):
    stack = each_stack
    experiment, prefix = direct_experiment(stack)
    (tmp_path / "notes.txt").write_text("kept")
    client_env(stack.s3_env)
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.log_artifact(str(tmp_path / "notes.txt"))

    client_env({"MLFLOW_S3_ENDPOINT_URL": stack.s3_endpoint_url})
    with pytest.raises(NoCredentialsError, match="Unable to locate credentials"):
        with mlflow.start_run(experiment_id=experiment) as refused:
            mlflow.log_artifact(str(tmp_path / "notes.txt"))
    listed = stack.s3_client().list_objects_v2(Bucket=stack.bucket, Prefix=f"{prefix}/{refused.info.run_id}/")
    assert listed.get("Contents", []) == []
    # A read says nothing of credentials: MLflow's words, which a reader meets.
    with pytest.raises(MlflowException, match="Failed to download artifacts from path 'notes.txt'"):
        MlflowClient().download_artifacts(run.info.run_id, "notes.txt", str(tmp_path / "back"))


def printed_exports(text: str) -> dict[str, str]:
    """The values the ``export NAME=...`` lines of a summary give, as a shell evaluates them."""
    lines = "\n".join(line.strip() for line in text.splitlines() if line.strip().startswith("export "))
    shown = subprocess.run(["bash", "-c", lines + '\nfor v in "$@"; do printf "%s=%s\\n" "$v" "${!v}"; done',
                            "_", *BOOK_VARIABLES], capture_output=True, text=True, check=True, timeout=30)
    return dict(line.split("=", 1) for line in shown.stdout.splitlines())


def test_the_twin_prints_the_exports_of_the_books_way(tmp_path):
    log = open(tmp_path / "twin.err", "w")
    twin = subprocess.Popen([sys.executable, "-m", "mlflow_stack.local_stack", str(tmp_path / "twin")],
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        output = []
        while sum(line.lstrip().startswith("export ") for line in output) < len(BOOK_VARIABLES):
            line = twin.stdout.readline()
            assert line, f"the twin ended before printing the exports:\n{''.join(output)}"
            output.append(line)
        printed = "".join(output)
        bucket = stack_env()["MLFLOW_BUCKET"]
        assert f"s3://{bucket}/<prefix>" in printed
        exports = printed_exports(printed)
        assert set(exports) == set(BOOK_VARIABLES)
        # The printed keys are the twin's own: its S3 endpoint takes them.
        s3 = s3_client(exports["MLFLOW_S3_ENDPOINT_URL"], {"aws_access_key_id": exports["AWS_ACCESS_KEY_ID"],
                                                          "aws_secret_access_key": exports["AWS_SECRET_ACCESS_KEY"]})
        assert s3.head_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200
    finally:
        twin.send_signal(signal.SIGTERM)
        twin.wait(timeout=120)
        log.close()


@pytest.mark.docker
def test_start_prints_the_exports_of_the_books_way_without_the_secret(docker_stack):
    config = docker_stack.config
    printed = docker_stack.start_output
    assert f'artifact_location="s3://{docker_stack.bucket}/<prefix>"' in printed
    assert printed_exports(printed) == {
        "MLFLOW_S3_ENDPOINT_URL": f"http://localhost:{config['MINIO_API_PORT']}",
        "AWS_ACCESS_KEY_ID": config["MINIO_ROOT_USER"],
        "AWS_SECRET_ACCESS_KEY": config["MINIO_ROOT_PASSWORD"],  # read from secrets/stack.env
    }
    assert config["MINIO_ROOT_PASSWORD"] not in printed


@pytest.mark.docker
def test_a_shared_start_does_not_offer_the_books_way(shared_docker):
    """The root keys would bypass the sign-in, and MinIO is on loopback only anyway."""
    assert "Shared            :" in shared_docker.start_output
    assert "The book's way" not in shared_docker.start_output
    assert "MLFLOW_S3_ENDPOINT_URL" not in shared_docker.start_output
