"""Quiet, narrowly, what third-party packages say that tells a reader of the notebooks nothing.

Imported by ``dl_model_tracking/__init__.py``, so a notebook that imports this package
before ``flash`` gets the filters before lightning-flash's import-time warnings. Each
filter names its category and its module or exact message; everything else still shows.

Left on purpose (each explained where it appears): MLflow's warning that pickled models
run code when loaded, and the registry's note that ``runs:/<id>/model`` resolved to the
run's logged model (MLflow 3 keeps models beside runs, not among their artifacts).
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings

# lightning-flash 0.8.2 probes numpy's removed aliases (np.object, np.bool) at import
# time; numpy 1.26 answers each probe with a FutureWarning about numpy 2.
warnings.filterwarnings("ignore", message=r"In the future `np\.\w+` will be defined as the corresponding NumPy scalar",
                        category=FutureWarning, module=r"flash(\.|$)")
# pytorch-lightning 1.9 and lightning-fabric declare namespace packages through
# pkg_resources; requirements.txt pins the last setuptools that still ships it.
warnings.filterwarnings("ignore", message=r"pkg_resources is deprecated as an API", category=UserWarning)


class _DropMessages(logging.Filter):
    def __init__(self, pattern: str):
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.match(record.getMessage())


# Every flash.Trainer logs four lines of accelerators a CPU machine does not have
# ("GPU available: False, ..."); the same logger's other lines still show.
_ACCELERATOR_LINES = _DropMessages(r"(GPU|TPU|IPU|HPU) available: ")
for _name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
    logging.getLogger(_name).addFilter(_ACCELERATOR_LINES)
# Lightning's default logger (CSV here, TensorBoard where that is installed) announces, as a
# warning, that it is about to create lightning_logs/.
for _name in ("lightning_fabric.loggers.csv_logs", "pytorch_lightning.loggers.tensorboard"):
    logging.getLogger(_name).addFilter(_DropMessages(r"Missing logger folder: "))


@contextlib.contextmanager
def expected_new_head():
    """While building a classifier on a pre-trained encoder, transformers' load report is held back.

    The report lists the new classification head as MISSING (newly initialised) and, for
    a hub checkpoint, its pre-training heads as UNEXPECTED: both are what fine-tuning
    means. Only that report is dropped (a filter, not the logger's level: transformers
    runs extra checks, with warnings of their own, when that level is raised); loads
    elsewhere still report, and a load error still raises.
    """
    report_logger = logging.getLogger("transformers.modeling_utils")
    load_report = _DropMessages(r"\W*\w+ LOAD REPORT")
    report_logger.addFilter(load_report)
    try:
        yield
    finally:
        report_logger.removeFilter(load_report)
