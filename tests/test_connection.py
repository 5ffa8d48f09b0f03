"""The fast-failing server check, against servers that are down or are not MLflow."""

from __future__ import annotations

import http.server
import socket
import threading
from unittest import mock

import pytest

from mlflow_stack import connection
from mlflow_stack.local_stack import free_port
from mlflow_stack.connection import TrackingServerUnavailable, check_server


def test_a_stack_that_is_down_fails_at_its_first_try_naming_the_fix():
    """Fast by design, not by a stopwatch: one request with a timeout of seconds, no retries
    (MLflow's own client retries for minutes)."""
    uri = f"http://127.0.0.1:{free_port()}"
    with mock.patch("mlflow_stack.connection._open", wraps=connection._open) as opened:
        with pytest.raises(TrackingServerUnavailable, match="No MLflow tracking server at .*start_mlflow.sh"):
            check_server(uri)
    assert opened.call_count == 1
    (url, _, timeout), _ = opened.call_args
    assert url == f"{uri}/health" and timeout == 3.0


@pytest.mark.parametrize("uri", ["localhost", "file:///tmp/mlruns", "http://"])
def test_a_uri_that_is_not_a_server_url_is_refused(uri):
    with pytest.raises(TrackingServerUnavailable, match="not an http"):
        check_server(uri)


class _NotMlflow(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            self.send_response(502)
            self.end_headers()
        else:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"hello")

    def log_message(self, *args):
        pass


def test_a_proxy_without_its_mlflow_server_is_reported_as_such():
    server = http.server.HTTPServer(("127.0.0.1", 0), _NotMlflow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(TrackingServerUnavailable, match="HTTP 502"):
            check_server(f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()


def test_a_healthy_server_passes(stack):
    check_server(stack.tracking_uri)


@pytest.mark.stack
def test_a_port_taken_between_choosing_and_binding_stops_the_start_naming_the_service(tmp_path):
    """The twin chooses free ports, then its services bind them: a program that takes one in
    between is not mistaken for the service (readiness speaks MLflow's protocol), and the
    start stops everything, naming the service and the busy address."""
    from mlflow_stack.local_stack import LocalStack, StackStartError, port_open

    twin = LocalStack(tmp_path / "work", secrets_dir=tmp_path / "secrets", startup_timeout=60)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", twin.mlflow_port))
        squatter.listen()
        with pytest.raises(StackStartError, match="mlflow exited with code .* during start-up") as failed:
            twin.start()
    assert "address already in use" in str(failed.value).lower()
    assert not any(port_open(port) for port in (twin.mysql_port, twin.s3_port, twin.nginx_port))


def test_check_sets_retries_for_outages_unless_the_user_chose(stack, monkeypatch):
    from mlflow_stack.connection import CLIENT_RETRY_DEFAULTS, check_tracking_server

    for name in CLIENT_RETRY_DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "5")
    assert check_tracking_server() == stack.tracking_uri
    import os

    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == CLIENT_RETRY_DEFAULTS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]
    assert os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] == "5"
