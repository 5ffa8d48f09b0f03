"""start_mlflow.sh / stop_mlflow.sh in local mode, and the Python environment they prepare."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from pathlib import Path

import pytest
from mlflow import MlflowClient

from mlflow_stack.local_stack import free_port, port_open
from mlflow_stack.settings import REPO_ROOT
from listening import listening_addresses


@pytest.fixture
def local_env(tmp_path):
    # A compose project of its own: stop_mlflow.sh must never reach a stack of this checkout.
    env = {**os.environ, "MLFLOW_STACK_MODE": "local", "MLFLOW_LOCAL_DIR": str(tmp_path / "data"),
           "MLFLOW_LOCAL_PORT": str(free_port()), "COMPOSE_PROJECT_NAME": f"mlflow-test-{uuid.uuid4().hex[:8]}"}
    yield env
    subprocess.run(["bash", "stop_mlflow.sh"], cwd=REPO_ROOT, env=env, capture_output=True)


def run(script: str, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", script, *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_local_mode_keeps_runs_and_models_across_stop_and_start(local_env, tmp_path):
    port = int(local_env["MLFLOW_LOCAL_PORT"])
    started = run("start_mlflow.sh", local_env)
    assert started.returncode == 0, started.stderr
    assert "MLFLOW_STACK_MODE=local: starting a local MLflow server" in started.stdout
    assert f"http://localhost:{port}/" in started.stdout
    pid = int(open(os.path.join(local_env["MLFLOW_LOCAL_DIR"], "mlflow.pid")).read())
    assert listening_addresses({port}) == {"127.0.0.1"}  # this machine only

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


def copy_of_scripts(root: Path) -> Path:
    """The start script and what it sources, in a folder without the repo's .venv."""
    for rel in ("start_mlflow.sh", "scripts/python_env.sh", "mlflow_docker_setup/lib.sh",
                "mlflow_docker_setup/mlflow/serve.sh", "mlflow_docker_setup/.env"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / rel, root / rel)
    return root


def test_a_missing_python_3_11_is_named_with_the_fix(local_env, tmp_path):
    # Every python on PATH answers with another version.
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    for name in ("python3.11", "python3"):
        (fake_bin / name).write_text("#!/bin/sh\nexit 1\n")
        (fake_bin / name).chmod(0o755)
    copy = copy_of_scripts(tmp_path / "repo")
    result = subprocess.run(["bash", str(copy / "start_mlflow.sh")], capture_output=True, text=True,
                            env={**local_env, "PATH": f"{fake_bin}:/usr/bin:/bin"}, timeout=60)
    assert result.returncode != 0
    assert "Python 3.11 not found" in result.stderr and "apt-get install python3.11" in result.stderr
    assert not (copy / ".venv").exists()


def test_an_environment_of_ones_own_without_mlflow_is_named(local_env, tmp_path):
    result = run("start_mlflow.sh", {**local_env, "MLFLOW_VENV": str(tmp_path)})
    assert result.returncode != 0
    assert f"MLFLOW_VENV={tmp_path} has no bin/mlflow" in result.stderr


def test_the_python_environment_is_made_once_and_remade_when_requirements_change(tmp_path):
    root = tmp_path / "checkout"
    (root / "scripts").mkdir(parents=True)
    shutil.copy2(REPO_ROOT / "scripts" / "python_env.sh", root / "scripts")
    (root / "requirements.txt").write_text("# nothing pinned yet\n")
    (root / "pyproject.toml").write_text("")
    plugin = root / "mlflow_docker_setup" / "mlflow" / "server_plugin" / "pyproject.toml"
    plugin.parent.mkdir(parents=True)
    plugin.write_text("")

    def ensure() -> str:
        result = subprocess.run(
            ["bash", "-c", 'set -euo pipefail; ROOT="$1"; source "$1/scripts/python_env.sh"; ensure_python_env',
             "_", str(root)], capture_output=True, text=True, timeout=300,
            env={k: v for k, v in os.environ.items() if k != "MLFLOW_VENV"})
        assert result.returncode == 0, result.stderr
        return result.stdout

    first = ensure()
    assert "Creating .venv" in first and "Python environment ready" in first
    assert (root / ".venv" / "bin" / "python").exists()
    assert "up to date" in ensure()
    (root / "requirements.txt").write_text("# nothing pinned yet\n# changed\n")
    again = ensure()
    assert "Installing the pinned packages" in again and "Creating .venv" not in again
    assert "up to date" in ensure()
    plugin.write_text("# the server plugin changed\n")  # installed from requirements.txt (-e)
    assert "Installing the pinned packages" in ensure()


def test_stop_without_a_running_stack_says_so(local_env):
    result = run("stop_mlflow.sh", local_env)
    assert result.returncode == 0
    assert "Nothing to stop" in result.stdout


def test_an_unknown_mode_is_refused(local_env):
    result = run("start_mlflow.sh", {**local_env, "MLFLOW_STACK_MODE": "kubernetes"})
    assert result.returncode != 0 and "must be docker, local or auto" in result.stderr


def test_docker_mode_without_an_engine_is_one_line_naming_the_way_out(local_env):
    """An engine that does not answer (DOCKER_HOST names no socket), whatever this machine has."""
    result = run("start_mlflow.sh", {**local_env, "MLFLOW_STACK_MODE": "docker",
                                     "DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        "start_mlflow.sh: MLFLOW_STACK_MODE=docker but no Docker engine answers: start Docker, "
        "or use MLFLOW_STACK_MODE=local")
    assert not port_open(int(local_env["MLFLOW_LOCAL_PORT"]))  # nor did it fall back to local mode


def test_local_mode_will_not_share(local_env):
    result = run("start_mlflow.sh", {**local_env, "MLFLOW_SHARE": "1"})
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        "start_mlflow.sh: MLFLOW_SHARE=1 needs the Docker stack (nginx serves HTTPS, MySQL keeps the users); "
        "the local server listens on this machine only. Start Docker, or set MLFLOW_SHARE=0")
    assert not port_open(int(local_env["MLFLOW_LOCAL_PORT"]))
