"""Log output: JSON lines for machines, the console renderer (with colour when wanted) for
people, and a mistyped level or format refused."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog

from launchdeck.libs.logging import LogSettings, bind_ids, configure, get_logger, use_colour
from launchdeck.libs.settings import SettingsError

ESC = "\x1b["


class Terminal(io.StringIO):
    """A stream that says it is a TTY."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_structlog() -> Iterator[None]:
    """Each test configures logging for itself; the session's set-up comes back afterwards."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)
    structlog.contextvars.clear_contextvars()


def log_one(stream: io.StringIO, settings: LogSettings, environ: dict[str, str]) -> str:
    configure("test-service", settings, stream=stream, environ=environ)
    bind_ids(build_id="b-1", project_id=None)
    get_logger("tests").info("build_started", step="clone")
    get_logger("tests").debug("hidden_at_info")
    return stream.getvalue()


def test_json_lines_carry_the_service_ids_and_a_utc_timestamp() -> None:
    """Production output: one JSON object per line with service, bound ids and fields."""
    out = log_one(io.StringIO(), LogSettings(format="json"), {})
    [line] = out.splitlines()
    entry = json.loads(line)
    assert entry["event"] == "build_started"
    assert entry["level"] == "info"
    assert (entry["service"], entry["build_id"], entry["step"]) == ("test-service", "b-1", "clone")
    assert "project_id" not in entry
    assert entry["timestamp"].endswith("Z")


def test_auto_is_json_on_a_pipe_and_console_on_a_terminal() -> None:
    """`auto` (the default) picks by the stream: a pipe gets JSON, a terminal the console."""
    assert json.loads(log_one(io.StringIO(), LogSettings(format="auto"), {}))
    console = log_one(Terminal(), LogSettings(format="auto"), {"NO_COLOR": "1"})
    assert not console.startswith("{")
    assert "build_started" in console


def test_console_lines_are_for_people() -> None:
    """Time of day, level, event and key=value fields; no service name (the supervisor prefixes
    it), no colour on a pipe."""
    out = log_one(io.StringIO(), LogSettings(format="console"), {})
    [line] = out.splitlines()
    time_of_day, rest = line.split(" ", 1)
    assert len(time_of_day) == 8
    assert time_of_day.count(":") == 2
    assert rest.startswith("[info")
    assert "build_started" in rest
    assert "step=clone" in rest
    assert "build_id=b-1" in rest
    assert "service=" not in rest
    assert ESC not in line


def test_console_colour_follows_the_terminal_and_the_variables() -> None:
    """Colour on a terminal; NO_COLOR turns it off; FORCE_COLOR turns it on through a pipe."""
    assert ESC in log_one(Terminal(), LogSettings(format="console"), {})
    assert ESC not in log_one(Terminal(), LogSettings(format="console"), {"NO_COLOR": "1"})
    assert ESC in log_one(io.StringIO(), LogSettings(format="console"), {"FORCE_COLOR": "1"})


def test_use_colour_rules() -> None:
    """NO_COLOR wins over FORCE_COLOR; FORCE_COLOR=0 forces nothing."""
    assert use_colour(Terminal(), {})
    assert not use_colour(io.StringIO(), {})
    assert use_colour(io.StringIO(), {"FORCE_COLOR": "true"})
    assert not use_colour(io.StringIO(), {"FORCE_COLOR": "0"})
    assert not use_colour(Terminal(), {"NO_COLOR": "1", "FORCE_COLOR": "1"})


def test_the_level_filters_lines() -> None:
    """Below the level nothing is written; debug shows debug lines."""
    assert log_one(io.StringIO(), LogSettings(level="warning", format="json"), {}) == ""
    debug = log_one(io.StringIO(), LogSettings(level="debug", format="json"), {})
    assert [json.loads(line)["event"] for line in debug.splitlines()] == [
        "build_started",
        "hidden_at_info",
    ]


@pytest.mark.parametrize(
    ("variable", "value"), [("LAUNCHDECK_LOG_LEVEL", "verbose"), ("LAUNCHDECK_LOG_FORMAT", "text")]
)
def test_log_settings_refuse_a_typo(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    """`verbose` is not a level and `text` not a format: an error naming the variable, where
    the level used to fall back to info silently."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        LogSettings.from_env()


def test_log_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Upper case works; unset means info and auto."""
    monkeypatch.setenv("LAUNCHDECK_LOG_LEVEL", "WARNING")
    monkeypatch.delenv("LAUNCHDECK_LOG_FORMAT", raising=False)
    assert LogSettings.from_env() == LogSettings(level="warning", format="auto")
