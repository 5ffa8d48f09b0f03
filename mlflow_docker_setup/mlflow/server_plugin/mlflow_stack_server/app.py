"""The stack's MLflow server app: MLflow's own, plus what this stack checks on every request.

``mlflow server --app-name stack`` (loopback) or ``--app-name stack-shared`` (MLflow's
basic-auth app underneath) loads these factories through the ``mlflow.app`` entry point,
as MLflow loads its own basic-auth app. They add request hooks to MLflow's Flask app and a
middleware to the ASGI app uvicorn serves; nothing of MLflow's is edited.

- **Artifact locations are the server's to choose** (artifact_locations.py): creating an
  experiment elsewhere than the server's store is refused with 400.
- **Filters the database cannot run**: a runs search comparing more metrics, params and tags
  than MAX_JOINED_CLAUSES is refused with 400 (MySQL joins a table for each and gives up
  past 61, which MLflow answers 503: clients would retry it for minutes).
- **Stores opened at start**: a database outage is answered 503 by every worker at once.
- **Error details stay in the server's log**: a 500, 502, 503 or 504 answer's body (MLflow's
  carry SQL statements, bound values and tracebacks) is replaced by one generic JSON line
  with a reference that finds the details in the log.
- **Shared only**: passwords people choose must pass passwords.py's policy; the user list
  (every name and admin flag) is for admins; an admin can lift a sign-in lock
  (``POST /api/2.0/stack/signin/unlock``). The brake itself is the auth app's
  authorization function (signin.py).
"""

from __future__ import annotations

import json
import logging
import uuid

from flask import Flask, Response, request

from .artifact_locations import experiment_location_refusal, server_store

_logger = logging.getLogger("mlflow_stack_server")

MAX_JOINED_CLAUSES = 50
UNLOCK_ROUTE = "/api/2.0/stack/signin/unlock"
_GENERIC_STATUSES = {500: "INTERNAL_ERROR", 502: "INTERNAL_ERROR", 503: "TEMPORARILY_UNAVAILABLE",
                     504: "TEMPORARILY_UNAVAILABLE"}


def create_app():
    """MLflow's app on loopback, with the stack's checks."""
    from mlflow.environment_variables import _MLFLOW_SGI_NAME
    from mlflow.server import app as flask_app
    from mlflow.server.fastapi_app import create_fastapi_app

    _open_stores()
    _add_checks(flask_app, shared=False)
    # What `mlflow server` serves: under uvicorn, MLflow's FastAPI app around the Flask one.
    return _with_generic_errors(create_fastapi_app(flask_app) if _MLFLOW_SGI_NAME.get() == "uvicorn" else flask_app)


def create_shared_app():
    """MLflow's basic-auth app, with the stack's checks and the shared-only ones."""
    from mlflow.server import app as flask_app
    from mlflow.server.auth import create_app as create_auth_app

    served = create_auth_app(flask_app)  # its sign-in runs first: anonymous requests get 401
    _open_stores()
    _add_checks(flask_app, shared=True)
    flask_app.before_request(_shared_only_checks)
    flask_app.add_url_rule(UNLOCK_ROUTE, view_func=_unlock, methods=["POST"])
    return _with_generic_errors(served)


def _open_stores() -> None:
    """Each worker opens MLflow's database stores as it starts, while the database answers
    (start-up waits for it). MLflow opens them at a worker's first request instead, through
    a connect retry of about 100 s: a worker whose first request came during a database
    outage hung that long instead of answering 503 at once."""
    from mlflow.server.handlers import _get_model_registry_store, _get_tracking_store

    _get_tracking_store()
    _get_model_registry_store()


def _with_generic_errors(served):
    """The ASGI app with GenericServerErrors around it; the Flask app (gunicorn, waitress) as it is."""
    if not isinstance(served, Flask):
        served.add_middleware(GenericServerErrors)
    return served


def _error(status: int, message: str, code: str = "INVALID_PARAMETER_VALUE") -> Response:
    return Response(json.dumps({"error_code": code, "message": message}), status=status,
                    mimetype="application/json")


def _json_body() -> dict:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else {}


def _add_checks(flask_app: Flask, shared: bool) -> None:
    store = server_store()

    def check_request():
        path = request.path
        if path.endswith("/mlflow/experiments/create") and request.method == "POST":
            location = _json_body().get("artifact_location") or ""
            refusal = experiment_location_refusal(str(location), shared, store)
            if refusal:
                return _error(400, refusal)
        elif path.endswith("/mlflow/runs/search"):
            search = _json_body() if request.method == "POST" else request.args
            refusal = _filter_refusal(str(search.get("filter") or ""))
            if refusal:
                return _error(400, refusal)
        return None

    flask_app.before_request(check_request)


def _filter_refusal(filter_string: str) -> str | None:
    if not filter_string:
        return None
    from mlflow.exceptions import MlflowException
    from mlflow.utils.search_utils import SearchUtils

    try:
        clauses = SearchUtils.parse_search_filter(filter_string)
    except MlflowException:
        return None  # MLflow answers a malformed filter itself, with 400
    joined = sum(1 for clause in clauses if clause.get("type") in ("metric", "parameter", "tag"))
    if joined > MAX_JOINED_CLAUSES:
        return (f"filter refused: it compares {joined} metrics, params and tags; at most "
                f"{MAX_JOINED_CLAUSES} (the database joins a table for each)")
    return None


def _shared_only_checks():
    from mlflow.server.auth import sender_is_admin

    from .passwords import password_refusal

    path = request.path
    if path.endswith(("/mlflow/users/create", "/mlflow/users/update-password", "/mlflow/users/create-ui")):
        password = request.form.get("password") if request.form else _json_body().get("password")
        refusal = password_refusal(str(password or ""))
        if refusal:
            return _error(400, refusal)
    elif path.endswith("/mlflow/users/list") and not sender_is_admin():
        return _error(403, "Only admins may list the users", code="PERMISSION_DENIED")
    return None


def _unlock():
    from mlflow.server.auth import sender_is_admin

    from .signin import unlock

    if not sender_is_admin():
        return _error(403, "Only admins may lift a sign-in lock", code="PERMISSION_DENIED")
    body = _json_body()
    username, address = body.get("username"), body.get("address")
    if not (username or address):
        return _error(400, "name a username or an address to unlock")
    return Response(json.dumps({"unlocked": unlock(username, address)}), mimetype="application/json")


class GenericServerErrors:
    """ASGI middleware: a server error's body goes to the log, the client gets one line."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        held: dict = {}

        async def send_generic(message):
            if message["type"] == "http.response.start" and message["status"] in _GENERIC_STATUSES:
                held.update(status=message["status"], headers=message.get("headers", []), body=bytearray())
                return
            if not held or message["type"] != "http.response.body":
                return await send(message)
            if len(held["body"]) < 65536:
                held["body"] += message.get("body", b"")
            if message.get("more_body"):
                return
            reference = uuid.uuid4().hex[:12]
            _logger.error("%s %s answered %s (reference %s): %s", scope.get("method"), scope.get("path"),
                          held["status"], reference, bytes(held["body"][:65536]).decode(errors="replace"))
            body = json.dumps({
                "error_code": _GENERIC_STATUSES[held["status"]],
                "message": f"The tracking server could not answer this request (reference {reference}; "
                           "the server's log has the details)"}).encode()
            kept = [(name, value) for name, value in held["headers"] if name.lower() == b"retry-after"]
            await send({"type": "http.response.start", "status": held["status"],
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode()), *kept]})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, send_generic)
