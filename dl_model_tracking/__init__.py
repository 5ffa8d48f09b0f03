"""The chapter's data, model, tracking helpers and provenance, for the notebooks and tests.

Importing the package first quiets the third-party warnings that tell a reader nothing
(see :mod:`dl_model_tracking.quiet`).
"""

from . import quiet  # noqa: F401  (filters installed on import)
