"""Git-host push webhooks over HTTP, for each host kind (GitHub, GitLab, Gitea/Forgejo, generic):
signed pushes build the pushed commit (production for the project branch, preview otherwise),
bad or missing signatures are 401 and leave nothing, replays never build twice, deletions and
(unless configured) tags build nothing, bodies are capped; and the secret's rotation."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from nats.js import JetStreamContext

from launchdeck.contracts.codec import decode
from launchdeck.contracts.messages import BuildRequested
from launchdeck.contracts.webhooks import WEBHOOK_PROVIDERS
from launchdeck.control_api.api.keys import METRICS
from launchdeck.control_api.housekeeping.prune import Retention, prune_once
from tests.control_api.support import Api, token, unique

SHA = "a" * 40
OTHER_SHA = "b" * 40
ZEROS = "0" * 40
DAY_S = 24 * 3600.0
PUSH_EVENT = {"github": "push", "gitlab": "Push Hook", "gitea": "push", "generic": "push"}
TAG_EVENT = {**PUSH_EVENT, "gitlab": "Tag Push Hook"}
OTHER_EVENT = {"github": "issues", "gitlab": "Issue Hook", "gitea": "issues", "generic": "release"}
EVENT_HEADER = {
    "github": "X-GitHub-Event",
    "gitlab": "X-Gitlab-Event",
    "gitea": "X-Gitea-Event",
    "generic": "X-Event",
}
DELIVERY_HEADER = {
    "github": "X-GitHub-Delivery",
    "gitlab": "X-Gitlab-Event-UUID",
    "gitea": "X-Gitea-Delivery",
    "generic": "X-Delivery-Id",
}

providers = pytest.mark.parametrize("provider", WEBHOOK_PROVIDERS)


def push_body(
    provider: str, ref: str, sha: str, *, message: str = "Fix the header", deleted: bool = False
) -> bytes:
    """A push payload shaped as `provider` sends it (with some of the fields it carries besides,
    which the receiver ignores)."""
    after = ZEROS if deleted else sha
    if provider == "gitlab":
        document: dict[str, Any] = {
            "object_kind": "push",
            "ref": ref,
            "before": OTHER_SHA,
            "after": after,
            "checkout_sha": None if deleted else sha,
            "user_name": "Ada",
            "project": {"id": 15, "name": "site"},
            "commits": [] if deleted else [{"id": sha, "message": message, "added": []}],
            "total_commits_count": 0 if deleted else 1,
        }
    elif provider == "generic":
        document = {"ref": ref, "after": after}
    else:
        document = {
            "ref": ref,
            "before": OTHER_SHA,
            "after": after,
            "created": False,
            "deleted": deleted,
            "forced": False,
            "repository": {"id": 1, "full_name": "me/site"},
            "head_commit": None if deleted else {"id": sha, "message": message},
            "commits": [],
        }
    return json.dumps(document).encode()


def signature_headers(provider: str, secret: str, body: bytes) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    match provider:
        case "gitlab":
            return {"X-Gitlab-Token": secret}
        case "gitea":
            return {"X-Gitea-Signature": digest}
    return {"X-Hub-Signature-256": f"sha256={digest}"}


def hook_headers(
    provider: str,
    secret: str | None,
    body: bytes,
    *,
    event: str | None = None,
    delivery: str | None = None,
) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        EVENT_HEADER[provider]: event or PUSH_EVENT[provider],
        DELIVERY_HEADER[provider]: delivery or str(uuid.uuid4()),
    }
    if secret is not None:
        headers.update(signature_headers(provider, secret, body))
    return headers


class Hooks:
    """Deliveries to one project, as its git host would post them."""

    def __init__(self, api: Api, pool: asyncpg.Pool, project: dict[str, Any]) -> None:
        self.api = api
        self.pool = pool
        self.project = project
        self.secret: str = project["webhook_secret"]

    async def post(
        self,
        provider: str,
        body: bytes,
        *,
        secret: str | None = "",
        event: str | None = None,
        delivery: str | None = None,
        headers: dict[str, str] | None = None,
        project: str | None = None,
    ) -> Any:
        """POST `body` signed with `secret` (the project's by default; None: unsigned)."""
        key = self.secret if secret == "" else secret
        sent = hook_headers(provider, key, body, event=event, delivery=delivery)
        sent.update(headers or {})
        path = f"/api/v1/hooks/{provider}/{project or self.project['name']}"
        return await self.api.call("POST", path, data=body, headers=sent, token="")

    async def push(self, provider: str, ref: str, sha: str = SHA, **kw: Any) -> Any:
        deleted = kw.pop("deleted", False)
        event = kw.pop("event", TAG_EVENT[provider] if ref.startswith("refs/tags/") else None)
        body = push_body(provider, ref, sha, deleted=deleted)
        return await self.post(provider, body, event=event, **kw)

    async def builds(self) -> list[dict[str, Any]]:
        reply = await self.api.call("GET", f"/api/v1/projects/{self.project['id']}/builds")
        assert reply.status == 200, reply.body
        return list(reply.body["items"])

    async def deliveries(self) -> int:
        async with self.pool.acquire() as conn:
            count: int = await conn.fetchval(
                "SELECT count(*) FROM webhook_deliveries WHERE project_id = $1",
                uuid.UUID(self.project["id"]),
            )
        return count


@pytest.fixture
async def hooks(api: Api, pool: asyncpg.Pool) -> Hooks:
    return Hooks(api, pool, await api.create_project(unique("hooked"), branch="main"))


def queued_build_id(reply: Any) -> str:
    assert reply.status == 202, reply.body
    assert reply.body["status"] == "queued", reply.body
    return str(reply.body["build_id"])


@providers
async def test_push_to_the_project_branch_builds_that_commit_for_production(
    hooks: Hooks, pool: asyncpg.Pool, provider: str
) -> None:
    """A signed push to the project branch queues a production build of exactly the pushed
    commit (the worker is told the sha), triggered by `webhook`, and audits it."""
    reply = await hooks.push(provider, "refs/heads/main", SHA, delivery=f"d-{provider}-1")
    build_id = queued_build_id(reply)
    build = (await hooks.api.call("GET", f"/api/v1/builds/{build_id}")).body
    assert build["ref"] == "main"
    assert build["commit_sha"] == SHA
    assert build["environment"] == "production"
    assert build["deploy"] is True
    assert build["trigger"] == "webhook"
    if provider != "generic":  # a generic push need not say the message
        assert build["commit_message"] == "Fix the header"
    async with pool.acquire() as conn:
        payload = await conn.fetchval(
            "SELECT payload FROM outbox WHERE id = $1", uuid.UUID(build_id)
        )
        entry = await conn.fetchrow(
            "SELECT * FROM audit_log WHERE action = 'build.webhook' AND target = $1",
            f"/api/v1/builds/{build_id}",
        )
    command = decode(bytes(payload), BuildRequested)
    assert command.ref == SHA  # checked out exactly, whatever the branch has become since
    assert command.environment == "production"
    assert entry is not None
    assert entry["token_id"] is None
    assert entry["token_name"] == f"webhook:{provider}"
    assert str(entry["project_id"]) == hooks.project["id"]
    assert entry["detail"]["delivery_id"] == f"d-{provider}-1"
    assert entry["detail"]["ref"] == "main"
    assert entry["detail"]["sha"] == SHA
    assert hooks.secret not in json.dumps(entry["detail"])
    assert hooks.api.client.app[METRICS].webhook_deliveries[(provider, "queued")] >= 1


@providers
async def test_a_wrong_or_missing_signature_is_401_and_leaves_nothing(
    hooks: Hooks, provider: str
) -> None:
    """Signed with another secret, or not signed at all: 401 problem+json, no build and no
    delivery recorded (so the same delivery signed right still builds)."""
    body = push_body(provider, "refs/heads/main", SHA)
    wrong = await hooks.post(provider, body, secret="not-the-secret", delivery="same")
    missing = await hooks.post(provider, body, secret=None, delivery="same")
    for reply in (wrong, missing):
        assert reply.status == 401, reply.body
        assert reply.content_type.startswith("application/problem+json")
        assert hooks.secret not in json.dumps(reply.body)
        assert "WWW-Authenticate" not in reply.headers
    assert "header is required" in missing.body["detail"]
    assert await hooks.builds() == []
    assert await hooks.deliveries() == 0
    queued_build_id(await hooks.post(provider, body, delivery="same"))
    assert hooks.api.client.app[METRICS].webhook_deliveries[(provider, "rejected")] >= 2


async def test_a_signature_over_another_body_is_401(hooks: Hooks) -> None:
    """The HMAC covers the raw body: a valid signature of one body does not carry another."""
    signed = push_body("github", "refs/heads/main", SHA)
    forged = push_body("github", "refs/heads/main", OTHER_SHA)
    headers = signature_headers("github", hooks.secret, signed)
    reply = await hooks.post("github", forged, secret=None, headers=headers)
    assert reply.status == 401
    assert await hooks.builds() == []


@providers
async def test_a_replayed_delivery_never_builds_twice(hooks: Hooks, provider: str) -> None:
    """The same delivery id again: 202 `duplicate` naming the first build, still one build."""
    first = await hooks.push(provider, "refs/heads/main", delivery="replayed-1")
    build_id = queued_build_id(first)
    again = await hooks.push(provider, "refs/heads/main", delivery="replayed-1")
    assert again.status == 202
    assert again.body["status"] == "duplicate"
    assert again.body["build_id"] == build_id
    assert [b["id"] for b in await hooks.builds()] == [build_id]
    assert hooks.api.client.app[METRICS].webhook_deliveries[(provider, "duplicate")] >= 1


async def test_a_generic_delivery_without_an_id_is_known_by_its_body(hooks: Hooks) -> None:
    """Without X-Delivery-Id, the body's hash is the id: the same push twice builds once, a
    different push builds again."""
    body = push_body("generic", "refs/heads/main", SHA)
    headers = {"X-Delivery-Id": ""}
    queued_build_id(await hooks.post("generic", body, headers=headers))
    again = await hooks.post("generic", body, headers=headers)
    assert again.body["status"] == "duplicate"
    other = push_body("generic", "refs/heads/main", OTHER_SHA)
    queued_build_id(await hooks.post("generic", other, headers=headers))
    assert len(await hooks.builds()) == 2


@providers
async def test_another_branch_builds_a_preview(hooks: Hooks, provider: str) -> None:
    """A push to any other branch builds that commit for a preview."""
    build_id = queued_build_id(await hooks.push(provider, "refs/heads/feature/login", OTHER_SHA))
    build = (await hooks.api.call("GET", f"/api/v1/builds/{build_id}")).body
    assert (build["ref"], build["commit_sha"], build["environment"]) == (
        "feature/login",
        OTHER_SHA,
        "preview",
    )


@providers
async def test_a_deleted_branch_builds_nothing(hooks: Hooks, provider: str) -> None:
    """A branch deletion (all-zero `after`, GitHub's `deleted`) is 202 ignored, no build."""
    reply = await hooks.push(provider, "refs/heads/feature/old", deleted=True)
    assert reply.status == 202, reply.body
    assert reply.body["status"] == "ignored"
    assert "deleted" in reply.body["reason"]
    assert "build_id" not in reply.body
    assert await hooks.builds() == []


@providers
async def test_tags_build_only_when_the_project_says_so(hooks: Hooks, provider: str) -> None:
    """A pushed tag is ignored by default; with `build_tags` (PATCH) it builds a preview of
    its commit, named by the tag."""
    ignored = await hooks.push(provider, "refs/tags/v1.0.0")
    assert ignored.status == 202, ignored.body
    assert ignored.body["status"] == "ignored"
    assert "build_tags" in ignored.body["reason"]
    assert await hooks.builds() == []

    patched = await hooks.api.call(
        "PATCH", f"/api/v1/projects/{hooks.project['id']}", {"build_tags": True}
    )
    assert patched.status == 200, patched.body
    assert patched.body["build_tags"] is True
    build_id = queued_build_id(await hooks.push(provider, "refs/tags/v1.0.1"))
    build = (await hooks.api.call("GET", f"/api/v1/builds/{build_id}")).body
    assert (build["ref"], build["commit_sha"], build["environment"]) == ("v1.0.1", SHA, "preview")


@providers
async def test_events_other_than_push_are_ignored(hooks: Hooks, provider: str) -> None:
    """A signed delivery of another event is 202 ignored, saying which event."""
    body = json.dumps({"action": "opened", "issue": {"number": 3}}).encode()
    reply = await hooks.post(provider, body, event=OTHER_EVENT[provider])
    assert reply.status == 202, reply.body
    assert reply.body["status"] == "ignored"
    assert OTHER_EVENT[provider] in reply.body["reason"]
    assert await hooks.builds() == []


async def test_a_github_ping_is_answered(hooks: Hooks) -> None:
    """GitHub's ping (sent when a hook is set up) gets a pong-like answer and builds nothing."""
    body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()
    reply = await hooks.post("github", body, event="ping")
    assert reply.status == 202
    assert reply.body["status"] == "ignored"
    assert reply.body["reason"].startswith("pong")


@providers
async def test_an_oversize_body_is_413(hooks: Hooks, provider: str) -> None:
    """A body over LAUNCHDECK_WEBHOOK_MAX_BYTES (1 MiB here) is a 413, before verification."""
    body = b'{"ref": "refs/heads/main", "pad": "' + b"x" * (1024 * 1024) + b'"}'
    reply = await hooks.post(provider, body)
    assert reply.status == 413, reply.body
    assert reply.content_type.startswith("application/problem+json")
    assert await hooks.builds() == []


async def test_an_oversize_body_without_a_length_is_413(hooks: Hooks) -> None:
    """A chunked body (no Content-Length) is cut off once it passes the cap."""

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b"x" * 65536

    path = f"/api/v1/hooks/github/{hooks.project['name']}"
    async with hooks.api.client.post(path, data=chunks(), headers={"X-GitHub-Event": "push"}) as r:
        assert r.status == 413


@providers
async def test_malformed_json_is_400(hooks: Hooks, provider: str) -> None:
    """A correctly signed body that is not JSON is a 400 problem; one of the wrong shape 422."""
    reply = await hooks.post(provider, b'{"ref": "refs/heads/main", "after": ')
    assert reply.status == 400, reply.body
    assert "malformed JSON" in reply.body["detail"]
    wrong = await hooks.post(provider, json.dumps({"ref": 7, "after": SHA}).encode())
    assert wrong.status == 422, wrong.body
    assert wrong.body["errors"][0]["field"] == "ref"
    no_sha = await hooks.post(provider, json.dumps({"ref": "refs/heads/main"}).encode())
    assert no_sha.status == 422, no_sha.body
    assert await hooks.builds() == []


async def test_an_unknown_project_is_404(hooks: Hooks) -> None:
    """An unknown project (id or name) is 404, signed or not; a known one by id works."""
    body = push_body("github", "refs/heads/main", SHA)
    for project in (unique("ghost"), str(uuid.uuid4()), "Not A Name"):
        for secret in (None, hooks.secret):
            reply = await hooks.post("github", body, secret=secret, project=project)
            assert reply.status == 404, (project, reply.body)
    queued_build_id(await hooks.post("github", body, project=hooks.project["id"]))


async def test_forgejo_signs_with_its_own_header(hooks: Hooks) -> None:
    """Forgejo's X-Forgejo-Signature is accepted on the gitea hook."""
    body = push_body("gitea", "refs/heads/main", SHA)
    digest = hmac.new(hooks.secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {"X-Forgejo-Signature": digest, "X-Forgejo-Event": "push"}
    reply = await hooks.post("gitea", body, secret=None, headers=headers)
    queued_build_id(reply)


@providers
async def test_rotating_the_secret_stops_the_old_one_at_once(hooks: Hooks, provider: str) -> None:
    """POST …/webhook-secret answers the new secret (only there); the old one is refused from
    then on and the new one builds."""
    project_path = f"/api/v1/projects/{hooks.project['name']}"
    rotated = await hooks.api.call("POST", f"{project_path}/webhook-secret")
    assert rotated.status == 200, rotated.body
    new = rotated.body["webhook_secret"]
    assert len(new) >= 32
    assert new != hooks.secret
    assert rotated.body["rotated_at"]
    shown = await hooks.api.call("GET", project_path)
    assert "webhook_secret" not in shown.body

    old = await hooks.push(provider, "refs/heads/main")
    assert old.status == 401, old.body
    hooks.secret = new
    queued_build_id(await hooks.push(provider, "refs/heads/main"))


async def test_only_writers_rotate_the_secret(api: Api, hooks: Hooks) -> None:
    """A deploy token of the project is 403, another project's token 404, a writer 200."""
    path = f"/api/v1/projects/{hooks.project['id']}/webhook-secret"
    deployer = token(["read", "deploy"], project_id=hooks.project["id"])
    stranger = token(["write"], project_id=str(uuid.uuid4()))
    writer = token(["write"], project_id=hooks.project["id"])
    assert (await api.call("POST", path, token=deployer)).status == 403
    assert (await api.call("POST", path, token=stranger)).status == 404
    assert (await api.call("POST", path, token=writer)).status == 200


async def test_the_secret_is_sealed_at_rest(hooks: Hooks, pool: asyncpg.Pool) -> None:
    """Postgres holds the webhook secret encrypted (nonce, ciphertext, key id), never in
    plaintext."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT * FROM projects WHERE id = $1", uuid.UUID(hooks.project["id"])
        )
    assert row["webhook_secret"] is None
    assert row["webhook_secret_key_id"]
    assert len(row["webhook_secret_nonce"]) == 12
    assert hooks.secret.encode() not in bytes(row["webhook_secret_ciphertext"])
    for value in dict(row).values():
        assert hooks.secret not in str(value)


async def test_a_project_from_before_sealing_still_verifies(
    hooks: Hooks, pool: asyncpg.Pool
) -> None:
    """A project whose secret is still the plaintext column (created before secrets were
    sealed, until `secrets rotate`) verifies with it."""
    legacy = "legacy-" + uuid.uuid4().hex
    async with pool.acquire() as conn:
        await conn.execute(
            """UPDATE projects SET webhook_secret = $2, webhook_secret_nonce = NULL,
                   webhook_secret_ciphertext = NULL, webhook_secret_key_id = NULL
               WHERE id = $1""",
            uuid.UUID(hooks.project["id"]),
            legacy,
        )
    hooks.secret = legacy
    queued_build_id(await hooks.push("gitea", "refs/heads/main"))


async def test_old_deliveries_are_pruned(
    hooks: Hooks, pool: asyncpg.Pool, js: JetStreamContext
) -> None:
    """Deliveries older than their retention go with the pruning run; a replay of one then
    builds again, a recent one stays a duplicate."""
    queued_build_id(await hooks.push("github", "refs/heads/main", delivery="old-one"))
    queued_build_id(await hooks.push("github", "refs/heads/main", delivery="recent-one"))
    async with pool.acquire() as conn:
        await conn.execute(
            """UPDATE webhook_deliveries SET received_at = now() - interval '31 days'
               WHERE project_id = $1 AND delivery_id = 'old-one'""",
            uuid.UUID(hooks.project["id"]),
        )
    retention = Retention(build_logs_s=90 * DAY_S, processed_events_s=7 * DAY_S, keep_artifacts=10)
    assert retention.webhook_deliveries_s == 30 * DAY_S
    pruned = await prune_once(pool, js, retention)
    assert pruned.webhook_deliveries >= 1
    assert await hooks.deliveries() == 1
    again = await hooks.push("github", "refs/heads/main", delivery="recent-one")
    assert again.body["status"] == "duplicate"
    queued_build_id(await hooks.push("github", "refs/heads/main", delivery="old-one"))
