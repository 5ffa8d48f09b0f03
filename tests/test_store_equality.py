"""The stack's tracking store (mlflow_stack_server.fast_sql_store) against MLflow's own, on
the databases the stack runs: SQLite (local mode), MariaDB (the twin, the compose tests) and
genuine MySQL (the compose stack's own database; tests/genuine_mysql.py).

Reads: one seeded database, every generated search read through both stores page by page;
run ids, order, page tokens and whole runs must be identical. Writes: the same generated
sequences of log_batch / log_metric, each on a fresh run of its own database; every call's
outcome and the run's rows must be identical. Hypothesis draws the cases from a fixed seed
(derandomize) so CI sees the same ones; STORE_EQUALITY_EXAMPLES=2000 runs a longer search
by hand. The last tests show the comparison catches a planted difference.
"""

import itertools
import json
import math
import os
import random
import threading

import pytest
from google.protobuf.json_format import MessageToDict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from mlflow_stack.local_stack import LocalStack
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunStatus, RunTag, ViewType
from mlflow.exceptions import MlflowException
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore, _get_orderby_clauses
from mlflow_stack_server import fast_sql_store
from mlflow_stack_server.fast_sql_store import FastSqlAlchemyStore

EXAMPLES = int(os.environ.get("STORE_EQUALITY_EXAMPLES", "60"))
CASES = settings(
    max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
METRICS = ["m0", "m1", "m2"]
PARAMS = ["p0", "p1", "p2"]
TAGS = ["t0", "t1"]
# Values that meet at ties, NaN and the infinities MLflow stores as the largest floats.
METRIC_VALUES = [0.0, 0.5, 1.0, -1.0, 2.5, math.nan, math.inf, -math.inf]
TEXT_VALUES = ["a", "b", "ab", "B", "a_b", "a%b", "10", "9"]


# ---------------------------------------------------------------------------- databases


class Databases:
    """Empty MLflow databases on one server (each made by MLflow's own migrations):
    ``create(name)`` makes an empty database and gives its SQLAlchemy URI."""

    def __init__(self, kind, create):
        self.kind, self._create = kind, create
        self._count = itertools.count()

    def new(self):
        return self._create(f"store_equality_{next(self._count)}")

    def stores(self, uri, artifacts):
        """MLflow's store and the stack's, on one database."""
        stock = SqlAlchemyStore(uri, str(artifacts))
        return stock, FastSqlAlchemyStore(uri, str(artifacts))


def twin_databases(twin):
    """Databases on the twin's MariaDB, used as its root user."""
    if not isinstance(twin, LocalStack):
        pytest.fail("the MariaDB equality tests need the twin this run starts (unset MLFLOW_TRACKING_URI)")

    def create(name):
        with twin.root_connection() as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
            cur.execute(f"CREATE DATABASE `{name}`")
        password = twin.config["MYSQL_ROOT_PASSWORD"]
        return f"mysql+pymysql://root:{password}@127.0.0.1:{twin.mysql_port}/{name}?charset=utf8mb4"
    return create


def genuine_mysql_databases(server):
    """Databases on genuine MySQL (Oracle's server), granted to its MLflow user."""
    def create(name):
        server.query(f"CREATE DATABASE `{name}`")
        server.query(f"GRANT ALL ON `{name}`.* TO '{server.user}'@'%'")
        return server.uri.replace(f"/{server.database}?", f"/{name}?")
    return create


# The twin's MariaDB is reached at run time: its parameter carries the stack marker.
@pytest.fixture(scope="module", params=["sqlite", pytest.param("mariadb", marks=pytest.mark.stack), "mysql"])
def databases(request, tmp_path_factory):
    if request.param == "sqlite":
        return Databases("sqlite", lambda name: f"sqlite:///{tmp_path_factory.mktemp(name)}/mlflow.db")
    if request.param == "mariadb":
        return Databases("mariadb", twin_databases(request.getfixturevalue("twin_stack")))
    return Databases("mysql", genuine_mysql_databases(request.getfixturevalue("genuine_mysql")))


# ---------------------------------------------------------------------------- reads


def run_content(run):
    """A run as a comparable value: its proto as a dict, with params/metrics/tags sorted."""
    content = MessageToDict(run.to_proto())
    for part in ("params", "metrics", "tags"):
        content.get("data", {}).get(part, []).sort(key=lambda item: json.dumps(item, sort_keys=True))
    return content


def all_pages(store, experiment_ids, filter_string, view, max_results, order_by):
    """Every page of a search: (run ids and contents per page, the page tokens)."""
    pages, tokens, token = [], [], None
    while True:
        runs, token = store._search_runs(experiment_ids, filter_string, view, max_results,
                                         order_by, token)
        pages.append([(r.info.run_id, run_content(r)) for r in runs])
        tokens.append(token)
        if token is None or len(pages) > 200:
            return pages, tokens


def outcome(call):
    """What a call did: its value, or the error a client would see."""
    try:
        return ("ok", call())
    except MlflowException as e:
        return ("error", e.error_code, e.message)


@pytest.fixture(scope="module")
def seeded(databases, tmp_path_factory):
    """A store seeded with runs that meet every filter and ordering edge (fixed seed)."""
    rng = random.Random(20261205)
    artifacts = tmp_path_factory.mktemp("artifacts")
    stock, fast = databases.stores(databases.new(), artifacts)
    experiments = [stock.create_experiment(f"e{i}") for i in range(3)]
    run_ids = []
    for i in range(48):
        experiment = experiments[i % 3]
        # Few distinct start times, so the run id tie-break decides many places.
        run = stock.create_run(experiment, "user", 1_000 * rng.randint(0, 5), [], f"run-{i % 13}")
        run_id = run.info.run_id
        run_ids.append(run_id)
        metrics = [Metric(k, rng.choice(METRIC_VALUES), rng.randint(0, 3), rng.randint(0, 2))
                   for k in METRICS if rng.random() < 0.8]
        params = [Param(k, rng.choice(TEXT_VALUES)) for k in PARAMS if rng.random() < 0.7]
        tags = [RunTag(k, rng.choice(TEXT_VALUES)) for k in TAGS if rng.random() < 0.7]
        stock.log_batch(run_id, metrics, params, tags)
        if rng.random() < 0.3:
            digest = rng.choice(["d1", "d2"])
            datasets = [DatasetInput(Dataset(f"ds-{digest}", digest, "local", "{}"),
                                     [InputTag("mlflow.data.context", rng.choice(["train", "eval"]))])]
            if rng.random() < 0.5:  # a run with two inputs: the case MLflow's DISTINCT is for
                datasets.append(DatasetInput(Dataset("ds-d3", "d3", "local", "{}"),
                                             [InputTag("mlflow.data.context", "train")]))
            stock.log_inputs(run_id, datasets)
        if rng.random() < 0.4:
            stock.update_run_info(run_id, rng.choice([RunStatus.FINISHED, RunStatus.FAILED]),
                                  10_000 + i, f"run-{i % 13}")
        if rng.random() < 0.15:
            stock.delete_run(run_id)
    return {"stock": stock, "fast": fast, "experiments": experiments, "run_ids": run_ids}


def clause(draw, run_ids):
    kind = draw(st.sampled_from(["metric", "param", "tag", "attribute", "dataset"]))
    if kind == "metric":
        op = draw(st.sampled_from(["=", "!=", ">", ">=", "<", "<="]))
        return f"metrics.{draw(st.sampled_from(METRICS))} {op} {draw(st.sampled_from([-1, 0, 0.5, 1, 2.5]))}"
    if kind in ("param", "tag"):
        key = draw(st.sampled_from(PARAMS if kind == "param" else TAGS))
        op = draw(st.sampled_from(["=", "!=", "LIKE", "ILIKE", "IN", "NOT IN"]))
        if op in ("IN", "NOT IN"):
            values = draw(st.lists(st.sampled_from(TEXT_VALUES), min_size=1, max_size=3, unique=True))
            return f"{kind}s.{key} {op} ({', '.join(repr(v) for v in values)})"
        value = draw(st.sampled_from(TEXT_VALUES + ["a%", "%b", "_", "%"]))
        return f"{kind}s.{key} {op} '{value}'"
    if kind == "attribute":
        return draw(st.sampled_from([
            "attributes.status = 'FINISHED'", "attributes.status != 'RUNNING'",
            "attributes.run_name LIKE 'run-1%'", "attributes.run_name ILIKE 'RUN-2'",
            "attributes.start_time > 2000", "attributes.start_time <= 3000",
            "attributes.end_time > 10010",
            f"attributes.run_id IN ('{draw(st.sampled_from(run_ids))}', '{draw(st.sampled_from(run_ids))}')",
            f"attributes.run_id = '{draw(st.sampled_from(run_ids))}'",
        ]))
    return draw(st.sampled_from([
        "datasets.name = 'ds-d1'", "datasets.digest IN ('d1', 'd3')",
        "datasets.context = 'train'", "datasets.name LIKE 'ds-%'",
    ]))


ORDER_KEYS = ([f"metrics.{k}" for k in METRICS] + [f"params.{k}" for k in PARAMS]
              + [f"tags.{k}" for k in TAGS]
              + ["attributes.start_time", "attributes.end_time", "attributes.run_name",
                 "attributes.status"])


@st.composite
def searches(draw, run_ids, experiments):
    filter_string = " AND ".join(clause(draw, run_ids) for _ in range(draw(st.integers(0, 3))))
    keys = draw(st.lists(st.sampled_from(ORDER_KEYS), max_size=3, unique=True))
    order_by = [f"{k} {draw(st.sampled_from(['ASC', 'DESC', '']))}".strip() for k in keys]
    return {
        "experiment_ids": draw(st.lists(st.sampled_from(experiments), min_size=1, max_size=3, unique=True)),
        "filter_string": filter_string,
        "view": draw(st.sampled_from([ViewType.ACTIVE_ONLY, ViewType.DELETED_ONLY, ViewType.ALL])),
        "max_results": draw(st.sampled_from([1, 3, 7, 25, 1000])),
        "order_by": order_by,
    }


def unfiltered(seeded, max_results, order_by, experiments=None):
    """A search of every run, deleted ones too, of the seeded experiments (or those given)."""
    return {"experiment_ids": experiments or seeded["experiments"], "filter_string": "",
            "view": ViewType.ALL, "max_results": max_results, "order_by": order_by}


def assert_same_search(stock, fast, search):
    expected = outcome(lambda: all_pages(stock, **search))
    assert outcome(lambda: all_pages(fast, **search)) == expected, search
    return expected


@CASES
@given(data=st.data())
def test_searches_read_the_same_runs_in_the_same_order(seeded, data):
    search = data.draw(searches(seeded["run_ids"], seeded["experiments"]))
    assert_same_search(seeded["stock"], seeded["fast"], search)


def test_the_seeded_searches_are_not_all_empty(seeded):
    """A check of the generator itself: its searches find runs, over several pages."""
    found = assert_same_search(seeded["stock"], seeded["fast"], {
        "experiment_ids": seeded["experiments"], "filter_string": "metrics.m0 >= 0",
        "view": ViewType.ALL, "max_results": 3, "order_by": ["metrics.m1 DESC", "params.p0"]})
    pages, _ = found[1]
    assert len(pages) > 3 and sum(len(p) for p in pages) > 9


def test_a_dataset_filter_that_matches_twice_returns_a_run_once(seeded):
    pages, _ = assert_same_search(seeded["stock"], seeded["fast"], {
        "experiment_ids": seeded["experiments"], "filter_string": "datasets.context = 'train'",
        "view": ViewType.ALL, "max_results": 1000, "order_by": []})[1]
    run_ids = [run_id for run_id, _ in pages[0]]
    assert run_ids and len(run_ids) == len(set(run_ids))


@pytest.mark.parametrize("search", [
    {"filter_string": "metrics.m0 >", "order_by": []},
    {"filter_string": "", "order_by": ["metrics.m0", "metrics.m0 DESC"]},
    {"filter_string": "", "order_by": ["nonsense.m0"]},
    {"filter_string": "", "order_by": [], "max_results": 0},
])
def test_bad_searches_fail_with_the_same_error(seeded, search):
    search = {"experiment_ids": seeded["experiments"], "view": ViewType.ALL, "max_results": 5, **search}
    result = assert_same_search(seeded["stock"], seeded["fast"], search)
    assert result[0] == "error"


# ---------------------------------------------------------------------------- writes


@st.composite
def write_sequences(draw):
    """A run's life in calls: batches with duplicates, out-of-order steps, NaN/inf, the same
    key twice, conflicting params and overwritten tags; single log_metric calls between."""
    def metric():
        return Metric(draw(st.sampled_from(METRICS)), draw(st.sampled_from(METRIC_VALUES)),
                      draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    calls = []
    for _ in range(draw(st.integers(1, 6))):
        if draw(st.booleans()):
            calls.append(("log_metric", metric()))
        else:
            calls.append(("log_batch",
                          [metric() for _ in range(draw(st.integers(0, 8)))],
                          [Param(draw(st.sampled_from(PARAMS)), draw(st.sampled_from(["a", "b"])))
                           for _ in range(draw(st.integers(0, 3)))],
                          [RunTag(draw(st.sampled_from(TAGS)), draw(st.sampled_from(["x", "y"])))
                           for _ in range(draw(st.integers(0, 3)))]))
    return calls


def apply(store, run_id, call):
    if call[0] == "log_metric":
        return outcome(lambda: store.log_metric(run_id, call[1]))
    return outcome(lambda: store.log_batch(run_id, *call[1:]))


ROW_QUERIES = {
    "metrics": "SELECT `key`, value, timestamp, step, is_nan FROM metrics WHERE run_uuid = :r",
    "latest_metrics": "SELECT `key`, value, timestamp, step, is_nan FROM latest_metrics WHERE run_uuid = :r",
    "params": "SELECT `key`, value FROM params WHERE run_uuid = :r",
    "tags": "SELECT `key`, value FROM tags WHERE run_uuid = :r",
}


def rows_of(engine, run_id):
    with engine.connect() as conn:
        return {table: sorted(tuple(row) for row in conn.execute(text(sql), {"r": run_id}))
                for table, sql in ROW_QUERIES.items()}


@pytest.fixture(scope="module")
def write_pair(databases, tmp_path_factory):
    """MLflow's store on one database, the stack's on another, one experiment each."""
    artifacts = tmp_path_factory.mktemp("artifacts")
    stock = SqlAlchemyStore(databases.new(), str(artifacts))
    fast = FastSqlAlchemyStore(databases.new(), str(artifacts))
    return {name: (store, store.create_experiment("writes"), store.engine)
            for name, store in (("stock", stock), ("fast", fast))}


def replay(pair, calls, stores=("stock", "fast")):
    """The calls on a fresh run of each store: per store, the outcomes and the run's rows."""
    results = {}
    for name in stores:
        store, experiment, engine = pair[name]
        run_id = store.create_run(experiment, "user", 0, [], "writes").info.run_id
        outcomes = [apply(store, run_id, call) for call in calls]
        outcomes = [tuple(str(part).replace(run_id, "<run>") for part in o) for o in outcomes]
        results[name] = (outcomes, rows_of(engine, run_id))
    return results


@CASES
@given(calls=write_sequences())
def test_write_sequences_leave_the_same_rows_and_errors(write_pair, calls):
    results = replay(write_pair, calls)
    assert results["fast"] == results["stock"], calls


def test_a_conflicting_param_is_refused_the_same_way_and_writes_nothing_of_the_batch(write_pair):
    calls = [("log_batch", [], [Param("p0", "a")], []),
             ("log_batch", [Metric("m0", 1.0, 1, 1)], [Param("p0", "b")], [RunTag("t0", "x")])]
    results = replay(write_pair, calls)
    assert results["fast"] == results["stock"]
    outcomes, rows = results["fast"]
    assert outcomes[1][0] == "error" and "Changing param values is not allowed" in outcomes[1][2]
    assert rows["metrics"] == [] and rows["tags"] == [("mlflow.runName", "writes")]


def test_concurrent_batches_on_one_run_end_as_mlflow_ends_them_one_by_one(write_pair):
    """Writers on one run with overlapping new keys: none fails, and the rows are those of
    MLflow's store given the same batches one after another (the end state does not depend
    on their order). MLflow's own store, run concurrently, sometimes lets a writer fail with
    a duplicate latest_metrics key here, so it is the reference only in sequence."""
    batches = [[Metric(f"k{k:03d}", float(w * 100 + k), w, w) for k in range(0, 120, 1 + w % 3)]
               for w in range(6)]
    stock, stock_experiment, stock_engine = write_pair["stock"]
    reference = stock.create_run(stock_experiment, "user", 0, [], "concurrent").info.run_id
    for batch in batches:
        stock.log_batch(reference, batch, [], [])

    fast, experiment, engine = write_pair["fast"]
    run_id = fast.create_run(experiment, "user", 0, [], "concurrent").info.run_id
    errors = []

    def write(batch):
        try:
            fast.log_batch(run_id, batch, [], [])
        except Exception as e:  # noqa: BLE001 - every failure is a finding here
            errors.append(repr(e))

    threads = [threading.Thread(target=write, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and not any(t.is_alive() for t in threads), errors
    assert rows_of(engine, run_id) == rows_of(stock_engine, reference)
    newest = {m.key: m.value for b in batches for m in b}  # later writers log later steps
    assert {key: value for key, value, *_ in rows_of(engine, run_id)["latest_metrics"]} == newest


# ---------------------------------------------------------------------------- the comparison's own check


def test_the_search_comparison_catches_a_planted_difference(seeded, monkeypatch):
    """Planted: the run id tie-break dropped from the fast store's ordering."""
    def without_tie_break(order_by, session):
        selected, clauses, joins = _get_orderby_clauses(order_by, session)
        return selected, clauses[:-1], joins

    monkeypatch.setattr(fast_sql_store, "_get_orderby_clauses", without_tie_break)
    with pytest.raises(AssertionError):
        assert_same_search(seeded["stock"], seeded["fast"], unfiltered(seeded, 10, ["attributes.start_time DESC"]))


def test_the_write_comparison_catches_a_planted_difference(write_pair, monkeypatch):
    """Planted: the latest-metric rule without the timestamp."""
    calls = [("log_batch", [Metric("m0", 2.0, 5, 1)], [], []),
             ("log_metric", Metric("m0", 1.0, 9, 1))]
    results = replay(write_pair, calls)
    assert results["fast"] == results["stock"]
    monkeypatch.setattr(fast_sql_store, "_is_newer",
                        lambda metric, than: (metric.step, metric.value) > (than.step, than.value))
    results = replay(write_pair, calls)
    assert results["fast"] != results["stock"]


def test_the_search_comparison_catches_a_metric_bound_that_keeps_the_wrong_runs(seeded, monkeypatch):
    """Planted: the bound of a search sorted by a metric taken for the other direction, so
    it keeps enough runs, but the worst ones. (The seeded searches take the bound's way.)"""
    bound = fast_sql_store._metric_bound

    def the_other_way(session, dialect, order_by, *rest):
        first = order_by[0].removesuffix(" DESC") if order_by[0].endswith(" DESC") else f"{order_by[0]} DESC"
        return bound(session, dialect, [first, *order_by[1:]], *rest)

    monkeypatch.setattr(fast_sql_store, "_metric_bound", the_other_way)
    with pytest.raises(AssertionError):
        assert_same_search(seeded["stock"], seeded["fast"], unfiltered(seeded, 3, ["metrics.m1 DESC"]))


def test_a_metric_bound_that_keeps_too_few_runs_falls_back_to_sorting_them_all(seeded, monkeypatch):
    """What a write between the bound's two statements can do (the bound's value moves):
    the page then sorts every matching run, as MLflow does. Planted: a bound for half the
    page, which keeps too few runs."""
    bound = fast_sql_store._metric_bound
    taken = []

    def too_tight(*arguments):
        *others, rank = arguments
        taken.append(bound(*others, max(1, rank // 2)))
        return taken[-1]

    monkeypatch.setattr(fast_sql_store, "_metric_bound", too_tight)
    for order in ("metrics.m0", "metrics.m2 DESC"):
        assert_same_search(seeded["stock"], seeded["fast"], unfiltered(seeded, 7, [order, "params.p0"]))
    assert any(b is not None for b in taken)


@pytest.mark.parametrize("order", ["metrics.m0", "metrics.m1 DESC"])
def test_a_walk_cut_short_gives_the_same_pages(seeded, monkeypatch, order):
    """The metric bound's walk stops after a number of index entries (a small experiment
    beside large ones sorts its own runs instead). Cut to one entry per run wanted: over
    one experiment of three the walk meets too few runs, over all three it meets enough."""
    monkeypatch.setattr(fast_sql_store, "_WALK_PER_RUN", 1)
    for experiments in (seeded["experiments"][:1], seeded["experiments"]):
        assert_same_search(seeded["stock"], seeded["fast"], unfiltered(seeded, 3, [order], experiments))
