"""Finding a registered model, a version or an alias, with errors that list what does exist."""

from __future__ import annotations

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException


class ProvenanceError(LookupError):
    """The model, version or alias asked about does not exist; the message lists what does."""


def lookup_model(client: MlflowClient, name: str):
    try:
        return client.get_registered_model(name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        names = sorted(m.name for m in client.search_registered_models())
        raise ProvenanceError(f"No registered model named {name!r}. Registered models: "
                              f"{', '.join(names) or '(none)'}") from None


def lookup_version(client: MlflowClient, name: str, version: str):
    lookup_model(client, name)
    try:
        return client.get_model_version(name, version)
    except MlflowException as error:
        if error.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
        raise ProvenanceError(f"{name!r} has no version {version}. Versions: "
                              f"{', '.join(map(str, versions)) or '(none)'}") from None


def lookup_alias(client: MlflowClient, name: str, alias: str):
    model = lookup_model(client, name)
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as error:
        if error.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        raise ProvenanceError(f"{name!r} has no alias {alias!r}. Aliases: "
                              f"{', '.join(sorted(model.aliases)) or '(none)'}") from None
