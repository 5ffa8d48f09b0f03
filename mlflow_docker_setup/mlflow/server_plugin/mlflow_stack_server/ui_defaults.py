"""The MLflow UI's defaults for a browser that has not chosen yet: the model-training view,
no assistant panel opening by itself, and no UI telemetry when the server sends none.

MLflow 3.17's UI keeps these choices in the browser's localStorage (JSON under
``<key>_v<version>``), and nothing the server answers changes them: before a browser has
chosen, the UI opens in its GenAI mode, opens its assistant panel on a localhost page, and
shows its banner about UI telemetry on the home page whatever the server's telemetry
setting (docs/mlflow-ui.md). MLflow's page runs no inline script (content_policy.py), and
its files stay as they are, so:

- a browser navigating to the UI's page (``/``) from outside this site (a typed URL, a
  bookmark, a notebook's link: ``Sec-Fetch-Site`` other than ``same-origin``) is sent to a
  small page of this stack first; the browser keeps the URL's fragment (the UI's route);
- that page's script stores each default the browser holds no value for (a choice made in
  the UI stays), then goes back to ``/`` with the same route. That navigation comes from
  this site, so it is not redirected again.

Browsers mark navigations with ``Sec-Fetch-Dest: document``; the API, health checks and
scripts never send it, so they never see the redirect.
"""

from __future__ import annotations

import html
import json

PAGE_PATH = "/stack/ui-defaults"
SCRIPT_PATH = PAGE_PATH + ".js"

# The UI's keys (MLflow 3.17.2's bundle) and the values a new browser gets.
MODEL_TRAINING_VIEW = {"mlflow.workflowType_v1": "machine_learning"}
# Marked as done: the panel opened once by itself on a localhost page (a third of the screen).
ASSISTANT_NOT_OPENED = {"mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": True}
# The UI's own telemetry switch (Settings) off, so it starts no telemetry worker, and its
# banner (which says usage data is collected) dismissed.
TELEMETRY_OFF = {"mlflow.settings.telemetry.enabled_v1": False,
                 "mlflow.telemetry.info.alert.dismissed_v1": True}

SCRIPT = b"""// The MLflow UI's defaults, stored where this browser holds no value yet; then the UI.
(function () {
  var defaults = JSON.parse(document.currentScript.dataset.defaults);
  try {
    Object.keys(defaults).forEach(function (key) {
      if (localStorage.getItem(key) === null) localStorage.setItem(key, JSON.stringify(defaults[key]));
    });
  } catch (refused) {
    // No storage for this site: the UI runs on its own defaults.
  }
  location.replace(new URL("../" + location.search + location.hash, location.href));
})();
"""


def browser_defaults(telemetry_disabled: bool) -> dict:
    """What a browser that has not chosen gets: telemetry follows the server's setting."""
    return {**MODEL_TRAINING_VIEW, **ASSISTANT_NOT_OPENED, **(TELEMETRY_OFF if telemetry_disabled else {})}


def defaults_page(defaults: dict) -> bytes:
    value = html.escape(json.dumps(defaults), quote=True)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>MLflow</title></head>'
            f'<body><script src="ui-defaults.js" data-defaults="{value}"></script></body></html>').encode()


def _header(scope, name: bytes) -> bytes:
    return next((value for key, value in scope.get("headers", []) if key.lower() == name), b"")


def entering_from_outside(scope) -> bool:
    """A browser's navigation to the UI's page that did not come from this site."""
    return (scope.get("method") == "GET" and scope.get("path") == "/"
            and _header(scope, b"sec-fetch-dest") == b"document"
            and _header(scope, b"sec-fetch-site") != b"same-origin")


class UiDefaults:
    """ASGI middleware: the redirect, the page and its script; everything else passes."""

    def __init__(self, app):
        from mlflow.telemetry.utils import is_telemetry_disabled

        self.app = app
        self.page = defaults_page(browser_defaults(is_telemetry_disabled()))

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if entering_from_outside(scope):
            query = scope.get("query_string", b"")
            # Relative, so the browser resolves it against the address it used.
            location = PAGE_PATH.lstrip("/").encode() + (b"?" + query if query else b"")
            return await _answer(send, 302, b"", [(b"location", location), (b"cache-control", b"no-store")])
        if scope.get("method") == "GET" and scope.get("path") == PAGE_PATH:
            return await _answer(send, 200, self.page, [(b"content-type", b"text/html; charset=utf-8")])
        if scope.get("method") == "GET" and scope.get("path") == SCRIPT_PATH:
            return await _answer(send, 200, SCRIPT, [(b"content-type", b"text/javascript; charset=utf-8")])
        return await self.app(scope, receive, send)


async def _answer(send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode()), (b"x-content-type-options", b"nosniff")]
    if status == 200:
        headers.append((b"cache-control", b"no-cache"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
