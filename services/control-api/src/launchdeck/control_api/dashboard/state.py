"""What a project page shows, read through the API: the project, its recent builds and
deployments, and what follows from them (the live deployment, which builds can be rolled back
to, which previews can be promoted)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from urllib.parse import quote

from launchdeck.contracts.api import BuildOut, DeploymentOut, Page, ProjectOut
from launchdeck.contracts.statuses import DEPLOYMENT_LIVE
from launchdeck.control_api.dashboard.client import Api

# How much history a project page shows (the API's pages go further; the CLI reads them all).
HISTORY = 20


def project_path(name_or_id: str | uuid.UUID) -> str:
    return f"/api/v1/projects/{quote(str(name_or_id), safe='')}"


@dataclass(frozen=True)
class ProjectState:
    project: ProjectOut
    builds: list[BuildOut]
    deployments: list[DeploymentOut]

    @property
    def live(self) -> DeploymentOut | None:
        """The production deployment the edge routes to (newest first in the history)."""
        return next(
            (
                d
                for d in self.deployments
                if d.environment == "production" and d.status in DEPLOYMENT_LIVE
            ),
            None,
        )

    @property
    def live_url(self) -> str | None:
        live = self.live
        return live.url if live else None

    @property
    def last_build(self) -> BuildOut | None:
        return self.builds[0] if self.builds else None

    @property
    def last_deployment(self) -> DeploymentOut | None:
        return self.deployments[0] if self.deployments else None

    def build_number(self, build_id: uuid.UUID) -> str:
        number = next((b.number for b in self.builds if b.id == build_id), None)
        return f"#{number}" if number is not None else str(build_id)[:8]

    def can_roll_back_to(self, build: BuildOut) -> bool:
        """A succeeded build with a release that is not the one serving production now."""
        live = self.live
        return (
            build.status == "succeeded"
            and build.artifact is not None
            and live is not None
            and build.id != live.build_id
        )

    @staticmethod
    def promotable(deployment: DeploymentOut) -> bool:
        return deployment.environment == "preview" and deployment.status in DEPLOYMENT_LIVE


async def load_state(api: Api, name: str, *, builds: int = HISTORY) -> ProjectState:
    path = project_path(name)
    project = await api.get(path, ProjectOut)
    build_page, deployment_page = await asyncio.gather(
        api.get(f"{path}/builds", Page[BuildOut], limit=str(builds)),
        api.get(f"{path}/deployments", Page[DeploymentOut], limit=str(HISTORY)),
    )
    return ProjectState(project, build_page.items, deployment_page.items)
