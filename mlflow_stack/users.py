"""``mlflow-users``: users and permissions of a shared stack, without hand-written REST calls.

A thin command over MLflow's basic-auth client (``mlflow.server.get_app_client``). It
signs in as whoever MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD name (an admin,
for everything but changing one's own password), from the environment or ``.env``.

    mlflow-users create alice                  # prints a generated password, once
    mlflow-users grant alice --experiment dl_model_chapter03 --permission EDIT
    mlflow-users grant alice --model nlp_dl_model --permission READ
    mlflow-users set-password alice            # a new generated password
    mlflow-users admin alice [--revoke]  # make (or unmake) an admin
    mlflow-users delete alice
    mlflow-users unlock alice            # lift a lock after failed sign-ins (--address IP for an address)
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import warnings

from .connection import TrackingServerUnavailable, check_server
from .settings import SettingsFileError, load_settings

PERMISSIONS = ("READ", "EDIT", "MANAGE", "NO_PERMISSIONS")


def auth_client(tracking_uri: str):
    from mlflow.server import get_app_client

    with warnings.catch_warnings():  # loading it warns about its web framework: not the user's concern
        warnings.simplefilter("ignore")
        return get_app_client("basic-auth", tracking_uri=tracking_uri)


def resource(tracking_uri: str, experiment: str | None, model: str | None) -> tuple[str, str]:
    """(resource type, resource id) as the auth API names them: experiments by id."""
    if model:
        return "registered_model", model
    from mlflow import MlflowClient

    found = MlflowClient(tracking_uri).get_experiment_by_name(experiment)
    if found is None:
        raise LookupError(f"no experiment named {experiment!r} (it must exist before it can be shared)")
    return "experiment", found.experiment_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlflow-users", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracking-uri", help="the shared stack (default: MLFLOW_TRACKING_URI)")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create a user with a generated password")
    create.add_argument("username")
    password = commands.add_parser("set-password", help="give a user a new generated password")
    password.add_argument("username")
    for name, help_text in (("grant", "grant a permission on an experiment or a registered model"),
                            ("revoke", "take a user's permission on an experiment or model away")):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("username")
        target = command.add_mutually_exclusive_group(required=True)
        target.add_argument("--experiment", help="experiment name")
        target.add_argument("--model", help="registered model name")
        if name == "grant":
            command.add_argument("--permission", required=True, choices=PERMISSIONS, type=str.upper)
    admin = commands.add_parser("admin", help="make a user an admin (or, with --revoke, not)")
    admin.add_argument("username")
    admin.add_argument("--revoke", action="store_true")
    delete = commands.add_parser("delete", help="delete a user")
    delete.add_argument("username")
    unlock = commands.add_parser("unlock", help="lift the lock that failed sign-ins put on a user (or an address)")
    unlock.add_argument("username", nargs="?")
    unlock.add_argument("--address", help="a client address, as the server's log shows it")
    args = parser.parse_args(argv)

    from mlflow.exceptions import MlflowException

    try:
        tracking_uri = args.tracking_uri or load_settings().tracking_uri
        check_server(tracking_uri)
        client = auth_client(tracking_uri)
        if args.command in ("create", "set-password"):
            new_password = secrets.token_urlsafe(18)
            if args.command == "create":
                client.create_user(args.username, new_password)
            else:
                client.update_user_password(args.username, new_password)
            print(f"user {args.username}, password {new_password}  (shown once: pass it on privately)")
        elif args.command == "grant":
            kind, key = resource(tracking_uri, args.experiment, args.model)
            client.grant_user_permission(args.username, kind, key, args.permission)
            print(f"{args.username} has {args.permission} on {kind.replace('_', ' ')} {args.experiment or args.model}")
        elif args.command == "revoke":
            kind, key = resource(tracking_uri, args.experiment, args.model)
            client.revoke_user_permission(args.username, kind, key)
            print(f"{args.username} no longer has a permission of their own on {args.experiment or args.model}")
        elif args.command == "admin":
            client.update_user_admin(args.username, not args.revoke)
            print(f"{args.username} is {'no longer ' if args.revoke else ''}an admin")
        elif args.command == "delete":
            client.delete_user(args.username)
            print(f"deleted user {args.username}")
        elif args.command == "unlock":
            if not (args.username or args.address):
                raise LookupError("name a user or an --address to unlock")
            unlocked = unlock_signins(tracking_uri, args.username, args.address)
            who = " and ".join(filter(None, [args.username, args.address]))
            print(f"{who}: {'unlocked' if unlocked else 'was not locked'}")
    except (TrackingServerUnavailable, SettingsFileError, LookupError) as error:
        print(f"mlflow-users: {error}", file=sys.stderr)
        return 2
    except MlflowException as error:
        print(f"mlflow-users: {error.message.splitlines()[0]}", file=sys.stderr)
        return 2
    return 0


def unlock_signins(tracking_uri: str, username: str | None, address: str | None) -> bool:
    """Ask the server to lift a sign-in lock; whether there was one."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.rest_utils import MlflowHostCreds, http_request
    from mlflow_stack_server.app import UNLOCK_ROUTE  # the server plugin's route: MLflow's client has no call for it

    creds = MlflowHostCreds(tracking_uri, username=os.environ.get("MLFLOW_TRACKING_USERNAME"),
                            password=os.environ.get("MLFLOW_TRACKING_PASSWORD"),
                            server_cert_path=os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH"))
    response = http_request(creds, UNLOCK_ROUTE, "POST", json={"username": username, "address": address},
                            max_retries=0)
    if response.status_code != 200:
        try:
            message = response.json()["message"]
        except (ValueError, KeyError):
            message = response.text.strip()
        raise MlflowException(f"{response.status_code}: {message}")
    return response.json()["unlocked"]


if __name__ == "__main__":
    sys.exit(main())
