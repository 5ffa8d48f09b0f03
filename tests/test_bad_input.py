"""Bad input and broken surroundings: each is one clear line, at once, and loses nothing.

docs/troubleshooting.md's "When something goes wrong" table lists every case with the test that checks
it; the cases other test files already cover are named there, the rest are here.
"""

from __future__ import annotations

import math
import os
import re
import socket
import subprocess
import sys
import time
import uuid

import mlflow
import pytest
import requests
from dotenv import dotenv_values
from mlflow import MlflowClient

from mlflow_stack.local_stack import NGINX_PROXY_CONFIG, port_open
from mlflow_stack.connection import CLIENT_RETRY_DEFAULTS, TrackingServerUnavailable, check_server, check_tracking_server
from mlflow_stack.settings import SettingsFileError
from test_start_stop import copy_of_scripts, local_env, run  # noqa: F401 (local_env is a fixture)

SMALL_DISK_MB = 32


# -- the stack, half up ----------------------------------------------------------------------
@pytest.mark.stack
def test_nginx_up_without_its_mlflow_server_is_named_in_one_line(stack):
    stack.take_down("mlflow")
    try:
        with pytest.raises(TrackingServerUnavailable) as failure:
            check_server(stack.tracking_uri)
    finally:
        stack.bring_back("mlflow")
    message = str(failure.value)
    assert "answered HTTP 502" in message and "start_mlflow.sh" in message
    assert len(message.splitlines()) == 1
    check_server(stack.tracking_uri)  # whole again


# -- the artifact store is full --------------------------------------------------------------
@pytest.fixture
def small_disk_env(local_env, tmp_path):  # noqa: F811
    """Local mode with its data on a small tmpfs of its own, stopped and unmounted after."""
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SMALL_DISK_MB}m", "tmpfs", str(disk)], check=True)
    env = {**local_env, "MLFLOW_LOCAL_DIR": str(disk / "data")}
    try:
        yield env
    finally:
        run("stop_mlflow.sh", env)
        subprocess.run(["umount", str(disk)], check=True)


def test_a_full_artifact_disk_is_one_line_at_once_and_loses_nothing(small_disk_env, tmp_path, monkeypatch):
    for name, value in CLIENT_RETRY_DEFAULTS.items():  # what the notebooks' clients retry with
        monkeypatch.setenv(name, value)
    started = run("start_mlflow.sh", small_disk_env)
    assert started.returncode == 0, started.stderr
    uri = f"http://127.0.0.1:{small_disk_env['MLFLOW_LOCAL_PORT']}"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment(f"full-disk-{uuid.uuid4().hex[:8]}")).info.run_id
    client.log_param(run_id, "epochs", "3")
    client.log_metric(run_id, "loss", 0.5, step=0)
    weights = tmp_path / "weights.bin"
    weights.write_bytes(os.urandom(SMALL_DISK_MB * 2**20))  # more than the whole disk holds

    began = time.monotonic()
    with pytest.raises(requests.HTTPError) as failure:
        client.log_artifact(run_id, str(weights))
    print(f"\nfull artifact disk reported after {time.monotonic() - began:.2f} s")
    message = str(failure.value)
    assert len(message.splitlines()) == 1
    assert message.startswith("507 Server Error: Insufficient Storage")
    assert "The artifact store is full (no space left in" in message and "nothing was stored" in message
    server_log = open(os.path.join(small_disk_env["MLFLOW_LOCAL_DIR"], "mlflow.log")).read()
    assert len(re.findall(r'"PUT \S+/weights.bin HTTP/1.1" 507', server_log)) == 1, "answered once, not retried"

    # Nothing lost, and the run goes on: the partial file was removed, so there is room again.
    client.log_metric(run_id, "loss", 0.4, step=1)
    client.log_text(run_id, "notes", "notes.txt")
    assert client.get_run(run_id).data.params == {"epochs": "3"}
    assert [m.value for m in client.get_metric_history(run_id, "loss")] == [0.5, 0.4]
    assert [a.path for a in client.list_artifacts(run_id)] == ["notes.txt"]


# -- an artifact over nginx's body-size limit ---------------------------------------------------
def upload_limit_bytes() -> int:
    size, unit = re.search(r"client_max_body_size\s+(\d+)([kKmMgG]?);", NGINX_PROXY_CONFIG.read_text()).groups()
    return int(size) * 1024 ** " kmg".index(unit.lower() or " ")


@pytest.mark.stack
def test_an_artifact_over_the_upload_limit_is_refused_once_and_nothing_is_stored(stack, experiment_id, tmp_path):
    too_big = tmp_path / "model.bin"
    with open(too_big, "wb") as sparse:  # takes no disk space
        sparse.truncate(upload_limit_bytes() + 1)
    with mlflow.start_run(experiment_id=experiment_id) as active:
        began = time.monotonic()
        with pytest.raises(requests.HTTPError) as failure:
            mlflow.log_artifact(str(too_big))
        print(f"\nupload over the limit refused after {time.monotonic() - began:.1f} s")
        mlflow.log_metric("after", 1.0)
    assert str(failure.value).splitlines()[0].startswith("413 Client Error: Request Entity Too Large")
    assert "The file is over this stack upload limit" in str(failure.value)  # nginx's JSON answer
    access_log = (stack.workdir / "nginx" / "access.log").read_text()
    assert len(re.findall(rf'"PUT \S+/{active.info.run_id}/artifacts/model.bin HTTP/1.1" 413', access_log)) == 1
    assert MlflowClient().list_artifacts(active.info.run_id) == []
    assert mlflow.get_run(active.info.run_id).data.metrics == {"after": 1.0}


# -- values MLflow takes without complaint ------------------------------------------------------
@pytest.mark.stack
def test_what_plain_mlflow_stores_for_nan_inf_and_an_over_long_param(experiment_id):
    # What the README tells users: the hand-logging helpers exist because of this.
    with mlflow.start_run(experiment_id=experiment_id) as active:
        mlflow.log_metrics({"nan": math.nan, "inf": math.inf, "minus_inf": -math.inf})
        mlflow.log_param("long", "x" * 7000)
    data = mlflow.get_run(active.info.run_id).data
    assert math.isnan(data.metrics["nan"])
    assert data.metrics["inf"] == 1.7976931348623157e308 and data.metrics["minus_inf"] == -1.7976931348623157e308
    assert len(data.params["long"]) == 6000  # cut short, silently


@pytest.mark.stack
@pytest.mark.parametrize("uri, message", [
    ("models:/no-such-model-{tag}/1", "RESOURCE_DOES_NOT_EXIST: Registered Model with name=no-such-model-{tag} not found"),
    ("models:/empty-{tag}/3", r"RESOURCE_DOES_NOT_EXIST: Model Version \(name=empty-{tag}, version=3\) not found"),
    ("models:/empty-{tag}@champion", "INVALID_PARAMETER_VALUE: Registered model alias champion not found."),
])
def test_loading_an_unknown_model_version_or_alias_is_one_line(stack, uri, message):
    tag = uuid.uuid4().hex[:8]
    MlflowClient().create_registered_model(f"empty-{tag}")
    with pytest.raises(mlflow.exceptions.MlflowException) as failure:
        mlflow.pyfunc.load_model(uri.format(tag=tag))
    assert re.fullmatch(message.format(tag=tag), str(failure.value))


# -- broken .env files -----------------------------------------------------------------------------
def test_a_broken_stack_env_line_stops_the_start_before_anything(local_env, tmp_path):  # noqa: F811
    copy = copy_of_scripts(tmp_path / "repo")
    env_file = copy / "mlflow_docker_setup" / ".env"
    lines = env_file.read_text().splitlines()
    env_file.write_text("\n".join([*lines, "NGINX_PORT 8080", ""]))
    result = subprocess.run(["bash", str(copy / "start_mlflow.sh")], capture_output=True, text=True,
                            env=local_env, timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip() == (f"start_mlflow.sh: mlflow_docker_setup/.env line {len(lines) + 1} is not "
                                     "NAME=value (or a # comment): fix or remove that line")
    assert not (copy / ".venv").exists() and not (copy / "mlflow_docker_setup" / "secrets").exists()
    assert not os.path.exists(local_env["MLFLOW_LOCAL_DIR"])
    assert not port_open(int(local_env["MLFLOW_LOCAL_PORT"]))


def test_the_start_script_reads_windows_line_ends_and_quotes_as_compose_does(tmp_path):
    copy = copy_of_scripts(tmp_path / "repo")
    env_file = copy / "mlflow_docker_setup" / ".env"
    text = env_file.read_text().replace("MLFLOW_BUCKET=mlflow", 'MLFLOW_BUCKET="mlflow"')
    env_file.write_bytes(text.replace("\n", "\r\n").encode())
    expected = {k: v for k, v in dotenv_values(env_file).items() if v is not None}
    shown = subprocess.run(
        ["bash", "-c", 'set -euo pipefail; ROOT="$1"; source "$1/mlflow_docker_setup/lib.sh"; '
         'load_env_file "$1/mlflow_docker_setup/.env"; for n in "${@:2}"; do printf "%s=%s\\n" "$n" "${!n}"; done',
         "_", str(copy), *expected], capture_output=True, text=True, timeout=30,
        env={k: v for k, v in os.environ.items() if k not in expected})
    assert shown.returncode == 0, shown.stderr
    assert dict(line.split("=", 1) for line in shown.stdout.splitlines()) == expected
    assert expected["MLFLOW_BUCKET"] == "mlflow"


def test_a_broken_project_env_line_is_named_without_showing_it(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("MLFLOW_TRACKING_USERNAME=alice\nMLFLOW_TRACKING_PASSWORD hunter2\n")
    monkeypatch.chdir(tmp_path)
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SettingsFileError) as failure:
        check_tracking_server()
    assert str(failure.value) == (f"{tmp_path / '.env'} line 2 is not NAME=value (or a # comment): "
                                  "fix or remove that line")
    assert "MLFLOW_TRACKING_USERNAME" not in os.environ, "nothing is read from a broken file"


def test_a_project_env_that_is_not_utf8_is_named_with_the_fix(tmp_path, monkeypatch):
    (tmp_path / ".env").write_bytes("MLFLOW_TRACKING_PASSWORD=p\u00e4ss\n".encode("latin-1"))
    monkeypatch.chdir(tmp_path)
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SettingsFileError) as failure:
        check_tracking_server()
    assert str(failure.value) == f"{tmp_path / '.env'} is not UTF-8 text: save it as UTF-8 NAME=value lines"
    assert "MLFLOW_TRACKING_PASSWORD" not in os.environ


@pytest.mark.parametrize("command", [["dl_model_tracking.provenance", "nlp_dl_model", "--version", "1"],
                                     ["mlflow_stack.users", "admin", "alice"]])
def test_the_commands_name_a_broken_project_env_line_and_exit_2(tmp_path, command):
    (tmp_path / ".env").write_text("MLFLOW_TRACKING_USERNAME=alice\nMLFLOW_TRACKING_PASSWORD hunter2\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    result = subprocess.run([sys.executable, "-m", *command], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    program = "provenance" if "provenance" in command[0] else "mlflow-users"
    assert result.stderr.strip() == (f"{program}: {tmp_path / '.env'} line 2 is not NAME=value "
                                     "(or a # comment): fix or remove that line")
    assert "hunter2" not in result.stdout + result.stderr


# -- a busy port, with Docker ------------------------------------------------------------------
@pytest.mark.docker
def test_a_busy_nginx_port_stops_the_compose_start_in_one_line_before_anything(new_checkout):
    checkout = new_checkout("checkout-busy-port")
    port = checkout.config["NGINX_PORT"]
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(port)))
        squatter.listen()
        result = checkout.script("start_mlflow.sh", timeout=120)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        f"start_mlflow.sh: port {port} (NGINX_PORT) is in use by another program: stop it, "
        "or set NGINX_PORT in mlflow_docker_setup/.env")
    assert checkout.resources() == {"containers": [], "networks": [], "volumes": [], "images": []}


# -- MLFLOW_SERVER_REPLICAS, MLFLOW_READ_REPLICA ----------------------------------------------------
@pytest.mark.parametrize("setting, line", [
    ({"MLFLOW_SERVER_REPLICAS": "three"},
     "start_mlflow.sh: MLFLOW_SERVER_REPLICAS must be a whole number of MLflow servers, 1 or more, not 'three'"),
    ({"MLFLOW_SERVER_REPLICAS": "2"},
     "start_mlflow.sh: MLFLOW_SERVER_REPLICAS=2 needs the Docker stack (nginx balances over the servers); "
     "local mode runs one server. Start Docker, or set MLFLOW_SERVER_REPLICAS=1"),
    ({"MLFLOW_READ_REPLICA": "yes"},
     "start_mlflow.sh: MLFLOW_READ_REPLICA must be 0 (one database) or 1 (a read replica beside it), not 'yes'"),
    ({"MLFLOW_READ_REPLICA": "1"},
     "start_mlflow.sh: MLFLOW_READ_REPLICA=1 needs the Docker stack (a second MySQL server); local mode keeps its "
     "runs in one SQLite file. Start Docker, or set MLFLOW_READ_REPLICA=0"),
], ids=["replicas-three", "replicas-local", "read-replica-yes", "read-replica-local"])
def test_scaling_settings_that_cannot_be_started_are_one_line_before_anything(local_env, setting, line):  # noqa: F811
    result = run("start_mlflow.sh", {**local_env, **setting})
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == line
    assert not os.path.exists(local_env["MLFLOW_LOCAL_DIR"])
    assert not port_open(int(local_env["MLFLOW_LOCAL_PORT"]))
