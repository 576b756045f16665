"""The platform's images as the tests build them: `deploy/images/build.sh` (what `make images`
runs) on the local base, once per session, for the image tests and the compose test alike."""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "deploy/images/build.sh"
SERVICES = ("control-api", "build-worker", "deploy-engine", "generator")
SUPPORT = ("postgres", "nats")  # compose.yaml's, for machines without a registry


@dataclass(frozen=True)
class BuiltImages:
    engine: str
    base: str
    version: str
    commit: str

    def ref(self, name: str) -> str:
        return f"launchdeck/{name}:{self.version}"

    def inspect(self, name: str) -> dict[str, object]:
        out = subprocess.run(
            [self.engine, "image", "inspect", self.ref(name)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        info = json.loads(out)[0]
        assert isinstance(info, dict)
        return info


def workspace_version() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    match = re.search(r'^version = "([^"]+)"', text, re.MULTILINE)
    assert match
    return match.group(1)


def build_images(engine: str, base: str) -> BuiltImages:
    """Build every image (the layer cache makes a rebuild of unchanged sources quick)."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    result = subprocess.run(
        [str(BUILD), *SERVICES, *SUPPORT],
        env={**os.environ, "CONTAINER_ENGINE": engine, "BASE_IMAGE": base, "COMMIT": commit},
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-6000:] + result.stdout
    print(result.stdout)  # the sizes table, shown with -s
    return BuiltImages(engine=engine, base=base, version=workspace_version(), commit=commit)
