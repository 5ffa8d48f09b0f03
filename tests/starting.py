"""Starting a stack in a fixture: a failure ends the test with the services' logs, not a traceback."""

from __future__ import annotations

import pytest

from mlflow_stack.local_stack import StackStartError


def start_or_fail(stack, what: str):
    """``stack.start()``; if a service does not come up, fail with ``what`` and the logs."""
    try:
        return stack.start()
    except StackStartError as error:
        pytest.fail(f"{what} did not start:\n{error}", pytrace=False)
