"""Terminal output: where build log lines go, dimming on a TTY, prefixed service lines."""

from __future__ import annotations

import io

import pytest

from launchdeck.cli.output import DIM, RESET, PrefixedTerminal, Terminal, wants_colour


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_lines_go_to_their_stream_and_system_lines_are_dimmed_on_a_tty() -> None:
    """stdout/system lines to stdout (system dimmed), stderr lines to stderr."""
    out, err = io.StringIO(), io.StringIO()
    term = Terminal(out, err, colour=True)
    term.log_line("stdout", "npm run build")
    term.log_line("system", "▶ Cloning")
    term.log_line("stderr", "warning: deprecated")
    assert out.getvalue().splitlines() == ["npm run build", f"{DIM}▶ Cloning{RESET}"]
    assert err.getvalue().splitlines() == ["warning: deprecated"]


def test_no_colour_when_not_a_tty_or_no_color_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """Colour only on a TTY, and never with NO_COLOR."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert wants_colour(FakeTty()) is True
    assert wants_colour(io.StringIO()) is False
    monkeypatch.setenv("NO_COLOR", "1")
    assert wants_colour(FakeTty()) is False
    out = io.StringIO()
    Terminal(out, io.StringIO()).log_line("system", "▶ Cloning")
    assert out.getvalue() == "▶ Cloning\n"


def test_dev_output_is_prefixed_with_its_source() -> None:
    """`launchdeck dev` prints `<source padded> | <line>` for services and the example."""
    out = io.StringIO()
    term = PrefixedTerminal(out, io.StringIO(), colour=False)
    term.service_line("control-api", "listening")
    term.for_source("example").log_line("stderr", "oops")
    term.info("stopping")
    assert out.getvalue().splitlines() == [
        "control-api   | listening",
        "example       | oops",
        "launchdeck    | stopping",
    ]
