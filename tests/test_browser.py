"""The MLflow UI in a real browser (Debian's headless Chromium), through nginx."""

from __future__ import annotations

import pytest

from dl_model_tracking.local_stack import LocalStack
from dl_model_tracking.settings import REPO_ROOT

pytestmark = [pytest.mark.browser, pytest.mark.stack]

CHROMIUM = "/usr/bin/chromium"
# No first-run chatter: this machine's network is closed and Chromium would keep trying.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"


@pytest.fixture(scope="module")
def page():
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.set_default_timeout(60_000)
        yield page
        browser.close()


def test_registered_model_version_page(page, chapter_notebook, stack):
    from playwright.sync_api import expect

    version = chapter_notebook["version"]
    if isinstance(stack, LocalStack):
        assert version == "1", "on a fresh stack the chapter's model is version 1"
    page.goto(f"{stack.tracking_uri}/#/models/nlp_dl_model/versions/{version}")
    expect(page.get_by_text(f"Version {version}").first).to_be_visible()
    expect(page.get_by_text("nlp_dl_model").first).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "model-version.png"), full_page=True)


def test_chapter03_run_page_shows_its_metrics(page, chapter_notebook, stack):
    from playwright.sync_api import expect

    import mlflow

    run = mlflow.get_run(chapter_notebook["run_id"])
    page.goto(f"{stack.tracking_uri}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}")
    expect(page.get_by_text("chapter03").first).to_be_visible()
    for metric in ("test_accuracy", "val_accuracy", "train_accuracy_epoch"):
        expect(page.get_by_text(metric, exact=True).first).to_be_visible()
    page.get_by_text("test_accuracy", exact=True).first.scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "chapter03-run.png"), full_page=True)
