"""Which Node.js and Python a build used, for the release's manifest.

Asked of the same programs the build ran, the same way: in the build's sandbox, with its
environment, in the app's root (where a `.python-version` or `.nvmrc` may choose a version for
pyenv or a node version manager). Never run outside the sandbox: the build's PATH includes
directories the build itself wrote (`node_modules/.bin`, the Python dependencies' scripts).
A runtime that does not answer is left out: the install that needed it already said why.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence

from launchdeck.build_worker.detect import Runtime
from launchdeck.build_worker.errors import BuildFailed, BuildTimedOut
from launchdeck.contracts.messages import LogStream

# argv → the lines it printed on stdout (raises BuildFailed when it fails)
RunProbe = Callable[[Sequence[str]], Awaitable[list[str]]]

PROBES: dict[Runtime, tuple[str, ...]] = {
    "node": ("node", "--version"),
    "python": ("python3", "-c", "import platform; print(platform.python_version())"),
}
_VERSION = re.compile(r"v?(\d+\.\d+(?:\.\d+)?\S*)")


def parse_version(lines: Sequence[str]) -> str | None:
    for line in lines:
        match = _VERSION.fullmatch(line.strip())
        if match is not None:
            return match.group(1)
    return None


async def probe_runtimes(runtimes: Sequence[Runtime], run: RunProbe) -> dict[str, str]:
    """`{"node": "20.20.2", "python": "3.11.7"}` for the runtimes that answer."""
    found: dict[str, str] = {}
    for name in runtimes:
        try:
            version = parse_version(await run(PROBES[name]))
        except BuildTimedOut:
            raise  # the build's time limit, not the probe's
        except BuildFailed:
            continue
        if version is not None:
            found[name] = version
    return found


def stdout_collector() -> tuple[list[str], Callable[[LogStream, list[str]], None]]:
    """A list and a sink for `run_command` that keeps the stdout lines in it."""
    collected: list[str] = []

    def sink(stream: LogStream, lines: list[str]) -> None:
        if stream == "stdout":
            collected.extend(lines)

    return collected, sink
