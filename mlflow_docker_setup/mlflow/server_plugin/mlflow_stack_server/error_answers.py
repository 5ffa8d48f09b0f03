"""What a failed request tells its client: one line with a reference; the details (SQL
statements, bound values, driver and host names, tracebacks) go to the server's log.

- A 500, 502, 503 or 504 answer's body is replaced whole.
- Any other JSON answer that carries a database error's text is rewritten too. MLflow's
  store answers some database errors with 400 and the error's full text, and its GraphQL
  endpoint answers every resolver's failure with 200 and ``{"errors": [text]}``. SQLAlchemy
  writes the statement as ``[SQL: ...]`` and a link to sqlalche.me/e/ into every error it
  raises, which is how such a text is known. A GraphQL answer keeps its data and its other
  errors; an API error keeps its status and error code.
"""

from __future__ import annotations

import json
import logging
import uuid

_logger = logging.getLogger("mlflow_stack_server")

GENERIC_CODES = {500: "INTERNAL_ERROR", 502: "INTERNAL_ERROR", 503: "TEMPORARILY_UNAVAILABLE",
                 504: "TEMPORARILY_UNAVAILABLE"}
DATABASE_ERROR_MARKS = ("[SQL: ", "https://sqlalche.me/e/")
_HELD_BYTES = 64 * 1024 * 1024  # a GraphQL search answer of many runs; artifacts are never JSON


def generic_message(reference: str) -> str:
    return (f"The tracking server could not answer this request (reference {reference}; "
            "the server's log has the details)")


def _database_error(text: str) -> bool:
    return any(mark in text for mark in DATABASE_ERROR_MARKS)


def _logged(scope, status: int, details: str) -> str:
    reference = uuid.uuid4().hex[:12]
    _logger.error("%s %s answered %s (reference %s): %s", scope.get("method"), scope.get("path"), status,
                  reference, details[:65536])
    return reference


def _rewritten(scope, status: int, body: bytes) -> bytes | None:
    """The body to send instead, or None to send it as it is."""
    text = body.decode(errors="replace")
    if status in GENERIC_CODES:
        return json.dumps({"error_code": GENERIC_CODES[status],
                           "message": generic_message(_logged(scope, status, text))}).encode()
    if not _database_error(text):
        return None
    try:
        answer = json.loads(text)
    except ValueError:
        answer = None
    if isinstance(answer, dict) and isinstance(answer.get("errors"), list):  # GraphQL
        answer["errors"] = [generic_message(_logged(scope, status, error))
                            if isinstance(error, str) and _database_error(error) else error
                            for error in answer["errors"]]
    else:
        code = answer.get("error_code") if isinstance(answer, dict) else None
        answer = {"error_code": code or "BAD_REQUEST", "message": generic_message(_logged(scope, status, text))}
    return json.dumps(answer).encode()


class ErrorDetailsToLog:
    """ASGI middleware: holds each error or JSON answer whole, and sends it, or its rewrite."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        held: dict = {}

        async def send_checked(message):
            if message["type"] == "http.response.start":
                headers = dict((name.lower(), value) for name, value in message.get("headers", []))
                json_answer = headers.get(b"content-type", b"").startswith(b"application/json")
                if message["status"] in GENERIC_CODES or (json_answer and (message["status"] >= 400 or
                                                                           scope.get("path", "").endswith("/graphql"))):
                    held.update(start=message, body=bytearray())
                    return
            if not held or message["type"] != "http.response.body":
                return await send(message)
            held["body"] += message.get("body", b"")
            if message.get("more_body") and len(held["body"]) < _HELD_BYTES:
                return
            if message.get("more_body"):  # too large to hold: what was held, then the rest as it comes
                start, body = held.pop("start"), bytes(held.pop("body"))
                await send(start)
                return await send({"type": "http.response.body", "body": body, "more_body": True})
            start, body = held.pop("start"), bytes(held.pop("body"))
            rewritten = _rewritten(scope, start["status"], body)
            if rewritten is not None:
                kept = [(name, value) for name, value in start.get("headers", []) if name.lower() == b"retry-after"]
                start = {**start, "headers": [(b"content-type", b"application/json"),
                                              (b"content-length", str(len(rewritten)).encode()), *kept]}
                body = rewritten
            await send(start)
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, send_checked)
