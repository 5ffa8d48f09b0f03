"""A brake on password guessing for MLflow's basic-auth app (a shared stack's sign-in).

MLflow checks each sign-in and answers a wrong one 401, as fast as the next guess comes.
This module is the app's ``authorization_function`` (serve.sh's auth config names it, a
documented extension point) and puts a brake in front of MLflow's own check:

- Only requests that carry credentials count: anonymous ones still get 401 and the
  browser's sign-in prompt, whoever failed before them from the same address.
- USER_FAILURES wrong passwords for one user name, or ADDRESS_FAILURES from one client
  address, lock that name or address for FIRST_LOCK_SECONDS, each further lock twice as
  long as the last (up to MAX_LOCK_SECONDS). Failures are forgotten after
  FORGET_AFTER_SECONDS without one, so a typo now and then never locks anyone.
- A locked request is answered 429 with ``Retry-After`` before its password is checked, so
  a right guess during a lock tells nothing. Credentials this worker verified before the lock
  (MLflow's sign-in cache) keep working: a training job is not locked out by an attacker
  guessing its user's password.
- An unknown user costs the same password-hash check as a known one: the time of a refusal
  does not tell which names exist.
- The counters live in the auth database (table ``stack_signin_brake``), so every worker
  and every server replica sees the same ones; time or an admin (``mlflow-users unlock``,
  :func:`unlock`) lifts a lock.

The client address is nginx's ``X-Real-IP`` (nginx sets it, replacing whatever a client
sent); a client on the server's own loopback port could set it itself, which the per-user
limit still brakes.
"""

from __future__ import annotations

import functools
import json
import math
import time

import sqlalchemy as sa
from flask import Response, request
from werkzeug.security import check_password_hash, generate_password_hash

USER_FAILURES = 5
ADDRESS_FAILURES = 20
FIRST_LOCK_SECONDS = 60
MAX_LOCK_SECONDS = 3600
FORGET_AFTER_SECONDS = 900

_metadata = sa.MetaData()
_brake = sa.Table(
    "stack_signin_brake", _metadata,
    sa.Column("subject", sa.String(255), primary_key=True),  # "user:<name>" or "address:<ip>"
    sa.Column("failures", sa.Integer, nullable=False),  # since the last lock, success or pause
    sa.Column("lockouts", sa.Integer, nullable=False),  # locks in a row: each doubles the next
    sa.Column("locked_until", sa.Double, nullable=False),
    sa.Column("last_failure", sa.Double, nullable=False),
)


class Brake:
    """Failure counters and locks per subject, in a database shared by every worker."""

    def __init__(self, database_uri: str):
        self.engine = sa.create_engine(database_uri, pool_pre_ping=True)

    def create_table(self) -> None:
        _metadata.create_all(self.engine, checkfirst=True)

    def locked_seconds(self, *subjects: str) -> float:
        now = time.time()
        with self.engine.connect() as conn:
            until = conn.execute(sa.select(sa.func.max(_brake.c.locked_until))
                                 .where(_brake.c.subject.in_(subjects))).scalar()
        return max(0.0, (until or 0.0) - now)

    def failed(self, subject: str, limit: int) -> float:
        """Count a failure; the seconds of the lock it started (0: none)."""
        now = time.time()
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(_brake).where(_brake.c.subject == subject).with_for_update()).first()
            failures, lockouts = (0, 0) if row is None else (row.failures, row.lockouts)
            if row is not None and now - row.last_failure > FORGET_AFTER_SECONDS:
                failures = 0
                lockouts = 0 if now - row.last_failure > MAX_LOCK_SECONDS * 24 else lockouts
            failures += 1
            lock = 0.0
            if failures >= limit:
                lock = float(min(MAX_LOCK_SECONDS, FIRST_LOCK_SECONDS * 2 ** lockouts))
                failures, lockouts = 0, lockouts + 1
            values = dict(failures=failures, lockouts=lockouts, last_failure=now,
                          locked_until=now + lock if lock else (row.locked_until if row else 0.0))
            if row is None:
                conn.execute(sa.insert(_brake).values(subject=subject, **values))
            else:
                conn.execute(sa.update(_brake).where(_brake.c.subject == subject).values(**values))
        return lock

    def forget(self, subject: str) -> bool:
        """Drop a subject's failures and lock; whether there were any."""
        with self.engine.begin() as conn:
            return conn.execute(sa.delete(_brake).where(_brake.c.subject == subject)).rowcount > 0


@functools.cache
def brake() -> Brake:
    from mlflow.server.auth import auth_config

    return Brake(auth_config.database_uri)


@functools.cache
def _unknown_user_hash() -> str:
    """A hash of the kind MLflow stores, checked for unknown users so they cost the same."""
    return generate_password_hash("no user has this password")


def client_address() -> str:
    return request.headers.get("X-Real-IP") or request.remote_addr or "unknown"


def too_many(seconds: float) -> Response:
    wait = max(1, math.ceil(seconds))
    body = json.dumps({"error_code": "REQUEST_LIMIT_EXCEEDED",
                       "message": f"Too many failed sign-ins: try again in {wait} s (or ask an admin to unlock)"})
    return Response(body, status=429, mimetype="application/json", headers={"Retry-After": str(wait)})


def authenticate_request():
    """MLflow's basic-auth check with the brake in front (the app's authorization_function)."""
    from mlflow.server import auth as mlflow_auth

    credentials = request.authorization
    if credentials is None or credentials.type != "basic":
        return mlflow_auth.make_basic_auth_response()  # anonymous: the prompt, never counted
    username, password = credentials.username or "", credentials.password or ""
    if _verified_before(username, password):
        return credentials
    user_subject, address_subject = f"user:{username}", f"address:{client_address()}"
    locked = brake().locked_seconds(user_subject, address_subject)
    if locked:
        return too_many(locked)
    if mlflow_auth._authenticate_cached(username, password) is not None:
        brake().forget(user_subject)
        return credentials
    if not mlflow_auth.store.has_user(username):
        check_password_hash(_unknown_user_hash(), password)
    lock = max(brake().failed(user_subject, USER_FAILURES), brake().failed(address_subject, ADDRESS_FAILURES))
    return too_many(lock) if lock else mlflow_auth.make_basic_auth_response()


def _verified_before(username: str, password: str) -> bool:
    """In MLflow's cache of credentials this worker verified (and that no password change
    or deletion has dropped since)."""
    from mlflow.server import auth as mlflow_auth

    if mlflow_auth._USER_AUTH_CACHE is None:
        return False
    with mlflow_auth._USER_AUTH_CACHE_LOCK:
        return mlflow_auth._auth_cache_key(username, password) in mlflow_auth._USER_AUTH_CACHE


def unlock(username: str | None = None, address: str | None = None) -> bool:
    """Lift a user's or an address's lock and forget its failures; whether there was any."""
    subjects = ([f"user:{username}"] if username else []) + ([f"address:{address}"] if address else [])
    return any([brake().forget(subject) for subject in subjects])
