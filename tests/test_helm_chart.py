"""The Helm chart (deploy/helm/mlflow-stack), checked offline: no cluster, no Docker.

helm lint --strict; helm template with each scenario's values file; every rendered
manifest validated by kubernetes-validate --strict against the oldest and the newest
Kubernetes the chart supports; and the rendered YAML read back: the server runs serve.sh
with compose's environment, no secret is in plain text, every container has requests,
probes and a locked-down security context, the hooks are hooks, nginx gets the stack's own
files (and nginx -t accepts them). Nothing here is ever installed on a cluster.
"""

from __future__ import annotations

import functools
import http.client
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
import yaml

from k8s_tools import helm, kubernetes_validate
from mlflow_stack.settings import REPO_ROOT

CHART = REPO_ROOT / "deploy" / "helm" / "mlflow-stack"
SCENARIOS = sorted(p.name for p in (REPO_ROOT / "deploy" / "helm").glob("values-*.yaml"))
SETUP = REPO_ROOT / "mlflow_docker_setup"
# The oldest and newest Kubernetes the chart supports (Chart.yaml's kubeVersion: >=1.25).
KUBERNETES_VERSIONS = ("1.25.0", "1.37.0")
# Custom resources: no schema in kubernetes-validate; test_custom_resources reads them.
CUSTOM_KINDS = {"ServiceMonitor", "ExternalSecret", "HTTPRoute"}
WORKLOADS = {"Deployment", "StatefulSet", "Job", "CronJob"}
# Known dummy Secret names: every secret the chart uses must come from one of these.
DUMMY_SECRETS = {
    "database.existingSecret": "dummy-database-secret",
    "artifacts.existingSecret": "dummy-s3-secret",
    "shared.existingSecret": "dummy-auth-secret",
    "shared.tlsSecret": "dummy-tls-secret",
    "ingress.tlsSecret": "dummy-ingress-tls-secret",
}
# Everything a scenario can switch on, at once (the custom resources among them).
EVERYTHING = ["metrics.enabled=true", "metrics.serviceMonitor.enabled=true",
              "metrics.serviceMonitor.basicAuthSecret=dummy-prometheus-secret", "externalSecrets.enabled=true",
              "externalSecrets.secretStoreRef.name=vault", "externalSecrets.secrets[0].name=dummy-database-secret",
              "externalSecrets.secrets[0].data[0].secretKey=password",
              "externalSecrets.secrets[0].data[0].remoteRef.key=mlflow/db", "httpRoute.enabled=true",
              "httpRoute.parentRefs[0].name=gateway", "artifacts.createBucket=true",
              "artifacts.s3EndpointUrl=https://s3.example.com", "ingress.enabled=true"]


def run(command: list, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=300, **kwargs)


@functools.lru_cache(maxsize=None)
def rendered_text(values: tuple[str, ...] = (), sets: tuple[str, ...] = ()) -> str:
    command = [helm(), "template", "mlflow", CHART, "--namespace", "ml"]
    for name in values:
        command += ["-f", REPO_ROOT / "deploy" / "helm" / name]
    for assignment in sets:
        command += ["--set", assignment]
    result = run(command)
    assert result.returncode == 0, f"helm template {values} {sets} failed:\n{result.stderr}"
    return result.stdout


def rendered(values: tuple[str, ...] = (), sets: tuple[str, ...] = ()) -> list[dict]:
    return [d for d in yaml.safe_load_all(rendered_text(values, sets)) if d]


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict], kind: str, component: str) -> dict:
    found = [d for d in by_kind(docs, kind) if d["metadata"]["labels"].get("app.kubernetes.io/component") == component]
    assert len(found) == 1, f"{len(found)} {kind} of component {component}"
    return found[0]


def pod_spec(doc: dict) -> dict:
    spec = doc["spec"]
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def scenario_docs(name: str) -> list[dict]:
    return rendered((name,))


# --- compose and serve.sh, read from the repository (the source of truth) -------------

def compose_environment(file: str, service: str = "mlflow") -> dict[str, str]:
    """A compose service's environment: name -> its value with ${VAR:-default} resolved to
    the default (or kept as ${VAR} when it has none)."""
    environment = yaml.safe_load((SETUP / file).read_text())["services"][service]["environment"]
    return {k: re.sub(r"\$\{(\w+):-([^}]*)\}", r"\2", str(v)) for k, v in environment.items()}


def dockerfile_entrypoint() -> list[str]:
    text = (SETUP / "mlflow" / "Dockerfile").read_text()
    entrypoint = yaml.safe_load(re.search(r"^ENTRYPOINT (.+)$", text, re.M).group(1))
    copied = re.search(r"^COPY serve\.sh (\S+)$", text, re.M).group(1)
    assert Path(copied).name == entrypoint[0], "the image's ENTRYPOINT is not serve.sh"
    return entrypoint


def serve_sh_allowed_hosts(lan_name: str) -> set[str]:
    """serve.sh's own line, run by sh for that host name (nothing else set)."""
    line = re.search(r"^export MLFLOW_SERVER_ALLOWED_HOSTS=.*$", (SETUP / "mlflow" / "serve.sh").read_text(), re.M)
    result = subprocess.run(["sh", "-c", f'{line.group(0)}\nprintf %s "$MLFLOW_SERVER_ALLOWED_HOSTS"'],
                            env={"lan_name": lan_name, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                            check=True)
    assert lan_name in result.stdout
    return set(result.stdout.split(","))


# --- helm itself ----------------------------------------------------------------------

@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm_lint_strict(scenario):
    result = run([helm(), "lint", "--strict", CHART, "-f", REPO_ROOT / "deploy" / "helm" / scenario])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


def test_scenarios_exist():
    assert {"values-external.yaml", "values-shared-tls.yaml", "values-replicas.yaml",
            "values-try-it.yaml"} <= set(SCENARIOS)


def test_defaults_say_what_is_missing():
    """External services are the default: without a database host the chart refuses, in
    one line, instead of rendering a server that cannot start."""
    result = run([helm(), "template", "mlflow", CHART])
    assert result.returncode != 0
    assert "database.host is required" in result.stderr


def test_shared_mode_needs_a_certificate():
    result = run([helm(), "template", "mlflow", CHART, "-f", REPO_ROOT / "deploy/helm/values-external.yaml",
                  "--set", "shared.enabled=true"])
    assert result.returncode != 0 and "shared.tlsSecret" in result.stderr


def test_a_shared_servicemonitor_signs_in_as_an_admin():
    """A shared server answers /metrics only to admins (tests/test_metrics.py): the
    ServiceMonitor needs their sign-in, from a Secret, or the chart refuses in one line."""
    refused = run([helm(), "template", "mlflow", CHART, "-f", REPO_ROOT / "deploy/helm/values-shared-tls.yaml",
                   "--set", "metrics.serviceMonitor.enabled=true"])
    assert refused.returncode != 0 and "metrics.serviceMonitor.basicAuthSecret" in refused.stderr
    monitor, = by_kind(rendered(("values-shared-tls.yaml",), ("metrics.serviceMonitor.enabled=true",
                                                              "metrics.serviceMonitor.basicAuthSecret=prometheus-mlflow")),
                       "ServiceMonitor")
    endpoint, = monitor["spec"]["endpoints"]
    assert endpoint["basicAuth"] == {"username": {"name": "prometheus-mlflow", "key": "username"},
                                     "password": {"name": "prometheus-mlflow", "key": "password"}}
    plain, = by_kind(rendered(("values-external.yaml",), ("metrics.serviceMonitor.enabled=true",)), "ServiceMonitor")
    assert "basicAuth" not in plain["spec"]["endpoints"][0]


def test_nginx_files_are_links_to_the_stacks_own():
    """One source: the chart's files/ are symlinks into mlflow_docker_setup/."""
    files = sorted((CHART / "files").iterdir())
    assert files
    for path in files:
        assert path.is_symlink(), f"{path.name} is a copy, not a link"
        assert path.resolve().is_relative_to(SETUP.resolve()) and path.resolve().is_file()


def test_package_holds_the_linked_files(tmp_path):
    """helm package resolves the links: a packaged chart (pushed to a chart registry)
    carries the stack's files themselves."""
    result = run([helm(), "package", CHART, "--destination", tmp_path])
    assert result.returncode == 0, result.stderr
    package, = tmp_path.glob("mlflow-stack-*.tgz")
    with tarfile.open(package) as tar:
        for path in (CHART / "files").iterdir():
            member = tar.getmember(f"mlflow-stack/files/{path.name}")
            assert member.isfile(), f"{path.name} packaged as a link"
            assert tar.extractfile(member).read() == path.resolve().read_bytes()


# --- schema validation ----------------------------------------------------------------

def validate(tmp_path: Path, docs: list[dict], version: str) -> subprocess.CompletedProcess:
    files = []
    for index, doc in enumerate(docs):
        path = tmp_path / f"{index:03d}-{doc['kind']}.yaml"
        path.write_text(yaml.safe_dump(doc))
        files.append(path)
    return run([*kubernetes_validate(), "--strict", "--kubernetes-version", version, *files])


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("scenario", [*SCENARIOS, "everything"])
def test_manifests_valid(tmp_path, scenario, version):
    if scenario == "everything":
        docs = rendered(("values-shared-tls.yaml",), tuple(EVERYTHING + ["httpRoute.enabled=false"]))
    else:
        docs = scenario_docs(scenario)
    result = validate(tmp_path, docs, version)
    assert result.returncode == 0, result.stdout + result.stderr
    # Every kind but the custom resources had a schema, so was really checked.
    unchecked = set(re.findall(r"Couldn't find schema for kind (\w+)", result.stdout + result.stderr))
    assert unchecked <= CUSTOM_KINDS, unchecked
    # ... and each manifest of a known kind was reported as passed.
    passed = len(re.findall(r" passed for resource ", result.stdout))
    assert passed == len([d for d in docs if d["kind"] not in CUSTOM_KINDS]) > 0, result.stdout


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_validation_can_fail(tmp_path, version):
    """Negative control: the same server Deployment with an unknown field, and with a
    container without its required name, are rejected; the unchanged one passes."""
    deployment = one(scenario_docs("values-external.yaml"), "Deployment", "server")
    for case in ("good", "unknown", "nameless"):
        (tmp_path / case).mkdir()
    good = validate(tmp_path / "good", [deployment], version)
    assert good.returncode == 0, good.stdout + good.stderr
    unknown = yaml.safe_load(yaml.safe_dump(deployment))
    unknown["spec"]["template"]["spec"]["containers"][0]["resourcez"] = {}
    result = validate(tmp_path / "unknown", [unknown], version)
    assert result.returncode != 0 and "resourcez" in result.stdout + result.stderr
    nameless = yaml.safe_load(yaml.safe_dump(deployment))
    del nameless["spec"]["template"]["spec"]["containers"][0]["name"]
    assert validate(tmp_path / "nameless", [nameless], version).returncode != 0


def test_custom_resources():
    """ServiceMonitor, ExternalSecret and HTTPRoute have no bundled schema: their shape here."""
    docs = rendered(("values-external.yaml",), tuple(EVERYTHING))
    monitor, = by_kind(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    server_service = [s for s in by_kind(docs, "Service")
                      if s["metadata"]["labels"]["app.kubernetes.io/component"] == "server"][0]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= server_service["metadata"]["labels"].items()
    endpoint, = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics" and endpoint["port"] in [p["name"] for p in server_service["spec"]["ports"]]
    secret, = by_kind(docs, "ExternalSecret")
    assert secret["apiVersion"] == "external-secrets.io/v1"
    assert secret["spec"]["target"]["name"] == secret["metadata"]["name"] == "dummy-database-secret"
    assert secret["spec"]["secretStoreRef"]["name"] == "vault" and secret["spec"]["data"][0]["remoteRef"]["key"]
    route, = by_kind(docs, "HTTPRoute")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"]["parentRefs"] == [{"name": "gateway"}]
    assert route["spec"]["rules"][0]["backendRefs"][0]["name"].endswith("-nginx")


# --- the server as compose runs it ----------------------------------------------------

@pytest.mark.parametrize("scenario", SCENARIOS)
def test_server_runs_serve_sh_with_composes_environment(scenario):
    docs = scenario_docs(scenario)
    values = yaml.safe_load((REPO_ROOT / "deploy" / "helm" / scenario).read_text())
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    shared = values.get("shared", {}).get("enabled", False)
    container, = pod_spec(one(docs, "Deployment", "server"))["containers"]
    assert container["command"] == dockerfile_entrypoint()
    assert "args" not in container  # serve.sh's own flags, metrics among them (MLFLOW_METRICS)
    env = env_of(container)
    metrics = values.get("metrics", {}).get("enabled", defaults["metrics"]["enabled"])
    assert env["MLFLOW_METRICS"]["value"] == ("1" if metrics else "0")
    wanted = compose_environment("docker-compose.yml")
    if shared:
        wanted |= compose_environment("docker-compose.share.yml")
    # AWS S3 is reached without an endpoint URL; compose always names MinIO's.
    s3_endpoint = values.get("artifacts", {}).get("s3EndpointUrl") or values.get("minio", {}).get("enabled")
    if not s3_endpoint:
        wanted.pop("MLFLOW_S3_ENDPOINT_URL")
    assert wanted.keys() <= env.keys(), f"compose sets {sorted(wanted.keys() - env.keys())}, the chart does not"
    # Where compose has a plain default, the chart's default is the same.
    for name, setting in [("MLFLOW_WORKERS", "workers"), ("MLFLOW_SQLALCHEMYSTORE_POOL_SIZE", "sqlalchemyPoolSize"),
                          ("MLFLOW_STACK_TRACKING_STORE", "trackingStore"),
                          ("MLFLOW_DISABLE_TELEMETRY", "disableTelemetry")]:
        assert str(defaults["server"][setting]).lower() == wanted[name].lower()
        expected = values.get("server", {}).get(setting, defaults["server"][setting])
        assert env[name]["value"].lower() == str(expected).lower(), name
    assert env["MLFLOW_DB_UPGRADE"]["value"] == wanted["MLFLOW_DB_UPGRADE"] == "0"
    assert env["MLFLOW_LAN_HOSTNAME"]["value"] == values["host"]
    # serve.sh's own list for that host, plus the cluster's names for the server.
    allowed = set(env["MLFLOW_SERVER_ALLOWED_HOSTS"]["value"].split(","))
    assert serve_sh_allowed_hosts(values["host"]) <= allowed
    assert "$(POD_IP):5000" in allowed and "*" not in allowed
    names = list(env)
    assert names.index("POD_IP") < names.index("MLFLOW_SERVER_ALLOWED_HOSTS")  # $(VAR) needs it defined first
    if shared or metrics:  # serve.sh writes the auth config and the metrics folder there
        # Compose's runtime folder, wherever it is set (the shared overlay, or every stack).
        files = ("docker-compose.yml", "docker-compose.share.yml")
        runtime = {k: v for f in files for k, v in compose_environment(f).items()}["MLFLOW_RUNTIME_DIR"]
        compose_tmpfs = [m.split(":")[0] for f in files
                         for m in yaml.safe_load((SETUP / f).read_text())["services"]["mlflow"].get("tmpfs", [])]
        assert env["MLFLOW_RUNTIME_DIR"]["value"] == runtime and runtime in compose_tmpfs
        mount, = [m for m in container["volumeMounts"] if m["mountPath"] == runtime]
        volume, = [v for v in pod_spec(one(docs, "Deployment", "server"))["volumes"] if v["name"] == mount["name"]]
        assert volume["emptyDir"]["medium"] == "Memory"  # compose's tmpfs: never on disk
    probes = [container[p]["httpGet"]["path"] for p in ("startupProbe", "readinessProbe", "livenessProbe")]
    assert probes == ["/health"] * 3


def test_a_read_replica_is_the_databases_url_with_the_replicas_host():
    """As compose's read-replica overlay sets it: the same user, password and database, and
    the replica's host; no replica unless one is named."""
    values = yaml.safe_load((REPO_ROOT / "deploy" / "helm" / "values-replicas.yaml").read_text())["database"]
    container, = pod_spec(one(scenario_docs("values-replicas.yaml"), "Deployment", "server"))["containers"]
    env = env_of(container)
    primary = env["MLFLOW_BACKEND_STORE_URI"]["value"]
    replica = env["MLFLOW_READ_REPLICA_BACKEND_STORE_URI"]["value"]
    assert replica == primary.replace(f"@{values['host']}:", f"@{values['readReplica']['host']}:") != primary
    assert "$(MLFLOW_DB_PASSWORD)@" in replica  # the Secret's password, expanded by the kubelet
    overlay = compose_environment("docker-compose.read-replica.yml")["MLFLOW_READ_REPLICA_BACKEND_STORE_URI"]
    assert overlay.startswith("mysql+pymysql://") and replica.startswith("mysql+pymysql://")
    assert overlay.rsplit("?", 1)[1] == replica.rsplit("?", 1)[1]
    for scenario in set(SCENARIOS) - {"values-replicas.yaml"}:
        for doc in scenario_docs(scenario):
            for container in pod_spec(doc)["containers"] if doc["kind"] in ("Deployment", "Job", "CronJob") else ():
                assert "MLFLOW_READ_REPLICA_BACKEND_STORE_URI" not in env_of(container), scenario


def test_migration_is_serve_sh_with_db_upgrade_as_a_hook():
    for scenario in SCENARIOS:
        docs = scenario_docs(scenario)
        job = one(docs, "Job", "migration")
        container, = pod_spec(job)["containers"]
        assert container["command"] == dockerfile_entrypoint() and container["args"] == ["--help"]
        env = env_of(container)
        assert env["MLFLOW_DB_UPGRADE"]["value"] == "1"
        # The same environment as the server otherwise.
        server_env = env_of(pod_spec(one(docs, "Deployment", "server"))["containers"][0])
        assert {k: v for k, v in env.items() if k != "MLFLOW_DB_UPGRADE"} == \
            {k: v for k, v in server_env.items() if k != "MLFLOW_DB_UPGRADE"}
        # Nothing else upgrades: every other MLflow container runs with 0.
        for doc in docs:
            if doc["kind"] in WORKLOADS and doc is not job:
                for other in pod_spec(doc)["containers"]:
                    assert env_of(other).get("MLFLOW_DB_UPGRADE", {"value": "0"})["value"] == "0"


@pytest.mark.parametrize("scenario", ["values-external.yaml", "values-shared-tls.yaml"])
def test_migration_job_runs_here(tmp_path, scenario):
    """The migration job's container, run here: serve.sh with the job's environment (its
    Secrets replaced by dummies, the databases by SQLite files, its folders by temporary
    ones) and its arguments migrates the database, in shared mode bootstraps the sign-in
    database too, and exits 0 instead of serving."""
    container, = pod_spec(one(scenario_docs(scenario), "Job", "migration"))["containers"]
    for name, entry in env_of(container).items():
        if name.endswith("_URI") and "value" in entry:
            assert entry["value"].startswith("mysql+pymysql://mlflow:$(MLFLOW_DB_PASSWORD)@")
    env = container_env_here(container, tmp_path, "127.0.0.1")
    databases = {name: Path(env[name].removeprefix("sqlite:///"))
                 for name in ("MLFLOW_BACKEND_STORE_URI", "MLFLOW_AUTH_DATABASE_URI") if name in env}
    for mount in container["volumeMounts"]:  # emptyDirs: folders here
        folder = tmp_path / mount["name"]
        folder.mkdir(exist_ok=True)
        env = {k: v.replace(mount["mountPath"], str(folder)) if k == "MLFLOW_RUNTIME_DIR" else v
               for k, v in env.items()}
    env |= {"PATH": f"{REPO_ROOT / '.venv' / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path / "home")}
    assert container["command"] == dockerfile_entrypoint()  # mlflow-serve is serve.sh
    result = run(["sh", SETUP / "mlflow" / "serve.sh", *container["args"]], env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--expose-prometheus" in result.stdout  # mlflow server's help: it stopped there
    with sqlite3.connect(databases["MLFLOW_BACKEND_STORE_URI"]) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchone()
    if "shared" in scenario:
        with sqlite3.connect(databases["MLFLOW_AUTH_DATABASE_URI"]) as db:
            assert db.execute("SELECT username FROM users").fetchall() == [("admin",)]


def container_env_here(container: dict, tmp_path: Path, pod_ip: str) -> dict[str, str]:
    """A container's environment as the kubelet would give it, for a run here: Secrets as
    dummies, the pod IP as given, $(VAR) expanded, the MySQL URLs as SQLite files."""
    env: dict[str, str] = {}
    for name, entry in env_of(container).items():
        if "valueFrom" in entry:
            env[name] = pod_ip if "fieldRef" in entry["valueFrom"] else f"dummy-{name.lower()}"
        else:
            env[name] = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], entry["value"])
    for name in ("MLFLOW_BACKEND_STORE_URI", "MLFLOW_AUTH_DATABASE_URI"):
        if name in env:
            env[name] = f"sqlite:///{tmp_path / name.lower()}.db"
    if "MLFLOW_READ_REPLICA_BACKEND_STORE_URI" in env:  # the server starts with it (same file: no routing)
        env["MLFLOW_READ_REPLICA_BACKEND_STORE_URI"] = env["MLFLOW_BACKEND_STORE_URI"]
    return env


def test_metrics_on_by_default_with_the_exporter_in_the_image():
    """MLflow's --expose-prometheus imports prometheus_flask_exporter, which MLflow does not
    install (without it the server stops at start: ModuleNotFoundError, seen here): the
    image's requirements name it, and metrics are on by default, the ServiceMonitor (a
    custom resource of the Prometheus Operator) opt-in."""
    text = (SETUP / "mlflow" / "requirements.txt").read_text().lower()
    assert re.search(r"^prometheus[-_]flask[-_]exporter==", text, re.M)
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())["metrics"]
    assert defaults["enabled"] is True and defaults["serviceMonitor"]["enabled"] is False
    assert not by_kind(scenario_docs("values-external.yaml"), "ServiceMonitor")
    off = pod_spec(one(rendered(("values-external.yaml",), ("metrics.enabled=false",)), "Deployment", "server"))
    assert env_of(off["containers"][0])["MLFLOW_METRICS"]["value"] == "0"
    assert "MLFLOW_RUNTIME_DIR" not in env_of(off["containers"][0]) and [v["name"] for v in off["volumes"]] == ["tmp", "home"]


def run_gc_cronjob_here(tmp_path: Path, server_url: str) -> None:
    """The gc CronJob's container against the server running here: of two runs with an
    artifact each, the deleted one loses its row and its artifact, the other keeps both."""
    cron = one(rendered(("values-replicas.yaml",)), "CronJob", "gc")
    container, = pod_spec(cron)["containers"]
    env = container_env_here(container, tmp_path, "10.244.7.10")
    assert env["MLFLOW_TRACKING_URI"].startswith("http://") and env["MLFLOW_TRACKING_URI"].endswith(":5000")
    env |= {"PATH": f"{REPO_ROOT / '.venv' / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path),
            "MLFLOW_TRACKING_URI": server_url,  # the server's Service, here on loopback
            "MLFLOW_ARTIFACTS_DESTINATION": str(tmp_path / "artifacts")}
    logged = run([REPO_ROOT / ".venv" / "bin" / "python", "-c", """
import pathlib, sys, mlflow
mlflow.set_experiment("gc")
ids = []
for name in ("deleted", "kept"):
    with mlflow.start_run() as run:
        path = pathlib.Path(sys.argv[1]) / f"{name}.txt"
        path.write_text(name)
        mlflow.log_artifact(str(path))
        ids.append(run.info.run_id)
mlflow.MlflowClient().delete_run(ids[0])
print(" ".join(ids))
""", tmp_path], env=env)
    assert logged.returncode == 0, logged.stderr[-2000:]
    deleted, kept = logged.stdout.split()[-2:]
    assert container["command"][-2:] == ["--older-than", "30d"]
    # The rendered command, but for the age: the run was deleted a moment ago.
    result = run([*container["command"][:-1], "0d"], env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    artifacts = {p.name for p in (tmp_path / "artifacts").rglob("*.txt")}
    assert artifacts == {"kept.txt"}
    with sqlite3.connect(tmp_path / "mlflow_backend_store_uri.db") as db:
        assert [r[0] for r in db.execute("SELECT run_uuid FROM runs")] == [kept] != [deleted]


def test_server_container_runs_here(tmp_path):
    """The server container with metrics on (the default), run here on loopback (serve.sh,
    the rendered environment): a scrape of /metrics whose Host is the pod's IP and port, as
    Prometheus sends it, passes MLflow's host check; another host name does not (the
    control); /health answers any. Then the gc CronJob's container runs against it."""
    container, = pod_spec(one(rendered(("values-replicas.yaml",)), "Deployment", "server"))["containers"]
    pod_ip = "10.244.7.9"
    env = container_env_here(container, tmp_path, pod_ip)
    runtime = tmp_path / "runtime"  # the pod's in-memory folder: serve.sh's metrics folder goes there
    runtime.mkdir()
    env["MLFLOW_RUNTIME_DIR"] = str(runtime)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env |= {"PATH": f"{REPO_ROOT / '.venv' / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path),
            "MLFLOW_HOST": "127.0.0.1", "MLFLOW_PORT": str(port), "MLFLOW_WORKERS": "1",
            "MLFLOW_ARTIFACTS_DESTINATION": str(tmp_path / "artifacts")}
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen(["sh", SETUP / "mlflow" / "serve.sh"], env=env, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)

    def get(path: str, host: str) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            connection.request("GET", path, headers={"Host": host})
            return connection.getresponse().status
        finally:
            connection.close()

    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if get("/health", "anything.example") == 200:
                    break
            except OSError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "server.log").read_text()[-3000:]
            time.sleep(0.5)
        assert get("/metrics", f"{pod_ip}:5000") == 200
        assert get("/metrics", "evil.example:5000") in (400, 403)
        assert [p.name.split(".")[0] for p in runtime.iterdir()] == ["metrics"]
        run_gc_cronjob_here(tmp_path, f"http://127.0.0.1:{port}")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def test_gc_cronjob():
    docs = scenario_docs("values-shared-tls.yaml")
    cron = one(docs, "CronJob", "gc")
    assert cron["spec"]["schedule"] and cron["spec"]["concurrencyPolicy"] == "Forbid"
    container, = pod_spec(cron)["containers"]
    script = container["command"][2]
    assert container["command"][:2] == ["python", "-c"] and '"gc"' in script
    assert 'os.environ["MLFLOW_BACKEND_STORE_URI"]' in script  # the URI is in no argument
    assert container["command"][3:] == ["--older-than", "30d"]
    env = env_of(container)
    service = one(docs, "Service", "server")["metadata"]["name"]
    assert env["MLFLOW_TRACKING_URI"]["value"] == f"http://{service}:5000"
    assert f"{service}:5000" in env["MLFLOW_SERVER_ALLOWED_HOSTS"]["value"].split(",")
    assert env["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"]
    # gc may reach the server through the NetworkPolicy.
    policy = [p for p in by_kind(docs, "NetworkPolicy") if p["metadata"]["name"].endswith("-server")][0]
    sources = [f["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
               for f in policy["spec"]["ingress"][0]["from"] if "podSelector" in f]
    assert sorted(sources) == ["gc", "nginx"]


# --- secrets --------------------------------------------------------------------------

PASSWORD_NAME = re.compile(r"PASSWORD|SECRET|_PWD$|KEY$|KEY_ID$")
URL_CREDENTIALS = re.compile(r"://[^/:@\s]+:([^@\s]+)@")


def plain_secrets(docs: list[dict]) -> list[str]:
    """Every place a secret could be in plain text: a Secret with data, an env var named
    like a secret with a value, credentials in a URL other than the $(VAR) reference."""
    found = []
    for doc in docs:
        if doc["kind"] == "Secret":
            found.append(f"Secret {doc['metadata']['name']}")
        if doc["kind"] not in WORKLOADS:
            continue
        spec = pod_spec(doc)
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            for name, entry in env_of(container).items():
                value = entry.get("value", "")
                if PASSWORD_NAME.search(name) and "value" in entry:
                    found.append(f"{doc['metadata']['name']}: {name}={value}")
                for password in URL_CREDENTIALS.findall(str(value)):
                    if password != "$(MLFLOW_DB_PASSWORD)":
                        found.append(f"{doc['metadata']['name']}: {name} holds a password")
    return found


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_secret_in_plain_text(scenario):
    sets = tuple(f"{key}={name}" for key, name in DUMMY_SECRETS.items()) + ("ingress.enabled=true",)
    docs = rendered((scenario,), sets)
    assert plain_secrets(docs) == []
    # Secrets come by reference, and only from the Secrets named in values.
    text = rendered_text((scenario,), sets)
    references = set(re.findall(r"(?:secretName|name): (dummy-[\w-]+)", text))
    assert references and references <= set(DUMMY_SECRETS.values())
    for doc in docs:
        if doc["kind"] in WORKLOADS:
            for container in pod_spec(doc)["containers"]:
                for entry in container.get("env", []):
                    ref = entry.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        assert ref["name"] in DUMMY_SECRETS.values(), ref


def test_secret_scan_can_fail():
    """Negative control: the scan finds a password put into the server's environment."""
    docs = scenario_docs("values-external.yaml")
    leaky = yaml.safe_load(yaml.safe_dump(one(docs, "Deployment", "server")))
    container = leaky["spec"]["template"]["spec"]["containers"][0]
    container["env"].append({"name": "MYSQL_PASSWORD", "value": "hunter2"})
    container["env"].append({"name": "MLFLOW_TRACKING_URI", "value": "mysql://u:hunter2@db/x"})
    assert len(plain_secrets([leaky])) == 2


# --- requests, probes, security -------------------------------------------------------

@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_container_is_bounded_probed_and_locked_down(scenario):
    docs = rendered((scenario,), tuple(EVERYTHING) if scenario != "values-shared-tls.yaml" else ())
    workloads = [d for d in docs if d["kind"] in WORKLOADS]
    assert workloads
    for doc in workloads:
        spec = pod_spec(doc)
        where = f"{doc['kind']} {doc['metadata']['name']}"
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert isinstance(spec["securityContext"]["runAsUser"], int) and spec["securityContext"]["runAsUser"] > 0
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec["automountServiceAccountToken"] is False, where
        assert spec["enableServiceLinks"] is False, where  # a Service "mlflow" would set MLFLOW_PORT
        for container in spec["containers"]:
            what = f"{where} / {container['name']}"
            requests = container["resources"]["requests"]
            assert requests["cpu"] and requests["memory"], what
            assert container["resources"]["limits"]["memory"], what
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, what
            assert security["readOnlyRootFilesystem"] is True, what
            assert security["capabilities"]["drop"] == ["ALL"], what
            if doc["kind"] in {"Deployment", "StatefulSet"}:  # long-running: probed
                assert container["readinessProbe"] and container["livenessProbe"], what
            # A read-only root: /tmp must be a volume.
            assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"]) or \
                container["name"] in {"mysql", "create-auth-database"}, what


def test_replicas_have_a_disruption_budget():
    docs = scenario_docs("values-replicas.yaml")
    deployment = one(docs, "Deployment", "server")
    assert deployment["spec"]["replicas"] == 3
    budget = one(docs, "PodDisruptionBudget", "server")
    assert budget["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert budget["spec"]["maxUnavailable"] == 1


# --- hooks ----------------------------------------------------------------------------

def hook(doc: dict) -> tuple[set[str], int, set[str]]:
    annotations = doc["metadata"].get("annotations", {})
    return (set(annotations.get("helm.sh/hook", "").split(",")) - {""},
            int(annotations.get("helm.sh/hook-weight", "0")),
            set(annotations.get("helm.sh/hook-delete-policy", "").split(",")))


BEFORE = {"pre-install", "pre-upgrade"}
AFTER_INSTALL = {"post-install", "pre-upgrade"}


@pytest.mark.parametrize("scenario, phases", [
    # External services: every hook before install and before each upgrade.
    ("values-external.yaml", {"migration": BEFORE, "create-bucket": BEFORE}),
    ("values-shared-tls.yaml", {"migration": BEFORE, "create-bucket": BEFORE, "create-auth-database": BEFORE}),
    # In-cluster MySQL and MinIO come with the release: their jobs run after install; the
    # migration only before upgrades (the server creates a new database's schema itself).
    ("values-try-it.yaml", {"migration": {"pre-upgrade"}, "create-bucket": AFTER_INSTALL}),
])
def test_hooks(scenario, phases):
    docs = rendered((scenario,), ("artifacts.createBucket=true", "artifacts.s3EndpointUrl=https://s3.example.com"))
    jobs = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in by_kind(docs, "Job")}
    assert set(jobs) == set(phases)
    migration = hook(jobs["migration"])
    for name, job in jobs.items():
        kinds, weight, delete = hook(job)
        assert kinds == phases[name], name
        assert {"before-hook-creation", "hook-succeeded"} <= delete, name
        if name != "migration":
            assert weight < migration[1], f"{name} must run before the migration"
    # The jobs' scripts: a hook in every phase a job runs in, weighted before them all.
    files, = [d for d in by_kind(docs, "ConfigMap") if hook(d)[0]]
    assert hook(files)[0] >= set().union(*phases.values())
    assert hook(files)[1] < min(hook(j)[1] for j in jobs.values())
    # Nothing that is not a hook is annotated as one.
    for doc in docs:
        if doc["kind"] not in {"Job", "ConfigMap"}:
            assert not hook(doc)[0], doc["metadata"]["name"]


def test_hook_scripts_are_the_stacks_with_the_host_from_the_environment():
    docs = rendered(("values-shared-tls.yaml",), ("artifacts.createBucket=true",))
    files, = [d for d in by_kind(docs, "ConfigMap") if hook(d)[0]]
    for name, compose_host, chart_host in [
            ("create-bucket.sh", '"http://minio:9000"', '"${S3_ENDPOINT}"'),
            ("create-auth-database.sh", " -h mysql ", ' -h "${MYSQL_HOST}" -P "${MYSQL_TCP_PORT}" ')]:
        source = (CHART / "files" / name).read_text()
        assert compose_host in source, f"{name} changed: the chart's host replacement no longer applies"
        assert files["data"][name] == source.replace(compose_host, chart_host)
    assert files["data"]["auth-schema.sql"] == (SETUP / "mysql" / "auth-schema.sql").read_text()


# --- nginx ----------------------------------------------------------------------------

def test_nginx_gets_the_stacks_site_and_proxy_files():
    for scenario, site in [("values-external.yaml", "default.conf.template"),
                           ("values-shared-tls.yaml", "shared.conf.template")]:
        docs = scenario_docs(scenario)
        files = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-files")][0]
        for name in ("default.conf.template", "shared.conf.template", "mlflow-proxy.conf"):
            assert files["data"][name] == (SETUP / "nginx" / name).read_text(), name
        spec = pod_spec(one(docs, "Deployment", "nginx"))
        mounts = {m["mountPath"]: m for m in spec["containers"][0]["volumeMounts"]}
        assert mounts["/etc/nginx/templates/default.conf.template"]["subPath"] == site
        assert mounts["/etc/nginx/mlflow-proxy.conf"]["subPath"] == "mlflow-proxy.conf"


def nginx_binary() -> str:
    binary = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    assert binary, "nginx is not installed (the process-based twin needs it too: docs/tests.md)"
    return binary


@pytest.mark.parametrize("scenario, sets", [("values-external.yaml", ()), ("values-shared-tls.yaml", ()),
                                            ("values-replicas.yaml", ("metrics.enabled=false",))])
def test_nginx_accepts_the_rendered_site(tmp_path, scenario, sets):
    """The site as the nginx image would write it (envsubst of the pod's variables into
    conf.d), checked by nginx -t with the pod's paths under a temporary prefix."""
    docs = rendered((scenario,), sets)
    files = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-files")][0]["data"]
    container = pod_spec(one(docs, "Deployment", "nginx"))["containers"][0]
    env = {name: entry["value"] for name, entry in env_of(container).items()}
    site_name = [m["subPath"] for m in container["volumeMounts"]
                 if m["mountPath"] == "/etc/nginx/templates/default.conf.template"][0]
    site = re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), m.group(0)), files[site_name])
    assert "${" not in site, "a variable the pod does not set"
    site = site.replace(f"server {env['MLFLOW_UPSTREAM']};", "server 127.0.0.1:5000;")  # no cluster DNS here
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "default.conf").write_text(site)
    (tmp_path / "mlflow-proxy.conf").write_text(files["mlflow-proxy.conf"])
    (tmp_path / "tls").mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-keyout", tmp_path / "tls" / "server.key", "-out", tmp_path / "tls" / "server.crt"],
                   check=True, capture_output=True)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log stderr;\nevents {{}}\nhttp {{\n"
        f"  client_body_temp_path {tmp_path}/body; proxy_temp_path {tmp_path}/proxy;\n"
        f"  fastcgi_temp_path {tmp_path}/f; uwsgi_temp_path {tmp_path}/u; scgi_temp_path {tmp_path}/s;\n"
        f"  access_log off;\n  include conf.d/*.conf;\n}}\n")
    result = run([nginx_binary(), "-t", "-p", tmp_path, "-c", tmp_path / "nginx.conf"])
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr


def test_metrics_reach_prometheus_not_the_public():
    docs = rendered(("values-replicas.yaml",))
    proxy = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-files")][0]["data"][
        "mlflow-proxy.conf"]
    # The stack's own file, which answers /metrics with 404 on both sites (tests/test_metrics.py).
    assert proxy == (SETUP / "nginx" / "mlflow-proxy.conf").read_text()
    assert re.search(r"location = /metrics \{\s*return 404;\s*\}", proxy)
    spec = pod_spec(one(docs, "Deployment", "server"))
    env = env_of(spec["containers"][0])
    assert env["MLFLOW_METRICS"]["value"] == "1"
    mount, = [m for m in spec["containers"][0]["volumeMounts"] if m["mountPath"] == env["MLFLOW_RUNTIME_DIR"]["value"]]
    volume, = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    assert volume["emptyDir"]["medium"] == "Memory"  # a fresh folder per start, never on disk
    policy = [p for p in by_kind(docs, "NetworkPolicy") if p["metadata"]["name"].endswith("-server")][0]
    peers = policy["spec"]["ingress"][0]["from"]
    assert any("namespaceSelector" in p for p in peers)
    assert policy["spec"]["ingress"][0]["ports"] == [{"port": 5000}]
