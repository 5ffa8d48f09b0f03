"""The benchmark's quick mode runs end to end and writes well-formed figures (no timing
checks); the pictures drawn from its committed figures, and the stack's diagram, are
rendered the same every time and are up to date in docs/images."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from mlflow_stack.settings import REPO_ROOT

IMAGES = REPO_ROOT / "docs" / "images"
CHARTS = {"search-cost.png": (1000, 480), "artifact-ratios.png": (1000, 480), "writers-sweep.png": (1000, 480)}
STACK = ("stack.png", (1200, 1000))


@pytest.mark.benchmarks
@pytest.mark.stack  # its quick mode starts a twin and a local server
def test_quick_mode_writes_a_table_and_json(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick", "--json", str(out)],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| group | measure | median | spread | goal | met |" in result.stdout
    report = json.loads(out.read_text())
    assert report["mode"] == "quick" and report["machine"]["cpus"] >= 1
    groups = {row["group"] for row in report["rows"]}
    assert groups == {"metrics", "artifacts", "sharing", "search", "memory", "store", "local", "writers", "training",
                      "cold start"}
    for row in report["rows"]:
        # Structure only: a difference of two timings may come out negative under load.
        assert isinstance(row["value"], float) and math.isfinite(row["value"]), row
        assert isinstance(row["difference"], bool) and isinstance(row["noise"], bool), row
        assert not row["noise"] or row["difference"], row
        assert row["unit"] in {"metrics/s", "ratio", "ms", "MB/s", "s", "calls/s", "records/s", "errors",
                               "records", "MB", "statements", "flag"}, row
        if row["goal"]:
            assert isinstance(row["met"], bool), row
    measures = " ".join(row["measure"] for row in report["rows"])
    for expected in ("nginx / direct", "async MlflowClient.log_metric", "proxy / direct", "book's way / proxy",
                     "shared (TLS + sign-in) / plain",
                     "p95", "UI runs page", "stock p95 / fast p95", "EXPLAIN builds a temporary table",
                     "updates of existing keys: fast / stock speed", "statements per call",
                     "local mode / twin", "resident set (all workers), at rest", "more rounds of that load",
                     "fixed cost per run", "4 writers: calls/s", "4 writers: records lost",
                     "tracked / untracked", "start to healthy", "start_mlflow.sh"):
        assert expected in measures


def draw(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def assert_png(path, size) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == size, (path, image.format, image.size)
        image.verify()  # every chunk's checksum


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    """The charts and the diagram, each drawn twice into folders of their own."""
    rounds = [tmp_path_factory.mktemp(f"pictures-{index}") for index in range(2)]
    for folder in rounds:
        draw("benchmarks.plot", "--output-dir", str(folder))
        draw("scripts.draw_stack", "--output", str(folder / STACK[0]))
    return rounds


def test_plot_and_diagram_write_pngs_of_their_size(pictures):
    expected = {**CHARTS, STACK[0]: STACK[1]}
    assert sorted(path.name for path in pictures[0].iterdir()) == sorted(expected)
    for name, size in expected.items():
        assert_png(pictures[0] / name, size)


def test_drawing_twice_gives_the_same_bytes(pictures):
    first, second = pictures
    for name in (*CHARTS, STACK[0]):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_committed_pictures_are_drawn_from_the_committed_figures(pictures):
    """A changed JSON report or drawing without re-rendered pictures fails here:
    python -m benchmarks.plot and python -m scripts.draw_stack write docs/images."""
    for name in (*CHARTS, STACK[0]):
        assert (IMAGES / name).read_bytes() == (pictures[0] / name).read_bytes(), f"docs/images/{name} is stale"


def test_charts_follow_the_report(tmp_path, pictures):
    """Halving the search timings of this round's report changes the search chart and only it."""
    reports = tmp_path / "reports"
    reports.mkdir()
    full = shutil.copy(REPO_ROOT / "benchmarks" / "latest-full.json", reports)
    store = json.loads((REPO_ROOT / "benchmarks" / "latest-store.json").read_text())
    for row in store["rows"]:
        if row["group"] == "search" and row["unit"] == "ms":
            row["value"] /= 2
    (reports / "latest-store.json").write_text(json.dumps(store))
    draw("benchmarks.plot", "--input", str(full), "--store-input", str(reports / "latest-store.json"),
         "--output-dir", str(tmp_path / "out"))
    changed = {name for name in CHARTS if (tmp_path / "out" / name).read_bytes() != (pictures[0] / name).read_bytes()}
    assert changed == {"search-cost.png"}


def test_a_report_without_a_group_is_refused(tmp_path):
    full = json.loads((REPO_ROOT / "benchmarks" / "latest-full.json").read_text())
    full["rows"] = [row for row in full["rows"] if row["group"] != "writers"]
    (tmp_path / "latest-full.json").write_text(json.dumps(full))
    result = subprocess.run([sys.executable, "-m", "benchmarks.plot", "--input", str(tmp_path / "latest-full.json"),
                             "--output-dir", str(tmp_path / "out")], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode != 0
    assert "latest-full.json has no rows of group 'writers'" in result.stderr
