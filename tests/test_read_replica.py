"""The read replica (MLFLOW_READ_REPLICA=1) on a real Docker engine: what a user notices.

One checkout for the module, on the MariaDB stand-in: started first without the replica
and given a run, then started again with it, as a user turns it on for a stack that
already holds data. MLflow's own stores send every plain read to the replica, with nothing
against lag; the stack's send it only searches (mlflow_stack_server/replica_reads.py), so a
client reads its own writes, and only search results may trail them by the replica's lag.
There is no fallback: these tests show what a user sees, and that nothing is silently
wrong beyond that lag."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from client_uri import tracking_uri
from mlflow_stack.compose_stack import docker
from mlflow_stack.connection import missing_service
from starting import checkouts, start_or_fail

pytestmark = pytest.mark.docker


def sql(stack, service: str, query: str, user: str = "root") -> str:
    """A statement run inside a database container (``mysql`` or ``mysql-replica``)."""
    password = stack.config["MYSQL_ROOT_PASSWORD" if user == "root" else "MYSQL_PASSWORD"]
    result = subprocess.run(["docker", "exec", "-e", f"MYSQL_PWD={password}", stack.container(service),
                             "mysql", "-u", user, "-N", "-B", "-e", query],
                            capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(result.stderr.strip())
    return result.stdout.strip()


def caught_up(stack) -> None:
    """Until the replica has applied all the primary has (MariaDB's GTID wait, 60 s at most)."""
    position = sql(stack, "mysql", "SELECT @@GLOBAL.gtid_binlog_pos")
    assert sql(stack, "mysql-replica", f"SELECT MASTER_GTID_WAIT('{position}', 60)") == "0", \
        sql(stack, "mysql-replica", "SHOW REPLICA STATUS")


def start(stack, what: str, read_replica: str):
    stack.env["MLFLOW_READ_REPLICA"] = stack.env_overrides["MLFLOW_READ_REPLICA"] = read_replica
    return start_or_fail(stack, what)


def logged_run(client: MlflowClient, experiment_id: str, **params: str) -> str:
    run_id = client.create_run(experiment_id).info.run_id
    for key, value in params.items():
        client.log_param(run_id, key, value)
    return run_id


@pytest.fixture(scope="module")
def replica_stack(tmp_path_factory, standin_images):
    """The checkout with a run logged before the replica existed (``stack.run_before``)."""
    for make in checkouts(tmp_path_factory, standin_images, "mariadb"):
        stack = start(make("read-replica"), "the compose stack without a replica", "0")
        client = MlflowClient(stack.tracking_uri)
        stack.run_before = logged_run(client, client.create_experiment("before-the-replica"), lr="0.1")
        start(stack, "the compose stack with a read replica", "1")
        yield stack
        stack.stop(delete_data=True)


@pytest.fixture
def client(replica_stack):
    return MlflowClient(replica_stack.tracking_uri)


@pytest.fixture
def experiment_id(replica_stack, client):
    experiment_id = client.create_experiment(f"replica-{uuid.uuid4().hex[:12]}")
    caught_up(replica_stack)  # searches of it start from the same state
    return experiment_id


def test_data_from_before_the_replica_is_copied_and_the_replica_refuses_writes(replica_stack, client):
    run_id = replica_stack.run_before
    assert sql(replica_stack, "mysql-replica", f"SELECT value FROM mlflow.params WHERE run_uuid = '{run_id}'") == "0.1"
    assert client.get_run(run_id).data.params == {"lr": "0.1"}
    with pytest.raises(RuntimeError, match="read-only"):
        sql(replica_stack, "mysql-replica", f"DELETE FROM mlflow.params WHERE run_uuid = '{run_id}'",
            user=replica_stack.config["MYSQL_USER"])
    assert sql(replica_stack, "mysql-replica", "SELECT @@read_only") == "1"


def test_searches_are_answered_from_the_replica_other_reads_and_writes_by_the_primary(replica_stack, client,
                                                                                      experiment_id):
    run_id = client.create_run(experiment_id, run_name="as-logged").info.run_id
    caught_up(replica_stack)
    # A difference only the replica holds (root may write there; sql_log_bin=0 keeps it local).
    sql(replica_stack, "mysql-replica",
        f"SET SESSION sql_log_bin = 0; UPDATE mlflow.runs SET name = 'only-on-the-replica' WHERE run_uuid = '{run_id}'")
    try:
        assert [run.info.run_name for run in client.search_runs([experiment_id])] == ["only-on-the-replica"]
        assert client.get_run(run_id).info.run_name == "as-logged"
        client.log_param(run_id, "written", "to the primary")
        assert sql(replica_stack, "mysql", f"SELECT value FROM mlflow.params WHERE run_uuid = '{run_id}'") \
            == "to the primary"
    finally:
        sql(replica_stack, "mysql-replica",
            f"SET SESSION sql_log_bin = 0; UPDATE mlflow.runs SET name = 'as-logged' WHERE run_uuid = '{run_id}'")


def test_a_client_reads_its_writes_at_once_and_a_search_may_lag_but_is_never_wrong(replica_stack, client,
                                                                                  experiment_id):
    """A run read back at once holds all that was logged; a search at once finds the run or
    not yet (a prefix of what was logged); once the replica has caught up, exactly all of it."""
    run_id = logged_run(client, experiment_id, lr="0.01", layers="3")
    for step in range(5):
        client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step)
    at_once = client.get_run(run_id).data
    assert at_once.params == {"lr": "0.01", "layers": "3"} and at_once.metrics == {"loss": 0.2}
    assert [m.value for m in client.get_metric_history(run_id, "loss")] == [1.0 / (s + 1) for s in range(5)]
    found = client.search_runs([experiment_id])
    assert len(found) <= 1 and all(run.info.run_id == run_id and run.data.params.items()
                                   <= {"lr": "0.01", "layers": "3"}.items() for run in found), found
    caught_up(replica_stack)
    assert [r.info.run_id for r in client.search_runs([experiment_id], "metrics.loss < 0.3")] == [run_id]


@pytest.fixture
def lagging(replica_stack):
    """The replica receives but applies nothing, as a busy replica falls behind."""
    sql(replica_stack, "mysql-replica", "STOP REPLICA SQL_THREAD")
    yield
    sql(replica_stack, "mysql-replica", "START REPLICA SQL_THREAD")
    caught_up(replica_stack)


@pytest.fixture
def fluent(replica_stack):
    with tracking_uri(replica_stack.tracking_uri):
        yield mlflow


def test_a_lagging_replica_delays_only_search_results(replica_stack, client, experiment_id, fluent, lagging,
                                                     monkeypatch):
    monkeypatch.delenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", raising=False)
    name = f"new-while-lagging-{uuid.uuid4().hex[:8]}"
    # With MLflow's own stores, set_experiment answered 404 here (it reads back from the
    # replica the experiment it has just created) and set_terminated failed, leaving the run
    # RUNNING: both read the primary now.
    experiment = fluent.set_experiment(name)
    run_id = logged_run(client, experiment.experiment_id, lr="0.5")
    assert client.get_run(run_id).data.params == {"lr": "0.5"}
    client.set_terminated(run_id)
    assert sql(replica_stack, "mysql", f"SELECT status FROM mlflow.runs WHERE run_uuid = '{run_id}'") == "FINISHED"
    model = f"model-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(model)
    assert client.get_registered_model(model).name == model  # the registry reads the primary too
    assert client.search_runs([experiment.experiment_id]) == []  # the replica has not applied it yet

    sql(replica_stack, "mysql-replica", "START REPLICA SQL_THREAD")
    caught_up(replica_stack)
    assert [run.info.run_id for run in client.search_runs([experiment.experiment_id])] == [run_id]


def test_a_stopped_replica_fails_reads_at_once_and_recovers_when_started(replica_stack, client, experiment_id,
                                                                        monkeypatch):
    run_id = logged_run(client, experiment_id, lr="0.2")
    caught_up(replica_stack)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # the answer itself, not two minutes of retries
    replica = replica_stack.container("mysql-replica")
    docker("stop", replica)
    try:
        # No fallback to the primary for searches: they answer 503, in one line. Everything
        # else goes to the primary and works: reading a run, starting one, logging.
        with pytest.raises(MlflowException, match="503"):
            client.search_runs([experiment_id])
        assert client.get_run(run_id).data.params == {"lr": "0.2"}
        client.set_terminated(client.create_run(experiment_id).info.run_id)
        client.log_metric(run_id, "written_while_down", 1.0)
        named = missing_service(replica_stack.tracking_uri)
        assert named.startswith(f"the MLflow server at {replica_stack.tracking_uri} cannot search runs, though "
                                "its database answers (HTTP 503"), named
        assert named.endswith("with MLFLOW_READ_REPLICA=1, the read replica is down"), named
    finally:
        docker("start", replica)
    deadline = time.monotonic() + 120
    while docker("inspect", "-f", "{{.State.Health.Status}}", replica) != "healthy":
        assert time.monotonic() < deadline, "the replica was not healthy again within 120 s"
        time.sleep(1)
    caught_up(replica_stack)  # it resumes replication by itself
    assert [run.data.metrics for run in client.search_runs([experiment_id], f"attributes.run_id = '{run_id}'")] \
        == [{"written_while_down": 1.0}]
    assert missing_service(replica_stack.tracking_uri) is None


def test_starting_again_while_mlflow_writes_compares_at_one_position(replica_stack, client, experiment_id):
    """start_mlflow.sh on the running stack (to scale the servers, say) runs the setup job
    again while a training run logs: it compares both servers at one GTID position, so the
    writes in flight are no difference: no copy, the start succeeds, every metric is there."""
    run_id = client.create_run(experiment_id).info.run_id
    job = replica_stack.container("setup-read-replica")
    before = docker("logs", job)
    stop, logged, errors = threading.Event(), [], []

    def log_until_stopped():
        for step in range(20_000):  # bounded: about 10 per second for the start's minute or so
            if stop.is_set():
                return
            try:
                client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step)
                logged.append(step)
            except Exception as error:  # noqa: BLE001  (kept, and the test fails on it)
                errors.append(error)
                return

    writer = threading.Thread(target=log_until_stopped, daemon=True)
    writer.start()
    try:
        start(replica_stack, "the running compose stack with its replica, started again", "1")
    finally:
        stop.set()
        writer.join(120)
    rerun = replica_stack.container("setup-read-replica")
    after = docker("logs", rerun)[len(before) if rerun == job else 0:]
    assert "every table checked" in after and "differs" not in after, after
    assert errors == [] and len(logged) > 10, (errors[:3], len(logged))
    assert len(client.get_metric_history(run_id, "loss")) == len(logged)
    caught_up(replica_stack)
    assert sql(replica_stack, "mysql-replica", f"SELECT COUNT(*) FROM mlflow.metrics WHERE run_uuid = '{run_id}'") \
        == str(len(logged))


def test_writes_made_while_the_replica_was_off_are_there_when_it_is_on_again(replica_stack, client, experiment_id):
    """Without the overlay the primary writes no binary log (MariaDB) or no GTIDs (MySQL), so
    replication alone would resume past those writes; the setup job compares every table and
    copies the primary again."""
    start(replica_stack, "the compose stack with the replica turned off", "0")
    run_id = logged_run(client, experiment_id, while_off="yes")
    start(replica_stack, "the compose stack with the replica on again", "1")
    assert "the replica differs from the primary" in docker("logs", replica_stack.container("setup-read-replica"))
    assert client.get_run(run_id).data.params == {"while_off": "yes"}
