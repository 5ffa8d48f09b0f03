"""The ``provenance`` command: the report, or the OPM graph, of one registered model version."""

from __future__ import annotations

import argparse
import json
import sys

from mlflow.exceptions import MlflowException

from mlflow_stack.connection import TrackingServerUnavailable
from mlflow_stack.settings import SettingsFileError
from .graph import opm_graph, render_graph_png
from .lookups import ProvenanceError
from .report import model_provenance, render_text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="provenance",
        description="Who, what, when, where, why and how of a registered model version, from the tracking server.")
    parser.add_argument("name", help="registered model name, e.g. nlp_dl_model")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--version", help="model version number")
    which.add_argument("--alias", help="model alias, e.g. champion")
    parser.add_argument("--tracking-uri", help="tracking server (default: MLFLOW_TRACKING_URI or http://localhost)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="the report as JSON")
    output.add_argument("--graph", choices=["json", "png"], help="the OPM graph instead of the report")
    parser.add_argument("--output", "-o", help="file for --graph png (default: <name>-v<version>-provenance.png)")
    args = parser.parse_args(argv)

    try:
        report = model_provenance(args.name, version=args.version, alias=args.alias, tracking_uri=args.tracking_uri)
    except (ProvenanceError, TrackingServerUnavailable, SettingsFileError) as error:
        print(f"provenance: {error}", file=sys.stderr)
        return 2
    except MlflowException as error:  # e.g. no permission on a shared stack (PERMISSION_DENIED)
        print(f"provenance: {error.error_code}: {error.message.splitlines()[0]}", file=sys.stderr)
        return 2
    if args.graph == "json":
        print(json.dumps(opm_graph(report), indent=2))
    elif args.graph == "png":
        out = args.output or f"{args.name}-v{report['model']['version']}-provenance.png"
        print(render_graph_png(opm_graph(report), out))
    elif args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(render_text(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
