"""The stack's MLflow server app: MLflow's own, plus what this stack checks on every request.

``mlflow server --app-name stack`` (loopback) or ``--app-name stack-shared`` (MLflow's
basic-auth app underneath) loads these factories through the ``mlflow.app`` entry point,
as MLflow loads its own basic-auth app. They add request hooks to MLflow's Flask app and a
middleware to the ASGI app uvicorn serves; nothing of MLflow's is edited.

- **Artifact locations are the server's to choose** (artifact_locations.py): creating an
  experiment elsewhere than the server's store is refused with 400.
- **Filters the database cannot run**: a runs search (REST or GraphQL's mlflowSearchRuns)
  comparing more metrics, params and tags than MAX_JOINED_CLAUSES is refused with 400 (MySQL joins a table for each and gives up
  past 61, which MLflow answers 503: clients would retry it for minutes).
- **Stores opened at start**: a database outage is answered 503 by every worker at once;
  the log names the tracking store that serves (tracking_store.py).
- **The start-up heap frozen**: the garbage collector's full collections no longer walk it.
- **A Content-Security-Policy on every answer** (content_policy.py).
- **The UI's defaults for a new browser** (ui_defaults.py): the model-training view, no
  assistant panel opening by itself, and UI telemetry off when the server's is.
- **Error details stay in the server's log** (error_answers.py): a server error's body, or a
  database error's text in any JSON answer (GraphQL's too), is replaced by one line with a
  reference that finds the details in the log.
- **Shared only**: passwords people choose must pass passwords.py's policy; the user list
  (every name and admin flag) is for admins; an admin can lift a sign-in lock
  (``POST /api/2.0/stack/signin/unlock``). The brake itself is the auth app's
  authorization function (signin.py).
"""

from __future__ import annotations

import json

from flask import Flask, Response, request

from .artifact_locations import experiment_location_refusal, server_store
from .content_policy import ContentSecurityPolicy
from .error_answers import ErrorDetailsToLog
from .ui_defaults import UiDefaults

MAX_JOINED_CLAUSES = 50
UNLOCK_ROUTE = "/api/2.0/stack/signin/unlock"


def create_app():
    """MLflow's app on loopback, with the stack's checks."""
    from mlflow.environment_variables import _MLFLOW_SGI_NAME
    from mlflow.server import app as flask_app
    from mlflow.server.fastapi_app import create_fastapi_app

    _open_stores()
    _add_checks(flask_app, shared=False)
    # What `mlflow server` serves: under uvicorn, MLflow's FastAPI app around the Flask one.
    served = _with_stack_middleware(create_fastapi_app(flask_app) if _MLFLOW_SGI_NAME.get() == "uvicorn" else flask_app)
    _freeze_start_up_heap()
    return served


def create_shared_app():
    """MLflow's basic-auth app, with the stack's checks and the shared-only ones."""
    from mlflow.server import app as flask_app
    from mlflow.server.auth import create_app as create_auth_app

    served = create_auth_app(flask_app)  # its sign-in runs first: anonymous requests get 401
    _open_stores()
    _add_checks(flask_app, shared=True)
    flask_app.before_request(_shared_only_checks)
    flask_app.add_url_rule(UNLOCK_ROUTE, view_func=_unlock, methods=["POST"])
    served = _with_stack_middleware(served)
    _freeze_start_up_heap()
    return served


def _open_stores() -> None:
    """Each worker opens MLflow's database stores as it starts, while the database answers
    (start-up waits for it). MLflow opens them at a worker's first request instead, through
    a connect retry of about 100 s: a worker whose first request came during a database
    outage hung that long instead of answering 503 at once."""
    import sys

    from mlflow.server.handlers import _get_model_registry_store, _get_tracking_store

    store = _get_tracking_store()
    _get_model_registry_store()
    # One line per worker in the server's log: which tracking store serves (tracking_store.py).
    print(f"mlflow-stack-server: tracking store {type(store).__name__}", file=sys.stderr, flush=True)


def _freeze_start_up_heap() -> None:
    """What a worker built to start (MLflow's modules, the app, the stores) lives as long as
    the worker, so it is moved out of the garbage collector's reach (gc.freeze). Its full
    collections, which a request that builds many objects (a search returning 100 runs)
    sets off every few requests, then no longer walk MLflow's whole heap: that walk made
    one search in five about 150 ms slower (docs/performance.md)."""
    import gc

    gc.collect()  # what start-up left as garbage goes first; frozen, it would stay
    gc.freeze()


def _with_stack_middleware(served):
    """The ASGI app `mlflow server` runs (uvicorn, MLflow's default) with the stack's
    middleware around it; the Flask app of gunicorn or waitress as it is."""
    if not isinstance(served, Flask):
        served.add_middleware(UiDefaults)  # outside the sign-in: its page holds nothing private
        served.add_middleware(ErrorDetailsToLog)
        served.add_middleware(ContentSecurityPolicy)  # outermost: on the generic answers too
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
        elif path.endswith("/graphql") and request.method == "POST":
            for filter_string in _graphql_search_filters(_json_body()):
                refusal = _filter_refusal(filter_string)
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


def _graphql_search_filters(body: dict) -> list[str]:
    """The filters of every mlflowSearchRuns in a GraphQL request, written in the query or
    passed as variables (the input object, or its filter alone)."""
    from graphql import GraphQLError, parse, visit
    from graphql.language import FieldNode, ObjectValueNode, StringValueNode, Visitor, VariableNode

    query = str(body.get("query") or "")
    if "mlflowSearchRuns" not in query:  # a GraphQL name is never escaped: no need to parse
        return []
    variables = body.get("variables") if isinstance(body.get("variables"), dict) else {}
    try:
        document = parse(query)
    except GraphQLError:
        return []  # MLflow answers a malformed query itself

    def value_of(node):
        if isinstance(node, VariableNode):
            return variables.get(node.name.value)
        return node.value if isinstance(node, StringValueNode) else None

    filters: list[str] = []

    class SearchRuns(Visitor):
        def enter_field(self, node: FieldNode, *_):
            if node.name.value != "mlflowSearchRuns":
                return
            for argument in node.arguments or ():
                if argument.name.value != "input":
                    continue
                if isinstance(argument.value, ObjectValueNode):
                    found = [value_of(field.value) for field in argument.value.fields if field.name.value == "filter"]
                else:
                    given = value_of(argument.value)
                    found = [given.get("filter")] if isinstance(given, dict) else []
                filters.extend(str(value) for value in found if value)

    visit(document, SearchRuns())
    return filters


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
