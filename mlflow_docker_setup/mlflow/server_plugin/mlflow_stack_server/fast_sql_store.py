"""MLflow's SQL tracking store, with fewer and cheaper statements where a team's stack waits:
searching runs, logging a batch, and keeping ``latest_metrics`` current.

Everything else is MLflow's ``SqlAlchemyStore`` unchanged. What is overridden is proven
equal to MLflow's own store by the differential tests (tests/test_store_equality.py), and
tests/test_upgrade.py fails when a new MLflow changes the code these methods replace.

- ``_search_runs``: MLflow selects ``DISTINCT`` whole run rows with the sort keys, which makes
  MySQL and MariaDB build a temporary table and sort every matching run. Only a dataset filter
  can repeat a run (metric, param and tag joins are one-to-one on their primary keys), so the
  page is found first as run ids and sort keys, without ``DISTINCT``, and then only those runs
  are loaded, the same way MLflow loads them. When the first sort key is a metric, the page is
  sorted out of the top runs by that metric alone, walked on an index of ``latest_metrics``
  (``_metric_bound``), not out of every run of the experiment.
- ``_update_latest_metrics_if_necessary``: the same rule and the same sorted row locks, but a
  changed key is written by one DELETE and one multi-row INSERT for the whole batch, not one
  UPDATE per key (PyMySQL sends an ``executemany`` of UPDATEs row by row).
- ``log_batch``: one transaction for params, metrics and tags (MLflow opens one per part).
- With a read replica, only searches read from it (replica_reads.py): MLflow reads
  everything there, and a client reading back its own writes could miss them.
"""

import logging
import random
import time
from collections import namedtuple

import sqlalchemy
from sqlalchemy import and_, delete, insert, or_, select

from mlflow.entities import Run, RunInputs, RunOutputs
from mlflow.entities.lifecycle_stage import LifecycleStage
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE
from mlflow.store.tracking.dbmodels.models import (
    SqlLatestMetric,
    SqlMetric,
    SqlParam,
    SqlRun,
    SqlTag,
)
from mlflow.store.db.db_types import MYSQL
from mlflow.store.tracking.sqlalchemy_store import (
    _METRIC_DEDUP_CHUNK_SIZE,
    SqlAlchemyStore,
    _get_orderby_clauses,
    _get_sqlalchemy_filter_clauses,
    _parse_experiment_ids,
)
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME
from mlflow.utils.search_utils import SearchUtils
from mlflow.utils.validation import (
    _validate_batch_log_data,
    _validate_batch_log_limits,
    _validate_param_keys_unique,
    _validate_run_id,
)

from mlflow_stack_server.replica_reads import searching, send_only_searches_to_the_replica

_logger = logging.getLogger(__name__)

# MLflow binds at most this many keys in one IN list (latest_metrics lookups).
_KEYS_PER_STATEMENT = 500
# A batch that meets a stored row (a metric logged before, or a concurrent writer's new key)
# is redone at once without what is stored, as MLflow redoes its metrics; a further conflict
# (writers racing) after a jittered pause, as MLflow redoes its tags; then it gives up.
_CONFLICT_ATTEMPTS = 5


# The index a search sorted by a metric walks: a metric key's values in order. Not one of
# MLflow's migrations; the store adds it when it opens a database (docs/tracking-store.md).
SEARCH_INDEX = "stack_latest_metrics_key_value"
# Index entries a search walks for each run of its page (and the one after), at most.
_WALK_PER_RUN = 50


def _has_search_index(engine):
    indexes = sqlalchemy.inspect(engine).get_indexes(SqlLatestMetric.__tablename__)
    return SEARCH_INDEX in {index["name"] for index in indexes}


def _add_search_index(engine):
    """The search index, unless the database has it. Without it (a user who may not create
    indexes) searches stay correct and only slower, so a refusal is logged, not raised."""
    if _has_search_index(engine):
        return
    latest = SqlLatestMetric.__table__
    try:
        sqlalchemy.Index(SEARCH_INDEX, latest.c.key, latest.c.is_nan, latest.c.value).create(engine)
    except sqlalchemy.exc.DatabaseError as error:
        # The server's other worker may have made it a moment ago.
        if not _has_search_index(engine):
            _logger.warning("mlflow-stack-server: no index %s (%s): searches sorted by a metric "
                            "read every run", SEARCH_INDEX, error.orig)


# A metrics / latest_metrics row (the columns MLflow's SqlMetric and SqlLatestMetric share).
_MetricRow = namedtuple("_MetricRow", "run_uuid key value timestamp step is_nan")


def _chunks(items, size):
    return [items[i : i + size] for i in range(0, len(items), size)]


def _is_newer(metric, than):
    """MLflow's rule for latest_metrics: a later step, then timestamp, then value wins."""
    return (metric.step, metric.timestamp, metric.value) > (than.step, than.timestamp, than.value)


def _joined(stmt, non_attribute_filters):
    """A search's metric, param and tag filters, each joined to the runs as MLflow joins them."""
    for non_attr_filter in non_attribute_filters:
        stmt = stmt.join(non_attr_filter)
    return stmt


def _metric_bound(session, dialect, order_by, sorting_joins, non_attribute_filters, conditions, rank):
    """A filter that keeps the first ``rank`` runs of a search whose first sort key is a
    metric, and few others: that metric at least as good as its ``rank``-th best value.

    MLflow sorts runs with a value first (NaN and missing come after), by value, then by its
    other keys. When ``rank`` runs have a value, the first ``rank`` runs of that order all
    have one at least as good as the ``rank``-th best, so sorting only those gives the same
    page. That value is found by walking the search index from the best value. None when
    the first key is no metric, or fewer than ``rank`` runs with a value are met on the
    walk: then every matching run is sorted.
    """
    if not order_by:
        return None
    key_type, key, ascending = SearchUtils.parse_order_by_for_search_runs(order_by[0])
    if not SearchUtils.is_metric(key_type, "="):
        return None
    # _get_orderby_clauses joins one subquery per non-attribute key, in order: the first
    # key's latest_metrics rows.
    latest = sorting_joins[0]
    # The metric's best values over every experiment (the index knows no experiment), as
    # many as _WALK_PER_RUN for each run wanted: an experiment with a fair share of them
    # finds its runs there; for one with few (a small experiment beside large ones that
    # log the same keys), sorting its own runs is cheaper than walking further.
    value = SqlLatestMetric.value
    best = (
        select(SqlLatestMetric.run_uuid, value)
        .where(SqlLatestMetric.key == key, SqlLatestMetric.is_nan == sqlalchemy.false())
        .order_by(value if ascending else value.desc())
        .limit(rank * _WALK_PER_RUN)
        .subquery()
    )
    # Each database's planner would rather start from a filter's rows and sort them all;
    # each is kept to the walk its own way: MySQL and MariaDB by STRAIGHT_JOIN (the tables
    # in the order written; they would make an EXISTS a join of their choosing), SQLite by
    # an EXISTS per run walked.
    walk = select(best.c.run_uuid)
    if dialect == MYSQL:
        walk = walk.join(SqlRun, SqlRun.run_uuid == best.c.run_uuid).prefix_with("STRAIGHT_JOIN")
        walk = _joined(walk, non_attribute_filters).where(*conditions)
    else:
        matches = select(SqlRun.run_uuid).where(SqlRun.run_uuid == best.c.run_uuid, *conditions)
        walk = walk.where(_joined(matches, non_attribute_filters).exists())
    nth_run = session.execute(
        walk.order_by(best.c.value if ascending else best.c.value.desc()).offset(rank - 1).limit(1)
    ).scalar()
    if nth_run is None:
        return None
    # Compared with the stored value itself, never a float that went through Python.
    nth_value = (
        select(SqlLatestMetric.value)
        .where(SqlLatestMetric.run_uuid == nth_run, SqlLatestMetric.key == key)
        .scalar_subquery()
    )
    at_least_as_good = latest.c.value <= nth_value if ascending else latest.c.value >= nth_value
    return and_(latest.c.is_nan == sqlalchemy.false(), at_least_as_good)


class FastSqlAlchemyStore(SqlAlchemyStore):
    def __init__(self, db_uri, default_artifact_root, read_db_uri=None):
        super().__init__(db_uri, default_artifact_root, read_db_uri=read_db_uri)
        _add_search_index(self.engine)
        send_only_searches_to_the_replica(self)

    def _search_runs(
        self, experiment_ids, filter_string, run_view_type, max_results, order_by, page_token
    ):
        with searching():
            return self._search_runs_page(
                experiment_ids, filter_string, run_view_type, max_results, order_by, page_token
            )

    def _search_runs_page(
        self, experiment_ids, filter_string, run_view_type, max_results, order_by, page_token
    ):
        self._validate_max_results_param(max_results, allow_null=True)
        parsed_filters = SearchUtils.parse_search_filter(filter_string)
        if any(f["type"] == SearchUtils._DATASET_IDENTIFIER for f in parsed_filters):
            # A run can match several dataset inputs; MLflow's DISTINCT is needed there.
            return super()._search_runs(
                experiment_ids, filter_string, run_view_type, max_results, order_by, page_token
            )
        stages = set(LifecycleStage.view_type_to_stages(run_view_type))

        with self.ManagedSessionMaker() as session:
            cases_orderby, parsed_orderby, sorting_joins = _get_orderby_clauses(order_by, session)
            attribute_filters, non_attribute_filters, _ = _get_sqlalchemy_filter_clauses(
                parsed_filters, session, self._get_dialect()
            )
            ids = self._filter_experiment_ids(session, _parse_experiment_ids(experiment_ids))
            conditions = (
                SqlRun.experiment_id.in_(ids),
                SqlRun.lifecycle_stage.in_(stages),
                *attribute_filters,
            )

            def sorted_page(*bound):
                stmt = _joined(select(SqlRun.run_uuid, *cases_orderby), non_attribute_filters)
                for j in sorting_joins:
                    stmt = stmt.outerjoin(j)
                stmt = stmt.filter(*conditions, *bound).order_by(*parsed_orderby).offset(offset)
                if max_results is not None:
                    stmt = stmt.limit(max_results + 1)
                return [row[0] for row in session.execute(stmt)]

            offset = SearchUtils.parse_start_offset_from_page_token(page_token)
            page = None
            if max_results is not None:
                # The page and one run more, which says whether there is a next page.
                wanted = max_results + 1
                bound = _metric_bound(
                    session, self._get_dialect(), order_by, sorting_joins, non_attribute_filters,
                    conditions, offset + wanted,
                )
                if bound is not None:
                    page = sorted_page(bound)
                    if len(page) < wanted:  # the bound moved (a write in between): sort them all
                        page = None
            if page is None:
                page = sorted_page()
            page_runs = self._load_runs_in_order(session, page)

        next_page_token = None
        if max_results is not None and len(page_runs) == max_results + 1:
            next_page_token = SearchUtils.create_page_token(offset + max_results)
            page_runs = page_runs[:max_results]
        return page_runs, next_page_token

    def _load_runs_in_order(self, session, run_ids):
        """The runs named, in that order, with what MLflow's search returns for each."""
        loaded = session.execute(
            select(SqlRun)
            .options(*self._get_eager_run_query_options())
            .where(SqlRun.run_uuid.in_(run_ids))
        ).scalars()
        by_id = {run.run_uuid: run.to_mlflow_entity() for run in loaded}
        runs = [by_id[run_id] for run_id in run_ids]
        inputs = self._get_run_inputs(run_uuids=run_ids, session=session)
        outputs = self._get_model_outputs_bulk(run_ids=run_ids, session=session)
        return [
            Run(
                run.info,
                run.data,
                RunInputs(dataset_inputs=inputs[i]),
                RunOutputs(outputs[run.info.run_id]),
            )
            for i, run in enumerate(runs)
        ]

    def _update_latest_metrics_if_necessary(self, logged_metrics, session):
        if not logged_metrics:
            return
        run_uuid = logged_metrics[0].run_uuid
        # The batch's own latest value per key: the first of equals stays, as in MLflow.
        newest = {}
        for metric in logged_metrics:
            if metric.key not in newest or _is_newer(metric, newest[metric.key]):
                newest[metric.key] = metric

        # As MLflow: find which keys have a row, then lock only those, in one global key
        # order (no gap locks on missing rows; concurrent batches lock in the same order).
        stored = {}
        for keys in _chunks(sorted(newest), _KEYS_PER_STATEMENT):
            present = session.execute(
                select(SqlLatestMetric.key).where(
                    SqlLatestMetric.run_uuid == run_uuid, SqlLatestMetric.key.in_(keys)
                )
            ).scalars().all()
            if present:
                stored.update(
                    (row.key, row)
                    for row in session.execute(
                        select(
                            SqlLatestMetric.key,
                            SqlLatestMetric.step,
                            SqlLatestMetric.timestamp,
                            SqlLatestMetric.value,
                        )
                        .where(
                            SqlLatestMetric.run_uuid == run_uuid,
                            SqlLatestMetric.key.in_(present),
                        )
                        .order_by(SqlLatestMetric.run_uuid, SqlLatestMetric.key)
                        .with_for_update()
                    )
                )

        replaced = [k for k in stored if _is_newer(newest[k], stored[k])]
        written = [m for k, m in newest.items() if k not in stored or k in replaced]
        latest = SqlLatestMetric.__table__
        for keys in _chunks(sorted(replaced), _KEYS_PER_STATEMENT):
            session.execute(delete(latest).where(latest.c.run_uuid == run_uuid, latest.c.key.in_(keys)))
        if written:
            session.execute(
                insert(latest),
                [_MetricRow(run_uuid, m.key, m.value, m.timestamp, m.step, m.is_nan)._asdict()
                 for m in written],
            )

    def log_batch(self, run_id, metrics, params, tags):
        if any(m.model_id is not None for m in metrics) or any(
            t.key == MLFLOW_RUN_NAME for t in tags
        ):
            # Model metrics and a new run name write other tables in MLflow's own sessions.
            return super().log_batch(run_id, metrics, params, tags)
        _validate_run_id(run_id)
        metrics, params, tags = _validate_batch_log_data(metrics, params, tags)
        _validate_batch_log_limits(metrics, params, tags)
        _validate_param_keys_unique(params)
        try:
            self._run_with_deadlock_retry(self._log_batch_once, run_id, metrics, params, tags)
        except MlflowException:
            raise
        except Exception as e:
            raise MlflowException(e, INTERNAL_ERROR)

    def _log_batch_once(self, run_id, metrics, params, tags):
        for attempt in range(1, _CONFLICT_ATTEMPTS + 1):
            with self.ManagedSessionMaker(read_only=False) as session:
                run = self._get_run(run_uuid=run_id, session=session)
                self._check_run_is_active(run)
                try:
                    self._add_params(session, run, params)
                    self._add_metrics(session, run_id, metrics, after_conflict=attempt > 1)
                    self._set_tags_in(session, run_id, tags)
                    session.flush()
                except sqlalchemy.exc.IntegrityError:
                    # A concurrent writer added the same metric, latest key or tag first.
                    session.rollback()
                    if attempt == _CONFLICT_ATTEMPTS:
                        raise
                else:
                    return
            if attempt > 1:  # the second attempt, at once, skips what is stored; later ones wait
                time.sleep(2 ** (attempt - 2) - 1 + random.uniform(0, 1))

    def _add_params(self, session, run, params):
        """MLflow's ``_log_params``, inside the batch's transaction."""
        if not params:
            return
        existing = {p.key: p.value for p in run.params}
        conflicts = [
            {"key": p.key, "old_value": existing[p.key], "new_value": p.value}
            for p in params
            if p.key in existing and p.value != existing[p.key]
        ]
        if conflicts:
            raise MlflowException(
                "Changing param values is not allowed. Params were already"
                f" logged='{conflicts}' for run ID='{run.run_uuid}'.",
                INVALID_PARAMETER_VALUE,
            )
        session.add_all(
            SqlParam(run_uuid=run.run_uuid, key=p.key, value=p.value)
            for p in params
            if p.key not in existing
        )

    def _add_metrics(self, session, run_id, metrics, after_conflict):
        """MLflow's ``_log_metrics_once`` in one INSERT; after a conflict, only rows not there."""
        rows = {}
        for metric in metrics:
            is_nan, value = self.sanitize_metric_value(metric.value)
            identity = (metric.key, metric.timestamp, metric.step, value, is_nan)
            rows.setdefault(identity, metric)
        if after_conflict:
            for identity in self._stored_metric_identities(session, run_id, list(rows)):
                del rows[identity]
        if not rows:
            return
        # Plain rows through SQLAlchemy Core: ORM objects cost more than the database here.
        metric_rows = [
            _MetricRow(run_id, key, value, timestamp, step, is_nan)
            for key, timestamp, step, value, is_nan in rows
        ]
        session.execute(insert(SqlMetric.__table__), [row._asdict() for row in metric_rows])
        self._update_latest_metrics_if_necessary(metric_rows, session)

    @staticmethod
    def _stored_metric_identities(session, run_id, identities):
        stored = set()
        for chunk in _chunks(identities, _METRIC_DEDUP_CHUNK_SIZE):
            stored.update(
                tuple(row)
                for row in session.execute(
                    select(
                        SqlMetric.key, SqlMetric.timestamp, SqlMetric.step, SqlMetric.value,
                        SqlMetric.is_nan,
                    ).where(
                        SqlMetric.run_uuid == run_id,
                        or_(*(
                            and_(
                                SqlMetric.key == key, SqlMetric.timestamp == timestamp,
                                SqlMetric.step == step, SqlMetric.value == value,
                                SqlMetric.is_nan == is_nan,
                            )
                            for key, timestamp, step, value, is_nan in chunk
                        )),
                    )
                )
            )
        return stored

    @staticmethod
    def _set_tags_in(session, run_id, tags):
        """MLflow's ``_set_tags`` (the run name excepted), inside the batch's transaction."""
        if not tags:
            return
        final = {}  # the last value given for a key wins, as in MLflow
        for tag in tags:
            final[tag.key] = tag.value
        current = {
            t.key: t
            for t in session.query(SqlTag).filter(
                SqlTag.run_uuid == run_id, SqlTag.key.in_(list(final))
            )
        }
        for key, value in final.items():
            if key in current:
                current[key].value = value
            else:
                session.add(SqlTag(run_uuid=run_id, key=key, value=value))
