"""The passwords of `launchdeck dev`: a NATS user per service and one for the operator, and the
embedded Postgres' — generated on the first run, kept in `<state>/credentials/` and reused after.

Each password is a file of its own (mode 0600, in a 0700 directory), so a service is handed the
path of its own (`NATS_PASSWORD_FILE`) and the secret never sits in any process's environment:
builds inherit nothing of the worker's, and the sandbox hides the state directory from them.
They are reused so the operator's login in dev.json stays the same from run to run, and because
the Postgres cluster keeps the password it was given.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from launchdeck.cli.devstate import load_or_create_secret, make_private_dir
from launchdeck.libs.nats_access import (
    OPERATOR_USER,
    USERS,
    authorization_config,
    literal_password,
    new_password,
)

CREDENTIALS_DIR = "credentials"


@dataclass(frozen=True)
class NatsLogin:
    """A NATS user, its password and the file holding it (what a service is given)."""

    user: str
    password_file: Path
    password: str = field(repr=False)

    def env(self) -> dict[str, str]:
        """The variables that log a service in as this user (`libs.settings.NatsOptions`)."""
        return {"NATS_USER": self.user, "NATS_PASSWORD_FILE": str(self.password_file)}


@dataclass(frozen=True)
class DevCredentials:
    nats: Mapping[str, NatsLogin]  # by user: each service's (`control-api`…) and the operator's
    postgres_password: str = field(repr=False)

    @property
    def operator(self) -> NatsLogin:
        return self.nats[OPERATOR_USER]

    def nats_config(self) -> str:
        """The embedded NATS's `authorization` block (`libs.nats_access`) with these passwords."""
        passwords = {user: login.password for user, login in self.nats.items()}
        return authorization_config(literal_password(passwords))


def load_or_create_credentials(state: Path) -> DevCredentials:
    """The credentials of state directory `state`, each created (0600) when missing."""
    directory = state / CREDENTIALS_DIR
    make_private_dir(directory)
    logins = {}
    for user in USERS:
        path = directory / f"nats-{user}.password"
        logins[user] = NatsLogin(user, path, load_or_create_secret(path, new_password))
    postgres = load_or_create_secret(directory / "postgres.password", new_password)
    return DevCredentials(nats=logins, postgres_password=postgres)
