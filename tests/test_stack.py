"""Smoke tests of a running stack, always through nginx as a user would reach it: once
against the twin and once against the compose stack on a real Docker engine."""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from mlflow_stack.local_stack import RunningStack
from listening import listening_addresses

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def stack(each_stack):
    return each_stack


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_ui_page_and_its_static_assets_are_served(stack):
    status, body = get(stack.tracking_uri + "/")
    assert status == 200
    page = body.decode()
    assert "<title>MLflow</title>" in page
    assets = re.findall(r'(?:src|href)="\.?/?(static-files/static/[^"]+)"', page)
    assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
    for asset in assets:
        status, content = get(f"{stack.tracking_uri}/{asset}")
        assert status == 200 and len(content) > 1000, asset


def test_nginx_hides_its_version_and_security_headers_arrive_once(stack):
    for path in ("/", "/health", "/api/2.0/mlflow/experiments/search?max_results=1"):
        with urllib.request.urlopen(stack.tracking_uri + path, timeout=10) as response:
            headers = response.headers
        assert headers["Server"] == "nginx", (path, headers["Server"])
        assert headers.get_all("Referrer-Policy") == ["same-origin"], path  # nginx's
        assert headers.get_all("X-Content-Type-Options") == ["nosniff"], path  # MLflow's
        assert headers.get_all("X-Frame-Options") == ["SAMEORIGIN"], path  # MLflow's


def test_health_endpoint(stack):
    assert get(stack.tracking_uri + "/health") == (200, b"OK")


def test_unknown_host_header_is_refused_and_known_names_pass(stack):
    api = stack.tracking_uri + "/api/2.0/mlflow/experiments/search?max_results=1"
    assert get(api, {"Host": "localhost"})[0] == 200
    assert get(api, {"Host": "127.0.0.1"})[0] == 200
    assert get(api, {"Host": "attacker.example.com"})[0] == 403


def test_experiment_records_params_metrics_and_tags(experiment_id):
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_params({"lr": 0.01, "backbone": "prajjwal1/bert-tiny"})
        for step, value in enumerate([0.9, 0.5, 0.25]):
            mlflow.log_metric("loss", value, step=step)
        mlflow.set_tags({"team": "provenance", "stage": "smoke"})
    stored = MlflowClient().get_run(run.info.run_id)
    assert stored.info.status == "FINISHED"
    assert stored.data.params == {"lr": "0.01", "backbone": "prajjwal1/bert-tiny"}
    assert stored.data.metrics["loss"] == 0.25
    history = MlflowClient().get_metric_history(run.info.run_id, "loss")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == [0.9, 0.5, 0.25]
    assert stored.data.tags["team"] == "provenance"


# 6 MB: past nginx's 1 MB default body limit, one S3 request; 20 MB: streamed on to S3 in
# multipart chunks while it arrives (the server plugin's streaming upload).
@pytest.mark.parametrize("megabytes", [6, 20])
def test_large_artifact_round_trips_through_the_proxy_into_the_bucket(experiment_id, s3, stack, tmp_path,
                                                                      megabytes):
    payload = os.urandom(megabytes * 1024 * 1024)
    source = tmp_path / "weights.bin"
    source.write_bytes(payload)
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_artifact(str(source), artifact_path="checkpoints")
    artifact_uri = run.info.artifact_uri
    assert artifact_uri.startswith("mlflow-artifacts:/"), "clients must not need S3 credentials"

    downloaded = Path(mlflow.artifacts.download_artifacts(
        artifact_uri=f"{artifact_uri}/checkpoints/weights.bin", dst_path=str(tmp_path / "dl")))
    assert hashlib.sha256(downloaded.read_bytes()).digest() == hashlib.sha256(payload).digest()

    key = f"{experiment_id}/{run.info.run_id}/artifacts/checkpoints/weights.bin"
    stored = s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read()
    assert stored == payload


def test_many_large_uploads_at_once_all_arrive_whole(experiment_id, stack, tmp_path):
    """More streamed uploads at once than the server has spare worker threads (6 on 2
    cores): none may wait for a thread another upload holds."""
    from concurrent.futures import ThreadPoolExecutor

    client = MlflowClient()
    run_id = client.create_run(experiment_id).info.run_id
    sources = []
    for index in range(8):
        sources.append(tmp_path / f"part-{index}.bin")
        sources[-1].write_bytes(os.urandom(12 * 1024 * 1024))
    with ThreadPoolExecutor(len(sources)) as pool:
        list(pool.map(lambda source: client.log_artifact(run_id, str(source)), sources, timeout=300))
    for source in sources:
        downloaded = Path(client.download_artifacts(run_id, source.name, str(tmp_path / "back")))
        assert downloaded.read_bytes() == source.read_bytes(), source.name


def test_an_upload_cut_short_stores_nothing(experiment_id, s3, stack):
    """The server streams an upload on to S3 as it arrives: a body that stops halfway (the
    client went away) must abort it, not leave half a file under the artifact's name."""
    run = MlflowClient().create_run(experiment_id)
    path = f"{experiment_id}/{run.info.run_id}/artifacts/cut.bin"
    address = urllib.parse.urlsplit(stack.tracking_uri)
    with socket.create_connection((address.hostname, address.port), timeout=10) as connection:
        connection.sendall(f"PUT /api/2.0/mlflow-artifacts/artifacts/{path} HTTP/1.1\r\nHost: localhost\r\n"
                           f"Content-Length: {20 * 1024 * 1024}\r\n\r\n".encode())
        connection.sendall(os.urandom(12 * 1024 * 1024))  # past the first 8 MB part
    time.sleep(5)  # the server notices the closed connection at once; give it ample time
    with pytest.raises(s3.exceptions.ClientError) as missing:
        s3.head_object(Bucket=stack.bucket, Key=path)
    assert missing.value.response["Error"]["Code"] in {"404", "NoSuchKey", "NotFound"}
    assert "cut.bin" not in [f.path for f in MlflowClient().list_artifacts(run.info.run_id)]
    # The positive control: the same PUT, whole, stores the object (so the absence above was
    # the cut, not a refused request or a server that was down).
    whole = os.urandom(20 * 1024 * 1024)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=120)
    try:
        connection.request("PUT", f"/api/2.0/mlflow-artifacts/artifacts/{path}", body=whole,
                           headers={"Host": "localhost"})
        assert connection.getresponse().status == 200
    finally:
        connection.close()
    assert s3.get_object(Bucket=stack.bucket, Key=path)["Body"].read() == whole


def test_clients_are_kept_on_the_proxy_for_every_transfer(stack):
    """Presigned URLs would name the S3 endpoint as the server sees it (unreachable)."""
    import json

    for prefix in ("api", "ajax-api"):
        status, body = get(f"{stack.tracking_uri}/{prefix}/3.0/mlflow/server-info")
        info = json.loads(body)
        assert status == 200 and info["store_type"] == "SqlStore"
        assert info["multipart_uploads_enabled"] is False
        assert info["multipart_downloads_enabled"] is False


def test_anonymous_access_to_the_bucket_is_refused(experiment_id, s3, stack, tmp_path):
    (tmp_path / "secret.txt").write_text("model internals")
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_artifact(str(tmp_path / "secret.txt"))
    key = f"{experiment_id}/{run.info.run_id}/artifacts/secret.txt"
    assert s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == b"model internals"
    status, body = get(f"{stack.s3_endpoint_url}/{stack.bucket}/{key}")
    # MinIO and moto answer 403 AccessDenied; the rclone stand-in 400 UnsupportedAlgorithm.
    assert status in (400, 403), body[:200]
    assert b"model internals" not in body


def test_a_wrong_secret_is_refused_by_the_artifact_store(experiment_id, stack):
    from botocore.exceptions import ClientError

    from mlflow_stack.local_stack import s3_client

    wrong = {**stack.s3_credentials, "aws_secret_access_key": "not-the-secret"}
    with pytest.raises(ClientError) as refused:
        s3_client(stack.s3_endpoint_url, wrong).list_objects_v2(Bucket=stack.bucket)
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_registered_model_version_is_visible_through_the_registry(experiment_id):
    import uuid

    name = f"smoke-model-{uuid.uuid4().hex[:8]}"
    with mlflow.start_run(experiment_id=experiment_id) as run:
        info = mlflow.pyfunc.log_model(name="model", python_model=_Echo(), pip_requirements=["mlflow"])
    version = mlflow.register_model(info.model_uri, name)
    client = MlflowClient()
    fetched = client.get_model_version(name, version.version)
    assert fetched.run_id == run.info.run_id
    assert fetched.status == "READY"
    assert [v.version for v in client.search_model_versions(f"name='{name}'")] == [version.version]


def test_a_missing_artifact_is_answered_404_and_a_plain_client_loads_runs_uris(experiment_id, stack, tmp_path):
    """MLflow itself answers 500 here (issue #24535), which clients retry for minutes."""
    import subprocess
    import sys

    import torch

    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.pytorch.log_model(torch.nn.Linear(4, 2), name="model", serialization_format="pickle",
                                 pip_requirements=["torch"])
    # What load_model asks for first: the model among the run's own files, where it is not.
    missing = f"{experiment_id}/{run.info.run_id}/artifacts/model/MLmodel"
    status, body = get(f"{stack.tracking_uri}/api/2.0/mlflow-artifacts/artifacts/{missing}")
    assert status == 404, body[:300]
    assert b"RESOURCE_DOES_NOT_EXIST" in body

    # The chapter's call in a client with MLflow's default retry settings, which retry a 500
    # for about four minutes and then fail with another error code: the code printed shows
    # the 404 reached the client at once (the timeout only guards against a hang).
    plain_env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_HTTP_REQUEST_")}
    script = ("import mlflow, sys\n"
              "try:\n    model = mlflow.pytorch.load_model(sys.argv[1])\n"
              "except mlflow.exceptions.MlflowException as error:\n    print(error.error_code)\n"
              "else:\n    print(type(model).__name__, model.in_features)")

    def plain_client_load(uri: str) -> list[str]:
        loaded = subprocess.run([sys.executable, "-c", script, uri], env=plain_env, capture_output=True,
                                text=True, timeout=600, cwd=tmp_path)
        assert loaded.returncode == 0, loaded.stderr[-2000:]
        return loaded.stdout.split()

    assert plain_client_load(f"runs:/{run.info.run_id}/model") == ["Linear", "4"]
    # A model that does not exist, in a run that does, or in a registry name that does not.
    assert plain_client_load(f"runs:/{run.info.run_id}/no-such-model") == ["RESOURCE_DOES_NOT_EXIST"]
    assert plain_client_load(f"models:/no-such-model-{run.info.run_id[:6]}/1") == ["RESOURCE_DOES_NOT_EXIST"]


def test_mlflow_1x_registry_calls_reach_the_registry(stack):
    """1.x clients use /api/2.0/preview/mlflow/...; nginx maps it to /api/2.0/mlflow/..."""
    import json
    import uuid

    name = f"preview-{uuid.uuid4().hex[:8]}"
    request = urllib.request.Request(
        f"{stack.tracking_uri}/api/2.0/preview/mlflow/registered-models/create",
        data=json.dumps({"name": name}).encode(), headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        assert json.loads(response.read())["registered_model"]["name"] == name
    status, body = get(f"{stack.tracking_uri}/api/2.0/preview/mlflow/registered-models/get?name={name}")
    assert status == 200 and json.loads(body)["registered_model"]["name"] == name
    assert MlflowClient().get_registered_model(name).name == name


def test_registry_refuses_sources_outside_the_servers_store(stack):
    import uuid

    name = f"smoke-source-{uuid.uuid4().hex[:8]}"
    client = MlflowClient()
    client.create_registered_model(name)
    with pytest.raises(mlflow.exceptions.MlflowException, match="Invalid model version source"):
        client.create_model_version(name, source="file:///etc/passwd")


def test_data_survives_restarting_the_server_and_the_database(experiment_id, stack):
    if isinstance(stack, RunningStack):
        pytest.skip("restarting services needs the stack's owner; a stack given by address has none here")
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_param("durable", "yes")
        mlflow.log_metric("f1", 0.87)
    for service in ("mlflow", "database"):
        stack.restart(service)
        stored = MlflowClient().get_run(run.info.run_id)
        assert stored.data.params["durable"] == "yes", service
        assert stored.data.metrics["f1"] == 0.87, service


def test_the_server_runs_with_the_flags_of_serve_sh(stack):
    if isinstance(stack, RunningStack):
        pytest.skip("reads the server's own process; a stack given by address has none here")
    # serve.sh execs mlflow in place, so the process it started *is* the server.
    command = stack.server_command()
    assert "mlflow server" in command
    assert "--serve-artifacts" in command
    assert f"--artifacts-destination s3://{stack.bucket}" in command
    assert "--allowed-hosts localhost," in command
    # The database password stays out of the process list: MLflow reads the URI from the environment.
    assert "--backend-store-uri" not in command and "mysql+pymysql://" not in command


def test_every_service_of_the_stack_listens_on_loopback_only(stack):
    if isinstance(stack, RunningStack):
        pytest.skip("reads the stack's own sockets; a stack given by address has none here")
    if hasattr(stack, "published_ports"):  # compose: what the engine publishes on the host
        published = [binding for service in ("mysql", "minio", "mlflow", "nginx")
                     for binding in stack.published_ports(service)]
        assert published and {address for address, _ in published} == {"127.0.0.1"}
        assert listening_addresses({port for _, port in published}) == {"127.0.0.1"}
    else:  # the twin: its own processes
        ports = {stack.mysql_port, stack.s3_port, stack.mlflow_port, stack.nginx_port}
        assert listening_addresses(ports) == {"127.0.0.1"}


class _Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: list[str], params=None) -> list[str]:
        return model_input
