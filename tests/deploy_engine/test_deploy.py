"""Deploys through a real Caddy and real NATS: serving, switching, rollback, failures, previews."""

from __future__ import annotations

import uuid
from dataclasses import replace

from launchdeck.contracts.messages import Artifact
from launchdeck.contracts.subjects import OBJECT_STORE_ARTIFACTS
from launchdeck.deploy_engine import edge_routes as er
from launchdeck.deploy_engine.sites import reconcile
from launchdeck.libs.jobs import Outcome
from tests.deploy_engine.support import Engine

from .archives import file, make_tar_gz, sha256

V1 = {"index.html": "<h1>Version one</h1>", "assets/app-1a2b.js": "console.log(1)"}
V2 = {"index.html": "<h1>Version two</h1>", "assets/app-3c4d.js": "console.log(2)"}


def new_build() -> str:
    return str(uuid.uuid4())


async def test_deploy_serves_site_with_spa_fallback(engine: Engine) -> None:
    """A deploy publishes activating → active with the URL; the edge serves it with SPA fallback."""
    build = new_build()
    outcome, events = await engine.deploy(build, V1)
    assert outcome is Outcome.ACK
    assert [e.status for e in events] == ["activating", "active"]
    active = events[-1]
    assert active.url == f"http://{engine.project}.localhost:{engine.edge.port}/"
    assert (active.build_id, active.environment, active.error) == (build, "production", None)

    status, headers, body = await engine.get("/")
    assert (status, body) == (200, "<h1>Version one</h1>")
    assert headers["Cache-Control"] == "no-cache"
    status, headers, body = await engine.get("/assets/app-1a2b.js")
    assert (status, body) == (200, "console.log(1)")
    assert "immutable" in headers["Cache-Control"]
    status, _, body = await engine.get("/some/client/route")
    assert (status, body) == (200, "<h1>Version one</h1>")
    status, _, body = await engine.edge.get("nobody.localhost", "/")
    assert status == 404
    assert "No site" in body


async def test_second_build_switches_and_rollback_serves_old_content(engine: Engine) -> None:
    """Build 2 replaces build 1; activating build 1 again serves it from disk (no fetch)."""
    b1, b2 = new_build(), new_build()
    assert (await engine.deploy(b1, V1))[0] is Outcome.ACK
    assert (await engine.deploy(b2, V2))[0] is Outcome.ACK
    assert (await engine.get("/"))[2] == "<h1>Version two</h1>"

    # The artifact is gone from the object store: a rollback must not need it.
    objects = await engine.js.object_store(OBJECT_STORE_ARTIFACTS)
    await objects.delete(f"{b1}.tar.gz")
    outcome, events = await engine.deploy(b1)
    assert outcome is Outcome.ACK
    assert [e.status for e in events] == ["activating", "active"]
    assert (await engine.get("/"))[2] == "<h1>Version one</h1>"
    assert engine.edge.store.active_build(engine.project) == b1


async def test_bad_sha256_fails_and_previous_keeps_serving(engine: Engine) -> None:
    """A sha256 mismatch fails with a readable reason; the previous release still serves."""
    assert (await engine.deploy(new_build(), V1))[0] is Outcome.ACK
    bad = new_build()
    good = await engine.put_artifact(bad, make_tar_gz([file("index.html", "evil")]))
    outcome, events = await engine.deploy(
        bad, artifact=Artifact(key=good.key, sha256="f" * 64, size=good.size)
    )
    assert outcome is Outcome.ACK
    assert [e.status for e in events] == ["activating", "failed"]
    assert events[-1].error is not None
    assert "sha256 mismatch" in events[-1].error
    assert (await engine.get("/"))[2] == "<h1>Version one</h1>"
    assert not engine.edge.store.release_dir(engine.project, bad).exists()


async def test_unsafe_archive_fails_without_touching_disk(engine: Engine) -> None:
    """An artifact with a `../` member fails, names the member, writes nothing."""
    assert (await engine.deploy(new_build(), V1))[0] is Outcome.ACK
    bad = new_build()
    data = make_tar_gz([file("index.html", "x"), file("../../planted.txt", "x")])
    outcome, events = await engine.deploy(bad, artifact=await engine.put_artifact(bad, data))
    assert outcome is Outcome.ACK
    assert events[-1].status == "failed"
    assert "'../../planted.txt'" in (events[-1].error or "")
    assert not (engine.edge.store.root / "planted.txt").exists()
    assert (await engine.get("/"))[2] == "<h1>Version one</h1>"


async def test_missing_artifact_fails_readably(engine: Engine) -> None:
    """A deploy whose artifact is not in the object store fails and says so."""
    build = new_build()
    missing = Artifact(key=f"{build}.tar.gz", sha256=sha256(b""), size=0)
    outcome, events = await engine.deploy(build, artifact=missing)
    assert outcome is Outcome.ACK
    assert events[-1].status == "failed"
    assert "not found in the object store" in (events[-1].error or "")
    assert engine.edge.store.active_build(engine.project) is None


async def test_release_with_404_page_gets_real_404s(engine: Engine) -> None:
    """With a 404.html, unknown paths get it with status 404 instead of the SPA fallback."""
    files = {"index.html": "home", "404.html": "custom not found"}
    assert (await engine.deploy(new_build(), files))[0] is Outcome.ACK
    assert (await engine.get("/"))[::2] == (200, "home")
    assert (await engine.get("/missing"))[::2] == (404, "custom not found")


async def test_custom_domains_are_routed(engine: Engine) -> None:
    """The project's own domains are served by its route too."""
    domain = f"{engine.project}.example.test"
    assert (await engine.deploy(new_build(), V1, domains=[domain]))[0] is Outcome.ACK
    assert (await engine.edge.get(domain, "/"))[2] == "<h1>Version one</h1>"


def other_project(engine: Engine) -> Engine:
    """A second project on the same engine and edge."""
    return replace(engine, project_id=str(uuid.uuid4()), project=f"site-{uuid.uuid4().hex[:8]}")


async def test_preview_gets_its_own_host_and_path(engine: Engine) -> None:
    """A preview is served at <build8>-<project> and at /preview/<build>/ on the project's own
    host, production untouched."""
    assert (await engine.deploy(new_build(), V1))[0] is Outcome.ACK
    preview = new_build()
    outcome, events = await engine.deploy(preview, V2, environment="preview")
    assert outcome is Outcome.ACK
    host = f"{preview[:8]}-{engine.project}.localhost"
    assert events[-1].url == f"http://{host}:{engine.edge.port}/"
    assert (await engine.edge.get(host, "/"))[2] == "<h1>Version two</h1>"
    for path in (f"/preview/{preview}/", f"/preview/{preview}", f"/preview/{preview}/deep/link"):
        assert (await engine.get(path))[::2] == (200, "<h1>Version two</h1>")
    assert (await engine.get(f"/preview/{preview}/assets/app-3c4d.js"))[2] == "console.log(2)"
    assert (await engine.get("/"))[2] == "<h1>Version one</h1>"


async def test_a_preview_path_is_not_served_on_another_projects_host(engine: Engine) -> None:
    """Project B's /preview/<build>/ on project A's host gets A's own 404, never B's preview
    (which would run on A's origin, with A's cookies); on a host nobody has, the edge's 404."""
    a, b = engine, other_project(engine)
    a_site = {"index.html": "<h1>A</h1>", "404.html": "A has no such page"}
    assert (await a.deploy(new_build(), a_site))[0] is Outcome.ACK
    assert (await b.deploy(new_build(), V1))[0] is Outcome.ACK
    preview = new_build()
    assert (await b.deploy(preview, V2, environment="preview"))[0] is Outcome.ACK
    path = f"/preview/{preview}/"
    assert (await b.get(path))[::2] == (200, "<h1>Version two</h1>")  # on B's own host
    assert (await a.get(path))[::2] == (404, "A has no such page")
    status, _, body = await a.edge.get("localhost", path)
    assert (status, "No site" in body) == (404, True)
    status, _, body = await a.edge.get(f"{a.project}.example.test", path)
    assert (status, "No site" in body) == (404, True)


async def test_a_project_cannot_route_another_projects_platform_host(engine: Engine) -> None:
    """A squatter listing the victim's `<victim>.localhost` (or a preview host, or the base
    domain) among its domains, deployed first: the victim's deploy still goes live and its host
    serves the victim; the squatter keeps its own host."""
    victim, squatter = engine, other_project(engine)
    stolen = [f"{victim.project}.localhost", f"0badc0de-{victim.project}.localhost", "localhost"]
    outcome, events = await squatter.deploy(new_build(), V2, domains=stolen)
    assert (outcome, events[-1].status) == (Outcome.ACK, "active")
    outcome, events = await victim.deploy(new_build(), V1)
    assert (outcome, [e.status for e in events]) == (Outcome.ACK, ["activating", "active"])
    assert (await victim.get("/"))[2] == "<h1>Version one</h1>"
    assert (await squatter.get("/"))[2] == "<h1>Version two</h1>"
    assert (await squatter.edge.get("localhost", "/"))[0] == 404


async def test_reconcile_restores_routes_on_a_fresh_config(engine: Engine) -> None:
    """After Caddy lost its config, reconcile routes every active release and preview again."""
    assert (await engine.deploy(new_build(), V1))[0] is Outcome.ACK
    preview = new_build()
    assert (await engine.deploy(preview, V2, environment="preview"))[0] is Outcome.ACK
    admin = engine.edge.admin
    # A fresh config: the server skeleton without any site route.
    await admin.request(
        "PATCH", f"/config/apps/http/servers/{er.SERVER_NAME}", er.server_config(engine.edge.listen)
    )
    assert (await engine.get("/"))[0] == 404

    report = await reconcile(engine.edge.sites)
    assert report.projects >= 1
    assert report.previews >= 1
    assert (await engine.get("/"))[2] == "<h1>Version one</h1>"
    host = f"{preview[:8]}-{engine.project}.localhost"
    assert (await engine.edge.get(host, "/"))[2] == "<h1>Version two</h1>"
    # Idempotent: a second pass changes nothing and duplicates no route.
    before = await admin.site_route_ids()
    await reconcile(engine.edge.sites)
    assert await admin.site_route_ids() == before
    assert len(before) == len(set(before))


async def test_old_releases_are_pruned(engine: Engine) -> None:
    """Only the newest releases (3 here) plus the active one stay on disk."""
    builds = [new_build() for _ in range(5)]
    for i, build in enumerate(builds):
        files = {"index.html": f"v{i}"}
        assert (await engine.deploy(build, files))[0] is Outcome.ACK
    kept = [r.build_id for r in engine.edge.store.list_releases(engine.project)]
    assert kept == builds[:1:-1]
    assert (await engine.get("/"))[2] == "v4"


async def test_undeploy_stops_serving_removes_releases_and_refuses_later_deploys(
    engine: Engine,
) -> None:
    """A deleted project: its hosts and previews answer 404, its releases are gone, a restart's
    reconcile does not bring it back, and a deploy command arriving late is refused."""
    assert (await engine.deploy(new_build(), V1))[0] is Outcome.ACK
    preview = new_build()
    assert (await engine.deploy(preview, V2, environment="preview"))[0] is Outcome.ACK
    preview_host = f"{preview[:8]}-{engine.project}.localhost"
    store = engine.edge.store

    assert await engine.undeploy() is Outcome.ACK
    assert (await engine.get("/"))[0] == 404
    assert (await engine.edge.get(preview_host, "/"))[0] == 404
    assert (await engine.edge.get("localhost", f"/preview/{preview}/"))[0] == 404
    assert not store.project_dir(engine.project).exists()
    assert not list(store.root.glob(".rm-*"))
    await reconcile(engine.edge.sites)
    assert (await engine.get("/"))[0] == 404

    outcome, events = await engine.deploy(new_build(), V2)
    assert outcome is Outcome.ACK
    assert [e.status for e in events] == ["activating", "failed"]
    assert events[-1].error == "the project was deleted"
    assert (await engine.get("/"))[0] == 404
    assert await engine.undeploy() is Outcome.ACK  # redelivered: nothing left, still fine


async def test_undeploy_of_a_deleted_project_spares_a_new_one_of_the_same_name(
    engine: Engine,
) -> None:
    """The name was taken again by a new project before the old one's undeploy arrived: the new
    project's site stays."""
    assert (await engine.deploy(new_build(), V1))[0] is Outcome.ACK
    assert await engine.undeploy(project_id=str(uuid.uuid4())) is Outcome.ACK
    assert (await engine.get("/"))[2] == "<h1>Version one</h1>"
    assert engine.edge.store.active_build(engine.project) is not None
