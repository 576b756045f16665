"""Env vars through the whole platform, every service its own process and NATS user: set over the
API (and the CLI), asked for by the build-worker over `ld.rpc.env`, given to the build, masked in
its log, never in a response or an event; a redeploy deploys the live build again."""

from __future__ import annotations

import json
import uuid

from tests.e2e.support import Api, create_project, deploy, launchdeck
from tests.support import GitRepoFactory

# The build writes the page from its `build` variable, and prints it as a careless script would.
BUILD = """\
import os
os.makedirs("dist", exist_ok=True)
print("greeting is " + os.environ["GREETING"], flush=True)
print("production-only var set: " + str("PROD_TOKEN" in os.environ), flush=True)
with open("dist/index.html", "w") as page:
    page.write("<h1>" + os.environ["GREETING"][::-1] + "</h1>")
"""


async def test_a_build_gets_its_vars_masked_and_a_redeploy_reuses_the_build(
    api: Api, make_git_repo: GitRepoFactory
) -> None:
    greeting = "hello-" + uuid.uuid4().hex
    prod_token = "prod-" + uuid.uuid4().hex
    repo = make_git_repo({"build.py": BUILD})
    await create_project(
        api, "envs", repo, build={"build_command": "python3 build.py", "output_dir": "dist"}
    )
    status, body = await api.call(
        "PUT", "/projects/envs/env/GREETING", {"value": greeting, "targets": ["build"]}
    )
    assert status == 200, body
    result = await launchdeck(
        api.platform, "env", "set", "envs", "PROD_TOKEN", prod_token, "--target", "production"
    )
    assert result.code == 0, result.err

    build, deployment = await deploy(api, "envs")
    status, log = await api.call("GET", f"/builds/{build['id']}/logs")
    assert status == 200
    assert "greeting is ***" in log
    assert "production-only var set: False" in log
    assert "▶ Env vars: GREETING" in log
    assert greeting not in log
    status, page = await api.edge_get("envs", "/")
    assert (status, page) == (200, f"<h1>{greeting[::-1]}</h1>")  # the build had the value

    status, redeployed = await api.call("POST", "/projects/envs/redeploy")
    assert status == 202, redeployed
    assert redeployed["build_id"] == build["id"]
    assert redeployed["id"] != deployment["id"]
    await api.wait_deployment(redeployed["id"])
    _, builds = await api.call("GET", "/projects/envs/builds")
    assert [b["id"] for b in builds["items"]] == [build["id"]]  # no rebuild

    listed = await launchdeck(api.platform, "env", "list", "envs")
    assert listed.code == 0, listed.err
    printed = "\n".join(listed.out)
    assert "GREETING" in printed
    assert "PROD_TOKEN" in printed
    for value in (greeting, prod_token):
        assert value not in printed
        for path in ("/projects/envs/env", "/projects/envs/deployments", f"/builds/{build['id']}"):
            _, answer = await api.call("GET", path)
            assert value not in json.dumps(answer)
