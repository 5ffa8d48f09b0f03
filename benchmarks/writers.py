"""Many writers at once: N client processes log to one stack for a bounded time, then
what the server stores is counted against what each writer was told it stored.

    python -m benchmarks.writers --tracking-uri http://127.0.0.1:8080 [--writers 1 4 8 16] [--seconds 20]

Each writer is a process of its own with its own MlflowClient, through the tracking URI
(nginx), and repeats one run's worth of logging until its time is up: create the run,
params (one log_batch), a metric series one log_metric call per step, a second series in
one log_batch, tags, a small text artifact, then end the run. Every call's latency and
every error is recorded. Records are runs, params, tags, metric points and artifacts;
what the server stores is checked for every one. MLflow's client retries are off in the writers, so a request the
server failed counts as an error instead of hiding in a retry (a retried log_metric could
also store its point twice).
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import queue
import tempfile
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException

from benchmarks.measuring import percentile
from benchmarks.report import Row, markdown

PARAMS_PER_RUN = 5
STEPS_PER_RUN = 20
TAGS_PER_RUN = 2
ARTIFACT_PATH = "notes/writer.txt"
RECORD_KINDS = ("runs", "params", "tags", "metric points", "artifacts")
MAX_RUNS_PER_WRITER = 10_000  # a bound besides the clock
START_TIMEOUT = 300  # s: every writer imported and connected
FINISH_GRACE = 300  # s past the deadline for the last run of each writer to end
WRITER_ENV = {
    # Every request the server failed counts as an error (see the docstring).
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    # No "View run" line per finished run on stdout.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    # MLflow's telemetry fetches its config from the internet in a thread started at
    # import; when that fails the thread edits os.environ while a writer's request reads
    # it, which failed a log_batch here with KeyError('_MLFLOW_TELEMETRY_SESSION_ID').
    "MLFLOW_DISABLE_TELEMETRY": "true",
}


@dataclass
class SentRun:
    """One run's records: those the server acknowledged to a writer (all of which it must
    give back), or those it gives back."""

    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)


@dataclass
class WriterReport:
    latencies_ms: dict[str, list[float]] = field(default_factory=dict)  # per call kind
    errors: list[str] = field(default_factory=list)
    runs: dict[str, SentRun] = field(default_factory=dict)


@dataclass
class SweepResult:
    writers: int
    seconds: float  # from the common start to the last writer's end
    latencies_ms: dict[str, list[float]]  # per call kind
    errors: list[str]
    sent: dict[str, int]  # per record kind
    stored: dict[str, int]  # of those, found on the server as sent

    @property
    def label(self) -> str:
        return f"{self.writers} writer{'s' if self.writers > 1 else ''}"

    @property
    def calls(self) -> int:
        return sum(map(len, self.latencies_ms.values()))

    @property
    def all_latencies_ms(self) -> list[float]:
        return [ms for values in self.latencies_ms.values() for ms in values]

    @property
    def records(self) -> int:
        return sum(self.sent.values())

    @property
    def lost(self) -> int:
        return self.records - sum(self.stored.values())


# -- one writer -----------------------------------------------------------------------------
class Writer:
    def __init__(self, tracking_uri: str, experiment_id: str, name: str) -> None:
        self.client = MlflowClient(tracking_uri)
        self.experiment_id = experiment_id
        self.name = name
        self.report = WriterReport()

    def call(self, kind: str, fn) -> bool:
        started = time.perf_counter()
        try:
            fn()
        except Exception as error:  # every failure is a finding, and the writer goes on
            first_line = (str(error).strip().splitlines() or [""])[0][:200]
            self.report.errors.append(f"{kind}: {type(error).__name__}: {first_line}")
            return False
        finally:
            self.report.latencies_ms.setdefault(kind, []).append((time.perf_counter() - started) * 1000)
        return True

    def one_run(self, index: int) -> None:
        created = []
        if not self.call("create_run", lambda: created.append(self.client.create_run(self.experiment_id))):
            return
        run_id = created[0].info.run_id
        sent = self.report.runs[run_id] = SentRun()
        params = {f"p{k}": f"{self.name}-{index}-{k}" for k in range(PARAMS_PER_RUN)}
        if self.call("log_batch params", lambda: self.client.log_batch(
                run_id, params=[Param(key, value) for key, value in params.items()])):
            sent.params.update(params)
        # Values exactly representable in binary, so equality after the round trip is exact.
        loss = sent.metrics["loss"] = []
        for step in range(STEPS_PER_RUN):
            value = STEPS_PER_RUN - step + 0.5
            if self.call("log_metric", lambda: self.client.log_metric(run_id, "loss", value, step=step)):
                loss.append((step, value))
        now = int(time.time() * 1000)
        series = [(step, step * 0.125) for step in range(STEPS_PER_RUN)]
        if self.call("log_batch metrics", lambda: self.client.log_batch(
                run_id, metrics=[Metric("acc", value, now, step) for step, value in series])):
            sent.metrics["acc"] = series
        for k in range(TAGS_PER_RUN):
            key, value = f"writer.tag{k}", f"{self.name}-{index}"
            if self.call("set_tag", lambda: self.client.set_tag(run_id, key, value)):
                sent.tags[key] = value
        text = f"{self.name} run {index} {uuid.uuid4().hex}\n"
        if self.call("log_text", lambda: self.client.log_text(run_id, text, ARTIFACT_PATH)):
            sent.artifacts[ARTIFACT_PATH] = text
        self.call("set_terminated", lambda: self.client.set_terminated(run_id))


def _writer_process(tracking_uri, experiment_id, name, deadline, ready, start, results) -> None:
    """A writer's process: connect, report ready, wait for the common start, log until the
    shared deadline (a monotonic time; that clock is system-wide), hand back the report."""
    os.environ.update(WRITER_ENV)
    try:
        writer = Writer(tracking_uri, experiment_id, name)
        writer.client.get_experiment(experiment_id)  # connected before the clock starts
        ready.put(name)
        if not start.wait(START_TIMEOUT):
            raise TimeoutError("the sweep never gave the start signal")
        for index in range(MAX_RUNS_PER_WRITER):
            if time.monotonic() >= deadline.value:
                break
            writer.one_run(index)
        results.put(writer.report)
    except BaseException:
        results.put(WriterReport(errors=[f"{name} crashed: {traceback.format_exc()}"]))


# -- the sweep ----------------------------------------------------------------------------------
def run_writers(tracking_uri: str, writers: int, seconds: float) -> SweepResult:
    """``writers`` processes log at once for ``seconds``; then every record is checked."""
    client = MlflowClient(tracking_uri)
    experiment_id = client.create_experiment(f"bench-writers-{writers}-{uuid.uuid4().hex[:8]}")
    # Forked from one server process that imported MLflow once: 16 fresh interpreters
    # would spend about a minute of CPU on imports alone.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["mlflow"])
    ready, results, start = context.Queue(), context.Queue(), context.Event()
    deadline = context.Value("d", float("inf"))
    processes = [context.Process(target=_writer_process, daemon=True,
                                 args=(tracking_uri, experiment_id, f"w{i}", deadline, ready, start, results))
                 for i in range(writers)]
    # The fork server imports MLflow once, at the first start: with WRITER_ENV already set.
    with mock.patch.dict(os.environ, WRITER_ENV):
        for process in processes:
            process.start()
    try:
        # Before the start a writer only exits when it failed (its report tells why).
        try:
            _collect(ready, processes, START_TIMEOUT, "connected", lambda p: p.exitcode is not None)
        except RuntimeError as error:
            crashes = [e for report in _drain(results) for e in report.errors]
            raise RuntimeError(f"{error}: {crashes[:1]}") from None
        began = time.monotonic()
        deadline.value = began + seconds
        start.set()
        reports: list[WriterReport] = _collect(results, processes, seconds + FINISH_GRACE, "finished",
                                                    lambda p: p.exitcode not in (None, 0))
        elapsed = time.monotonic() - began
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
    sent_runs = {run_id: run for report in reports for run_id, run in report.runs.items()}
    sent, stored = count_stored(client, experiment_id, sent_runs)
    latencies: dict[str, list[float]] = {}
    for report in reports:
        for kind, values in report.latencies_ms.items():
            latencies.setdefault(kind, []).extend(values)
    return SweepResult(writers, elapsed, latencies, [e for r in reports for e in r.errors], sent, stored)


def _collect(messages, processes, timeout: float, what: str, failed) -> list:
    """One message from each writer, failing early once ``failed(process)`` says one died."""
    received = []
    deadline = time.monotonic() + timeout
    while len(received) < len(processes):
        try:
            received.append(messages.get(timeout=1))
        except queue.Empty:
            if any(failed(p) for p in processes) or time.monotonic() > deadline:
                raise RuntimeError(f"only {len(received)} of {len(processes)} writers {what} "
                                   f"(exit codes: {[p.exitcode for p in processes]})") from None
    return received


def _drain(messages) -> list:
    drained = []
    while True:
        try:
            drained.append(messages.get(timeout=1))
        except queue.Empty:
            return drained


def matched(sent: dict[str, str], stored: dict[str, str]) -> tuple[int, int]:
    return len(sent), sum(stored.get(key) == value for key, value in sent.items())


def count_stored(client: MlflowClient, experiment_id: str, sent_runs: dict[str, SentRun]
                 ) -> tuple[dict[str, int], dict[str, int]]:
    """Per record kind, how many were sent and how many the server gives back as sent
    (runs listed by a search; params, tags, full metric histories and artifact bytes)."""
    listed = set()
    page_token = None
    for _ in range(10_000):  # pages of 1,000 runs
        page = client.search_runs([experiment_id], max_results=1000, page_token=page_token)
        listed.update(run.info.run_id for run in page)
        page_token = page.token
        if not page_token:
            break
    with tempfile.TemporaryDirectory(prefix="writers-") as tmp, \
            mock.patch.dict(os.environ, MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false"):
        def check(item: tuple[str, SentRun]) -> dict[str, tuple[int, int]]:
            run_id, run = item
            stored = SentRun()
            with contextlib.suppress(MlflowException):  # a lost run: everything in it is lost
                data = client.get_run(run_id).data
                stored = SentRun(data.params, data.tags,
                                 {key: [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
                                  for key in run.metrics})
            for path in run.artifacts:
                with contextlib.suppress(MlflowException):
                    local = client.download_artifacts(run_id, path, str(Path(tmp) / run_id))
                    stored.artifacts[path] = Path(local).read_text()
            return {
                "runs": (1, int(run_id in listed)),
                "params": matched(run.params, stored.params),
                "tags": matched(run.tags, stored.tags),
                "metric points": (sum(map(len, run.metrics.values())),
                                  sum(len(set(points) & set(stored.metrics.get(key, [])))
                                      for key, points in run.metrics.items())),
                "artifacts": matched(run.artifacts, stored.artifacts),
            }

        with ThreadPoolExecutor(max_workers=8) as pool:
            counts = list(pool.map(check, sent_runs.items()))
    sent = {kind: sum(c[kind][0] for c in counts) for kind in RECORD_KINDS}
    stored = {kind: sum(c[kind][1] for c in counts) for kind in RECORD_KINDS}
    return sent, stored


# -- as benchmark rows ------------------------------------------------------------------------------
def rows(result: SweepResult) -> list[Row]:
    label, latencies = result.label, result.all_latencies_ms
    return [
        Row("writers", f"{label}: calls/s", result.calls / result.seconds, "calls/s"),
        Row("writers", f"{label}: records/s", result.records / result.seconds, "records/s"),
        Row("writers", f"{label}: call latency p50", percentile(latencies, 0.5), "ms"),
        Row("writers", f"{label}: call latency p95", percentile(latencies, 0.95), "ms"),
        Row("writers", f"{label}: errors", float(len(result.errors)), "errors", f"of {result.calls:,} calls",
            "0", not result.errors),
        Row("writers", f"{label}: records lost", float(result.lost), "records", f"of {result.records:,} sent",
            "0", result.lost == 0),
    ]


def call_rows(result: SweepResult) -> list[Row]:
    """Latency per kind of call: where the time goes as N grows."""
    return [Row("writers", f"{result.label}: {kind} p50 / p95", percentile(values, 0.5), "ms",
                f"p95 {percentile(values, 0.95):.0f} ms") for kind, values in result.latencies_ms.items()]


def bench_writers(tracking_uri: str, writer_counts: list[int], seconds: float, by_call: bool = False) -> list[Row]:
    out = []
    for writers in writer_counts:
        result = run_writers(tracking_uri, writers, seconds)
        for error in sorted(set(result.errors))[:10]:
            print(f"{writers} writers: {error}")
        out += rows(result) + (call_rows(result) if by_call else [])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracking-uri", required=True, help="the stack's URL, through nginx")
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--seconds", type=float, default=20, help="how long each N logs")
    parser.add_argument("--by-call", action="store_true", help="also each kind of call's latency")
    args = parser.parse_args(argv)
    print(markdown(bench_writers(args.tracking_uri, args.writers, args.seconds, args.by_call)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
