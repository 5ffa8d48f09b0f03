"""Provenance of a registered model: recorded while training, answered from the server alone.

The chapter frames tracking with the Open Provenance Model (artifacts, processes, agents
and the edges *used*, *wasGeneratedBy*, *wasDerivedFrom*, *wasControlledBy*) and the
5W1H questions about a model. This module

- records at training time who trained, which code, data, backbone and environment
  (:func:`start_run`, :func:`record_training_provenance`);
- keeps the registry lifecycle with reasons: aliases (``champion`` / ``challenger``),
  archiving and the chapter's deprecated stages, each change written onto the version
  as an event tag, since MLflow keeps no alias history (:func:`promote` and friends);
- answers who, what, when, where, why and how for a version, and draws its OPM graph
  (:func:`model_provenance`, the ``provenance`` command).
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
import time
import uuid
import warnings
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from .settings import REPO_ROOT, load_settings, stack_env

TAG = "provenance."
EVENT_TAG = TAG + "event."
REQUIREMENTS_ARTIFACT = "environment/requirements.txt"
ENVIRONMENT_PACKAGES = ["torch", "lightning-flash", "pytorch-lightning", "transformers", "mlflow"]
SPLIT_CONTEXTS = {"train": "training", "val": "validation", "test": "testing"}


class ProvenanceError(LookupError):
    """The model, version or alias asked about does not exist; the message lists what does."""


def current_user() -> str:
    return os.environ.get("MLFLOW_TRACKING_USERNAME") or getpass.getuser()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# == recording at training time ===============================================================
@contextlib.contextmanager
def start_run(experiment_id: str | None = None, run_name: str | None = None, *, datamodule=None,
              backbone: str | os.PathLike | None = None, **start_run_kwargs):
    """``mlflow.start_run`` that first records the run's provenance (see the module doc).

    Models logged inside it, by autologging too, get explicit pinned requirements
    instead of MLflow's slow inference (:func:`~dl_model_tracking.tracking.pinned_model_requirements`).
    """
    from .tracking import pinned_model_requirements

    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, **start_run_kwargs) as run, \
            pinned_model_requirements():
        record_training_provenance(datamodule=datamodule, backbone=backbone)
        yield run


def record_training_provenance(datamodule=None, backbone: str | os.PathLike | None = None) -> dict[str, str]:
    """Tag the active run with who, code, environment and backbone; log its datasets."""
    source = running_source()
    tags = {TAG + "trained_by": current_user(), TAG + "host": socket.gethostname(),
            TAG + "source": source}
    if source.endswith(".ipynb"):
        # MLflow would name the kernel launcher; the UI's "Source" should show the notebook.
        tags.update({"mlflow.source.name": source, "mlflow.source.type": "NOTEBOOK"})
    tags.update(git_tags())
    tags.update({f"{TAG}env.{name}": version for name, version in environment_versions().items()})
    if backbone is not None:
        tags.update(backbone_tags(backbone))
    mlflow.set_tags(tags)
    mlflow.log_text(installed_requirements(), REQUIREMENTS_ARTIFACT)
    files = getattr(datamodule, "imdb_files", None)
    if files is not None:
        log_datasets(files)
    return tags


def running_source() -> str:
    """The notebook or script being run: Jupyter and VS Code name the notebook."""
    if os.environ.get("JPY_SESSION_NAME"):
        return os.environ["JPY_SESSION_NAME"]
    with contextlib.suppress(Exception):
        shell = sys.modules["IPython"].get_ipython()
        if shell is not None and shell.user_ns.get("__vsc_ipynb_file__"):
            return shell.user_ns["__vsc_ipynb_file__"]
    return os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else "<interactive>"


def git_tags(repo: Path = REPO_ROOT) -> dict[str, str]:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {TAG + "git.commit": "unknown (not a git checkout)"}
    return {"mlflow.source.git.commit": commit, TAG + "git.commit": commit,
            TAG + "git.dirty": str(dirty).lower(), TAG + "git.repo": str(repo)}


def environment_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ENVIRONMENT_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def installed_requirements() -> str:
    """``name==version`` of every installed distribution, from the ``*.dist-info`` names.

    Reading each package's METADATA instead took 0.7 s per run for ~250 packages; the
    folder names carry the same (normalised) name and version.
    """
    pins = set()
    for entry in sys.path:
        folder = Path(entry or ".")
        if folder.is_dir():
            for info in folder.glob("*.dist-info"):
                name, _, version = info.name.removesuffix(".dist-info").partition("-")
                pins.add(f"{name.replace('_', '-')}=={version}")
    return "\n".join(sorted(pins, key=str.lower)) + "\n"


def _hash_file(digest, path: Path) -> None:
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)


def sha256_file(path: Path) -> str:
    """What `sha256sum` prints for the file."""
    digest = hashlib.sha256()
    _hash_file(digest, path)
    return digest.hexdigest()


def directory_digest(folder: Path) -> str:
    """SHA-256 over every file's relative name and contents, in a stable order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        _hash_file(digest, path)
    return digest.hexdigest()


def backbone_tags(backbone: str | os.PathLike) -> dict[str, str]:
    """Name or path of the backbone and a digest of its files (a hub name: its cached snapshot)."""
    tags = {TAG + "backbone": str(backbone)}
    folder = Path(backbone)
    if not folder.is_dir():
        with contextlib.suppress(Exception):
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(str(backbone), local_files_only=True))
    if folder.is_dir():
        tags[TAG + "backbone.sha256"] = directory_digest(folder)
        tags[TAG + "backbone.files"] = ",".join(sorted(str(p.relative_to(folder))
                                                       for p in folder.rglob("*") if p.is_file()))
    else:
        tags[TAG + "backbone.sha256"] = "unknown (files not in the local cache)"
    return tags


def log_datasets(files) -> None:
    """``mlflow.log_input`` for each split: source, digest, rows and label balance."""
    import pandas as pd

    from .data import TARGET_FIELD

    remote = str(files.source_url).startswith(("http://", "https://"))
    for split, path in files.as_dict().items():
        frame = pd.read_csv(path)
        source = files.source_url if remote else str(Path(path).resolve())
        dataset = mlflow.data.from_pandas(frame, source=source, name=f"imdb-{split}", targets=TARGET_FIELD)
        balance = frame[TARGET_FIELD].value_counts().to_dict()
        tags = {"rows": str(len(frame)), "file": Path(path).name,
                "file_sha256": sha256_file(Path(path)), "origin": str(files.source_url)}
        tags.update({f"label.{label}": str(count) for label, count in sorted(balance.items())})
        mlflow.log_input(dataset, context=SPLIT_CONTEXTS[split], tags=tags)


# == the registry lifecycle, with reasons =====================================================
def record_event(name: str, version: str, action: str, reason: str | None = None,
                 by: str | None = None, client: MlflowClient | None = None, **details: Any) -> dict:
    """Write one lifecycle event onto the model version as a tag of its own."""
    client = client or MlflowClient()
    event = {"action": action, "by": by or current_user(), "at": _now(), "reason": reason or "", **details}
    key = f"{EVENT_TAG}{int(time.time() * 1000):013d}.{uuid.uuid4().hex[:6]}"
    client.set_model_version_tag(name, str(version), key, json.dumps(event, sort_keys=True))
    return event


def record_registration(name: str, version: str, reason: str | None = None, by: str | None = None) -> None:
    client = MlflowClient()
    who = by or current_user()
    client.set_model_version_tag(name, str(version), TAG + "registered_by", who)
    record_event(name, version, "registered", reason=reason, by=who, client=client)


def register_model(model_uri: str, name: str, reason: str | None = None, by: str | None = None):
    """``mlflow.register_model`` that also records who registered it and why."""
    version = mlflow.register_model(model_uri, name)
    record_registration(name, version.version, reason=reason, by=by)
    return version


def _require_reason(reason: str) -> str:
    if not reason or not reason.strip():
        raise ValueError("state a reason: it is what answers 'why' for this model later")
    return reason.strip()


def promote(name: str, version: str | int, alias: str = "champion", *, reason: str, by: str | None = None) -> dict:
    """Point ``alias`` at this version, recording who, when, why and the previous holder."""
    reason = _require_reason(reason)
    client = MlflowClient()
    version = str(version)
    _get_version(client, name, version)
    previous = None
    with contextlib.suppress(MlflowException):
        previous = client.get_model_version_by_alias(name, alias).version
    client.set_registered_model_alias(name, alias, version)
    if previous and previous != version:
        record_event(name, previous, "alias_removed", reason=f"{alias} moved to version {version}: {reason}",
                     by=by, client=client, alias=alias, successor=version)
    return record_event(name, version, "alias_set", reason=reason, by=by, client=client,
                        alias=alias, previous_holder=previous)


def demote(name: str, alias: str, *, reason: str, by: str | None = None) -> dict:
    """Take ``alias`` away from the version holding it, recording why."""
    reason = _require_reason(reason)
    client = MlflowClient()
    holder = _version_by_alias(client, name, alias).version
    client.delete_registered_model_alias(name, alias)
    return record_event(name, holder, "alias_removed", reason=reason, by=by, client=client, alias=alias)


def archive(name: str, version: str | int, *, reason: str, by: str | None = None) -> dict:
    """Retire a version: drop its aliases and mark it archived, recording why."""
    reason = _require_reason(reason)
    client = MlflowClient()
    model_version = _get_version(client, name, str(version))
    for alias in model_version.aliases:
        client.delete_registered_model_alias(name, alias)
    client.set_model_version_tag(name, str(version), TAG + "archived", "true")
    return record_event(name, str(version), "archived", reason=reason, by=by, client=client,
                        aliases_removed=list(model_version.aliases))


STAGES = ("None", "Staging", "Production", "Archived")


def transition_stage(name: str, version: str | int, stage: str, *, reason: str, by: str | None = None) -> dict:
    """The chapter's stage transitions (None / Staging / Production / Archived).

    MLflow deprecated stages in 2.9 in favour of aliases and tags; they still work, so
    readers of the chapter can follow it, and each change is recorded like an alias.
    """
    reason = _require_reason(reason)
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {', '.join(STAGES)}, not {stage!r}")
    client = MlflowClient()
    previous = _get_version(client, name, str(version)).current_stage
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        client.transition_model_version_stage(name, str(version), stage)
    return record_event(name, str(version), "stage_changed", reason=reason, by=by, client=client,
                        stage=stage, previous_stage=previous)


def latest_version(name: str) -> str:
    """The newest version number of a registered model."""
    client = MlflowClient()
    _registered_model(client, name)
    versions = [int(v.version) for v in client.search_model_versions(f"name='{name}'")]
    if not versions:
        raise ProvenanceError(f"{name!r} has no versions yet")
    return str(max(versions))


def history(name: str, version: str | int) -> list[dict]:
    """The version's lifecycle events (registration, aliases, stages), oldest first."""
    return _events(_get_version(MlflowClient(), name, str(version)))


def _events(model_version) -> list[dict]:
    return [json.loads(value) for key, value in sorted(model_version.tags.items())
            if key.startswith(EVENT_TAG)]


# == answering the six questions ==============================================================
def _registered_model(client: MlflowClient, name: str):
    try:
        return client.get_registered_model(name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        names = sorted(m.name for m in client.search_registered_models())
        raise ProvenanceError(f"No registered model named {name!r}. Registered models: "
                              f"{', '.join(names) or '(none)'}") from None


def _get_version(client: MlflowClient, name: str, version: str):
    _registered_model(client, name)
    try:
        return client.get_model_version(name, version)
    except MlflowException as error:
        if error.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
        raise ProvenanceError(f"{name!r} has no version {version}. Versions: "
                              f"{', '.join(map(str, versions)) or '(none)'}") from None


def _version_by_alias(client: MlflowClient, name: str, alias: str):
    model = _registered_model(client, name)
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as error:
        if error.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        raise ProvenanceError(f"{name!r} has no alias {alias!r}. Aliases: "
                              f"{', '.join(sorted(model.aliases)) or '(none)'}") from None


def _ts(millis: int | None) -> str | None:
    if not millis:
        return None
    return datetime.fromtimestamp(millis / 1000, tz=timezone.utc).isoformat(timespec="seconds")


def _model_files(artifact_uri: str) -> tuple[int, dict]:
    """Total size of the model's files, and its MLmodel (flavors, signature)."""
    import yaml

    size = 0
    pending = [""]
    while pending:
        prefix = pending.pop()
        uri = f"{artifact_uri}/{prefix}" if prefix else artifact_uri
        for entry in mlflow.artifacts.list_artifacts(artifact_uri=uri):
            if entry.is_dir:
                pending.append(f"{prefix}/{entry.path.rsplit('/', 1)[-1]}".lstrip("/"))
            else:
                size += entry.file_size or 0
    mlmodel = yaml.safe_load(mlflow.artifacts.load_text(f"{artifact_uri}/MLmodel"))
    return size, mlmodel


def model_provenance(name: str, version: str | int | None = None, alias: str | None = None,
                     tracking_uri: str | None = None) -> dict:
    """Who, what, when, where, why and how of one registered model version, from the server."""
    from .server import check_server

    settings = load_settings()  # also reads .env: the sign-in and CA variables of a shared stack
    tracking_uri = tracking_uri or settings.tracking_uri
    check_server(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    if (version is None) == (alias is None):
        raise ValueError("give exactly one of version or alias")
    model_version = (_version_by_alias(client, name, alias) if alias
                     else _get_version(client, name, str(version)))
    registered = client.get_registered_model(name)
    events = _events(model_version)

    run, run_state = None, "no run recorded"
    if model_version.run_id:
        try:
            run = client.get_run(model_version.run_id)
            run_state = "deleted" if run.info.lifecycle_stage == "deleted" else "active"
        except MlflowException:
            run_state = "no longer exists (deleted and garbage-collected)"
    tags = run.data.tags if run else {}

    artifact_uri, logged_model_id, size, mlmodel = model_version.source, None, None, {}
    if model_version.source.startswith("models:/m-"):
        logged_model_id = model_version.source.removeprefix("models:/")
        with contextlib.suppress(MlflowException):
            artifact_uri = client.get_logged_model(logged_model_id).artifact_location
    with contextlib.suppress(MlflowException, OSError):
        size, mlmodel = _model_files(artifact_uri)

    datasets = []
    if run is not None and run.inputs:
        for entry in run.inputs.dataset_inputs:
            dataset_tags = {t.key: t.value for t in entry.tags}
            datasets.append({
                "name": entry.dataset.name, "context": dataset_tags.pop("mlflow.data.context", None),
                "digest": entry.dataset.digest, "source": json.loads(entry.dataset.source),
                "source_type": entry.dataset.source_type, **dataset_tags,
            })

    promotions = [e for e in events if e["action"] in ("alias_set", "alias_removed", "stage_changed", "archived")]
    registered_event = next((e for e in events if e["action"] == "registered"), None)
    aliases = list(model_version.aliases)
    bucket = os.environ.get("MLFLOW_BUCKET", stack_env().get("MLFLOW_BUCKET", "mlflow"))

    report = {
        "model": {"name": name, "version": str(model_version.version), "aliases": aliases,
                  "stage": model_version.current_stage},
        "who": {
            "trained_by": tags.get(TAG + "trained_by") or tags.get("mlflow.user"),
            "run_user": tags.get("mlflow.user"),
            "registered_by": model_version.tags.get(TAG + "registered_by") or model_version.user_id,
            "promoted_by": [{"by": e["by"], "action": e["action"], "alias": e.get("alias"),
                             "stage": e.get("stage"), "at": e["at"]} for e in promotions],
        },
        "what": {
            "name": name, "version": str(model_version.version),
            "model_uri": f"models:/{name}/{model_version.version}", "source": model_version.source,
            "logged_model_id": logged_model_id,
            "flavors": sorted(mlmodel.get("flavors", {})),
            "pytorch_version": mlmodel.get("flavors", {}).get("pytorch", {}).get("pytorch_version"),
            "size_bytes": size,
            "signature": mlmodel.get("signature"),
            "status": model_version.status,
        },
        "when": {
            "run_started": _ts(run.info.start_time) if run else None,
            "run_ended": _ts(run.info.end_time) if run else None,
            "registered": _ts(model_version.creation_timestamp),
            "events": [{"at": e["at"], "action": e["action"], "alias": e.get("alias"),
                        "stage": e.get("stage")} for e in events],
        },
        "where": {
            "tracking_server": tracking_uri,
            "code_commit": tags.get(TAG + "git.commit") or tags.get("mlflow.source.git.commit"),
            "code_dirty": tags.get(TAG + "git.dirty"),
            "code_source": tags.get(TAG + "source") or tags.get("mlflow.source.name"),
            "host": tags.get(TAG + "host"),
            "data": datasets,
            "backbone": tags.get(TAG + "backbone"),
            "backbone_sha256": tags.get(TAG + "backbone.sha256"),
            "artifact_uri": artifact_uri,
            "artifact_store": _bucket_location(artifact_uri, bucket),
        },
        "why": {
            "model_description": registered.description or None,
            "version_description": model_version.description or None,
            "reasons": [{"at": e["at"], "action": e["action"], "reason": e["reason"], "by": e["by"],
                         "alias": e.get("alias"), "stage": e.get("stage"),
                         "previous_holder": e.get("previous_holder")} for e in events if e.get("reason")],
        },
        "how": {
            "run_id": model_version.run_id,
            "run_name": run.info.run_name if run else None,
            "run_status": run.info.status if run else None,
            "run_state": run_state,
            "experiment_id": run.info.experiment_id if run else None,
            "parent_run_id": tags.get("mlflow.parentRunId"),
            "params": dict(sorted(run.data.params.items())) if run else {},
            "metrics": dict(sorted(run.data.metrics.items())) if run else {},
            "environment": {key.removeprefix(TAG + "env."): value for key, value in sorted(tags.items())
                            if key.startswith(TAG + "env.")},
            "requirements_artifact": f"runs:/{model_version.run_id}/{REQUIREMENTS_ARTIFACT}" if run else None,
        },
    }
    return report


def _bucket_location(artifact_uri: str, bucket: str) -> str | None:
    """mlflow-artifacts:/<path> is stored under the server's --artifacts-destination."""
    if artifact_uri.startswith("mlflow-artifacts:/"):
        return f"s3://{bucket}/{artifact_uri.removeprefix('mlflow-artifacts:/').lstrip('/')}"
    return None


# == the OPM graph ===========================================================================
def opm_graph(report: dict) -> dict:
    """Artifacts, processes and agents of this version, and the causal edges between them."""
    nodes, edges = [], []

    def node(node_id: str, kind: str, label: str) -> str:
        nodes.append({"id": node_id, "kind": kind, "label": label})
        return node_id

    def edge(source: str, relation: str, target: str) -> None:
        edges.append({"from": source, "relation": relation, "to": target})

    how, where, who, what = report["how"], report["where"], report["who"], report["what"]
    version_label = f"{what['name']} v{what['version']}"
    model_version = node("artifact:model_version", "artifact", version_label)
    if how["run_id"]:
        training = node("process:training_run", "process",
                        f"training run {how['run_name'] or ''} ({how['run_state']})".strip())
        if who["trained_by"]:
            edge(training, "wasControlledBy", node(f"agent:{who['trained_by']}", "agent", who["trained_by"]))
        for dataset in where["data"]:
            data_node = node(f"artifact:data:{dataset['name']}", "artifact",
                             f"{dataset['name']} ({dataset.get('rows', '?')} rows, {dataset['digest']})")
            edge(training, "used", data_node)
        if where["backbone"]:
            edge(training, "used", node("artifact:backbone", "artifact",
                                        f"backbone {Path(where['backbone']).name}"))
        if where["code_commit"]:
            edge(training, "used", node("artifact:code", "artifact", f"code {where['code_commit'][:10]}"))
        if how["environment"]:
            edge(training, "used", node("artifact:environment", "artifact",
                                        "environment " + ", ".join(f"{k} {v}" for k, v in how["environment"].items()
                                                                   if k in ("python", "torch", "mlflow"))))
        logged = node("artifact:logged_model", "artifact", f"logged model {what['logged_model_id'] or what['source']}")
        edge(logged, "wasGeneratedBy", training)
        registration = node("process:registration", "process", "registration")
        edge(registration, "used", logged)
        edge(model_version, "wasGeneratedBy", registration)
        edge(model_version, "wasDerivedFrom", logged)
        if who["registered_by"]:
            agent = f"agent:{who['registered_by']}"
            if agent not in {n["id"] for n in nodes}:
                node(agent, "agent", who["registered_by"])
            edge(registration, "wasControlledBy", agent)
    for index, event in enumerate(who["promoted_by"]):
        target = event.get("alias") or event.get("stage") or "archive"
        process = node(f"process:lifecycle:{index}", "process", f"{event['action']} {target} ({event['at'][:10]})")
        edge(process, "used", model_version)
        agent = f"agent:{event['by']}"
        if agent not in {n["id"] for n in nodes}:
            node(agent, "agent", event["by"])
        edge(process, "wasControlledBy", agent)
    return {"model": version_label, "nodes": nodes, "edges": edges}


def render_graph_png(graph: dict, path: str | Path) -> Path:
    """Draw the OPM graph: artifacts as ellipses, processes as boxes, agents as octagon-ish."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = {"agent": 0, "input": 1, "process": 2, "output": 3}

    def column(n: dict) -> int:
        if n["kind"] == "agent":
            return columns["agent"]
        if n["kind"] == "process":
            return columns["process"]
        generated = any(e["from"] == n["id"] and e["relation"] in ("wasGeneratedBy", "wasDerivedFrom")
                        for e in graph["edges"])
        return columns["output"] if generated or n["id"] == "artifact:model_version" else columns["input"]

    by_column: dict[int, list[dict]] = {}
    for n in graph["nodes"]:
        by_column.setdefault(column(n), []).append(n)
    positions = {}
    for col, members in by_column.items():
        for row, n in enumerate(members):
            positions[n["id"]] = (col * 4.2, -(row - (len(members) - 1) / 2) * 1.6)
    height = max(len(m) for m in by_column.values()) * 1.6 + 1.5
    figure, axes = plt.subplots(figsize=(17, max(4.5, height)))
    styles = {"artifact": dict(boxstyle="round,pad=0.5,rounding_size=0.8", fc="#fff4d6", ec="#b8860b"),
              "process": dict(boxstyle="square,pad=0.5", fc="#dbe9ff", ec="#1f4e9c"),
              "agent": dict(boxstyle="sawtooth,pad=0.5", fc="#e6f5e6", ec="#2e7d32")}
    for e in graph["edges"]:
        (x1, y1), (x2, y2) = positions[e["from"]], positions[e["to"]]
        axes.annotate("", xy=(x2, y2), xytext=(x1, y1),
                      arrowprops=dict(arrowstyle="-|>", color="#555", shrinkA=38, shrinkB=38, lw=1.2))
        axes.text((x1 + x2) / 2, (y1 + y2) / 2, e["relation"], fontsize=7, color="#444", ha="center",
                  bbox=dict(fc="white", ec="none", alpha=0.8, pad=0.5))
    for n in graph["nodes"]:
        x, y = positions[n["id"]]
        label = n["label"] if len(n["label"]) <= 44 else n["label"][:41] + "..."
        axes.text(x, y, label, ha="center", va="center", fontsize=8, bbox=styles[n["kind"]])
    axes.set_xlim(-2.5, 3 * 4.2 + 2.5)
    axes.set_ylim(-height / 2, height / 2)
    axes.axis("off")
    axes.set_title(f"Open Provenance Model graph of {graph['model']}  "
                   "(ellipses: artifacts, boxes: processes, jagged: agents)", fontsize=11)
    path = Path(path)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path


# == text =====================================================================================
def render_text(report: dict) -> str:
    m, who, what, when, where, why, how = (report[k] for k in ("model", "who", "what", "when", "where", "why", "how"))
    lines = [f"Provenance of {m['name']} version {m['version']}"
             + (f" (aliases: {', '.join(m['aliases'])})" if m["aliases"] else "")
             + (f" [stage: {m['stage']}]" if m["stage"] and m["stage"] != "None" else "")]

    def section(title: str, rows: list[tuple[str, Any]]) -> None:
        lines.append("")
        lines.append(title)
        for key, value in rows:
            if value not in (None, "", [], {}):
                lines.append(f"  {key:<16} {value}")

    section("WHO", [("trained by", who["trained_by"]), ("registered by", who["registered_by"])]
            + [("promoted by", f"{p['by']} ({p['action']} {p.get('alias') or p.get('stage') or ''}, {p['at']})")
               for p in who["promoted_by"]])
    section("WHAT", [("model URI", what["model_uri"]), ("source", what["source"]),
                     ("flavors", ", ".join(what["flavors"])), ("size", _size(what["size_bytes"])),
                     ("signature", json.dumps(what["signature"]) if what["signature"] else "none recorded"),
                     ("status", what["status"])])
    section("WHEN", [("run started", when["run_started"]), ("run ended", when["run_ended"]),
                     ("registered", when["registered"])]
            + [(e["action"], f"{e['at']} {e.get('alias') or e.get('stage') or ''}".strip())
               for e in when["events"] if e["action"] != "registered"])
    data_rows = [(f"data {d['context'] or d['name']}",
                  f"{d['name']} {d.get('rows', '?')} rows, digest {d['digest']}, sha256 "
                  f"{d.get('file_sha256', '?')[:12]}, labels "
                  + ", ".join(f"{k[6:]}={v}" for k, v in d.items() if k.startswith("label."))
                  + f", source {next(iter(d['source'].values()), '?')}") for d in where["data"]]
    section("WHERE", [("code commit", f"{where['code_commit']}" + (" (uncommitted changes)" if where["code_dirty"] == "true" else "")
                       if where["code_commit"] else None),
                      ("code source", where["code_source"]), ("host", where["host"])]
            + data_rows
            + [("backbone", where["backbone"]), ("backbone sha256", where["backbone_sha256"]),
               ("artifacts", where["artifact_uri"]), ("bucket", where["artifact_store"]),
               ("tracking server", where["tracking_server"])])
    section("WHY", [("model", why["model_description"]), ("version", why["version_description"])]
            + [(f"{r['action']}", f"{r['reason']} ({r['by']}, {r['at']}"
                + (f", replaced version {r['previous_holder']}" if r.get("previous_holder") else "") + ")")
               for r in why["reasons"]])
    section("HOW", [("run", f"{how['run_name']} {how['run_id']} ({how['run_status']}, {how['run_state']})"
                     if how["run_id"] else how["run_state"]),
                    ("parent run", how["parent_run_id"]),
                    ("parameters", ", ".join(f"{k}={v}" for k, v in how["params"].items())),
                    ("metrics", ", ".join(f"{k}={v:.4g}" for k, v in how["metrics"].items())),
                    ("environment", ", ".join(f"{k} {v}" for k, v in how["environment"].items())),
                    ("requirements", how["requirements_artifact"])])
    return "\n".join(lines)


def _size(size: int | None) -> str | None:
    if size is None:
        return None
    return f"{size / 1e6:.2f} MB ({size} bytes)"


# == the command ==============================================================================
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="provenance",
        description="Who, what, when, where, why and how of a registered model version, from the tracking server.")
    parser.add_argument("name", help="registered model name, e.g. nlp_dl_model")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--version", help="model version number")
    which.add_argument("--alias", help="model alias, e.g. champion")
    parser.add_argument("--tracking-uri", help="tracking server (default: MLFLOW_TRACKING_URI or http://localhost)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="the report as JSON")
    output.add_argument("--graph", choices=["json", "png"], help="the OPM graph instead of the report")
    parser.add_argument("--output", "-o", help="file for --graph png (default: <name>-v<version>-provenance.png)")
    args = parser.parse_args(argv)

    from .server import TrackingServerUnavailable

    try:
        report = model_provenance(args.name, version=args.version, alias=args.alias, tracking_uri=args.tracking_uri)
    except (ProvenanceError, TrackingServerUnavailable) as error:
        print(f"provenance: {error}", file=sys.stderr)
        return 2
    except MlflowException as error:  # e.g. no permission on a shared stack (PERMISSION_DENIED)
        print(f"provenance: {error.error_code}: {error.message.splitlines()[0]}", file=sys.stderr)
        return 2
    if args.graph == "json":
        print(json.dumps(opm_graph(report), indent=2))
    elif args.graph == "png":
        out = args.output or f"{args.name}-v{report['model']['version']}-provenance.png"
        print(render_graph_png(opm_graph(report), out))
    elif args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(render_text(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
