"""`launchdeck run PROJECT [options] -- COMMAND…`: what is run, and which options apply."""

from __future__ import annotations

import pytest

from launchdeck.cli.main import _run_words, build_parser


@pytest.mark.parametrize(
    ("argv", "line", "timeout", "wait"),
    [
        (
            ["run", "blog", "--", "python", "manage.py", "clearsessions"],
            "python manage.py clearsessions",
            600,
            True,
        ),
        (["run", "blog", "--", "echo $HOME && ls"], "echo $HOME && ls", 600, True),
        (["run", "blog", "--", "sh", "-c", "exit 3"], "sh -c 'exit 3'", 600, True),
        (["run", "--timeout", "30", "blog", "--", "ls"], "ls", 30, True),
        (["run", "blog", "--timeout", "30", "--no-wait", "--", "ls", "-la"], "ls -la", 30, False),
        (["run", "blog", "--", "git", "log", "--", "README"], "git log -- README", 600, True),
    ],
)
def test_the_command_and_options(argv: list[str], line: str, timeout: int, wait: bool) -> None:
    """One word is a shell line as written; several are quoted word by word; options may come
    before or after the project, never after `--` (those are the command's)."""
    args = build_parser().parse_args(argv)
    assert _run_words(args) == line
    assert (args.timeout, not args.no_wait) == (timeout, wait)


def test_no_command_is_an_error() -> None:
    """`launchdeck run blog` with nothing to run says so."""
    args = build_parser().parse_args(["run", "blog"])
    with pytest.raises(SystemExit, match="give the command after --"):
        _run_words(args)
