"""Outages during a training run: per service and outage length, what was logged vs. stored.

    python -m benchmarks.outages [--json out.json] [--workloads hand autolog]
                                 [--services nginx mlflow database s3] [--seconds 5 15 30 60]

starts the no-Docker twin, and for each service and length runs the chosen workloads
(benchmarks.training_workloads) side by side while that service is down, with the
client retries check_tracking_server() sets (CLIENT_RETRY_DEFAULTS). On the twin the S3 store
is frozen (SIGSTOP), not stopped: moto keeps its objects in memory. The run outcome is
finished, a clear error naming the service, an error naming another one, a crash, or a hang
(not done 10 minutes after the outage's length). Also timed: a missing artifact's answer, which
the stack gives as 404 and the client must not retry.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from mlflow_stack.local_stack import LocalStack
from benchmarks.outage_harness import autolog_arguments, run_through_outage
from mlflow_stack.connection import CLIENT_RETRY_DEFAULTS


def missing_artifact_seconds(stack) -> float:
    """How long a client with the stack's retry settings waits to hear an artifact is missing."""
    import os

    import mlflow
    from mlflow.exceptions import MlflowException

    os.environ.update(CLIENT_RETRY_DEFAULTS)
    mlflow.set_tracking_uri(stack.tracking_uri)
    with mlflow.start_run() as run:
        mlflow.log_text("here", "present.txt")
    started = time.monotonic()
    try:
        mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="missing.txt")
    except (MlflowException, OSError):
        return time.monotonic() - started
    raise RuntimeError("a missing artifact was downloaded")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--workloads", nargs="+", choices=["hand", "autolog"], default=["hand", "autolog"])
    parser.add_argument("--services", nargs="+", choices=LocalStack.OUTAGE_SERVICES,
                        default=list(LocalStack.OUTAGE_SERVICES))
    parser.add_argument("--seconds", nargs="+", type=float, default=[5, 15, 30, 60])
    args = parser.parse_args(argv)
    started = time.monotonic()
    rows = []
    with tempfile.TemporaryDirectory(prefix="outage-bench-") as tmp, LocalStack(Path(tmp) / "stack").start() as stack:
        root = Path(tmp)
        workloads = {w: autolog_arguments(root / "assets") if w == "autolog" else [] for w in args.workloads}
        print(f"twin healthy in {stack.startup_seconds:.0f} s; retries {CLIENT_RETRY_DEFAULTS}", flush=True)
        missing = missing_artifact_seconds(stack)
        print(f"missing artifact answered in {missing:.2f} s", flush=True)
        print("| workload | service | outage s | down s | metrics logged | stored | params/tags/artifacts missing "
              "| outcome | run s |\n|---|---|---|---|---|---|---|---|---|", flush=True)
        for service in args.services:
            for seconds in args.seconds:
                results = run_through_outage(stack, workloads, [service],
                                             seconds, root / "runs", time_limit=seconds + 600)
                for r in results:
                    rows.append(r.as_dict())
                    print(f"| {r.workload} | {r.service} | {r.outage_seconds:g} | {r.down_seconds} "
                          f"| {r.metrics_sent} | {r.metrics_stored} "
                          f"| {len(r.params_missing) + len(r.tags_missing) + len(r.artifacts_missing)} | {r.verdict} "
                          f"| {r.run_seconds} |", flush=True)
    report = {"seconds": round(time.monotonic() - started, 1), "retries": CLIENT_RETRY_DEFAULTS,
              "missing_artifact_seconds": round(missing, 2), "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    print(f"\n{report['seconds']:.0f} s in all; the outage rows' errors are in the JSON")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
