"""Runs for the search benchmarks (and the backup benchmark) written straight into a
tracking database."""

from __future__ import annotations

import time
import uuid


def seed_runs(backend_store_uri: str, experiment_id: str, count: int) -> float:
    """Write ``count`` finished runs with 10 params, 10 metrics and 5 tags each straight into the
    backend database, through MLflow's own table definitions (the REST API would take
    minutes for 10,000 runs, and that is not what is measured here)."""
    import random

    import sqlalchemy
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlParam, SqlRun, SqlTag

    engine = sqlalchemy.create_engine(backend_store_uri)
    rng = random.Random(1)
    now = int(time.time() * 1000)
    started = time.perf_counter()
    with sqlalchemy.orm.Session(engine) as session:
        for first in range(0, count, 1000):
            runs, params, metrics, latest, tags = [], [], [], [], []
            for index in range(first, min(count, first + 1000)):
                run_id = uuid.uuid4().hex
                runs.append(dict(run_uuid=run_id, name=f"bench-run-{index:05d}", source_type="LOCAL",
                                 source_name="benchmarks", entry_point_name="", user_id="bench",
                                 status="FINISHED", start_time=now - index, end_time=now - index + 10,
                                 source_version="", lifecycle_stage="active",
                                 artifact_uri=f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts",
                                 experiment_id=int(experiment_id)))
                # The tags MLflow's own create_run writes (the UI expects them), and three of a team's own.
                tags += [dict(key="mlflow.runName", value=f"bench-run-{index:05d}", run_uuid=run_id),
                         dict(key="mlflow.user", value="bench", run_uuid=run_id),
                         dict(key="team", value=f"team-{index % 4}", run_uuid=run_id),
                         dict(key="dataset", value=f"imdb-v{index % 3}", run_uuid=run_id),
                         dict(key="stage", value="candidate" if index % 10 else "baseline", run_uuid=run_id)]
                params += [dict(key=f"p{k}", value=str(rng.randint(0, 100)), run_uuid=run_id) for k in range(10)]
                for k in range(10):
                    value = dict(key=f"m{k}", value=rng.random(), timestamp=now, step=0, is_nan=False,
                                 run_uuid=run_id)
                    metrics.append(value)
                    latest.append(dict(value))
            session.bulk_insert_mappings(SqlRun, runs)
            session.bulk_insert_mappings(SqlParam, params)
            session.bulk_insert_mappings(SqlMetric, metrics)
            session.bulk_insert_mappings(SqlLatestMetric, latest)
            session.bulk_insert_mappings(SqlTag, tags)
            session.commit()
    engine.dispose()
    return time.perf_counter() - started
