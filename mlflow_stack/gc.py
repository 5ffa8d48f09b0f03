"""Permanently delete what was deleted in MLflow: ``mlflow gc`` for a tracking stack.

    python -m mlflow_stack.gc [--older-than 30d] [--run-ids ID,ID,...] (--mlflow-container ID | --tracking-uri URL)

``gc_mlflow.sh`` passes its checkout's stack: compose's MLflow container (gc runs inside
it, where the database URI and the S3 keys are), or local mode's server; the tests pass
the twin's. Deleting a run in MLflow only marks it; this removes, for good, the runs
deleted more than ``--older-than`` ago (rows: runs, params, metrics, latest_metrics, tags,
inputs) with their artifacts, the logged models deleted that long ago with theirs, and
the experiments deleted that long ago with their runs; with ``--run-ids``, those runs only.
Nothing that is not deleted is touched. It cannot be undone: back up first
(backup_mlflow.sh).

Artifacts whose URI is ``mlflow-artifacts:/...`` (every run this stack's server stores)
are deleted through the tracking server, as MLflow's gc does: it needs the server running,
and signs in as the stack's admin when the stack is shared. The backend store URI is read
from the environment (MLFLOW_BACKEND_STORE_URI) inside Python, so its password is in no
process's arguments.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

# MLflow's own pattern for --older-than (mlflow/cli/__init__.py), which also matches an
# empty string (no age at all, so every deleted run): at least one part is required here.
AGE = re.compile(r"^((?P<days>[\.\d]+?)d)?((?P<hours>[\.\d]+?)h)?((?P<minutes>[\.\d]+?)m)?((?P<seconds>[\.\d]+?)s)?$")
RUN_ID = re.compile(r"^[0-9a-f]{32}$")
UNITS = {"days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}

# Runs where MLflow and the backend store are (inside the MLflow container, or this
# Python): argv = the age as given, the age in ms, the run ids (comma-separated, or "").
# Every named run is checked before anything is deleted, so a wrong id deletes nothing
# (MLflow's gc checks each run only when it reaches it, after deleting the ones before).
GC_SCRIPT = r'''
import os, sys, urllib.request
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # MLflow's engine set-up lines are no news here
import requests
from mlflow.entities import LifecycleStage
from mlflow.exceptions import MlflowException
from mlflow.tracking import _get_store

def fail(message):
    sys.exit(f"gc: {message}; nothing was deleted")

age, age_ms, run_ids = sys.argv[1], int(sys.argv[2]), [r for r in sys.argv[3].split(",") if r]
tracking_uri = os.environ["MLFLOW_TRACKING_URI"]
if os.environ.get("MLFLOW_AUTH_DATABASE_URI") and not os.environ.get("MLFLOW_TRACKING_PASSWORD"):
    # A shared stack's server: its artifacts are deleted through it, as its first admin.
    os.environ["MLFLOW_TRACKING_USERNAME"] = os.environ.get("MLFLOW_AUTH_ADMIN_USERNAME", "admin")
    os.environ["MLFLOW_TRACKING_PASSWORD"] = os.environ["MLFLOW_AUTH_ADMIN_PASSWORD"]
try:
    urllib.request.urlopen(tracking_uri + "/health", timeout=10).close()
except OSError as error:
    fail(f"the tracking server at {tracking_uri} does not answer ({error}): gc deletes artifacts through it, "
         "start the stack first")
store = _get_store(os.environ["MLFLOW_BACKEND_STORE_URI"])
old_enough = set(store._get_deleted_runs(older_than=age_ms))
for run_id in run_ids:
    try:
        run = store.get_run(run_id)
    except MlflowException:
        fail(f"no run {run_id} in this stack")
    if run.info.lifecycle_stage != LifecycleStage.DELETED:
        fail(f"run {run_id} is not deleted (gc only removes deleted runs: delete it in the UI or with "
             "MlflowClient().delete_run first)")
    if run_id not in old_enough:
        fail(f"run {run_id} was deleted less than {age} ago: add --older-than 0s to remove it now")
from mlflow.cli import _gc_tracking_resources, cli
try:
    if run_ids:
        # Only these runs: MLflow's gc with --run-ids would also remove every deleted logged
        # model and experiment past the age. The same code, without those two.
        _gc_tracking_resources(store, run_ids=run_ids, experiment_ids=None, logged_model_ids=None, older_than=age,
                               time_delta=age_ms, skip_experiments=True, skip_logged_models=True)
    else:
        cli.main(["gc", "--backend-store-uri", os.environ["MLFLOW_BACKEND_STORE_URI"], "--older-than", age],
                 prog_name="mlflow", standalone_mode=False)
except MlflowException as error:
    # Each run's artifacts go before its rows: what is left is still a deleted run, for the next gc.
    sys.exit("gc: mlflow gc stopped: " + error.message.splitlines()[0])
except requests.RequestException as error:
    status = getattr(error.response, "status_code", None)
    hint = (": sign in as an admin (MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD)" if status in (401, 403)
            else "")
    sys.exit(f"gc: mlflow gc stopped: the tracking server did not delete a run's artifacts "
             f"({str(error).split('. Response text')[0]}){hint}; that run and the ones after it are kept")
'''


class GcError(ValueError):
    """Bad input, in one line for the user."""


def age_in_ms(age: str) -> int:
    match = AGE.match(age)
    if not age or match is None or not any(match.groupdict().values()):
        raise GcError(f"--older-than {age!r} is not an age: write it as MLflow does, e.g. 30d, 12h, 1d6h, 90m or 0s")
    try:
        return int(sum(float(value) * UNITS[unit] for unit, value in match.groupdict().items() if value) * 1000)
    except ValueError:
        raise GcError(f"--older-than {age!r} is not an age: write it as MLflow does, e.g. 30d, 12h, 1d6h, 90m or 0s") from None


def run_ids(text: str) -> list[str]:
    ids = [part.strip() for part in text.split(",") if part.strip()]
    wrong = [run_id for run_id in ids if not RUN_ID.match(run_id)]
    if not ids or wrong:
        raise GcError(f"--run-ids {text!r}: give run ids (32 hex digits) separated by commas"
                      + (f"; {wrong[0]!r} is not one" if wrong else ""))
    return ids


def gc_command(args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    """The command that runs GC_SCRIPT for the stack ``args`` names, and its environment."""
    script_args = [args.older_than, str(age_in_ms(args.older_than)), ",".join(run_ids(args.run_ids)) if args.run_ids else ""]
    if args.mlflow_container:
        # -e NAME without a value: docker copies it from this environment, never into argv.
        passed = [flag for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD") if os.environ.get(name)
                  for flag in ("-e", name)]
        return (["docker", "exec", "-e", "MLFLOW_TRACKING_URI=http://127.0.0.1:5000", *passed, args.mlflow_container,
                 "python", "-c", GC_SCRIPT, *script_args], dict(os.environ))
    if not os.environ.get("MLFLOW_BACKEND_STORE_URI"):
        raise GcError("--tracking-uri needs the backend store in MLFLOW_BACKEND_STORE_URI")
    return [sys.executable, "-c", GC_SCRIPT, *script_args], {**os.environ, "MLFLOW_TRACKING_URI": args.tracking_uri}


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="python -m mlflow_stack.gc", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    main.add_argument("--older-than", default="30d",
                      help="only what was deleted longer ago than this (MLflow's format: 30d, 12h, 1d6h, 0s; default 30d)")
    main.add_argument("--run-ids", help="only these deleted runs (comma-separated ids), each deleted longer ago than "
                                        "--older-than; no logged model, no experiment")
    where = main.add_mutually_exclusive_group(required=True)
    where.add_argument("--mlflow-container", help="compose: the MLflow container (gc runs inside it)")
    where.add_argument("--tracking-uri", help="the tracking server itself (local mode, the twin); the backend store "
                                              "in MLFLOW_BACKEND_STORE_URI")
    return main


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        command, env = gc_command(args)
    except GcError as error:
        print(f"gc: {error}", file=sys.stderr)
        return 2
    return subprocess.run(command, env=env).returncode


if __name__ == "__main__":
    raise SystemExit(main())
