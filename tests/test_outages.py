"""Services of the stack going away while a training run logs (the short version of
benchmarks/outages.py): short outages lose nothing and crash nothing; an outage longer than
the client's retries ends the run with one line naming the missing service, never a hang."""

from __future__ import annotations


import pytest

from benchmarks.outage_harness import autolog_arguments, run_through_outage
from mlflow_stack.local_stack import LocalStack
from mlflow_stack.connection import missing_service
from starting import start_or_fail

pytestmark = pytest.mark.stack

# A retry budget of 2-4 s (pauses 0 and 2 s, plus jitter) instead of about two minutes, so that a 10 s
# outage outlasts it.
SHORT_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


@pytest.fixture(scope="module")
def breakable_stack(stack, tmp_path_factory):
    """The session's twin; a twin of its own when the tests run against a stack they cannot stop."""
    if isinstance(stack, LocalStack):
        yield stack
        return
    own = start_or_fail(LocalStack(tmp_path_factory.mktemp("outage-stack")), "the twin stack")
    yield own
    own.stop()


def assert_finished_losing_nothing(results, outages: int, seconds: float) -> None:
    for result in results:
        print(result.as_dict())
        assert result.outcome == "finished", result.error
        assert result.metrics_sent > 0 and result.metrics_stored == result.metrics_sent, result
        assert not result.params_missing and not result.tags_missing and not result.artifacts_missing, result
    # Every outage happened while each workload was logging (they log until the last is over).
    assert all(r.down_seconds >= outages * seconds for r in results), results


@pytest.fixture(scope="module")
def small_training(tmp_path_factory):
    return autolog_arguments(tmp_path_factory.mktemp("outage-assets"))


def test_short_outage_of_each_service_loses_nothing(breakable_stack, small_training, tmp_path):
    """Hand logging and autolog through Lightning, side by side, while nginx, the MLflow
    server, the database and the S3 store (frozen on the twin) each go away for 5 s."""
    results = run_through_outage(breakable_stack, {"hand": [], "autolog": small_training},
                                 ["nginx", "mlflow", "database", "s3"], 5, tmp_path, time_limit=900)
    assert_finished_losing_nothing(results, outages=4, seconds=5)


def test_outage_longer_than_the_retries_ends_the_run_naming_the_database(breakable_stack, small_training,
                                                                        tmp_path):
    """Hand logging fails at the call; autolog, which swallows failed calls, at the end of
    training. Both with the one line naming the database. (run_through_outage's time limit
    ends a workload that hangs, as a failure.)"""
    results = run_through_outage(breakable_stack, {"hand": [], "autolog": small_training}, ["database"], 10,
                                 tmp_path, env=SHORT_RETRIES, time_limit=600)
    for result in results:
        print(result.as_dict())
        assert result.outcome == "error", result
        assert "cannot reach its database, MySQL (HTTP 503" in result.error and "\n" not in result.error
        # Nothing the workload was told had been stored is missing.
        assert result.metrics_stored >= result.metrics_sent and not result.params_missing, result
    hand, autolog = results
    assert hand.error.startswith("a tracking call failed after all its retries: ")
    assert autolog.error.startswith("autologging failed ")


@pytest.mark.docker
def test_short_outage_of_each_compose_service_loses_nothing(docker_stack, tmp_path):
    """The same on the compose stack, each service's container stopped for 5 s and started
    again (the S3 stand-in keeps its objects on its volume, so it is really stopped)."""
    results = run_through_outage(docker_stack, {"hand": []}, list(docker_stack.OUTAGE_SERVICES), 5, tmp_path,
                                 time_limit=900)
    assert_finished_losing_nothing(results, outages=4, seconds=5)


@pytest.mark.parametrize("service, named", [
    ("nginx", "nginx, the stack's front door, is down"),
    ("mlflow", "answers, but the MLflow server behind it does not (HTTP 502"),
    ("database", "cannot reach its database, MySQL (HTTP 503"),
    ("s3", "cannot reach its artifact store, S3/MinIO (timed out)"),
])
def test_probe_names_the_missing_service(breakable_stack, service, named):
    """What ServiceDown's line says while each service is down, and nothing once it is back."""
    assert missing_service(breakable_stack.tracking_uri) is None
    breakable_stack.take_down(service)
    try:
        line = missing_service(breakable_stack.tracking_uri, timeout=3)
    finally:
        breakable_stack.bring_back(service)
    assert named in line, line
    assert missing_service(breakable_stack.tracking_uri) is None


def test_every_worker_answers_a_database_outage_at_once(breakable_stack):
    """A server worker that had not yet opened its database store when the database went
    away used to hang its first request in MLflow's ~100 s connect retry: the stack's app
    opens the stores as each worker starts. Eight probes reach both workers."""
    breakable_stack.take_down("database")
    try:
        lines = [missing_service(breakable_stack.tracking_uri, timeout=3) for _ in range(8)]
    finally:
        breakable_stack.bring_back("database")
    assert all(line and "cannot reach its database, MySQL (HTTP 503" in line for line in lines), lines
