"""One-off runs end to end, every service a process with its own NATS user: a Python app is
built and deployed, a run of a command of its live release is started over the API and with
`launchdeck run`, executes in the deploy-engine with the production env vars (masked in its
log), and its exit code is the run's outcome."""

from __future__ import annotations

import json
from typing import Any

from tests.e2e.support import Api, Platform, create_project, deploy, launchdeck
from tests.polling import eventually
from tests.support import GitRepoFactory

APP = """\
import http.server, os

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"py app")

http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""

REPORT = """\
import os, sys
print("report for", os.environ["LAUNCHDECK_PROJECT"], flush=True)
print("token", os.environ["REPORT_TOKEN"], flush=True)
print("a warning", file=sys.stderr, flush=True)
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
"""

SECRET = "e2e-run-secret-value"


async def wait_run(api: Api, run_id: str, timeout_s: float = 60) -> dict[str, Any]:
    async def finished() -> dict[str, Any] | None:
        status, run = await api.call("GET", f"/runs/{run_id}")
        assert status == 200, run
        return dict(run) if run["status"] in ("succeeded", "failed", "cancelled") else None

    result: dict[str, Any] = await eventually("the run finished", finished, timeout_s)
    return result


async def test_a_command_of_the_live_release_runs_once_with_its_log(
    api: Api, platform: Platform, make_git_repo: GitRepoFactory
) -> None:
    """POST …/runs → succeeded with the command's output in its log (the secret masked); a
    command exiting 3 through `launchdeck run` prints its output and exits 3; `launchdeck runs`
    lists both."""
    repo = make_git_repo(
        {
            "requirements.txt": "",
            "Procfile": "web: python3 app.py\n",
            "app.py": APP,
            "report.py": REPORT,
        }
    )
    await create_project(api, "pyruns", repo)
    status, body = await api.call(
        "PUT", "/projects/pyruns/env/REPORT_TOKEN", {"value": SECRET, "targets": ["production"]}
    )
    assert status == 200, body
    _, deployment = await deploy(api, "pyruns")
    assert await api.edge_get("pyruns") == (200, "py app")

    status, run = await api.call("POST", "/projects/pyruns/runs", {"command": "python3 report.py"})
    assert status == 202, run
    done = await wait_run(api, run["id"])
    assert (done["status"], done["exit_code"], done["error"]) == ("succeeded", 0, None)
    assert done["deployment_id"] == deployment["id"]
    assert done["build_id"] == deployment["build_id"]
    status, text = await api.call("GET", f"/runs/{run['id']}/logs")
    assert status == 200
    lines = text.splitlines()
    assert "report for pyruns" in lines
    assert "token ***" in lines
    assert "a warning" in lines
    assert SECRET not in text

    cli = await launchdeck(platform, "run", "pyruns", "--", "python3", "report.py", "3")
    assert cli.code == 3, (cli.out, cli.err)
    assert "report for pyruns" in cli.out
    assert any("exited with code 3" in line for line in cli.err), cli.err
    listed = await launchdeck(platform, "runs", "pyruns")
    assert listed.code == 0
    assert listed.out[0].split()[:3] == ["STATUS", "EXIT", "CREATED"]
    assert [line.split()[:2] for line in listed.out[1:3]] == [["failed", "3"], ["succeeded", "0"]]
    status, page = await api.call("GET", "/projects/pyruns/runs")
    assert [r["status"] for r in page["items"]] == ["failed", "succeeded"]
    assert json.dumps(page).count(SECRET) == 0


async def test_a_running_run_is_cancelled(api: Api, make_git_repo: GitRepoFactory) -> None:
    """`POST /api/v1/runs/{id}/cancel` of a running command: the deploy-engine (reading the
    mark as its own NATS user) stops it and the run ends `cancelled`."""
    repo = make_git_repo(
        {"requirements.txt": "", "Procfile": "web: python3 app.py\n", "app.py": APP}
    )
    await create_project(api, "pycancel", repo)
    await deploy(api, "pycancel")
    body = {"command": "echo waiting; sleep 300", "timeout_s": 600}
    status, run = await api.call("POST", "/projects/pycancel/runs", body)
    assert status == 202, run

    async def running() -> bool:
        _, now = await api.call("GET", f"/runs/{run['id']}")
        return bool(now["status"] == "running")

    await eventually("the run running", running, 60)
    status, asked = await api.call("POST", f"/runs/{run['id']}/cancel")
    assert status == 202, asked
    done = await wait_run(api, run["id"], timeout_s=30)
    assert (done["status"], done["error"]) == ("cancelled", "Cancelled on request")
    _, text = await api.call("GET", f"/runs/{run['id']}/logs")
    assert text.splitlines()[-1] == "■ Cancelled on request: the command was stopped"
