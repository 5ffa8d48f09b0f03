"""Which passwords a shared stack accepts for its users: long, and not one anyone tries first.

Guessing is also braked (signin.py), but a password from the top of a leaked-password list
falls to the first few guesses of any attacker. The stack's own generated passwords
(``mlflow-users create``) are 24 random characters; a person choosing one must give at
least MIN_PASSWORD_LENGTH characters and nothing from well-known-passwords.txt.
"""

from __future__ import annotations

import functools
import re
from importlib.resources import files

MIN_PASSWORD_LENGTH = 16


@functools.cache
def well_known_passwords() -> frozenset[str]:
    text = files(__package__).joinpath("well-known-passwords.txt").read_text()
    return frozenset(line.strip().lower() for line in text.splitlines()
                     if line.strip() and not line.startswith("#"))


def is_well_known(password: str) -> bool:
    """In the list, ignoring case and digits or symbols added at the end."""
    lowered = password.lower()
    return lowered in well_known_passwords() or re.sub(r"[\W\d_]+$", "", lowered) in well_known_passwords()


def password_refusal(password: str) -> str | None:
    """Why a user may not have ``password``, or None."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return (f"password refused: it has {len(password)} characters, at least {MIN_PASSWORD_LENGTH} "
                "are needed (`mlflow-users set-password NAME` generates one)")
    if is_well_known(password):
        return "password refused: it is on the list of well-known passwords anyone tries first"
    return None
