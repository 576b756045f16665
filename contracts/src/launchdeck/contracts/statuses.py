"""Build and deployment statuses: the one definition every service and the CLI use.

Progress ranks say which way a status may move: an event that would move a build or deployment
back to an earlier rank is stale (a late or redelivered message) and is ignored.
"""

from __future__ import annotations

from typing import Literal

BuildStatus = Literal[
    "queued", "cloning", "installing", "building", "packaging", "succeeded", "failed", "cancelled"
]
# A build never leaves these.
BUILD_FINISHED: frozenset[BuildStatus] = frozenset({"succeeded", "failed", "cancelled"})
BUILD_RANK: dict[BuildStatus, int] = {
    "queued": 0,
    "cloning": 1,
    "installing": 2,
    "building": 3,
    "packaging": 4,
    "succeeded": 5,
    "failed": 5,
    "cancelled": 5,
}

DeploymentStatus = Literal[
    "pending", "activating", "active", "unhealthy", "superseded", "failed", "rolled_back"
]
# A deployment never leaves these. `active` is not one: it is superseded or rolled back later.
DEPLOYMENT_FINAL: frozenset[DeploymentStatus] = frozenset({"failed", "superseded", "rolled_back"})
# The live deployment of its environment: `active`, or `unhealthy` while its running app keeps
# crashing (it is still the one the edge routes to, and comes back to `active` once it serves).
DEPLOYMENT_LIVE: frozenset[DeploymentStatus] = frozenset({"active", "unhealthy"})
# The deployment's own activation is over (it is serving, or never will): what a client that
# follows a deploy waits for.
DEPLOYMENT_SETTLED: frozenset[DeploymentStatus] = DEPLOYMENT_FINAL | DEPLOYMENT_LIVE
DEPLOYMENT_RANK: dict[DeploymentStatus, int] = {
    "pending": 0,
    "activating": 1,
    "active": 2,
    "unhealthy": 2,  # and back: both are the live deployment
    "failed": 3,
    "superseded": 3,
    "rolled_back": 3,
}

Environment = Literal["production", "preview"]

# A run: one command of a project's live release run once (by hand or by a schedule).
RunStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
RUN_FINISHED: frozenset[RunStatus] = frozenset({"succeeded", "failed", "cancelled"})
RUN_ACTIVE: frozenset[RunStatus] = frozenset({"queued", "running"})
RUN_RANK: dict[RunStatus, int] = {
    "queued": 0,
    "running": 1,
    "succeeded": 2,
    "failed": 2,
    "cancelled": 2,
}

# A generation job (the generator). `budget_exceeded`: stopped before its budget would be
# overspent, its remaining items still pending; `succeeded`: every item finished (some may
# have failed: `failed` counts them); `failed`: the job as a whole failed (a bad API key, an
# unknown model: every item would have failed the same way).
GenerationStatus = Literal[
    "queued", "running", "succeeded", "failed", "budget_exceeded", "cancelled"
]
GENERATION_FINISHED: frozenset[GenerationStatus] = frozenset(
    {"succeeded", "failed", "budget_exceeded", "cancelled"}
)
GENERATION_ACTIVE: frozenset[GenerationStatus] = frozenset({"queued", "running"})
# One item of a job: `pending` until called (also after the job stopped early), then `done`
# (its outputs stored) or `failed` (its error stored).
GenerationItemStatus = Literal["pending", "done", "failed"]
