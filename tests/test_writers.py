"""Many writers at once, the CI version of the benchmark's sweep (benchmarks/writers.py):
four client processes log runs, params, metric series, tags and artifacts through nginx
at the same time; nothing fails and the server gives back every record as sent. And the
count itself: a record the server lacks or holds otherwise is counted as lost."""

from __future__ import annotations

import uuid

import pytest
from mlflow import MlflowClient

from benchmarks.writers import RECORD_KINDS, SentRun, count_stored, run_writers

pytestmark = pytest.mark.stack

WRITERS = 4
SECONDS = 10


def test_concurrent_writers_lose_nothing(stack):
    result = run_writers(stack.tracking_uri, WRITERS, SECONDS)
    print(f"\n{WRITERS} writers, {SECONDS} s: {result.calls} calls, sent {result.sent}, stored {result.stored}")
    assert result.errors == [], "\n".join(result.errors[:20])
    # Each writer ends the run it started before its time was up.
    assert result.sent["runs"] >= WRITERS, result.sent
    for kind in RECORD_KINDS:
        assert result.sent[kind] > 0, f"no {kind} were sent"
        assert result.stored[kind] == result.sent[kind], f"{kind}: sent {result.sent[kind]}, stored {result.stored[kind]}"


def test_the_count_sees_what_the_server_lacks(stack):
    client = MlflowClient(stack.tracking_uri)
    experiment_id = client.create_experiment(f"writers-count-{uuid.uuid4().hex[:8]}")
    run_id = client.create_run(experiment_id).info.run_id
    client.log_param(run_id, "p", "1")
    client.set_tag(run_id, "t", "1")
    client.log_metric(run_id, "m", 1.0, step=0)
    client.log_text(run_id, "stored", "a.txt")
    claimed = {
        run_id: SentRun(params={"p": "1", "never-sent": "2"}, tags={"t": "1", "u": "2"},
                        metrics={"m": [(0, 1.0), (1, 2.0)]}, artifacts={"a.txt": "stored", "b.txt": "missing"}),
        uuid.uuid4().hex: SentRun(params={"p": "1"}, tags={"t": "other value"}),  # a run the server never saw
    }
    sent, stored = count_stored(client, experiment_id, claimed)
    assert sent == {"runs": 2, "params": 3, "tags": 3, "metric points": 2, "artifacts": 2}
    assert stored == {"runs": 1, "params": 1, "tags": 1, "metric points": 1, "artifacts": 1}
