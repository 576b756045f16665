"""JSON Schema for every message, generated from the Structs into `contracts/schema/`.

`python -m launchdeck.contracts.schema --check` fails when the checked-in files are stale.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import msgspec

from launchdeck.contracts import messages

MESSAGE_TYPES: tuple[type[msgspec.Struct], ...] = (
    messages.BuildRequested,
    messages.DeployRequested,
    messages.UndeployRequested,
    messages.BuildStatusChanged,
    messages.DeploymentStatusChanged,
    messages.LogBatch,
    messages.ReleaseManifest,
    messages.AppLogBatch,
    messages.EnvRequest,
    messages.EnvReply,
    messages.AppsReportRequest,
    messages.AppsReport,
    messages.BuildCancelRequested,
    messages.RunRequested,
    messages.RunStatusChanged,
    messages.RunLogBatch,
    messages.RunCancelRequested,
)

DEFAULT_DIR = Path(__file__).resolve().parents[3] / "schema"


def render() -> dict[str, str]:
    """File name → JSON text, one file per message type."""
    out: dict[str, str] = {}
    for type_ in MESSAGE_TYPES:
        schema = msgspec.json.schema(type_)
        out[f"{type_.__name__}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the files are stale")
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args(argv)
    wanted = render()
    directory: Path = args.dir
    if args.check:
        stale = [
            name
            for name, text in wanted.items()
            if not (directory / name).exists() or (directory / name).read_text() != text
        ]
        extra = (
            sorted(p.name for p in directory.glob("*.json") if p.name not in wanted)
            if directory.exists()
            else []
        )
        if stale or extra:
            print(f"contracts/schema is stale: {stale + extra}; run `make schema`", file=sys.stderr)
            return 1
        return 0
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in wanted.items():
        (directory / name).write_text(text)
    for p in directory.glob("*.json"):
        if p.name not in wanted:
            p.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
