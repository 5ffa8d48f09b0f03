"""Connecting to the tracking server, failing fast with a message that says what to do.

MLflow's own client retries a refused connection for minutes before it gives up; a
reader who forgot to start the stack deserves one clear line within seconds. The same
goes for a shared stack that refuses the sign-in or whose certificate is not trusted,
and for a service of the stack that goes away during a run and stays away longer than
the client's retries (explain_outages names it).

Sign-in and certificate come from MLflow's own variables (the environment, or a ``.env``
that load_settings reads): MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD, and
MLFLOW_TRACKING_SERVER_CERT_PATH (or REQUESTS_CA_BUNDLE) for the stack's CA.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
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


SEARCH_ONE_EXPERIMENT = "/api/2.0/mlflow/experiments/search?max_results=1"


def _api_request(tracking_uri: str, path: str, body: dict | None = None) -> urllib.request.Request:
    """A request to the server's API (a POST of ``body`` as JSON when given), with this
    client's sign-in when it has one."""
    request = urllib.request.Request(tracking_uri.rstrip("/") + path,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={} if body is None else {"Content-Type": "application/json"})
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if user:
        token = base64.b64encode(f"{user}:{os.environ.get('MLFLOW_TRACKING_PASSWORD', '')}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    return request


def check_sign_in(tracking_uri: str, context: ssl.SSLContext | None = None, timeout: float = 3.0) -> None:
    """One cheap authenticated call: MLflow's client would fail on a 401 too, but only at the
    first real call and with a page of text; a 429 it would retry for two minutes."""
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    try:
        _open(_api_request(tracking_uri, SEARCH_ONE_EXPERIMENT), context, timeout).close()
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


# Retries that ride out a service of the stack being away for half a minute plus its
# start-up (the MLflow server takes 40-120 s to start again on a busy 2-core machine):
# urllib3 retries at once, then pauses 2, 4, 8, 16, 32 and 64 s (plus up to 1 s of MLflow's
# jitter each), so a call fails about 126-133 s after its first try; a short outage holds a
# step only until the next try. MLflow's own default (7 retries, factor 2, up to 120 s
# apart) waits about four minutes before saying anything. A missing artifact does not wait
# at all: the stack answers it with 404, never retried (mlflow_docker_setup/mlflow/server_plugin).
CLIENT_RETRY_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "7", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


def check_tracking_server(settings: Settings | None = None) -> str:
    """Check the configured server (``MLFLOW_TRACKING_URI``, default http://localhost) and
    give MLflow's client retries sized for a restart; return the URI for
    ``mlflow.set_tracking_uri``."""
    settings = settings or load_settings()
    check_server(settings.tracking_uri)
    for name, value in CLIENT_RETRY_DEFAULTS.items():
        os.environ.setdefault(name, value)  # a value the user set wins
    return settings.tracking_uri


# -- naming the part of the stack that is down ------------------------------------------------
class ServiceDown(TrackingServerUnavailable):
    """A tracking call failed after all its retries; the message names the missing service."""


# A call that touches only the database, one that searches runs (the only reads a read
# replica answers: mlflow_stack_server/replica_reads.py), and one that touches only the
# artifact store.
DATABASE_PROBE = SEARCH_ONE_EXPERIMENT
SEARCH_PROBE = ("/api/2.0/mlflow/runs/search", {"experiment_ids": ["0"], "max_results": 1})
ARTIFACT_STORE_PROBE = "/api/2.0/mlflow-artifacts/artifacts?path=outage-probe"


def _probe(tracking_uri: str, path: str, timeout: float, body: dict | None = None) -> str | None:
    """None if ``path`` answers; else why not: "HTTP <code> <first words>" or the socket error."""
    try:
        _open(_api_request(tracking_uri, path, body), _ssl_context(tracking_uri), timeout).close()
        return None
    except urllib.error.HTTPError as error:
        if error.code < 500:  # the service answered; what it said is not an outage
            return None
        body = error.read(1000).decode(errors="replace")
        try:  # MLflow's errors are JSON with a message; nginx's are HTML pages
            body = json.loads(body)["message"]
        except (ValueError, KeyError, TypeError):
            body = error.reason
        return f"HTTP {error.code}: {str(body).splitlines()[0][:150]}"
    except (urllib.error.URLError, OSError) as error:
        return str(getattr(error, "reason", error))


def missing_service(tracking_uri: str, timeout: float = 10.0) -> str | None:
    """One line naming the service of the stack that does not answer now, or None if all do.

    Asked in the order a request travels: nginx (the tracking URI), the MLflow server behind
    it, its database (an experiments search), the read replica if there is one (a runs
    search), its artifact store (a listing through the server).
    """
    why = _probe(tracking_uri, "/health", timeout)
    # Refused: nobody listens. A timeout or a 5xx: nginx took the call, its upstream did not answer.
    if why is not None and not why.startswith("HTTP ") and "timed out" not in why:
        return f"nothing answers at {tracking_uri} ({why}): nginx, the stack's front door, is down"
    if why is not None:
        return f"nginx at {tracking_uri} answers, but the MLflow server behind it does not ({why})"
    why = _probe(tracking_uri, DATABASE_PROBE, timeout)
    if why is not None:
        return f"the MLflow server at {tracking_uri} cannot reach its database, MySQL ({why})"
    path, body = SEARCH_PROBE
    why = _probe(tracking_uri, path, timeout, body)
    if why is not None:
        return (f"the MLflow server at {tracking_uri} cannot search runs, though its database answers "
                f"({why}): with MLFLOW_READ_REPLICA=1, the read replica is down")
    why = _probe(tracking_uri, ARTIFACT_STORE_PROBE, timeout)
    if why is not None:
        return f"the MLflow server at {tracking_uri} cannot reach its artifact store, S3/MinIO ({why})"
    return None


def _is_tracking_failure(error: BaseException) -> bool:
    """A call that got no answer after its retries, as opposed to a refused request."""
    import requests
    from mlflow.exceptions import MlflowException

    if isinstance(error, requests.RequestException):
        return True
    return isinstance(error, MlflowException) and (
        "API request to" in error.message or error.error_code == "TEMPORARILY_UNAVAILABLE")


class _AutologFailures(logging.Handler):
    """Autologging swallows failed calls as warnings and trains on; this notes the first
    one, and which service was missing then."""

    def __init__(self, tracking_uri: str) -> None:
        super().__init__(logging.WARNING)
        self.tracking_uri = tracking_uri
        self.count = 0
        self.missing: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        if any(isinstance(arg, BaseException) and _is_tracking_failure(arg) for arg in args):
            self.count += 1
            if self.count == 1:
                self.missing = missing_service(self.tracking_uri)


AUTOLOG_LOGGER = "mlflow.utils.autologging_utils"  # and its .safety child


@contextlib.contextmanager
def explain_outages(tracking_uri: str | None = None):
    """Inside a run: a tracking call that failed after all its retries (about two minutes
    with CLIENT_RETRY_DEFAULTS) becomes one :class:`ServiceDown` line naming the service that does
    not answer, the run is marked FAILED where the server still answers, and autologging's
    swallowed failures end the run the same way instead of passing as warnings.

        with mlflow.start_run() as run, explain_outages():
            ...
    """
    import mlflow

    tracking_uri = tracking_uri or mlflow.get_tracking_uri()
    autolog = _AutologFailures(tracking_uri)
    logging.getLogger(AUTOLOG_LOGGER).addHandler(autolog)
    try:
        yield
    except Exception as error:
        if not _is_tracking_failure(error):
            raise
        missing = missing_service(tracking_uri)
        failure = error
    else:
        if not autolog.count:
            return
        missing = autolog.missing or missing_service(tracking_uri)
        failure = None
    finally:
        logging.getLogger(AUTOLOG_LOGGER).removeHandler(autolog)
    what = (f"autologging failed {autolog.count} time(s), so this run may miss records"
            if failure is None else "a tracking call failed after all its retries")
    why = missing or f"the stack at {tracking_uri} did not answer through all retries, and answers again now"
    _end_run_without_retries()
    raise ServiceDown(f"{what}: {why}. Bring that service back (bash start_mlflow.sh starts "
                      "what is missing) and run again.") from failure


def _end_run_without_retries() -> None:
    """Mark the active run FAILED at once if the server answers; two minutes of retries here
    would only delay the error (the run then stays RUNNING on the server)."""
    import mlflow

    saved = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    try:
        mlflow.end_run("FAILED")  # drops the run from the active stack before calling the server
    except Exception:  # the server is down: the run stays RUNNING there
        pass
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
        else:
            os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = saved
