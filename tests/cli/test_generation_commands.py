"""`launchdeck generate` and `launchdeck generations list|show|cancel` against the real
control-api (no generator runs: jobs stay queued unless a test plays the generator's progress
events on NATS): the bundled example's dry run, a job created from a CSV upload, a job followed
live to its end with the exit code of its outcome, and the pure formatting of what is printed."""

from __future__ import annotations

import asyncio
import io
import json
import re
import threading
import uuid
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pyarrow.parquet as pq
import pytest
from nats.js import JetStreamContext

from launchdeck.cli.client import LaunchdeckClient
from launchdeck.cli.generation_client import get_generation
from launchdeck.cli.generations import estimate_lines, follow, item_rows, outcome
from launchdeck.cli.main import build_parser
from launchdeck.cli.output import Terminal
from launchdeck.contracts.api import (
    GenerationEstimate,
    GenerationItemOut,
    GenerationPromptOut,
    RenderedStepOut,
)
from launchdeck.contracts.messages import GenerationProgress
from launchdeck.contracts.statuses import GenerationStatus
from launchdeck.contracts.subjects import generation_event_subject
from launchdeck.libs.jetstream import connect
from tests.cli.test_env_commands import ADMIN, RealApi, cli, printed, real_api
from tests.control_api.support import unique
from tests.polling import eventually, eventually_sync

__all__ = ["real_api"]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "local-business"
SPEC = str(EXAMPLE / "spec.json")
TEMPLATE = "local-business-pages"
UUID = r"[0-9a-f-]{36}"
MODEL = {"provider": "ollama", "name": "llama3.2"}


# --- pure: parsing and formatting --------------------------------------------------------------


def test_arguments() -> None:
    """`generate` and each `generations` action parse to what the commands read."""
    parser = build_parser()
    args = parser.parse_args(["generate", "s.yaml", "--dry-run", "--prompts", "2", "--model", "m"])
    assert (args.command, args.dry_run, args.prompts, args.model, args.no_follow) == (
        "generate", True, 2, "m", False,
    )  # fmt: skip
    args = parser.parse_args(["generations", "export", "J", "--manifests", "-o", "m.zip"])
    assert (args.generations_command, args.manifests, args.output) == ("export", True, "m.zip")
    assert parser.parse_args(["generations", "export", "J"]).fmt == "jsonl"
    assert parser.parse_args(["generations", "follow", "J"]).job_id == "J"
    args = parser.parse_args(["generations", "publish", "J", "--project", "p", "--no-follow"])
    assert (args.project, args.no_follow, args.step) == ("p", True, None)
    with pytest.raises(SystemExit):
        parser.parse_args(["generations", "export", "J", "--format", "xml"])
    with pytest.raises(SystemExit):
        parser.parse_args(["generations", "list"])  # --project is required


def test_estimate_and_items_read_well() -> None:
    """A dry run: the estimate, then each item's prompts under headers; items: one row each
    with the last output (or the error) cut short."""
    estimate = GenerationEstimate(
        items=12,
        calls=24,
        tokens_in=3_456,
        tokens_out=24_576,
        cost_usd="0",
        prompts=[
            GenerationPromptOut(
                index=0,
                variables={"business": "Joe", "area": "Lyon"},
                steps=[
                    RenderedStepOut(name="outline", output="json", prompt="Plan Joe\nin Lyon\n"),
                    RenderedStepOut(name="page", output="text", prompt="Write <outline>.title"),
                ],
            )
        ],
    )
    assert estimate_lines(estimate) == [
        "Dry run: 12 items, 24 model calls (no model called, nothing stored)",
        "  tokens in  ~3,456 (an overestimate of the rendered prompts)",
        "  tokens out ≤24,576 (max tokens per call)",
        "  cost       $0 at the job's price",
        "",
        "=== item 0: business=Joe, area=Lyon ===",
        "--- outline (json) ---",
        "Plan Joe",
        "in Lyon",
        "--- page (text) ---",
        "Write <outline>.title",
    ]

    def item(index: int, **fields: Any) -> GenerationItemOut:
        base: dict[str, Any] = {
            "index": index, "status": "done", "variables": {"city": "Lyon"}, "group": None,
            "outputs": {}, "error": None, "tokens_in": 3, "tokens_out": 4, "cost_usd": "0",
            "cached": False, "attempts": 1, "finished_at": None,
        }  # fmt: skip
        return GenerationItemOut(**{**base, **fields})

    rows = item_rows(
        [
            item(0, outputs={"outline": {"t": 1}, "page": "# Plumbing\n\nin   Lyon " + "x" * 80}),
            item(1, status="failed", error="HTTP 404: model not found", cached=False),
            item(2, cached=True),
        ]
    )
    assert rows[0].split() == ["#", "STATUS", "TOKENS", "GROUP", "VARIABLES", "OUTPUT"]
    assert rows[1].split()[:5] == ["0", "done", "7", "-", "city=Lyon"]
    assert rows[1].endswith("# Plumbing in Lyon " + "x" * 40 + "…")
    assert rows[2].endswith("error: HTTP 404: model not found")
    assert rows[3].split()[:3] == ["2", "done", "(cached)"]


def progress(status: GenerationStatus, **fields: Any) -> GenerationProgress:
    base: dict[str, Any] = {
        "job_id": "j1", "project_id": "p1", "status": status, "total": 12, "done": 12,
        "failed": 0, "tokens_in": 1_000, "tokens_out": 500, "cost_usd": "0.25",
        "at": datetime.now(UTC),
    }  # fmt: skip
    return GenerationProgress(**{**base, **fields})


def test_outcome_of_each_final_status() -> None:
    """Exit 0 only when the job succeeded; otherwise 1 with the reason."""
    assert outcome(progress("succeeded", done=11, failed=1)) == (
        0,
        "Generation j1 succeeded: 11 of 12 done, 1 failed; 1,500 tokens; $0.25",
    )
    code, line = outcome(progress("budget_exceeded", done=5))
    assert code == 1
    assert line.startswith("generation j1 stopped: its budget is spent (5 of 12 done")
    assert line.endswith("7 items not called)")
    assert outcome(progress("cancelled", done=2))[1].startswith("generation j1 was cancelled")
    assert outcome(progress("failed", done=0, error="HTTP 401: bad API key")) == (
        1,
        "generation j1 failed: HTTP 401: bad API key (0 of 12 done, 0 failed; 1,500 tokens; $0.25)",
    )


# --- against the real API ----------------------------------------------------------------------


def example_template(api: RealApi) -> None:
    """The example's template exists (created from its file the first time)."""
    if cli(api, "templates", "show", TEMPLATE) != 0:
        assert cli(api, "templates", "create", str(EXAMPLE / "template.json")) == 0


def new_project(api: RealApi, capsys: pytest.CaptureFixture[str]) -> str:
    name = unique("cli-gen")
    assert cli(api, "projects", "create", name, "https://git.invalid/pages.git") == 0
    example_template(api)
    capsys.readouterr()
    return name


def test_dry_run_of_the_example(real_api: RealApi, capsys: pytest.CaptureFixture[str]) -> None:
    """The bundled example's dry run: 12 items from its CSV, two calls each, and the first
    prompts rendered with the outline step's placeholder; no model needed."""
    project = new_project(real_api, capsys)
    code = cli(real_api, "generate", SPEC, "--project", project, "--dry-run", "--prompts", "2")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    out = printed(captured.out)
    assert out[0] == "Dry run: 12 items, 24 model calls (no model called, nothing stored)"
    headers = [line for line in out if line.startswith("=== item")]
    assert headers == [
        "=== item 0: business=Harbor Plumbing, city=Portland, phone=+1 503 555 0142, "
        "service=emergency plumbing, area=Portland ===",
        "=== item 1: business=Harbor Plumbing, city=Portland, phone=+1 503 555 0142, "
        "service=emergency plumbing, area=Beaverton ===",
    ]
    assert "Service area: Beaverton." in out
    assert out.count("--- page (text) ---") == 2
    assert any(line.startswith('Start with the heading "# <outline>.title"') for line in out)


def test_create_list_show_cancel(real_api: RealApi, capsys: pytest.CaptureFixture[str]) -> None:
    """generate --no-follow uploads the CSV and creates the job; list and show find it with
    its items; cancel stops it."""
    project = new_project(real_api, capsys)
    assert cli(real_api, "generate", SPEC, "--project", project, "--no-follow") == 0
    out = printed(capsys.readouterr().out)
    match = re.fullmatch(
        rf"Generation ({UUID}) queued: 12 items, template {TEMPLATE} v1, ollama llama3.2", out[0]
    )
    assert match, out
    job_id = match[1]
    assert out[1] == f"Follow it with: launchdeck generations follow {job_id}"

    assert cli(real_api, "generations", "list", "--project", project) == 0
    lines = printed(capsys.readouterr().out)
    assert lines[0].split()[:4] == ["ID", "STATUS", "TEMPLATE", "DONE"]
    assert lines[1].split()[:6] == [job_id, "queued", TEMPLATE, "v1", "0/12", "0"]

    assert cli(real_api, "generations", "show", job_id, "--items", "3") == 0
    shown = printed(capsys.readouterr().out)
    assert shown[0] == f"Generation {job_id}: queued"
    assert "  items    12: 0 done, 0 failed, 12 pending (0 from the cache)" in shown
    assert "  grouped by business" in shown
    table = shown[shown.index("") + 1 :]
    assert table[0].split() == ["#", "STATUS", "TOKENS", "GROUP", "VARIABLES", "OUTPUT"]
    assert [row.split()[:5] for row in table[1:]] == [
        ["0", "pending", "0", "Harbor", "Plumbing"],
        ["1", "pending", "0", "Harbor", "Plumbing"],
        ["2", "pending", "0", "Harbor", "Plumbing"],
    ]
    assert "area=Portland" in table[1]
    assert "area=Beaverton" in table[2]

    assert cli(real_api, "generations", "show", job_id, "--json") == 0
    shown_json = json.loads("\n".join(printed(capsys.readouterr().out)))
    assert (shown_json["id"], shown_json["total"], shown_json["group_by"]) == (
        job_id,
        12,
        "business",
    )

    assert cli(real_api, "generations", "cancel", job_id) == 0
    assert f"Generation {job_id}" in capsys.readouterr().out
    assert cli(real_api, "generations", "show", job_id, "--items", "0") == 0
    assert printed(capsys.readouterr().out)[0] == f"Generation {job_id}: cancelled"


def test_errors_are_readable(
    real_api: RealApi, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A spec that does not fit is refused before anything is sent; what the API refuses (an
    unknown project or template) is printed as its problem, exit code 1."""
    project = new_project(real_api, capsys)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"template": TEMPLATE, "model": {"provider": "ollama"}, "rows": []}))
    assert cli(real_api, "generate", str(bad), "--project", project) == 1
    assert capsys.readouterr().err.startswith(f"error: {bad}: Object missing required field `name`")

    code = cli(real_api, "generate", SPEC, "--project", unique("nowhere"), "--dry-run")
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: ")
    assert "not found" in err.lower()

    other = tmp_path / "other.json"
    other.write_text(
        json.dumps({"template": unique("no-tpl"), "model": MODEL, "variables": {"a": ["1"]}})
    )
    assert cli(real_api, "generate", str(other), "--project", project, "--dry-run") == 1
    assert capsys.readouterr().err.startswith("error: ")


async def _play_progress(
    nats_url: str, job_id: str, final: GenerationStatus, exits: list[int]
) -> None:
    """Play the generator: a running update, then the final one, again until the CLI ends
    (core NATS has no replay: an update sent before the CLI subscribed is lost)."""
    nc = await connect(nats_url, name="cli-test-generator")
    try:

        async def send(status: GenerationStatus, finished: int) -> None:
            event = GenerationProgress(
                job_id=job_id, project_id="p", status=status, total=12, done=finished,
                failed=0, tokens_in=40 * finished, tokens_out=60 * finished,
                cost_usd="0", items_per_s=3.5, eta_s=2.0, at=datetime.now(UTC),
            )  # fmt: skip
            await nc.publish(generation_event_subject(job_id), msgspec.json.encode(event))

        async def ended() -> bool:
            await send("running", 6)
            await send(final, 12 if final == "succeeded" else 7)
            return bool(exits)

        await eventually("the CLI to end", ended, interval_s=0.1)
    finally:
        await nc.close()


@pytest.mark.parametrize(("final", "code"), [("succeeded", 0), ("budget_exceeded", 1)])
def test_generate_follows_the_job_to_its_end(
    real_api: RealApi,
    nats_url: str,
    capsys: pytest.CaptureFixture[str],
    final: GenerationStatus,
    code: int,
) -> None:
    """`generate` creates the job and prints a line per progress event (not a TTY) until the
    final one; it exits 0 when the job succeeded, 1 with the reason otherwise."""
    project = new_project(real_api, capsys)
    exits: list[int] = []
    runner = threading.Thread(
        target=lambda: exits.append(cli(real_api, "generate", SPEC, "--project", project))
    )
    runner.start()
    try:
        job_id = eventually_sync("the job", lambda: _only_job(real_api, project))
        asyncio.run(_play_progress(nats_url, job_id, final, exits))
    finally:
        runner.join(30)
    captured = capsys.readouterr()
    assert exits == [code], captured.err
    out = printed(captured.out)
    assert any(
        line.startswith("running: 6/12 done, 0 failed, 600 tokens (240 in, 360 out), $0")
        and line.endswith("3.5 items/s, ETA 2s")
        for line in out
    )
    if final == "succeeded":
        assert f"Generation {job_id} succeeded: 12 of 12 done, 0 failed; 1,200 tokens; $0" in out
        assert f"Export: launchdeck generations export {job_id} --format jsonl" in out
    else:
        assert f"error: generation {job_id} stopped: its budget is spent" in captured.err


def _only_job(api: RealApi, project: str) -> str:
    """The id of the project's one job ("" while there is none)."""

    async def find() -> str:
        async with api.pool.acquire() as conn:
            value = await conn.fetchval(
                "SELECT g.id::text FROM generation_jobs g JOIN projects p ON p.id = g.project_id "
                "WHERE p.name = $1",
                project,
            )
        return str(value) if value else ""

    return api.run(find())


def _finish(api: RealApi, job_id: str) -> None:
    """Stand in for the generator: every item done with both steps' outputs, the job
    succeeded (what the settle RPC leaves behind)."""

    async def finish() -> None:
        async with api.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """
                UPDATE generation_items SET status = 'done', attempts = 1, tokens_in = 10,
                    tokens_out = 20, finished_at = now(),
                    outputs = jsonb_build_object(
                        'outline', jsonb_build_object('title', 'Page ' || idx),
                        'page', '# Page ' || idx || E'\n\n' || (variables->>'service')
                            || ' in ' || (variables->>'area'))
                WHERE job_id = $1
                """,
                uuid.UUID(job_id),
            )
            await conn.execute(
                """
                UPDATE generation_jobs SET status = 'succeeded', done = total, tokens_in = 120,
                    tokens_out = 240, started_at = now(), finished_at = now()
                WHERE id = $1
                """,
                uuid.UUID(job_id),
            )

    api.run(finish())


def test_export_and_publish(
    real_api: RealApi,
    js: JetStreamContext,  # the artifacts bucket exists: publish stores the site there
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A finished job's results: JSONL, CSV (to the default file name) and Parquet, the
    manifests zip (one per business), and publish, which starts a deployment of the pages."""
    project = new_project(real_api, capsys)
    assert cli(real_api, "generate", SPEC, "--project", project, "--no-follow") == 0
    job_id = _only_job(real_api, project)
    _finish(real_api, job_id)
    capsys.readouterr()

    target = tmp_path / "pages.jsonl"
    assert cli(real_api, "generations", "export", job_id, "-o", str(target)) == 0
    assert f"Wrote {target} (jsonl, " in capsys.readouterr().out
    records = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(records) == 12
    assert records[0]["outputs"]["page"] == "# Page 0\n\nemergency plumbing in Portland"
    assert not list(tmp_path.glob("*.part"))

    monkeypatch.chdir(tmp_path)
    assert cli(real_api, "generations", "export", job_id, "--format", "csv") == 0
    csv_file = tmp_path / f"generation-{job_id}.csv"
    assert len(csv_file.read_text().strip().splitlines()) >= 13  # a header and 12 records

    assert cli(real_api, "generations", "export", job_id, "--format", "parquet") == 0
    assert pq.read_table(tmp_path / f"generation-{job_id}.parquet").num_rows == 12

    assert cli(real_api, "generations", "export", job_id, "--manifests") == 0
    with zipfile.ZipFile(tmp_path / f"generation-{job_id}-manifests.zip") as bundle:
        manifests = [n for n in bundle.namelist() if n.endswith("manifest.json")]
    assert len(manifests) == 3
    capsys.readouterr()

    assert cli(real_api, "generations", "publish", job_id, "--no-follow") == 0
    out = printed(capsys.readouterr().out)
    assert re.fullmatch(rf"Published 12 pages as build {UUID}: deployment {UUID}", out[0]), out


def test_interrupted_follow_says_the_job_goes_on(
    real_api: RealApi, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C (the command's task cancelled) while following: the job's state as it stands was
    shown first (the channel's first frame), then how to cancel the job, which is untouched."""
    project = new_project(real_api, capsys)
    assert cli(real_api, "generate", SPEC, "--project", project, "--no-follow") == 0
    job_id = _only_job(real_api, project)
    out = io.StringIO()

    async def interrupt() -> str:
        async with LaunchdeckClient(real_api.url, ADMIN) as client:
            following = asyncio.create_task(follow(client, Terminal(out, io.StringIO()), job_id))
            await eventually("the job's state", lambda: "queued: 0/12 done" in out.getvalue())
            following.cancel()
            with pytest.raises(asyncio.CancelledError):
                await following
            return (await get_generation(client, job_id)).status

    assert asyncio.run(interrupt()) == "queued"
    assert out.getvalue().splitlines()[-1] == (
        f"Stopped following; the job goes on. Cancel it with: "
        f"launchdeck generations cancel {job_id}"
    )


def test_schedule_a_generation(real_api: RealApi, capsys: pytest.CaptureFixture[str]) -> None:
    """`schedules create --generation SPEC`: the spec with its rows file read into `rows` (a
    schedule keeps no upload) becomes the schedule's action, listed by what it generates."""
    project = new_project(real_api, capsys)
    code = cli(
        real_api, "schedules", "create", project, "--cron", "0 3 * * 1", "--generation", SPEC
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"Schedule 'generate {TEMPLATE}" in captured.out
    assert cli(real_api, "schedules", "list", project) == 0
    row = printed(capsys.readouterr().out)[1]
    assert f"generate {TEMPLATE}" in row

    async def stored() -> Any:
        async with real_api.pool.acquire() as conn:
            return await conn.fetchval(
                "SELECT s.action FROM schedules s JOIN projects p ON p.id = s.project_id "
                "WHERE p.name = $1",
                project,
            )

    action = real_api.run(stored())
    assert action["type"] == "generation"
    assert len(action["spec"]["rows"]) == 12
    assert action["spec"]["rows"][0]["area"] == "Portland"
