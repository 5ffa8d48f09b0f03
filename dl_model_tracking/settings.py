"""Where things are and how clients reach the tracking server.

Client settings come from the environment, then from a ``.env`` file in the working
directory or the repository root (python-dotenv); the stack's settings come from
``mlflow_docker_setup/.env`` and its secrets from ``mlflow_docker_setup/secrets/``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values, find_dotenv, load_dotenv

from .stack_secrets import ensure_secrets, read_secrets

REPO_ROOT = Path(__file__).resolve().parent.parent
STACK_DIR = REPO_ROOT / "mlflow_docker_setup"
STACK_ENV_FILE = STACK_DIR / ".env"
SECRETS_DIR = STACK_DIR / "secrets"

DEFAULT_TRACKING_URI = "http://localhost"
DEFAULT_REGISTERED_MODEL_NAME = "nlp_dl_model"


@dataclass(frozen=True)
class Settings:
    tracking_uri: str = DEFAULT_TRACKING_URI


def load_settings() -> Settings:
    """Read client settings; variables already in the environment win over ``.env``."""
    dotenv_path = find_dotenv(usecwd=True) or str(REPO_ROOT / ".env")
    load_dotenv(dotenv_path, override=False)
    return Settings(tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI))


def stack_env(secrets_dir: Path | None = None, generate: bool = False) -> dict[str, str]:
    """The stack's configuration (bucket, ports, images); with ``secrets_dir``, also its
    secrets (database and MinIO passwords, sign-in), generated there first if ``generate``."""
    values = {key: value for key, value in dotenv_values(STACK_ENV_FILE).items() if value is not None}
    if secrets_dir is None:
        return values
    return {**values, **(ensure_secrets(secrets_dir) if generate else read_secrets(secrets_dir))}
