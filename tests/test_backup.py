"""Backup and restore: an archive of a running stack, restored into a fresh one, holds
every record and artifact; damaged archives, newer archives and non-empty targets are
refused before anything is written; --overwrite replaces a stack's records, and an archive
of a store an older MLflow wrote is restored and upgraded to this MLflow's schema.

On the twin: the session's twin seeded with every kind of record, backed up while a
client logs, restored into a second, fresh twin; the older archive is of a store written by
tests/test_upgrade.py's MLflow 2.22.5 server. On compose: backup_mlflow.sh and
restore_mlflow.sh between two checkouts. In local mode: the same between two SQLite stacks.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient
from mlflow.entities import Metric, ViewType
from mlflow.exceptions import MlflowException
from mlflow.store.db.utils import _get_latest_schema_revision
from packaging.version import Version

from client_uri import tracking_uri
from client_venvs import CACHE, venv_python
from mlflow_stack.backup import (ARTIFACTS, CHECKSUM, MANIFEST, ArchiveWriter, DirectoryArtifacts, HostMySQL,
                                      S3Artifacts, SQLiteStore, Stack, create_backup, open_verified, restore_backup,
                                      twin_stack)
from mlflow_stack.local_stack import LocalStack, free_port
from mlflow_stack.settings import REPO_ROOT
from starting import start_or_fail
from shared_access import mlflow_users, new_user, request
from test_upgrade import (OLD_SERVERS, fresh_store, old_server_argv, records, schema_revision, server,
                          server_requirements)

pytestmark = pytest.mark.stack

HISTORY_STEPS = 1500  # more than one log_batch call (1,000 metrics) and one page of history
MODEL_INPUT = torch.arange(12, dtype=torch.float32).reshape(3, 4)
# The oldest release tests/test_upgrade.py runs a server of (2.22.5: 39 schema migrations
# behind), from the venv it builds once under .cache/old-servers/.
OLDER = min(OLD_SERVERS, key=Version)


# -- a data set with every kind of record --------------------------------------------------------------
@contextlib.contextmanager
def tracking_at(uri: str):
    with tracking_uri(uri):
        yield MlflowClient(uri, registry_uri=uri)


def seed(uri: str) -> dict:
    """Experiments, runs (one deleted), params, tags, a long metric history, a dataset input,
    artifacts, and a registered model with two pickled PyTorch versions and an alias."""
    suffix = uuid.uuid4().hex[:8]
    model_name = f"backup-model-{suffix}"
    names = [f"backup-{suffix}", f"backup-other-{suffix}"]
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 2))
    with tracking_at(uri) as client:
        experiment = client.create_experiment(names[0], tags={"team": "nlp", "purpose": "backup test"})
        second = client.create_experiment(names[1])
        with mlflow.start_run(experiment_id=experiment, run_name="train") as run:
            # "quoted" is what a dump's row count must not trip on: quotes, a backslash, a row break.
            mlflow.log_params({"epochs": 3, "optimizer": "Adam", "lr": 0.001, "long": "x" * 500,
                               "quoted": "it's a'),('b \\ c"})
            mlflow.set_tags({"stage": "fine-tune", "unicode": "naïve café ✓"})
            now = int(time.time() * 1000)
            history = [Metric("loss", 1 / (step + 1), now + step, step) for step in range(HISTORY_STEPS)]
            for first in range(0, HISTORY_STEPS, 1000):
                client.log_batch(run.info.run_id, metrics=history[first:first + 1000])
            mlflow.log_metrics({"f1": 0.91, "accuracy": 0.93})
            frame = pd.DataFrame({"review": ["good", "bad", "fine"], "sentiment": ["positive", "negative", "positive"]})
            mlflow.log_input(mlflow.data.from_pandas(frame, source="data/imdb/train.csv", name="imdb-train",
                                                     targets="sentiment"), context="training", tags={"split": "train"})
            mlflow.log_text("epoch,loss\n1,0.5\n", "reports/summary.csv")
            mlflow.log_dict({"classes": ["negative", "positive"]}, "config/labels.json")
            with tempfile.TemporaryDirectory() as tmp:
                weights = Path(tmp) / "weights.bin"
                weights.write_bytes(bytes(range(256)) * 1200)  # every byte value, 300 KB
                client.log_artifact(run.info.run_id, str(weights), "blobs")
            mlflow.pytorch.log_model(model, name="model", serialization_format="pickle",
                                     pip_requirements=["torch"], registered_model_name=model_name)
        with mlflow.start_run(experiment_id=experiment, run_name="retrain") as retrain:
            mlflow.log_param("epochs", 5)
            mlflow.pytorch.log_model(model, name="model", serialization_format="pickle",
                                     pip_requirements=["torch"], registered_model_name=model_name)
        deleted = client.create_run(second, run_name="abandoned").info.run_id
        client.log_param(deleted, "tried", "yes")
        client.delete_run(deleted)
        client.set_registered_model_alias(model_name, "champion", "2")
        client.set_registered_model_tag(model_name, "task", "sentiment")
        client.update_registered_model(model_name, description="IMDB sentiment classifier")
        client.set_model_version_tag(model_name, "1", "validated", "false")
        client.set_model_version_tag(model_name, "2", "validated", "true")
    with torch.no_grad():
        expected = model(MODEL_INPUT)
    return {"experiments": [experiment, second], "experiment_names": names, "model_name": model_name,
            "prediction": expected, "runs": [run.info.run_id, retrain.info.run_id, deleted]}


def snapshot(uri: str, seeded: dict) -> dict:
    """Everything a user can read back of the seeded records, through the tracking API."""
    with tracking_at(uri) as client:
        result = {}
        for experiment_id in seeded["experiments"]:
            experiment = client.get_experiment(experiment_id)
            runs = client.search_runs([experiment_id], run_view_type=ViewType.ALL, order_by=["attributes.start_time"])
            models = client.search_logged_models([experiment_id])
            result[experiment_id] = {
                "experiment": dict(experiment),
                "runs": {run.info.run_id: {
                    "info": dict(run.info), "params": run.data.params, "tags": run.data.tags,
                    "metrics": run.data.metrics,
                    "history": {key: [(m.step, m.timestamp, m.value) for m in client.get_metric_history(run.info.run_id, key)]
                                for key in run.data.metrics},
                    "inputs": [(dict(d.dataset), sorted((t.key, t.value) for t in d.tags)) for d in run.inputs.dataset_inputs],
                    "artifacts": sorted((f.path, f.file_size) for f in client.list_artifacts(run.info.run_id)),
                } for run in runs},
                "logged_models": sorted((m.model_id, m.name, m.source_run_id, m.artifact_location, m.status,
                                         str(m.tags), str(m.params)) for m in models),
            }
        name = seeded["model_name"]
        registered = client.get_registered_model(name)
        result["registered_model"] = (registered.name, registered.description, registered.tags, registered.aliases,
                                      registered.creation_timestamp)
        result["versions"] = sorted((v.version, v.source, v.run_id, v.status, v.tags, v.aliases, v.model_id,
                                     v.creation_timestamp) for v in client.search_model_versions(f"name='{name}'"))
    return result


def held(uri: str, seeded: dict) -> dict[str, list[str]]:
    """Which of the seeded records a stack holds, deleted ones too: experiments by name (a
    restore gives their ids to other experiments), runs, the registered model."""

    def found(get, key: str) -> bool:
        try:
            get(key)
        except MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            return False
        return True

    with tracking_at(uri) as client:
        return {"experiments": [n for n in seeded["experiment_names"] if client.get_experiment_by_name(n)],
                "runs": [r for r in seeded["runs"] if found(client.get_run, r)],
                "registered_models": [n for n in [seeded["model_name"]] if found(client.get_registered_model, n)]}


def every(seeded: dict) -> dict[str, list[str]]:
    """held() of a stack that holds all the seeded records."""
    return {"experiments": seeded["experiment_names"], "runs": seeded["runs"],
            "registered_models": [seeded["model_name"]]}


def object_digests(s3_artifacts: S3Artifacts) -> dict[str, str]:
    """Every object of a bucket and the sha256 of its bytes."""
    digests = {}
    for key, _ in s3_artifacts.objects():
        stream, _ = s3_artifacts.open(key)
        digests[key] = hashlib.sha256(stream.read()).hexdigest()
    return digests


def assert_restored(source_uri: str, target_uri: str, seeded: dict) -> None:
    expected, restored = snapshot(source_uri, seeded), snapshot(target_uri, seeded)
    assert restored == expected
    history = restored[seeded["experiments"][0]]["runs"][seeded["runs"][0]]["history"]["loss"]
    assert [step for step, _, _ in history] == list(range(HISTORY_STEPS))
    with tracking_at(target_uri):
        model = mlflow.pytorch.load_model(f"models:/{seeded['model_name']}@champion")
    with torch.no_grad():
        assert torch.equal(model(MODEL_INPUT), seeded["prediction"])


# -- the twin --------------------------------------------------------------------------------------------
def start_twin(workdir: Path, **options) -> LocalStack:
    """A twin of the test's own; ``options`` as LocalStack takes them (share=True, secrets_dir=...)."""
    return start_or_fail(LocalStack(workdir, **options), "a twin for the backup tests")


def seeded_source(twin: LocalStack) -> tuple[LocalStack, dict]:
    """The twin and what seed() logged to it, with the rows per table it held before: other
    modules may have logged to the session's twin first."""
    before = rows(twin)
    return twin, {**seed(twin.tracking_uri), "rows_before": before}


@pytest.fixture(scope="module")
def source(stack, tmp_path_factory):
    """The session's twin, seeded; a twin of our own when the session runs against a given
    stack (MLFLOW_TRACKING_URI), whose database this test cannot reach."""
    if isinstance(stack, LocalStack):
        yield seeded_source(stack)
        return
    twin = start_twin(tmp_path_factory.mktemp("backup-source"))
    yield seeded_source(twin)
    twin.stop()


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    twin = start_twin(tmp_path_factory.mktemp("backup-target"))
    yield twin
    twin.stop()


@pytest.fixture
def holding_its_own(tmp_path) -> tuple[LocalStack, dict]:
    """A fresh twin holding records of its own, for a test that overwrites them (the module's
    target stays as the other tests expect it, in whatever order they run)."""
    twin = start_twin(tmp_path / "overwritten")
    own = seed(twin.tracking_uri)
    assert held(twin.tracking_uri, own) == every(own)  # the positive control of "gone" below
    yield twin, own
    twin.stop()


@pytest.fixture(scope="module")
def archive(source, tmp_path_factory):
    """A backup taken while a client keeps logging to the source (the stack runs on)."""
    twin, _ = source
    client = MlflowClient(twin.tracking_uri)
    busy = client.create_run(client.create_experiment(f"busy-{uuid.uuid4().hex[:8]}")).info.run_id
    stop, logged = threading.Event(), []

    def keep_logging():
        for step in range(5000):  # bounded: the backup takes seconds
            if stop.is_set():
                return
            client.log_metric(busy, "busy", float(step), step=step)
            logged.append(step)

    writer = threading.Thread(target=keep_logging)
    writer.start()
    try:
        deadline = time.monotonic() + 60
        while len(logged) < 20 and writer.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        before = len(logged)
        path = create_backup(twin_stack(twin), tmp_path_factory.mktemp("backups"))
        print(f"\nbackup written while the client logged steps {before} to {len(logged)}")
    finally:
        stop.set()
        writer.join(60)
    return path, busy


@pytest.fixture(scope="module")
def restored(archive, target):
    path, _ = archive
    assert twin_stack(target).records() == 0, "the target twin should start empty"
    return restore_backup(path, twin_stack(target))


class Release:
    """The server of a stack still on an older MLflow, as a backup asks it: for its version."""

    def __init__(self, version: str) -> None:
        self.number = version

    def version(self) -> str:
        return self.number


@pytest.fixture(scope="module")
def older_archive(source, tmp_path_factory):
    """An archive of a store an older MLflow really wrote: test_upgrade's MLflow OLDER server
    on a fresh database and bucket of the source twin, one of each record logged by its
    client (upgrade_records.py), backed up by this checkout as backup_mlflow.sh backs up a
    stack still on that release. With the tag of the records and what the old server gave back."""
    twin, _ = source
    python = venv_python(CACHE / "old-servers" / f"mlflow-{OLDER}", server_requirements(OLDER))
    tag = f"{OLDER.replace('.', '')}_{uuid.uuid4().hex[:8]}"
    database = f"backup_{tag}"
    store = fresh_store(twin, database)
    workdir = tmp_path_factory.mktemp("older")
    port = free_port()
    old_server = server(python, store, port, workdir / "old-server.log", old_server_argv(OLDER, port))
    try:
        records(python, "log", tag, f"http://127.0.0.1:{port}")
        before = records(python, "read", tag, f"http://127.0.0.1:{port}")
    finally:
        old_server.stop()
    c = twin.config
    old_stack = Stack(HostMySQL("127.0.0.1", twin.mysql_port, c["MYSQL_USER"], c["MYSQL_PASSWORD"], database, None),
                      S3Artifacts(twin.s3_endpoint_url, store["MLFLOW_ARTIFACTS_DESTINATION"].removeprefix("s3://"),
                                  twin.s3_credentials),
                      Release(before["version"]))
    return create_backup(old_stack, workdir), tag, before


def cli(twin: LocalStack, *args: str) -> subprocess.CompletedProcess:
    """python -m mlflow_stack.backup on a twin, with its addresses and keys as a user passes them."""
    c = twin.config
    stack = ["--mysql-host", f"127.0.0.1:{twin.mysql_port}", "--mysql-user", c["MYSQL_USER"],
             "--database", c["MYSQL_DATABASE"], "--auth-database", c["MLFLOW_AUTH_DATABASE"],
             "--s3-endpoint-url", twin.s3_endpoint_url, "--bucket", twin.bucket]
    env = {**os.environ, "MYSQL_PWD": c["MYSQL_PASSWORD"], "AWS_EC2_METADATA_DISABLED": "true",
           "AWS_ACCESS_KEY_ID": twin.s3_credentials["aws_access_key_id"],
           "AWS_SECRET_ACCESS_KEY": twin.s3_credentials["aws_secret_access_key"]}
    command, *rest = args
    return subprocess.run([sys.executable, "-m", "mlflow_stack.backup", command, *stack, *rest],
                          env=env, capture_output=True, text=True, timeout=600)


def rows(twin: LocalStack) -> dict[str, int]:
    """Rows per table of the twin's tracking database."""
    stack = twin_stack(twin)
    return stack.database.tables(stack.database.database)


def state(twin: LocalStack) -> tuple[dict, dict]:
    """Rows per table and artifact objects: what a refused restore must leave as it was."""
    return rows(twin), dict(twin_stack(twin).artifacts.objects())


def damaged_copies(path: Path, out: Path) -> dict[str, tuple[Path, str]]:
    """Damaged copies of the archive, written into ``out``: cut mid-member, cut before its
    checksum, one byte of an artifact changed; each with the reason the check names."""
    data = path.read_bytes()
    with tarfile.open(path) as tar:
        members = tar.getmembers()
    artifact = next(m for m in members if m.name.startswith(ARTIFACTS) and m.size > 100)
    tampered = bytearray(data)
    tampered[artifact.offset_data + 50] ^= 0xFF  # one byte of an artifact's contents
    damaged = {"cut mid-member": (data[: len(data) // 2], "truncated or not a tar file"),
               "cut before the checksum": (data[: members[-1].offset], "its checksum is missing"),
               "one byte changed": (bytes(tampered), "its checksum does not match")}
    out.mkdir(parents=True, exist_ok=True)
    copies = {}
    for name, (content, reason) in damaged.items():
        copy = out / f"{name.replace(' ', '-')}.tar"
        copy.write_bytes(content)
        copies[name] = (copy, reason)
    return copies


def files_under(*folders: Path) -> dict[Path, tuple[int, int]]:
    """Every file and folder under the given ones, with size and modification time: what a
    command that writes nothing leaves as it was."""
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for folder in folders for p in folder.rglob("*")}


def local_state(env: dict) -> tuple[dict, dict]:
    """state() of a local-mode stack: rows per table of its SQLite file, and its artifact files."""
    root = Path(env["MLFLOW_LOCAL_DIR"])
    return SQLiteStore(root / "mlflow.db").tables(), dict(DirectoryArtifacts(root / "artifacts").objects())


def repacked(path: Path, out: Path, **manifest_changes) -> Path:
    """The archive with its manifest changed and sealed again (as a newer MLflow's would be)."""
    with tarfile.open(path) as tar:
        manifest = {**json.loads(tar.extractfile(MANIFEST).read()), **manifest_changes}
        writer = ArchiveWriter(out)
        for member in tar.getmembers():
            if member.name not in (MANIFEST, CHECKSUM):
                writer.add_stream(member.name, tar.extractfile(member), member.size)
        return writer.seal(manifest)


# -- the tests -----------------------------------------------------------------------------------------------
def test_restore_matches_the_source_record_for_record(source, target, archive, restored):
    twin, seeded = source
    assert_restored(twin.tracking_uri, target.tracking_uri, seeded)
    # Every artifact object, byte for byte (nothing logs artifacts to the source since).
    assert object_digests(twin_stack(target).artifacts) == object_digests(twin_stack(twin).artifacts)
    # The busy run as of one instant: its latest value is its last step, its history has no gap.
    _, busy = archive
    with tracking_at(target.tracking_uri) as client:
        history = [m.step for m in client.get_metric_history(busy, "busy")]
        assert history == list(range(len(history))) and history
        assert client.get_run(busy).data.metrics["busy"] == float(history[-1])


def test_manifest_describes_the_archive(source, archive):
    """The manifest counts the rows the source held: those before seeding, and what this module added."""
    _, seeded = source
    path, _ = archive
    tar, manifest = open_verified(path)
    with tar:
        assert manifest["mlflow_version"] == mlflow.__version__
        tables = manifest["database"]["databases"][0]["tables"]
        added = {table: count - seeded["rows_before"].get(table, 0) for table, count in tables.items()}
        assert added["registered_models"] == 1 and added["model_versions"] == 2 and added["datasets"] == 1
        assert added["runs"] == 4  # three seeded, one busy
        assert added["metrics"] >= HISTORY_STEPS
        objects = manifest["artifacts"]["objects"]
        assert manifest["artifacts"]["count"] == len(objects) > 0
        for item in objects[:20]:
            data = tar.extractfile(ARTIFACTS + item["key"]).read()
            assert (len(data), hashlib.sha256(data).hexdigest()) == (item["size"], item["sha256"])


def test_damaged_archives_are_refused_before_anything_is_written(archive, target, tmp_path):
    path, _ = archive
    before = state(target)
    for name, (copy, reason) in damaged_copies(path, tmp_path).items():
        result = cli(target, "restore", str(copy), "--overwrite")  # not even --overwrite writes
        message = result.stderr.strip()
        assert result.returncode == 1, name
        assert message.startswith(f"restore: {copy} is damaged ({reason}") and "\n" not in message, name
        assert message.endswith("use another copy of the backup; nothing was restored"), name
    assert state(target) == before


def test_verify_checks_an_archive_without_writing_anything(archive, tmp_path):
    """`verify ARCHIVE` (docs/operations.md: "checks an archive without restoring it") says an intact
    archive is intact (exit 0) and names each damage in one line (exit 1); it takes no
    stack, and leaves every file where it looked and where it ran as it was."""
    path, _ = archive
    workdir = tmp_path / "work"  # its working and temporary folder
    workdir.mkdir()
    empty = files_under(tmp_path)
    copies = damaged_copies(path, tmp_path / "damaged")
    before = files_under(path.parent, tmp_path)
    # The control of "unchanged" below: files_under() sees the copies just written.
    assert {copy for copy, _ in copies.values()} <= before.keys() - empty.keys()

    def verify(archive_path: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mlflow_stack.backup", "verify", str(archive_path)],
                              cwd=workdir, env={**os.environ, "TMPDIR": str(workdir)},
                              capture_output=True, text=True, timeout=600)

    tar, manifest = open_verified(path)
    tar.close()
    intact = verify(path)
    assert (intact.returncode, intact.stderr) == (0, ""), intact.stderr
    assert intact.stdout.strip() == (f"{path} is intact: made {manifest['created']} by MLflow "
                                     f"{mlflow.__version__}, {manifest['artifacts']['count']} artifact objects")
    for name, (copy, reason) in copies.items():
        result = verify(copy)
        message = result.stderr.strip()
        assert (result.returncode, result.stdout) == (1, ""), name
        assert message.startswith(f"verify: {copy} is damaged ({reason}") and "\n" not in message, name
        assert message.endswith("use another copy of the backup"), name
    assert files_under(path.parent, tmp_path) == before


def test_non_empty_stack_and_newer_archive_are_refused(target, archive, restored, tmp_path):
    """A target holding records, without --overwrite, and an archive of a newer MLflow, even
    with it: refused, the target unchanged."""
    path, _ = archive
    before = state(target)
    refused = cli(target, "restore", str(path))
    assert refused.returncode == 1
    assert refused.stderr.strip() == ("restore: this stack already holds experiments, runs, models or artifacts: "
                                      "restore into a fresh stack, or pass --overwrite to replace its records")
    newer = repacked(path, tmp_path / "newer.tar", mlflow_version="99.0.0")
    refused = cli(target, "restore", str(newer), "--overwrite")
    assert refused.returncode == 1 and "made by MLflow 99.0.0, newer than this stack's" in refused.stderr
    assert state(target) == before


def test_overwrite_replaces_the_records_a_stack_held(source, archive, holding_its_own):
    """--overwrite replaces, it does not merge nor keep: records the archive lacks are gone
    after the restore, and the archive's are all there."""
    twin, seeded = source
    path, _ = archive
    overwritten, own = holding_its_own
    tar, manifest = open_verified(path)
    tar.close()
    archived = {item["key"]: item["size"] for item in manifest["artifacts"]["objects"]}
    others = {key: size for key, size in twin_stack(overwritten).artifacts.objects() if key not in archived}
    assert others  # the stack held artifact objects of keys the archive does not hold
    allowed = cli(overwritten, "restore", str(path), "--overwrite")
    assert allowed.returncode == 0, allowed.stderr
    assert held(overwritten.tracking_uri, own) == {"experiments": [], "runs": [], "registered_models": []}
    assert_restored(twin.tracking_uri, overwritten.tracking_uri, seeded)
    # docs/operations.md: "artifact objects of other keys stay"; the archive's are all there too.
    objects = dict(twin_stack(overwritten).artifacts.objects())
    assert {key: objects.get(key) for key in others} == others
    assert {key: objects.get(key) for key in archived} == archived


def test_an_older_mlflows_archive_replaces_a_stacks_records_and_is_upgraded(older_archive, holding_its_own):
    """An archive of a store MLflow OLDER wrote, restored with --overwrite over a stack
    holding other records: its schema is migrated to this MLflow's, its records are there as
    the old server gave them (artifacts byte for byte), the stack's own are gone."""
    path, tag, before = older_archive
    overwritten, own = holding_its_own
    tar, manifest = open_verified(path)
    tar.close()
    assert manifest["mlflow_version"] == OLDER
    assert manifest["schema_revision"] != _get_latest_schema_revision()  # `mlflow db upgrade` has work to do

    allowed = cli(overwritten, "restore", str(path), "--overwrite")
    assert allowed.returncode == 0, allowed.stderr
    assert f"from MLflow {OLDER}; database upgraded to MLflow {mlflow.__version__}" in allowed.stdout
    assert schema_revision(overwritten, overwritten.config["MYSQL_DATABASE"]) == _get_latest_schema_revision()
    assert held(overwritten.tracking_uri, own) == {"experiments": [], "runs": [], "registered_models": []}
    after = records(Path(sys.executable), "read", tag, overwritten.tracking_uri)
    assert (before["version"], after["version"]) == (OLDER, mlflow.__version__)
    for kind in before.keys() - {"version"}:
        assert after[kind] == before[kind], f"{kind} changed in the restore from MLflow {OLDER}"


def test_a_shared_stacks_users_and_permissions_are_backed_up_and_restored(tmp_path):
    """docs/operations.md: a shared stack's archive holds database/mlflow_auth.sql.gz, its users and
    permissions. Restored into a fresh shared twin (secrets of its own), a user signs in
    with the password the source gave it and keeps its permission; a user without one is
    still refused, so the permissions came over, not only the users."""
    source = start_twin(tmp_path / "source", share=True, secrets_dir=tmp_path / "source-secrets")
    target = None
    try:
        experiment = f"shared-backup-{uuid.uuid4().hex[:8]}"
        created = request(source, "/api/2.0/mlflow/experiments/create", source.admin_credentials, "POST",
                       {"name": experiment})
        assert created[0] == 200
        reader, stranger = new_user(source), new_user(source)
        granted = mlflow_users(source, "grant", reader[0], "--experiment", experiment, "--permission", "READ")
        assert granted.returncode == 0, granted.stderr
        get = f"/api/2.0/mlflow/experiments/get-by-name?experiment_name={experiment}"
        assert (request(source, get, reader)[0], request(source, get, stranger)[0]) == (200, 403)

        backup = cli(source, "create", "--output", str(tmp_path / "backups"))
        assert backup.returncode == 0, backup.stderr
        (path,) = (tmp_path / "backups").glob("mlflow-backup-*.tar")
        tar, manifest = open_verified(path)
        tar.close()
        assert "database/mlflow_auth.sql.gz" in manifest["database"]["files"]

        target = start_twin(tmp_path / "target", share=True, secrets_dir=tmp_path / "target-secrets")
        assert target.config["MLFLOW_ADMIN_PASSWORD"] != source.config["MLFLOW_ADMIN_PASSWORD"]
        assert request(target, get, reader)[0] == 401  # the control: a fresh stack does not know the user
        restored = cli(target, "restore", str(path))
        assert restored.returncode == 0, restored.stderr
        assert "was not restored" not in restored.stderr
        assert request(target, get, reader)[0] == 200
        assert request(target, get, stranger)[0] == 403
        assert request(target, get, (reader[0], reader[1] + "x"))[0] == 401  # that password, no other
    finally:
        for twin in (source, target):
            if twin is not None:
                twin.stop()


def test_an_archive_restores_only_into_a_stack_of_its_kind(archive, local_stacks, tmp_path):
    """docs/operations.md: "A compose archive restores into a compose stack, a local-mode one into local
    mode". A local-mode (SQLite) archive offered to a MySQL stack, and a MySQL stack's
    archive offered to a local-mode stack, are refused in one line naming both kinds, even
    with --overwrite, and neither stack changes; the control: each stack does change when
    it restores an archive of its own kind."""
    mysql_archive, _ = archive
    local = local_stacks("local")
    started = local_script(local, "start_mlflow.sh")
    assert started.returncode == 0, started.stderr
    backup = local_script(local, "backup_mlflow.sh", "--output", str(tmp_path / "backups"))
    assert backup.returncode == 0, backup.stderr
    (local_archive,) = (tmp_path / "backups").glob("mlflow-backup-*.tar")  # of a stack holding no records yet
    with tracking_at(f"http://127.0.0.1:{local['MLFLOW_LOCAL_PORT']}") as client:
        client.create_run(client.create_experiment(f"kind-{uuid.uuid4().hex[:8]}"))

    def refusal(archive_path: Path, kind: str, stack_kind: str) -> str:
        return (f"restore: {archive_path} holds a {kind} backend store and this stack's is {stack_kind}: "
                "restore it into a stack of the same kind")

    before = local_state(local)
    refused = local_script(local, "restore_mlflow.sh", str(mysql_archive), "--overwrite")
    assert refused.returncode == 1
    assert refused.stderr.strip() == refusal(mysql_archive, "mysql", "sqlite")
    assert local_state(local) == before
    allowed = local_script(local, "restore_mlflow.sh", str(local_archive), "--overwrite")
    assert allowed.returncode == 0, allowed.stderr
    assert local_state(local) != before  # the run logged after the backup is gone

    twin = start_twin(tmp_path / "twin")
    try:
        before = state(twin)
        refused = cli(twin, "restore", str(local_archive), "--overwrite")
        assert refused.returncode == 1
        assert refused.stderr.strip() == refusal(local_archive, "sqlite", "mysql")
        assert state(twin) == before
        allowed = cli(twin, "restore", str(mysql_archive))
        assert allowed.returncode == 0, allowed.stderr
        assert state(twin) != before
    finally:
        twin.stop()


# -- compose ---------------------------------------------------------------------------------------------------
def checkout_script(stack, name: str, *args: str) -> subprocess.CompletedProcess:
    for script in ("backup_mlflow.sh", "restore_mlflow.sh"):  # new_checkout copies only what start needs
        shutil.copy2(REPO_ROOT / script, stack.checkout / script)
    return stack.script(name, *args)


@pytest.mark.docker
def test_compose_backup_and_restore_between_checkouts(docker_stack, new_checkout, tmp_path):
    seeded = seed(docker_stack.tracking_uri)
    backup = checkout_script(docker_stack, "backup_mlflow.sh", "--output", str(tmp_path))
    assert backup.returncode == 0, docker_stack.last_output
    (path,) = tmp_path.glob("mlflow-backup-*.tar")
    assert f"Backup written: {path}" in backup.stdout
    target = new_checkout("backup-target")
    try:
        target.start()
        restore = checkout_script(target, "restore_mlflow.sh", str(path))
        assert restore.returncode == 0, target.last_output
        assert_restored(docker_stack.tracking_uri, target.tracking_uri, seeded)
        # The target keeps its own secrets: its server still signs in to MySQL with them.
        assert target.config["MYSQL_PASSWORD"] != docker_stack.config["MYSQL_PASSWORD"]
        target.restart("mlflow")
        assert snapshot(target.tracking_uri, seeded) == snapshot(docker_stack.tracking_uri, seeded)
        again = checkout_script(target, "restore_mlflow.sh", str(path))
        assert again.returncode == 1 and "already holds experiments" in again.stderr
    finally:
        target.stop(delete_data=True)


# -- local mode (SQLite) ------------------------------------------------------------------------------------------
@pytest.fixture
def local_stacks(tmp_path):
    """Two local-mode stacks of this checkout (SQLite, artifacts on disk), each with its own folder and port."""
    made = []

    def make(name: str) -> dict:
        env = {**os.environ, "MLFLOW_STACK_MODE": "local", "MLFLOW_LOCAL_DIR": str(tmp_path / name),
               "MLFLOW_LOCAL_PORT": str(free_port()), "COMPOSE_PROJECT_NAME": f"mlflow-test-{uuid.uuid4().hex[:8]}"}
        made.append(env)
        return env

    yield make
    for env in made:
        subprocess.run(["bash", "stop_mlflow.sh"], cwd=REPO_ROOT, env=env, capture_output=True, timeout=120)


def local_script(env: dict, name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", name, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_local_mode_backup_and_restore(local_stacks, tmp_path):
    source, target = local_stacks("source"), local_stacks("target")
    for env in (source, target):
        started = local_script(env, "start_mlflow.sh")
        assert started.returncode == 0, started.stderr
    source_uri, target_uri = (f"http://127.0.0.1:{env['MLFLOW_LOCAL_PORT']}" for env in (source, target))
    seeded = seed(source_uri)
    backup = local_script(source, "backup_mlflow.sh", "--output", str(tmp_path / "backups"))
    assert backup.returncode == 0, backup.stderr
    (path,) = (tmp_path / "backups").glob("mlflow-backup-*.tar")
    restore = local_script(target, "restore_mlflow.sh", str(path))
    assert restore.returncode == 0, restore.stderr
    assert_restored(source_uri, target_uri, seeded)
    files = {p.relative_to(tmp_path / "source" / "artifacts"): p.read_bytes()
             for p in (tmp_path / "source" / "artifacts").rglob("*") if p.is_file()}
    assert files and all((tmp_path / "target" / "artifacts" / rel).read_bytes() == data for rel, data in files.items())
