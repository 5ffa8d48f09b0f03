"""Fixtures that own the tracking stack for the whole test session.

With MLFLOW_TRACKING_URI set (and the S3 variables), tests run against that stack,
such as the compose one; otherwise the no-Docker twin is started in a temporary
directory and stopped at the end. A failing test that used the stack gets every
service's log attached to its report.
"""

from __future__ import annotations

import os
import uuid

import mlflow
import pytest

from dl_model_tracking.local_stack import LocalStack, RunningStack, StackStartError
from dl_model_tracking.server import CLIENT_RETRY_DEFAULTS

_STACK_KEY = pytest.StashKey[object]()


@pytest.fixture(scope="session")
def stack(request, tmp_path_factory):
    if os.environ.get("MLFLOW_TRACKING_URI"):
        running = RunningStack.from_environment()
    else:
        running = LocalStack(tmp_path_factory.mktemp("stack"))
        try:
            running.start()
        except StackStartError as error:
            pytest.fail(f"the twin stack did not start:\n{error}", pytrace=False)
        print(f"\ntwin stack healthy in {running.startup_seconds:.1f} s at {running.tracking_uri}")
    request.config.stash[_STACK_KEY] = running
    # Clients in this process and in notebook kernels started by the tests find it here.
    # The same client settings the notebooks get from connect(): without them a
    # runs:/<id>/model load in this process retries MLflow's HTTP 500 for ~4 minutes.
    saved = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", *CLIENT_RETRY_DEFAULTS)}
    os.environ["MLFLOW_TRACKING_URI"] = running.tracking_uri
    for name, value in CLIENT_RETRY_DEFAULTS.items():
        os.environ.setdefault(name, value)
    mlflow.set_tracking_uri(running.tracking_uri)
    yield running
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    if isinstance(running, LocalStack):
        running.stop()


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
    running = item.config.stash.get(_STACK_KEY, None)
    if report.failed and running is not None and "stack" in item.fixturenames:
        report.sections.append(("tracking stack logs", running.logs()))


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
    """Execute a notebook with its parameters cell overridden; return its namespace."""
    import json

    import nbformat
    from nbclient import NotebookClient

    from dl_model_tracking.settings import REPO_ROOT

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
        return {**json.loads(last.strip().splitlines()[-1]), "workdir": workdir}

    return run


@pytest.fixture(scope="session")
def chapter_notebook(run_notebook):
    """dl_model_tracking.ipynb, run once per session: the autologged, registered model."""
    from mlflow import MlflowClient

    from dl_model_tracking.settings import DEFAULT_REGISTERED_MODEL_NAME

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
