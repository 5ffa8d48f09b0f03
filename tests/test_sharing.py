"""A shared stack: sign-in, permissions, TLS and the failed-sign-in limit, on the twin and
on compose, always through nginx and always on loopback (the compose stack publishes on
every interface when shared; that is checked from the engine, never by connecting).

The brake on guessing and the other attacks are tested in test_attacks.py.
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import subprocess
import sys
import time
import uuid

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlflow_stack.local_stack import LocalStack
from mlflow_stack.connection import SignInRefused, TrackingServerUnavailable, check_server
from mlflow_stack.stack_secrets import SecretsError
from shared_access import SIGN_IN_CACHE_SECONDS, mlflow_users, new_user, request

pytestmark = pytest.mark.stack




@pytest.fixture
def signed_in(shared_stack, monkeypatch):
    """Point MLflow's client (and check_server) at the shared stack as a given user."""
    def sign_in(credentials: tuple[str, str] | None):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", shared_stack.tracking_uri)
        monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(shared_stack.ca_file))
        for name, value in zip(("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"), credentials or ()):
            monkeypatch.setenv(name, value)
        if credentials is None:
            monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
            monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
        return MlflowClient(shared_stack.tracking_uri)
    return sign_in




def test_anonymous_and_wrong_password_get_401_with_the_sign_in_prompt(shared_stack):
    path = "/api/2.0/mlflow/experiments/search?max_results=1"
    for credentials in (None, ("admin", "not-the-password")):
        status, headers, _ = request(shared_stack, path, credentials)
        assert status == 401, credentials
        assert headers["WWW-Authenticate"] == 'Basic realm="mlflow"'
    status, headers, _ = request(shared_stack, path, shared_stack.admin_credentials)
    assert status == 200
    assert headers["Strict-Transport-Security"].startswith("max-age=")


def test_tls_handshake_succeeds_with_the_stacks_ca_and_fails_without(shared_stack):
    host, port = "127.0.0.1", int(shared_stack.tracking_uri.rsplit(":", 1)[1])
    with socket.create_connection((host, port), timeout=10) as raw:
        with shared_stack.ssl_context().wrap_socket(raw, server_hostname=host) as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
    with socket.create_connection((host, port), timeout=10) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            ssl.create_default_context().wrap_socket(raw, server_hostname=host)


def test_plain_http_is_redirected_to_https(shared_stack):
    connection = http.client.HTTPConnection("127.0.0.1", shared_stack.nginx_port, timeout=10)
    connection.request("GET", "/api/2.0/mlflow/experiments/search?max_results=1")
    response = connection.getresponse()
    assert response.status == 308
    assert response.getheader("Location") == (
        f"{shared_stack.tracking_uri}/api/2.0/mlflow/experiments/search?max_results=1")


def test_admin_creates_a_user_and_grants_read_with_the_users_command(shared_stack, signed_in):
    admin = signed_in(shared_stack.admin_credentials)
    experiment = f"shared-{uuid.uuid4().hex[:8]}"
    experiment_id = admin.create_experiment(experiment)
    reader, password = new_user(shared_stack, by_command=True)
    path = f"/api/2.0/mlflow/experiments/get?experiment_id={experiment_id}"
    assert request(shared_stack, path, (reader, password))[0] == 403

    granted = mlflow_users(shared_stack, "grant", reader, "--experiment", experiment, "--permission", "READ")
    assert granted.returncode == 0, granted.stderr
    assert request(shared_stack, path, (reader, password))[0] == 200
    # READ is not EDIT: the reader cannot log into the experiment.
    as_reader = signed_in((reader, password))
    with pytest.raises(MlflowException, match="PERMISSION_DENIED|403"):
        as_reader.create_run(experiment_id)


def test_a_user_without_permission_gets_403_on_another_users_experiment(shared_stack, signed_in):
    owner, owner_password = new_user(shared_stack)
    stranger, stranger_password = new_user(shared_stack)
    experiment_id = signed_in((owner, owner_password)).create_experiment(f"owned-{uuid.uuid4().hex[:8]}")
    path = f"/api/2.0/mlflow/experiments/get?experiment_id={experiment_id}"
    assert request(shared_stack, path, (owner, owner_password))[0] == 200
    assert request(shared_stack, path, (stranger, stranger_password))[0] == 403


def test_every_users_command_changes_what_a_user_may_do_within_the_sign_in_cache_time(shared_twin):
    """docs/sharing.md's `mlflow-users` commands, each seen from the user's side; a changed
    password or a deleted user stops working once the workers' sign-in cache
    (MLFLOW_AUTH_CACHE_SECONDS, SIGN_IN_CACHE_SECONDS on the shared twin) has let go of it."""
    twin = shared_twin
    assert twin.config["MLFLOW_AUTH_CACHE_SECONDS"] == str(SIGN_IN_CACHE_SECONDS)

    def users(*args: str) -> str:
        result = mlflow_users(twin, *args)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def let_the_cache_go() -> None:
        time.sleep(SIGN_IN_CACHE_SECONDS + 1)  # the cache's lifetime, not a speed limit

    admin = twin.admin_credentials
    experiment = f"users-{uuid.uuid4().hex[:8]}"
    assert request(twin, "/api/2.0/mlflow/experiments/create", admin, "POST", {"name": experiment})[0] == 200
    model = f"users-model-{uuid.uuid4().hex[:8]}"
    assert request(twin, "/api/2.0/mlflow/registered-models/create", admin, "POST", {"name": model})[0] == 200
    alice, first = new_user(twin, by_command=True)
    get_model = f"/api/2.0/mlflow/registered-models/get?name={model}"
    get_experiment = f"/api/2.0/mlflow/experiments/get-by-name?experiment_name={experiment}"

    assert request(twin, get_model, (alice, first))[0] == 403
    users("grant", alice, "--model", model, "--permission", "READ")
    assert request(twin, get_model, (alice, first))[0] == 200
    users("grant", alice, "--experiment", experiment, "--permission", "READ")
    assert request(twin, get_experiment, (alice, first))[0] == 200
    users("revoke", alice, "--experiment", experiment)
    assert request(twin, get_experiment, (alice, first))[0] == 403

    assert request(twin, "/api/2.0/mlflow/users/list", (alice, first))[0] == 403
    users("admin", alice)
    assert request(twin, "/api/2.0/mlflow/users/list", (alice, first))[0] == 200
    users("admin", alice, "--revoke")
    assert request(twin, "/api/2.0/mlflow/users/list", (alice, first))[0] == 403

    second = users("set-password", alice).split("password ", 1)[1].split()[0]
    assert second != first
    let_the_cache_go()
    assert request(twin, get_model, (alice, first))[0] == 401
    assert request(twin, get_model, (alice, second))[0] == 200

    users("delete", alice)
    let_the_cache_go()
    assert request(twin, get_model, (alice, second))[0] == 401


def test_users_command_says_what_is_wrong_in_one_line(shared_stack):
    result = mlflow_users(shared_stack, "grant", "nobody-here", "--experiment", "no-such-experiment",
                          "--permission", "READ")
    assert result.returncode == 2
    assert result.stderr.strip() == "mlflow-users: no experiment named 'no-such-experiment' (it must exist before it can be shared)"


def test_the_server_check_names_a_missing_or_wrong_sign_in_and_an_untrusted_certificate(shared_stack, signed_in, monkeypatch):
    signed_in(None)
    with pytest.raises(SignInRefused, match="asks for a sign-in: set MLFLOW_TRACKING_USERNAME"):
        check_server(shared_stack.tracking_uri)
    signed_in(("admin", "wrong-password"))
    with pytest.raises(SignInRefused, match="refused the sign-in of user 'admin'"):
        check_server(shared_stack.tracking_uri)
    signed_in(shared_stack.admin_credentials)
    check_server(shared_stack.tracking_uri)
    # Plain HTTP would carry the password unencrypted before the redirect: refused, with the URL to use.
    with pytest.raises(TrackingServerUnavailable, match=f"redirects to HTTPS: set MLFLOW_TRACKING_URI to "
                                                        f"{shared_stack.tracking_uri} "):
        check_server(f"http://127.0.0.1:{shared_stack.nginx_port}")
    monkeypatch.delenv("MLFLOW_TRACKING_SERVER_CERT_PATH")
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    with pytest.raises(TrackingServerUnavailable, match="certificate this client does not trust.*MLFLOW_TRACKING_SERVER_CERT_PATH"):
        check_server(shared_stack.tracking_uri)


def test_the_provenance_command_signs_in_from_a_dotenv_file_and_names_a_refusal(shared_stack, signed_in, tmp_path):
    model = f"private-model-{uuid.uuid4().hex[:6]}"
    signed_in(shared_stack.admin_credentials).create_registered_model(model)
    stranger, password = new_user(shared_stack)
    # Only a .env in the working directory says where the stack is and who signs in.
    (tmp_path / ".env").write_text(
        f"MLFLOW_TRACKING_URI={shared_stack.tracking_uri}\nMLFLOW_TRACKING_USERNAME={stranger}\n"
        f"MLFLOW_TRACKING_PASSWORD={password}\nMLFLOW_TRACKING_SERVER_CERT_PATH={shared_stack.ca_file}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING_", "REQUESTS_CA"))}
    result = subprocess.run([sys.executable, "-m", "dl_model_tracking.provenance", model, "--version", "1"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("provenance: PERMISSION_DENIED: "), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.notebooks
def test_the_chapter_notebook_runs_as_a_non_admin_user_with_edit(shared_stack, signed_in, run_notebook):
    experiment = f"shared-chapter03-{uuid.uuid4().hex[:8]}"
    admin = signed_in(shared_stack.admin_credentials)
    experiment_id = admin.create_experiment(experiment)
    user, password = new_user(shared_stack)
    granted = mlflow_users(shared_stack, "grant", user, "--experiment", experiment, "--permission", "EDIT")
    assert granted.returncode == 0, granted.stderr
    signed_in((user, password))  # the notebook's kernel inherits this environment
    model_name = f"nlp_dl_model_{uuid.uuid4().hex[:6]}"
    result = run_notebook("dl_model_tracking.ipynb", EXPERIMENT_NAME=experiment,
                          REGISTERED_MODEL_NAME=model_name)
    run = admin.get_run(result["run_id"])
    assert run.info.experiment_id == experiment_id and run.info.status == "FINISHED"
    versions = admin.search_model_versions(f"name='{model_name}'")
    assert [v.run_id for v in versions] == [result["run_id"]]


@pytest.mark.parametrize("overrides, message", [
    ({"MLFLOW_ADMIN_PASSWORD": "password1234"}, "refusing to share the stack: MLFLOW_ADMIN_PASSWORD is empty, a well-known default"),
    ({"MINIO_ROOT_PASSWORD": ""}, "refusing to share the stack: MINIO_ROOT_PASSWORD is empty"),
    ({"MLFLOW_TLS_CERT": "/etc/hostname", "MLFLOW_TLS_KEY": "/etc/hostname"},
     "MLFLOW_TLS_CERT=/etc/hostname is not an unencrypted PEM certificate"),
])
def test_the_twin_refuses_to_share_unsafely_before_starting_anything(tmp_path, overrides, message):
    twin = LocalStack(tmp_path / "work", share=True, secrets_dir=tmp_path / "secrets", overrides=overrides)
    with pytest.raises(SecretsError) as refused:
        twin.start()
    assert str(refused.value).startswith(message)
    assert twin.services == {}
