"""Records (as stored) → response types (as shown): what of each record the HTTP API shows.

The response types live in `launchdeck.contracts.api`, shared with the CLI; they cannot know the
control-api's records, so the conversion lives here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from launchdeck.contracts.api import (
    ArtifactOut,
    BuildOut,
    BuildSettings,
    DeploymentOut,
    EnvVarOut,
    ProjectCreated,
    ProjectOut,
    ProjectResources,
)
from launchdeck.contracts.messages import EnvTarget
from launchdeck.control_api.store.records import (
    Build,
    Deployment,
    EnvVar,
    Project,
    artifact_kind,
)


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
        build_tags=project.build_tags,
        resources=msgspec.convert(project.resources, ProjectResources),
    )


def project_created(project: Project, webhook_secret: str) -> ProjectCreated:
    """The creation response: with `POST …/webhook-secret`'s, the only places the webhook
    secret is ever shown."""
    shown = msgspec.structs.asdict(project_out(project))
    return ProjectCreated(**shown, webhook_secret=webhook_secret)


def build_out(build: Build) -> BuildOut:
    # Fields match by name; `artifact` is the record's property (None when not built).
    return msgspec.convert(build, BuildOut, from_attributes=True)


# BuildOut's fields that are columns of `builds` under the same name (all but `artifact`).
_BUILD_COLUMNS_SHOWN = tuple(f for f in BuildOut.__struct_fields__ if f != "artifact")


def build_out_of_row(row: Mapping[str, Any]) -> BuildOut:
    """`build_out(from_record(Build, row))` without the `Build` in between, for the builds
    list (the API's hottest read): a third of the cost. `Build.artifact` decides the same."""
    artifact = None
    key, sha256, size = row["artifact_key"], row["artifact_sha256"], row["artifact_size"]
    if key is not None and sha256 is not None and size is not None:
        artifact = ArtifactOut(
            key=key, sha256=sha256, size=size, kind=artifact_kind(row["artifact_kind"])
        )
    return BuildOut(**{f: row[f] for f in _BUILD_COLUMNS_SHOWN}, artifact=artifact)


def deployment_out(deployment: Deployment) -> DeploymentOut:
    return msgspec.convert(deployment, DeploymentOut, from_attributes=True)


def env_var_out(var: EnvVar) -> EnvVarOut:
    """An env var's name, targets and last change: never its value (not even sealed)."""
    return EnvVarOut(
        key=var.key,
        targets=msgspec.convert(var.targets, list[EnvTarget]),
        updated_at=var.updated_at,
    )
