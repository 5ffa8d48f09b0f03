"""Prometheus metrics: each tracking server answers /metrics itself (serve.sh runs MLflow's
--expose-prometheus unless MLFLOW_METRICS=0), nginx never does, on the plain site and the
shared one. On the twin (the server's loopback port, as its scrape config has it) and on
the compose stack (from inside its network, each replica at the address the service name
resolves to, as a Prometheus with dns_sd_configs scrapes).
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlflow_stack.compose_stack import ComposeStack, docker
from mlflow_stack.local_stack import SERVE_SCRIPT, LocalStack, free_port, serve_script_service
from shared_access import new_user, request

REQUESTS = "mlflow_http_request_total"


def get(url: str | urllib.request.Request, context=None) -> tuple[int, str, str]:
    """Status, Content-Type and body of a GET (an error status too)."""
    try:
        with urllib.request.urlopen(url, timeout=10, context=context) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read().decode(errors="replace")


def scrape(stack) -> dict[str, tuple[int, str, str]]:
    """Every tracking server's /metrics, scraped where Prometheus would: the twin's on its
    loopback port; compose's from inside the compose network, each address the service
    name `mlflow` resolves to (every replica), with the address as the Host."""
    if isinstance(stack, LocalStack):
        return {stack.mlflow_uri: get(f"{stack.mlflow_uri}/metrics")}
    nginx = stack.container("nginx")
    addresses = sorted({line.split()[0] for line in docker("exec", nginx, "getent", "ahostsv4", "mlflow").splitlines()})
    assert addresses, "the service name mlflow resolves to no address in the compose network"
    scraped = {}
    for address in addresses:
        raw = docker("exec", nginx, "curl", "-sS", "-i", "--max-time", "10", f"http://{address}:5000/metrics")
        head, _, body = raw.replace("\r\n", "\n").partition("\n\n")
        status = int(head.split()[1])
        content_type = next((line.split(":", 1)[1].strip() for line in head.splitlines()
                             if line.lower().startswith("content-type:")), "")
        scraped[address] = (status, content_type, body)
    return scraped


def request_total(scraped: dict[str, tuple[int, str, str]]) -> float:
    """MLflow's request counter, summed over its labels and over every server (a server that
    has counted nothing yet has no such family); each answer must be Prometheus text."""
    total = 0.0
    for where, (status, content_type, body) in scraped.items():
        assert status == 200, f"{where}/metrics answered {status}: {body[:300]}"
        assert content_type.startswith("text/plain; version=0.0.4"), content_type
        families = {family.name: family for family in text_string_to_metric_families(body)}
        assert "mlflow_exporter_info" in families, sorted(families)
        if "mlflow_http_request" in families:
            assert families["mlflow_http_request"].type == "counter"
            assert families["mlflow_http_request_duration_seconds"].type == "histogram"
            total += sum(s.value for s in families["mlflow_http_request"].samples if s.name == REQUESTS)
    return total


def server_command(stack) -> list[str]:
    return stack.server_command().split()


def metrics_folder(stack) -> str:
    command = server_command(stack)
    return command[command.index("--expose-prometheus") + 1]


def folder_mode(stack, folder: str) -> str:
    if isinstance(stack, ComposeStack):
        return docker("exec", stack.container("mlflow"), "stat", "-c", "%a", folder)
    return oct(Path(folder).stat().st_mode & 0o777)[2:]


def test_each_server_counts_api_calls_in_prometheus_text(each_stack):
    before = request_total(scrape(each_stack))
    calls = 5
    for _ in range(calls):
        mlflow.search_experiments(max_results=1)
    after = request_total(scrape(each_stack))
    # At least the five calls made in between (the exporter does not count scrapes; other
    # clients of a shared session stack may add more).
    assert after - before >= calls, (before, after)


def test_the_metrics_folder_is_fresh_and_private_at_each_start(each_stack):
    """prometheus_client's count files must not reach the next start's counts: a new folder
    (mode 700) per start, and after a restart the counter starts again from zero."""
    folder = metrics_folder(each_stack)
    assert Path(folder).name.startswith("metrics.") and folder_mode(each_stack, folder) == "700"
    if isinstance(each_stack, LocalStack):
        assert Path(folder).parent == each_stack.runtime_dir  # removed with the twin at stop
    for _ in range(20):
        mlflow.search_experiments(max_results=1)
    before = request_total(scrape(each_stack))
    assert before >= 20
    each_stack.restart("mlflow")
    assert metrics_folder(each_stack) != folder
    if isinstance(each_stack, LocalStack):
        assert not Path(folder).exists()  # serve.sh removed the previous start's
    assert request_total(scrape(each_stack)) < before


def test_nginx_does_not_serve_metrics(each_stack):
    for path in ("/metrics", "/metrics?format=prometheus", "//metrics"):
        status, _, body = get(each_stack.tracking_uri + path)
        assert status == 404, (path, status)
        assert REQUESTS not in body
    assert get(each_stack.tracking_uri + "/health")[0] == 200  # the control: nginx answers


def test_the_shared_site_does_not_serve_metrics_either(shared_twin):
    """Not through nginx, even signed in. The shared server itself asks for a sign-in on
    /metrics, as on every path, and MLflow's auth lets only admins read it (a path with no
    permission of its own): Prometheus scrapes a shared server as an admin."""
    user = new_user(shared_twin)
    for credentials in (None, user, shared_twin.admin_credentials):
        status, _, body = request(shared_twin, "/metrics", credentials)
        assert status == 404 and REQUESTS.encode() not in body, (credentials, status)

    def scrape_as(credentials: tuple[str, str] | None) -> tuple[int, str, str]:
        direct = urllib.request.Request(f"{shared_twin.mlflow_uri}/metrics")
        if credentials:
            direct.add_header("Authorization", "Basic " + base64.b64encode(":".join(credentials).encode()).decode())
        return get(direct)

    assert scrape_as(None)[0] == 401
    assert scrape_as(user)[0] == 403
    # The requests above, the users API's among them, were counted.
    assert request_total({shared_twin.mlflow_uri: scrape_as(shared_twin.admin_credentials)}) > 0


def twin_server_env(twin: LocalStack, tmp_path: Path, **extra: str) -> dict[str, str]:
    """A second server on the twin's database and S3 (serve.sh's environment)."""
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700, exist_ok=True)
    return {"MLFLOW_BACKEND_STORE_URI": twin.backend_store_uri, "MLFLOW_ARTIFACTS_DESTINATION": f"s3://{twin.bucket}",
            **twin.s3_env, "MLFLOW_WORKERS": "1", "MLFLOW_RUNTIME_DIR": str(runtime), **extra}


def test_switched_off_the_server_has_no_metrics(twin_stack, tmp_path):
    assert isinstance(twin_stack, LocalStack), "this test runs a second server on the twin's database"
    port = free_port()
    server = serve_script_service(twin_server_env(twin_stack, tmp_path, MLFLOW_METRICS="0"), port,
                                  tmp_path / "mlflow.log")
    server.start()
    try:
        server.wait_ready(time.monotonic() + 120)
        assert get(f"http://127.0.0.1:{port}/metrics")[0] == 404
        assert get(f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default")[0] == 200
        assert list((tmp_path / "run").iterdir()) == []
    finally:
        server.stop()
    # The control: the twin's own server, with the default, has them.
    assert get(f"{twin_stack.mlflow_uri}/metrics")[0] == 200


def test_a_wrong_switch_stops_serve_sh_in_one_line(twin_stack, tmp_path):
    assert isinstance(twin_stack, LocalStack), "this test runs serve.sh on the twin's database"
    env = twin_server_env(twin_stack, tmp_path, MLFLOW_METRICS="yes", MLFLOW_HOST="127.0.0.1",
                          MLFLOW_PORT=str(free_port()))
    result = subprocess.run(["sh", str(SERVE_SCRIPT)], capture_output=True, text=True, timeout=120,
                            env={**os.environ, **env, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "serve.sh: MLFLOW_METRICS is 'yes': set 1 (the server's /metrics, the default) or 0 (none)"]
