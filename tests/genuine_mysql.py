"""Genuine MySQL (Oracle's server, from Debian sid's packages) on this machine, no Docker.

Debian's own releases ship only MariaDB. ``tests/standin_images/mysql/rootfs.sh`` builds a
Debian sid root filesystem holding MySQL once and keeps it outside the repository (the same
one build.sh imports as the genuine-MySQL stand-in image); this module runs its ``mysqld``
chrooted into it, in a mount namespace of its own where the instance's folder (data, socket,
temporary files, settings) is mounted at ``/instance``: the mount vanishes with the server.
The server listens on a free port of 127.0.0.1 only. Needs root, like debootstrap and chroot.

    with GenuineMySQL(tmp_path) as server:
        store = SqlAlchemyStore(server.uri, artifact_root)

or the session fixture ``genuine_mysql`` (conftest.py makes it every test module's).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlflow_stack.local_stack import free_port
from mlflow_stack.settings import REPO_ROOT
from starting import IN_CI

ROOTFS_SCRIPT = REPO_ROOT / "tests" / "standin_images" / "mysql" / "rootfs.sh"
# The stack's server settings, as compose mounts them into the MySQL container.
STACK_CONFIG = REPO_ROOT / "mlflow_docker_setup" / "mysql" / "mlflow.cnf"


class GenuineMySQLError(RuntimeError):
    """The server did not start; the message holds its error log."""


def sid_rootfs(timeout: float = 900) -> tuple[Path, str]:
    """The cached root filesystem (built on first use, about a minute) and the Debian
    version of the MySQL server in it."""
    result = subprocess.run(["bash", str(ROOTFS_SCRIPT)], capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise GenuineMySQLError(f"building the MySQL root filesystem failed:\n{result.stderr[-4000:]}")
    values = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    return Path(values["ROOTFS"]), values["MYSQL_VERSION"]


def _sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


class GenuineMySQL:
    """One MySQL server on 127.0.0.1 with a database and a user of its own, its files in
    ``workdir``; stopped (and its files left for inspection) on exit.

    ``config``: a settings file read first (default: the stack's mlflow.cnf; None: none);
    ``options``: more ``[mysqld]`` settings, after it."""

    MOUNT = "/instance"  # where the instance's folder is seen from inside the root filesystem

    @staticmethod
    def can_run() -> bool:
        """Root is needed: debootstrap, chroot and a mount namespace."""
        return os.geteuid() == 0

    def __init__(self, workdir: Path, database: str = "mlflow", user: str = "mlflow",
                 password: str = "mlflow-test-password", config: Path | None = STACK_CONFIG,
                 options: dict[str, str] | None = None, start_timeout: float = 60) -> None:
        self.workdir = Path(workdir)
        self.database, self.user, self.password = database, user, password
        self.config, self.options = config, dict(options or {})
        self.start_timeout = start_timeout
        self.rootfs: Path | None = None
        self.version = ""  # Debian's version of the server package, e.g. 9.7.4-2
        self.port: int | None = None
        self.process: subprocess.Popen | None = None
        self.timings: dict[str, float] = {}  # seconds: rootfs (build or reuse), initialise, start

    # -- where things are --------------------------------------------------------------
    @property
    def error_log(self) -> Path:
        return self.workdir / "error.log"

    @property
    def socket(self) -> Path:
        """The server's unix socket, as seen from the host."""
        return self.workdir / "run" / "mysqld.sock"

    @property
    def uri(self) -> str:
        """The SQLAlchemy URI the stack's MLflow server uses, for this server."""
        return (f"mysql+pymysql://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"
                "?charset=utf8mb4")

    def logs(self, lines: int = 80) -> str:
        try:
            return "\n".join(self.error_log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no error log)"

    # -- running it --------------------------------------------------------------------
    def _command(self, *mysqld_args: str) -> list[str]:
        """mysqld, chrooted into the root filesystem, with the instance folder mounted in
        a mount namespace of its own (private: nothing shows outside, and it goes with it)."""
        script = 'mount --bind "$1" "$2$3" && shift 3 && exec chroot "$@"'
        return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "_",
                str(self.workdir), str(self.rootfs), self.MOUNT, str(self.rootfs), "/usr/sbin/mysqld",
                f"--defaults-file={self.MOUNT}/my.cnf", "--user=mysql", *mysqld_args]

    def _write_settings(self) -> None:
        m = self.MOUNT
        settings = {
            "datadir": f"{m}/data", "socket": f"{m}/run/mysqld.sock", "pid-file": f"{m}/run/mysqld.pid",
            "tmpdir": f"{m}/tmp", "secure-file-priv": f"{m}/files",
            "bind-address": "127.0.0.1", "port": str(self.port),
            "mysqlx": "OFF",  # the X protocol would listen on port 33060 of every interface
            **self.options,
        }
        text = self.config.read_text() if self.config else ""
        text += "\n# This instance (tests/genuine_mysql.py)\n[mysqld]\n"
        text += "".join(f"{key} = {value}\n" for key, value in settings.items())
        (self.workdir / "my.cnf").write_text(text)

    def _prepare(self) -> None:
        """A fresh instance folder owned by the root filesystem's mysql account."""
        passwd = (self.rootfs / "etc" / "passwd").read_text()
        uid, gid = next(map(int, line.split(":")[2:4]) for line in passwd.splitlines()
                        if line.startswith("mysql:"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)  # the mount's root: the server's account must pass through it
        for name in ("data", "run", "tmp", "files"):
            path = self.workdir / name
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir(mode=0o750)
            os.chown(path, uid, gid)
        self.error_log.unlink(missing_ok=True)

    def start(self) -> "GenuineMySQL":
        if not self.can_run():
            raise GenuineMySQLError("genuine MySQL needs root (debootstrap, chroot, a mount namespace)")
        started = time.monotonic()
        self.rootfs, self.version = sid_rootfs()
        self.timings["rootfs"] = time.monotonic() - started
        for attempt in range(3):  # a port taken between choosing it and binding it: choose again
            self.port = free_port()
            self._prepare()
            self._write_settings()
            started = time.monotonic()
            with self.error_log.open("ab") as log:
                init = subprocess.run(self._command("--initialize-insecure"), stdout=log, stderr=log, timeout=120)
            if init.returncode != 0:
                raise GenuineMySQLError(f"mysqld --initialize-insecure failed (exit {init.returncode}):\n{self.logs()}")
            self.timings["initialise"] = time.monotonic() - started
            started = time.monotonic()
            log = self.error_log.open("ab")
            self.process = subprocess.Popen(self._command(), stdout=log, stderr=log)
            log.close()
            try:
                self._wait_until_ready()
            except GenuineMySQLError:
                self.stop()
                if "already in use" in self.logs() and attempt < 2:
                    continue
                raise
            self.timings["start"] = time.monotonic() - started
            break
        self._create_database_and_user()
        return self

    def _root_connection(self):
        import pymysql

        # root@localhost has no password yet (--initialize-insecure), reached on the socket only.
        return pymysql.connect(unix_socket=str(self.socket), user="root", connect_timeout=5, autocommit=True)

    def _wait_until_ready(self) -> None:
        import pymysql

        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise GenuineMySQLError(f"mysqld exited with {self.process.returncode}:\n{self.logs()}")
            if self.socket.exists():
                try:
                    self._root_connection().close()
                    return
                except pymysql.err.OperationalError:
                    pass
            time.sleep(0.1)
        raise GenuineMySQLError(f"mysqld did not answer within {self.start_timeout:.0f} s:\n{self.logs()}")

    def _create_database_and_user(self) -> None:
        user = f"{_sql_string(self.user)}@'%'"
        with self._root_connection() as connection, connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{self.database}`")
            cursor.execute(f"CREATE USER {user} IDENTIFIED BY {_sql_string(self.password)}")
            cursor.execute(f"GRANT ALL ON `{self.database}`.* TO {user}")

    def query(self, sql: str) -> list[tuple]:
        """Rows of one statement run as root (on the socket)."""
        with self._root_connection() as connection, connection.cursor() as cursor:
            cursor.execute(sql)
            return list(cursor.fetchall())

    def stop(self, timeout: float = 60) -> None:
        """A clean shutdown (SIGTERM), killed if it takes longer than ``timeout``."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def __enter__(self) -> "GenuineMySQL":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:  # as testcontainers does: the server's side of a failure
            print(f"\n--- genuine MySQL error log ({self.error_log}) ---\n{self.logs()}", file=sys.stderr)
        self.stop()


@pytest.fixture(scope="session")
def genuine_mysql(tmp_path_factory):
    """A genuine MySQL server for the session, with the stack's settings (mlflow.cnf) and
    nothing more; skipped without root, except in CI."""
    if not GenuineMySQL.can_run():
        (pytest.fail if IN_CI else pytest.skip)("genuine MySQL needs root (debootstrap, chroot)")
    server = GenuineMySQL(tmp_path_factory.mktemp("genuine-mysql"))
    try:
        server.start()
    except GenuineMySQLError as error:
        server.stop()
        pytest.fail(f"genuine MySQL did not start: {error}", pytrace=False)
    print(f"\ngenuine MySQL {server.version} on 127.0.0.1:{server.port} "
          + ", ".join(f"{k} {v:.1f} s" for k, v in server.timings.items()))
    yield server
    server.stop()
