"""The MLflow UI in a real browser (Debian's headless Chromium), through nginx, under the
server's Content-Security-Policy: every page here is checked for violations in the console.
The links the project prints open the model-training view, and so does the bare URL, without
UI telemetry (docs/mlflow-ui.md)."""

from __future__ import annotations

import uuid

import pytest

from dl_model_tracking.ui_links import experiment_url, run_url
from mlflow_stack.settings import REPO_ROOT

pytestmark = [pytest.mark.browser, pytest.mark.stack]

CHROMIUM = "/usr/bin/chromium"
# No first-run chatter: this machine's network is closed and Chromium would keep trying.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"
# How long an action or an assertion waits for the UI. Playwright's assertions default to 5 s:
# on a loaded 2-core machine a run page took longer to render its run, and the check failed
# with a half-drawn page. A check that passes returns as soon as it does.
UI_WAIT_MS = 60_000


def open_ui(page, url: str) -> None:
    """Go to a UI address and wait for the UI's own page: a browser entering from outside
    passes through the stack's defaults page first (mlflow_stack_server/ui_defaults.py), and
    page.goto returns once that one has loaded."""
    page.goto(url)
    page.wait_for_url(lambda current: "/stack/ui-defaults" not in current)


def model_registry_link(page):
    """The sidebar's model registry entry: the UI shows it in its model-training view only."""
    return page.get_by_role("link", name="Model registry")


@pytest.fixture(scope="module")
def browser():
    """One Chromium for the module: Playwright's sync API runs one instance per thread."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=UI_WAIT_MS)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def watched_page(context):
    """A new page, and the Content-Security-Policy violations Chromium reports in its console."""
    page = context.new_page()
    page.set_default_timeout(UI_WAIT_MS)
    violations: list[str] = []
    page.on("console", lambda message: "Content Security Policy" in message.text and violations.append(message.text))
    return page, violations


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page, violations = watched_page(context)
    yield page
    context.close()
    assert violations == [], "the UI broke the server's Content-Security-Policy"


def test_registered_model_version_page(page, chapter_notebook, stack):
    """Opened through the link the provenance report prints."""
    import mlflow
    from playwright.sync_api import expect

    from dl_model_tracking.provenance import model_provenance

    version = chapter_notebook["version"]  # whichever the notebook registered: other tests register too
    report = model_provenance(chapter_notebook["model_name"], version=version)
    open_ui(page, report["where"]["version_page"])
    expect(page.get_by_text(f"Version {version}").first).to_be_visible()
    expect(page.get_by_text("nlp_dl_model").first).to_be_visible()
    expect(model_registry_link(page)).to_be_visible()
    # The source run's link comes with a later request: the screenshot waits for it.
    run_name = mlflow.get_run(chapter_notebook["run_id"]).info.run_name
    expect(page.get_by_role("link", name=run_name).first).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "model-version.png"), full_page=True)


def test_chapter03_run_page_shows_its_metrics(page, chapter_notebook, stack):
    from playwright.sync_api import expect

    import mlflow

    run = mlflow.get_run(chapter_notebook["run_id"])
    open_ui(page, run_url(stack.tracking_uri, run.info.experiment_id, run.info.run_id))
    expect(page.get_by_text("chapter03").first).to_be_visible()
    for metric in ("test_accuracy", "val_accuracy", "train_accuracy_epoch"):
        expect(page.get_by_text(metric, exact=True).first).to_be_visible()
    expect(model_registry_link(page)).to_be_visible()
    page.get_by_text("test_accuracy", exact=True).first.scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "chapter03-run.png"), full_page=True)


def test_the_chapters_experiment_link_opens_its_runs_table_even_after_genai_was_chosen(
        browser, chapter_notebook, stack):
    """The link the notebook prints shows the runs table (model training), not the GenAI
    overview, in a browser whose user picked GenAI; the bare URL keeps that choice."""
    from playwright.sync_api import expect

    import mlflow

    experiment_id = chapter_notebook["experiment_id"]
    assert mlflow.get_experiment(experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page, violations = watched_page(context)
    open_ui(page, f"{stack.tracking_uri}/")
    page.get_by_text("GenAI", exact=True).click()  # the sidebar's mode toggle
    expect(model_registry_link(page)).to_have_count(0)

    open_ui(page, experiment_url(stack.tracking_uri, experiment_id))
    expect(page.get_by_role("link", name="chapter03", exact=True)).to_be_visible()  # a row of the runs table
    expect(model_registry_link(page)).to_be_visible()
    for genai_only in ("Evaluation runs", "Sessions", "Judges"):
        expect(page.get_by_text(genai_only, exact=True)).to_have_count(0)
    page.screenshot(path=str(SCREENSHOTS / "chapter03-runs-table.png"))

    open_ui(page, f"{stack.tracking_uri}/")
    expect(page.get_by_text("Welcome to MLflow")).to_be_visible()
    expect(model_registry_link(page)).to_have_count(0)  # the choice made in the UI stays
    context.close()
    assert violations == []


def test_the_bare_url_opens_the_model_training_view_without_telemetry(browser, stack):
    """A new browser typing the stack's address gets the model-training view, no assistant
    panel and, the server's telemetry being off, no telemetry banner, worker or request."""
    from playwright.sync_api import expect

    origin = stack.tracking_uri
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    requests: list[str] = []
    context.on("request", lambda request: requests.append(request.url))
    page, violations = watched_page(context)
    open_ui(page, f"{origin}/")
    expect(page.get_by_text("Welcome to MLflow")).to_be_visible()
    page.wait_for_load_state("networkidle")
    assert page.url == f"{origin}/"
    expect(model_registry_link(page)).to_be_visible()
    expect(page.get_by_text("Information about UI telemetry")).to_have_count(0)
    expect(page.get_by_placeholder("Ask a question...")).to_have_count(0)  # the assistant panel's
    assert [url for url in requests if "telemetry" in url.lower()] == []
    assert [url for url in requests if not url.startswith(origin + "/")] == []
    page.screenshot(path=str(SCREENSHOTS / "ui-home.png"))
    context.close()
    assert violations == []


def test_entering_from_the_site_itself_shows_what_mlflow_does_by_itself(browser, stack):
    """The stack's defaults page is skipped for a navigation from the site itself: MLflow's
    own defaults then show, each one that the test above finds absent."""
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page, violations = watched_page(context)
    page.goto(f"{stack.tracking_uri}/health")
    with context.expect_event("request", lambda request: "telemetry-worker" in request.url):
        page.evaluate("location.href = '/'")
    expect(page.get_by_text("Information about UI telemetry")).to_be_visible()
    expect(page.get_by_placeholder("Ask a question...")).to_be_visible()
    expect(model_registry_link(page)).to_have_count(0)  # the GenAI view
    page.screenshot(path=str(SCREENSHOTS / "ui-home-mlflow-own.png"))
    context.close()
    assert violations == []


def test_a_shared_stack_asks_the_browser_to_sign_in_and_shows_a_users_run(shared_twin, browser):
    """The UI of a shared stack (the twin with share=True), as a team member meets it."""
    import uuid

    from mlflow import MlflowClient
    from playwright.sync_api import expect

    user, password = f"viewer-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    with _signed_in_as_admin(shared_twin):
        client = MlflowClient(shared_twin.tracking_uri)
        experiment_id = client.create_experiment(f"shared-ui-{uuid.uuid4().hex[:6]}")
        run = client.create_run(experiment_id, run_name="seen-in-the-browser")
        client.log_metric(run.info.run_id, "val_accuracy", 0.9)
        from mlflow_stack.users import auth_client

        auth_client(shared_twin.tracking_uri).create_user(user, password)
        auth_client(shared_twin.tracking_uri).grant_user_permission(user, "experiment", experiment_id, "READ")
    url = f"{shared_twin.tracking_uri}/#/experiments/{experiment_id}/runs/{run.info.run_id}"
    # The certificate is checked in test_sharing; here the browser skips it.
    anonymous = browser.new_context(ignore_https_errors=True)
    member = browser.new_context(ignore_https_errors=True, viewport={"width": 1440, "height": 900},
                                 http_credentials={"username": user, "password": password})
    try:
        answer = anonymous.request.get(f"{shared_twin.tracking_uri}/")
        assert answer.status == 401 and answer.headers["www-authenticate"] == 'Basic realm="mlflow"'
        page, violations = watched_page(member)
        open_ui(page, url)
        expect(page.get_by_text("seen-in-the-browser").first).to_be_visible()
        expect(page.get_by_text("val_accuracy", exact=True).first).to_be_visible()
        page.screenshot(path=str(SCREENSHOTS / "shared-run.png"), full_page=True)
        # The user list is for admins (the server's answer); a member's own pages work without it.
        open_ui(page, f"{shared_twin.tracking_uri}/#/account")
        expect(page.get_by_text(f"Logged in as {user}")).to_be_visible()
        open_ui(page, f"{shared_twin.tracking_uri}/#/admin")
        expect(page.get_by_text("Only admins may list the users")).to_be_visible()
        assert violations == []
    finally:
        anonymous.close()
        member.close()


def test_an_html_artifact_shows_but_its_script_does_not_run(browser, stack):
    """A run's HTML artifact is previewed in a frame that inherits the server's policy: its
    markup shows, its inline script is refused (one violation, expected here, and no other)."""
    import numpy as np
    from playwright.sync_api import expect

    import mlflow

    with mlflow.start_run(experiment_id=mlflow.create_experiment(f"artifact-ui-{uuid.uuid4().hex[:6]}")) as run:
        mlflow.log_text("<h1>Confusion matrix</h1><script>document.body.dataset.ran = 'yes'</script>", "report.html")
        mlflow.log_image(np.full((8, 8, 3), 200, dtype=np.uint8), "sample.png")
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page, refused = watched_page(context)
    open_ui(page, f"{stack.tracking_uri}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}/artifacts")
    page.get_by_text("report.html", exact=True).click()
    report = page.frame_locator("iframe[sandbox]")
    expect(report.get_by_text("Confusion matrix")).to_be_visible()
    assert report.locator("body").get_attribute("data-ran") is None
    page.get_by_text("sample.png", exact=True).click()
    expect(page.locator("img[src^='blob:'], img[src*='sample.png']").first).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "html-artifact.png"))
    context.close()
    assert len(refused) == 1 and refused[0].startswith("Executing inline script violates"), refused


def _signed_in_as_admin(stack):
    """MLflow's client (it reads these per request) as the shared stack's first admin."""
    import os
    from unittest import mock

    user, password = stack.admin_credentials
    return mock.patch.dict(os.environ, {"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": password,
                                        "MLFLOW_TRACKING_SERVER_CERT_PATH": str(stack.ca_file)})
