"""`launchdeck schedules create|list|disable|enable|delete` against the real control-api: each
kind of action, the table, and readable errors (bad cron, bad time zone) with exit code 1."""

from __future__ import annotations

import pytest

from tests.cli.test_env_commands import RealApi, cli, printed, real_api
from tests.control_api.support import unique

__all__ = ["real_api"]


def test_create_list_disable_enable_delete(
    real_api: RealApi, capsys: pytest.CaptureFixture[str]
) -> None:
    project = unique("cli-sch")
    assert cli(real_api, "projects", "create", project, "https://git.invalid/r.git") == 0
    code = cli(
        real_api, "schedules", "create", project,
        "--cron", "0 3 * * *", "--tz", "Europe/Paris", "--build",
    )  # fmt: skip
    assert code == 0
    code = cli(
        real_api, "schedules", "create", project,
        "--cron", "*/15 * * * *", "--command", "python manage.py sync", "--timeout", "120",
    )  # fmt: skip
    assert code == 0
    code = cli(
        real_api, "schedules", "create", project, "--name", "ping",
        "--cron", "0 * * * *", "--http", "/cron/hourly", "--method", "GET",
    )  # fmt: skip
    assert code == 0
    out = printed(capsys.readouterr().out)
    assert any("build (branch)" in line and "Europe/Paris" in line for line in out), out

    assert cli(real_api, "schedules", "list", project) == 0
    lines = printed(capsys.readouterr().out)
    assert lines[0].split()[:4] == ["ID", "NAME", "CRON", "TZ"]
    rows = {line.split()[1]: line for line in lines[1:]}
    assert "run python manage.py sync" in rows["run"]
    assert "GET /cron/hourly" in rows["ping"]
    ping_id = rows["ping"].split()[0]

    assert cli(real_api, "schedules", "disable", ping_id) == 0
    assert "Disabled 'ping'" in capsys.readouterr().out
    assert cli(real_api, "schedules", "list", project) == 0
    assert "disabled" in next(
        line for line in printed(capsys.readouterr().out) if line.split()[1] == "ping"
    )
    assert cli(real_api, "schedules", "enable", ping_id) == 0
    assert "Enabled 'ping': next" in capsys.readouterr().out
    assert cli(real_api, "schedules", "delete", ping_id) == 0
    assert cli(real_api, "schedules", "delete", ping_id) == 1
    assert "no schedule" in capsys.readouterr().err


def test_bad_cron_and_time_zone_are_readable_errors(
    real_api: RealApi, capsys: pytest.CaptureFixture[str]
) -> None:
    project = unique("cli-sch")
    assert cli(real_api, "projects", "create", project, "https://git.invalid/r.git") == 0
    capsys.readouterr()
    assert cli(real_api, "schedules", "create", project, "--cron", "* * *", "--build") == 1
    assert "must have 5 fields" in capsys.readouterr().err
    code = cli(
        real_api, "schedules", "create", project, "--cron", "* * * * *", "--tz", "Nowhere/X",
        "--http", "/x",
    )  # fmt: skip
    assert code == 1
    assert "IANA time zone" in capsys.readouterr().err
