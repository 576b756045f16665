"""libs fixtures: a NATS server of the test's own that a test can stop and start again
(`RestartableNats`, in support.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from launchdeck.devservers import free_port
from tests.libs.support import RestartableNats


@pytest.fixture
def restartable_nats(tmp_path: Path) -> Iterator[RestartableNats]:
    """A running NATS server (JetStream) on a fixed free port, stopped after the test."""
    nats = RestartableNats(tmp_path / "nats", free_port(), tmp_path / "nats.log")
    nats.start()
    try:
        yield nats
    finally:
        nats.stop()
