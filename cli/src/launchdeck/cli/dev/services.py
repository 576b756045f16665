"""What the dev supervisor runs: each service's command line and environment.

Kept apart from starting anything so the wiring can be read (and tested) on its own: which
service gets which port, that the platform credentials reach the control-api alone, that each
service gets its own NATS login and nobody else's, and that the services log for people when
`launchdeck dev` runs on a terminal.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from launchdeck.cli.dev.credentials import NatsLogin
from launchdeck.cli.supervisor import ChildSpec
from launchdeck.libs.settings import NATS_CREDENTIAL_VARIABLES, REPLICAS_VARIABLE

SERVICES = ("control-api", "build-worker", "deploy-engine", "generator")
# Platform credentials only the control-api may see (never a worker, so never a build).
PRIVATE_VARIABLES = ("DATABASE_URL", "LAUNCHDECK_SECRET_KEY", "LAUNCHDECK_SECRET_KEY_PREVIOUS")


@dataclass(frozen=True)
class DevPorts:
    api: int
    edge: int
    deploy_engine: int
    nats: int | None = None

    def as_dict(self) -> dict[str, int]:
        ports = {"api": self.api, "edge": self.edge, "deploy_engine": self.deploy_engine}
        if self.nats is not None:
            ports["nats"] = self.nats
        return ports


def log_format(base_env: Mapping[str, str], console: bool) -> str:
    """The services' `LAUNCHDECK_LOG_FORMAT`: what the caller set, else — as their output is a
    pipe to the supervisor, where `auto` would always mean JSON — `console` when the supervisor
    itself writes to a terminal (`make dev` in a shell) and `json` when it does not (a file, CI)."""
    chosen = base_env.get("LAUNCHDECK_LOG_FORMAT", "").strip().lower()
    if chosen and chosen != "auto":
        return chosen
    return "console" if console else "json"


def service_specs(
    *,
    base_env: Mapping[str, str],
    state: Path,
    database_url: str,
    nats_url: str,
    secret_key: str,
    ports: DevPorts,
    secret_key_previous: str | None = None,
    nats_replicas: int | None = None,
    nats_logins: Mapping[str, NatsLogin] | None = None,
    python: str = sys.executable,
    console: bool | None = None,
) -> list[ChildSpec]:
    """The command line and environment of each service (`python -m launchdeck.<svc>`).
    `nats_replicas`: the services' `LAUNCHDECK_NATS_REPLICAS` (an embedded cluster's), unless
    the caller set it; `nats_logins`: each service's own NATS login, by service (the embedded
    NATS's; None: an external NATS_URL, whose credentials — in it or in `NATS_USER`… — every
    service gets as the caller gave them); `console`: whether our output goes to a terminal
    (default: is stdout a TTY); `secret_key_previous`: the key env var values may still be
    sealed under, during a rotation (`<state>/secret.key.previous`)."""
    hidden = PRIVATE_VARIABLES + (NATS_CREDENTIAL_VARIABLES if nats_logins is not None else ())
    common = {k: v for k, v in base_env.items() if k not in hidden}
    on_terminal = sys.stdout.isatty() if console is None else console
    common.update(
        LAUNCHDECK_STATE_DIR=str(state),
        NATS_URL=nats_url,
        PYTHONUNBUFFERED="1",
        LAUNCHDECK_LOG_FORMAT=log_format(base_env, on_terminal),
    )
    if nats_replicas is not None:
        common.setdefault(REPLICAS_VARIABLE, str(nats_replicas))
    if on_terminal and "NO_COLOR" not in base_env:
        # Their output is a pipe to us, but it ends on this terminal: colours are wanted.
        common.setdefault("FORCE_COLOR", "1")
    own: dict[str, dict[str, str]] = {
        "control-api": {
            "DATABASE_URL": database_url,
            "LAUNCHDECK_SECRET_KEY": secret_key,
            "LAUNCHDECK_API_HOST": "127.0.0.1",
            "LAUNCHDECK_API_PORT": str(ports.api),
            "LAUNCHDECK_BASE_DOMAIN": "localhost",  # the edge's: domains under it are refused
            # Where scheduled HTTP actions reach the live apps (the deploy-engine's Caddy).
            "LAUNCHDECK_EDGE_URL": f"http://127.0.0.1:{ports.edge}",
        },
        "build-worker": {
            "LAUNCHDECK_BUILD_DIR": str(state / "builds"),
            "LAUNCHDECK_ALLOW_LOCAL_REPOS": "true",
        },
        "deploy-engine": {
            "LAUNCHDECK_RELEASES_DIR": str(state / "releases"),
            "LAUNCHDECK_BASE_DOMAIN": "localhost",
            "LAUNCHDECK_EDGE_HTTP_PORT": str(ports.edge),
            "LAUNCHDECK_DEPLOY_ENGINE_PORT": str(ports.deploy_engine),
        },
        "generator": {},
    }
    if secret_key_previous:
        own["control-api"]["LAUNCHDECK_SECRET_KEY_PREVIOUS"] = secret_key_previous
    if nats_logins is not None:
        for name in SERVICES:
            own[name].update(nats_logins[name].env())
    return [
        ChildSpec(
            name=name,
            argv=(python, "-m", "launchdeck." + name.replace("-", "_")),
            env={**common, **own[name]},
        )
        for name in SERVICES
    ]
