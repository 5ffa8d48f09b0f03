"""The compose stack, checked without a Docker engine, and its single sources of truth."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from dotenv import dotenv_values

from mlflow_stack.local_stack import (
    MYSQL_CONFIG,
    NGINX_PROXY_CONFIG,
    NGINX_SHARED_TEMPLATE,
    NGINX_TEMPLATE,
    SERVE_SCRIPT,
    render_nginx_template,
)
from mlflow_stack.settings import REPO_ROOT, STACK_DIR, STACK_ENV_FILE, stack_env
from mlflow_stack.stack_secrets import SECRET_NAMES, ensure_tls

SHARE_OVERLAY = STACK_DIR / "docker-compose.share.yml"
READ_REPLICA_OVERLAY = STACK_DIR / "docker-compose.read-replica.yml"


@pytest.fixture(scope="module")
def secrets(tmp_path_factory) -> dict[str, str]:
    """The shipped .env plus secrets generated as start_mlflow.sh generates them."""
    return stack_env(tmp_path_factory.mktemp("secrets"), generate=True)


def compose_config(env: dict[str, str], *files: Path) -> dict:
    """`docker-compose config` resolves the files with the shipped .env, or fails."""
    result = subprocess.run(
        ["docker-compose", "--env-file", str(STACK_ENV_FILE),
         *[arg for path in files for arg in ("-f", str(path))], "config"],
        cwd=STACK_DIR, capture_output=True, text=True, check=False, env={**os.environ, **env},
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def compose(secrets) -> dict:
    return compose_config(secrets, STACK_DIR / "docker-compose.yml")


@pytest.fixture(scope="module")
def shared_compose(secrets, tmp_path_factory) -> dict:
    """The stack with the share overlay, as start_mlflow.sh runs it with MLFLOW_SHARE=1."""
    cert, key, _ = ensure_tls(tmp_path_factory.mktemp("tls"))
    return compose_config({**secrets, "MLFLOW_TLS_CERT_FILE": str(cert), "MLFLOW_TLS_KEY_FILE": str(key)},
                          STACK_DIR / "docker-compose.yml", SHARE_OVERLAY)


@pytest.fixture(scope="module")
def read_replica_compose(secrets) -> dict:
    """The stack with the read-replica overlay, as start_mlflow.sh runs it with MLFLOW_READ_REPLICA=1."""
    return compose_config(secrets, STACK_DIR / "docker-compose.yml", READ_REPLICA_OVERLAY)


# docker-compose v1 prints short syntax ("src:dst:mode"), v2 long syntax (mappings).
def mounts(service: dict) -> dict[str, str]:
    found = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume["source"], volume["target"]
        found[source] = target
    return found


def published(service: dict) -> set[tuple[str, int]]:
    found = set()
    for port in service.get("ports", []):
        if isinstance(port, str):
            parts = port.split("/")[0].split(":")
            host_ip = parts[0] if len(parts) == 3 else ""
            found.add((host_ip, int(parts[-1])))
        else:
            found.add((port.get("host_ip", ""), int(port["target"])))
    return found


def test_every_image_is_pinned_to_a_release(compose):
    for name, service in compose["services"].items():
        image = service["image"]
        tag = image.rsplit(":", 1)[-1] if ":" in image.split("/")[-1] else ""
        assert tag and tag != "latest", f"{name} uses {image}"


def test_start_up_is_ordered_by_health(compose):
    services = compose["services"]
    assert services["create-bucket"]["depends_on"] == {"minio": {"condition": "service_healthy"}}
    assert services["mlflow"]["depends_on"] == {
        "mysql": {"condition": "service_healthy"},
        "create-bucket": {"condition": "service_completed_successfully"},
    }
    assert services["nginx"]["depends_on"] == {"mlflow": {"condition": "service_healthy"}}
    for name in ("mysql", "minio", "mlflow", "nginx"):
        assert services[name]["healthcheck"]["test"], name
    assert "mysqladmin" in " ".join(services["mysql"]["healthcheck"]["test"])
    assert services["mysql"]["healthcheck"]["start_period"]


def test_only_nginx_and_minio_are_published_both_on_loopback_only(compose):
    services = compose["services"]
    assert "ports" not in services["mysql"] and "ports" not in services["mlflow"]
    assert published(services["minio"]) == {("127.0.0.1", 9000), ("127.0.0.1", 9001)}
    assert published(services["nginx"]) == {("127.0.0.1", 80)}


def test_every_image_comes_from_a_variable_whose_default_is_the_official_pin():
    text = (STACK_DIR / "docker-compose.yml").read_text()
    images = re.findall(r"^\s+image:\s*(.+)$", text, re.M)
    pulled = [image for image in images if not image.startswith("mlflow-tracking-server:")]
    assert pulled == ["${MYSQL_IMAGE:?set MYSQL_IMAGE in .env}", "${MINIO_IMAGE:?set MINIO_IMAGE in .env}",
                      "${MC_IMAGE:?set MC_IMAGE in .env}", "${NGINX_IMAGE:?set NGINX_IMAGE in .env}"]
    assert "PYTHON_IMAGE: ${PYTHON_IMAGE:?set PYTHON_IMAGE in .env}" in text
    # The defaults are the official images the configuration page (docs/configuration.md) names.
    config = stack_env()
    readme = (REPO_ROOT / "docs" / "configuration.md").read_text()
    documented = dict(re.findall(r"^\| `(\w+_IMAGE)` \| `([^`]+)` \|", readme, re.M))
    assert set(documented) == {"MYSQL_IMAGE", "MINIO_IMAGE", "MC_IMAGE", "NGINX_IMAGE", "PYTHON_IMAGE"}
    for name, image in documented.items():
        assert config[name] == image, name
    assert config["MINIO_IMAGE"].startswith("quay.io/minio/minio:RELEASE.")


def test_stand_in_images_never_carry_an_official_name():
    standins = dotenv_values(REPO_ROOT / "tests" / "standin_images" / "standins.env")
    replaces = {"GENUINE_MYSQL_IMAGE": "MYSQL_IMAGE"}  # the second database stand-in
    official = {stack_env()[replaces.get(name, name)] for name in standins}
    for name, image in standins.items():
        assert image.startswith("mlflow-standin/"), name
        assert image not in official


def test_data_lives_in_named_volumes(compose):
    assert set(compose["volumes"]) == {"mysql-data", "minio-data"}
    assert mounts(compose["services"]["mysql"])["mysql-data"] == "/var/lib/mysql"
    assert mounts(compose["services"]["minio"])["minio-data"] == "/data"


def test_server_uses_mysql_utf8mb4_and_proxied_s3_artifacts(compose, secrets):
    env = compose["services"]["mlflow"]["environment"]
    config = secrets
    assert env["MLFLOW_BACKEND_STORE_URI"] == (
        f"mysql+pymysql://{config['MYSQL_USER']}:{config['MYSQL_PASSWORD']}"
        f"@mysql:3306/{config['MYSQL_DATABASE']}?charset=utf8mb4")
    assert env["MLFLOW_ARTIFACTS_DESTINATION"] == "s3://mlflow"
    assert env["AWS_ACCESS_KEY_ID"] == "minio" and env["AWS_SECRET_ACCESS_KEY"] == config["MINIO_ROOT_PASSWORD"]


def test_no_secret_is_committed_and_compose_will_not_run_without_them():
    committed = dotenv_values(STACK_ENV_FILE)
    assert not set(SECRET_NAMES) & set(committed), "secrets belong in secrets/stack.env, generated"
    assert "/mlflow_docker_setup/secrets/" in (REPO_ROOT / ".gitignore").read_text().splitlines()
    result = subprocess.run(["docker-compose", "--env-file", str(STACK_ENV_FILE), "config"], cwd=STACK_DIR,
                            capture_output=True, text=True,
                            env={k: v for k, v in os.environ.items() if k not in SECRET_NAMES})
    assert result.returncode != 0
    assert "run start_mlflow.sh, which generates secrets/stack.env" in result.stderr


def test_every_container_is_kept_from_gaining_privileges(compose, shared_compose, read_replica_compose):
    for services in (compose["services"], shared_compose["services"], read_replica_compose["services"]):
        for name, service in services.items():
            assert "no-new-privileges:true" in service.get("security_opt", []), name


def test_sharing_adds_sign_in_its_database_job_and_https(shared_compose, secrets):
    services = shared_compose["services"]
    job = services["create-auth-database"]
    assert job["depends_on"] == {"mysql": {"condition": "service_healthy"}}
    assert job["restart"] == "no" and "ports" not in job
    assert services["mlflow"]["depends_on"]["create-auth-database"] == {
        "condition": "service_completed_successfully"}
    env = services["mlflow"]["environment"]
    assert env["MLFLOW_AUTH_DATABASE_URI"] == (
        f"mysql+pymysql://{secrets['MYSQL_USER']}:{secrets['MYSQL_PASSWORD']}"
        f"@mysql:3306/{secrets['MLFLOW_AUTH_DATABASE']}?charset=utf8mb4")
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] == secrets["MLFLOW_ADMIN_PASSWORD"]
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"] == secrets["MLFLOW_FLASK_SERVER_SECRET_KEY"]
    assert str(env["MLFLOW_AUTH_CACHE_SECONDS"]) == secrets["MLFLOW_AUTH_CACHE_SECONDS"] == "30"
    nginx = services["nginx"]
    # NGINX_BIND_ADDRESS is chosen by start_mlflow.sh (all interfaces when shared).
    assert published(nginx) == {("127.0.0.1", 80), ("127.0.0.1", 443)}
    assert mounts(nginx)[str(NGINX_SHARED_TEMPLATE)] == "/etc/nginx/templates/default.conf.template"
    assert str(NGINX_TEMPLATE) not in mounts(nginx)
    assert "https://localhost/health" in nginx["healthcheck"]["test"]
    assert published(services["minio"]) == {("127.0.0.1", 9000), ("127.0.0.1", 9001)}
    assert "ports" not in services["mysql"] and "ports" not in services["mlflow"]


def test_the_read_replica_is_the_same_database_image_unpublished_and_set_up_before_mlflow(read_replica_compose):
    services = read_replica_compose["services"]
    assert services["mysql-replica"]["image"] == services["mysql"]["image"]
    assert "ports" not in services["mysql-replica"] and "ports" not in services["setup-read-replica"]
    assert services["setup-read-replica"]["restart"] == "no"
    assert services["mlflow"]["depends_on"]["setup-read-replica"] == {"condition": "service_completed_successfully"}
    assert services["mlflow"]["environment"]["MLFLOW_READ_REPLICA_BACKEND_STORE_URI"].split("@")[1].startswith(
        "mysql-replica:3306/")


def test_nginx_follows_every_server_replica_in_dockers_dns(compose):
    nginx = compose["services"]["nginx"]
    assert nginx["environment"]["MLFLOW_UPSTREAM"] == "mlflow:5000 resolve"
    assert mounts(nginx)[str(STACK_DIR / "nginx" / "docker-dns.conf")] == "/etc/nginx/conf.d/docker-dns.conf"
    assert "resolver 127.0.0.11 valid=2s" in (STACK_DIR / "nginx" / "docker-dns.conf").read_text()
    for template in (NGINX_TEMPLATE, NGINX_SHARED_TEMPLATE):
        assert re.search(r"zone mlflow_server 64k;[^\n]*\n\s*server \$\{MLFLOW_UPSTREAM\};", template.read_text()), template


def test_the_servers_runtime_tmpfs_belongs_to_the_images_user(compose):
    """serve.sh writes there as the image's user; Docker resets a restarted container's tmpfs
    mode, so the mount names its owner: the Dockerfile's uid, which the chart runs as too."""
    build = compose["services"]["mlflow"]["build"]
    dockerfile = (Path(build["context"]) / build.get("dockerfile", "Dockerfile")).read_text()
    uid = re.search(r"useradd --uid (\d+) --create-home mlflow", dockerfile).group(1)
    runtime = compose["services"]["mlflow"]["environment"]["MLFLOW_RUNTIME_DIR"]
    mount, = [m for m in compose["services"]["mlflow"]["tmpfs"] if m.split(":")[0] == runtime]
    assert set(mount.split(":")[1].split(",")) == {f"uid={uid}", f"gid={uid}", "mode=0700"}
    chart = yaml.safe_load((REPO_ROOT / "deploy" / "helm" / "mlflow-stack" / "values.yaml").read_text())
    assert str(chart["podSecurityContext"]["runAsUser"]) == uid


def test_compose_and_twin_share_the_server_script(compose):
    """The image's entrypoint is serve.sh, the file the twin runs; it holds every flag."""
    build = compose["services"]["mlflow"]["build"]
    dockerfile = (Path(build["context"]) / build.get("dockerfile", "Dockerfile")).read_text()
    assert Path(build["context"]).resolve() == SERVE_SCRIPT.parent
    assert re.search(r"^COPY serve\.sh /usr/local/bin/mlflow-serve$", dockerfile, re.M)
    assert re.search(r'^ENTRYPOINT \["mlflow-serve"\]$', dockerfile, re.M)
    assert "command" not in compose["services"]["mlflow"], "flags belong in serve.sh only"
    script = SERVE_SCRIPT.read_text()
    for flag in ("--serve-artifacts", "--artifacts-destination", "--allowed-hosts"):
        assert flag in script
    assert "--backend-store-uri" not in script  # from MLFLOW_BACKEND_STORE_URI: no password in `ps`


def test_compose_and_twin_share_the_nginx_and_database_config(compose):
    nginx_mounts = mounts(compose["services"]["nginx"])
    assert nginx_mounts[str(NGINX_TEMPLATE)] == "/etc/nginx/templates/default.conf.template"
    assert nginx_mounts[str(NGINX_PROXY_CONFIG)] == "/etc/nginx/mlflow-proxy.conf"
    assert mounts(compose["services"]["mysql"])[str(MYSQL_CONFIG)] == "/etc/mysql/conf.d/mlflow.cnf"


def nginx_values(compose_config: dict) -> dict[str, str]:
    """What the nginx image's envsubst fills in: the service's environment."""
    return {name: str(value) for name, value in compose_config["services"]["nginx"]["environment"].items()}


@pytest.mark.parametrize("template, config", [(NGINX_TEMPLATE, "compose"), (NGINX_SHARED_TEMPLATE, "shared_compose")])
def test_twin_renders_the_templates_exactly_like_the_images_envsubst(template, config, request):
    values = nginx_values(request.getfixturevalue(config))
    # The nginx image runs: envsubst "$(printf '${%s} ' <defined variable names>)"
    envsubst = subprocess.run(
        ["envsubst", " ".join("${%s}" % name for name in values)],
        input=template.read_text(), capture_output=True, text=True, check=True,
        env={**os.environ, **values},
    ).stdout
    rendered = render_nginx_template(values, template)
    assert rendered == envsubst
    assert "${" not in rendered
    if template == NGINX_SHARED_TEMPLATE:  # nginx's own variables stay for nginx
        assert "https://$host:" in rendered and "$upstream_http_x_content_type_options" in rendered
    # The shared include is not rendered at all: no variable of the environment's in it.
    assert "${" not in NGINX_PROXY_CONFIG.read_text()


@pytest.mark.parametrize("template", [NGINX_TEMPLATE, NGINX_SHARED_TEMPLATE])
def test_rendered_nginx_config_is_valid_and_lifts_the_body_limit(template, tmp_path):
    site = tmp_path / "default.conf"
    site.write_text(render_nginx_template({"MLFLOW_UPSTREAM": "127.0.0.1:5000", "NGINX_PORT": "127.0.0.1:8080",
                                           "NGINX_TLS_PORT": "127.0.0.1:8443", "NGINX_HTTPS_PORT": "8443"},
                                          template))
    shutil.copy(NGINX_PROXY_CONFIG, tmp_path)
    (tmp_path / "tls").mkdir()
    for path, name in zip(ensure_tls(tmp_path / "secrets")[:2], ("server.crt", "server.key")):
        shutil.copy(path, tmp_path / "tls" / name)
    main = tmp_path / "nginx.conf"
    main.write_text(f"pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log; events {{}}\n"
                    f"http {{ include {site}; }}\n")
    result = subprocess.run(["nginx", "-t", "-p", str(tmp_path), "-c", str(main)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    text = NGINX_PROXY_CONFIG.read_text()
    assert "include mlflow-proxy.conf;" in site.read_text()
    assert re.search(r"client_max_body_size\s+(0|\d+[gG]);", text)
    assert re.search(r"proxy_read_timeout\s+\d{3,}s;", text)


def test_server_image_pins_match_the_client_environment():
    def pins(path: Path) -> dict[str, str]:
        found = {}
        for line in path.read_text().splitlines():
            match = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;#]+)", line.strip())
            if match:
                found[match.group(1).lower().split("[")[0]] = match.group(2)
        return found

    server = pins(SERVE_SCRIPT.parent / "requirements.txt")
    client = pins(REPO_ROOT / "requirements.txt")
    assert set(server) == {"mlflow", "pymysql", "boto3", "cryptography", "flask-wtf", "wtforms", "uvicorn",
                           "prometheus-flask-exporter", "prometheus_client"}
    for name, version in server.items():
        assert client.get(name) == version, f"{name}: server {version}, client {client.get(name)}"


def test_every_stack_variable_is_documented_in_the_configuration_page():
    readme = (REPO_ROOT / "docs" / "configuration.md").read_text()
    for name in [*stack_env(), *SECRET_NAMES]:
        assert re.search(rf"^\|\s*`{name}`\s*\|", readme, re.M), f"{name} missing from docs/configuration.md"
