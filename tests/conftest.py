"""Fixtures that own the tracking stack for the whole test session.

With MLFLOW_TRACKING_URI set (and the S3 variables), tests run against that stack;
otherwise the no-Docker twin is started in a temporary directory and stopped at the
end. The docker tests start the compose stack of a fresh copy of this checkout with
start_mlflow.sh, on stand-in images built here, and delete it at the end. A failing
test that used a stack gets its services' logs attached to its report.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid

# Tests send traffic to loopback only: MLflow's telemetry would fetch its config from the
# internet in every process that imports it (the twin's server inherits this too).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import mlflow  # noqa: E402  (after the variable above, which MLflow reads at import)
import pytest
from dotenv import dotenv_values

from client_uri import tracking_uri
from mlflow_stack.compose_stack import docker_engine_answers
from mlflow_stack.local_stack import LocalStack, RunningStack
from mlflow_stack.connection import CLIENT_RETRY_DEFAULTS
from mlflow_stack.settings import REPO_ROOT
from genuine_mysql import genuine_mysql  # noqa: F401  (a fixture: Oracle's MySQL on the host)
from shared_access import SIGN_IN_CACHE_SECONDS
from starting import IN_CI, checkouts, start_or_fail, started_checkout, started_shared_checkout

STANDIN_IMAGES = REPO_ROOT / "tests" / "standin_images"


# Markers follow the fixtures a test uses, through their whole closure: `-m "not notebooks"`
# removes every test that would execute a notebook, wherever the fixture is reached from.
# (each_stack, shared_stack and test_docker_stack's each_database_* reach their stacks at run
# time, so they are named; each_stack's and shared_stack's docker parameters carry the docker
# marker themselves. A compose stack is a stack too.)
RUN_TIME_COMPOSE_STACKS = {"each_database_stack", "each_database_shared_stack"}
FIXTURE_MARKERS = {
    "stack": {"twin_stack", "each_stack", "shared_twin", "shared_stack", "local_env", "local_stacks", "standin_images",
              *RUN_TIME_COMPOSE_STACKS},
    "docker": {"standin_images", *RUN_TIME_COMPOSE_STACKS},
    "notebooks": {"run_notebook"},
    "browser": {"browser"},
}


def pytest_collection_modifyitems(items):
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for marker, fixtures in FIXTURE_MARKERS.items():
            if used & fixtures:
                item.add_marker(marker)


def markers_missing(reached: set[str], markers: set[str]) -> dict[str, list[str]]:
    """marker -> the fixtures reached that call for it, for each marker the test lacks."""
    return {marker: sorted(reached & fixtures) for marker, fixtures in FIXTURE_MARKERS.items()
            if reached & fixtures and marker not in markers}


@pytest.fixture(autouse=True)
def _markers_cover_the_fixtures_reached(request):
    """The guard of the hook above: a fixture reached at run time (request.getfixturevalue)
    is outside the closure the markers come from, so a test that reached one without its
    marker fails, and `-m "not stack"` cannot start a stack unseen. Name the fixture that
    reaches it in FIXTURE_MARKERS, or mark the parameter that leads there."""
    yield
    missing = markers_missing(set(request.fixturenames), {mark.name for mark in request.node.iter_markers()})
    if missing:
        pytest.fail(f"{request.node.nodeid} reached fixtures at run time without their markers: {missing}",
                    pytrace=False)


# Time per marker and per file, printed after every run (docs/tests.md's table comes from it):
# setup, call and teardown of each test, so a session fixture's start-up counts for the first
# test using it. A test with several markers counts under each; "none" is the rest.
_MARKER_TIME: dict[str, list[float]] = {}
_FILE_TIME: dict[str, list[float]] = {}
_PROJECT_MARKERS: list[str] = []  # the markers pyproject.toml declares, read at configure time


def pytest_runtest_logreport(report):
    markers = [name for name in _PROJECT_MARKERS if name in report.keywords] or ["none"]
    tallies = [_MARKER_TIME.setdefault(name, [0, 0.0]) for name in markers]
    tallies.append(_FILE_TIME.setdefault(report.nodeid.split("::", 1)[0], [0, 0.0]))
    for tally in tallies:
        tally[0] += report.when == "call"
        tally[1] += report.duration


def pytest_terminal_summary(terminalreporter):
    for title, times in (("time per marker (a test with several markers counts under each)", _MARKER_TIME),
                         ("time per file", _FILE_TIME)):
        if not times:
            continue
        terminalreporter.write_sep("-", title)
        width = max(map(len, times))
        for name, (tests, seconds) in sorted(times.items(), key=lambda entry: -entry[1][1]):
            terminalreporter.write_line(f"{name:>{width}}: {tests:4d} tests, {seconds / 60:6.1f} min")


def pytest_configure(config):
    _PROJECT_MARKERS[:] = [line.split(":", 1)[0].strip() for line in config.getini("markers")]
    if IN_CI and os.environ.get("MLFLOW_TRACKING_URI"):
        raise pytest.UsageError(
            "MLFLOW_TRACKING_URI is set, which points the suite at another server (and skips the tests "
            "that need the stack's own processes): CI tests the stacks it starts; unset it")


@contextlib.contextmanager
def clients_pointed_at(running):
    """Clients in this process and in notebook kernels started by the tests find the stack
    here, with the retry settings the notebooks get from check_tracking_server()."""
    saved = {name: os.environ.get(name) for name in CLIENT_RETRY_DEFAULTS}
    for name, value in CLIENT_RETRY_DEFAULTS.items():
        os.environ.setdefault(name, value)
    try:
        with tracking_uri(running.tracking_uri):  # MLFLOW_TRACKING_URI too, for kernels
            yield running
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def twin_stack(tmp_path_factory):
    if os.environ.get("MLFLOW_TRACKING_URI"):
        running = RunningStack.from_environment()
    else:
        running = start_or_fail(LocalStack(tmp_path_factory.mktemp("stack")), "the twin stack")
        print(f"\ntwin stack healthy in {running.startup_seconds:.1f} s at {running.tracking_uri}")
    with clients_pointed_at(running):
        yield running
    if isinstance(running, LocalStack):
        running.stop()


@pytest.fixture(scope="session")
def stack(twin_stack):
    """The stack most tests run against: the twin, or the one named by MLFLOW_TRACKING_URI."""
    return twin_stack


@pytest.fixture(scope="module", params=["twin", pytest.param("docker", marks=pytest.mark.docker)])
def each_stack(request):
    """The twin, then the compose stack on a real engine: for smoke tests that both must pass."""
    if request.param == "twin":
        yield request.getfixturevalue("twin_stack")
    else:
        with clients_pointed_at(request.getfixturevalue("docker_stack")) as running:
            yield running


@pytest.fixture
def experiment_id(stack):
    """A fresh experiment per test: uuid-suffixed so runs never collide."""
    return mlflow.create_experiment(f"test-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def s3(stack):
    return stack.s3_client()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for name in ("stack", "docker_stack", "each_database_stack", "second_checkout", "shared_stack",
                     "each_database_shared_stack", "genuine_mysql"):
            running = getattr(item, "funcargs", {}).get(name)
            if hasattr(running, "logs"):
                report.sections.append((f"{name} logs", running.logs()))


# -- the compose stack on a real Docker engine ---------------------------------------------
@pytest.fixture(scope="session")
def standin_images() -> dict[str, str]:
    """Build (or reuse) the stand-in images; their names, as image variables for compose."""
    if not docker_engine_answers():
        reason = ("no Docker engine answers (`docker info` fails): the docker tests need one; "
                  "tests/run.sh installs and starts one when CI=true")
        (pytest.fail if IN_CI else pytest.skip)(reason)
    result = subprocess.run(["bash", str(STANDIN_IMAGES / "build.sh")], capture_output=True, text=True,
                            timeout=1800)
    assert result.returncode == 0, f"building the stand-in images failed:\n{result.stdout}\n{result.stderr}"
    return {k: v for k, v in dotenv_values(STANDIN_IMAGES / "standins.env").items() if v is not None}


@pytest.fixture(scope="session")
def new_checkout(tmp_path_factory, standin_images):
    """A maker of fresh checkouts on the MariaDB stand-in (see checkouts)."""
    yield from checkouts(tmp_path_factory, standin_images, "mariadb")


@pytest.fixture(scope="session")
def docker_stack(new_checkout):
    """The compose stack of a fresh checkout, started by start_mlflow.sh on a real engine."""
    yield from started_checkout(new_checkout, "the compose stack")


# -- shared stacks: sign-in and TLS ------------------------------------------------------------
@pytest.fixture(scope="session")
def shared_twin(tmp_path_factory):
    """The twin run as a shared stack, with secrets and certificate of its own. Its workers
    keep a sign-in for SIGN_IN_CACHE_SECONDS, so that a test sees a changed password or a
    deleted user stop working within seconds."""
    root = tmp_path_factory.mktemp("shared-twin")
    running = start_or_fail(LocalStack(root / "work", share=True, secrets_dir=root / "secrets",
                                       overrides={"MLFLOW_AUTH_CACHE_SECONDS": str(SIGN_IN_CACHE_SECONDS)}),
                            "the shared twin")
    yield running
    running.stop()


@pytest.fixture(scope="session")
def shared_docker(new_checkout):
    """A fresh checkout's compose stack started with MLFLOW_SHARE=1 (still reached on loopback)."""
    yield from started_shared_checkout(new_checkout, "the shared compose stack")


@pytest.fixture(scope="module", params=["twin", pytest.param("docker", marks=pytest.mark.docker)])
def shared_stack(request):
    """Each shared stack in turn: the twin, then compose on a real engine."""
    return request.getfixturevalue(f"shared_{request.param}")


# -- offline assets and notebook execution ------------------------------------------------
@pytest.fixture(scope="session")
def offline_assets(tmp_path_factory):
    """The generated IMDB-layout sample and the bert-tiny-shaped backbone, built once."""
    from dl_model_tracking.data import write_sample_dataset
    from dl_model_tracking.model import build_offline_backbone

    root = tmp_path_factory.mktemp("offline")
    files = write_sample_dataset(root / "data")
    backbone = build_offline_backbone(root / "bert-tiny-offline")
    return {"data_dir": root / "data", "files": files, "backbone": backbone}


@pytest.fixture(scope="session")
def run_notebook(stack, offline_assets, tmp_path_factory):
    """Execute a notebook with its parameters cell overridden; return its namespace, its
    working folder and the executed notebook."""
    import json

    import nbformat
    from nbclient import NotebookClient

    from mlflow_stack.settings import REPO_ROOT

    def run(name: str, **overrides):
        params = {"BACKBONE": str(offline_assets["backbone"]), "DATA_DIR": str(offline_assets["data_dir"]),
                  "MAX_EPOCHS": 2, **overrides}
        notebook = nbformat.read(REPO_ROOT / "notebooks" / name, as_version=4)
        position = next(i for i, cell in enumerate(notebook.cells)
                        if "parameters" in cell.metadata.get("tags", []))
        injected = "\n".join(f"{key} = {value!r}" for key, value in params.items())
        notebook.cells.insert(position + 1, nbformat.v4.new_code_cell(
            "# Injected by the tests\n" + injected, metadata={"tags": ["injected-parameters"]}))
        # Hand back the notebook's variables the test needs, as JSON in a last cell.
        notebook.cells.append(nbformat.v4.new_code_cell(
            "import json as _json\nprint(_json.dumps({k: v for k, v in globals().items() "
            "if k in ('run_id', 'experiment_id') and isinstance(v, str)}))"))
        workdir = tmp_path_factory.mktemp(name.replace(".ipynb", ""))
        client = NotebookClient(notebook, timeout=1200, kernel_name="python3",
                                resources={"metadata": {"path": str(workdir)}})
        # Jupyter tells its kernels which notebook they run; so do we.
        saved_session = os.environ.get("JPY_SESSION_NAME")
        os.environ["JPY_SESSION_NAME"] = str(REPO_ROOT / "notebooks" / name)
        try:
            client.execute()
        finally:
            if saved_session is None:
                os.environ.pop("JPY_SESSION_NAME")
            else:
                os.environ["JPY_SESSION_NAME"] = saved_session
            out = REPO_ROOT / "test-artifacts" / name
            out.parent.mkdir(exist_ok=True)
            nbformat.write(notebook, out)  # the executed copy, for reading a failure
        last = notebook.cells[-1].outputs[-1]["text"]
        return {**json.loads(last.strip().splitlines()[-1]), "workdir": workdir, "notebook": notebook}

    return run


@pytest.fixture(scope="session")
def chapter_notebook(run_notebook):
    """dl_model_tracking.ipynb, run once per session: the autologged, registered model."""
    from mlflow import MlflowClient

    from mlflow_stack.settings import DEFAULT_REGISTERED_MODEL_NAME

    client = MlflowClient()
    name = DEFAULT_REGISTERED_MODEL_NAME
    before = ({v.version for v in client.search_model_versions(f"name='{name}'")}
              if client.search_registered_models(f"name='{name}'") else set())
    experiment = f"dl_model_chapter03-{uuid.uuid4().hex[:8]}"
    result = run_notebook("dl_model_tracking.ipynb", EXPERIMENT_NAME=experiment)
    after = {v.version for v in client.search_model_versions(f"name='{name}'")}
    new_versions = after - before
    assert len(new_versions) == 1, f"the notebook should register one version, got {new_versions}"
    return {**result, "experiment": experiment, "model_name": name, "version": new_versions.pop()}
