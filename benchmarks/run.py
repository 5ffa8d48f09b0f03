"""What tracking costs a training run, and how fast the stack logs (also with many writers
at once), stores and searches.

    python -m benchmarks.run [--quick] [--json results.json]

starts the no-Docker twin of the stack (MariaDB, S3 endpoint, MLflow server, nginx) and
measures against it; ``--tracking-uri`` (with ``--mlflow-uri``, ``--s3-endpoint-url`` and
the AWS variables) measures a stack that is already running instead. Every comparison
is a ratio measured in this run, its two sides interleaved and repeated; the table gives
medians and the spread (min to max). ``--quick`` takes under three minutes here.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from unittest import mock

from benchmarks.config import Config
from benchmarks.local_mode import bench_local_mode
from benchmarks.measuring import interleaved, percentile, spread, timed
from benchmarks.report import Row, machine, markdown, publish
from benchmarks.seeding import seed_runs
from benchmarks.store_ab import bench_store
from mlflow_stack.local_stack import S3Access

MB = 1024 * 1024
# Goals (docs/performance.md): search p95 per experiment size; proxied artifacts against
# direct S3, by size.
SEARCH_P95_GOAL_MS = {10_000: 250, 100_000: 400}
CALLER_COST_GOAL_MS = 10
LOG_BATCH_GOAL_PER_S = 20_000


def artifact_ratio_goal(size_mb: int) -> float:
    return 0.8 if size_mb >= 100 else 0.5


# -- the stack under test -----------------------------------------------------------------------
@dataclass
class Target(S3Access):
    tracking_uri: str  # through nginx
    mlflow_uri: str  # the tracking server directly
    s3_endpoint_url: str
    s3_credentials: dict
    bucket: str
    backend_store_uri: str | None
    startup_seconds: float | None
    server_pid: int | None = None  # the MLflow server's main process, where it runs here
    # Experiments the search group seeded, by run count: the store group reads them too.
    seeded: dict[int, str] = field(default_factory=dict)


@contextlib.contextmanager
def target_from_args(args, workdir: Path):
    if args.tracking_uri:
        from mlflow_stack.settings import SECRETS_DIR, stack_env

        config = stack_env(SECRETS_DIR)
        yield Target(args.tracking_uri, args.mlflow_uri or args.tracking_uri, args.s3_endpoint_url,
                     {"aws_access_key_id": os.environ.get("AWS_ACCESS_KEY_ID", config["MINIO_ROOT_USER"]),
                      "aws_secret_access_key": os.environ.get("AWS_SECRET_ACCESS_KEY", config.get("MINIO_ROOT_PASSWORD"))},
                     config["MLFLOW_BUCKET"], args.backend_store_uri, None)
        return
    from mlflow_stack.local_stack import LocalStack

    with LocalStack(workdir / "stack").start() as stack:
        yield Target(stack.tracking_uri, stack.mlflow_uri, stack.s3_endpoint_url, stack.s3_credentials,
                     stack.bucket, stack.backend_store_uri, stack.startup_seconds,
                     stack.services["mlflow"].process.pid)


# -- 1. metric logging ---------------------------------------------------------------------------
def bench_metrics(target: Target, config: Config) -> list[Row]:
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    rows = []
    clients = {"nginx": MlflowClient(target.tracking_uri), "direct": MlflowClient(target.mlflow_uri)}
    experiment = clients["nginx"].create_experiment(f"bench-metrics-{uuid.uuid4().hex[:8]}")
    runs = {side: client.create_run(experiment).info.run_id for side, client in clients.items()}

    def per_call(side):
        client, run_id = clients[side], runs[side]
        return lambda: timed(lambda: [client.log_metric(run_id, "loss", 1.0 / (i + 1), step=i)
                                      for i in range(config.metric_calls)]) / config.metric_calls

    batch_steps = itertools.count()

    def batch(side):
        client, run_id = clients[side], runs[side]
        now = int(time.time() * 1000)

        def once():  # a training step's metrics: a new step each call, as a loop logs them
            step = next(batch_steps)
            metrics = [Metric(f"m{j}", float(j), now, step) for j in range(1000)]
            return timed(lambda: client.log_batch(run_id, metrics=metrics)) / 1000
        return once

    for label, make in (("log_metric, one call per metric", per_call), ("log_batch of 1,000 metrics", batch)):
        seconds = interleaved({side: make(side) for side in clients}, config.repeats)
        rates = {side: [1 / s for s in values] for side, values in seconds.items()}
        for side in clients:
            goal = make is batch and side == "nginx"  # the goal is for the stack's way in
            rows.append(Row("metrics", f"{label}, {side}", statistics.median(rates[side]), "metrics/s",
                            spread(rates[side], "{:.0f}"), f">= {LOG_BATCH_GOAL_PER_S:,}/s" if goal else "",
                            statistics.median(rates[side]) >= LOG_BATCH_GOAL_PER_S if goal else None, rates[side]))
        ratio = [n / d for n, d in zip(rates["nginx"], rates["direct"])]
        rows.append(Row("metrics", f"{label}: nginx / direct", statistics.median(ratio), "ratio",
                        spread(ratio), ">= 0.95", statistics.median(ratio) >= 0.95, ratio))
        if make is per_call:
            cost = [s * 1000 for s in seconds["nginx"]]
            rows.append(Row("metrics", f"{label}: caller cost per call (nginx)", statistics.median(cost),
                            "ms", spread(cost), f"<= {CALLER_COST_GOAL_MS} ms",
                            statistics.median(cost) <= CALLER_COST_GOAL_MS, cost))
    if target.backend_store_uri:
        rows += call_cost_parts(target, config, experiment)

    # Asynchronous logging: what the training loop pays per step, and the throughput,
    # through the fluent API (mlflow.log_metric) and through MlflowClient.
    mlflow.set_tracking_uri(target.tracking_uri)
    client = clients["nginx"]
    apis = {
        "mlflow.log_metric": lambda run_id, i: mlflow.log_metric("async_loss", 1.0 / (i + 1), step=i,
                                                                  synchronous=False),
        "MlflowClient.log_metric": lambda run_id, i: client.log_metric(run_id, "async_loss", 1.0 / (i + 1),
                                                                        step=i, synchronous=False),
    }
    for api, log in apis.items():
        enqueue, total = [], []
        for _ in range(config.repeats):
            with mlflow.start_run(experiment_id=experiment) as run:
                started = time.perf_counter()
                for i in range(config.metric_calls):
                    log(run.info.run_id, i)
                enqueued = time.perf_counter()
                mlflow.flush_async_logging()
                finished = time.perf_counter()
            enqueue.append((enqueued - started) / config.metric_calls * 1000)
            total.append(config.metric_calls / (finished - started))
        rows.append(Row("metrics", f"async {api}: caller cost per step", statistics.median(enqueue), "ms",
                        spread(enqueue), "< 1 ms", statistics.median(enqueue) < 1, enqueue))
        rows.append(Row("metrics", f"async {api}: throughput incl. flush", statistics.median(total), "metrics/s",
                        spread(total, "{:.0f}"), samples=total))
    return rows


def call_cost_parts(target: Target, config: Config, experiment: str) -> list[Row]:
    """Where a logging call's time goes: an HTTP round trip through nginx that does no work
    (GET /health), and MLflow's own store doing the call's database work in this process,
    without HTTP, with the server's driver and database."""
    import requests
    from mlflow.entities import Metric
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    session = requests.Session()
    store = SqlAlchemyStore(target.backend_store_uri, "/nonexistent-unused")
    run_id = store.create_run(experiment, "bench", int(time.time() * 1000), [], "store-parts").info.run_id
    now = int(time.time() * 1000)
    calls = config.metric_calls
    steps = itertools.count()

    def health():
        return timed(lambda: [session.get(f"{target.tracking_uri}/health").raise_for_status()
                              for _ in range(calls)]) / calls * 1000

    def store_call():
        return timed(lambda: [store.log_metric(run_id, Metric("loss", 0.5, now, next(steps)))
                              for _ in range(calls)]) / calls * 1000

    def store_batch():
        step = next(steps)
        metrics = [Metric(f"m{j}", float(j), now, step) for j in range(1000)]
        return 1000 / timed(lambda: store.log_batch(run_id, metrics=metrics, params=[], tags=[]))

    measured = interleaved({"health": health, "store": store_call, "batch": store_batch}, config.repeats)
    store.engine.dispose()
    return [Row("metrics", "part of a call: HTTP round trip through nginx doing no work (GET /health)",
                statistics.median(measured["health"]), "ms", spread(measured["health"]), samples=measured["health"]),
            Row("metrics", "part of a call: MLflow's store alone, log_metric (database work, no HTTP)",
                statistics.median(measured["store"]), "ms", spread(measured["store"]), samples=measured["store"]),
            Row("metrics", "part of a call: MLflow's store alone, log_batch of 1,000 metrics",
                statistics.median(measured["batch"]), "metrics/s", spread(measured["batch"], "{:.0f}"),
                samples=measured["batch"])]


# -- 2. artifacts ------------------------------------------------------------------------------------
def bench_artifacts(target: Target, config: Config, workdir: Path) -> list[Row]:
    """Three ways for the same bytes: the MLflow client through nginx and the server's proxy
    (the stack's default), the MLflow client straight to S3 for an experiment whose artifact
    location is the bucket (the book's way: MLFLOW_S3_ENDPOINT_URL and the keys exported),
    and boto3 straight to S3 (the floor)."""
    from mlflow import MlflowClient

    from dl_model_tracking.provenance import sha256_file

    client = MlflowClient(target.tracking_uri)
    s3 = target.s3_client()
    experiment = client.create_experiment(f"bench-artifacts-{uuid.uuid4().hex[:8]}")
    run_id = client.create_run(experiment).info.run_id
    books_experiment = client.create_experiment(
        f"bench-artifacts-books-way-{uuid.uuid4().hex[:8]}",
        artifact_location=f"s3://{target.bucket}/bench-books-way/{uuid.uuid4().hex}")
    books_run = client.create_run(books_experiment).info.run_id
    rows = []
    # The book's way reads its endpoint and keys from the environment, as a reader exports them.
    with mock.patch.dict(os.environ, target.s3_env):
        for size in config.artifact_sizes_mb:
            source = workdir / f"artifact-{size}mb.bin"
            with open(source, "wb") as handle:
                for _ in range(size):
                    handle.write(os.urandom(MB))
            expected = sha256_file(source)
            key = f"bench-direct/{uuid.uuid4().hex}/{source.name}"

            def check(path: Path) -> None:
                if sha256_file(path) != expected:
                    raise AssertionError(f"{path} differs from what was uploaded")

            def client_download(run):
                def once():
                    destination = Path(tempfile.mkdtemp(dir=workdir))
                    seconds = timed(lambda: client.download_artifacts(run, source.name, str(destination)))
                    check(destination / source.name)
                    (destination / source.name).unlink()
                    return seconds
                return once

            def direct_download():
                destination = workdir / f"direct-{uuid.uuid4().hex}.bin"
                seconds = timed(lambda: s3.download_file(target.bucket, key, str(destination)))
                check(destination)
                destination.unlink()
                return seconds

            uploads = interleaved({"proxy": lambda: timed(lambda: client.log_artifact(run_id, str(source))),
                                   "book": lambda: timed(lambda: client.log_artifact(books_run, str(source))),
                                   "direct": lambda: timed(lambda: s3.upload_file(str(source), target.bucket, key))},
                                  config.repeats)
            downloads = interleaved({"proxy": client_download(run_id), "book": client_download(books_run),
                                     "direct": direct_download}, config.repeats)
            for way, seconds in (("upload", uploads), ("download", downloads)):
                speed = {side: [size / s for s in values] for side, values in seconds.items()}
                ratio = [p / d for p, d in zip(speed["proxy"], speed["direct"])]
                book_ratio = [b / p for b, p in zip(speed["book"], speed["proxy"])]
                rows.append(Row("artifacts", f"{size} MB {way} through nginx + MLflow proxy", statistics.median(speed["proxy"]),
                                "MB/s", spread(speed["proxy"], "{:.0f}"), samples=speed["proxy"]))
                rows.append(Row("artifacts", f"{size} MB {way} by the MLflow client straight to S3 (the book's way)",
                                statistics.median(speed["book"]), "MB/s", spread(speed["book"], "{:.0f}"),
                                samples=speed["book"]))
                rows.append(Row("artifacts", f"{size} MB {way} direct to S3 (boto3)", statistics.median(speed["direct"]),
                                "MB/s", spread(speed["direct"], "{:.0f}"), samples=speed["direct"]))
                goal = artifact_ratio_goal(size)
                rows.append(Row("artifacts", f"{size} MB {way}: proxy / direct", statistics.median(ratio), "ratio",
                                spread(ratio), f">= {goal}", statistics.median(ratio) >= goal, ratio))
                rows.append(Row("artifacts", f"{size} MB {way}: book's way / proxy", statistics.median(book_ratio), "ratio",
                                spread(book_ratio), samples=book_ratio))
            source.unlink()
    return rows


# -- 2b. what sharing costs: TLS and sign-in -------------------------------------------------------
def bench_sharing(config: Config, workdir: Path) -> list[Row]:
    """A plain twin and a shared one (HTTPS through nginx, MLflow's basic-auth app) side by
    side, the same calls on both, interleaved: the ratio is what sharing costs."""
    from mlflow import MlflowClient

    from mlflow_stack.local_stack import LocalStack

    size = 50 if not config.quick else 10
    calls = config.metric_calls // 5  # a shared call costs up to 15 plain ones (a password hash)
    source = workdir / f"sharing-{size}mb.bin"
    with open(source, "wb") as handle:
        for _ in range(size):
            handle.write(os.urandom(MB))
    with contextlib.ExitStack() as stacks:
        plain = stacks.enter_context(LocalStack(workdir / "plain", secrets_dir=workdir / "plain-secrets").start())
        shared = stacks.enter_context(LocalStack(workdir / "shared", share=True,
                                                 secrets_dir=workdir / "shared-secrets").start())
        # MLflow's client reads these per request; the plain stack ignores the sign-in, and
        # the CA applies to HTTPS only.
        user, password = shared.admin_credentials
        stacks.enter_context(mock.patch.dict(os.environ, MLFLOW_TRACKING_USERNAME=user, MLFLOW_TRACKING_PASSWORD=password,
                                             MLFLOW_TRACKING_SERVER_CERT_PATH=str(shared.ca_file)))
        stacks.callback(source.unlink)
        sides = {"plain": plain, "shared": shared}
        clients = {name: MlflowClient(stack.tracking_uri) for name, stack in sides.items()}
        runs = {name: client.create_run(client.create_experiment(f"bench-sharing-{uuid.uuid4().hex[:8]}")).info.run_id
                for name, client in clients.items()}

        def per_call(name):
            client, run_id = clients[name], runs[name]
            return lambda: timed(lambda: [client.log_metric(run_id, "loss", 1.0 / (i + 1), step=i)
                                          for i in range(calls)]) / calls * 1000

        def upload(name):
            return lambda: timed(lambda: clients[name].log_artifact(runs[name], str(source)))

        def download(name):
            def once():
                destination = Path(tempfile.mkdtemp(dir=workdir))
                seconds = timed(lambda: clients[name].download_artifacts(runs[name], source.name, str(destination)))
                (destination / source.name).unlink()
                return seconds
            return once

        rows = []
        for label, make, unit in (("log_metric, caller cost per call", per_call, "ms"),
                                  (f"{size} MB upload", upload, "s"), (f"{size} MB download", download, "s")):
            measured = interleaved({name: make(name) for name in sides}, config.repeats)
            for name in sides:
                rows.append(Row("sharing", f"{label}, {name}", statistics.median(measured[name]), unit,
                                spread(measured[name]), samples=measured[name]))
            ratio = [s / p for s, p in zip(measured["shared"], measured["plain"])]
            rows.append(Row("sharing", f"{label}: shared (TLS + sign-in) / plain", statistics.median(ratio),
                            "ratio", spread(ratio), samples=ratio))
        return rows


# -- 3. search at scale ------------------------------------------------------------------------------
def bench_search(target: Target, config: Config) -> list[Row]:
    """search_runs over experiments of each size, the UI's runs page of the largest up to
    10,000 runs, and the server's memory at rest and across repeats of a search load."""
    from mlflow import MlflowClient

    if not target.backend_store_uri:
        return [Row("search", "search_runs at scale", float("nan"), "ms",
                    goal="needs --backend-store-uri to seed the runs")]
    client = MlflowClient(target.tracking_uri)
    rows = []
    at_rest = server_memory_mb(target.server_pid) if target.server_pid else None
    page_experiment = None
    for count in config.search_runs:
        experiment = client.create_experiment(f"bench-search-{count}-{uuid.uuid4().hex[:8]}")
        seed_seconds = seed_runs(target.backend_store_uri, experiment, count)
        target.seeded[count] = experiment
        latencies = search_latencies(client, experiment, config.search_queries)
        label = f"{count:,} runs x 10 params x 10 metrics x 5 tags"
        p95, goal = percentile(latencies, 0.95), SEARCH_P95_GOAL_MS.get(count)
        rows += [Row("search", f"search_runs (metric filter, order by), {label}: p50", percentile(latencies, 0.5),
                     "ms", spread(latencies, "{:.0f}"), samples=latencies),
                 Row("search", f"search_runs, {label}: p95", p95, "ms", "", f"<= {goal} ms" if goal else "",
                     p95 <= goal if goal else None, latencies),
                 Row("search", f"seeding {label} into MySQL", seed_seconds, "s")]
        if count <= 10_000:
            page_experiment = (count, experiment)
    count, experiment = page_experiment
    ui = ui_runs_page_timings(target, experiment)
    if ui is not None:
        goal = count == 10_000
        rows += [Row("search", f"UI runs page of the {count:,}-run experiment, first rows shown (fresh browser)",
                     ui["page"], "s", goal="<= 1.5 s" if goal else "", met=ui["page"] <= 1.5 if goal else None),
                 Row("search", "UI runs page: its scripts loaded and run (DOMContentLoaded)", ui["scripts"], "s"),
                 Row("search", "UI runs page: its runs search request", ui["search"], "s")]
    if at_rest is not None:
        rows += memory_rows(target, client, experiment, count, at_rest, config)
    return rows


def search_latencies(client, experiment: str, queries: int) -> list[float]:
    latencies = []
    for _ in range(queries):
        started = time.perf_counter()
        found = client.search_runs([experiment], filter_string="metrics.m0 > 0.5 and params.p1 != '7'",
                                   order_by=["metrics.m1 DESC"], max_results=100)
        latencies.append((time.perf_counter() - started) * 1000)
        if len(found) != 100:
            raise AssertionError(f"search returned {len(found)} runs, expected 100")
    return latencies


def server_memory_mb(pid: int) -> float:
    """Resident set of a process and all its descendants (the server and its workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        pending += children.get(current, [])
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{current}/status").read_text()
            total += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return total / 1024


def memory_rows(target: Target, client, experiment: str, count: int, at_rest: float, config: Config) -> list[Row]:
    """The server's memory after the search load, and after each repeat of it: growth
    between repeats would be a leak (noise when the repeats' changes straddle zero)."""
    after = []
    for _ in range(1 + config.memory_load_repeats):
        search_latencies(client, experiment, config.search_queries)
        after.append(server_memory_mb(target.server_pid))
    changes = [b - a for a, b in zip(after, after[1:])]
    load = f"{config.search_queries} searches of the {count:,}-run experiment"
    return [Row("memory", "MLflow server resident set (all workers), at rest", at_rest, "MB"),
            Row("memory", f"the same after {load}", after[0], "MB"),
            Row("memory", f"its change over {config.memory_load_repeats} more rounds of that load", after[-1] - after[0],
                "MB", spread(changes, "{:+.1f}"), samples=changes, difference=True,
                noise=min(changes) < 0 < max(changes))]


def ui_runs_page_timings(target: Target, experiment_id: str) -> dict[str, float] | None:
    """Seconds until a fresh headless Chromium shows the experiment's first runs, and, from
    the browser's own timings, when the page's scripts were in (DOMContentLoaded) and how
    long the runs search the page sends took: the rest is the UI rendering."""
    if not Path("/usr/bin/chromium").exists():
        return None
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
                  "--disable-component-update", "--disable-sync", "--disable-quic"])
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        started = time.perf_counter()
        page.goto(f"{target.tracking_uri}/#/experiments/{experiment_id}/runs")
        page.get_by_text("bench-run-", exact=False).first.wait_for(timeout=120_000)
        seconds = time.perf_counter() - started
        dom_ready = page.evaluate("performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd")
        searches = page.evaluate("performance.getEntriesByType('resource').filter(e => e.name.includes('runs/search'))"
                                 ".map(e => e.responseEnd - e.startTime)")
        browser.close()
    return {"page": seconds, "scripts": dom_ready / 1000, "search": max(searches, default=float("nan")) / 1000}


# -- 4. cold start ------------------------------------------------------------------------------------
def bench_cold_start(target: Target, config: Config, workdir: Path, docker: bool) -> list[Row]:
    from mlflow_stack.local_stack import LocalStack, free_port
    from mlflow_stack.settings import REPO_ROOT

    rows = []
    twin = [target.startup_seconds] if target.startup_seconds else []
    for index in range(config.cold_starts - len(twin)):
        with LocalStack(workdir / f"cold-{index}").start() as stack:
            twin.append(stack.startup_seconds)
    if twin:
        rows.append(Row("cold start", "twin stack, start to healthy (fresh database)", statistics.median(twin), "s",
                        spread(twin), "<= 30 s", statistics.median(twin) <= 30, twin))
    local = []
    for index in range(config.cold_starts):
        env = {**os.environ, "MLFLOW_STACK_MODE": "local", "MLFLOW_LOCAL_DIR": str(workdir / f"local-{index}"),
               "MLFLOW_LOCAL_PORT": str(free_port())}
        seconds = timed(lambda: subprocess.run(["bash", "start_mlflow.sh"], cwd=REPO_ROOT, env=env, check=True,
                                               capture_output=True))
        subprocess.run(["bash", "stop_mlflow.sh"], cwd=REPO_ROOT, env=env, check=True, capture_output=True)
        local.append(seconds)
    rows.append(Row("cold start", "start_mlflow.sh, local mode, to healthy", statistics.median(local), "s",
                    spread(local), "<= 30 s", statistics.median(local) <= 30, local))
    if docker:
        compose = docker_cold_starts(config, workdir)
        rows.append(Row("cold start", "start_mlflow.sh, Docker (stand-in images), fresh checkout to all-healthy",
                        statistics.median(compose), "s", spread(compose), "<= 20 s", statistics.median(compose) <= 20,
                        compose))
    return rows


def docker_cold_starts(config: Config, workdir: Path) -> list[float]:
    """start_mlflow.sh in fresh copies of this checkout (new project, empty volumes) on the
    stand-in images the Docker tests use; each stack is deleted after. One start more than
    counted comes first: it builds the MLflow server image, which later ones find cached."""
    from benchmarks.images import stack_images
    from mlflow_stack.compose_stack import ComposeStack

    images = stack_images()
    seconds = []
    for index in range(1 + config.cold_starts):
        stack = ComposeStack.fresh_copy(workdir / f"docker-{index}", images)
        try:
            seconds.append(stack.start().startup_seconds)
        finally:
            stack.stop(delete_data=True)
    return seconds[1:]


# -- 5. tracking overhead -------------------------------------------------------------------------------
def bench_training(target: Target, config: Config, workdir: Path, upload_mb_per_s: float | None) -> list[Row]:
    import flash
    import mlflow

    from dl_model_tracking.data import load_imdb
    from dl_model_tracking.model import build_classifier, build_offline_backbone
    from dl_model_tracking.provenance import start_run

    mlflow.set_tracking_uri(target.tracking_uri)
    experiment = mlflow.create_experiment(f"bench-training-{uuid.uuid4().hex[:8]}")
    backbone = build_offline_backbone(workdir / "backbone", pretrain=False)

    def fine_tune(data_dir: Path, epochs: int, tracking: str) -> float:
        datamodule = load_imdb(data_dir, batch_size=32)
        model = build_classifier(datamodule, backbone=str(backbone))
        trainer = flash.Trainer(max_epochs=epochs, enable_progress_bar=False, enable_model_summary=False)

        def train():
            trainer.finetune(model, datamodule=datamodule, strategy="freeze")
            trainer.test(model, datamodule=datamodule, verbose=False)

        if tracking == "untracked":
            mlflow.pytorch.autolog(disable=True)
            return timed(train)
        mlflow.pytorch.autolog(silent=True)
        if tracking == "stock autolog":
            return timed(lambda: _in_run(lambda: mlflow.start_run(experiment_id=experiment), train))
        return timed(lambda: _in_run(lambda: start_run(experiment, datamodule=datamodule, backbone=str(backbone)),
                                     train))

    with contextlib.chdir(workdir):  # Lightning writes lightning_logs/ into the working directory
        return _training_rows(config, workdir, upload_mb_per_s, backbone, fine_tune)


def _training_rows(config, workdir, upload_mb_per_s, backbone, fine_tune) -> list[Row]:
    import mlflow

    from dl_model_tracking.data import write_sample_dataset

    rows = []
    small = workdir / "data-small"
    write_sample_dataset(small, sizes=config.fixed_sizes)
    fine_tune(small, 1, "untracked")  # warm-up: imports, first tokenizer load
    sides = {mode: (lambda mode=mode: fine_tune(small, config.fixed_epochs, mode))
             for mode in ("untracked", *config.tracked_modes)}
    seconds = interleaved(sides, config.repeats)
    model_mb = (backbone / "pytorch_model.bin").stat().st_size / MB
    upload = model_mb / upload_mb_per_s if upload_mb_per_s else 0.0
    for mode in ("untracked", *config.tracked_modes):
        rows.append(Row("training", f"short fine-tune ({config.fixed_epochs} epoch, {config.fixed_sizes['train']} reviews), {mode}",
                        statistics.median(seconds[mode]), "s", spread(seconds[mode]), samples=seconds[mode]))
    for mode in config.tracked_modes:
        extra = [t - u for t, u in zip(seconds[mode], seconds["untracked"])]
        fixed = statistics.median(extra) - upload
        beyond = [e - upload for e in extra]
        rows.append(Row("training", f"fixed cost per run beyond the model upload ({upload:.2f} s), {mode}",
                        fixed, "s", spread(beyond), "<= 1 s", fixed <= 1, extra,
                        difference=True, noise=min(beyond) < 0 < max(beyond)))

    large = workdir / "data-large"
    write_sample_dataset(large, sizes=config.marginal_sizes)
    long_sides = {mode: (lambda mode=mode: fine_tune(large, config.marginal_epochs, mode))
                  for mode in ("untracked", "project helpers")}
    long_seconds = interleaved(long_sides, max(2, config.repeats // 2))
    ratio = [t / u for t, u in zip(long_seconds["project helpers"], long_seconds["untracked"])]
    rows.append(Row("training", f"long fine-tune ({config.marginal_epochs} epochs, {config.marginal_sizes['train']} reviews), untracked",
                    statistics.median(long_seconds["untracked"]), "s", spread(long_seconds["untracked"]),
                    samples=long_seconds["untracked"]))
    rows.append(Row("training", "long fine-tune: tracked / untracked (marginal cost)", statistics.median(ratio),
                    "ratio", spread(ratio), "<= 1.05", statistics.median(ratio) <= 1.05, ratio))
    mlflow.pytorch.autolog(disable=True)
    return rows


def writers_rows(target: Target, config: Config) -> list[Row]:
    from benchmarks.writers import bench_writers  # imports MLflow: not before main() turned its telemetry off

    return bench_writers(target.tracking_uri, config.writer_counts, config.writer_seconds)


def store_rows(target: Target, config: Config) -> list[Row]:
    return bench_store(target.backend_store_uri, config, target.seeded)


def local_rows(target: Target, config: Config, workdir: Path) -> list[Row]:
    return bench_local_mode(target.tracking_uri, config, workdir)


def _in_run(open_run, body) -> None:
    with open_run():
        body()


GROUPS = ["metrics", "artifacts", "sharing", "search", "store", "local", "writers", "training", "cold"]  # in the order they run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats (CI)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--tracking-uri", help="a running stack's URL (through nginx); default: start the twin")
    parser.add_argument("--mlflow-uri", help="that stack's MLflow server, bypassing nginx")
    parser.add_argument("--s3-endpoint-url", default="http://localhost:9000")
    parser.add_argument("--backend-store-uri", help="that stack's database URI, to seed the search benchmark")
    parser.add_argument("--only", nargs="*", choices=GROUPS, help="run only these groups")
    parser.add_argument("--docker", action="store_true",
                        help="cold start: also time the compose stack on the stand-in images (needs an engine)")
    args = parser.parse_args(argv)
    config = Config.for_mode(args.quick)
    groups = set(args.only or GROUPS)
    # Only loopback traffic: MLflow's telemetry would fetch its config from the internet at
    # import, in the benchmark, its writers and the twin's server alike.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    started = time.perf_counter()
    rows: list[Row] = []
    group_seconds: dict[str, float] = {}  # where a run's time goes (quick mode must stay short)
    with tempfile.TemporaryDirectory(prefix="mlflow-bench-") as tmp:
        workdir = Path(tmp)
        with target_from_args(args, workdir) as target:
            group_seconds["start the stack"] = round(time.perf_counter() - started, 1)
            measures = {
                "metrics": lambda: bench_metrics(target, config),
                "artifacts": lambda: bench_artifacts(target, config, workdir),
                "sharing": lambda: bench_sharing(config, workdir),
                "search": lambda: bench_search(target, config),
                "store": lambda: store_rows(target, config),
                "local": lambda: local_rows(target, config, workdir),
                "writers": lambda: writers_rows(target, config),
                # The model upload's share of a tracked run, from the artifacts group when it ran.
                "training": lambda: bench_training(target, config, workdir, next(
                    (r.value for r in rows if r.measure.endswith("upload through nginx + MLflow proxy")), None)),
                "cold": lambda: bench_cold_start(target, config, workdir, args.docker),
            }
            for group in GROUPS:
                if group in groups:
                    group_started = time.perf_counter()
                    rows += measures[group]()
                    group_seconds[group] = round(time.perf_counter() - group_started, 1)
    elapsed = time.perf_counter() - started
    report = {"mode": "quick" if args.quick else "full", "seconds": round(elapsed, 1), "machine": machine(),
              "group_seconds": group_seconds, "rows": [asdict(row) for row in rows]}
    publish(report, markdown(rows), f"{report['mode']} run, {elapsed:.0f} s", args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
