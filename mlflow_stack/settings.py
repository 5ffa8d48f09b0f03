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
from dotenv.parser import parse_stream

from .stack_secrets import ensure_secrets, read_secrets

REPO_ROOT = Path(__file__).resolve().parent.parent
STACK_DIR = REPO_ROOT / "mlflow_docker_setup"
STACK_ENV_FILE = STACK_DIR / ".env"
SECRETS_DIR = STACK_DIR / "secrets"

DEFAULT_TRACKING_URI = "http://localhost"
DEFAULT_REGISTERED_MODEL_NAME = "nlp_dl_model"


class SettingsFileError(ValueError):
    """A ``.env`` file that cannot be read as NAME=value lines."""


def check_env_file(path: Path | str) -> None:
    """Raise :class:`SettingsFileError` naming the first line python-dotenv cannot parse.

    python-dotenv only warns about such a line and leaves its variable out, so a typo
    surfaced later as a refused sign-in or the wrong server. The line is not quoted: a
    project ``.env`` may hold a password.
    """
    try:
        with open(path, encoding="utf-8") as stream:
            broken = next((b.original.line for b in parse_stream(stream) if b.error), None)
    except UnicodeDecodeError:
        raise SettingsFileError(f"{path} is not UTF-8 text: save it as UTF-8 NAME=value lines") from None
    if broken is not None:
        raise SettingsFileError(
            f"{path} line {broken} is not NAME=value (or a # comment): fix or remove that line")


@dataclass(frozen=True)
class Settings:
    tracking_uri: str = DEFAULT_TRACKING_URI


def load_settings() -> Settings:
    """Read client settings; variables already in the environment win over ``.env``."""
    dotenv_path = find_dotenv(usecwd=True) or str(REPO_ROOT / ".env")
    if Path(dotenv_path).is_file():
        check_env_file(dotenv_path)
    load_dotenv(dotenv_path, override=False)
    return Settings(tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI))


def stack_env(secrets_dir: Path | None = None, generate: bool = False) -> dict[str, str]:
    """The stack's configuration (bucket, ports, images); with ``secrets_dir``, also its
    secrets (database and MinIO passwords, sign-in), generated there first if ``generate``."""
    check_env_file(STACK_ENV_FILE)
    values = {key: value for key, value in dotenv_values(STACK_ENV_FILE).items() if value is not None}
    if secrets_dir is None:
        return values
    return {**values, **(ensure_secrets(secrets_dir) if generate else read_secrets(secrets_dir))}
