"""start_mlflow.sh / stop_mlflow.sh in local mode (no Docker engine), as a user runs them."""

from __future__ import annotations

import os
import socket
import subprocess
import uuid

import pytest
from mlflow import MlflowClient

from dl_model_tracking.local_stack import free_port, port_open
from dl_model_tracking.settings import REPO_ROOT


@pytest.fixture
def local_env(tmp_path):
    env = {**os.environ, "MLFLOW_STACK_MODE": "local", "MLFLOW_LOCAL_DIR": str(tmp_path / "data"),
           "MLFLOW_LOCAL_PORT": str(free_port())}
    yield env
    subprocess.run(["bash", "stop_mlflow.sh"], cwd=REPO_ROOT, env=env, capture_output=True)


def run(script: str, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", script, *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_local_mode_keeps_runs_and_models_across_stop_and_start(local_env, tmp_path):
    port = int(local_env["MLFLOW_LOCAL_PORT"])
    started = run("start_mlflow.sh", local_env)
    assert started.returncode == 0, started.stderr
    assert "No Docker engine" in started.stdout and f"http://localhost:{port}/" in started.stdout
    pid = int(open(os.path.join(local_env["MLFLOW_LOCAL_DIR"], "mlflow.pid")).read())

    uri = f"http://127.0.0.1:{port}"
    client = MlflowClient(uri, registry_uri=uri)
    experiment = client.create_experiment(f"durable-{uuid.uuid4().hex[:8]}")
    run_id = client.create_run(experiment).info.run_id
    client.log_param(run_id, "epochs", "3")
    client.log_text(run_id, "weights", "model.txt")
    name = f"local-model-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)

    stopped = run("stop_mlflow.sh", local_env)
    assert stopped.returncode == 0, stopped.stderr
    assert not port_open(port)
    assert not os.path.exists(f"/proc/{pid}"), "the server process outlived stop_mlflow.sh"

    assert run("start_mlflow.sh", local_env).returncode == 0
    assert client.get_run(run_id).data.params == {"epochs": "3"}
    downloaded = client.download_artifacts(run_id, "model.txt", dst_path=str(tmp_path))
    assert open(downloaded).read() == "weights"
    assert client.get_registered_model(name).name == name


def test_a_busy_port_is_named_with_the_fix(local_env):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(local_env["MLFLOW_LOCAL_PORT"])))
        squatter.listen()
        result = run("start_mlflow.sh", local_env)
    assert result.returncode != 0
    assert f"port {local_env['MLFLOW_LOCAL_PORT']} is in use" in result.stderr
    assert "MLFLOW_LOCAL_PORT=" in result.stderr


def test_a_missing_mlflow_binary_is_named_with_the_fix(local_env, tmp_path):
    # A copy of the scripts without the repo's .venv, and a PATH without mlflow.
    copy = tmp_path / "repo"
    (copy / "mlflow_docker_setup" / "mlflow").mkdir(parents=True)
    for rel in ("start_mlflow.sh", "mlflow_docker_setup/lib.sh",
                "mlflow_docker_setup/mlflow/serve.sh", "mlflow_docker_setup/.env"):
        (copy / rel).write_text((REPO_ROOT / rel).read_text())
    result = subprocess.run(["bash", str(copy / "start_mlflow.sh")],
                            env={**local_env, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert result.returncode != 0
    assert "mlflow not found" in result.stderr and "pip install -r requirements.txt" in result.stderr


def test_stop_without_a_running_stack_says_so(local_env):
    result = run("stop_mlflow.sh", local_env)
    assert result.returncode == 0
    assert "Nothing to stop" in result.stdout


def test_an_unknown_mode_is_refused(local_env):
    result = run("start_mlflow.sh", {**local_env, "MLFLOW_STACK_MODE": "kubernetes"})
    assert result.returncode != 0 and "must be docker, local or auto" in result.stderr
