"""Records (as stored) → response types (as shown): what of each record the HTTP API shows.

The response types live in `launchdeck.contracts.api`, shared with the CLI; they cannot know the
control-api's records, so the conversion lives here.
"""

from __future__ import annotations

import msgspec

from launchdeck.contracts.api import (
    BuildOut,
    BuildSettings,
    DeploymentOut,
    EnvVarOut,
    ProjectCreated,
    ProjectOut,
)
from launchdeck.contracts.messages import EnvTarget
from launchdeck.control_api.store.records import Build, Deployment, EnvVar, Project


def project_out(project: Project) -> ProjectOut:
    return ProjectOut(
        id=project.id,
        name=project.name,
        repo_url=project.repo_url,
        branch=project.branch,
        build=msgspec.convert(project.build_config, BuildSettings),
        domains=project.domains,
        created_at=project.created_at,
        updated_at=project.updated_at,
    )


def project_created(project: Project) -> ProjectCreated:
    """The creation response: the only place the webhook secret is ever shown."""
    shown = msgspec.structs.asdict(project_out(project))
    return ProjectCreated(**shown, webhook_secret=project.webhook_secret)


def build_out(build: Build) -> BuildOut:
    # Fields match by name; `artifact` is the record's property (None when not built).
    return msgspec.convert(build, BuildOut, from_attributes=True)


def deployment_out(deployment: Deployment) -> DeploymentOut:
    return msgspec.convert(deployment, DeploymentOut, from_attributes=True)


def env_var_out(var: EnvVar) -> EnvVarOut:
    """An env var's name, targets and last change: never its value (not even sealed)."""
    return EnvVarOut(
        key=var.key,
        targets=msgspec.convert(var.targets, list[EnvTarget]),
        updated_at=var.updated_at,
    )
