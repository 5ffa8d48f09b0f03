"""Venvs holding other MLflow releases, for the tests that run an old client or server.

Each venv is built from the package index once and kept under .cache/ (git-ignored); a
venv is reused while the requirements it was built with are the ones asked for.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlflow_stack.settings import REPO_ROOT

CACHE = REPO_ROOT / ".cache"

# What old releases need from today's PyPI: setuptools below 82 for pkg_resources, which
# MLflow 1.x and 2.x (to 2.9 at least) import when loaded (and a venv made without pip
# has no setuptools); protobuf 3 for MLflow before 1.30, whose generated code protobuf 4
# and later refuse to load while its requirement leaves protobuf unbounded.
NEEDS_PKG_RESOURCES = "setuptools<82"
OLD_PROTOBUF = "protobuf<4"


def _with_content_digest(requirement: str) -> str:
    """A requirement as the marker records it: a local folder (the server plugin) with a
    digest of its files, so a venv built from an older copy of it is rebuilt."""
    folder = Path(requirement)
    if not folder.is_dir():
        return requirement
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        # Not what installing it writes into the folder (setuptools' build/ and .egg-info/):
        # counting those rebuilt the venv on its second use.
        if path.is_file() and not {"__pycache__", "build"} & set(path.relative_to(folder).parts) \
                and ".egg-info" not in str(path):
            digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return f"{requirement} sha256:{digest.hexdigest()[:16]}"


def venv_python(venv: Path, requirements: tuple[str, ...]) -> Path:
    """The Python of `venv` holding `requirements`, built first if missing or built otherwise.

    Its build time is printed (pytest -s shows it)."""
    python = venv / "bin" / "python"
    marker = venv / "built-with.txt"  # written last: a venv without it is incomplete
    wanted = "\n".join(_with_content_digest(r) for r in requirements) + "\n"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time, should two sessions meet here
        if python.exists() and marker.exists() and marker.read_text() == wanted:
            return python
        shutil.rmtree(venv, ignore_errors=True)
        started = time.monotonic()
        # The project's own pip (the one scripts/python_env.sh runs from .venv, with the
        # same flag), installing into the new venv: it keeps the index, certificate and
        # proxy settings it has from pip.conf and PIP_* variables here. A venv without pip
        # of its own is created in a second or so.
        commands = [
            [sys.executable, "-m", "venv", "--without-pip", str(venv)],
            [sys.executable, "-m", "pip", "--python", str(python), "install", "--disable-pip-version-check",
             *requirements],
        ]
        for command in commands:
            result = subprocess.run(command, capture_output=True, text=True, timeout=1200)
            if result.returncode != 0:
                shutil.rmtree(venv, ignore_errors=True)
                output = "\n".join((result.stdout + result.stderr).splitlines()[-25:])
                pytest.fail(f"building the venv {venv.name} failed (the package index unreachable, "
                            f"or the release no longer installs):\n$ {' '.join(command)}\n{output}",
                            pytrace=False)
        marker.write_text(wanted)
        print(f"built {venv} in {time.monotonic() - started:.0f} s")
    return python
