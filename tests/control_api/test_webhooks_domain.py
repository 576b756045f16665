"""The pure part of webhooks (`domain.webhooks`): signature verification per host, events,
delivery ids, push payloads and what a push builds. No servers."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from launchdeck.contracts.webhooks import WebhookProvider
from launchdeck.control_api.domain import webhooks as hooks
from launchdeck.control_api.domain.errors import DomainError, Invalid

SECRET = "s3cret-for-the-hook"
BODY = b'{"ref": "refs/heads/main", "after": "' + b"a" * 40 + b'"}'
HEX = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
SHA = "c" * 40
PROJECT = hooks.ProjectPolicy(name="site", branch="main", build_tags=False)


def push(ref: str, after: str | None = SHA, **fields: object) -> hooks.PushPayload:
    return hooks.parse_push(json.dumps({"ref": ref, "after": after, **fields}).encode())


@pytest.mark.parametrize(
    ("provider", "headers"),
    [
        ("github", {"X-Hub-Signature-256": f"sha256={HEX}"}),
        ("github", {"X-Hub-Signature-256": f"sha256={HEX.upper()}"}),  # hex in either case
        ("generic", {"X-Hub-Signature-256": f"sha256={HEX}"}),
        ("gitlab", {"X-Gitlab-Token": SECRET}),
        ("gitea", {"X-Gitea-Signature": HEX}),
        ("gitea", {"X-Forgejo-Signature": HEX}),
    ],
)
def test_a_right_signature_verifies(provider: WebhookProvider, headers: dict[str, str]) -> None:
    """Each host's scheme, computed over the raw body with the project's secret, passes."""
    hooks.verify(provider, headers, BODY, SECRET)


@pytest.mark.parametrize(
    ("provider", "headers"),
    [
        ("github", {}),
        ("github", {"X-Hub-Signature-256": HEX}),  # the prefix is part of the scheme
        ("github", {"X-Hub-Signature-256": "sha256=" + "0" * 64}),
        ("github", {"X-Gitea-Signature": HEX}),  # another host's header
        ("generic", {"X-Hub-Signature-256": "sha256=é"}),  # non-ASCII: unequal, no crash
        ("gitlab", {"X-Gitlab-Token": SECRET + "x"}),
        ("gitlab", {"X-Gitlab-Token": ""}),
        ("gitea", {"X-Gitea-Signature": f"sha256={HEX}"}),
        ("gitea", {"X-Gitea-Signature": HEX[:-1]}),
    ],
)
def test_a_wrong_or_missing_signature_is_rejected(
    provider: WebhookProvider, headers: dict[str, str]
) -> None:
    """Missing, malformed or computed with another secret: SignatureRejected (401), whose
    message never holds the expected value."""
    with pytest.raises(hooks.SignatureRejected) as caught:
        hooks.verify(provider, headers, BODY, SECRET)
    assert caught.value.status == 401
    assert HEX not in caught.value.detail
    assert SECRET not in caught.value.detail


def test_the_signature_covers_the_body() -> None:
    """A signature of one body does not verify another."""
    with pytest.raises(hooks.SignatureRejected):
        hooks.verify("github", {"X-Hub-Signature-256": f"sha256={HEX}"}, BODY + b" ", SECRET)


@pytest.mark.parametrize(
    ("provider", "headers", "kind"),
    [
        ("github", {"X-GitHub-Event": "push"}, "push"),
        ("github", {"X-GitHub-Event": "ping"}, "ping"),
        ("github", {"X-GitHub-Event": "pull_request"}, "other"),
        ("github", {}, "other"),
        ("gitlab", {"X-Gitlab-Event": "Push Hook"}, "push"),
        ("gitlab", {"X-Gitlab-Event": "Tag Push Hook"}, "push"),
        ("gitlab", {"X-Gitlab-Event": "Merge Request Hook"}, "other"),
        ("gitea", {"X-Gitea-Event": "push"}, "push"),
        ("gitea", {"X-Forgejo-Event": "push"}, "push"),
        ("gitea", {"X-Gitea-Event": "delete"}, "other"),
        ("generic", {}, "push"),
        ("generic", {"X-Event": "release"}, "other"),
    ],
)
def test_events(provider: WebhookProvider, headers: dict[str, str], kind: str) -> None:
    """Which deliveries are pushes (the only ones that may build)."""
    assert hooks.event_of(provider, headers).kind == kind


def test_delivery_ids() -> None:
    """The host's delivery header, else the body's hash; a malformed id is a 400."""
    assert hooks.delivery_id("github", {"X-GitHub-Delivery": "72d3162e"}, BODY) == "72d3162e"
    assert hooks.delivery_id("gitlab", {"Idempotency-Key": "k-1"}, BODY) == "k-1"
    assert hooks.delivery_id("gitea", {"X-Forgejo-Delivery": "f-1"}, BODY) == "f-1"
    by_body = hooks.delivery_id("generic", {}, BODY)
    assert by_body == "sha256:" + hashlib.sha256(BODY).hexdigest()
    assert hooks.delivery_id("generic", {}, BODY + b" ") != by_body
    for bad in ("has space", "x" * 201, "new\nline"):
        with pytest.raises(DomainError):
            hooks.delivery_id("github", {"X-GitHub-Delivery": bad}, BODY)


def test_payloads_are_read_leniently() -> None:
    """Unknown fields are ignored; malformed JSON is a 400 and the wrong shape a 422 naming
    the field."""
    payload = push("refs/heads/main", repository={"id": 1}, pusher={"name": "ada"})
    assert payload.ref == "refs/heads/main"
    assert payload.after == SHA
    with pytest.raises(DomainError) as malformed:
        hooks.parse_push(b'{"ref": ')
    assert malformed.value.status == 400
    with pytest.raises(Invalid) as wrong:
        hooks.parse_push(b'{"ref": "refs/heads/main", "deleted": "yes"}')
    assert wrong.value.errors[0].field == "deleted"
    with pytest.raises(Invalid) as missing:
        hooks.parse_push(b'{"after": "abc"}')
    assert missing.value.errors[0].field == "ref"


def test_a_form_encoded_payload_is_read() -> None:
    """GitHub's form content type: the JSON is the `payload` field."""
    form = b"payload=%7B%22ref%22%3A%22refs%2Fheads%2Fmain%22%7D"
    assert hooks.json_body(form, hooks.FORM) == b'{"ref":"refs/heads/main"}'
    assert hooks.json_body(BODY, "application/json") == BODY
    with pytest.raises(DomainError):
        hooks.json_body(b"other=1", hooks.FORM)


def test_the_project_branch_builds_for_production_and_others_for_previews() -> None:
    """The pushed sha of the project branch → production; any other branch → preview."""
    main = hooks.decide(PROJECT, push("refs/heads/main", head_commit={"message": "Fix"}))
    assert main == hooks.Build(ref="main", sha=SHA, environment="production", message="Fix")
    feature = hooks.decide(PROJECT, push("refs/heads/feature/x", SHA.upper()))
    assert feature == hooks.Build(ref="feature/x", sha=SHA, environment="preview", message=None)


def test_deleted_branches_and_tags_build_nothing() -> None:
    """`deleted`, or an all-zero `after`: ignored, saying so."""
    for payload in (
        push("refs/heads/old", "0" * 40),
        push("refs/heads/old", None, deleted=True),
        push("refs/tags/v1", "0" * 40),
    ):
        decision = hooks.decide(PROJECT, payload)
        assert isinstance(decision, hooks.Ignore)
        assert "deleted" in decision.reason


def test_tags_build_only_when_configured() -> None:
    """A tag is ignored unless `build_tags`; then its commit (not an annotated tag's object)
    builds for a preview."""
    tagged = push("refs/tags/v1.2", "d" * 40, head_commit={"id": SHA, "message": "Release"})
    ignored = hooks.decide(PROJECT, tagged)
    assert isinstance(ignored, hooks.Ignore)
    assert "build_tags" in ignored.reason
    tags = hooks.ProjectPolicy(name="site", branch="main", build_tags=True)
    assert hooks.decide(tags, tagged) == hooks.Build(
        ref="v1.2", sha=SHA, environment="preview", message="Release"
    )
    gitlab = push("refs/tags/v2", "d" * 40, checkout_sha=SHA)
    assert hooks.decide(tags, gitlab) == hooks.Build(
        ref="v2", sha=SHA, environment="preview", message=None
    )


def test_gitlab_commit_messages_come_from_the_commits_list() -> None:
    payload = push(
        "refs/heads/main",
        commits=[{"id": "e" * 40, "message": "older"}, {"id": SHA, "message": "newest\x00"}],
    )
    decision = hooks.decide(PROJECT, payload)
    assert isinstance(decision, hooks.Build)
    assert decision.message == "newest"


def test_refs_that_are_not_branches_or_tags_or_not_buildable() -> None:
    """Other refs are ignored; a ref name or sha no git would send is a 422."""
    other = hooks.decide(PROJECT, push("refs/notes/commits"))
    assert isinstance(other, hooks.Ignore)
    for payload, field in (
        (push("refs/heads/-upload-pack"), "ref"),
        (push("refs/heads/a..b"), "ref"),
        (push("refs/heads/new\nline"), "ref"),
        (push("refs/heads/main", "not-a-sha"), "after"),
        (push("refs/heads/main", "abc123"), "after"),
        (push("refs/heads/main", None), "after"),
    ):
        with pytest.raises(Invalid) as caught:
            hooks.decide(PROJECT, payload)
        assert caught.value.errors[0].field == field
