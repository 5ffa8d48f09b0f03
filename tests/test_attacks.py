"""The stack as an attacker tries it: a signed-in user with the default permission, an
anonymous client, a password guesser. On the shared twin and the shared compose stack (and
the loopback stacks where the default mode has the same rule), always through nginx on
loopback, or from a second loopback address (127.0.0.2) for the per-address limit.

Each test here failed on the stack before the server plugin's app (mlflow_stack_server.app,
signin.py): the weakness it names was there.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import stat
import subprocess
import uuid
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlflow_stack.local_stack import LocalStack
from mlflow_stack.stack_secrets import SECRET_NAMES
from shared_access import mlflow_users, new_user, request

pytestmark = pytest.mark.stack

# Where a user must not make the server write: its disk, the bucket's root, the server's own
# experiment folders (numbers), and through the server's own scheme into another experiment.
HOSTILE_LOCATIONS = ["file:///etc", "/etc", "file:///proc/self", "file:///tmp/../etc",
                     "s3://{bucket}", "s3://{bucket}/0", "s3://{bucket}/1/../../etc",
                     "mlflow-artifacts:/0", "http://127.0.0.1:9/x", "ftp://127.0.0.1/x"]




def message(body: bytes) -> str:
    return json.loads(body)["message"]


SEARCH = "/api/2.0/mlflow/experiments/search?max_results=1"
SEARCH_RUNS_GRAPHQL = "mlflowSearchRuns(input: %s) { runs { info { runId } } }"


# -- artifact locations are the server's to choose ------------------------------------------
@pytest.mark.parametrize("location", HOSTILE_LOCATIONS + ["s3://{bucket}/my-prefix"])
def test_a_signed_in_user_cannot_choose_an_artifact_location_when_shared(shared_stack, location):
    user = new_user(shared_stack)
    name = f"hostile-{uuid.uuid4().hex[:8]}"
    status, _, body = request(shared_stack, "/api/2.0/mlflow/experiments/create", user, "POST",
                              {"name": name, "artifact_location": location.format(bucket=shared_stack.bucket)})
    assert status == 400, body
    assert "this shared server chooses where every experiment's artifacts go" in message(body)
    status, _, _ = request(shared_stack, f"/api/2.0/mlflow/experiments/get-by-name?experiment_name={name}",
                           shared_stack.admin_credentials)
    assert status == 404  # nothing was created


@pytest.mark.parametrize("location", HOSTILE_LOCATIONS)
def test_locations_outside_the_artifact_store_are_refused_on_loopback_too(each_stack, location):
    with pytest.raises(MlflowException, match="refused: only this server's artifact store takes artifacts"):
        MlflowClient(each_stack.tracking_uri).create_experiment(
            f"hostile-{uuid.uuid4().hex[:8]}", artifact_location=location.format(bucket=each_stack.bucket))


def test_the_books_prefix_of_the_bucket_still_works_on_loopback(each_stack):
    location = f"s3://{each_stack.bucket}/book-{uuid.uuid4().hex[:8]}"
    client = MlflowClient(each_stack.tracking_uri)
    experiment_id = client.create_experiment(f"book-{uuid.uuid4().hex[:8]}", artifact_location=location)
    assert client.get_experiment(experiment_id).artifact_location == location


def test_an_upload_lands_in_the_users_own_experiment_folder_when_shared(shared_stack):
    """The positive control of the refusals above: the server's own location works."""
    user = new_user(shared_stack)
    status, _, body = request(shared_stack, "/api/2.0/mlflow/experiments/create", user, "POST",
                              {"name": f"own-{uuid.uuid4().hex[:8]}"})
    assert status == 200, body
    experiment_id = json.loads(body)["experiment_id"]
    status, _, body = request(shared_stack, "/api/2.0/mlflow/runs/create", user, "POST",
                              {"experiment_id": experiment_id})
    run_id = json.loads(body)["run"]["info"]["run_id"]
    status, _, body = request(shared_stack, f"/ajax-api/2.0/mlflow/upload-artifact?run_uuid={run_id}&path=x.txt",
                              user, "POST", b"mine", content_type="application/octet-stream")
    assert status == 200, body
    key = f"{experiment_id}/{run_id}/artifacts/x.txt"
    assert shared_stack.s3_client().get_object(Bucket=shared_stack.bucket, Key=key)["Body"].read() == b"mine"


def test_a_location_stored_before_the_check_is_not_written_to(twin_stack, tmp_path):
    """An experiment made before the server checked locations (written straight into the
    database here) keeps its location, but the server neither writes nor reads there."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    outside = tmp_path / "outside"
    store = SqlAlchemyStore(twin_stack.backend_store_uri, "mlflow-artifacts:/")
    experiment_id = store.create_experiment(f"old-{uuid.uuid4().hex[:8]}", artifact_location=outside.as_uri())
    run_id = MlflowClient(twin_stack.tracking_uri).create_run(experiment_id).info.run_id
    status, _, body = request(twin_stack, f"/ajax-api/2.0/mlflow/upload-artifact?run_uuid={run_id}&path=x.txt",
                              None, "POST", b"theirs", content_type="application/octet-stream")
    assert status == 400, body
    assert "is outside this server's artifact store" in message(body)
    assert not outside.exists()
    status, _, body = request(twin_stack, f"/api/2.0/mlflow/artifacts/list?run_id={run_id}")
    assert status == 400 and "is outside this server's artifact store" in message(body)


# -- a brake on guessing ------------------------------------------------------------------
def test_guessing_a_users_password_locks_the_name_and_tells_when_to_retry(shared_stack):
    user, password = new_user(shared_stack)  # never signed in: nothing cached anywhere
    statuses = [request(shared_stack, SEARCH, (user, f"guess-{n}")) for n in range(6)]
    assert [status for status, _, _ in statuses] == [401] * 4 + [429] * 2
    retry_after = int(statuses[-1][1]["Retry-After"])
    assert 1 <= retry_after <= 60
    assert "Too many failed sign-ins" in message(statuses[-1][2])
    # Locked: even the right password is not checked (a right guess would tell nothing) ...
    assert request(shared_stack, SEARCH, (user, password))[0] == 429
    # ... anonymous requests still get the sign-in prompt ...
    status, headers, _ = request(shared_stack, SEARCH)
    assert status == 401 and headers["WWW-Authenticate"] == 'Basic realm="mlflow"'
    # ... and an admin lifts the lock.
    unlocked = mlflow_users(shared_stack, "unlock", user)
    assert unlocked.returncode == 0, unlocked.stderr
    assert unlocked.stdout.strip() == f"{user}: unlocked"
    assert request(shared_stack, SEARCH, (user, password))[0] == 200


def test_guessing_from_one_address_locks_that_address_for_every_name(shared_twin):
    """From 127.0.0.2 (nginx's X-Real-IP): other names, even unknown ones, then a locked address."""
    statuses = [request(shared_twin, SEARCH, (f"nobody-{n}", "guess"), source="127.0.0.2")[0] for n in range(21)]
    assert statuses[:19] == [401] * 19 and statuses[19:] == [429, 429], statuses
    # Another address is not affected; the admin lifts the address's lock.
    assert request(shared_twin, SEARCH, shared_twin.admin_credentials)[0] == 200
    unlocked = mlflow_users(shared_twin, "unlock", "--address", "127.0.0.2")
    assert unlocked.returncode == 0 and unlocked.stdout.strip() == "127.0.0.2: unlocked", unlocked.stderr
    assert request(shared_twin, SEARCH, ("nobody", "guess"), source="127.0.0.2")[0] == 401


def test_unlocking_is_for_admins(shared_stack):
    user = new_user(shared_stack)
    status, _, body = request(shared_stack, "/api/2.0/stack/signin/unlock", user, "POST", {"username": "admin"})
    assert status == 403, body  # MLflow's auth app refuses a route it has no rule for, the view again


@pytest.mark.parametrize("password, reason", [
    ("password1234", "at least 16 are needed"),
    ("Password1234567890!", "on the list of well-known passwords"),
    ("minioadmin2026", "at least 16 are needed"),
    ("qwertyuiop123456", "on the list of well-known passwords"),
])
def test_weak_passwords_are_refused_for_new_and_changed_passwords(shared_stack, password, reason):
    admin = shared_stack.admin_credentials
    name = f"weak-{uuid.uuid4().hex[:8]}"
    status, _, body = request(shared_stack, "/api/2.0/mlflow/users/create", admin, "POST",
                              {"username": name, "password": password})
    assert status == 400 and reason in message(body), body
    user, _ = new_user(shared_stack)
    status, _, body = request(shared_stack, "/api/2.0/mlflow/users/update-password", admin, "PATCH",
                              {"username": user, "password": password})
    assert status == 400 and reason in message(body), body


# -- every route class, anonymous and as a member with no permission ------------------------
class AdminsThings:
    """What the admin made on a shared stack, for a member without permission to try."""

    def __init__(self, stack):
        admin = stack.admin_credentials
        self.tag = uuid.uuid4().hex[:8]
        self.E = ok(request(stack, "/api/2.0/mlflow/experiments/create", admin, "POST",
                            {"name": f"admins-{self.tag}"}))["experiment_id"]
        self.R = ok(request(stack, "/api/2.0/mlflow/runs/create", admin, "POST",
                            {"experiment_id": self.E}))["run"]["info"]["run_id"]
        ok(request(stack, f"/ajax-api/2.0/mlflow/upload-artifact?run_uuid={self.R}&path=x.txt", admin, "POST",
                   b"the admin's", content_type="application/octet-stream"))
        self.model = f"admins-model-{self.tag}"
        ok(request(stack, "/api/2.0/mlflow/registered-models/create", admin, "POST", {"name": self.model}))
        ok(request(stack, "/api/2.0/mlflow/model-versions/create", admin, "POST",
                   {"name": self.model, "source": f"mlflow-artifacts:/{self.E}/{self.R}/artifacts", "run_id": self.R}))
        self.secret = ok(request(stack, "/ajax-api/3.0/mlflow/gateway/secrets/create", admin, "POST",
                                 {"secret_name": f"admins-key-{self.tag}", "secret_value": {"api_key": "sk-admins"},
                                  "provider": "openai"}))["secret"]["secret_id"]
        self.member = new_user(stack)
        self.member_name = self.member[0]

    def assert_intact(self, stack) -> None:
        """Nothing the member tried changed the admin's things, nor made the member an admin."""
        admin = stack.admin_credentials
        run = ok(request(stack, f"/api/2.0/mlflow/runs/get?run_id={self.R}", admin))["run"]
        assert run["info"]["lifecycle_stage"] == "active" and "metrics" not in run["data"]
        assert {tag["key"] for tag in run["data"]["tags"]} == {"mlflow.runName"}
        experiment = ok(request(stack, f"/api/2.0/mlflow/experiments/get?experiment_id={self.E}", admin))["experiment"]
        assert experiment["name"] == f"admins-{self.tag}" and experiment["lifecycle_stage"] == "active"
        status, _, body = request(stack, f"/get-artifact?path=x.txt&run_uuid={self.R}", admin)
        assert (status, body) == (200, b"the admin's")
        status, _, _ = request(stack, f"/get-artifact?path=evil.txt&run_uuid={self.R}", admin)
        assert status == 404
        model = ok(request(stack, f"/api/2.0/mlflow/registered-models/get?name={self.model}", admin))["registered_model"]
        assert "description" not in model and len(model["latest_versions"]) == 1
        ok(request(stack, f"/ajax-api/3.0/mlflow/gateway/secrets/get?secret_id={self.secret}", admin))
        member = ok(request(stack, f"/api/2.0/mlflow/users/get?username={self.member_name}", admin))["user"]
        assert member["is_admin"] is False and not member.get("experiment_permissions")


def ok(answer) -> dict:
    status, _, body = answer
    assert status == 200, body
    return json.loads(body) if body.startswith(b"{") else {}


@pytest.fixture(scope="module")
def admins_things(shared_stack) -> AdminsThings:
    return AdminsThings(shared_stack)


GRAPHQL_DENIED = "graphql: no data"
LISTED_WITHOUT_THEM = "listed without the admin's"
# (route class, method, path, body): a member gets 403, or a list without the admin's
# things (MLflow filters searches), or a GraphQL answer without data.
ROUTES = [
    ("read", "GET", "/api/2.0/mlflow/experiments/get?experiment_id={E}", None, 403),
    ("read", "GET", "/api/2.0/mlflow/runs/get?run_id={R}", None, 403),
    ("read", "GET", "/api/2.0/mlflow/metrics/get-history?run_id={R}&metric_key=loss", None, 403),
    ("read", "POST", "/api/2.0/mlflow/runs/search", {"experiment_ids": ["{E}"]}, LISTED_WITHOUT_THEM),
    ("read", "GET", "/api/2.0/mlflow/experiments/search?max_results=1000", None, LISTED_WITHOUT_THEM),
    ("write", "POST", "/api/2.0/mlflow/runs/create", {"experiment_id": "{E}"}, 403),
    ("write", "POST", "/api/2.0/mlflow/runs/log-metric", {"run_id": "{R}", "key": "m", "value": 1, "timestamp": 0}, 403),
    ("write", "POST", "/api/2.0/mlflow/runs/set-tag", {"run_id": "{R}", "key": "t", "value": "v"}, 403),
    ("write", "POST", "/api/2.0/mlflow/experiments/update", {"experiment_id": "{E}", "new_name": "taken"}, 403),
    ("delete", "POST", "/api/2.0/mlflow/runs/delete", {"run_id": "{R}"}, 403),
    ("delete", "POST", "/api/2.0/mlflow/experiments/delete", {"experiment_id": "{E}"}, 403),
    ("registry", "GET", "/api/2.0/mlflow/registered-models/get?name={model}", None, 403),
    ("registry", "GET", "/api/2.0/mlflow/registered-models/search?max_results=1000", None, LISTED_WITHOUT_THEM),
    ("registry", "POST", "/api/2.0/mlflow/model-versions/create",
     {"name": "{model}", "source": "mlflow-artifacts:/{E}/{R}/artifacts", "run_id": "{R}"}, 403),
    ("registry", "PATCH", "/api/2.0/mlflow/registered-models/update", {"name": "{model}", "description": "x"}, 403),
    ("registry", "DELETE", "/api/2.0/mlflow/registered-models/delete", {"name": "{model}"}, 403),
    ("artifacts", "GET", "/api/2.0/mlflow/artifacts/list?run_id={R}", None, 403),
    ("artifacts", "GET", "/get-artifact?path=x.txt&run_uuid={R}", None, 403),
    ("artifacts", "GET", "/model-versions/get-artifact?path=x.txt&name={model}&version=1", None, 403),
    ("artifacts", "GET", "/api/2.0/mlflow-artifacts/artifacts/{E}/{R}/artifacts/x.txt", None, 403),
    ("artifacts", "GET", "/api/2.0/mlflow-artifacts/artifacts?path={E}/{R}/artifacts", None, 403),
    ("artifacts", "PUT", "/api/2.0/mlflow-artifacts/artifacts/{E}/{R}/artifacts/evil.txt", b"evil", 403),
    ("artifacts", "DELETE", "/api/2.0/mlflow-artifacts/artifacts/{E}/{R}/artifacts/x.txt", None, 403),
    ("artifacts", "POST", "/ajax-api/2.0/mlflow/upload-artifact?run_uuid={R}&path=evil.txt", b"evil", 403),
    ("users", "GET", "/api/2.0/mlflow/users/get?username=admin", None, 403),
    ("users", "POST", "/api/2.0/mlflow/users/create", {"username": "eve-{tag}", "password": "{tag}" * 4}, 403),
    ("users", "PATCH", "/api/2.0/mlflow/users/update-admin", {"username": "{member}", "is_admin": True}, 403),
    ("users", "PATCH", "/api/2.0/mlflow/users/update-password", {"username": "admin", "password": "{tag}" * 4}, 403),
    ("users", "DELETE", "/api/2.0/mlflow/users/delete", {"username": "admin"}, 403),
    ("users", "POST", "/api/2.0/mlflow/experiments/permissions/create",
     {"experiment_id": "{E}", "username": "{member}", "permission": "MANAGE"}, 403),
    ("gateway", "GET", "/ajax-api/3.0/mlflow/gateway/secrets/get?secret_id={secret}", None, 403),
    ("gateway", "POST", "/ajax-api/3.0/mlflow/gateway/secrets/update",
     {"secret_id": "{secret}", "secret_value": {"api_key": "sk-eve"}}, 403),
    ("gateway", "DELETE", "/ajax-api/3.0/mlflow/gateway/secrets/delete", {"secret_id": "{secret}"}, 403),
    ("gateway", "GET", "/ajax-api/3.0/mlflow/gateway/secrets/list", None, LISTED_WITHOUT_THEM),
    ("jobs", "POST", "/ajax-api/3.0/jobs/search", {}, LISTED_WITHOUT_THEM),
    ("graphql", "POST", "/graphql", {"query": 'query { mlflowGetRun(input: {runId: "{R}"}) { run { info { runId } } } }'},
     GRAPHQL_DENIED),
    ("graphql", "POST", "/graphql",
     {"query": 'query { mlflowSearchRuns(input: {experimentIds: ["{E}"]}) { runs { info { runId } } } }'}, GRAPHQL_DENIED),
    ("graphql", "POST", "/graphql",
     {"query": 'query { mlflowGetExperiment(input: {experimentId: "{E}"}) { experiment { name } } }'}, GRAPHQL_DENIED),
]


def values_in(answer):
    """Every scalar of a JSON answer, as text."""
    if isinstance(answer, dict):
        for value in answer.values():
            yield from values_in(value)
    elif isinstance(answer, list):
        for value in answer:
            yield from values_in(value)
    else:
        yield str(answer)


def filled(template, things: AdminsThings):
    """The route's path or body with the admin's ids (str.replace: GraphQL has braces of its own)."""
    if isinstance(template, dict):
        return {key: filled(value, things) for key, value in template.items()}
    if isinstance(template, list):
        return [filled(value, things) for value in template]
    if not isinstance(template, str):
        return template
    for name, value in (("{E}", things.E), ("{R}", things.R), ("{model}", things.model),
                        ("{secret}", things.secret), ("{member}", things.member_name), ("{tag}", things.tag)):
        template = template.replace(name, value)
    return template


@pytest.mark.parametrize("route_class, method, path, body, members_answer", ROUTES,
                         ids=[f"{route[0]}-{route[1]}-{route[2].split('?')[0]}-{n}" for n, route in enumerate(ROUTES)])
def test_every_route_class_refuses_the_anonymous_and_the_member_without_permission(
        shared_stack, admins_things, route_class, method, path, body, members_answer):
    path, body = filled(path, admins_things), filled(body, admins_things)
    content_type = "application/octet-stream" if isinstance(body, bytes) else "application/json"
    status, headers, _ = request(shared_stack, path, None, method, body, content_type=content_type)
    assert status == 401 and headers["WWW-Authenticate"] == 'Basic realm="mlflow"'
    status, _, answer = request(shared_stack, path, admins_things.member, method, body, content_type=content_type)
    if members_answer == 403:
        assert status == 403, answer
    elif members_answer == GRAPHQL_DENIED:
        assert status == 200 and all(value is None for value in json.loads(answer)["data"].values()), answer
    else:
        assert status == 200, answer
        listed = set(values_in(json.loads(answer)))  # whole values: an id "5" is not in "1796...5"
        for theirs in (admins_things.E, admins_things.R, admins_things.model, admins_things.secret):
            assert theirs not in listed, (theirs, answer)
    admins_things.assert_intact(shared_stack)


def test_a_member_cannot_reach_the_admins_artifacts_through_a_model_version_of_their_own(shared_stack, admins_things):
    """The registry's door to artifacts: a version of the member's own model whose source is
    the admin's run or model."""
    member = admins_things.member
    mine = f"members-model-{admins_things.tag}"
    ok(request(shared_stack, "/api/2.0/mlflow/registered-models/create", member, "POST", {"name": mine}))
    for source, run_id, refused in [
            (f"mlflow-artifacts:/{admins_things.E}/{admins_things.R}/artifacts", None, 400),
            (f"mlflow-artifacts:/{admins_things.E}/{admins_things.R}/artifacts", admins_things.R, 403),
            (f"models:/{admins_things.model}/1", None, 403)]:
        body = {"name": mine, "source": source, **({"run_id": run_id} if run_id else {})}
        status, _, answer = request(shared_stack, "/api/2.0/mlflow/model-versions/create", member, "POST", body)
        assert status == refused, (source, answer)
    status, _, _ = request(shared_stack, f"/model-versions/get-artifact?path=x.txt&name={mine}&version=1", member)
    assert status == 404  # the member's model has no version at all
    admins_things.assert_intact(shared_stack)


def members_own_run(stack, member) -> tuple[str, str]:
    experiment_id = ok(request(stack, "/api/2.0/mlflow/experiments/create", member, "POST",
                               {"name": f"members-{uuid.uuid4().hex[:8]}"}))["experiment_id"]
    run_id = ok(request(stack, "/api/2.0/mlflow/runs/create", member, "POST",
                        {"experiment_id": experiment_id}))["run"]["info"]["run_id"]
    return experiment_id, run_id


# From the member's own run's artifact folder to the admin's: plain, percent-encoded, mixed.
TRAVERSALS = ["../../../{E}/{R}/artifacts/x.txt", "..%2F..%2F..%2F{E}%2F{R}%2Fartifacts%2Fx.txt",
              "%2e%2e/%2e%2e/%2e%2e/{E}/{R}/artifacts/x.txt", "..\\..\\..\\{E}\\{R}\\artifacts\\x.txt"]


@pytest.mark.parametrize("traversal", TRAVERSALS)
def test_artifact_paths_cannot_climb_out_of_the_members_own_run(shared_stack, admins_things, traversal):
    """Reads and writes through every artifact route of the member's own run, with a path
    that climbs into the admin's run: never the admin's bytes or file list, nothing written
    there (a path that does not climb, with backslashes, is just a name in the member's run)."""
    member = admins_things.member
    own_experiment, own_run = members_own_run(shared_stack, member)
    climb = filled(traversal, admins_things)
    written = climb.replace("x.txt", "evil.txt")
    for path in (f"/get-artifact?path={climb}&run_uuid={own_run}",
                 f"/api/2.0/mlflow-artifacts/artifacts/{own_experiment}/{own_run}/artifacts/{climb}"):
        status, _, answer = request(shared_stack, path, member)
        assert status in (400, 403, 404) and b"the admin's" not in answer, (path, status, answer)
    status, _, answer = request(shared_stack, f"/api/2.0/mlflow/artifacts/list?run_id={own_run}&path="
                                              f"{climb.rsplit('x.txt', 1)[0]}", member)
    assert status != 200 or "files" not in json.loads(answer), answer
    for method, path in (("POST", f"/ajax-api/2.0/mlflow/upload-artifact?run_uuid={own_run}&path={written}"),
                         ("PUT", f"/api/2.0/mlflow-artifacts/artifacts/{own_experiment}/{own_run}/artifacts/{written}")):
        request(shared_stack, path, member, method, b"evil", content_type="application/octet-stream")
        admins_things.assert_intact(shared_stack)  # evil.txt is not in the admin's run
    # The positive control: the same routes take the member's own file.
    status, _, _ = request(shared_stack, f"/ajax-api/2.0/mlflow/upload-artifact?run_uuid={own_run}&path=mine.txt",
                           member, "POST", b"mine", content_type="application/octet-stream")
    assert status == 200
    assert request(shared_stack, f"/get-artifact?path=mine.txt&run_uuid={own_run}", member)[2] == b"mine"
    admins_things.assert_intact(shared_stack)


INJECTIONS = ["params.p = 'x' OR 1=1", "params.p = 'x' or '1'='1'", "attributes.run_name = '' UNION SELECT run_uuid FROM runs",
              "tags.`a' OR '1'='1` = 'x'", "params.p = 'x'; DROP TABLE runs", "metrics.m > 0 -- ",
              "attributes.run_id IN ('{R}')"]


@pytest.mark.parametrize("injection", INJECTIONS)
def test_a_search_filter_cannot_reach_beyond_the_members_experiments(shared_stack, admins_things, injection):
    """SQL in a search filter: MLflow's parser refuses it (400) or it is a plain comparison;
    either way the member's search, REST or GraphQL, never returns the admin's run."""
    member = admins_things.member
    own_experiment, own_run = members_own_run(shared_stack, member)
    search = filled(injection, admins_things)
    for experiment_ids in ([own_experiment], [own_experiment, admins_things.E]):
        status, _, answer = request(shared_stack, "/api/2.0/mlflow/runs/search", member, "POST",
                                    {"experiment_ids": experiment_ids, "filter": search})
        assert status in (200, 400, 403), answer
        assert admins_things.R.encode() not in answer
        query = "query q($f: String, $e: [String]) { %s }" % SEARCH_RUNS_GRAPHQL % "{experimentIds: $e, filter: $f}"
        status, _, answer = request(shared_stack, "/graphql", member, "POST",
                                    {"query": query, "variables": {"f": search, "e": experiment_ids}})
        assert status in (200, 400), answer
        assert admins_things.R.encode() not in answer
    # The positive control: the member's own run is found by a plain filter.
    status, _, answer = request(shared_stack, "/api/2.0/mlflow/runs/search", member, "POST",
                                {"experiment_ids": [own_experiment], "filter": f"attributes.run_id = '{own_run}'"})
    assert status == 200 and own_run.encode() in answer
    admins_things.assert_intact(shared_stack)


# -- less to learn from answers -----------------------------------------------------------
def test_only_admins_list_the_users(shared_stack):
    status, _, body = request(shared_stack, "/api/2.0/mlflow/users/list", new_user(shared_stack))
    assert status == 403 and message(body) == "Only admins may list the users"
    status, _, body = request(shared_stack, "/api/2.0/mlflow/users/list", shared_stack.admin_credentials)
    assert status == 200 and "admin" in {user["username"] for user in json.loads(body)["users"]}


@pytest.mark.parametrize("written_as", ["rest", "graphql", "graphql-filter-variable", "graphql-input-variable"])
def test_a_filter_the_database_cannot_join_is_refused_with_400_not_retried(each_stack, written_as):
    clauses = " and ".join(f"params.p{n} = 'x'" for n in range(61))
    path, body = "/graphql", None
    if written_as == "rest":
        path, body = "/api/2.0/mlflow/runs/search", {"experiment_ids": ["0"], "filter": clauses}
    elif written_as == "graphql":
        body = {"query": "query { %s }" % SEARCH_RUNS_GRAPHQL % f'{{experimentIds: ["0"], filter: "{clauses}"}}'}
    elif written_as == "graphql-filter-variable":
        body = {"query": "query q($f: String) { %s }" % SEARCH_RUNS_GRAPHQL % '{experimentIds: ["0"], filter: $f}',
                "variables": {"f": clauses}}
    else:
        body = {"query": "query q($i: MlflowSearchRunsInput) { %s }" % SEARCH_RUNS_GRAPHQL % "$i",
                "variables": {"i": {"experimentIds": ["0"], "filter": clauses}}}
    status, _, answer = request(each_stack, path, None, "POST", body)
    assert status == 400, answer
    assert message(answer) == ("filter refused: it compares 61 metrics, params and tags; at most 50 "
                               "(the database joins a table for each)")


def test_a_small_graphql_search_still_answers(each_stack):
    """The positive control of the GraphQL refusals: the UI's own kind of query passes the check."""
    query = "query { %s }" % SEARCH_RUNS_GRAPHQL % """{experimentIds: ["0"], filter: "params.p0 = 'x'"}"""
    status, _, answer = request(each_stack, "/graphql", None, "POST", {"query": query})
    assert status == 200 and json.loads(answer) == {"data": {"mlflowSearchRuns": {"runs": []}}, "errors": None}


def test_a_server_error_answers_one_generic_line_and_logs_the_details(twin_stack):
    """The database away: MLflow's answer names the driver, the host and the SQL; the client
    gets one line with a reference, the server's log the rest."""
    twin_stack.take_down("database")
    try:
        status, _, body = request(twin_stack, "/api/2.0/mlflow/runs/search", None, "POST",
                                  {"experiment_ids": ["0"], "filter": "params.p = 'x'"})
    finally:
        twin_stack.bring_back("database")
    assert status in (500, 503), body
    answer = json.loads(body)
    assert set(answer) == {"error_code", "message"}
    for leak in ("SELECT", "pymysql", "MySQL", "127.0.0.1", "Traceback"):
        assert leak not in body.decode()
    assert_logged(twin_stack, answer["message"])


def test_a_database_error_in_a_graphql_answer_is_one_generic_line(twin_stack):
    """GraphQL answers a resolver's failure with 200 and the error's text: with the database
    away, MLflow's names the driver and the host. The text is replaced, the answer's shape kept."""
    query = 'query { mlflowGetRun(input: {runId: "%s"}) { run { info { runId } } } }' % uuid.uuid4().hex
    status, _, body = request(twin_stack, "/graphql", None, "POST", {"query": query})
    assert status == 200 and json.loads(body)["errors"][0].startswith("Run with id=")  # a user's error: kept
    twin_stack.take_down("database")
    try:
        status, _, body = request(twin_stack, "/graphql", None, "POST", {"query": query})
    finally:
        twin_stack.bring_back("database")
    assert status == 200, body
    answer = json.loads(body)
    assert answer["data"] == {"mlflowGetRun": None} and len(answer["errors"]) == 1
    for leak in ("pymysql", "MySQL", "127.0.0.1", "sqlalche.me"):
        assert leak not in body.decode()
    assert_logged(twin_stack, answer["errors"][0])


def assert_logged(stack, generic: str) -> None:
    assert generic.startswith("The tracking server could not answer this request (reference ")
    reference = generic.split("reference ", 1)[1].split(";", 1)[0]
    log = Path(stack.services["mlflow"].log_path).read_text(errors="replace")
    assert f"(reference {reference})" in log


# -- transport and housekeeping -----------------------------------------------------------
def tls12_with(stack, ciphers: str) -> bool:
    context = ssl.create_default_context(cafile=str(stack.ca_file))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(ciphers + ":@SECLEVEL=0")  # this client offers even what its OpenSSL would not
    port = int(stack.tracking_uri.rsplit(":", 1)[1])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1"):
                return True
    except ssl.SSLError:
        return False


def test_tls12_offers_only_forward_secret_aead_suites(shared_stack):
    """Suites the probe found accepted (the stack's generated certificate is ECDSA; an RSA
    one would meet the same list): CBC with SHA-1 or SHA-2, CCM8, Camellia, ARIA."""
    assert tls12_with(shared_stack, "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256")
    for weak in ("ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384", "ECDHE-ECDSA-AES128-CCM8",
                 "ECDHE-ECDSA-CAMELLIA128-SHA256", "ECDHE-ECDSA-ARIA128-GCM-SHA256", "ECDHE-RSA-AES128-SHA"):
        assert not tls12_with(shared_stack, weak), weak


def test_nginxs_own_answers_carry_nosniff_and_no_framing(shared_stack):
    # A request line nginx refuses itself (400), and the plain-HTTP redirect.
    status, headers, _ = request(shared_stack, "/%zz")
    assert status == 400 and "mlflow" not in headers.get("Server", "").lower()
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["X-Frame-Options"] == "DENY"
    connection = http.client.HTTPConnection("127.0.0.1", shared_stack.nginx_port, timeout=10)
    connection.request("GET", "/")
    redirect = connection.getresponse()
    assert redirect.status == 308
    assert redirect.getheader("X-Content-Type-Options") == "nosniff" and redirect.getheader("X-Frame-Options") == "DENY"
    # MLflow's own answers keep its headers, each sent once.
    status, headers, _ = request(shared_stack, SEARCH, shared_stack.admin_credentials)
    assert status == 200 and headers.get_all("X-Content-Type-Options") == ["nosniff"]


def policies_of(stack, credentials=None) -> dict[str, list[str]]:
    paths = ["/", "/static-files/favicon.ico", SEARCH, "/api/2.0/mlflow/runs/get?run_id=x",
             "/static-files/lib/notebook-trace-renderer/index.html"]
    return {path: request(stack, path, credentials)[1].get_all("Content-Security-Policy") for path in paths}


def expected_policies() -> dict[str, list[str]]:
    """The UI's page, its files, API answers and errors; the notebook trace renderer, which
    Jupyter frames from its own origin, without frame-ancestors (MLflow leaves it without
    X-Frame-Options too). tests/test_browser.py checks that the UI works under the policy."""
    from mlflow_stack_server.content_policy import CONTENT_SECURITY_POLICY

    assert "script-src 'self';" in CONTENT_SECURITY_POLICY and "unsafe-eval" not in CONTENT_SECURITY_POLICY
    framed_here = [f"{CONTENT_SECURITY_POLICY}; frame-ancestors 'self'"]
    return {"/": framed_here, "/static-files/favicon.ico": framed_here, SEARCH: framed_here,
            "/api/2.0/mlflow/runs/get?run_id=x": framed_here,
            "/static-files/lib/notebook-trace-renderer/index.html": [CONTENT_SECURITY_POLICY]}


def test_every_answer_carries_the_content_security_policy(each_stack):
    assert policies_of(each_stack) == expected_policies()


def test_every_answer_carries_the_content_security_policy_when_shared(shared_stack):
    assert policies_of(shared_stack, shared_stack.admin_credentials) == expected_policies()


def everything_logged(stack) -> str:
    """Every log the stack wrote: the twin's files (nginx's access log among them), every
    container's output on compose (start_mlflow.sh shows a new admin password once on the
    terminal, by design: not a log)."""
    if isinstance(stack, LocalStack):
        return "\n".join(path.read_text(errors="replace") for path in stack.workdir.rglob("*.log"))
    return stack.container_logs(lines=None)


def test_no_password_reaches_a_log(shared_stack):
    """Sign-ins, a wrong guess and a password change, then every log: the stack's secrets and
    the passwords (plain or as the Basic header) are nowhere; the requests themselves are."""
    user, password = new_user(shared_stack)
    guess, changed = f"guess-{uuid.uuid4().hex}", uuid.uuid4().hex
    assert request(shared_stack, SEARCH, (user, password))[0] == 200
    assert request(shared_stack, SEARCH, (user, guess))[0] == 401
    assert request(shared_stack, "/api/2.0/mlflow/users/update-password", shared_stack.admin_credentials, "PATCH",
                   {"username": user, "password": changed})[0] == 200
    assert request(shared_stack, SEARCH, (user, changed))[0] == 200
    logged = everything_logged(shared_stack)
    assert "/api/2.0/mlflow/users/update-password" in logged  # the right logs, and they do log requests
    secrets = {name: shared_stack.config[name] for name in SECRET_NAMES}
    for name, secret in {**secrets, "password": password, "guess": guess, "changed": changed}.items():
        assert secret not in logged, name
        if name in ("password", "guess", "changed"):
            assert base64.b64encode(f"{user}:{secret}".encode()).decode() not in logged, name


def test_the_auth_config_lives_only_while_the_server_runs_and_no_password_shows_in_ps(tmp_path):
    twin = LocalStack(tmp_path / "work", share=True, secrets_dir=tmp_path / "secrets")
    with twin.start():
        configs = [path for path in twin.runtime_dir.iterdir() if path.name.startswith("basic_auth.")]
        assert len(configs) == 1 and stat.S_IMODE(configs[0].stat().st_mode) == 0o600
        assert stat.S_IMODE(twin.runtime_dir.stat().st_mode) == 0o700
        processes = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
        for secret in ("MYSQL_PASSWORD", "MYSQL_ROOT_PASSWORD", "MLFLOW_ADMIN_PASSWORD", "MINIO_ROOT_PASSWORD"):
            assert twin.config[secret] not in processes, secret
        # The twin's database root has the generated password, not none.
        import pymysql

        with pytest.raises(pymysql.err.OperationalError, match="Access denied"):
            pymysql.connect(host="127.0.0.1", port=twin.mysql_port, user="root", password="").close()
        twin.root_connection().close()
    assert not twin.runtime_dir.exists()


@pytest.mark.docker
def test_the_compose_servers_auth_config_is_on_a_tmpfs(shared_docker):
    container = shared_docker.container("mlflow")
    mounts = subprocess.run(["docker", "exec", container, "cat", "/proc/mounts"], capture_output=True,
                            text=True, check=True).stdout
    assert any(line.split()[1:3] == ["/run/mlflow", "tmpfs"] for line in mounts.splitlines()), mounts
    def listed(folder: str) -> list[str]:
        return subprocess.run(["docker", "exec", container, "ls", folder], capture_output=True, text=True,
                              check=True).stdout.split()

    # serve.sh's sign-in config, and its metrics' counters (MLFLOW_METRICS, on by default).
    assert sorted(name.split(".")[0] for name in listed("/run/mlflow")) == ["basic_auth", "metrics"]
    # /tmp may hold MLflow's own lock files (db_init_lock-<hash of the URI, password masked>).
    assert not [name for name in listed("/tmp") if name.startswith("basic_auth")]


def test_the_mlflow_internals_the_brake_relies_on_are_still_there():
    """signin.py reads MLflow's sign-in cache and app.py opens its stores through private names
    (mlflow.server.auth and handlers, 3.17.2): an upgrade that renames or drops one fails
    here, by name, before any server does."""
    from mlflow.server import auth

    for name in ("_authenticate_cached", "_USER_AUTH_CACHE", "_USER_AUTH_CACHE_LOCK", "_auth_cache_key",
                 "make_basic_auth_response", "sender_is_admin", "store", "auth_config"):
        assert hasattr(auth, name), f"mlflow.server.auth.{name} is gone: update mlflow_stack_server/signin.py"
    assert auth._auth_cache_key("u", "p") == auth._auth_cache_key("u", "p")
    # app.py opens each worker's stores at start through these.
    from mlflow.server import handlers

    for name in ("_get_tracking_store", "_get_model_registry_store"):
        assert callable(getattr(handlers, name, None)), f"mlflow.server.handlers.{name} is gone: update mlflow_stack_server/app.py"
