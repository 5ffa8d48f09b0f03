"""Back up a tracking stack into one archive, and restore it into a fresh stack.

    python -m mlflow_stack.backup create --output DIR STACK-OPTIONS
    python -m mlflow_stack.backup restore ARCHIVE [--overwrite] STACK-OPTIONS
    python -m mlflow_stack.backup verify ARCHIVE

``backup_mlflow.sh`` and ``restore_mlflow.sh`` pass the STACK-OPTIONS of the checkout's
own stack (compose or local mode); the tests pass the twin's addresses.

The archive is a tar file: the backend store (a mysqldump taken in one transaction, or
SQLite's online backup), then every artifact object, listed after the dump so every
object the dump references is in it, then ``manifest.json`` (MLflow version, schema
revision, rows per table, size and sha256 of every member and object), and last
``archive.sha256``: the sha256 of every byte before it. Restoring checks that checksum and
the manifest before it writes anything, refuses an archive from a newer MLflow and a
target that already holds records (unless ``--overwrite``), and runs ``mlflow db upgrade``
after restoring an archive from an older MLflow. The dump holds tables and rows only: the
target keeps its own database users and secrets.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.metadata
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Iterator

from packaging.version import Version

FORMAT = 1
MANIFEST = "manifest.json"
CHECKSUM = "archive.sha256"
ARTIFACTS = "artifacts/"
CHUNK = 1024 * 1024
# In a mysqldump INSERT: a quoted value (skipped whole, escapes and all), or where a row
# starts: after VALUES, after the "),(" between rows, or at a line's start (MariaDB puts
# each row of an extended INSERT on a line of its own; MySQL all on one).
QUOTED_OR_ROW_START = re.compile(rb"'(?:[^'\\]|\\.)*'|^\(|VALUES \(|\),\(")
# A fresh stack holds only MLflow's "Default" experiment; any other record makes it non-empty.
RECORD_TABLES = ("runs", "registered_models", "logged_models")


class BackupError(RuntimeError):
    """What went wrong and what to do, in one line for the user."""


# -- the archive ---------------------------------------------------------------------------------
class _HashingWriter:
    """The archive file, hashing every byte tarfile writes (the archive's own checksum)."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file, self.sha256, self.position = file, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.position += len(data)
        return self.file.write(data)

    def tell(self) -> int:
        return self.position


class _HashingReader:
    """A member's bytes on their way into the archive, hashed as they pass."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream, self.sha256 = stream, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.sha256.update(data)
        return data


class ArchiveWriter:
    """Writes ``PATH.partial`` and renames it to PATH once sealed: an interrupted backup
    never leaves a file that looks like an archive."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.file = open(self.partial, "wb")
        self.hashing = _HashingWriter(self.file)
        self.tar = tarfile.open(fileobj=self.hashing, mode="w", format=tarfile.PAX_FORMAT)

    def add_stream(self, name: str, stream: IO[bytes], size: int) -> dict:
        info = tarfile.TarInfo(name)
        info.size, info.mtime = size, int(time.time())
        reader = _HashingReader(stream)
        self.tar.addfile(info, reader)
        return {"size": size, "sha256": reader.sha256.hexdigest()}

    def add_file(self, name: str, path: Path) -> dict:
        with open(path, "rb") as stream:
            return self.add_stream(name, stream, path.stat().st_size)

    def seal(self, manifest: dict) -> Path:
        data = json.dumps(manifest, indent=1).encode()
        self.add_stream(MANIFEST, io.BytesIO(data), len(data))
        digest = self.hashing.sha256.hexdigest().encode()  # every byte so far
        self.add_stream(CHECKSUM, io.BytesIO(digest), len(digest))
        self.tar.close()
        self.file.close()
        self.partial.rename(self.path)
        return self.path

    def discard(self) -> None:
        self.file.close()
        self.partial.unlink(missing_ok=True)


def open_verified(path: Path) -> tuple[tarfile.TarFile, dict]:
    """The archive and its manifest, once its checksum and members are found intact."""
    damaged = f"{path} is damaged ({{}}): use another copy of the backup"
    if not Path(path).is_file():
        raise BackupError(f"{path} not found: name an archive written by backup_mlflow.sh")
    try:
        tar = tarfile.open(path, mode="r:")
        members = tar.getmembers()
    except (tarfile.TarError, EOFError, OSError) as error:
        raise BackupError(damaged.format(f"truncated or not a tar file: {error}")) from None
    if not members or members[-1].name != CHECKSUM:
        raise BackupError(damaged.format("its checksum is missing: truncated or not a backup"))
    recorded = tar.extractfile(members[-1]).read().decode(errors="replace").strip()
    sha256 = hashlib.sha256()
    with open(path, "rb") as file:
        remaining = members[-1].offset
        while remaining:
            chunk = file.read(min(CHUNK, remaining))
            if not chunk:
                break
            sha256.update(chunk)
            remaining -= len(chunk)
    if sha256.hexdigest() != recorded:
        raise BackupError(damaged.format("its checksum does not match: truncated or changed since the backup"))
    manifest = json.loads(tar.extractfile(MANIFEST).read())
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{path} has archive format {manifest.get('format')}, this version reads {FORMAT}: "
                          "restore it with the checkout that wrote it")
    expected = {**manifest["database"]["files"],
                **{ARTIFACTS + o["key"]: o for o in manifest["artifacts"]["objects"]}}
    found = {m.name: m.size for m in members if m.name not in (MANIFEST, CHECKSUM)}
    if found.keys() != expected.keys() or any(found[n] != e["size"] for n, e in expected.items()):
        raise BackupError(damaged.format("its members differ from its manifest"))
    return tar, manifest


# -- backend stores ---------------------------------------------------------------------------------
@dataclass
class Dump:
    """One database of the backend store, written to a file, with its rows per table."""

    database: str
    path: Path
    tables: dict[str, int]
    revision: str | None


class MySQLStore:
    """A MySQL/MariaDB backend store, reached with the mysql/mysqldump clients.

    The tracking database and, when it exists (a shared stack), the auth database."""

    kind = "mysql"
    client_env: dict[str, str] = {}  # what the client tools read besides their arguments (a password)

    def __init__(self, database: str, auth_database: str | None) -> None:
        self.database, self.auth_database = database, auth_database

    def client(self, tool: str, *args: str) -> list[str]:
        """The command line that runs one of the MySQL client tools against this server."""
        raise NotImplementedError

    def run(self, tool: str, *args: str) -> str:
        result = subprocess.run(self.client(tool, *args), capture_output=True,
                                env={**os.environ, **self.client_env}, timeout=600)
        if result.returncode != 0:
            raise BackupError(f"{tool} failed: {_last_line(result.stderr)}")
        return result.stdout.decode()

    def query(self, database: str | None, sql: str) -> list[list[str]]:
        out = self.run("mysql", "--batch", "--skip-column-names", f"--execute={sql}", *([database] if database else []))
        return [line.split("\t") for line in out.splitlines()]

    def databases(self) -> list[str]:
        present = {row[0] for row in self.query(None, "SHOW DATABASES")}
        return [self.database] + ([self.auth_database] if self.auth_database in present else [])

    def tables(self, database: str) -> dict[str, int]:
        names = [row[0] for row in self.query(database, "SELECT table_name FROM information_schema.tables "
                                                        "WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE'")]
        if not names:
            return {}
        sql = " UNION ALL ".join(f"SELECT '{name}', COUNT(*) FROM `{name}`" for name in names)
        return {name: int(count) for name, count in self.query(database, sql)}

    def dump(self, workdir: Path) -> list[Dump]:
        return [self._dump_one(database, workdir / f"{database}.sql.gz") for database in self.databases()]

    def _dump_one(self, database: str, path: Path) -> Dump:
        """mysqldump in one transaction, gzipped, its rows counted as they pass (a restore
        commits once per table: --no-autocommit)."""
        tables: dict[str, int] = {}
        revision = None
        inserting = None  # the table whose INSERT statement the lines belong to
        with tempfile.TemporaryFile() as errors, gzip.open(path, "wb", compresslevel=3) as out:
            process = subprocess.Popen(
                self.client("mysqldump", "--single-transaction", "--skip-lock-tables", "--no-tablespaces",
                            "--no-autocommit", "--hex-blob", "--skip-dump-date",
                            "--default-character-set=utf8mb4", database),
                stdout=subprocess.PIPE, stderr=errors, env={**os.environ, **self.client_env})
            for line in process.stdout:
                out.write(line)
                if line.startswith(b"CREATE TABLE `"):
                    tables.setdefault(line.split(b"`")[1].decode(), 0)
                elif line.startswith(b"INSERT INTO `"):
                    inserting = line.split(b"`")[1].decode()
                if inserting is None:
                    continue
                tokens = QUOTED_OR_ROW_START.findall(line)
                tables[inserting] = tables.get(inserting, 0) + sum(1 for t in tokens if not t.startswith(b"'"))
                if inserting == "alembic_version" and revision is None:
                    revision = next((t[1:-1].decode() for t in tokens if t.startswith(b"'")), None)
                if line.rstrip().endswith(b";"):
                    inserting = None
            if process.wait() != 0:
                errors.seek(0)
                raise BackupError(f"mysqldump of {database} failed: {_last_line(errors.read())}")
        return Dump(database, path, tables, revision)

    def load(self, database: str, path: Path) -> None:
        """Replace every table of ``database`` by the dump's: tables the dump lacks (a newer
        schema's) are dropped too, so ``mlflow db upgrade`` can recreate them."""
        present = list(self.tables(database))
        drop = f"DROP TABLE IF EXISTS {', '.join(f'`{t}`' for t in present)};\n" if present else ""
        with tempfile.TemporaryFile() as errors:
            process = subprocess.Popen(self.client("mysql", "--default-character-set=utf8mb4", database),
                                       stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors,
                                       env={**os.environ, **self.client_env})
            try:
                process.stdin.write(f"SET FOREIGN_KEY_CHECKS=0;\n{drop}".encode())
                with gzip.open(path, "rb") as dump:
                    shutil.copyfileobj(dump, process.stdin, CHUNK)
                process.stdin.close()
            except BrokenPipeError:
                pass  # the client stopped on an error: reported below
            if process.wait() != 0:
                errors.seek(0)
                raise BackupError(f"loading the dump into {database} failed: {_last_line(errors.read())}")


class HostMySQL(MySQLStore):
    """A server on a TCP port (the twin's MariaDB), with this machine's client tools;
    the password travels in MYSQL_PWD, never on a command line."""

    def __init__(self, host: str, port: int, user: str, password: str, database: str,
                 auth_database: str | None) -> None:
        super().__init__(database, auth_database)
        self.host, self.port, self.user = host, port, user
        self.client_env = {"MYSQL_PWD": password}
        self.uri = f"mysql+pymysql://{user}:{password}@{host}:{port}/{database}?charset=utf8mb4"

    def client(self, tool: str, *args: str) -> list[str]:
        return [tool, f"--host={self.host}", f"--port={self.port}", f"--user={self.user}", *args]


class ContainerMySQL(MySQLStore):
    """The compose stack's MySQL container, with the clients inside it, as root with the
    root password of the container's own environment: no secret leaves the container."""

    def __init__(self, container: str, auth_database: str | None) -> None:
        self.container = container
        super().__init__(_docker_exec(container, "printenv", "MYSQL_DATABASE"), auth_database)

    def client(self, tool: str, *args: str) -> list[str]:
        return ["docker", "exec", "-i", self.container, "sh", "-c",
                'MYSQL_PWD="$MYSQL_ROOT_PASSWORD" exec "$@"', "sh", tool, "--user=root", *args]


class SQLiteStore:
    """Local mode's backend store: a SQLite file, copied with SQLite's online backup API
    (a consistent snapshot while the server writes)."""

    kind = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.database = self.path.stem
        self.uri = f"sqlite:///{self.path}"

    def databases(self) -> list[str]:
        return [self.database]

    def tables(self, _database: str | None = None) -> dict[str, int]:
        if not self.path.exists():
            return {}
        with _sqlite(self.path) as db:
            names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            return {name: db.execute(f'SELECT COUNT(*) FROM "{name}"').fetchone()[0] for name in names}

    def dump(self, workdir: Path) -> list[Dump]:
        if not self.path.is_file():  # sqlite3 would create an empty one
            raise BackupError(f"no backend store at {self.path}: start the stack once (bash start_mlflow.sh)")
        copy = workdir / "mlflow.db"
        with _sqlite(self.path) as source, _sqlite(copy) as target:
            source.backup(target)
        tables = SQLiteStore(copy).tables()
        with _sqlite(copy) as db:
            revision = db.execute("SELECT version_num FROM alembic_version").fetchone()[0]
        return [Dump(self.path.stem, copy, tables, revision)]

    def load(self, _database: str, path: Path) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _sqlite(path) as source, _sqlite(self.path) as target:
            source.backup(target)  # replaces every page, under the target's write lock


def _sqlite(path: Path):
    return _closing(sqlite3.connect(path, timeout=60))


class _closing:
    """sqlite3's own context manager commits but never closes."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def __enter__(self) -> sqlite3.Connection:
        return self.connection

    def __exit__(self, *exc_info) -> None:
        self.connection.close()


# -- artifact stores -----------------------------------------------------------------------------
class S3Artifacts:
    """Every object of the stack's bucket (MinIO, or the twin's S3 server)."""

    def __init__(self, endpoint_url: str, bucket: str, credentials: dict[str, str]) -> None:
        from .local_stack import s3_client

        os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
        self.s3, self.bucket = s3_client(endpoint_url, credentials), bucket

    def objects(self) -> Iterator[tuple[str, int]]:
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for item in page.get("Contents", []):
                yield item["Key"], item["Size"]

    def open(self, key: str) -> tuple[IO[bytes], int]:
        response = self.s3.get_object(Bucket=self.bucket, Key=key)
        return response["Body"], response["ContentLength"]

    def put(self, key: str, stream: IO[bytes]) -> None:
        self.s3.upload_fileobj(stream, self.bucket, key)


class DirectoryArtifacts:
    """Local mode's artifact store: files under a folder, keyed by their relative path."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def objects(self) -> Iterator[tuple[str, int]]:
        for path in sorted(p for p in self.root.rglob("*") if p.is_file()):
            yield path.relative_to(self.root).as_posix(), path.stat().st_size

    def open(self, key: str) -> tuple[IO[bytes], int]:
        path = self.root / key
        return open(path, "rb"), path.stat().st_size

    def put(self, key: str, stream: IO[bytes]) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as out:
            shutil.copyfileobj(stream, out, CHUNK)


# -- the MLflow server -------------------------------------------------------------------------------
class HostServer:
    """A server run by this Python's MLflow (the twin, local mode)."""

    def __init__(self, backend_store_uri: str) -> None:
        self.backend_store_uri = backend_store_uri

    def version(self) -> str:
        return importlib.metadata.version("mlflow")

    def upgrade_database(self) -> None:
        from mlflow.db import upgrade

        upgrade.callback(self.backend_store_uri)  # what `mlflow db upgrade URL` runs, minus the URL in argv


class ContainerServer:
    """The compose stack's MLflow container."""

    def __init__(self, container: str) -> None:
        self.container = container

    def version(self) -> str:
        return _docker_exec(self.container, "python", "-c",
                            "import importlib.metadata as m; print(m.version('mlflow'))")

    def upgrade_database(self) -> None:
        _docker_exec(self.container, "sh", "-c", 'exec mlflow db upgrade "$MLFLOW_BACKEND_STORE_URI"')


def _docker_exec(container: str, *argv: str) -> str:
    result = subprocess.run(["docker", "exec", container, *argv], capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise BackupError(f"{argv[0]} in container {container[:12]} failed: {_last_line(result.stderr)}")
    return result.stdout.strip()


def _last_line(output: bytes | str) -> str:
    text = output.decode(errors="replace") if isinstance(output, bytes) else output
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no error message"


@dataclass
class Stack:
    """What a backup reads and a restore writes: backend store, artifact store, server."""

    database: MySQLStore | SQLiteStore
    artifacts: S3Artifacts | DirectoryArtifacts
    server: HostServer | ContainerServer

    def records(self) -> int:
        """Experiments beyond "Default", runs, registered and logged models, artifact objects."""
        tables = self.database.tables(self.database.database)
        count = max(0, tables.get("experiments", 0) - 1) + sum(tables.get(t, 0) for t in RECORD_TABLES)
        return count + next((1 for _ in self.artifacts.objects()), 0)


def twin_stack(twin) -> Stack:
    """What a backup reads of a running twin (``LocalStack``): the tests' and benchmark's."""
    c = twin.config
    database = HostMySQL("127.0.0.1", twin.mysql_port, c["MYSQL_USER"], c["MYSQL_PASSWORD"], c["MYSQL_DATABASE"],
                         c["MLFLOW_AUTH_DATABASE"])
    return Stack(database, S3Artifacts(twin.s3_endpoint_url, twin.bucket, twin.s3_credentials),
                 HostServer(database.uri))


# -- backup and restore ----------------------------------------------------------------------------
def create_backup(stack: Stack, output_dir: Path) -> Path:
    """Write one dated archive of the stack into ``output_dir``; return its path."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    created = datetime.now(timezone.utc)
    archive = ArchiveWriter(output_dir / f"mlflow-backup-{created:%Y%m%d-%H%M%S}.tar")
    try:
        with tempfile.TemporaryDirectory(dir=output_dir, prefix=".backup-") as workdir:
            dumps = stack.database.dump(Path(workdir))
            files = {}
            for dump in dumps:
                files[f"database/{dump.path.name}"] = archive.add_file(f"database/{dump.path.name}", dump.path)
                dump.path.unlink()
            # Listed after the dump: every object a dumped record points to is already stored.
            objects = []
            for key, _ in stack.artifacts.objects():
                stream, size = stack.artifacts.open(key)
                with stream:
                    objects.append({"key": key, **archive.add_stream(ARTIFACTS + key, stream, size)})
        manifest = {
            "format": FORMAT, "created": created.isoformat(timespec="seconds"),
            "mlflow_version": stack.server.version(), "schema_revision": dumps[0].revision,
            "database": {"kind": stack.database.kind, "files": files,
                         "databases": [{"name": d.database, "file": f"database/{d.path.name}", "tables": d.tables}
                                       for d in dumps]},
            "artifacts": {"count": len(objects), "bytes": sum(o["size"] for o in objects), "objects": objects},
        }
        return archive.seal(manifest)
    except BaseException:
        archive.discard()
        raise


def restore_backup(path: Path, stack: Stack, overwrite: bool = False) -> dict:
    """Restore an archive into the stack; every check runs before the first write."""
    try:
        tar, manifest = open_verified(Path(path))
    except BackupError as error:
        raise BackupError(f"{error}; nothing was restored") from None
    with tar:
        if manifest["database"]["kind"] != stack.database.kind:
            raise BackupError(f"{path} holds a {manifest['database']['kind']} backend store and this stack's is "
                              f"{stack.database.kind}: restore it into a stack of the same kind")
        archived, running = Version(manifest["mlflow_version"]), Version(stack.server.version())
        if archived > running:
            raise BackupError(f"{path} was made by MLflow {archived}, newer than this stack's {running}: "
                              "upgrade the stack first (docs/operations.md, \"Upgrading\"), then restore")
        if not overwrite and stack.records():
            raise BackupError("this stack already holds experiments, runs, models or artifacts: restore into a "
                              "fresh stack, or pass --overwrite to replace its records")
        tracking, *others = manifest["database"]["databases"]
        with tempfile.TemporaryDirectory(prefix="mlflow-restore-") as workdir:
            for entry in [tracking, *others]:
                target = stack.database.database if entry is tracking else entry["name"]
                if entry is not tracking and target not in stack.database.databases():
                    print(f"restore: the auth database {target} was not restored: this stack is not shared",
                          file=sys.stderr)
                    continue
                local = Path(workdir) / Path(entry["file"]).name
                with tar.extractfile(entry["file"]) as member, open(local, "wb") as out:
                    shutil.copyfileobj(member, out, CHUNK)
                stack.database.load(target, local)
                local.unlink()
                restored = stack.database.tables(target)
                if restored != entry["tables"]:
                    differ = sorted(t for t in entry["tables"].keys() | restored.keys()
                                    if entry["tables"].get(t) != restored.get(t))
                    raise BackupError(f"after loading {target}, these tables' row counts differ from the archive's: "
                                      f"{', '.join(differ)}")
        for item in manifest["artifacts"]["objects"]:
            with tar.extractfile(ARTIFACTS + item["key"]) as member:
                stack.artifacts.put(item["key"], member)
        sizes = dict(stack.artifacts.objects())
        missing = [o["key"] for o in manifest["artifacts"]["objects"] if sizes.get(o["key"]) != o["size"]]
        if missing:
            raise BackupError(f"{len(missing)} artifact objects did not arrive intact, e.g. {missing[0]}")
        upgraded = archived < running
        if upgraded:
            stack.server.upgrade_database()
    return {"mlflow_version": str(archived), "upgraded_to": str(running) if upgraded else None,
            "rows": sum(tracking["tables"].values()), "objects": manifest["artifacts"]["count"]}


# -- command line ------------------------------------------------------------------------------------
def stack_from_args(args: argparse.Namespace) -> Stack:
    if args.sqlite:
        database = SQLiteStore(args.sqlite)
    elif args.mysql_container:
        database = ContainerMySQL(args.mysql_container, args.auth_database)
    elif args.mysql_host:
        host, _, port = args.mysql_host.rpartition(":")
        database = HostMySQL(host, int(port), args.mysql_user, os.environ.get("MYSQL_PWD", ""),
                             args.database, args.auth_database)
    else:
        raise BackupError("name the backend store: --mysql-container, --mysql-host HOST:PORT or --sqlite FILE")
    if args.artifacts_dir:
        artifacts = DirectoryArtifacts(args.artifacts_dir)
    elif args.s3_endpoint_url:
        credentials = {"aws_access_key_id": os.environ.get("AWS_ACCESS_KEY_ID"),
                       "aws_secret_access_key": os.environ.get("AWS_SECRET_ACCESS_KEY")}
        artifacts = S3Artifacts(args.s3_endpoint_url, args.bucket, credentials)
    else:
        raise BackupError("name the artifact store: --s3-endpoint-url URL (with --bucket) or --artifacts-dir DIR")
    if args.mlflow_container:
        server = ContainerServer(args.mlflow_container)
    elif args.mysql_container:
        raise BackupError("--mysql-container needs --mlflow-container (the server that runs `mlflow db upgrade`)")
    else:
        server = HostServer(database.uri)
    return Stack(database, artifacts, server)


def parser() -> argparse.ArgumentParser:
    stack = argparse.ArgumentParser(add_help=False)
    group = stack.add_argument_group("the stack (one backend store, one artifact store)")
    group.add_argument("--mysql-container", help="compose: the MySQL container (clients run inside it)")
    group.add_argument("--mysql-host", help="HOST:PORT of a MySQL server (password in MYSQL_PWD)")
    group.add_argument("--mysql-user", default="mlflow")
    group.add_argument("--database", default="mlflow", help="the tracking database (--mysql-host)")
    group.add_argument("--auth-database", default="mlflow_auth", help="a shared stack's users, kept when present")
    group.add_argument("--sqlite", type=Path, help="local mode: the SQLite backend store")
    group.add_argument("--s3-endpoint-url", help="the artifact store's S3 endpoint (keys in AWS_ACCESS_KEY_ID, "
                                                 "AWS_SECRET_ACCESS_KEY)")
    group.add_argument("--bucket", default="mlflow")
    group.add_argument("--artifacts-dir", type=Path, help="local mode: the artifact folder")
    group.add_argument("--mlflow-container", help="compose: the MLflow container (else this Python's MLflow)")
    main = argparse.ArgumentParser(prog="python -m mlflow_stack.backup", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = main.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", parents=[stack], help="write a dated archive of the stack")
    create.add_argument("--output", type=Path, default=Path("backups"), help="folder for the archive (./backups)")
    restore = commands.add_parser("restore", parents=[stack], help="restore an archive into a fresh stack")
    restore.add_argument("archive", type=Path)
    restore.add_argument("--overwrite", action="store_true", help="replace the records of a non-empty stack")
    verify = commands.add_parser("verify", help="check an archive's checksum and manifest")
    verify.add_argument("archive", type=Path)
    return main


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    started = time.monotonic()
    try:
        if args.command == "create":
            path = create_backup(stack_from_args(args), args.output)
            tar, manifest = open_verified(path)  # read back once: a backup is only as good as its archive
            tar.close()
            rows = sum(t for d in manifest["database"]["databases"] for t in d["tables"].values())
            print(f"Backup written: {path} ({path.stat().st_size / 2**20:.1f} MiB; {rows} rows, "
                  f"{manifest['artifacts']['count']} artifact objects; MLflow {manifest['mlflow_version']}; "
                  f"{time.monotonic() - started:.1f} s)")
        elif args.command == "restore":
            summary = restore_backup(args.archive, stack_from_args(args), args.overwrite)
            upgraded = f"; database upgraded to MLflow {summary['upgraded_to']}" if summary["upgraded_to"] else ""
            print(f"Restored {args.archive}: {summary['rows']} rows, {summary['objects']} artifact objects, "
                  f"from MLflow {summary['mlflow_version']}{upgraded} ({time.monotonic() - started:.1f} s)")
        else:
            tar, manifest = open_verified(args.archive)
            tar.close()
            print(f"{args.archive} is intact: made {manifest['created']} by MLflow {manifest['mlflow_version']}, "
                  f"{manifest['artifacts']['count']} artifact objects")
    except BackupError as error:
        print(f"{args.command}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
