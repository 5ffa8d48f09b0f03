"""The registry lifecycle with reasons: registration, aliases, archiving and stages.

MLflow keeps no alias history, so each change is written onto the version as an event
tag of its own (:func:`record_event`); :func:`history` reads them back.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
import warnings
from datetime import datetime, timezone
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from .lookups import ProvenanceError, lookup_alias, lookup_model, lookup_version
from .tags import EVENT_TAG, TAG, current_user


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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
    lookup_version(client, name, version)
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
    holder = lookup_alias(client, name, alias).version
    client.delete_registered_model_alias(name, alias)
    return record_event(name, holder, "alias_removed", reason=reason, by=by, client=client, alias=alias)


def archive(name: str, version: str | int, *, reason: str, by: str | None = None) -> dict:
    """Retire a version: drop its aliases and mark it archived, recording why."""
    reason = _require_reason(reason)
    client = MlflowClient()
    model_version = lookup_version(client, name, str(version))
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
    previous = lookup_version(client, name, str(version)).current_stage
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        client.transition_model_version_stage(name, str(version), stage)
    return record_event(name, str(version), "stage_changed", reason=reason, by=by, client=client,
                        stage=stage, previous_stage=previous)


def latest_version(name: str) -> str:
    """The newest version number of a registered model."""
    client = MlflowClient()
    lookup_model(client, name)
    versions = [int(v.version) for v in client.search_model_versions(f"name='{name}'")]
    if not versions:
        raise ProvenanceError(f"{name!r} has no versions yet")
    return str(max(versions))


def history(name: str, version: str | int) -> list[dict]:
    """The version's lifecycle events (registration, aliases, stages), oldest first."""
    return version_events(lookup_version(MlflowClient(), name, str(version)))


def version_events(model_version) -> list[dict]:
    return [json.loads(value) for key, value in sorted(model_version.tags.items())
            if key.startswith(EVENT_TAG)]
