"""The deploy-engine's one user-facing failure."""

from __future__ import annotations


class DeployFailed(Exception):
    """A permanent failure of a deployment, with a reason meant for the user (it becomes the
    deployment's `error`): the previous release keeps serving."""
