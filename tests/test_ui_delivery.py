"""How nginx delivers the MLflow UI: text compressed when the client accepts gzip, the
content-hashed files cached for a year, the page itself revalidated, and every security
header still on them. On the twin and the compose stack (and the shared twin's HTTPS site,
which includes the same proxy configuration), through nginx as a browser reaches it.
The browser's side of it, bytes and times, is measured by benchmarks/ui_weight.py."""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import re
import uuid

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

pytestmark = pytest.mark.stack

IMMUTABLE = "public, max-age=31536000, immutable"


@pytest.fixture(scope="module")
def stack(each_stack):
    return each_stack


def fetch(stack, path: str, accept_encoding: str | None, method: str = "GET", body: dict | None = None,
          credentials: tuple[str, str] | None = None,
          extra: dict[str, str] | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request through the stack's nginx, the body as it came over the wire (not decoded)."""
    scheme, rest = stack.tracking_uri.split("://", 1)
    host, port = rest.rsplit(":", 1)
    if scheme == "https":
        connection = http.client.HTTPSConnection(host, int(port), timeout=60, context=stack.ssl_context())
    else:
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
    # http.client adds "Accept-Encoding: identity" unless told it is set: None sends no header at all.
    headers = {} if accept_encoding is None else {"Accept-Encoding": accept_encoding}
    headers.update(extra or {})
    if credentials:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(credentials).encode()).decode()
    data = None
    if body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        headers["Content-Length"] = str(len(data))
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders(data)
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def ui_files(stack, credentials=None) -> dict[str, str]:
    """The main script and stylesheet index.html names, and other hashed files from
    MLflow's asset manifest (a chunk, a font, an SVG, the telemetry worker)."""
    status, _, page = fetch(stack, "/", None, credentials=credentials)
    assert status == 200
    found = dict(zip(("js", "css"), (re.search(r'src="(static-files/static/js/main\.[0-9a-f]+\.js)"', page.decode()),
                                     re.search(r'href="(static-files/static/css/main\.[0-9a-f]+\.css)"', page.decode()))))
    assert all(found.values()), page
    files = {kind: "/" + match.group(1) for kind, match in found.items()}
    status, _, manifest = fetch(stack, "/static-files/asset-manifest.json", None, credentials=credentials)
    assert status == 200
    paths = list(json.loads(manifest)["files"].values())
    files["chunk"] = next(p for p in paths if p.startswith("/static-files/static/js/") and p.endswith(".chunk.js"))
    files["font"] = next(p for p in paths if p.startswith("/static-files/static/media/") and p.endswith(".woff2"))
    files["svg"] = next(p for p in paths if p.startswith("/static-files/static/media/") and p.endswith(".svg"))
    files["worker"] = next(p for p in paths if p.endswith(".worker.js"))
    assert files["js"] in paths and files["css"] in paths
    return files


@pytest.fixture(scope="module")
def hashed(stack):
    return ui_files(stack)


def vary(headers) -> set[str]:
    return {value.strip().lower() for line in headers.get_all("Vary", []) for value in line.split(",")}


# -- compression ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["js", "css"])
def test_main_bundle_and_css_arrive_gzipped_and_decode_to_the_same_bytes(stack, hashed, kind):
    status, plain_headers, plain = fetch(stack, hashed[kind], "identity")
    # Positive control: asked for identity, nginx sends the file as MLflow does, whole.
    assert status == 200 and plain_headers["Content-Encoding"] is None
    assert int(plain_headers["Content-Length"]) == len(plain) > 500_000
    status, headers, packed = fetch(stack, hashed[kind], "gzip, deflate, br")
    assert status == 200 and headers.get_all("Content-Encoding") == ["gzip"]
    assert "accept-encoding" in vary(headers) and "origin" in vary(headers)  # nginx's, and MLflow's kept
    assert gzip.decompress(packed) == plain
    assert len(packed) < len(plain) / 3, (len(packed), len(plain))  # 4.4 MB -> 1.2 MB, 829 KB -> 98 KB
    # No Accept-Encoding at all: also uncompressed.
    status, headers, body = fetch(stack, hashed[kind], None)
    assert status == 200 and headers["Content-Encoding"] is None and body == plain


@pytest.mark.parametrize("kind", ["svg", "chunk"])
def test_other_text_files_of_the_ui_are_gzipped_and_fonts_already_compressed_are_not(stack, hashed, kind):
    status, headers, packed = fetch(stack, hashed[kind], "gzip")
    assert status == 200 and headers["Content-Encoding"] == "gzip", headers
    assert gzip.decompress(packed) == fetch(stack, hashed[kind], "identity")[2]
    status, headers, woff2 = fetch(stack, hashed["font"], "gzip")
    assert status == 200 and headers["Content-Type"] == "font/woff2" and headers["Content-Encoding"] is None
    assert woff2[:4] == b"wOF2"


@pytest.fixture(scope="module")
def experiment_with_runs(stack):
    """30 runs with a few params and metrics: a runs/search answer of several KB."""
    client = MlflowClient(stack.tracking_uri)
    experiment_id = client.create_experiment(f"ui-delivery-{uuid.uuid4().hex[:8]}")
    for index in range(30):
        run = client.create_run(experiment_id, run_name=f"delivery-{index}")
        client.log_batch(run.info.run_id, metrics=[Metric(f"m{k}", index / (k + 1), 0, 0) for k in range(3)],
                         params=[Param(f"p{k}", f"value-{index}-{k}") for k in range(3)])
        client.set_terminated(run.info.run_id)
    return experiment_id


@pytest.mark.parametrize("prefix", ["/api", "/ajax-api"])
def test_a_runs_search_answer_is_gzipped_when_accepted(stack, experiment_with_runs, prefix):
    """/ajax-api/ is what the UI calls, /api/ what clients call: the same answer."""
    path, query = f"{prefix}/2.0/mlflow/runs/search", {"experiment_ids": [experiment_with_runs], "max_results": 100}
    status, plain_headers, plain = fetch(stack, path, "identity", "POST", query)
    assert status == 200 and plain_headers["Content-Encoding"] is None  # the control
    assert len(json.loads(plain)["runs"]) == 30 and len(plain) > 1024  # over gzip_min_length
    status, headers, packed = fetch(stack, path, "gzip", "POST", query)
    assert status == 200 and headers["Content-Encoding"] == "gzip" and headers["Content-Type"] == "application/json"
    assert "accept-encoding" in vary(headers)
    assert json.loads(gzip.decompress(packed)) == json.loads(plain)
    assert len(packed) < len(plain) / 3


def test_an_answer_under_the_minimum_length_is_sent_as_it_is(stack):
    status, headers, body = fetch(stack, "/health", "gzip")
    assert status == 200 and body == b"OK" and headers["Content-Encoding"] is None


def test_artifact_downloads_by_the_api_are_not_compressed_but_the_uis_reads_are(stack):
    """/api/2.0/mlflow-artifacts/ streams a file's bytes as they are (gzip off there); the
    UI, which reads through /ajax-api/, gets them compressed."""
    import mlflow

    text = "epoch,loss\n" + "".join(f"{i},{1 / (i + 1):.6f}\n" for i in range(500))
    with mlflow.start_run(experiment_id=mlflow.create_experiment(f"ui-artifact-{uuid.uuid4().hex[:8]}")) as run:
        mlflow.log_text(text, "history.txt")
    root = run.info.artifact_uri
    assert root.startswith("mlflow-artifacts:/"), root
    relative = root.removeprefix("mlflow-artifacts:").lstrip("/") + "/history.txt"
    status, headers, body = fetch(stack, f"/api/2.0/mlflow-artifacts/artifacts/{relative}", "gzip")
    assert status == 200 and headers["Content-Encoding"] is None
    assert body.decode() == text and "accept-encoding" not in vary(headers)
    status, headers, body = fetch(stack, f"/ajax-api/2.0/mlflow-artifacts/artifacts/{relative}", "gzip")
    assert status == 200 and headers["Content-Encoding"] == "gzip" and gzip.decompress(body).decode() == text


# -- caching -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["js", "css", "chunk", "font", "svg", "worker"])
def test_hashed_files_are_cached_for_a_year_as_immutable(stack, hashed, kind):
    for accept_encoding in ("gzip", "identity"):
        status, headers, _ = fetch(stack, hashed[kind], accept_encoding)
        assert status == 200
        assert headers.get_all("Cache-Control") == [IMMUTABLE], (hashed[kind], headers.get_all("Cache-Control"))
        assert headers["Expires"] is None  # MLflow's 28 days, hidden with its Cache-Control


@pytest.mark.parametrize("path", ["/", "/static-files/index.html", "/static-files/favicon.ico",
                                  "/static-files/manifest.json", "/static-files/asset-manifest.json"])
def test_the_page_and_unhashed_files_are_revalidated_never_kept(stack, path):
    """index.html names the bundles of the MLflow that serves it: a browser must ask again."""
    status, headers, _ = fetch(stack, path, "gzip")
    assert status == 200 and headers.get_all("Cache-Control") == ["no-cache"], (path, headers.get_all("Cache-Control"))
    assert headers["Expires"] is None


def test_a_revalidated_file_answers_304_through_the_compression(stack):
    """gzip makes nginx weaken the ETag (W/"..."); MLflow still matches it and answers 304."""
    status, headers, _ = fetch(stack, "/static-files/favicon.ico", "gzip")
    assert status == 200 and headers["Content-Encoding"] == "gzip" and headers["ETag"].startswith('W/"')
    status, again, body = fetch(stack, "/static-files/favicon.ico", "gzip", extra={"If-None-Match": headers["ETag"]})
    assert status == 304 and body == b"" and again.get_all("Cache-Control") == ["no-cache"]
    # The control: an ETag that is not the file's gets the file.
    status, _, body = fetch(stack, "/static-files/favicon.ico", "identity", extra={"If-None-Match": 'W/"other"'})
    assert status == 200 and len(body) > 1000


def test_no_year_long_cache_for_what_is_missing_or_not_a_file(stack, hashed):
    """A hashed-looking name that does not exist (an old bundle after an upgrade), the
    folder itself, and the API: no immutable header (a 404 kept a year would stick)."""
    missing = re.sub(r"\.[0-9a-f]+\.js$", ".00000000.js", hashed["js"])
    for path in (missing, "/static-files/", "/static-files/static/js/"):
        status, headers, _ = fetch(stack, path, "gzip")
        assert status == 404 and headers["Cache-Control"] is None, (path, headers["Cache-Control"])
    status, headers, _ = fetch(stack, "/api/2.0/mlflow/experiments/search?max_results=1", "gzip")
    assert status == 200 and headers["Cache-Control"] is None


# -- security headers on what is compressed and cached -------------------------------------
def expected_policy() -> str:
    from mlflow_stack_server.content_policy import CONTENT_SECURITY_POLICY

    return f"{CONTENT_SECURITY_POLICY}; frame-ancestors 'self'"


def assert_security_headers(headers, path):
    assert headers["Server"] == "nginx", path
    assert headers.get_all("Content-Security-Policy") == [expected_policy()], path  # MLflow's, once
    assert headers.get_all("X-Content-Type-Options") == ["nosniff"], path  # once, not MLflow's and nginx's
    assert headers.get_all("X-Frame-Options") == ["SAMEORIGIN"], path
    assert headers.get_all("Referrer-Policy") == ["same-origin"], path


def test_static_files_keep_every_security_header(stack, hashed):
    for path in ("/", "/static-files/index.html", "/static-files/favicon.ico", hashed["js"], hashed["css"],
                 hashed["font"], hashed["worker"]):
        for accept_encoding in ("gzip", "identity"):
            status, headers, _ = fetch(stack, path, accept_encoding)
            assert status == 200, path
            assert_security_headers(headers, path)


def test_the_shared_twins_site_compresses_caches_and_keeps_its_headers_over_https(shared_twin):
    """The shared site (HTTPS, sign-in) includes the same proxy configuration, beside its
    HSTS header (sent for 127.0.0.1, a name that is not "localhost")."""
    admin = shared_twin.admin_credentials
    files = ui_files(shared_twin, admin)
    status, headers, packed = fetch(shared_twin, files["js"], "gzip", credentials=admin)
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    assert headers.get_all("Cache-Control") == [IMMUTABLE]
    assert headers.get_all("Strict-Transport-Security") == ["max-age=31536000"]
    assert_security_headers(headers, files["js"])
    assert gzip.decompress(packed) == fetch(shared_twin, files["js"], "identity", credentials=admin)[2]
    status, headers, _ = fetch(shared_twin, "/", "gzip", credentials=admin)
    assert status == 200 and headers.get_all("Cache-Control") == ["no-cache"]
    assert headers.get_all("Strict-Transport-Security") == ["max-age=31536000"]
    # Not signed in: the page is refused, and nothing is kept of the refusal. (The UI's files
    # themselves MLflow's sign-in leaves open to all, as "public" says: the same code for all.)
    status, headers, _ = fetch(shared_twin, "/", "gzip")
    assert status == 401 and "immutable" not in (headers["Cache-Control"] or "")
    status, headers, _ = fetch(shared_twin, files["js"], "gzip")
    assert status == 200 and headers.get_all("Cache-Control") == [IMMUTABLE]
