"""How long a backup and a restore take for a 10,000-run data set on the twin.

    python -m benchmarks.backup_restore [--runs 10000] [--artifacts 50] [--json results.json]

starts a twin, seeds it with the search benchmark's runs (10 params, 10 metrics each,
``benchmarks.seeding.seed_runs``) and ``--artifacts`` 1 MB artifact objects, backs it up
while it runs, checks the archive, and restores it into a second, fresh twin.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import uuid
from pathlib import Path

from benchmarks.measuring import timed
from benchmarks.report import machine, publish
from benchmarks.seeding import seed_runs
from mlflow_stack.backup import create_backup, open_verified, restore_backup, twin_stack
from mlflow_stack.local_stack import LocalStack

MB = 1024 * 1024


def measure(runs: int, artifacts: int, workdir: Path) -> dict:
    from mlflow import MlflowClient

    with LocalStack(workdir / "source").start() as source:
        experiment = MlflowClient(source.tracking_uri).create_experiment(f"bench-backup-{uuid.uuid4().hex[:8]}")
        seed_seconds = seed_runs(source.backend_store_uri, experiment, runs)
        s3 = source.s3_client()
        for index in range(artifacts):  # straight into the bucket: their upload is not measured
            s3.put_object(Bucket=source.bucket, Key=f"{experiment}/artifact-{index:03d}/weights.bin",
                          Body=os.urandom(MB))
        archive: list[Path] = []
        backup_seconds = timed(lambda: archive.append(create_backup(twin_stack(source), workdir / "backups")))
    verify_seconds = timed(lambda: open_verified(archive[0])[0].close())
    with LocalStack(workdir / "target").start() as target:
        summary: list[dict] = []
        restore_seconds = timed(lambda: summary.append(restore_backup(archive[0], twin_stack(target))))
        database = twin_stack(target).database
        restored_runs = database.tables(database.database)["runs"]
    if restored_runs < runs:
        raise AssertionError(f"restored {restored_runs} runs, seeded {runs}")
    return {"runs": runs, "rows": summary[0]["rows"], "artifact_objects": summary[0]["objects"],
            "artifact_mb": artifacts, "archive_mb": round(archive[0].stat().st_size / MB, 1),
            "seed_seconds": round(seed_seconds, 1), "backup_seconds": round(backup_seconds, 1),
            "verify_seconds": round(verify_seconds, 1), "restore_seconds": round(restore_seconds, 1)}


def markdown(result: dict) -> str:
    return "\n".join([
        "| data set | archive | backup | check (restore's first step) | restore, checks included |",
        "|---|---|---|---|---|",
        f"| {result['runs']:,} runs ({result['rows']:,} rows), {result['artifact_objects']} artifact objects "
        f"({result['artifact_mb']} MB) | {result['archive_mb']} MB | {result['backup_seconds']} s "
        f"| {result['verify_seconds']} s | {result['restore_seconds']} s |",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--artifacts", type=int, default=50, help="1 MB artifact objects to add")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    with tempfile.TemporaryDirectory(prefix="mlflow-bench-backup-") as tmp:
        result = measure(args.runs, args.artifacts, Path(tmp))
    publish({**result, "machine": machine()}, markdown(result), "backup and restore", args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
