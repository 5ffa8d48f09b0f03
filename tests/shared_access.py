"""Talking to a stack as its users: one HTTP request through nginx, and the users command.
Shared by the sharing, attack and backup tests."""
from __future__ import annotations

import base64
import http.client
import json
import os
import secrets
import subprocess
import sys
import uuid

# The shared twin's MLFLOW_AUTH_CACHE_SECONDS (the stack's default is 30): a changed password or
# a deleted user stops working within seconds.
SIGN_IN_CACHE_SECONDS = 2


def request(stack, path: str, credentials: tuple[str, str] | None = None, method: str = "GET",
            body: dict | bytes | None = None, source: str | None = None,
            content_type: str = "application/json") -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request through the stack's nginx; ``source`` binds the client to another loopback address."""
    scheme, rest = stack.tracking_uri.split("://", 1)
    host, port = rest.rsplit(":", 1)
    kwargs = {"timeout": 30, "source_address": (source, 0) if source else None}
    if scheme == "https":
        connection = http.client.HTTPSConnection(host, int(port), context=stack.ssl_context(), **kwargs)
    else:
        connection = http.client.HTTPConnection(host, int(port), **kwargs)
    headers = {"Content-Type": content_type}
    if credentials:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(credentials).encode()).decode()
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    try:
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def mlflow_users(stack, *args: str) -> subprocess.CompletedProcess:
    """The users command, signed in as the first admin."""
    user, password = stack.admin_credentials
    env = {**os.environ, "MLFLOW_TRACKING_URI": stack.tracking_uri, "MLFLOW_TRACKING_USERNAME": user,
           "MLFLOW_TRACKING_PASSWORD": password, "MLFLOW_TRACKING_SERVER_CERT_PATH": str(stack.ca_file)}
    return subprocess.run([sys.executable, "-m", "mlflow_stack.users", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def new_user(stack, by_command: bool = False) -> tuple[str, str]:
    """A user with a generated password, created by the first admin: with MLflow's users API
    (fast: most tests only need someone signed in), or with `mlflow-users create` as
    docs/sharing.md shows it."""
    name = f"user-{uuid.uuid4().hex[:8]}"
    if by_command:
        result = mlflow_users(stack, "create", name)
        assert result.returncode == 0, result.stderr
        return name, result.stdout.split("password ", 1)[1].split()[0]
    password = secrets.token_urlsafe(18)
    status, _, body = request(stack, "/api/2.0/mlflow/users/create", stack.admin_credentials, "POST",
                              {"username": name, "password": password})
    assert status == 200, body
    return name, password
