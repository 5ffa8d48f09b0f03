"""The stack's tracking store against MLflow's own, A/B in one run, in this process (no
HTTP), on the stack's own database: what ``MLFLOW_STACK_TRACKING_STORE=stock`` would cost.

For each experiment size: ``search_runs`` (metric filter, order by a metric, 100 rows)
p50/p95, and the EXPLAIN of each store's main search query. Then ``log_batch`` of 1,000 new
metrics and of 1,000 updates of existing keys, and ``log_metric``: the rate, and the
statements each call sends to the database (counted with a SQLAlchemy cursor hook).
"""

from __future__ import annotations

import contextlib
import itertools
import statistics
import time
import uuid

from sqlalchemy import event

from benchmarks.config import Config
from benchmarks.measuring import interleaved, percentile, spread, timed
from benchmarks.report import Row
from benchmarks.seeding import seed_runs

SIDES = ("stock", "fast")
SEARCH = {"filter_string": "metrics.m0 > 0.5 and params.p1 != '7'", "order_by": ["metrics.m1 DESC"],
          "max_results": 100}


class StatementCounter:
    """Statements one store sends to its database: an executemany the driver sends row by
    row (anything but a MySQL INSERT, which PyMySQL merges into multi-row INSERTs) counts
    each row. The last search's main query is kept for EXPLAIN."""

    def __init__(self, engine):
        self.count, self.search_query = 0, None
        self._mysql = engine.dialect.name == "mysql"
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, conn, cursor, statement, parameters, context, executemany):
        merged = self._mysql and statement.lstrip().upper().startswith("INSERT")
        self.count += len(parameters) if executemany and not merged else 1
        if "FROM runs" in statement and "LIMIT" in statement and "ORDER BY" in statement:
            self.search_query = (statement, parameters)

    @contextlib.contextmanager
    def counting(self):
        before = self.count
        result = {}
        yield result
        result["statements"] = self.count - before


def stores(backend_store_uri: str):
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    from mlflow_stack_server.fast_sql_store import FastSqlAlchemyStore

    made = {"stock": SqlAlchemyStore(backend_store_uri, "/nonexistent-unused"),
            "fast": FastSqlAlchemyStore(backend_store_uri, "/nonexistent-unused")}
    return made, {side: StatementCounter(store.engine) for side, store in made.items()}


def explain_extra(engine, query) -> str:
    """The EXPLAIN plan's notes (MySQL/MariaDB 'Extra', SQLite's detail), one line."""
    statement, parameters = query
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
        cursor.execute(prefix + statement, parameters)
        names = [d[0] for d in cursor.description]
        column = "Extra" if "Extra" in names else names[-1]
        return "; ".join(str(row[names.index(column)]) for row in cursor.fetchall() if row[names.index(column)])
    finally:
        raw.close()


def bench_store(backend_store_uri: str | None, config: Config, seeded: dict[int, str]) -> list[Row]:
    """``seeded``: experiments of the search group's runs, by count (others are seeded here)."""
    if not backend_store_uri:
        return [Row("store", "stack's store against MLflow's", float("nan"), "ratio",
                    goal="needs --backend-store-uri")]
    made, counters = stores(backend_store_uri)
    rows = []
    for count in config.search_runs:
        experiment = seeded.get(count)
        if experiment is None:
            experiment = made["stock"].create_experiment(f"bench-store-{count}-{uuid.uuid4().hex[:8]}")
            seed_runs(backend_store_uri, experiment, count)
        rows += search_rows(made, counters, experiment, count, config)
    rows += write_rows(made, counters, config)
    for store in made.values():
        store.engine.dispose()
    return rows


def search_rows(made, counters, experiment, count, config) -> list[Row]:
    from mlflow.entities import ViewType

    def search(side):
        def once():
            started = time.perf_counter()
            found = made[side].search_runs([experiment], run_view_type=ViewType.ACTIVE_ONLY, **SEARCH)
            if len(found) != 100:
                raise AssertionError(f"{side} search returned {len(found)} runs, expected 100")
            return (time.perf_counter() - started) * 1000
        return once

    latencies = interleaved({side: search(side) for side in SIDES}, config.search_queries)
    label = f"{count:,} runs"
    rows = []
    for side in SIDES:
        values = latencies[side]
        rows += [Row("store", f"search_runs, {label}, {side} store: p50", percentile(values, 0.5), "ms",
                     spread(values, "{:.0f}"), samples=values),
                 Row("store", f"search_runs, {label}, {side} store: p95", percentile(values, 0.95), "ms",
                     samples=values)]
    ratio = percentile(latencies["stock"], 0.95) / percentile(latencies["fast"], 0.95)
    rows.append(Row("store", f"search_runs, {label}: stock p95 / fast p95", ratio, "ratio",
                    goal=">= 4x" if count >= 100_000 else "", met=ratio >= 4 if count >= 100_000 else None))
    for side in SIDES:
        with counters[side].counting() as counted:
            search(side)()
        extra = explain_extra(made[side].engine, counters[side].search_query)
        temporary = "Using temporary" in extra or "TEMP B-TREE FOR DISTINCT" in extra
        rows += [Row("store", f"search_runs, {label}, {side} store: statements per search",
                     float(counted["statements"]), "statements"),
                 Row("store", f"search_runs, {label}, {side} store: EXPLAIN builds a temporary table",
                     float(temporary), "flag", extra, goal="no" if side == "fast" else "",
                     met=not temporary if side == "fast" else None)]
    return rows


def write_rows(made, counters, config) -> list[Row]:
    from mlflow.entities import Metric

    experiment = made["stock"].create_experiment(f"bench-store-writes-{uuid.uuid4().hex[:8]}")
    now = int(time.time() * 1000)
    rows = []

    def new_run(side):
        return made[side].create_run(experiment, "bench", now, [], "store-writes").info.run_id

    def batch_new(side):
        def once():
            run_id, metrics = new_run(side), [Metric(f"m{j}", float(j), now, 0) for j in range(1000)]
            return 1000 / timed(lambda: made[side].log_batch(run_id, metrics, [], []))
        return once

    updated = {side: new_run(side) for side in SIDES}
    steps = itertools.count(1)

    def batch_update(side):
        def once():
            step = next(steps)
            metrics = [Metric(f"m{j}", float(j), now, step) for j in range(1000)]
            return 1000 / timed(lambda: made[side].log_batch(updated[side], metrics, [], []))
        return once

    single = {side: new_run(side) for side in SIDES}

    def log_metric(side):
        def once():
            calls = config.metric_calls
            return timed(lambda: [made[side].log_metric(single[side], Metric("loss", 0.5, now, next(steps)))
                                  for _ in range(calls)]) / calls * 1000
        return once

    for side in SIDES:  # every key exists before the update rounds
        made[side].log_batch(updated[side], [Metric(f"m{j}", 0.0, now, 0) for j in range(1000)], [], [])
    for label, make, unit in (("log_batch of 1,000 new metrics", batch_new, "metrics/s"),
                              ("log_batch of 1,000 updates of existing keys", batch_update, "metrics/s"),
                              ("log_metric", log_metric, "ms")):
        measured = interleaved({side: make(side) for side in SIDES}, config.repeats)
        for side in SIDES:
            with counters[side].counting() as counted:
                make(side)()
            calls = config.metric_calls if make is log_metric else 1
            rows += [Row("store", f"{label}, {side} store", statistics.median(measured[side]), unit,
                         spread(measured[side], "{:.1f}"), samples=measured[side]),
                     Row("store", f"{label}, {side} store: statements per call", float(counted["statements"] / calls),
                         "statements")]
        faster = [a / b for a, b in zip(measured["fast"], measured["stock"])]
        if make is log_metric:
            faster = [1 / f for f in faster]
        rows.append(Row("store", f"{label}: fast / stock speed", statistics.median(faster), "ratio", spread(faster),
                        goal=">= 5x" if make is batch_update else "",
                        met=statistics.median(faster) >= 5 if make is batch_update else None, samples=faster))
    return rows
