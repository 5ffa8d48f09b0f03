"""Where this tracking server lets artifacts go: only into its own artifact store.

MLflow lets any client that may create an experiment name its ``artifact_location``, and
the server then writes that experiment's uploads there as its own user: ``file:///etc``,
the bucket's root, another experiment's folder. MLflow refuses host-addressed schemes
(``http``, ``ftp``, ...) in a server process, but not paths on the server's disk or keys
of its bucket. Two checks close that, one at each end:

- **Creating an experiment** (:func:`experiment_location_refusal`). A shared server
  chooses every location itself: a client may not name one. On loopback the book's way
  stays open: a prefix inside the stack's own bucket (``s3://mlflow/<prefix>``), or inside
  local mode's artifact folder, never the store's root or one of the server's own
  experiment folders (numbers).
- **Using one** (:func:`check_server_artifact_root`): in a server process, the artifact
  repositories refuse a root outside the server's store, whatever stored it (an
  experiment created before this check, a logged model, a model version).

The store is ``mlflow server --artifacts-destination``, which MLflow exports to its
workers in ``_MLFLOW_SERVER_ARTIFACT_DESTINATION``.
"""

from __future__ import annotations

import os
import posixpath
import urllib.parse
from typing import NamedTuple

# What `mlflow server` exports to its workers (mlflow.server.constants.ARTIFACTS_DESTINATION_ENV_VAR).
DESTINATION_ENV_VAR = "_MLFLOW_SERVER_ARTIFACT_DESTINATION"


class Place(NamedTuple):
    """A location in a store: ``s3`` with its bucket, or ``file`` on the server's disk."""

    scheme: str
    bucket: str
    path: str  # absolute, normalised, without a trailing slash ("/" for a root)

    def __str__(self) -> str:
        return f"s3://{self.bucket}{self.path.rstrip('/')}" if self.scheme == "s3" else f"file://{self.path}"

    def contains(self, other: "Place") -> bool:
        if (self.scheme, self.bucket) != (other.scheme, other.bucket):
            return False
        return other.path == self.path or other.path.startswith(self.path.rstrip("/") + "/")


def place(uri: str) -> Place | None:
    """The store location ``uri`` names, or None for any other scheme, a relative path, a
    file URI on another host, or a path that climbs (``..``) or is not written plainly."""
    parsed = urllib.parse.urlparse(uri)
    scheme = parsed.scheme.lower() or "file"
    if parsed.query or parsed.fragment or parsed.params or scheme not in ("s3", "file"):
        return None
    path = urllib.parse.unquote(parsed.path)
    if scheme == "file":
        if parsed.netloc not in ("", "localhost") or not path.startswith("/"):
            return None
        bucket = ""
    else:
        bucket, path = parsed.netloc, "/" + path.lstrip("/")
        if not bucket:
            return None
    segments = [segment for segment in path.split("/") if segment]
    if any(segment in (".", "..") for segment in segments) or "\\" in path or "\0" in path:
        return None
    return Place(scheme, bucket, posixpath.join("/", *segments))


def server_store() -> Place | None:
    """This server's artifact store, or None outside a tracking server process."""
    destination = os.environ.get(DESTINATION_ENV_VAR)
    return place(destination) if destination else None


def experiment_location_refusal(location: str, shared: bool, store: Place | None) -> str | None:
    """Why the server refuses to create an experiment at ``location``, or None."""
    if not location:
        return None  # the server chooses: mlflow-artifacts:/<experiment id>
    if shared:
        return (f"artifact_location {location!r} refused: this shared server chooses where every "
                "experiment's artifacts go (through the server, under its sign-in); create the "
                "experiment without an artifact_location")
    parsed = urllib.parse.urlparse(location)
    if parsed.scheme == "mlflow-artifacts":  # this server's store, by a path inside it
        if not parsed.netloc and _own_prefix(place("file://" + (parsed.path or "/")), Place("file", "", "/")):
            return None
    else:
        wanted = place(location)
        if store is not None and wanted is not None and _own_prefix(wanted, store):
            return None
    example = f"{store}/<prefix>" if store else "a prefix of the artifact store"
    return (f"artifact_location {location!r} refused: only this server's artifact store takes "
            f"artifacts; leave it empty, or name {example} (a prefix that is not a number: "
            "numbers are the server's own experiment folders)")


def _own_prefix(wanted: Place | None, store: Place) -> bool:
    """Inside the store, below its root, and not under one of its experiment folders."""
    if wanted is None or wanted == store or not store.contains(wanted):
        return False
    return not wanted.path[len(store.path.rstrip("/")) + 1:].split("/", 1)[0].isdigit()


def check_server_artifact_root(uri: str) -> None:
    """In a tracking server process, refuse an artifact repository rooted outside the
    server's store (clients, where the variable is unset, are not affected)."""
    store = server_store()
    if store is None:
        return
    wanted = place(uri)
    if wanted is None or not store.contains(wanted):
        # Imported here: the artifact repositories import this module while MLflow loads them.
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        raise MlflowException(
            f"The artifact location {uri!r} is outside this server's artifact store ({store}): "
            "the server neither reads nor writes there", error_code=INVALID_PARAMETER_VALUE)
