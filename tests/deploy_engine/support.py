"""deploy-engine test helpers: the edge (a real Caddy) and the engine wired to the test NATS."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from nats.js import JetStreamContext

from launchdeck.contracts import subjects as s
from launchdeck.contracts.codec import decode
from launchdeck.contracts.messages import (
    Artifact,
    DeploymentStatusChanged,
    DeployRequested,
    UndeployRequested,
)
from launchdeck.contracts.statuses import DEPLOYMENT_SETTLED, Environment
from launchdeck.deploy_engine.caddy import listen_address
from launchdeck.deploy_engine.caddy_admin import CaddyAdmin
from launchdeck.deploy_engine.handler import DeployHandler
from launchdeck.deploy_engine.releases import ReleaseStore
from launchdeck.deploy_engine.sites import Sites
from launchdeck.libs.jobs import Delivery, Outcome

from .archives import sha256, site


@dataclass
class Edge:
    state_dir: Path
    port: int
    admin: CaddyAdmin
    store: ReleaseStore
    sites: Sites

    @property
    def listen(self) -> str:
        return listen_address("127.0.0.1", self.port)

    async def get(self, host: str, path: str = "/") -> tuple[int, dict[str, str], str]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"http://127.0.0.1:{self.port}{path}",
                headers={"Host": host},
                allow_redirects=False,
            ) as resp,
        ):
            return resp.status, dict(resp.headers), await resp.text()


@dataclass
class Engine:
    handler: DeployHandler
    js: JetStreamContext
    edge: Edge
    project_id: str
    project: str

    async def put_artifact(self, build_id: str, data: bytes) -> Artifact:
        key = f"{build_id}.tar.gz"
        store = await self.js.object_store(s.OBJECT_STORE_ARTIFACTS)
        await store.put(key, data)
        return Artifact(key=key, sha256=sha256(data), size=len(data))

    async def deploy(
        self,
        build_id: str,
        files: Mapping[str, str | bytes] | None = None,
        *,
        environment: Environment = "production",
        artifact: Artifact | None = None,
        domains: list[str] | None = None,
    ) -> tuple[Outcome, list[DeploymentStatusChanged]]:
        """Run one DeployRequested through the handler; return its outcome and events."""
        if artifact is None:
            if files is not None:
                artifact = await self.put_artifact(build_id, site(files))
            else:  # a rollback: the release is on disk, the artifact reference is still sent
                artifact = Artifact(key=f"{build_id}.tar.gz", sha256="0" * 64, size=0)
        deployment_id = str(uuid.uuid4())
        cmd = DeployRequested(
            deployment_id=deployment_id,
            project_id=self.project_id,
            project_name=self.project,
            build_id=build_id,
            environment=environment,
            artifact=artifact,
            domains=domains or [],
        )
        delivery = Delivery(
            num_delivered=1, max_deliver=3, subject=s.SUBJECT_DEPLOY_JOBS, stream_seq=1
        )
        outcome = await self.handler.handle_deploy(cmd, delivery)
        return outcome, await self.events(deployment_id)

    async def undeploy(self, project_id: str | None = None) -> Outcome:
        """Run one UndeployRequested (the project was deleted) through the handler."""
        cmd = UndeployRequested(project_id=project_id or self.project_id, project_name=self.project)
        delivery = Delivery(
            num_delivered=1, max_deliver=3, subject=s.SUBJECT_UNDEPLOY_JOBS, stream_seq=1
        )
        return await self.handler.handle_undeploy(cmd, delivery)

    async def events(self, deployment_id: str) -> list[DeploymentStatusChanged]:
        """The deployment's events from the EVENTS stream, up to its terminal status."""
        sub = await self.js.subscribe(
            s.deployment_event_subject(self.project_id, deployment_id), ordered_consumer=True
        )
        found: list[DeploymentStatusChanged] = []
        try:
            while not found or found[-1].status not in DEPLOYMENT_SETTLED:
                msg = await sub.next_msg(timeout=5)
                found.append(decode(msg.data, DeploymentStatusChanged))
        finally:
            await sub.unsubscribe()
        return found

    async def get(self, path: str = "/") -> tuple[int, dict[str, str], str]:
        """GET through the edge at the project's own host."""
        return await self.edge.get(f"{self.project}.localhost", path)
