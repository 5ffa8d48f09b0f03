"""MLFLOW_SERVER_REPLICAS on a real Docker engine: several MLflow servers behind nginx, which
spreads requests over them and follows them in Docker's DNS as they go and come back. A
training client (hand logging and autolog) loses nothing and sees no error while one server
is killed and another restarted. (Compose v1's start, which polls each server's health
itself, is checked on test_docker_stack.py's v1 checkout, which runs two servers.)

Which server a request reached is read from the servers' sockets: nginx keeps its
connections to each server it used open (keepalive), so every server that answered holds
an established connection from nginx's address.
"""

from __future__ import annotations

import time
import urllib.request

import pytest

from benchmarks.outage_harness import autolog_arguments, run_through_outage
from benchmarks.server_replicas import measure
from mlflow_stack.compose_stack import docker
from starting import started_checkout

pytestmark = pytest.mark.docker

REPLICAS = 3


@pytest.fixture(scope="module")
def replicated_stack(new_checkout):
    # One worker per server: three servers' start-up on two cores is the cost of this module.
    yield from started_checkout(new_checkout, f"the compose stack with {REPLICAS} MLflow servers",
                                "checkout-replicas", MLFLOW_SERVER_REPLICAS=str(REPLICAS), MLFLOW_WORKERS="1")


def address(container: str) -> str:
    return docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container)


def connections_from(container: str, peer: str) -> int:
    """Established TCP connections to the container's port 5000 from ``peer`` (IPv4)."""
    hex_peer = "".join(f"{int(part):02X}" for part in reversed(peer.split(".")))
    table = docker("exec", container, "cat", "/proc/net/tcp").splitlines()[1:]
    return sum(1 for line in table
               if (fields := line.split())[1].endswith(":1388") and fields[2].startswith(hex_peer + ":")
               and fields[3] == "01")


def servers_reached(stack, seconds: float = 30) -> dict[str, int]:
    """Send API calls through nginx, 10 at a time, until every running server holds a
    connection from nginx or ``seconds`` pass; each running server's connections from nginx.
    (A server nginx found not listening yet, while it started, is left alone for 10 s:
    nginx's fail_timeout.)"""
    nginx = address(stack.container("nginx"))
    deadline = time.monotonic() + seconds
    while True:
        for _ in range(10):
            with urllib.request.urlopen(f"{stack.tracking_uri}/api/2.0/mlflow/experiments/search?max_results=1",
                                        timeout=30) as answer:
                assert answer.status == 200
        reached = {server: connections_from(server, nginx) for server in stack.containers("mlflow")
                   if state(server)[0] == "running"}
        if all(reached.values()) or time.monotonic() > deadline:
            return reached
        time.sleep(1)


def state(container: str) -> tuple[str, str, str]:
    """(status, health, start time) as the engine reports them."""
    status, health, started = docker("inspect", "-f", "{{.State.Status}} {{.State.Health.Status}} {{.State.StartedAt}}",
                                     container).split()
    return status, health, started


def wait_healthy(container: str, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while state(container)[1] != "healthy":
        assert time.monotonic() < deadline, f"server {container} not healthy again within {seconds:.0f} s"
        time.sleep(1)


def test_the_start_waits_for_every_server_and_nginx_spreads_requests_over_them(replicated_stack):
    servers = replicated_stack.containers("mlflow")
    assert len(servers) == REPLICAS
    assert all(state(server)[:2] == ("running", "healthy") for server in servers)
    assert f"MLflow servers    : {REPLICAS} behind nginx" in replicated_stack.start_output
    reached = servers_reached(replicated_stack)
    assert all(count >= 1 for count in reached.values()), reached


class ServerFaults:
    """run_through_outage's stack, whose "services" are faults of single MLflow servers:
    "kill" (SIGKILL to the first server; `docker kill` counts as a manual stop, so the
    restart policy leaves it down) and "restart" (`docker restart` of the second: SIGTERM,
    then a new start, back when healthy)."""

    def __init__(self, stack) -> None:
        self.tracking_uri = stack.tracking_uri
        self.killed, self.restarted = stack.containers("mlflow")[:2]

    def outage(self, fault: str, seconds: float) -> float:
        started = time.monotonic()
        if fault == "kill":
            docker("kill", self.killed)
            time.sleep(seconds)
        else:
            docker("restart", self.restarted)
            wait_healthy(self.restarted)
        return time.monotonic() - started


@pytest.fixture(scope="module")
def small_training(tmp_path_factory):
    return autolog_arguments(tmp_path_factory.mktemp("replica-training"))


def test_training_loses_nothing_while_one_server_is_killed_and_another_restarted(replicated_stack, small_training,
                                                                                 tmp_path):
    faults = ServerFaults(replicated_stack)
    restarted_at = state(faults.restarted)[2]
    results = run_through_outage(faults, {"hand": [], "autolog": small_training}, ["kill", "restart"], 5, tmp_path,
                                 time_limit=600)
    # The faults happened: one server is down for good, the other was started again.
    assert state(faults.killed)[0] == "exited"
    assert state(faults.restarted)[:2] == ("running", "healthy") and state(faults.restarted)[2] != restarted_at
    for result in results:
        print(result)
        assert result.outcome == "finished", result.error
        assert result.metrics_sent > 0 and result.metrics_stored == result.metrics_sent, result
        assert not result.params_missing and not result.tags_missing and not result.artifacts_missing, result


def test_nginx_sends_to_a_server_again_once_it_is_back(replicated_stack):
    killed = replicated_stack.containers("mlflow")[0]
    if state(killed)[0] != "exited":  # on its own, without the fault test before it
        docker("kill", killed)
    servers_reached(replicated_stack, seconds=0)  # every request answered without it
    docker("start", killed)
    wait_healthy(killed)
    assert servers_reached(replicated_stack)[killed] >= 1


def test_the_replicas_benchmark_reports_each_server(replicated_stack):
    """benchmarks/server_replicas.py's rows on this stack: their structure, not their timings."""
    rows = measure(replicated_stack, REPLICAS, writers=2, seconds=3)
    measures = {row.measure: row for row in rows}
    assert {f"CPU of mlflow-{n} during the load" for n in range(1, REPLICAS + 1)} <= set(measures)
    assert {"CPU of mysql during the load", "CPU of nginx during the load", "CPU of all containers during the load",
            "2 writers: calls/s", "2 writers: call latency p95"} <= set(measures)
    assert measures["2 writers: errors"].value == 0 and measures["2 writers: records lost"].value == 0
    assert {row.group for row in rows} == {f"{REPLICAS} servers"}
