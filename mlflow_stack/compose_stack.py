"""The compose stack of one checkout, driven the way a user drives it.

``start_mlflow.sh`` and ``stop_mlflow.sh`` do the work (Docker mode); this class passes
them an environment (ports, images), keeps what they printed, and looks at the result
through the engine: the checkout's compose project, its containers, networks, volumes
and published ports.

    stack = ComposeStack(checkout, {"NGINX_PORT": "18080", ...}).start()
    mlflow.set_tracking_uri(stack.tracking_uri)
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from .local_stack import Outages, S3Access, SharedAccess, StackStartError, free_ports
from .settings import REPO_ROOT, stack_env

# Service names as the twin calls them, mapped to compose's.
_COMPOSE_SERVICE = {"database": "mysql", "mlflow": "mlflow", "s3": "minio", "nginx": "nginx"}


def docker(*args: str, check: bool = True) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def docker_engine_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def copy_of_checkout(source: Path, destination: Path) -> Path:
    """The stack's files of ``source`` in ``destination``, as a second clone has them: no
    generated secrets, no copied CA certificates (so its compose project is its own)."""
    destination.mkdir(parents=True, exist_ok=True)
    for rel in ("start_mlflow.sh", "stop_mlflow.sh"):
        shutil.copy2(source / rel, destination / rel)
    for rel in ("mlflow_docker_setup", "scripts"):
        shutil.copytree(source / rel, destination / rel, ignore=shutil.ignore_patterns("*.crt", "secrets"))
    return destination


class ComposeStack(S3Access, SharedAccess, Outages):
    """A checkout's Docker stack: started and stopped by its own scripts."""

    def __init__(self, checkout: Path, env: dict[str, str], start_timeout: float = 600) -> None:
        self.checkout = Path(checkout)
        self.env = {**os.environ, "MLFLOW_STACK_MODE": "docker", **env}
        self.env_overrides = dict(env)
        self.share = env.get("MLFLOW_SHARE") == "1"
        secrets = self.checkout / "mlflow_docker_setup" / "secrets"
        self.ca_file = secrets / "tls" / "ca.crt" if self.share else None
        self.start_timeout = start_timeout
        self.bucket = stack_env()["MLFLOW_BUCKET"]
        self.startup_seconds: float | None = None
        self.last_output = ""
        self.start_output = ""  # what the last successful start printed

    @classmethod
    def fresh_copy(cls, destination: Path, images: dict[str, str], **overrides: str) -> "ComposeStack":
        """This checkout's stack files copied to ``destination`` (a project of its own), run
        on ``images`` with this checkout's .venv, on free loopback ports."""
        nginx, minio_api, minio_console = free_ports(3)
        return cls(copy_of_checkout(REPO_ROOT, destination),
                   {**images, "MLFLOW_VENV": str(REPO_ROOT / ".venv"), "NGINX_PORT": str(nginx),
                    "MINIO_API_PORT": str(minio_api), "MINIO_CONSOLE_PORT": str(minio_console), **overrides})

    @property
    def config(self) -> dict[str, str]:
        """The checkout's settings and secrets as its scripts see them (env wins)."""
        return {**stack_env(self.checkout / "mlflow_docker_setup" / "secrets"), **self.env_overrides}

    # -- the scripts -------------------------------------------------------------------
    def script(self, name: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        result = subprocess.run(["bash", str(self.checkout / name), *args], env=self.env,
                                capture_output=True, text=True, timeout=timeout)
        self.last_output = f"$ {name} {' '.join(args)} (exit {result.returncode})\n{result.stdout}\n{result.stderr}"
        return result

    def start(self) -> "ComposeStack":
        started = time.monotonic()
        result = self.script("start_mlflow.sh", timeout=self.start_timeout)
        if result.returncode != 0:
            raise StackStartError(self.last_output)
        self.startup_seconds = time.monotonic() - started
        self.start_output = result.stdout
        return self

    def stop(self, delete_data: bool = False) -> subprocess.CompletedProcess:
        return self.script("stop_mlflow.sh", *(["--delete-data", "--yes"] if delete_data else []))

    # -- what the engine holds for this checkout ---------------------------------------
    @functools.cached_property
    def project(self) -> str:
        """The compose project name start_mlflow.sh derives for this checkout."""
        result = subprocess.run(
            ["bash", "-c", 'ROOT="$1"; source "$1/mlflow_docker_setup/lib.sh"; echo "$COMPOSE_PROJECT_NAME"',
             "_", str(self.checkout)],
            env=self.env, capture_output=True, text=True, check=True)
        return result.stdout.strip()

    def resources(self) -> dict[str, list[str]]:
        """Names of this project's containers, networks, volumes and built image."""
        label = f"label=com.docker.compose.project={self.project}"
        return {
            "containers": docker("ps", "-a", "--filter", label, "--format", "{{.Names}}").split(),
            "networks": docker("network", "ls", "--filter", label, "--format", "{{.Name}}").split(),
            "volumes": docker("volume", "ls", "--filter", label, "--format", "{{.Name}}").split(),
            "images": docker("images", "--filter", f"reference=mlflow-tracking-server:*-{self.project}",
                             "--format", "{{.Repository}}:{{.Tag}}").split(),
        }

    def containers(self, service: str) -> list[str]:
        """The ids of a compose service's containers (mlflow has MLFLOW_SERVER_REPLICAS), in
        the order of their replica number."""
        found = docker("ps", "-a", "--filter", f"label=com.docker.compose.project={self.project}",
                       "--filter", f"label=com.docker.compose.service={service}",
                       "--format", '{{.Label "com.docker.compose.container-number"}} {{.ID}}')
        if not found:
            raise LookupError(f"no container for service {service} in project {self.project}")
        return [line.split()[1] for line in sorted(found.splitlines(), key=lambda line: int(line.split()[0]))]

    def container(self, service: str) -> str:
        """The id of the container running a compose service (its first replica)."""
        return self.containers(service)[0]

    def health(self) -> dict[str, str]:
        """Each long-running service's health as the engine reports it."""
        return {service: docker("inspect", "-f", "{{.State.Health.Status}}", self.container(service))
                for service in ("mysql", "minio", "mlflow", "nginx")}

    def published_ports(self, service: str) -> list[tuple[str, int]]:
        """(host address, host port) of every port the service publishes, per the engine."""
        bindings = json.loads(docker("inspect", "-f", "{{json .NetworkSettings.Ports}}", self.container(service)))
        return [(b["HostIp"], int(b["HostPort"])) for targets in bindings.values() if targets for b in targets]

    # -- addresses clients use -----------------------------------------------------------
    @property
    def tracking_uri(self) -> str:
        if self.share:
            return f"https://127.0.0.1:{self.config['NGINX_HTTPS_PORT']}"
        return f"http://127.0.0.1:{self.config['NGINX_PORT']}"

    @property
    def nginx_port(self) -> int:
        """nginx's plain-HTTP port on the host (a redirect to HTTPS when shared)."""
        return int(self.config["NGINX_PORT"])

    @property
    def s3_endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.config['MINIO_API_PORT']}"

    @property
    def s3_credentials(self) -> dict[str, str]:
        return {"aws_access_key_id": self.config["MINIO_ROOT_USER"],
                "aws_secret_access_key": self.config["MINIO_ROOT_PASSWORD"]}

    def server_command(self) -> str:
        """The MLflow server's command line, read from its container's PID 1."""
        raw = docker("exec", self.container("mlflow"), "cat", "/proc/1/cmdline")
        return raw.replace("\0", " ").strip()

    def restart(self, name: str) -> None:
        """Restart one service (twin names: ``database``, ``mlflow``, ...) and wait until healthy."""
        self.take_down(name)
        self.bring_back(name)

    def take_down(self, name: str) -> None:
        """Stop one service's container (twin names), as ``docker compose stop`` does."""
        docker("stop", self.container(_COMPOSE_SERVICE[name]))

    def bring_back(self, name: str) -> None:
        """Start it again and wait until the engine reports it healthy."""
        container = self.container(_COMPOSE_SERVICE[name])
        docker("start", container)
        deadline = time.monotonic() + 180
        while docker("inspect", "-f", "{{.State.Health.Status}}", container) != "healthy":
            if time.monotonic() > deadline:
                raise StackStartError(f"{name} was not healthy again within 180 s\n{self.logs()}")
            time.sleep(1)

    def logs(self) -> str:
        """The last script's output and each container's last log lines."""
        return f"{self.last_output}\n\n{self.container_logs()}"

    def container_logs(self, lines: int | None = 40,
                       services: tuple[str, ...] = ("mysql", "mysql-replica", "setup-read-replica", "minio",
                                                    "create-bucket", "create-auth-database", "mlflow",
                                                    "nginx")) -> str:
        """Each container's last log lines (all of them: lines=None), of every service or of
        ``services``."""
        parts = []
        for service in services:
            try:
                containers = self.containers(service)
            except LookupError:
                continue
            for container in containers:  # every server replica
                result = subprocess.run(["docker", "logs", "--tail", str(lines or "all"), container],
                                        capture_output=True, text=True, timeout=60)
                parts.append(f"===== {service} ({container[:12]}) =====\n{result.stdout}{result.stderr}")
        return "\n\n".join(parts)
