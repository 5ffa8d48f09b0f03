"""The server's part in the UI's defaults for a new browser (mlflow_stack_server/ui_defaults.py),
on the ASGI middleware alone: which requests are sent to the defaults page, and what the page
sets. What a browser then shows is tested in Chromium (test_browser.py)."""

from __future__ import annotations

import asyncio
import html
import json
import re
from unittest import mock

import pytest

from mlflow_stack_server.ui_defaults import PAGE_PATH, SCRIPT, SCRIPT_PATH, UiDefaults

NAVIGATION = {"sec-fetch-dest": "document", "sec-fetch-mode": "navigate"}


def answer(path: str, headers: dict[str, str], method: str = "GET", query: bytes = b"",
           telemetry_disabled: bool = True) -> tuple[int, dict[str, str], bytes]:
    """The middleware's answer, or 299 from the app behind it (MLflow's)."""
    async def mlflow_app(scope, receive, send):
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b"MLflow's answer"})

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    with mock.patch("mlflow.telemetry.utils.is_telemetry_disabled", return_value=telemetry_disabled):
        middleware = UiDefaults(mlflow_app)
    scope = {"type": "http", "method": method, "path": path, "query_string": query,
             "headers": [(name.encode(), value.encode()) for name, value in headers.items()]}
    asyncio.run(middleware(scope, receive, send))
    start, body = sent[0], b"".join(message.get("body", b"") for message in sent[1:])
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body


@pytest.mark.parametrize("site", ["none", "cross-site", "same-site"])
def test_a_browser_entering_from_outside_goes_to_the_defaults_page_first(site):
    status, headers, _ = answer("/", {**NAVIGATION, "sec-fetch-site": site}, query=b"workspace=a")
    assert status == 302
    assert headers["location"] == "stack/ui-defaults?workspace=a"  # relative: the address the browser used
    assert headers["cache-control"] == "no-store"


@pytest.mark.parametrize("path, headers, method", [
    ("/", {**NAVIGATION, "sec-fetch-site": "same-origin"}, "GET"),  # back from the defaults page: no loop
    ("/", {}, "GET"),  # not a browser's navigation: curl, health checks, tests
    ("/", {"sec-fetch-dest": "empty", "sec-fetch-site": "none"}, "GET"),  # a fetch, not a page
    ("/", {**NAVIGATION, "sec-fetch-site": "none"}, "POST"),
    ("/api/2.0/mlflow/experiments/search", {**NAVIGATION, "sec-fetch-site": "none"}, "GET"),
    ("/static-files/index.html", {**NAVIGATION, "sec-fetch-site": "none"}, "GET"),
])
def test_everything_else_reaches_mlflow(path, headers, method):
    status, _, body = answer(path, headers, method=method)
    assert (status, body) == (299, b"MLflow's answer")


def page_defaults(body: bytes) -> dict:
    found = re.search(rb'<script src="ui-defaults.js" data-defaults="([^"]*)"></script>', body)
    assert found, body
    return json.loads(html.unescape(found.group(1).decode()))


def test_the_page_sets_the_model_training_view_and_no_telemetry_when_the_server_sends_none():
    status, headers, body = answer(PAGE_PATH, NAVIGATION)
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert page_defaults(body) == {
        "mlflow.workflowType_v1": "machine_learning",
        "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": True,
        "mlflow.settings.telemetry.enabled_v1": False,
        "mlflow.telemetry.info.alert.dismissed_v1": True,
    }
    assert b"<script>" not in body  # no inline script: the server's policy forbids it


def test_with_the_servers_telemetry_on_the_ui_keeps_its_own_telemetry_settings():
    _, _, body = answer(PAGE_PATH, NAVIGATION, telemetry_disabled=False)
    assert page_defaults(body) == {"mlflow.workflowType_v1": "machine_learning",
                                   "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": True}


def test_the_script_is_served_as_a_script_the_browser_revalidates():
    status, headers, body = answer(SCRIPT_PATH, {})
    assert status == 200 and body == SCRIPT
    # nosniff (MLflow's answers carry it too) makes the browser insist on a script type.
    assert headers["content-type"].startswith("text/javascript") and headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "no-cache"
