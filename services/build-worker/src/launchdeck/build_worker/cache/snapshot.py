"""What the install wrote: the areas it may write to, compared before and after it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# A file or link by (mtime_ns, size); a directory by None.
Stamp = tuple[int, int] | None


def _walk(top: Path, descend: Mapping[str, Stamp] | None) -> dict[str, Stamp]:
    """Entries under `top` except `.git`. With `descend`, directories absent from it are
    reported but not entered (a new node_modules/ is one entry, not thousands)."""
    found: dict[str, Stamp] = {}
    pending = [""]
    while pending:
        rel = pending.pop()
        with os.scandir(top / rel if rel else top) as entries:
            for entry in entries:
                if entry.name == ".git":
                    continue
                path = f"{rel}/{entry.name}" if rel else entry.name
                if entry.is_dir(follow_symlinks=False):
                    found[path] = None
                    if descend is None or (path in descend and descend[path] is None):
                        pending.append(path)
                else:
                    st = entry.stat(follow_symlinks=False)
                    found[path] = (st.st_mtime_ns, st.st_size)
    return found


@dataclass(frozen=True)
class Snapshot:
    """The areas as they were before the install, to tell afterwards what it wrote."""

    areas: Mapping[str, Path]
    before: Mapping[str, Mapping[str, Stamp]]

    @classmethod
    def take(cls, areas: Mapping[str, Path]) -> Snapshot:
        return cls(areas, {name: _walk(top, None) for name, top in areas.items()})

    def changes(self) -> list[tuple[str, str]]:
        """(area, path) of everything created or changed since: new directories as a whole."""
        out: list[tuple[str, str]] = []
        for name, top in self.areas.items():
            before = self.before[name]
            after = _walk(top, before)
            out.extend(
                (name, path)
                for path, stamp in sorted(after.items())
                if path not in before or (stamp is not None and before[path] != stamp)
            )
        return out
