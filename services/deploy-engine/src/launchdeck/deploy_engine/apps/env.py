"""The environment an app's process starts with, built from nothing (never the engine's own,
which holds the platform's credentials).

From lowest to highest precedence:

1. the machine's basics: `PATH` (the engine's, so the machine's toolchains are found), `HOME` (the
   instance's own, empty at its first start), `LANG=C.UTF-8`, `TMPDIR`; and
   `NPM_CONFIG_UPDATE_NOTIFIER=false`: `npm start` in a fresh HOME otherwise asks the registry
   whether a newer npm exists before it runs anything (~0.3 s of every activation, and a start
   that depends on the network);
2. the release manifest's defaults (`env`, e.g. `NODE_ENV=production`) and search paths
   (`paths`, e.g. `node_modules/.bin` in front of `PATH`): `libs.launcher.release.process_env`;
3. the project's env vars for the deployment's target (`production` or `preview`), fetched from
   the control-api per deployment (`libs.env_client`, over `ld.rpc.env`: never stored in a
   stream, kept in the engine's memory only);
4. the platform's: `PORT` (web processes), `LAUNCHDECK_PROJECT`, `LAUNCHDECK_PROJECT_ID`,
   `LAUNCHDECK_DEPLOYMENT_ID`, `LAUNCHDECK_BUILD_ID`, `LAUNCHDECK_COMMIT_SHA` (when the deploy
   command says it), `LAUNCHDECK_ENVIRONMENT`, `LAUNCHDECK_PROCESS` — a project's variable of the
   same name does not override them.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from nats.aio.client import Client

from launchdeck.contracts.messages import EnvRequest, ReleaseManifest
from launchdeck.contracts.statuses import Environment
from launchdeck.deploy_engine.apps.records import InstanceRecord
from launchdeck.libs.env_client import fetch_env
from launchdeck.libs.launcher.release import DEFAULT_PATH, process_env

# (project id, deployment id, environment) → the project's env vars for it.
EnvSource = Callable[[str, str, Environment], Awaitable[dict[str, str]]]


def nats_env_source(nc: Client, *, wait_s: float) -> EnvSource:
    """Env vars asked of the control-api (`libs.env_client.fetch_env`): raises `EnvRefused`
    (the deployment is not the engine's to run any more) or `EnvUnavailable` (no answer within
    `wait_s`: to be retried)."""

    async def fetch(
        project_id: str, deployment_id: str, environment: Environment
    ) -> dict[str, str]:
        request = EnvRequest(project_id=project_id, target=environment, deployment_id=deployment_id)
        return await fetch_env(nc, request, wait_s=wait_s)

    return fetch


def platform_vars(record: InstanceRecord) -> dict[str, str]:
    """What the platform tells every process of a deployment about itself."""
    found = {
        "LAUNCHDECK_PROJECT": record.project,
        "LAUNCHDECK_PROJECT_ID": record.project_id,
        "LAUNCHDECK_DEPLOYMENT_ID": record.deployment_id,
        "LAUNCHDECK_BUILD_ID": record.build_id,
        "LAUNCHDECK_ENVIRONMENT": record.environment,
        "LAUNCHDECK_PROCESS": record.process,
    }
    if record.commit_sha:
        found["LAUNCHDECK_COMMIT_SHA"] = record.commit_sha
    if record.port is not None:
        found["PORT"] = str(record.port)
    return found


def app_environment(
    record: InstanceRecord,
    manifest: ReleaseManifest,
    project_vars: Mapping[str, str],
    *,
    instance_dir: Path,
    sandboxed: bool,
) -> dict[str, str]:
    """The whole environment of one of the release's processes (module docstring)."""
    base = {
        "PATH": os.environ.get("PATH") or DEFAULT_PATH,
        "HOME": str(instance_dir / "home"),
        "LANG": "C.UTF-8",
        # In the sandbox the instance's tmp/ is its /tmp.
        "TMPDIR": "/tmp" if sandboxed else str(instance_dir / "tmp"),
        "NPM_CONFIG_UPDATE_NOTIFIER": "false",
    }
    return process_env(
        manifest, Path(record.release), {**base, **project_vars, **platform_vars(record)}
    )
