"""Starting stacks in fixtures: a failure ends the test with the services' logs, not a
traceback; fresh checkouts of the compose stack, each in a folder of its own."""

from __future__ import annotations

import os
import subprocess

import pytest

from mlflow_stack.compose_stack import ComposeStack
from mlflow_stack.local_stack import StackStartError, free_ports

# In CI a run must test what it claims: no docker test skipped for want of an engine, both
# compose start paths, and the stacks the suite starts itself.
IN_CI = os.environ.get("CI") == "true"


def start_or_fail(stack, what: str):
    """``stack.start()``; if a service does not come up, fail with ``what`` and the logs."""
    try:
        return stack.start()
    except StackStartError as error:
        pytest.fail(f"{what} did not start:\n{error}", pytrace=False)


def compose_cli() -> str:
    """v2 where the plugin is installed (the `up --wait` path), else v1."""
    v2 = subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    if not v2 and IN_CI:
        pytest.fail("the compose v2 plugin is missing: only the v1 start path would be tested "
                    "(tests/docker_engine.sh installs it in CI)")
    return "v2" if v2 else "v1"


# The compose stacks' database: the MariaDB stand-in everywhere; genuine MySQL (Oracle's
# server, as the compose file's mysql image is; standins.env's GENUINE_MYSQL_IMAGE) for the
# tests where the database makes a difference (test_docker_stack.py).
DATABASE_IMAGES = {"mariadb": "MYSQL_IMAGE", "mysql": "GENUINE_MYSQL_IMAGE"}


def checkouts(tmp_path_factory, standin_images: dict[str, str], database: str):
    """Yield a maker of checkouts: a copy of this checkout's stack files in a folder of its
    own (as a second clone is), using this checkout's .venv, and the environment that runs it
    on the stand-ins (with `database`) on free loopback ports. Whatever a test leaves running
    there is deleted when the maker's fixture ends."""
    made: list[ComposeStack] = []
    images = {**standin_images, "MYSQL_IMAGE": standin_images[DATABASE_IMAGES[database]]}

    def make(name: str, compose: str | None = None, **overrides: str) -> ComposeStack:
        stack = ComposeStack.fresh_copy(tmp_path_factory.mktemp(name), images,
                                        **{"MLFLOW_COMPOSE": compose or compose_cli(), **overrides})
        made.append(stack)
        return stack

    yield make
    for stack in made:
        if any(stack.resources().values()):
            stack.stop(delete_data=True)


def started_checkout(make, what: str, name: str = "checkout-a", **overrides: str):
    """A fresh checkout's compose stack, started by start_mlflow.sh on a real engine; yielded,
    then stopped with its data deleted."""
    running = start_or_fail(make(name, **overrides), what)
    print(f"\n{what} ({running.env['MLFLOW_COMPOSE']}) healthy in {running.startup_seconds:.1f} s "
          f"at {running.tracking_uri}")
    yield running
    running.stop(delete_data=True)


def started_shared_checkout(make, what: str):
    """A fresh checkout's compose stack started with MLFLOW_SHARE=1 (still reached on loopback)."""
    yield from started_checkout(make, what, "checkout-shared", MLFLOW_SHARE="1",
                                NGINX_HTTPS_PORT=str(free_ports(1)[0]))
