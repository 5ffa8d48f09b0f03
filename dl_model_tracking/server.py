"""Connecting to the tracking server, failing fast with a message that says what to do.

MLflow's own client retries a refused connection for minutes before it gives up; a
reader who forgot to start the stack deserves one clear line within seconds. The same
goes for a shared stack that refuses the sign-in or whose certificate is not trusted.

Sign-in and certificate come from MLflow's own variables (the environment, or a ``.env``
that load_settings reads): MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD, and
MLFLOW_TRACKING_SERVER_CERT_PATH (or REQUESTS_CA_BUNDLE) for the stack's CA.
"""

from __future__ import annotations

import base64
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request


from .settings import Settings, load_settings


class TrackingServerUnavailable(RuntimeError):
    """The tracking server cannot be reached or is not an MLflow server."""


class SignInRefused(TrackingServerUnavailable):
    """The server is there, but not for this client: no sign-in, a wrong one, or locked out."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects come back as errors: a shared stack's http:// URL redirecting to https://
    means the client would send its sign-in unencrypted first."""

    def redirect_request(self, *args, **kwargs):
        return None


def _open(request, context: ssl.SSLContext | None, timeout: float):
    opener = urllib.request.build_opener(_NoRedirect, urllib.request.HTTPSHandler(context=context))
    return opener.open(request, timeout=timeout)


def _ssl_context(tracking_uri: str) -> ssl.SSLContext | None:
    """The trust MLflow's client will use: MLFLOW_TRACKING_SERVER_CERT_PATH, else requests'."""
    if not tracking_uri.startswith("https:"):
        return None
    cafile = os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or os.environ.get("REQUESTS_CA_BUNDLE")
    return ssl.create_default_context(cafile=cafile)


def check_server(tracking_uri: str, timeout: float = 3.0) -> None:
    """Raise :class:`TrackingServerUnavailable` unless ``<tracking_uri>/health`` answers OK
    and, where the server asks for a sign-in, this client's is accepted."""
    parsed = urllib.parse.urlparse(tracking_uri)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise TrackingServerUnavailable(
            f"{tracking_uri!r} is not an http(s) URL of a tracking server; "
            "set MLFLOW_TRACKING_URI to e.g. http://localhost"
        )
    url = tracking_uri.rstrip("/") + "/health"
    hint = "Start the stack with `bash start_mlflow.sh`, or point MLFLOW_TRACKING_URI at a running server."
    context = _ssl_context(tracking_uri)
    try:
        with _open(url, context, timeout) as response:
            body = response.read(100).decode(errors="replace").strip()
    except urllib.error.HTTPError as error:
        location = error.headers.get("Location", "")
        if error.code in (301, 302, 307, 308) and location.startswith("https:"):
            raise TrackingServerUnavailable(
                f"{tracking_uri} redirects to HTTPS: set MLFLOW_TRACKING_URI to "
                f"{location.removesuffix('/health')} (over http:// the sign-in would cross the network unencrypted)"
            ) from None
        raise TrackingServerUnavailable(
            f"{url} answered HTTP {error.code} {error.reason}: the server behind {tracking_uri} "
            f"is not a healthy MLflow server (nginx up but MLflow still starting or down?). {hint}"
        ) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise TrackingServerUnavailable(
                f"{tracking_uri} presented a certificate this client does not trust ({reason.verify_message}): "
                "set MLFLOW_TRACKING_SERVER_CERT_PATH to the stack's CA file "
                "(start_mlflow.sh prints it; mlflow_docker_setup/secrets/tls/ca.crt on the stack's machine)"
            ) from None
        raise TrackingServerUnavailable(
            f"No MLflow tracking server at {tracking_uri} ({reason}). {hint}"
        ) from None
    if body != "OK":
        raise TrackingServerUnavailable(
            f"{url} answered {body!r} instead of 'OK': {tracking_uri} is not an MLflow server. {hint}"
        )
    check_sign_in(tracking_uri, context, timeout)


def check_sign_in(tracking_uri: str, context: ssl.SSLContext | None = None, timeout: float = 3.0) -> None:
    """One cheap authenticated call: MLflow's client would fail on a 401 too, but only at the
    first real call and with a page of text; a 429 it would retry for a minute."""
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    request = urllib.request.Request(tracking_uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1")
    if user:
        token = base64.b64encode(f"{user}:{os.environ.get('MLFLOW_TRACKING_PASSWORD', '')}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        _open(request, context, timeout).close()
    except urllib.error.HTTPError as error:
        if error.code == 401 and not user:
            raise SignInRefused(
                f"{tracking_uri} asks for a sign-in: set MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD (in the environment or in .env)") from None
        if error.code == 401:
            raise SignInRefused(
                f"{tracking_uri} refused the sign-in of user {user!r}: check MLFLOW_TRACKING_USERNAME "
                "and MLFLOW_TRACKING_PASSWORD (an admin can reset it: mlflow-users set-password)") from None
        if error.code == 429:
            raise SignInRefused(
                f"{tracking_uri} is slowing down failed sign-ins from this machine: wait a minute, "
                "then check MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD") from None
        raise TrackingServerUnavailable(
            f"{tracking_uri} answered HTTP {error.code} {error.reason} to a search: "
            "not a working MLflow tracking server") from None


# Retries that ride out a tracking server restarting for about half a minute: urllib3
# pauses 2, 4, 8, 16 and 32 s (about a minute in all) before the call fails. MLflow's own
# default (7 retries up to 120 s apart) waits about four minutes before saying anything.
# A missing artifact no longer needs this: the stack answers it with 404, never retried
# (mlflow_docker_setup/mlflow/s3_not_found).
CLIENT_RETRY_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "5", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "2"}


def check_tracking_server(settings: Settings | None = None) -> str:
    """Check the configured server (``MLFLOW_TRACKING_URI``, default http://localhost) and
    give MLflow's client retries sized for a restart; return the URI for
    ``mlflow.set_tracking_uri``."""
    settings = settings or load_settings()
    check_server(settings.tracking_uri)
    for name, value in CLIENT_RETRY_DEFAULTS.items():
        os.environ.setdefault(name, value)  # a value the user set wins
    return settings.tracking_uri

