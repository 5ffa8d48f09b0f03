"""MLflow's S3 artifact repository, answering a missing object with "not found".

MLflow's tracking server lets boto3's 404 escape ``S3ArtifactRepository._download_file``,
so a download of an artifact that does not exist is answered with HTTP 500 (MLflow issue
#24535, open in 3.17 and 3.18). Clients retry a 500 with growing pauses, so
``mlflow.pytorch.load_model("runs:/<id>/model")``, which looks for the model among the
run's own files before the logged model, waited about four minutes on an S3-backed
server. Raising ``RESOURCE_DOES_NOT_EXIST`` instead makes the server answer 404, which
clients do not retry. Drop this package once MLflow maps the error itself.
"""

from __future__ import annotations

from botocore.exceptions import ClientError
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST
from mlflow.store.artifact.s3_artifact_repo import S3ArtifactRepository as _S3ArtifactRepository

# What S3 servers answer for a missing key: GetObject's code, HeadObject's bare status.
_MISSING = {"NoSuchKey", "404", "NotFound"}


class S3ArtifactRepository(_S3ArtifactRepository):
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
