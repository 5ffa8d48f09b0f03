"""Connecting to the tracking server, failing fast with a message that says what to do.

MLflow's own client retries a refused connection for minutes before it gives up; a
reader who forgot to start the stack deserves one clear line within seconds.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.parse
import urllib.request

import mlflow

from .settings import Settings, load_settings


class TrackingServerUnavailable(RuntimeError):
    """The tracking server cannot be reached or is not an MLflow server."""


def check_server(tracking_uri: str, timeout: float = 3.0) -> None:
    """Raise :class:`TrackingServerUnavailable` unless ``<tracking_uri>/health`` answers OK."""
    parsed = urllib.parse.urlparse(tracking_uri)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise TrackingServerUnavailable(
            f"{tracking_uri!r} is not an http(s) URL of a tracking server; "
            "set MLFLOW_TRACKING_URI to e.g. http://localhost"
        )
    url = tracking_uri.rstrip("/") + "/health"
    hint = "Start the stack with `bash start_mlflow.sh`, or point MLFLOW_TRACKING_URI at a running server."
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read(100).decode(errors="replace").strip()
    except urllib.error.HTTPError as error:
        raise TrackingServerUnavailable(
            f"{url} answered HTTP {error.code} {error.reason}: the server behind {tracking_uri} "
            f"is not a healthy MLflow server (nginx up but MLflow still starting or down?). {hint}"
        ) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise TrackingServerUnavailable(
            f"No MLflow tracking server at {tracking_uri} ({reason}). {hint}"
        ) from None
    if body != "OK":
        raise TrackingServerUnavailable(
            f"{url} answered {body!r} instead of 'OK': {tracking_uri} is not an MLflow server. {hint}"
        )


# Retries that ride out a tracking server restarting for about half a minute: urllib3
# pauses 2, 4, 8, 16 and 32 s (about a minute in all) before the call fails. MLflow's own
# default (7 retries up to 120 s apart) waits about four minutes before saying anything.
# A missing artifact no longer needs this: the stack answers it with 404, never retried
# (mlflow_docker_setup/mlflow/s3_not_found).
CLIENT_RETRY_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "5", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "2"}


def connect(experiment_name: str | None = None, settings: Settings | None = None) -> str:
    """Check the server, point MLflow at it and select the experiment; return its id."""
    settings = settings or load_settings()
    check_server(settings.tracking_uri)
    for name, value in CLIENT_RETRY_DEFAULTS.items():
        os.environ.setdefault(name, value)  # a value the user set wins
    mlflow.set_tracking_uri(settings.tracking_uri)
    return mlflow.set_experiment(experiment_name or settings.experiment_name).experiment_id
