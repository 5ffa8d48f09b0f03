"""Which reads a read replica answers (MLFLOW_READ_REPLICA_BACKEND_STORE_URI): searches only.

MLflow 3.17 sends every read of its SQL stores to the replica (read_only=True is the default
of ``mlflow.store.db.utils._get_routing_session_maker``) and nothing guards against the
replica's lag: a client that reads back what it just wrote can miss it. set_experiment then
answers 404 for the experiment it has just created, ending a run fails and leaves it
RUNNING, a model can be logged without its run's params. The stack's tracking store sends
only searches to the replica, the reads that cost the database most and whose results a user
expects to trail new writes a little; every other read (a run, an experiment, a metric's
history, the permission checks) goes to the primary, so a client always reads its writes.
"""

import threading
from contextlib import contextmanager

_searches = threading.local()  # a request is served by one thread: its searches in progress


@contextmanager
def searching():
    """Within this block, this thread's reads go to the replica."""
    _searches.depth = getattr(_searches, "depth", 0) + 1
    try:
        yield
    finally:
        _searches.depth -= 1


def send_only_searches_to_the_replica(store) -> None:
    """Replace the session factory MLflow gave a store with a read replica (its routing one)
    by one that reads from the replica only inside ``searching()``. A store without a
    replica is left as it is."""
    if getattr(store, "read_engine", None) is None:
        return
    from mlflow.store.db.utils import _get_managed_session_maker
    from sqlalchemy.orm import sessionmaker

    primary = _get_managed_session_maker(sessionmaker(bind=store.engine), store.db_type)
    replica = _get_managed_session_maker(sessionmaker(bind=store.read_engine), store.db_type)

    @contextmanager
    def managed_session(read_only=True):
        on_replica = read_only and getattr(_searches, "depth", 0) > 0
        with (replica if on_replica else primary)(read_only=read_only) as session:
            yield session

    store.ManagedSessionMaker = managed_session
