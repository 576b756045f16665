"""Git-host webhooks over HTTP: the answer to a delivery and the rotated webhook secret.

Shared by the control-api (which answers with them) and the CLI (which decodes them), like the
types of `launchdeck.contracts.api`; kept apart because only the webhook routes use them.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

import msgspec

# The git hosts a project can receive pushes from: `/api/v1/hooks/<provider>/{project}`.
# `gitea` serves Forgejo too; `generic` is any sender signing like GitHub.
WebhookProvider = Literal["github", "gitlab", "gitea", "generic"]
WEBHOOK_PROVIDERS: tuple[WebhookProvider, ...] = ("github", "gitlab", "gitea", "generic")

# What a verified delivery did: a build was queued, nothing was to be done (`reason` says why),
# or the same delivery had come before (`build_id`: the build it queued then, if any).
HookStatus = Literal["queued", "ignored", "duplicate"]


class HookAnswer(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """202 answer to a webhook delivery."""

    status: HookStatus
    reason: str | None = None
    build_id: uuid.UUID | None = None


class WebhookSecretOut(msgspec.Struct, kw_only=True, frozen=True):
    """`POST /api/v1/projects/{id}/webhook-secret`: the new secret, shown only here; the
    previous one stopped verifying at `rotated_at`."""

    webhook_secret: str
    rotated_at: datetime


def hook_path(provider: WebhookProvider, project: str) -> str:
    """The path a git host posts `project`'s pushes to."""
    return f"/api/v1/hooks/{provider}/{project}"
