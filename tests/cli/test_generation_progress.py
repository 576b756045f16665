"""How a generation job's progress reads: the bar redrawn on a TTY, a line per update
elsewhere, and the numbers in each (done/total, failed, tokens, cost, rate, ETA)."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

from launchdeck.cli.generation_progress import (
    CLEAR_LINE,
    ProgressDisplay,
    bar,
    bar_line,
    compact,
    duration,
    text_line,
)
from launchdeck.contracts.messages import GenerationProgress


def progress(**fields: Any) -> GenerationProgress:
    base: dict[str, Any] = {
        "job_id": "j1",
        "project_id": "p1",
        "status": "running",
        "total": 120,
        "done": 50,
        "failed": 10,
        "tokens_in": 9_000,
        "tokens_out": 3_345,
        "cost_usd": "0.0123",
        "items_per_s": 4.25,
        "eta_s": 14.2,
        "at": datetime(2026, 11, 30, tzinfo=UTC),
    }
    return GenerationProgress(**{**base, **fields})


def test_numbers_are_short() -> None:
    """Token counts and durations in a few characters."""
    assert [compact(n) for n in (0, 999, 1_000, 12_345, 99_960, 999_999, 4_500_000)] == [
        "0", "999", "1.0k", "12.3k", "100k", "1.0M", "4.5M",
    ]  # fmt: skip
    assert [duration(s) for s in (0, 14.2, 59.5, 60, 185, 7_620)] == [
        "0s", "15s", "1m00s", "1m00s", "3m05s", "2h07m",
    ]  # fmt: skip


def test_bar_fills_with_finished_items() -> None:
    """Done and failed items both fill the bar; a head marks the front; full when finished."""
    assert bar(progress(done=0, failed=0), width=10) == "[          ]"
    assert bar(progress(done=50, failed=10), width=10) == "[=====>    ]"
    assert bar(progress(done=110, failed=10), width=10) == "[==========]"
    assert bar(progress(total=0, done=0, failed=0), width=4) == "[====]"


def test_tty_line_has_every_number() -> None:
    """The redrawn line: status, bar, done/total, failed, tokens, cost, items/s, ETA."""
    assert bar_line(progress()) == (
        "running  [============>           ] 50/120  failed 10  12.3k tok  $0.0123  4.2/s  ETA 15s"
    )
    assert bar_line(progress(eta_s=None)).endswith("ETA ?")
    assert bar_line(progress(status="succeeded", done=110)).endswith("ETA -")


def test_text_line_spells_it_out() -> None:
    """Not a TTY: the same numbers in words, tokens in full."""
    assert text_line(progress()) == (
        "running: 50/120 done, 10 failed, 12,345 tokens (9,000 in, 3,345 out), $0.0123, "
        "4.2 items/s, ETA 15s"
    )


def test_display_redraws_on_a_tty_and_ends_the_line() -> None:
    """TTY: carriage return, the line, clear to its end; `close` adds the newline once."""
    out = io.StringIO()
    display = ProgressDisplay(out, tty=True)
    display.update(progress(done=1))
    display.update(progress(done=2))
    display.close()
    display.close()
    written = out.getvalue()
    assert written.count("\r") == 2
    assert written.endswith(CLEAR_LINE + "\n")
    assert written.split("\r")[-1].startswith("running  [")
    assert " 2/120 " in written


def test_display_prints_only_new_lines_elsewhere() -> None:
    """Not a TTY: one line per update that changed something; nothing to end."""
    out = io.StringIO()
    display = ProgressDisplay(out, tty=False)
    for done in (1, 1, 2):
        display.update(progress(done=done))
    display.close()
    lines = out.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == ["running: 1/120 done", "running: 2/120 done"]
