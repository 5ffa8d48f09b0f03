"""Fault injection: one service of a stack goes down for a set time while a child process
trains and logs (benchmarks.training_workloads); then what it sent is compared with
what the server kept. Used by tests/test_outages.py and benchmarks/outages.py.

The stack is anything with ``tracking_uri`` and ``outage(service, seconds)`` (LocalStack).
Several outages may follow each other in one run; the child trains until they are over.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from mlflow_stack.connection import CLIENT_RETRY_DEFAULTS
from mlflow_stack.settings import REPO_ROOT

# How each service is named in ServiceDown's line.
SERVICE_NAMES = {"nginx": "nginx", "mlflow": "MLflow server", "database": "database",
                 "s3": "artifact store"}


@dataclass
class OutageResult:
    workload: str
    service: str  # several, comma-separated, for outages one after another
    outage_seconds: float
    down_seconds: float  # the outages plus the services' start-up
    outcome: str  # finished / error / crash / hang
    error: str | None
    metrics_sent: int
    metrics_stored: int
    params_missing: list[str]
    tags_missing: list[str]  # not stored, or not with the last value sent
    artifacts_missing: list[str]
    run_seconds: float

    @property
    def lost(self) -> int:
        return (max(self.metrics_sent - self.metrics_stored, 0) + len(self.params_missing)
                + len(self.tags_missing) + len(self.artifacts_missing))

    @property
    def verdict(self) -> str:
        if self.outcome == "error":
            named = SERVICE_NAMES.get(self.service, "?") in (self.error or "")
            return f"clear error naming {SERVICE_NAMES[self.service]}" if named else "error naming another service"
        return self.outcome

    def as_dict(self) -> dict:
        return {**asdict(self), "lost": self.lost, "verdict": self.verdict}


def autolog_arguments(root: Path) -> list[str]:
    """The autolog workload's arguments: the offline sample and an untrained bert-tiny-shaped
    backbone under ``root`` (an outage needs the training loop, not a model worth using)."""
    from dl_model_tracking.data import write_sample_dataset
    from dl_model_tracking.model import build_offline_backbone

    write_sample_dataset(root / "data")
    backbone = build_offline_backbone(root / "backbone", pretrain=False)
    return ["--backbone", str(backbone), "--data-dir", str(root / "data"), "--pace", "0.2"]


def run_through_outage(stack, workloads: dict[str, list[str]], services: list[str], seconds: float,
                       workdir: Path, env: dict[str, str] | None = None, pause: float = 1.0,
                       time_limit: float = 600) -> list[OutageResult]:
    """Start each workload (name: its extra arguments) in a child process of its own; once
    all log, take each of ``services`` down for ``seconds`` in turn, ``pause`` seconds apart;
    let them train ``pause`` seconds more, then stop them and count what reached the server.
    A child still running ``time_limit`` seconds after the start is killed: a hang."""
    from mlflow import MlflowClient

    client = MlflowClient(stack.tracking_uri)
    workdir.mkdir(parents=True, exist_ok=True)
    name = f"{'-'.join(services)}-{seconds}-{time.time_ns()}"
    until = workdir / f"{name}.stop"
    child_env = {**CLIENT_RETRY_DEFAULTS, **os.environ, "MLFLOW_TRACKING_URI": stack.tracking_uri,
                 "AWS_EC2_METADATA_DISABLED": "true", **(env or {})}
    started = time.monotonic()
    children = {}
    for workload, args in workloads.items():
        status = workdir / f"{workload}-{name}.json"
        experiment_id = client.create_experiment(f"outage-{workload}-{name}")
        with open(status.with_suffix(".log"), "wb") as log:
            children[workload] = (status, subprocess.Popen(
                [sys.executable, "-m", "benchmarks.training_workloads", workload,
                 "--experiment-id", experiment_id, "--status", str(status), "--until", str(until), *args],
                env=child_env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
    down, hung = float("nan"), set()
    try:
        for status, child in children.values():
            _wait_for_logging(child, status, started + time_limit)
        down = 0.0
        for service in services:
            time.sleep(pause)
            down += stack.outage(service, seconds)
        time.sleep(pause)
    finally:
        until.touch()
        for workload, (status, child) in children.items():
            try:
                child.wait(timeout=max(started + time_limit - time.monotonic(), 1))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
                hung.add(workload)
    return [_result(client, workload, status, "hang" if workload in hung else None, services, seconds,
                    down, time.monotonic() - started) for workload, (status, _) in children.items()]


def _result(client, workload: str, status: Path, outcome: str | None, services: list[str], seconds: float,
            down: float, run_seconds: float) -> OutageResult:
    report = json.loads(status.read_text()) if status.exists() else {}
    if "run_id" not in report:
        raise RuntimeError(f"the {workload} workload never started logging; its log: {status.with_suffix('.log')}")
    sent = report.get("sent", {"metrics": 0, "params": [], "tags": {}, "artifacts": []})
    stored = _stored_records(client, report["run_id"], workload)
    return OutageResult(
        workload=workload, service=",".join(services), outage_seconds=seconds, down_seconds=round(down, 1),
        outcome=outcome or report.get("outcome", "crash"), error=report.get("error"),
        metrics_sent=sent["metrics"], metrics_stored=stored["metrics"],
        params_missing=sorted(set(sent["params"]) - stored["params"]),
        tags_missing=sorted(k for k, v in sent["tags"].items() if stored["tags"].get(k) != v),
        artifacts_missing=sorted(set(sent["artifacts"]) - stored["artifacts"]),
        run_seconds=round(run_seconds, 1))


def _wait_for_logging(child: subprocess.Popen, status: Path, deadline: float) -> None:
    while time.monotonic() < deadline:
        if status.exists():
            return
        if child.poll() is not None:
            raise RuntimeError(f"the workload exited with code {child.returncode} before it logged; "
                               f"its log: {status.with_suffix('.log')}")
        time.sleep(0.2)
    raise RuntimeError(f"the workload did not start logging in time; its log: {status.with_suffix('.log')}")


def _stored_records(client, run_id: str, workload: str) -> dict:
    """What the server holds for the run: metric points of the per-step series, param keys,
    tags, artifact paths."""
    from .training_workloads import HAND_METRIC

    run = client.get_run(run_id)
    keys = [HAND_METRIC] if workload == "hand" else list(run.data.metrics)
    # Autolog logs several series; the longest is the one logged every step.
    points = max((len({m.step for m in client.get_metric_history(run_id, key)}) for key in keys), default=0)
    artifacts: set[str] = set()
    pending = [None]
    while pending:
        for info in client.list_artifacts(run_id, pending.pop()):
            if info.is_dir:
                pending.append(info.path)
            else:
                artifacts.add(info.path)
    # Autolog's model is a LoggedModel of the run, with files of its own (MLflow 3).
    for model in client.search_logged_models([run.info.experiment_id]):
        if model.source_run_id == run_id and client.list_logged_model_artifacts(model.model_id):
            artifacts.add("model")
    return {"metrics": points, "params": set(run.data.params), "tags": run.data.tags, "artifacts": artifacts}
