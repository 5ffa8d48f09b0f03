"""The images a benchmark's compose stacks run: those an env file names (`--images`,
e.g. mlflow_docker_setup/.env for the official ones where a registry answers), or else the
stand-ins the Docker tests use, built here first (tests/standin_images)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from dotenv import dotenv_values

from mlflow_stack.settings import REPO_ROOT

STANDINS = REPO_ROOT / "tests" / "standin_images"


def stack_images(images_file: Path | None = None) -> dict[str, str]:
    """NAME_IMAGE -> image, for ComposeStack.fresh_copy."""
    if images_file is None:
        subprocess.run(["bash", str(STANDINS / "build.sh")], check=True, capture_output=True)
        images_file = STANDINS / "standins.env"
    return {k: v for k, v in dotenv_values(images_file).items() if k.endswith("_IMAGE") and v}
