"""Everything the CLI writes to the terminal: messages, build log lines, prefixed service output.

Colour only on a TTY and never when `NO_COLOR` is set; the words are the same either way, so
output piped into a file or a test reads the same as on screen.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import TextIO

from launchdeck.cli.client import ApiError

RESET = "\x1b[0m"
BOLD = "\x1b[1m"
DIM = "\x1b[2m"
RED = "\x1b[31m"
GREEN = "\x1b[32m"
YELLOW = "\x1b[33m"
BLUE = "\x1b[34m"
MAGENTA = "\x1b[35m"
CYAN = "\x1b[36m"

# Fixed colours for the dev services so a name always has the same colour; others cycle.
SERVICE_COLOURS: Mapping[str, str] = {
    "control-api": CYAN,
    "build-worker": MAGENTA,
    "deploy-engine": YELLOW,
    "generator": BLUE,
    "launchdeck": BOLD + GREEN,
}
_CYCLE = (CYAN, MAGENTA, YELLOW, BLUE, GREEN)
PREFIX_WIDTH = 13  # len("deploy-engine")


def wants_colour(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows as aligned columns (two spaces apart; the last column is not padded)."""
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return [
        "  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]])
        for row in rows
    ]


def format_problem(error: ApiError) -> list[str]:
    """`<title>: <detail>` then one `  - <field>: <message>` line per field error (unless the
    detail already is that one error)."""
    listed = [f"{e.field}: {e.message}" if e.field else e.message for e in error.errors]
    if listed == [error.detail]:
        return [str(error)]
    return [str(error), *(f"  - {line}" for line in listed)]


class Terminal:
    """Plain output for the client commands."""

    def __init__(
        self,
        out: TextIO | None = None,
        err: TextIO | None = None,
        *,
        colour: bool | None = None,
    ) -> None:
        self.out = out if out is not None else sys.stdout
        self.err = err if err is not None else sys.stderr
        self.colour = wants_colour(self.out) if colour is None else colour
        # Supervisor output arrives from several tasks; one lock keeps lines whole.
        self._lock = threading.Lock()

    def style(self, text: str, *codes: str) -> str:
        if not self.colour or not codes:
            return text
        return "".join(codes) + text + RESET

    def _write(self, stream: TextIO, text: str) -> None:
        with self._lock:
            stream.write(text + "\n")
            stream.flush()

    def _message(self, stream: TextIO, text: str) -> None:
        """Where `info`/`success`/`warn`/`error` go (`stream` is stdout or stderr)."""
        self._write(stream, text)

    def info(self, message: str) -> None:
        self._message(self.out, message)

    def success(self, message: str) -> None:
        self._message(self.out, self.style(message, GREEN))

    def warn(self, message: str) -> None:
        self._message(self.err, self.style("warning: ", YELLOW) + message)

    def error(self, message: str) -> None:
        self._message(self.err, self.style("error: ", BOLD, RED) + message)

    def problem(self, error: ApiError) -> None:
        """An API error as `error: <title>: <detail>` plus its field errors."""
        first, *fields = format_problem(error)
        self.error(first)
        for line in fields:
            self._write(self.err, line)

    def raw(self, text: str) -> None:
        """Text as received (an HTTP log body), without adding a newline."""
        with self._lock:
            self.out.write(text)
            self.out.flush()

    def log_line(self, stream: str, line: str) -> None:
        """One build log line: stderr lines to stderr, system lines dimmed."""
        if stream == "stderr":
            self._write(self.err, line)
        elif stream == "system":
            self._write(self.out, self.style(line, DIM))
        else:
            self._write(self.out, line)


class PrefixedTerminal(Terminal):
    """Output of `launchdeck dev`: every line is prefixed with its source (`control-api | ...`)."""

    def __init__(
        self,
        out: TextIO | None = None,
        err: TextIO | None = None,
        *,
        colour: bool | None = None,
        source: str = "launchdeck",
    ) -> None:
        super().__init__(out, err, colour=colour)
        self.source = source
        self._colours: dict[str, str] = dict(SERVICE_COLOURS)

    def for_source(self, source: str) -> PrefixedTerminal:
        """The same terminal writing as another source (shares the stream lock)."""
        clone = PrefixedTerminal(self.out, self.err, colour=self.colour, source=source)
        clone._lock = self._lock
        clone._colours = self._colours
        return clone

    def prefix(self, source: str) -> str:
        colour = self._colours.get(source)
        if colour is None:
            colour = _CYCLE[len(self._colours) % len(_CYCLE)]
            self._colours[source] = colour
        return self.style(source.ljust(PREFIX_WIDTH), colour) + self.style(" | ", DIM)

    def service_line(self, source: str, line: str) -> None:
        self._write(self.out, self.prefix(source) + line)

    def _message(self, stream: TextIO, text: str) -> None:
        # In dev every message goes to stdout, prefixed with this terminal's source.
        self.service_line(self.source, text)

    def log_line(self, stream: str, line: str) -> None:
        # In dev everything goes to stdout, in order; stderr lines are marked instead.
        if stream == "system":
            line = self.style(line, DIM)
        elif stream == "stderr":
            line = self.style(line, RED)
        self.service_line(self.source, line)

    def block(self, lines: list[str]) -> None:
        """Unprefixed lines written together (the banner)."""
        with self._lock:
            self.out.write("\n".join(lines) + "\n")
            self.out.flush()
