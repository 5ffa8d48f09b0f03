"""The benchmark's quick mode runs end to end and writes well-formed figures (no timing checks)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from mlflow_stack.settings import REPO_ROOT

pytestmark = [pytest.mark.benchmarks, pytest.mark.stack]  # its quick mode starts a twin and a local server


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
