"""The 5W1H report of a model version (who, what, when, where, why, how), from the server alone."""

from __future__ import annotations

import contextlib
import json
import os
from datetime import datetime, timezone
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlflow_stack.connection import check_server
from mlflow_stack.settings import load_settings, stack_env
from ..ui_links import model_version_url, run_url
from .lifecycle import version_events
from .lookups import lookup_alias, lookup_version
from .tags import REQUIREMENTS_ARTIFACT, TAG


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
    settings = load_settings()  # also reads .env: the sign-in and CA variables of a shared stack
    tracking_uri = tracking_uri or settings.tracking_uri
    check_server(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    if (version is None) == (alias is None):
        raise ValueError("give exactly one of version or alias")
    model_version = (lookup_alias(client, name, alias) if alias
                     else lookup_version(client, name, str(version)))
    registered = client.get_registered_model(name)
    events = version_events(model_version)

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
            "version_page": model_version_url(tracking_uri, name, model_version.version),
            "run_page": run_url(tracking_uri, run.info.experiment_id, run.info.run_id) if run else None,
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
               ("tracking server", where["tracking_server"]),
               ("version page", where["version_page"]), ("run page", where["run_page"])])
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
