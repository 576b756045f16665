"""build-worker test helpers: worker settings and job deliveries as the service would see them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from launchdeck.build_worker.settings import Settings
from launchdeck.contracts.messages import BuildRequested
from launchdeck.contracts.subjects import SUBJECT_BUILD_JOBS
from launchdeck.libs.jobs import Delivery

CommandFactory = Callable[..., BuildRequested]


def make_settings(build_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "nats_url": "nats://unused",
        "build_dir": build_dir,
        "allow_local_repos": True,
        "concurrency": 1,
        "timeout_s": 120,
        "log_max_bytes": 10 * 1024 * 1024,
    }
    values.update(overrides)
    return Settings(**values)


def delivery(attempt: int = 1, max_deliver: int = 3) -> Delivery:
    return Delivery(
        num_delivered=attempt, max_deliver=max_deliver, subject=SUBJECT_BUILD_JOBS, stream_seq=1
    )
