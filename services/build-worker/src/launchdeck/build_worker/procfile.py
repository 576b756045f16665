"""Reading a `Procfile`: the process types an app runs, and its release command.

The format is Heroku's, which the apps users migrate from already have: one `<type>: <command>`
per line, the type made of letters, digits, `_` and `-`. Every type is a process (`web` gets a
port, a route and a health check; `worker` and any other run supervised without them), except
`release`, which is the command run once per deployment before activation. Lines that are not
`<type>: <command>` (comments, blank lines) are ignored, as Heroku does; a type given twice
keeps its last command.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from launchdeck.build_worker.errors import BuildFailed

PROCFILE = "Procfile"
RELEASE_TYPE = "release"
_LINE = re.compile(r"^([A-Za-z0-9_-]+)[ \t]*:[ \t]*(\S.*?)\s*$")


@dataclass(frozen=True)
class Procfile:
    processes: dict[str, str] = field(default_factory=dict)  # type → command, in file order
    release: str | None = None


def parse_procfile(text: str) -> Procfile:
    processes: dict[str, str] = {}
    release: str | None = None
    for line in text.splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        name, command = match.group(1), match.group(2)
        if name == RELEASE_TYPE:
            release = command
        else:
            processes[name] = command
    return Procfile(processes, release)


def read_procfile(root: Path) -> Procfile | None:
    """`root`'s Procfile, or None when it has none."""
    path = root / PROCFILE
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise BuildFailed(f"{PROCFILE} is not UTF-8 text") from None
    return parse_procfile(text)
