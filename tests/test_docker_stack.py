"""The compose stack on a real Docker engine, started and stopped as a user does it.

Each checkout here is a copy of this one in a folder of its own, so it gets its own
compose project; images are the stand-ins of tests/standin_images. Traffic goes only to
the ports the stacks publish on loopback.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.request
import uuid

import pytest
from mlflow import MlflowClient

from starting import checkouts, started_checkout, started_shared_checkout
from test_server_replicas import servers_reached, state
from mlflow_stack.compose_stack import docker
from mlflow_stack.settings import REPO_ROOT

pytestmark = pytest.mark.docker


# The tests where the database makes a difference (start-up, durability, the shared stack's
# auth database) run on the MariaDB stand-in, as the rest of the suite, and on genuine MySQL
# (Oracle's server, as the compose file's mysql image is). The MySQL stacks live for this
# module only.
@pytest.fixture(scope="module")
def new_mysql_checkout(tmp_path_factory, standin_images):
    yield from checkouts(tmp_path_factory, standin_images, "mysql")


@pytest.fixture(scope="module")
def mysql_docker_stack(new_mysql_checkout):
    yield from started_checkout(new_mysql_checkout, "the compose stack on genuine MySQL")


@pytest.fixture(scope="module")
def shared_mysql_docker(new_mysql_checkout):
    yield from started_shared_checkout(new_mysql_checkout, "the shared compose stack on genuine MySQL")


@pytest.fixture(params=["mariadb", "mysql"])
def each_database_stack(request):
    return request.getfixturevalue({"mariadb": "docker_stack", "mysql": "mysql_docker_stack"}[request.param])


@pytest.fixture(params=["mariadb", "mysql"])
def each_database_shared_stack(request):
    return request.getfixturevalue({"mariadb": "shared_docker", "mysql": "shared_mysql_docker"}[request.param])


def healthy(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=5) as response:
            return response.read() == b"OK"
    except OSError:
        return False


def test_start_brings_every_service_to_healthy_and_prints_where_it_is(each_database_stack):
    assert each_database_stack.health() == {s: "healthy" for s in ("mysql", "minio", "mlflow", "nginx")}
    output = each_database_stack.start_output  # other tests may have run its scripts since
    assert f"compose project {each_database_stack.project}" in output
    assert f"http://localhost:{each_database_stack.config['NGINX_PORT']}/" in output
    assert healthy(each_database_stack.tracking_uri)


def server_image_mlflow() -> str:
    """The MLflow version the server image pins (its requirements file)."""
    pins = (REPO_ROOT / "mlflow_docker_setup" / "mlflow" / "requirements.txt").read_text()
    return re.search(r"^mlflow==(\S+)$", pins, re.M).group(1)


def test_the_project_is_named_after_the_checkout(docker_stack):
    project = docker_stack.project
    assert project.startswith("mlflow-checkout-a") and project != "mlflow_docker_setup"
    resources = docker_stack.resources()
    assert len(resources["containers"]) == 5  # four services and the finished bucket job
    assert all(project in name for names in resources.values() for name in names)
    assert sorted(resources["volumes"]) == [f"{project}_minio-data", f"{project}_mysql-data"]
    assert resources["images"] == [f"mlflow-tracking-server:{server_image_mlflow()}-{project}"]


def test_published_ports_are_on_loopback_only(docker_stack):
    config = docker_stack.config
    assert docker_stack.published_ports("nginx") == [("127.0.0.1", int(config["NGINX_PORT"]))]
    assert sorted(docker_stack.published_ports("minio")) == sorted(
        [("127.0.0.1", int(config["MINIO_API_PORT"])), ("127.0.0.1", int(config["MINIO_CONSOLE_PORT"]))])
    assert docker_stack.published_ports("mysql") == []
    assert docker_stack.published_ports("mlflow") == []


def test_runs_metrics_artifacts_and_models_survive_stop_and_start(each_database_stack, tmp_path):
    client = MlflowClient(each_database_stack.tracking_uri, registry_uri=each_database_stack.tracking_uri)
    experiment = client.create_experiment(f"durable-{uuid.uuid4().hex[:8]}")
    run_id = client.create_run(experiment).info.run_id
    client.log_param(run_id, "epochs", "3")
    for step, value in enumerate([0.7, 0.8, 0.9]):
        client.log_metric(run_id, "val_f1", value, step=step)
    payload = os.urandom(8 * 1024 * 1024)
    (tmp_path / "weights.bin").write_bytes(payload)
    client.log_artifact(run_id, str(tmp_path / "weights.bin"), "checkpoints")
    client.set_terminated(run_id)
    name = f"durable-model-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    version = client.create_model_version(name, f"mlflow-artifacts:/{experiment}/{run_id}/artifacts/checkpoints",
                                          run_id=run_id)

    stopped = each_database_stack.stop()
    assert stopped.returncode == 0, each_database_stack.last_output
    assert "its volumes are kept" in stopped.stdout
    left = each_database_stack.resources()
    assert left["containers"] == [] and left["networks"] == [] and len(left["volumes"]) == 2
    assert len(left["images"]) == 1  # kept: the next start reuses it
    assert not healthy(each_database_stack.tracking_uri)

    each_database_stack.start()
    assert client.get_run(run_id).data.params == {"epochs": "3"}
    history = sorted(client.get_metric_history(run_id, "val_f1"), key=lambda m: m.step)
    assert [m.value for m in history] == [0.7, 0.8, 0.9]
    downloaded = client.download_artifacts(run_id, "checkpoints/weights.bin", str(tmp_path / "back"))
    assert hashlib.sha256(open(downloaded, "rb").read()).digest() == hashlib.sha256(payload).digest()
    assert client.get_model_version(name, version.version).run_id == run_id


@pytest.fixture(scope="module")
def second_checkout(new_checkout, docker_stack):
    """Another clone on the same machine, on compose v1 (whose start polls health itself),
    with two MLflow servers of one worker each: v1's start must wait for both. (A stack of
    its own for that check cost this suite about four minutes.)"""
    running = new_checkout("checkout-b", compose="v1", MLFLOW_SERVER_REPLICAS="2", MLFLOW_WORKERS="1")
    running.start()
    return running


def test_two_checkouts_run_side_by_side_without_touching_each_other(docker_stack, second_checkout):
    a, b = docker_stack, second_checkout
    assert a.project != b.project
    assert healthy(a.tracking_uri) and healthy(b.tracking_uri)
    # compose v1 has no --wait: start_mlflow.sh polled each server's health before returning.
    servers = b.containers("mlflow")
    assert len(servers) == 2 and all(state(server)[:2] == ("running", "healthy") for server in servers)
    reached = servers_reached(b)
    assert all(count >= 1 for count in reached.values()), reached
    assert not set(sum(a.resources().values(), [])) & set(sum(b.resources().values(), []))
    name = f"only-in-b-{uuid.uuid4().hex[:8]}"
    MlflowClient(b.tracking_uri).create_experiment(name)
    assert MlflowClient(a.tracking_uri).get_experiment_by_name(name) is None

    stopped = b.stop(delete_data=True)
    assert stopped.returncode == 0, b.last_output
    assert b.resources() == {"containers": [], "networks": [], "volumes": [], "images": []}
    assert healthy(a.tracking_uri), "stopping one checkout's stack stopped the other's"
    assert a.health()["mlflow"] == "healthy"


def test_stop_in_a_checkout_that_started_nothing_touches_nothing(docker_stack, new_checkout):
    idle = new_checkout("checkout-idle")
    before = docker_stack.resources()
    result = idle.stop()
    assert result.returncode == 0
    assert "Nothing to stop" in result.stdout and idle.project in result.stdout
    assert docker_stack.resources() == before and healthy(docker_stack.tracking_uri)


def test_a_service_that_fails_makes_start_fail_with_its_logs_and_leaves_nothing(new_checkout):
    broken = new_checkout("checkout-broken", MLFLOW_WORKERS="zero", MLFLOW_START_TIMEOUT="150")
    result = broken.script("start_mlflow.sh")
    assert result.returncode != 0
    assert "----- mlflow -----" in result.stderr
    assert "Invalid value for '--workers'" in result.stderr  # MLflow's own words, from its log
    assert result.stderr.strip().splitlines()[-1].startswith("start_mlflow.sh: start-up failed")
    left = broken.resources()
    assert left["containers"] == left["networks"] == left["volumes"] == []  # the built image stays for a retry


def test_an_image_no_registry_serves_is_one_line_with_the_fix(new_checkout):
    offline = new_checkout("checkout-offline", NGINX_IMAGE="mlflow-standin/not-built-here:0")
    result = offline.script("start_mlflow.sh", timeout=120)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "cannot get image mlflow-standin/not-built-here:0 (NGINX_IMAGE)" in last
    assert "MLFLOW_STACK_MODE=local" in last and "mlflow_docker_setup/.env" in last
    assert offline.resources() == {"containers": [], "networks": [], "volumes": [], "images": []}


def test_forced_local_mode_does_not_claim_there_is_no_engine(new_checkout, tmp_path):
    from mlflow_stack.local_stack import free_port

    local = new_checkout("checkout-local", MLFLOW_STACK_MODE="local",
                         MLFLOW_LOCAL_DIR=str(tmp_path / "local"), MLFLOW_LOCAL_PORT=str(free_port()))
    try:
        result = local.script("start_mlflow.sh", timeout=180)
        assert result.returncode == 0, local.last_output
        assert "MLFLOW_STACK_MODE=local" in result.stdout and "No Docker engine" not in result.stdout
        assert local.resources()["containers"] == []
    finally:
        local.stop()


def test_each_checkout_generates_its_own_private_secrets(docker_stack, second_checkout):
    files = [stack.checkout / "mlflow_docker_setup" / "secrets" / "stack.env" for stack in (docker_stack, second_checkout)]
    for path in files:
        assert oct(path.stat().st_mode & 0o777) == "0o600", path
        assert oct(path.parent.stat().st_mode & 0o777) == "0o700", path.parent
    a, b = (stack.config for stack in (docker_stack, second_checkout))
    for name in ("MYSQL_PASSWORD", "MYSQL_ROOT_PASSWORD", "MINIO_ROOT_PASSWORD"):
        assert a[name] != b[name] and len(a[name]) >= 24, name
    # The generated MinIO secret is the one the artifact store really checks.
    assert docker_stack.s3_client().head_bucket(Bucket=docker_stack.bucket)


@pytest.mark.parametrize("overrides, message", [
    ({"MLFLOW_SHARE": "1", "MYSQL_PASSWORD": "mlflow-dev-password"},
     "refusing to share the stack: MYSQL_PASSWORD is empty, a well-known default or shorter than 12 characters"),
    ({"MLFLOW_SHARE": "1", "MLFLOW_ADMIN_PASSWORD": ""},
     "refusing to share the stack: MLFLOW_ADMIN_PASSWORD is empty"),
    ({"MLFLOW_SHARE": "1", "MLFLOW_TLS_CERT": "/nonexistent/server.crt", "MLFLOW_TLS_KEY": "/nonexistent/server.key"},
     "MLFLOW_TLS_CERT=/nonexistent/server.crt cannot be read (No such file or directory)"),
    ({"NGINX_BIND_ADDRESS": "0.0.0.0"},
     "NGINX_BIND_ADDRESS=0.0.0.0 would put the stack on the network without sign-in: set MLFLOW_SHARE=1"),
    ({"MLFLOW_SHARE": "yes"}, "MLFLOW_SHARE must be 0 (local only) or 1 (shared: HTTPS and sign-in), not 'yes'"),
])
def test_unsafe_sharing_is_refused_before_anything_starts(new_checkout, overrides, message):
    refused = new_checkout("checkout-refused", **overrides)
    result = refused.script("start_mlflow.sh", timeout=120)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert refused.resources() == {"containers": [], "networks": [], "volumes": [], "images": []}


def test_a_stack_older_than_generated_secrets_keeps_its_passwords_and_may_not_share_with_them(new_checkout):
    old = new_checkout("checkout-old", MLFLOW_SHARE="1")
    # What a stack started before this change leaves: a data volume of its compose project.
    docker("volume", "create", "--label", f"com.docker.compose.project={old.project}", f"{old.project}_mysql-data")
    try:
        result = old.script("start_mlflow.sh", timeout=120)
        assert result.returncode != 0
        assert "created with the passwords the project used to commit" in result.stderr
        assert "refusing to share the stack: MYSQL_PASSWORD is empty, a well-known default" in result.stderr
        assert old.config["MYSQL_PASSWORD"] == "mlflow-dev-password" and old.config["MINIO_ROOT_PASSWORD"] == "minio123"
        assert old.config["MLFLOW_ADMIN_PASSWORD"] not in ("", "password1234")
        assert old.resources()["containers"] == []
    finally:
        docker("volume", "rm", f"{old.project}_mysql-data")


def test_a_shared_stack_publishes_only_nginx_beyond_loopback_and_shows_the_admin_once(each_database_shared_stack):
    config = each_database_shared_stack.config
    assert sorted(each_database_shared_stack.published_ports("nginx")) == sorted(
        [("0.0.0.0", int(config["NGINX_PORT"])), ("0.0.0.0", int(config["NGINX_HTTPS_PORT"]))])
    assert sorted(each_database_shared_stack.published_ports("minio")) == sorted(
        [("127.0.0.1", int(config["MINIO_API_PORT"])), ("127.0.0.1", int(config["MINIO_CONSOLE_PORT"]))])
    assert each_database_shared_stack.published_ports("mysql") == each_database_shared_stack.published_ports("mlflow") == []
    # The auth-database job leaves no anonymous volume behind (its image declares one).
    mounts = json.loads(docker("inspect", "-f", "{{json .Mounts}}", each_database_shared_stack.container("create-auth-database")))
    assert [m for m in mounts if m["Type"] == "volume"] == []
    started = each_database_shared_stack.start_output
    assert f"First sign-in     : admin / {config['MLFLOW_ADMIN_PASSWORD']}" in started
    assert "secrets/tls/ca.crt" in started
    again = each_database_shared_stack.script("start_mlflow.sh")  # already up: a second start changes nothing
    assert again.returncode == 0, each_database_shared_stack.last_output
    assert config["MLFLOW_ADMIN_PASSWORD"] not in again.stdout
