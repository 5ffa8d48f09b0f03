"""Local mode (``start_mlflow.sh`` without Docker: ``serve.sh`` on SQLite, clients straight
to the server's port, no nginx) against the twin, the same calls interleaved in one run:
``log_metric`` per call, and seeding runs the way a training script does (create, log a
batch of 10 params and 10 metrics, end)."""

from __future__ import annotations

import statistics
import time

from mlflow_stack.local_stack import Service, free_port, serve_script_service

from benchmarks.config import Config
from benchmarks.measuring import interleaved, spread, timed
from benchmarks.report import Row

GOAL_RATIO = 1.3  # local mode may cost at most this much more than the twin


def local_mode_server(workdir) -> tuple[Service, str]:
    """The server start_mlflow.sh starts in local mode, with the environment it sets."""
    port = free_port()
    (workdir / "local-artifacts").mkdir()
    service = serve_script_service(
        {"MLFLOW_BACKEND_STORE_URI": f"sqlite:///{workdir}/local-mlflow.db",
         "MLFLOW_ARTIFACTS_DESTINATION": f"file://{workdir}/local-artifacts"},
        port, workdir / "local-mlflow.log", name="mlflow-local")
    service.start()
    try:
        service.wait_ready(time.monotonic() + 180)
    except Exception:
        service.stop()
        raise
    return service, f"http://127.0.0.1:{port}"


def bench_local_mode(tracking_uri: str, config: Config, workdir) -> list[Row]:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    service, local_uri = local_mode_server(workdir)
    try:
        clients = {"local mode": MlflowClient(local_uri), "twin": MlflowClient(tracking_uri)}
        experiments = {side: c.create_experiment(f"bench-local-{time.time_ns()}") for side, c in clients.items()}
        calls, seeded_runs = config.metric_calls, (50 if config.quick else 200)

        def per_call(side):
            client = clients[side]
            run_id = client.create_run(experiments[side]).info.run_id
            return lambda: timed(lambda: [client.log_metric(run_id, "loss", 0.5, step=i)
                                          for i in range(calls)]) / calls * 1000

        def seeding(side):
            client, now = clients[side], int(time.time() * 1000)

            def seed():
                for i in range(seeded_runs):
                    run_id = client.create_run(experiments[side]).info.run_id
                    client.log_batch(run_id, metrics=[Metric(f"m{k}", float(k), now, 0) for k in range(10)],
                                     params=[Param(f"p{k}", str(i)) for k in range(10)])
                    client.set_terminated(run_id)
            return lambda: timed(seed)

        rows = []
        for label, make, unit in ((f"log_metric, ms per call ({calls} calls)", per_call, "ms"),
                                  (f"seeding {seeded_runs} runs (create, log_batch of 10 params and 10 "
                                   "metrics, end)", seeding, "s")):
            measured = interleaved({side: make(side) for side in clients}, config.repeats)
            for side in clients:
                rows.append(Row("local", f"{label}, {side}", statistics.median(measured[side]), unit,
                                spread(measured[side]), samples=measured[side]))
            ratio = [a / b for a, b in zip(measured["local mode"], measured["twin"])]
            rows.append(Row("local", f"{label}: local mode / twin", statistics.median(ratio), "ratio",
                            spread(ratio), f"<= {GOAL_RATIO}", statistics.median(ratio) <= GOAL_RATIO, ratio))
        return rows
    finally:
        service.stop()
