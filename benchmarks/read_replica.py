"""Search latency under concurrent writers, without and with the read replica
(MLFLOW_READ_REPLICA=1), A/B in the same run: two compose stacks side by side, the same
seeded experiment in each, loaded one at a time in alternating order. During each load,
benchmarks.writers' writer processes log while one client searches the seeded experiment
as the UI's run table does; the searches' latencies give p50/p95. With the replica, also
how long it took to catch up with the primary once the writers stopped (the lag a read
right after a write can meet).

    python -m benchmarks.read_replica [--writers 4] [--seconds 20] [--rounds 2] [--json FILE]

The stacks are fresh copies of this checkout (compose projects of their own, deleted after)
on the stand-in images the Docker tests use, or on those an env file names (--images).
Needs a Docker engine; traffic stays on loopback and the stacks' own networks.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from unittest import mock

from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from benchmarks.measuring import percentile, spread
from benchmarks.images import stack_images
from benchmarks.report import Row, machine, markdown, publish
from benchmarks.writers import rows as writer_rows
from benchmarks.writers import WRITER_ENV, run_writers
from mlflow_stack.compose_stack import ComposeStack

SIDES = {"primary only": "0", "with read replica": "1"}
SEARCH = {"filter_string": "metrics.accuracy > 0.5", "order_by": ["metrics.accuracy DESC"], "max_results": 100}
MAX_SEARCHES = 100_000  # a bound besides the clock


def seed(client: MlflowClient, runs: int) -> str:
    """An experiment of ``runs`` finished runs with params and metrics, as a sweep leaves it."""
    experiment_id = client.create_experiment(f"bench-replica-{uuid.uuid4().hex[:8]}")
    now = int(time.time() * 1000)
    with mock.patch.dict("os.environ", WRITER_ENV):  # no "View run" line per seeded run
        for index in range(runs):
            run_id = client.create_run(experiment_id).info.run_id
            client.log_batch(run_id, params=[Param("lr", str(0.001 * (index % 10))), Param("seed", str(index))],
                             metrics=[Metric("accuracy", (index % 100) / 100, now, 0),
                                      Metric("loss", 1 - (index % 100) / 100, now, 0)])
            client.set_terminated(run_id)
    return experiment_id


def searching(client: MlflowClient, experiment_id: str, stop: threading.Event, latencies: list[float]) -> None:
    for _ in range(MAX_SEARCHES):
        if stop.is_set():
            return
        started = time.perf_counter()
        client.search_runs([experiment_id], **SEARCH)
        latencies.append((time.perf_counter() - started) * 1000)


def sql(stack: ComposeStack, service: str, query: str) -> str:
    return subprocess.run(["docker", "exec", "-e", f"MYSQL_PWD={stack.config['MYSQL_ROOT_PASSWORD']}",
                           stack.container(service), "mysql", "-u", "root", "-N", "-B", "-e", query],
                          capture_output=True, text=True, check=True, timeout=120).stdout.strip()


def catch_up_seconds(stack: ComposeStack) -> float:
    """From now until the replica has applied all the primary holds (60 s at most)."""
    started = time.perf_counter()
    if "MariaDB" in sql(stack, "mysql", "SELECT VERSION()"):
        position = sql(stack, "mysql", "SELECT @@GLOBAL.gtid_binlog_pos")
        sql(stack, "mysql-replica", f"SELECT MASTER_GTID_WAIT('{position}', 60)")
    else:
        position = sql(stack, "mysql", "SELECT @@GLOBAL.gtid_executed").replace("\n", "")
        sql(stack, "mysql-replica", f"SELECT WAIT_FOR_EXECUTED_GTID_SET('{position}', 60)")
    return time.perf_counter() - started


def load(stack: ComposeStack, experiment_id: str, writers: int, seconds: float) -> dict:
    """Writers for ``seconds`` while one client searches; the search latencies and writer rows."""
    latencies: list[float] = []
    stop = threading.Event()
    searcher = threading.Thread(target=searching, args=(MlflowClient(stack.tracking_uri), experiment_id, stop,
                                                         latencies))
    searcher.start()
    try:
        result = run_writers(stack.tracking_uri, writers, seconds)
    finally:
        stop.set()
        searcher.join()
    lag = catch_up_seconds(stack) if stack.env_overrides.get("MLFLOW_READ_REPLICA") == "1" else None
    return {"searches_ms": latencies, "writers": writer_rows(result), "catch_up_s": lag}


def side_rows(side: str, loads: list[dict]) -> list[Row]:
    searches = [ms for one in loads for ms in one["searches_ms"]]
    p95s = [percentile(one["searches_ms"], 0.95) for one in loads]
    out = [Row(side, "search_runs p50", percentile(searches, 0.5), "ms"),
           Row(side, "search_runs p95", percentile(searches, 0.95), "ms", spread(p95s, "{:.0f}") + " per round"),
           Row(side, "searches", float(len(searches)), "searches", f"in {len(loads)} rounds")]
    for index, row in enumerate(loads[0]["writers"]):
        values = [one["writers"][index].value for one in loads]
        out.append(Row(side, row.measure, sorted(values)[len(values) // 2], row.unit, spread(values),
                       row.goal, all(one["writers"][index].met is not False for one in loads) if row.goal else None))
    lags = [one["catch_up_s"] for one in loads if one["catch_up_s"] is not None]
    if lags:
        out.append(Row(side, "replica caught up after the writers stopped", max(lags), "s", spread(lags)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writers", type=int, default=4, help="client processes logging at once")
    parser.add_argument("--seconds", type=float, default=20, help="how long each load lasts")
    parser.add_argument("--rounds", type=int, default=2, help="loads per side, in alternating order")
    parser.add_argument("--runs", type=int, default=300, help="runs seeded into the searched experiment")
    parser.add_argument("--images", type=Path, help="an env file naming the images (default: the stand-ins)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    images = stack_images(args.images)
    loads: dict[str, list[dict]] = {side: [] for side in SIDES}
    with tempfile.TemporaryDirectory(prefix="read-replica-bench-") as tmp:
        stacks = {side: ComposeStack.fresh_copy(Path(tmp) / f"stack-{flag}", images, MLFLOW_READ_REPLICA=flag)
                  for side, flag in SIDES.items()}
        try:
            experiments = {}
            for side, stack in stacks.items():
                stack.start()
                experiments[side] = seed(MlflowClient(stack.tracking_uri), args.runs)
            for round_number in range(args.rounds):
                order = list(SIDES) if round_number % 2 == 0 else list(reversed(SIDES))
                for side in order:
                    loads[side].append(load(stacks[side], experiments[side], args.writers, args.seconds))
                    print(f"round {round_number + 1}, {side}: search p95 "
                          f"{percentile(loads[side][-1]['searches_ms'], 0.95):.0f} ms", flush=True)
        finally:
            for stack in stacks.values():
                stack.stop(delete_data=True)
    rows = [row for side in SIDES for row in side_rows(side, loads[side])]
    report = {"machine": machine(), "writers": args.writers, "seconds": args.seconds, "rounds": args.rounds,
              "runs": args.runs, "search": SEARCH, "images": images, "rows": [row.__dict__ for row in rows]}
    publish(report, markdown(rows), f"{args.writers} writers for {args.seconds:g} s per load, {args.rounds} loads "
            f"per side, searching {args.runs} seeded runs", args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
