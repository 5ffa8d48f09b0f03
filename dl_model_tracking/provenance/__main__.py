"""``python -m dl_model_tracking.provenance``: the ``provenance`` command."""

import sys

from .cli import main

sys.exit(main())
