"""MLflow's S3 and local artifact repositories, answering errors that are not the server's
with a status clients do not retry.

MLflow's client retries every HTTP 500 with growing pauses (about a minute with the
stack's client settings, four with MLflow's own), then reports only "too many 500 error
responses". Two errors of the artifact store reached clients that way:

- **A missing object.** MLflow's tracking server lets boto3's 404 escape
  ``S3ArtifactRepository._download_file`` (MLflow issue #24535, open in 3.17 and 3.18),
  so ``mlflow.pytorch.load_model("runs:/<id>/model")``, which looks for the model among
  the run's own files before the logged model, waited about four minutes on an S3-backed
  server. Raising ``RESOURCE_DOES_NOT_EXIST`` makes the server answer 404.
- **A full artifact store.** A disk with no space left (local mode's artifact folder) or
  MinIO refusing a write below its free-space threshold surfaced as a 500 too, so a
  ``log_artifact`` waited a minute for an error that does not name the cause. Retrying
  cannot help until someone frees space, so it is answered with 507 Insufficient Storage
  and a message saying so; nothing is stored (MLflow removes the partial file).

The S3 repository also takes an upload as a stream (MLflow's ``StreamUploadMixin``): the
tracking server hands the request body to boto3 while it is still arriving, so receiving
it and sending it on to S3 overlap, where MLflow's default writes the whole body to a
temporary file first and only then uploads it (two legs one after the other).

In a tracking server process both refuse a root outside the server's own artifact store
(artifact_locations.py), so no stored location makes the server read or write elsewhere.

The entry points (pyproject.toml) put these classes in place of MLflow's for ``s3://``
and ``file://`` in every process that has this package installed; they behave exactly as
MLflow's otherwise. Drop a mapping once MLflow makes it itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import posixpath
import queue
import threading
from mimetypes import guess_type

from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import ClientError
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, RESOURCE_EXHAUSTED
from mlflow.store.artifact.artifact_repo import StreamUploadMixin
from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository as _LocalArtifactRepository
from mlflow.store.artifact.s3_artifact_repo import S3ArtifactRepository as _S3ArtifactRepository

from .artifact_locations import check_server_artifact_root

# What S3 servers answer for a missing key: GetObject's code, HeadObject's bare status.
_MISSING = {"NoSuchKey", "404", "NotFound"}
# MinIO below its free-space threshold ("Storage backend has reached its minimum free
# drive threshold", HTTP 507). Amazon S3 never fills; other servers may only say 500.
_S3_FULL = {"XMinioStorageFull"}
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


class ArtifactStoreFull(MlflowException):
    """Answered with HTTP 507, which MLflow's client raises at once instead of retrying
    (MLflow maps no error code to 507, hence the override)."""

    def __init__(self, where: str):
        super().__init__(
            f"The artifact store is full ({where}): nothing was stored. "
            "Free space there or give it more, then log the artifact again.",
            error_code=RESOURCE_EXHAUSTED,
        )

    def get_http_status_code(self) -> int:
        return 507


@contextlib.contextmanager
def _disk_full_raised_as_store_full(where: str):
    try:
        yield
    except OSError as error:
        if error.errno not in _DISK_FULL:
            raise
        raise ArtifactStoreFull(f"no space left in {where}") from None


class LocalArtifactRepository(_LocalArtifactRepository):
    def __init__(self, artifact_uri, *args, **kwargs):
        check_server_artifact_root(artifact_uri)
        super().__init__(artifact_uri, *args, **kwargs)

    # Every way the server and clients write a file into the store.
    def log_artifact(self, local_file, artifact_path=None):
        with _disk_full_raised_as_store_full(self.artifact_dir):
            super().log_artifact(local_file, artifact_path)

    def log_artifacts(self, local_dir, artifact_path=None):
        with _disk_full_raised_as_store_full(self.artifact_dir):
            super().log_artifacts(local_dir, artifact_path)

    def log_artifact_from_stream(self, stream, artifact_file_name, artifact_path=None):
        with _disk_full_raised_as_store_full(self.artifact_dir):
            super().log_artifact_from_stream(stream, artifact_file_name, artifact_path)

    async def log_artifact_from_async_stream(self, chunks, artifact_file_name, artifact_path=None):
        with _disk_full_raised_as_store_full(self.artifact_dir):
            await super().log_artifact_from_async_stream(chunks, artifact_file_name, artifact_path)


_HANDOVER_BYTES = 1024 * 1024
_BODY_BROKEN = object()  # fed instead of the end marker when the body did not arrive whole


class _ArrivingBody:
    """A file boto3 reads from while the request body is still arriving: the server's
    event loop feeds chunks in, the upload thread reads them out. At most 16 chunks of a
    megabyte wait, so a slow S3 holds back the client instead of filling the server's memory."""

    def __init__(self, chunks_held: int = 16):
        self._chunks: queue.Queue = queue.Queue(maxsize=chunks_held)
        self._buffer = bytearray()
        self._ended = False
        self.reader_gone = threading.Event()  # the upload finished or failed: stop feeding

    async def feed(self, chunk) -> None:
        """Hand over a chunk (None: the body is complete; _BODY_BROKEN: it never will be).
        Waits on the event loop, never in a worker thread: every such thread may be an
        upload waiting for its next chunk. Dropped once the reader is gone."""
        while not self.reader_gone.is_set():
            try:
                self._chunks.put_nowait(chunk)
                return
            except queue.Full:
                await asyncio.sleep(0.005)  # S3 takes it slower than the client sends

    def read(self, size: int = -1) -> bytes:
        while not self._ended and (size < 0 or len(self._buffer) < size):
            chunk = self._chunks.get()
            if chunk is None:
                self._ended = True
            elif chunk is _BODY_BROKEN:
                raise OSError("the request body ended before it was complete")
            else:
                self._buffer += chunk
        size = len(self._buffer) if size < 0 else min(size, len(self._buffer))
        with memoryview(self._buffer) as view:
            data = view[:size].tobytes()
        del self._buffer[:size]
        return data


class S3ArtifactRepository(_S3ArtifactRepository, StreamUploadMixin):
    def __init__(self, artifact_uri, *args, **kwargs):
        check_server_artifact_root(artifact_uri)
        super().__init__(artifact_uri, *args, **kwargs)

    def _download_file(self, remote_file_path, local_path):
        try:
            super()._download_file(remote_file_path, local_path)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in _MISSING:
                raise
            raise MlflowException(
                f"No artifact at '{remote_file_path}' in {self.artifact_uri}",
                error_code=RESOURCE_DOES_NOT_EXIST,
            ) from None

    def _upload_file(self, s3_client, local_file, bucket, key):
        with _s3_full_raised_as_store_full(bucket, key):
            super()._upload_file(s3_client, local_file, bucket, key)

    def log_artifact_from_stream(self, stream, artifact_file_name, artifact_path=None):
        """The request body straight to S3, in multipart chunks as it is read (Flask path)."""
        bucket, key = self.parse_s3_compliant_uri(self.artifact_uri)
        key = posixpath.join(key, artifact_path or "", posixpath.basename(artifact_file_name))
        extra_args = dict(self._bucket_owner_params)
        content_type, content_encoding = guess_type(artifact_file_name)
        extra_args.update({"ContentType": content_type} if content_type else {})
        extra_args.update({"ContentEncoding": content_encoding} if content_encoding else {})
        extra_args.update(self.get_s3_file_upload_extra_args() or {})
        with _s3_full_raised_as_store_full(bucket, key):
            self._get_s3_client().upload_fileobj(stream, bucket, key, ExtraArgs=extra_args)

    async def log_artifact_from_async_stream(self, chunks, artifact_file_name, artifact_path=None):
        """The same for the server's default (FastAPI) path: the event loop receives the
        body while a thread of its own uploads what has arrived (its own, not one of the
        loop's shared worker threads, which a few waiting uploads could use up)."""
        body = _ArrivingBody()
        loop = asyncio.get_running_loop()
        uploaded = loop.create_future()

        def settle(error: BaseException | None) -> None:
            if uploaded.done():
                return
            if error:
                uploaded.set_exception(error)
            else:
                uploaded.set_result(None)

        def upload() -> None:
            error = None
            try:
                self.log_artifact_from_stream(body, artifact_file_name, artifact_path)
            except BaseException as failure:  # handed to the request, which answers it
                error = failure
            finally:
                body.reader_gone.set()
                loop.call_soon_threadsafe(settle, error)

        threading.Thread(target=upload, name="artifact-upload", daemon=True).start()
        pending = bytearray()  # the server's small chunks, handed over a megabyte at a time
        try:
            async for chunk in chunks:
                if uploaded.done():  # failed early: its error is raised below
                    break
                pending += chunk
                if len(pending) >= _HANDOVER_BYTES:
                    await body.feed(bytes(pending))
                    pending.clear()
            if pending:
                await body.feed(bytes(pending))
        except BaseException:
            # The body did not arrive whole (the client went away): boto3 must abort the
            # multipart upload, never store what came as if it were the file.
            await body.feed(_BODY_BROKEN)
            with contextlib.suppress(BaseException):
                await uploaded
            raise
        await body.feed(None)
        await uploaded


@contextlib.contextmanager
def _s3_full_raised_as_store_full(bucket: str, key: str):
    try:
        yield
    except (ClientError, S3UploadFailedError) as error:
        # boto3 wraps a failed upload's ClientError in S3UploadFailedError, as its context.
        client_error = error if isinstance(error, ClientError) else error.__context__
        code = getattr(client_error, "response", {}).get("Error", {}).get("Code")
        if code not in _S3_FULL:
            raise
        raise ArtifactStoreFull(f"the S3 server refused to store s3://{bucket}/{key}: {code}") from None
