"""Service image builds: per image, the build time cold (`--no-cache`: every layer, packages
downloaded again) and with the layer cache after a source-only change (one line added to the
service's package: only the source layers are rebuilt), their ratio; and each image's size
against its base.

Baseline: the cold build of the same Dockerfile, same machine, same run. Both builds use a copy
of the build context in a scratch directory (the files the Dockerfiles copy), so the change never
touches the checkout.

    uv run python -m bench.images [--services control-api generator] [--base IMAGE]

Needs podman (or docker: CONTAINER_ENGINE) and the base image: BASE_IMAGE, else the local one
from deploy/images/make-base.sh. Cold builds download from PyPI and the Debian mirror, so they
measure the network too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("control-api", "build-worker", "deploy-engine", "generator")
# What the Dockerfiles copy from the repository root.
CONTEXT = (
    "pyproject.toml",
    "uv.lock",
    ".dockerignore",
    "contracts",
    "libs",
    "cli/pyproject.toml",
    "devservers/pyproject.toml",
    "services",
    "deploy/images/healthcheck.py",
)


def engine() -> str:
    found = os.environ.get("CONTAINER_ENGINE") or shutil.which("podman") or shutil.which("docker")
    if not found:
        sys.exit("images bench: neither podman nor docker is installed")
    return found


def base_image(tool: str) -> str:
    if os.environ.get("BASE_IMAGE"):
        return os.environ["BASE_IMAGE"]
    result = subprocess.run(
        [str(ROOT / "deploy/images/make-base.sh")],
        env={**os.environ, "CONTAINER_ENGINE": tool},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip().splitlines()[-1]


def copy_context(target: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".venv", "node_modules")
    for name in CONTEXT:
        source, dest = ROOT / name, target / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, dest, ignore=ignore)
        else:
            shutil.copy2(source, dest)
    (target / "deploy/docker").mkdir(parents=True, exist_ok=True)
    for dockerfile in (ROOT / "deploy/docker").glob("*.Dockerfile"):
        shutil.copy2(dockerfile, target / "deploy/docker" / dockerfile.name)


def build(tool: str, context: Path, service: str, base: str, *, cold: bool) -> float:
    flags = ["--format", "docker", "--layers"] if Path(tool).name == "podman" else []
    argv = [
        tool,
        "build",
        *flags,
        *(["--no-cache"] if cold else []),
        "--build-arg",
        f"BASE_IMAGE={base}",
        "-f",
        f"deploy/docker/{service}.Dockerfile",
        "-t",
        f"launchdeck-bench/{service}:latest",
        ".",
    ]
    started = time.monotonic()
    result = subprocess.run(argv, cwd=context, capture_output=True, text=True, check=False)
    took = time.monotonic() - started
    if result.returncode != 0:
        sys.exit(f"images bench: building {service} failed:\n{result.stderr[-3000:]}")
    return took


def size_mb(tool: str, image: str) -> float:
    out = subprocess.run(
        [tool, "image", "inspect", "--format", "{{.Size}}", image],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(out.strip()) / 1e6


def touch_source(context: Path, service: str) -> None:
    """A source-only change: one comment line more in the service's package."""
    package = service.replace("-", "_")
    init = context / "services" / service / "src" / "launchdeck" / package / "__init__.py"
    with init.open("a") as handle:
        handle.write(f"# bench {time.time_ns()}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--services", nargs="+", choices=SERVICES, default=list(SERVICES))
    parser.add_argument("--base", help="the base image (default: BASE_IMAGE or the local one)")
    args = parser.parse_args()
    tool = engine()
    base = args.base or base_image(tool)
    base_mb = size_mb(tool, base)
    print(f"images on {base} ({base_mb:.1f} MB), built with {Path(tool).name}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="launchdeck-bench-images-") as scratch:
        context = Path(scratch)
        copy_context(context)
        for service in args.services:
            cold_s = build(tool, context, service, base, cold=True)
            touch_source(context, service)
            cached_s = build(tool, context, service, base, cold=False)
            image = f"launchdeck-bench/{service}:latest"
            mb = size_mb(tool, image)
            rows.append((service, cold_s, cached_s, mb))
            print(
                f"{service:14} cold {cold_s:6.1f} s   cached after a source change "
                f"{cached_s:5.1f} s   ratio {cold_s / cached_s:4.1f}x   "
                f"size {mb:6.1f} MB ({mb - base_mb:+.1f} MB vs the base)",
                flush=True,
            )
            subprocess.run([tool, "rmi", image], capture_output=True, check=False)
    total_cold = sum(r[1] for r in rows)
    total_cached = sum(r[2] for r in rows)
    print(
        f"all: cold {total_cold:.1f} s, cached {total_cached:.1f} s, "
        f"ratio {total_cold / total_cached:.1f}x"
    )


if __name__ == "__main__":
    main()
