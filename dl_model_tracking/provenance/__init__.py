"""Provenance of a registered model: recorded while training, answered from the server alone.

The chapter frames tracking with the Open Provenance Model (artifacts, processes, agents
and the edges *used*, *wasGeneratedBy*, *wasDerivedFrom*, *wasControlledBy*) and the
5W1H questions about a model. This package

- records at training time who trained, which code, data, backbone and environment
  (:func:`start_run`, :func:`record_training_provenance`; :mod:`.recording`);
- keeps the registry lifecycle with reasons: aliases (``champion`` / ``challenger``),
  archiving and the chapter's deprecated stages, each change written onto the version
  as an event tag, since MLflow keeps no alias history (:func:`promote` and friends;
  :mod:`.lifecycle`, with the model / version / alias lookups in :mod:`.lookups`);
- answers who, what, when, where, why and how for a version (:func:`model_provenance`,
  :func:`render_text`; :mod:`.report`) and draws its OPM graph (:func:`opm_graph`;
  :mod:`.graph`);
- runs the ``provenance`` command (:func:`main`; :mod:`.cli`).

The tag names they share are in :mod:`.tags`. Everything public is re-exported here.
"""

from .cli import main
from .graph import opm_graph, render_graph_png
from .lifecycle import (
    STAGES,
    archive,
    demote,
    history,
    latest_version,
    promote,
    record_event,
    record_registration,
    register_model,
    transition_stage,
)
from .lookups import ProvenanceError
from .recording import (
    ENVIRONMENT_PACKAGES,
    SPLIT_CONTEXTS,
    backbone_tags,
    directory_digest,
    environment_versions,
    git_tags,
    installed_requirements,
    log_datasets,
    record_training_provenance,
    running_source,
    sha256_file,
    start_run,
)
from .report import model_provenance, render_text
from .tags import EVENT_TAG, REQUIREMENTS_ARTIFACT, TAG, current_user

__all__ = [
    # tags
    "EVENT_TAG", "REQUIREMENTS_ARTIFACT", "TAG", "current_user",
    # recording at training time
    "ENVIRONMENT_PACKAGES", "SPLIT_CONTEXTS", "backbone_tags", "directory_digest", "environment_versions",
    "git_tags", "installed_requirements", "log_datasets", "record_training_provenance", "running_source",
    "sha256_file", "start_run",
    # the registry lifecycle, with reasons
    "STAGES", "archive", "demote", "history", "latest_version", "promote", "record_event",
    "record_registration", "register_model", "transition_stage",
    # lookups
    "ProvenanceError",
    # the 5W1H report and the OPM graph
    "model_provenance", "opm_graph", "render_graph_png", "render_text",
    # the command
    "main",
]
