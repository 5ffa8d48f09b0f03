"""Older MLflow clients against the stack: what docs/clients.md claims.

Each old client gets a venv of its own with mlflow-skinny (the client alone), built from
PyPI once and kept under .cache/old-clients/ (git-ignored; tests/client_venvs.py);
tests/old_client_smoke.py runs in it against the stack, and what it read back is compared
here with what it sent, and read again with the pinned client. The pinned client runs the
same script as a baseline.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from client_venvs import CACHE, NEEDS_PKG_RESOURCES, OLD_PROTOBUF, venv_python
from mlflow_stack.local_stack import LocalStack

pytestmark = pytest.mark.stack

SMOKE_SCRIPT = Path(__file__).with_name("old_client_smoke.py")
VENV_CACHE = CACHE / "old-clients"

# The oldest 2.x client that passes the smoke run. Chosen by running the smoke script by
# hand against the twin with mlflow-skinny 2.0.0, 2.0.1, 2.3.0, 2.9.2 and 2.22.5: all pass
# (aliases from 2.3.0 on, where MLflow added them), and 2.0.0 is the first 2.x release,
# so there was nothing older to bisect.
OLDEST_2X = "2.0.0"
FIRST_WITH_ALIASES = "2.3.0"

ARTIFACTS_UNKNOWN = "Could not find a registered artifact repository for: mlflow-artifacts:/"
ARTIFACT_STEPS = ("log_artifact", "list_artifacts", "download_artifact", "model_download")
ALIAS_STEPS = ("set_alias", "get_alias")


@dataclass(frozen=True)
class Client:
    version: str
    requirements: tuple[str, ...] = ()  # what pip puts in its venv; () = the pinned client, in .venv
    artifacts: bool = True  # reads and writes mlflow-artifacts:/ locations (>= 1.24)
    aliases: bool = True  # has registered-model aliases (>= 2.3)
    preview_registry: bool = False  # calls the registry under /api/2.0/preview/mlflow/ (1.x)

    @property
    def pinned(self) -> bool:
        return not self.requirements


CLIENTS = [
    Client(mlflow.__version__),
    Client(OLDEST_2X, (f"mlflow-skinny=={OLDEST_2X}", NEEDS_PKG_RESOURCES), aliases=False),
    # The first with registered-model aliases.
    Client(FIRST_WITH_ALIASES, (f"mlflow-skinny=={FIRST_WITH_ALIASES}", NEEDS_PKG_RESOURCES)),
    # The oldest 1.x that handles mlflow-artifacts:/, so everything but aliases works.
    Client("1.24.0", ("mlflow-skinny==1.24.0", NEEDS_PKG_RESOURCES, OLD_PROTOBUF), aliases=False,
           preview_registry=True),
    # The book's pin: tracking and registry work, artifacts cannot.
    Client("1.20.2", ("mlflow-skinny==1.20.2", NEEDS_PKG_RESOURCES, OLD_PROTOBUF), artifacts=False,
           aliases=False, preview_registry=True),
]


def client_python(client: Client) -> Path:
    """The Python that runs `client`: this one for the pinned client, else its cached venv."""
    if client.pinned:
        return Path(sys.executable)
    return venv_python(VENV_CACHE / f"mlflow-skinny-{client.version}", client.requirements)


def access_log(stack) -> Path | None:
    """nginx's access log of the twin; None for a stack started elsewhere."""
    return stack.workdir / "nginx" / "access.log" if isinstance(stack, LocalStack) else None


def new_requests(log: Path | None, start: int) -> str:
    if log is None:
        return ""
    with open(log, "rb") as f:
        f.seek(start)
        return f.read().decode(errors="replace")


def expected_outcome(client: Client, step: str) -> str:
    if step in ARTIFACT_STEPS and not client.artifacts:
        return ARTIFACTS_UNKNOWN
    if step in ALIAS_STEPS and not client.aliases:
        return "absent: "
    return "ok"


def outcome_matches(expected: str, outcome: str) -> bool:
    return outcome == "ok" if expected == "ok" else expected in outcome


@pytest.mark.parametrize("client", CLIENTS, ids=lambda c: f"pinned-{c.version}" if c.pinned else c.version)
def test_an_mlflow_client_tracks_stores_and_registers_on_the_stack(client, stack, tmp_path):
    python = client_python(client)
    tag = uuid.uuid4().hex[:8]
    spec = {
        "experiment": f"old-client-{client.version}-{tag}",
        "params": {"lr": "0.001", "batch_size": "16", "optimizer": "adam"},
        "metric": "loss",
        "metric_history": [[0, 0.9], [1, 0.5], [2, 0.25], [3, 0.125]],
        "tags": {"stage": "smoke", "client": client.version},
        "artifact_dir": "some_dir",
        "artifact_file": "note.txt",
        "artifact_text": f"written by MLflow {client.version}\nsecond line: é ✓\n",
        "search_filter": "metrics.loss < 0.2",
        "model_name": f"old-client-{client.version}-{tag}",
        "alias": "champion",
    }
    log = access_log(stack)
    log_start = log.stat().st_size if log is not None else 0
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["MLFLOW_TRACKING_URI"] = stack.tracking_uri
    result = subprocess.run([str(python), str(SMOKE_SCRIPT), json.dumps(spec)], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=600)
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0 and lines, (
        f"the smoke script under MLflow {client.version} crashed (exit {result.returncode}):\n"
        + "\n".join(result.stderr.splitlines()[-30:]))
    requests = new_requests(log, log_start)  # before the pinned client below adds its own
    report = json.loads(lines[-1])
    assert report["client_version"] == client.version
    steps, got = report["steps"], report["read"]

    expected = {step: expected_outcome(client, step) for step in steps}
    unexpected = {step: f"expected {expected[step]!r}, got {outcome!r}"
                  for step, outcome in steps.items() if not outcome_matches(expected[step], outcome)}
    assert not unexpected, (f"MLflow {client.version}: steps that did not go as expected:\n"
                            + "\n".join(f"  {step}: {why}" for step, why in unexpected.items())
                            + "\nits stderr ends:\n" + "\n".join(result.stderr.splitlines()[-30:]))

    # What the old client read back is what it sent.
    run_id = got["run_id"]
    assert got["artifact_location"].startswith("mlflow-artifacts:/")
    assert got["params"] == spec["params"]
    assert got["tags"] == spec["tags"]
    assert got["metric_history"] == spec["metric_history"]
    assert got["latest_metrics"] == {spec["metric"]: spec["metric_history"][-1][1]}
    assert got["status"] == "FINISHED"
    assert got["search_run_ids"] == [run_id]
    source = f"{got['artifact_uri']}/{spec['artifact_dir']}"
    assert got["model_version"] == {"name": spec["model_name"], "version": "1", "run_id": run_id,
                                    "source": source, "status": "READY"}
    if client.artifacts:
        assert got["artifacts"] == [f"{spec['artifact_dir']}/{spec['artifact_file']}"]
        assert got["artifact_text"] == spec["artifact_text"]
        assert got["model_artifact_text"] == spec["artifact_text"]
    if client.aliases:
        assert got["alias_version"] == "1"

    # And the pinned client finds the same on the server.
    pinned = MlflowClient()
    run = pinned.get_run(run_id)
    assert run.data.params == spec["params"]
    assert {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")} == spec["tags"]
    history = pinned.get_metric_history(run_id, spec["metric"])
    assert sorted([m.step, m.value] for m in history) == spec["metric_history"]
    version = pinned.get_model_version(spec["model_name"], "1")
    assert (version.run_id, version.source) == (run_id, source)
    if client.artifacts:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=f"{spec['artifact_dir']}/{spec['artifact_file']}",
            dst_path=str(tmp_path / "pinned"))
        assert Path(path).read_bytes() == spec["artifact_text"].encode()
    if client.aliases:
        assert pinned.get_model_version_by_alias(spec["model_name"], spec["alias"]).version == "1"

    # The registry calls went where this client sends them: 1.x under the preview path,
    # which only nginx's rewrite answers.
    if log is not None:
        prefix = "/api/2.0/preview/mlflow" if client.preview_registry else "/api/2.0/mlflow"
        for call in ("POST {}/registered-models/create", "POST {}/model-versions/create",
                     f"GET {{}}/model-versions/get\\?name={re.escape(spec['model_name'])}&version=1"):
            pattern = call.format(re.escape(prefix)) + r' HTTP/1\.1" 200 '
            assert re.search(pattern, requests), f"no {pattern!r} in nginx's access log:\n{requests[-3000:]}"
