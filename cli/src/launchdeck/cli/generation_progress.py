"""How a generation job's progress reads on a terminal: a bar redrawn in place on a TTY, one
line per update otherwise (a log file, CI). Pure formatting from a `GenerationProgress`, plus
`ProgressDisplay`, which only decides where the text goes."""

from __future__ import annotations

import math
from typing import TextIO

from launchdeck.contracts.messages import GenerationProgress

BAR_WIDTH = 24
CLEAR_LINE = "\x1b[K"


def compact(n: int) -> str:
    """`950`, `12.3k`, `4.5M`: token counts in a few characters."""
    if n < 1000:
        return str(n)
    value, unit = (n / 1_000, "k") if n < 999_500 else (n / 1_000_000, "M")
    return f"{value:.1f}{unit}" if value < 99.95 else f"{value:.0f}{unit}"


def duration(seconds: float) -> str:
    """`45s`, `3m05s`, `2h07m`."""
    total = max(0, math.ceil(seconds))
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _eta(progress: GenerationProgress) -> str:
    if progress.status not in ("queued", "running"):
        return "-"
    return "?" if progress.eta_s is None else duration(progress.eta_s)


def bar(progress: GenerationProgress, width: int = BAR_WIDTH) -> str:
    """`[=========>          ]`: the finished share (done and failed) of the items."""
    finished = progress.done + progress.failed
    share = 1.0 if progress.total == 0 else min(1.0, finished / progress.total)
    filled = int(share * width)
    if filled >= width:
        return "[" + "=" * width + "]"
    head = ">" if finished else ""
    return "[" + ("=" * filled + head).ljust(width) + "]"


def bar_line(progress: GenerationProgress) -> str:
    """The line redrawn on a TTY: status, bar, done/total, failed, tokens, cost, rate, ETA."""
    tokens = progress.tokens_in + progress.tokens_out
    return (
        f"{progress.status:<8} {bar(progress)} {progress.done}/{progress.total}"
        f"  failed {progress.failed}  {compact(tokens)} tok  ${progress.cost_usd}"
        f"  {progress.items_per_s:.1f}/s  ETA {_eta(progress)}"
    )


def text_line(progress: GenerationProgress) -> str:
    """One update as a line of its own (not a TTY)."""
    tokens = progress.tokens_in + progress.tokens_out
    return (
        f"{progress.status}: {progress.done}/{progress.total} done, {progress.failed} failed, "
        f"{tokens:,} tokens ({progress.tokens_in:,} in, {progress.tokens_out:,} out), "
        f"${progress.cost_usd}, {progress.items_per_s:.1f} items/s, ETA {_eta(progress)}"
    )


def is_tty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class ProgressDisplay:
    """Shows successive updates: on a TTY one line redrawn in place (ended by `close`), else a
    line per update that says something new."""

    def __init__(self, out: TextIO, *, tty: bool | None = None) -> None:
        self.out = out
        self.tty = is_tty(out) if tty is None else tty
        self._last: str | None = None

    def update(self, progress: GenerationProgress) -> None:
        line = bar_line(progress) if self.tty else text_line(progress)
        if line == self._last:
            return
        self._last = line
        if self.tty:
            self.out.write("\r" + line + CLEAR_LINE)
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def close(self) -> None:
        """End the redrawn line, so what follows starts on a line of its own."""
        if self.tty and self._last is not None:
            self.out.write("\n")
            self.out.flush()
            self._last = None
