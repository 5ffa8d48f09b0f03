"""Tag names the package writes onto runs and model versions, and the user it stamps them with."""

from __future__ import annotations

import getpass
import os

TAG = "provenance."
EVENT_TAG = TAG + "event."
REQUIREMENTS_ARTIFACT = "environment/requirements.txt"


def current_user() -> str:
    return os.environ.get("MLFLOW_TRACKING_USERNAME") or getpass.getuser()
