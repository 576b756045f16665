"""The client commands. Thin: call the API through `LaunchdeckClient`, print through `Terminal`,
return the exit code. `deploy_and_follow` is shared with `launchdeck dev` (the example site).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from launchdeck.cli.client import LaunchdeckClient
from launchdeck.cli.output import Terminal, table
from launchdeck.contracts.api import (
    BuildOut,
    DeploymentOut,
    EnvVarSet,
    app_log_text,
)
from launchdeck.contracts.messages import EnvTarget
from launchdeck.contracts.statuses import BUILD_FINISHED, DEPLOYMENT_SETTLED
from launchdeck.contracts.ws import EndFrame

T = TypeVar("T")

POLL_INTERVAL_S = 0.5
DEFAULT_DEPLOY_TIMEOUT_S = 180.0
DEFAULT_CANCEL_TIMEOUT_S = 30.0
DEFAULT_APP_LOG_TAIL = 100


class DeadlineExceeded(Exception):
    """A wait for the API to reach a state ran out of time."""


@dataclass(frozen=True)
class DeployResult:
    ok: bool
    reason: str | None = None
    url: str | None = None
    build: BuildOut | None = None
    deployment: DeploymentOut | None = None


def _when(timestamp: datetime | None) -> str:
    """An API timestamp (UTC) as `2026-11-22 05:08:19`; `-` when there is none."""
    return timestamp.strftime("%Y-%m-%d %H:%M:%S") if timestamp else "-"


async def _print_history(
    term: Terminal,
    items: AsyncIterator[T],
    limit: int,
    *,
    header: tuple[str, ...],
    row: Callable[[T], tuple[str, ...]],
    none_yet: str,
) -> int:
    """The first `limit` of `items` (newest first) as a table, or `none_yet`."""
    rows: list[tuple[str, ...]] = [header]
    async for item in items:
        rows.append(row(item))
        if len(rows) > limit:
            break
    if len(rows) == 1:
        term.info(none_yet)
        return 0
    for line in table(rows):
        term.info(line.rstrip())
    return 0


async def builds_list(client: LaunchdeckClient, term: Terminal, *, project: str, limit: int) -> int:
    """The project's latest builds, newest first."""
    return await _print_history(
        term,
        client.builds(project, page_size=limit),
        limit,
        header=("#", "STATUS", "REF", "COMMIT", "CREATED", "ID", "ERROR"),
        row=lambda b: (
            str(b.number),
            b.status,
            b.ref,
            (b.commit_sha or "")[:7] or "-",
            _when(b.created_at),
            str(b.id),
            b.error or "",
        ),
        none_yet=f"No builds yet. Start one with: launchdeck deploy {project}",
    )


async def deployments_list(
    client: LaunchdeckClient, term: Terminal, *, project: str, limit: int
) -> int:
    """The project's latest deployments, newest first."""
    return await _print_history(
        term,
        client.deployments(project, page_size=limit),
        limit,
        header=("STATUS", "ENV", "BUILD", "CREATED", "ACTIVATED", "URL", "ERROR"),
        row=lambda d: (
            d.status,
            d.environment,
            str(d.build_id),
            _when(d.created_at),
            _when(d.activated_at),
            d.url or "-",
            d.error or "",
        ),
        none_yet=f"No deployments yet. Deploy with: launchdeck deploy {project}",
    )


# builds and logs ------------------------------------------------------------------


async def follow_log(client: LaunchdeckClient, term: Terminal, build_id: str) -> str:
    """Print the build's log live until it ends; return the final build status."""
    async for frame in client.follow_build_log(build_id):
        if isinstance(frame, EndFrame):
            return frame.status or "unknown"
        term.log_line(frame.stream, frame.line)
    raise RuntimeError("log stream ended without an end frame")  # pragma: no cover


class NoSuchBuild(Exception):
    """A `project#number` that names no build."""


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


async def resolve_build(client: LaunchdeckClient, ref: str) -> str:
    """The build id `ref` names: a build id, `<project>` (its latest build) or
    `<project>#<number>`."""
    if _is_uuid(ref):
        return ref
    project, _, number = ref.partition("#")
    if number and not number.isdigit():
        raise NoSuchBuild(f"{ref!r}: the part after # must be a build number")
    wanted = int(number) if number else None
    async for build in client.builds(project, page_size=1 if wanted is None else 100):
        if wanted is None or build.number == wanted:
            return str(build.id)
        if build.number < wanted:  # newest first: it is not there
            break
    raise NoSuchBuild(f"project {project!r} has no build" + (f" #{wanted}" if wanted else "s"))


async def logs(client: LaunchdeckClient, term: Terminal, *, build: str, follow: bool) -> int:
    try:
        build_id = await resolve_build(client, build)
    except NoSuchBuild as exc:
        term.error(str(exc))
        return 1
    if not follow:
        term.raw(await client.build_log_text(build_id))
        return 0
    await client.get_build(build_id)  # a clear 404 before opening the stream
    status = await follow_log(client, term, build_id)
    if status == "succeeded":
        return 0
    error = (await client.get_build(build_id)).error
    term.error(f"build {status}: {error or 'see the log above'}")
    return 1


async def app_logs(
    client: LaunchdeckClient, term: Terminal, *, project: str, follow: bool, tail: int
) -> int:
    """The running app's last `tail` lines; with `follow`, then its new ones until Ctrl-C."""
    if not follow:
        term.raw(await client.app_log_text(project, tail=tail))
        return 0
    await client.get_project(project)  # a clear 404 before opening the stream
    async for frame in client.follow_app_log(project, tail=tail):
        text = app_log_text(frame.ts, frame.process, frame.deployment_id, frame.line)
        term.log_line(frame.stream, text)
    return 0  # pragma: no cover (the server never ends it)


async def cancel(
    client: LaunchdeckClient, term: Terminal, *, build: str, wait: bool, timeout_s: float
) -> int:
    """Cancel a build; unless `wait` is False, wait until it has stopped. 0 when it ended
    cancelled, 1 when it finished otherwise first (or did not stop in time)."""
    try:
        build_id = await resolve_build(client, build)
    except NoSuchBuild as exc:
        term.error(str(exc))
        return 1
    out = await client.cancel_build(build_id)
    if out.status == "cancelled":
        term.success(f"Build #{out.number} {out.id} cancelled (it never ran)")
        return 0
    term.info(f"Cancelling build #{out.number} {out.id} ({out.status})…")
    if not wait:
        return 0
    deadline = time.monotonic() + timeout_s
    current = out
    while current.status not in BUILD_FINISHED:
        if time.monotonic() >= deadline:
            term.error(f"build #{out.number} is still {current.status} after {timeout_s:g}s")
            return 1
        await asyncio.sleep(POLL_INTERVAL_S)
        current = await client.get_build(build_id)
    if current.status == "cancelled":
        term.success(f"Build #{out.number} cancelled: its processes were stopped")
        return 0
    term.error(f"build #{out.number} finished {current.status} before it could be cancelled")
    return 1


# deployments ----------------------------------------------------------------------


async def wait_for_deployment_id(
    client: LaunchdeckClient, build_id: str, *, deadline: float
) -> str:
    """The deployment a succeeded build created (it appears once the API consumed the event)."""
    while True:
        build = await client.get_build(build_id)
        if build.deployment_id:
            return str(build.deployment_id)
        if time.monotonic() >= deadline:
            raise DeadlineExceeded(f"build {build_id} succeeded but no deployment was created")
        await asyncio.sleep(POLL_INTERVAL_S)


async def wait_for_deployment(
    client: LaunchdeckClient, term: Terminal, deployment_id: str, *, deadline: float
) -> DeploymentOut:
    """Poll until the deployment settles (active, failed, ...); print each status change."""
    last_status: str | None = None
    while True:
        deployment = await client.get_deployment(deployment_id)
        status = deployment.status
        if status != last_status:
            term.info(f"Deployment {deployment_id}: {status}")
            last_status = status
        if status in DEPLOYMENT_SETTLED:
            return deployment
        if time.monotonic() >= deadline:
            raise DeadlineExceeded(f"deployment {deployment_id} is still {status}")
        await asyncio.sleep(POLL_INTERVAL_S)


def _deployment_outcome(deployment: DeploymentOut, build: BuildOut | None = None) -> DeployResult:
    status = deployment.status
    if status == "active":
        return DeployResult(ok=True, url=deployment.url, build=build, deployment=deployment)
    reason = deployment.error or f"the deployment ended {status}"
    return DeployResult(
        ok=False, reason=f"deployment {status}: {reason}", build=build, deployment=deployment
    )


async def deploy_and_follow(
    client: LaunchdeckClient,
    term: Terminal,
    *,
    project: str,
    ref: str | None,
    timeout_s: float = DEFAULT_DEPLOY_TIMEOUT_S,
) -> DeployResult:
    """Trigger a build, print its log live, wait for its deployment to be active."""
    build = await client.trigger_build(project, ref=ref)
    build_id = str(build.id)
    term.info(f"Build #{build.number} {build_id} of {project} ({build.ref}) {build.status}")
    status = await follow_log(client, term, build_id)
    if status != "succeeded":
        build = await client.get_build(build_id)
        reason = build.error or "see the log above"
        return DeployResult(
            ok=False, reason=f"build #{build.number} {status}: {reason}", build=build
        )
    deadline = time.monotonic() + timeout_s
    try:
        deployment_id = await wait_for_deployment_id(client, build_id, deadline=deadline)
        deployment = await wait_for_deployment(client, term, deployment_id, deadline=deadline)
    except DeadlineExceeded as exc:
        return DeployResult(ok=False, reason=f"{exc} after {timeout_s:g}s", build=build)
    return _deployment_outcome(deployment, build)


def _report(term: Terminal, result: DeployResult) -> int:
    if not result.ok:
        term.error(result.reason or "deployment failed")
        return 1
    term.success(f"Live at {result.url}" if result.url else "Deployment active")
    return 0


async def deploy(
    client: LaunchdeckClient,
    term: Terminal,
    *,
    project: str,
    ref: str | None,
    wait: bool,
    timeout_s: float,
) -> int:
    if not wait:
        build = await client.trigger_build(project, ref=ref)
        term.info(f"Build #{build.number} {build.id} {build.status}")
        term.info(f"Follow it with: launchdeck logs {project}#{build.number} -f")
        return 0
    return _report(
        term, await deploy_and_follow(client, term, project=project, ref=ref, timeout_s=timeout_s)
    )


async def rollback(
    client: LaunchdeckClient, term: Terminal, *, project: str, timeout_s: float
) -> int:
    deployment = await client.rollback(project)
    term.info(f"Rolling back {project}: deployment {deployment.id} of build {deployment.build_id}")
    return await _follow_deployment(client, term, deployment, timeout_s)


async def redeploy(
    client: LaunchdeckClient, term: Terminal, *, project: str, timeout_s: float
) -> int:
    """The live build again (no rebuild), so its app starts with the current env vars."""
    deployment = await client.redeploy(project)
    term.info(f"Redeploying {project}: deployment {deployment.id} of build {deployment.build_id}")
    return await _follow_deployment(client, term, deployment, timeout_s)


async def _follow_deployment(
    client: LaunchdeckClient, term: Terminal, deployment: DeploymentOut, timeout_s: float
) -> int:
    """Wait until `deployment` settles, printing its statuses; the exit code of the outcome."""
    deadline = time.monotonic() + timeout_s
    try:
        settled = await wait_for_deployment(client, term, str(deployment.id), deadline=deadline)
    except DeadlineExceeded as exc:
        term.error(f"{exc} after {timeout_s:g}s")
        return 1
    return _report(term, _deployment_outcome(settled))


# env vars -------------------------------------------------------------------------


async def env_list(client: LaunchdeckClient, term: Terminal, *, project: str) -> int:
    """The project's env vars by name, with their targets (values are never shown)."""
    variables = await client.list_env(project)
    if not variables:
        term.info(f"No env vars yet. Set one with: launchdeck env set {project} KEY VALUE")
        return 0
    rows = [("KEY", "TARGETS", "UPDATED")] + [
        (v.key, ",".join(v.targets), _when(v.updated_at)) for v in variables
    ]
    for line in table(rows):
        term.info(line.rstrip())
    return 0


async def env_set(
    client: LaunchdeckClient,
    term: Terminal,
    *,
    project: str,
    key: str,
    value: str,
    targets: list[EnvTarget] | None,
) -> int:
    body = EnvVarSet(value=value, targets=targets) if targets else EnvVarSet(value=value)
    var = await client.set_env(project, key, body)
    term.success(f"Set {var.key} of {project} for {', '.join(var.targets)}")
    term.info(
        "Builds from now on get it; running apps keep their values until redeployed: "
        f"launchdeck redeploy {project}"
    )
    return 0


async def env_unset(client: LaunchdeckClient, term: Terminal, *, project: str, key: str) -> int:
    await client.unset_env(project, key)
    term.success(f"Removed {key} from {project}")
    return 0
