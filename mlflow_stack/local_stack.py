"""The compose stack's no-Docker twin: the same components as local processes.

MariaDB (a real MySQL server) stands in for the MySQL container, moto's S3 server for
MinIO (MinIO has no package here), and the MLflow server and nginx run from the very
files the compose services use: ``mlflow_docker_setup/mlflow/serve.sh`` for the
server's flags, the templates in ``mlflow_docker_setup/nginx/`` for nginx and
``mlflow_docker_setup/mysql/mlflow.cnf`` for the database. Everything listens on free
loopback ports and lives in one working directory. Secrets come from the checkout's
``mlflow_docker_setup/secrets/`` unless another folder is given.

    with LocalStack(workdir).start() as stack:
        mlflow.set_tracking_uri(stack.tracking_uri)

``share=True`` runs it as a shared compose stack runs: MLflow's basic-auth app with its
own database, nginx serving HTTPS (on loopback still) with the shared site.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .settings import SECRETS_DIR, STACK_DIR, stack_env
from .stack_secrets import check_shareable, ensure_tls

SERVE_SCRIPT = STACK_DIR / "mlflow" / "serve.sh"
NGINX_TEMPLATE = STACK_DIR / "nginx" / "default.conf.template"
NGINX_SHARED_TEMPLATE = STACK_DIR / "nginx" / "shared.conf.template"
NGINX_PROXY_CONFIG = STACK_DIR / "nginx" / "mlflow-proxy.conf"
MYSQL_CONFIG = STACK_DIR / "mysql" / "mlflow.cnf"
AUTH_SCHEMA = STACK_DIR / "mysql" / "auth-schema.sql"


class StackStartError(RuntimeError):
    """A service did not become healthy; the message carries every service's log."""


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports: all held open while choosing, so none repeats."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def free_port() -> int:
    return free_ports(1)[0]


def s3_client(endpoint_url: str, credentials: dict[str, str]):
    """A boto3 S3 client for a stack's endpoint, with its access key pair."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint_url, region_name="us-east-1",
                        config=Config(retries={"max_attempts": 2}), **credentials)


class S3Access:
    """A boto3 client for a stack's artifact store; the stack gives the endpoint and keys."""

    s3_endpoint_url: str
    s3_credentials: dict[str, str]

    def s3_client(self):
        return s3_client(self.s3_endpoint_url, self.s3_credentials)

    @property
    def s3_env(self) -> dict[str, str]:
        """The variables that let a process write to the bucket itself: the MLflow server's,
        and a client's for the book's way (an experiment whose artifact location is s3://)."""
        return {"MLFLOW_S3_ENDPOINT_URL": self.s3_endpoint_url,
                "AWS_ACCESS_KEY_ID": self.s3_credentials["aws_access_key_id"],
                "AWS_SECRET_ACCESS_KEY": self.s3_credentials["aws_secret_access_key"]}


class SharedAccess:
    """How a client reaches a shared stack: its CA and first admin (``share`` stacks only)."""

    share: bool
    ca_file: Path | None
    config: dict[str, str]

    def ssl_context(self) -> ssl.SSLContext | None:
        """What a client that trusts the stack's CA uses (None when not shared)."""
        return ssl.create_default_context(cafile=str(self.ca_file)) if self.share else None

    @property
    def admin_credentials(self) -> tuple[str, str]:
        return "admin", self.config["MLFLOW_ADMIN_PASSWORD"]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return response.status == 200
    except OSError:
        return False


def render_nginx_template(values: dict[str, str], template: Path = NGINX_TEMPLATE) -> str:
    """Substitute like the nginx image's envsubst: only the given ``${VARIABLES}``."""
    text = template.read_text()
    for name, value in values.items():
        text = text.replace("${" + name + "}", value)
    return text


@dataclass
class Service:
    """One long-running process with its own log file and process group."""

    name: str
    argv: list[str]
    log_path: Path
    ready: Callable[[], bool]
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.argv,
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # own process group: stop() reaches its workers too
        )
        log.close()

    def wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise StackStartError(
                    f"{self.name} exited with code {self.process.returncode} during start-up"
                )
            if self.ready():
                return
            time.sleep(0.2)
        raise StackStartError(f"{self.name} was not healthy in time")

    def stop(self, timeout: float = 20) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            pass

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def serve_script_service(env: dict[str, str], port: int, log_path: Path, python: Path = Path(sys.executable),
                         argv: list[str] | None = None, name: str = "mlflow") -> Service:
    """An MLflow server on 127.0.0.1:`port`, run by serve.sh (or `argv`) with the `mlflow` of
    `python`'s environment, `env` added to this one's; not yet started. serve.sh's private
    files go beside the log unless `env` names MLFLOW_RUNTIME_DIR."""
    if "MLFLOW_RUNTIME_DIR" not in env:
        runtime_dir = log_path.with_name(log_path.stem + ".run")
        runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        env = {**env, "MLFLOW_RUNTIME_DIR": str(runtime_dir)}
    return Service(name=name, argv=argv or ["sh", str(SERVE_SCRIPT)], log_path=log_path,
                   ready=lambda: http_ok(f"http://127.0.0.1:{port}/health"),
                   env={**env, "MLFLOW_HOST": "127.0.0.1", "MLFLOW_PORT": str(port),
                        "PATH": f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}"})


class Outages:
    """Fault injection, for tests and benchmarks/outages.py: a stack's ``take_down(name)``
    and ``bring_back(name)`` (waiting until healthy), for the services named below."""

    OUTAGE_SERVICES = ("nginx", "mlflow", "database", "s3")

    def outage(self, name: str, seconds: float) -> float:
        """Take ``name`` down for ``seconds``, bring it back; return how long it was down,
        start-up included."""
        started = time.monotonic()
        self.take_down(name)
        try:
            time.sleep(seconds)
        finally:
            self.bring_back(name)
        return time.monotonic() - started


class LocalStack(S3Access, SharedAccess, Outages):
    """MariaDB + S3 endpoint + MLflow server + nginx on free loopback ports."""

    def __init__(self, workdir: Path, startup_timeout: float = 120, share: bool = False,
                 secrets_dir: Path = SECRETS_DIR, overrides: dict[str, str] | None = None) -> None:
        self.workdir = Path(workdir)
        self.startup_timeout = startup_timeout
        self.share = share
        self.secrets_dir = Path(secrets_dir)
        # overrides play the environment's part: they win over .env and the secrets file.
        self.config = {**stack_env(self.secrets_dir, generate=True), **(overrides or {})}
        self.bucket = self.config["MLFLOW_BUCKET"]
        self.mysql_port, self.s3_port, self.mlflow_port, self.nginx_port, self.https_port = free_ports(5)
        self._root_password = self.config["MYSQL_ROOT_PASSWORD"]  # "" while a new data folder has none yet
        # serve.sh's files while the server runs (the auth config with its secrets, the
        # metrics folder): removed at stop.
        self.runtime_dir = self.workdir / "run"
        self.s3_credentials: dict[str, str] = {}
        self.services: dict[str, Service] = {}
        self.startup_seconds: float | None = None
        self.ca_file: Path | None = None  # what clients trust when shared

    # -- addresses clients use -------------------------------------------------------
    @property
    def tracking_uri(self) -> str:
        """Through nginx, as users reach the compose stack (http://localhost/, or HTTPS shared)."""
        if self.share:
            return f"https://127.0.0.1:{self.https_port}"
        return f"http://127.0.0.1:{self.nginx_port}"

    @property
    def mlflow_uri(self) -> str:
        """The tracking server itself, bypassing nginx."""
        return f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def s3_endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def backend_store_uri(self) -> str:
        return self._database_uri(self.config["MYSQL_DATABASE"])

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> "LocalStack":
        """Start every service in dependency order; on any failure stop all and raise."""
        started = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.share:  # refused before anything starts, as start_mlflow.sh does
            check_shareable(self.config)
            cert, key, self.ca_file = ensure_tls(self.secrets_dir, self.config.get("MLFLOW_TLS_CERT"),
                                                 self.config.get("MLFLOW_TLS_KEY"))
            self.tls_pair = (cert, key)
        try:
            self._start_database()
            self._start_s3()
            self._start_mlflow()
            self._start_nginx()
        except BaseException as error:
            logs = self.logs()
            self.stop()
            if isinstance(error, StackStartError):
                raise StackStartError(f"{error}\n\n{logs}") from error
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        for service in reversed(list(self.services.values())):
            service.stop()
        shutil.rmtree(self.runtime_dir, ignore_errors=True)

    def restart(self, name: str) -> None:
        """Restart one service (``database`` or ``mlflow``) and wait until it is healthy."""
        service = self.services[name]
        service.stop()
        service.start()
        service.wait_ready(time.monotonic() + self.startup_timeout)

    # -- outages, for tests and benchmarks/outages.py ------------------------------------
    def take_down(self, name: str) -> None:
        """Make one service stop answering. The S3 store is frozen (SIGSTOP) rather than
        stopped: moto keeps its objects in memory, so a stopped one would come back empty.
        Its clients then wait instead of being refused, as with a hung or unreachable store."""
        service = self.services[name]
        if name == "s3":
            os.killpg(service.process.pid, signal.SIGSTOP)
        else:
            service.stop()

    def bring_back(self, name: str) -> None:
        """Undo :meth:`take_down` and wait until the service is healthy again."""
        service = self.services[name]
        if name == "s3":
            os.killpg(service.process.pid, signal.SIGCONT)
        else:
            service.start()
        service.wait_ready(time.monotonic() + self.startup_timeout)

    def server_command(self) -> str:
        """The MLflow server's command line (serve.sh execs it, so it is our process)."""
        raw = Path(f"/proc/{self.services['mlflow'].process.pid}/cmdline").read_bytes()
        return raw.replace(b"\0", b" ").decode().strip()

    def logs(self) -> str:
        return "\n\n".join(
            f"===== {name} ({service.log_path}) =====\n{service.log_tail()}"
            for name, service in self.services.items()
        )

    def __enter__(self) -> "LocalStack":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _launch(self, service: Service) -> None:
        self.services[service.name] = service
        service.start()
        service.wait_ready(time.monotonic() + self.startup_timeout)

    # -- the four components -----------------------------------------------------------
    def _start_database(self) -> None:
        datadir = self.workdir / "mysql-data"
        run_as_root = ["--user=root"] if os.geteuid() == 0 else []
        new = not datadir.exists()
        if new:
            self._root_password = ""
            install_db = _require_binary("mariadb-install-db", "apt-get install mariadb-server")
            subprocess.run(
                [install_db, "--no-defaults", f"--datadir={datadir}",
                 "--auth-root-authentication-method=normal", "--skip-test-db", *run_as_root],
                check=True, capture_output=True,
            )
        mariadbd = _require_binary("mariadbd", "apt-get install mariadb-server", extra_dirs=["/usr/sbin"])
        # Its sort and temporary-table files in the twin's own folder: in /tmp (the default) a
        # cleaner removing old files there broke a running search ("Error on delete of
        # '/tmp/#sql-temptable-...'", seen during a benchmark).
        tmpdir = self.workdir / "mysql-tmp"
        tmpdir.mkdir(exist_ok=True)
        self._launch(Service(
            name="database",
            argv=[mariadbd, f"--defaults-file={MYSQL_CONFIG}", f"--datadir={datadir}",
                  f"--port={self.mysql_port}", "--bind-address=127.0.0.1",
                  f"--socket={self.workdir / 'mysql.sock'}",
                  f"--pid-file={self.workdir / 'mysql.pid'}", f"--tmpdir={tmpdir}", *run_as_root],
            log_path=self.workdir / "database.log",
            ready=self._database_ready,
        ))
        if new:  # mariadb-install-db leaves root without a password: give it the generated one
            self._set_root_password()
        self._create_database_and_user()

    def root_connection(self, **kwargs):
        """The database as its root user, as the MySQL container's MYSQL_ROOT_PASSWORD has it."""
        import pymysql

        return pymysql.connect(host="127.0.0.1", port=self.mysql_port, user="root",
                               password=self._root_password, **kwargs)

    def _set_root_password(self) -> None:
        with self.root_connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT host FROM mysql.user WHERE user = 'root'")
            for (host,) in cur.fetchall():
                # Loopback roots get the password; one named after the machine goes.
                if host in ("localhost", "127.0.0.1", "::1"):
                    cur.execute("ALTER USER 'root'@%s IDENTIFIED BY %s", (host, self.config["MYSQL_ROOT_PASSWORD"]))
                else:
                    cur.execute("DROP USER 'root'@%s", (host,))
        self._root_password = self.config["MYSQL_ROOT_PASSWORD"]

    def _database_ready(self) -> bool:
        import pymysql

        try:
            self.root_connection(connect_timeout=1).close()
            return True
        except pymysql.MySQLError:
            return False

    def _create_database_and_user(self) -> None:
        """What the MySQL image does from MYSQL_DATABASE / MYSQL_USER / MYSQL_PASSWORD."""
        c = self.config
        with self.root_connection() as conn:
            with conn.cursor() as cur:
                cur.execute("CREATE USER IF NOT EXISTS %s@'%%' IDENTIFIED BY %s",
                            (c["MYSQL_USER"], c["MYSQL_PASSWORD"]))
                databases = [c["MYSQL_DATABASE"]] + ([c["MLFLOW_AUTH_DATABASE"]] if self.share else [])
                for database in databases:  # the second one: compose's create-auth-database job
                    cur.execute(f"CREATE DATABASE IF NOT EXISTS `{database}`")
                    cur.execute(f"GRANT ALL ON `{database}`.* TO %s@'%%'", (c["MYSQL_USER"],))
                if self.share:
                    cur.execute("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = %s",
                                (c["MLFLOW_AUTH_DATABASE"],))
                    if cur.fetchone()[0] == 0:  # as the job does: see auth-schema.sql for why
                        cur.execute(f"USE `{c['MLFLOW_AUTH_DATABASE']}`")
                        for statement in sql_statements(AUTH_SCHEMA):
                            cur.execute(statement)
            conn.commit()

    def _start_s3(self) -> None:
        moto = _require_binary("moto_server", "pip install -r requirements.txt")
        # moto checks signatures only after this many unauthenticated calls: the three
        # IAM calls below mint the stack's access key, then every request is checked,
        # so anonymous access is refused as on MinIO.
        self._launch(Service(
            name="s3",
            argv=[moto, "-H", "127.0.0.1", "-p", str(self.s3_port)],
            env={"INITIAL_NO_AUTH_ACTION_COUNT": "3"},
            log_path=self.workdir / "s3.log",
            ready=lambda: port_open(self.s3_port),
        ))
        self.s3_credentials = self._mint_s3_credentials()
        ensure_private_bucket(self.s3_client(), self.bucket)

    def _mint_s3_credentials(self) -> dict[str, str]:
        import boto3

        iam = boto3.client("iam", endpoint_url=self.s3_endpoint_url, region_name="us-east-1",
                           aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
        user = self.config["MINIO_ROOT_USER"]
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName="artifact-store", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
        }))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        return {"aws_access_key_id": key["AccessKeyId"],
                "aws_secret_access_key": key["SecretAccessKey"]}

    def _database_uri(self, database: str) -> str:
        c = self.config
        return (f"mysql+pymysql://{c['MYSQL_USER']}:{c['MYSQL_PASSWORD']}"
                f"@127.0.0.1:{self.mysql_port}/{database}?charset=utf8mb4")

    def _start_mlflow(self) -> None:
        auth = {
            "MLFLOW_AUTH_DATABASE_URI": self._database_uri(self.config["MLFLOW_AUTH_DATABASE"]),
            "MLFLOW_AUTH_ADMIN_PASSWORD": self.config["MLFLOW_ADMIN_PASSWORD"],
            "MLFLOW_FLASK_SERVER_SECRET_KEY": self.config["MLFLOW_FLASK_SERVER_SECRET_KEY"],
            "MLFLOW_AUTH_CACHE_SECONDS": self.config["MLFLOW_AUTH_CACHE_SECONDS"],
        } if self.share else {}
        self.runtime_dir.mkdir(mode=0o700, exist_ok=True)
        self._launch(serve_script_service(
            {
                "MLFLOW_BACKEND_STORE_URI": self.backend_store_uri,
                "MLFLOW_ARTIFACTS_DESTINATION": f"s3://{self.bucket}",
                **self.s3_env,
                **{name: os.environ.get(name, self.config[name])
                   for name in ("MLFLOW_WORKERS", "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE")},
                **auth,
                # serve.sh's private files (the auth config, the metrics folder): gone at stop.
                "MLFLOW_RUNTIME_DIR": str(self.runtime_dir),
            },
            self.mlflow_port, self.workdir / "mlflow.log",
        ))

    def _start_nginx(self) -> None:
        nginx = _require_binary("nginx", "apt-get install nginx", extra_dirs=["/usr/sbin"])
        prefix = self.workdir / "nginx"
        prefix.mkdir(exist_ok=True)
        site = prefix / "default.conf"
        values = {"MLFLOW_UPSTREAM": f"127.0.0.1:{self.mlflow_port}",
                  "NGINX_PORT": f"127.0.0.1:{self.nginx_port}"}
        template = NGINX_TEMPLATE
        if self.share:
            template = NGINX_SHARED_TEMPLATE
            values.update(NGINX_TLS_PORT=f"127.0.0.1:{self.https_port}", NGINX_HTTPS_PORT=str(self.https_port))
            (prefix / "tls").mkdir(exist_ok=True)
            for source, name in zip(self.tls_pair, ("server.crt", "server.key")):
                (prefix / "tls" / name).unlink(missing_ok=True)
                (prefix / "tls" / name).symlink_to(source)
        site.write_text(render_nginx_template(values, template))
        # The sites include it from nginx's configuration folder, as in the image.
        shutil.copy(NGINX_PROXY_CONFIG, prefix / NGINX_PROXY_CONFIG.name)
        # The nginx image's main nginx.conf, reduced to what a non-daemon local run needs.
        main_conf = prefix / "nginx.conf"
        main_conf.write_text(
            ("user root;\n" if os.geteuid() == 0 else "")
            + f"daemon off;\nworker_processes auto;\npid {prefix / 'nginx.pid'};\n"
            f"error_log {prefix / 'error.log'} warn;\n"
            "events { worker_connections 1024; }\n"
            "http {\n"
            f"    access_log {prefix / 'access.log'};\n"
            f"    client_body_temp_path {prefix / 'client_body'};\n"
            f"    proxy_temp_path {prefix / 'proxy'};\n"
            f"    include {site};\n"
            "}\n"
        )
        self._launch(Service(
            name="nginx",
            argv=[nginx, "-p", str(prefix), "-c", str(main_conf)],
            log_path=self.workdir / "nginx.log",
            ready=lambda: http_ok(f"{self.tracking_uri}/health", self.ssl_context()),
        ))


@dataclass
class RunningStack(S3Access):
    """A stack somebody else started (the compose one, say), described by its addresses.

    Built from MLFLOW_TRACKING_URI, MLFLOW_S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID and
    AWS_SECRET_ACCESS_KEY, with the bucket from mlflow_docker_setup/.env.
    """

    tracking_uri: str
    s3_endpoint_url: str
    s3_credentials: dict[str, str]
    bucket: str
    startup_seconds: float | None = None

    @classmethod
    def from_environment(cls) -> "RunningStack":
        config = stack_env(SECRETS_DIR)
        return cls(
            tracking_uri=os.environ["MLFLOW_TRACKING_URI"],
            s3_endpoint_url=os.environ.get("MLFLOW_S3_ENDPOINT_URL", "http://localhost:9000"),
            s3_credentials={
                "aws_access_key_id": os.environ.get("AWS_ACCESS_KEY_ID", config["MINIO_ROOT_USER"]),
                "aws_secret_access_key": os.environ.get(
                    "AWS_SECRET_ACCESS_KEY", config.get("MINIO_ROOT_PASSWORD")),
            },
            bucket=os.environ.get("MLFLOW_BUCKET", config["MLFLOW_BUCKET"]),
        )

    def logs(self) -> str:
        return "(stack started outside the tests: see `docker logs` of its containers)"


def ensure_private_bucket(s3, bucket: str) -> None:
    """The bucket job: create the bucket if missing and leave no public access on it."""
    from botocore.exceptions import ClientError

    try:
        s3.create_bucket(Bucket=bucket)
    except ClientError as error:
        if error.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    s3.put_bucket_acl(Bucket=bucket, ACL="private")
    try:
        s3.delete_bucket_policy(Bucket=bucket)
    except ClientError as error:
        if error.response["Error"]["Code"] != "NoSuchBucketPolicy":
            raise


def sql_statements(path: Path) -> list[str]:
    """The statements of a plain SQL file (``--`` comments, ``;`` at the ends)."""
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("--")]
    return [statement.strip() for statement in "\n".join(lines).split(";") if statement.strip()]


def _require_binary(name: str, install_hint: str, extra_dirs: list[str] = ()) -> str:
    path = shutil.which(name, path=os.pathsep.join(
        [str(Path(sys.executable).parent), os.environ.get("PATH", ""), *extra_dirs]))
    if path is None:
        raise StackStartError(f"{name} not found: install it ({install_hint}) and retry")
    return path


def main() -> None:
    """Run the twin in the foreground until Ctrl-C (handy for poking at it by hand)."""
    import tempfile

    workdir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="mlflow-twin-"))
    def exit_once(*_):
        # Stop the services on `kill` as on Ctrl-C; a second signal must not cut that short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        sys.exit(0)

    signal.signal(signal.SIGTERM, exit_once)
    signal.signal(signal.SIGINT, exit_once)
    with LocalStack(workdir).start() as stack:
        print(f"healthy in {stack.startup_seconds:.1f} s; tracking URI {stack.tracking_uri}; "
              f"S3 endpoint {stack.s3_endpoint_url}; logs in {workdir}")
        # The keys are this twin's own, minted at start and gone with it: printed as they are.
        print(f"The book's way (artifacts straight to S3, for experiments at s3://{stack.bucket}/<prefix>):")
        print("\n".join(f"  export {name}={shlex.quote(value)}" for name, value in stack.s3_env.items()), flush=True)
        signal.pause()


if __name__ == "__main__":
    main()
