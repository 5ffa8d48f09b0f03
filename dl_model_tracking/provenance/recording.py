"""Recording at training time: who trained, which code, data, backbone and environment.

Each is a ``provenance.*`` tag on the run (:func:`record_training_provenance`), beside the
installed requirements as an artifact and each data split as an MLflow dataset input.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import mlflow

from ..data import TARGET_FIELD
from mlflow_stack.settings import REPO_ROOT
from ..tracking import pinned_model_requirements
from .tags import REQUIREMENTS_ARTIFACT, TAG, current_user

ENVIRONMENT_PACKAGES = ["torch", "lightning-flash", "pytorch-lightning", "transformers", "mlflow"]
SPLIT_CONTEXTS = {"train": "training", "val": "validation", "test": "testing"}


@contextlib.contextmanager
def start_run(experiment_id: str | None = None, run_name: str | None = None, *, datamodule=None,
              backbone: str | os.PathLike | None = None, **start_run_kwargs):
    """``mlflow.start_run`` that first records the run's provenance (see the module doc).

    Models logged inside it, by autologging too, get explicit pinned requirements
    instead of MLflow's slow inference (:func:`~dl_model_tracking.tracking.pinned_model_requirements`).
    """
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, **start_run_kwargs) as run, \
            pinned_model_requirements():
        record_training_provenance(datamodule=datamodule, backbone=backbone)
        yield run


def record_training_provenance(datamodule=None, backbone: str | os.PathLike | None = None) -> dict[str, str]:
    """Tag the active run with who, code, environment and backbone; log its datasets."""
    source = running_source()
    tags = {TAG + "trained_by": current_user(), TAG + "host": socket.gethostname(),
            TAG + "source": source}
    if source.endswith(".ipynb"):
        # MLflow would name the kernel launcher; the UI's "Source" should show the notebook.
        tags.update({"mlflow.source.name": source, "mlflow.source.type": "NOTEBOOK"})
    tags.update(git_tags())
    tags.update({f"{TAG}env.{name}": version for name, version in environment_versions().items()})
    if backbone is not None:
        tags.update(backbone_tags(backbone))
    mlflow.set_tags(tags)
    mlflow.log_text(installed_requirements(), REQUIREMENTS_ARTIFACT)
    files = getattr(datamodule, "imdb_files", None)
    if files is not None:
        log_datasets(files)
    return tags


def running_source() -> str:
    """The notebook or script being run: Jupyter and VS Code name the notebook."""
    if os.environ.get("JPY_SESSION_NAME"):
        return os.environ["JPY_SESSION_NAME"]
    with contextlib.suppress(Exception):
        shell = sys.modules["IPython"].get_ipython()
        if shell is not None and shell.user_ns.get("__vsc_ipynb_file__"):
            return shell.user_ns["__vsc_ipynb_file__"]
    return os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else "<interactive>"


def git_tags(repo: Path = REPO_ROOT) -> dict[str, str]:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {TAG + "git.commit": "unknown (not a git checkout)"}
    return {"mlflow.source.git.commit": commit, TAG + "git.commit": commit,
            TAG + "git.dirty": str(dirty).lower(), TAG + "git.repo": str(repo)}


def environment_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ENVIRONMENT_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def installed_requirements() -> str:
    """``name==version`` of every installed distribution, from the ``*.dist-info`` names.

    Reading each package's METADATA instead took 0.7 s per run for ~250 packages; the
    folder names carry the same (normalised) name and version.
    """
    pins = set()
    for entry in sys.path:
        folder = Path(entry or ".")
        if folder.is_dir():
            for info in folder.glob("*.dist-info"):
                name, _, version = info.name.removesuffix(".dist-info").partition("-")
                pins.add(f"{name.replace('_', '-')}=={version}")
    return "\n".join(sorted(pins, key=str.lower)) + "\n"


def _hash_file(digest, path: Path) -> None:
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)


def sha256_file(path: Path) -> str:
    """What `sha256sum` prints for the file."""
    digest = hashlib.sha256()
    _hash_file(digest, path)
    return digest.hexdigest()


def directory_digest(folder: Path) -> str:
    """SHA-256 over every file's relative name and contents, in a stable order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        _hash_file(digest, path)
    return digest.hexdigest()


def backbone_tags(backbone: str | os.PathLike) -> dict[str, str]:
    """Name or path of the backbone and a digest of its files (a hub name: its cached snapshot)."""
    tags = {TAG + "backbone": str(backbone)}
    folder = Path(backbone)
    if not folder.is_dir():
        with contextlib.suppress(Exception):
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(str(backbone), local_files_only=True))
    if folder.is_dir():
        tags[TAG + "backbone.sha256"] = directory_digest(folder)
        tags[TAG + "backbone.files"] = ",".join(sorted(str(p.relative_to(folder))
                                                       for p in folder.rglob("*") if p.is_file()))
    else:
        tags[TAG + "backbone.sha256"] = "unknown (files not in the local cache)"
    return tags


def log_datasets(files) -> None:
    """``mlflow.log_input`` for each split: source, digest, rows and label balance."""
    import pandas as pd

    remote = str(files.source_url).startswith(("http://", "https://"))
    for split, path in files.as_dict().items():
        frame = pd.read_csv(path)
        source = files.source_url if remote else str(Path(path).resolve())
        dataset = mlflow.data.from_pandas(frame, source=source, name=f"imdb-{split}", targets=TARGET_FIELD)
        balance = frame[TARGET_FIELD].value_counts().to_dict()
        tags = {"rows": str(len(frame)), "file": Path(path).name,
                "file_sha256": sha256_file(Path(path)), "origin": str(files.source_url)}
        tags.update({f"label.{label}": str(count) for label, count in sorted(balance.items())})
        mlflow.log_input(dataset, context=SPLIT_CONTEXTS[split], tags=tags)
