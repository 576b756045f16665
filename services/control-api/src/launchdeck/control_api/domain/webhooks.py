"""Git-host push webhooks, the pure part: verifying a delivery, reading its event and payload,
and deciding what it builds. No I/O: `webhook_receipts` records and acts on the decision.

Verification (constant-time compares, over the raw body as received):
- GitHub and generic: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`;
- GitLab: `X-Gitlab-Token` is the secret itself (GitLab does not sign bodies);
- Gitea and Forgejo: `X-Gitea-Signature` (or `X-Forgejo-Signature`): the hex HMAC, no prefix.

What a push builds: a branch deletion nothing; the project branch a production build of the
pushed commit, any other branch a preview build of it; a tag nothing, unless the project has
`build_tags` (then a preview build of the tagged commit, to promote by hand).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs

import msgspec

from launchdeck.contracts.api import GitRef
from launchdeck.contracts.statuses import Environment
from launchdeck.contracts.webhooks import WebhookProvider
from launchdeck.control_api.domain.errors import DomainError, FieldError, Invalid

# --- verification -----------------------------------------------------------------------------


class SignatureRejected(DomainError):
    """The delivery does not prove it knows the project's secret: 401, and nothing recorded.
    No `WWW-Authenticate: Bearer`: a bearer token would not help."""

    status = 401
    title = "Unauthorized"


class PayloadTooLarge(DomainError):
    status = 413
    title = "Content Too Large"


GITHUB_SIGNATURE = "X-Hub-Signature-256"
GITLAB_TOKEN = "X-Gitlab-Token"
GITEA_SIGNATURES = ("X-Gitea-Signature", "X-Forgejo-Signature")


def hmac_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _same(expected: str, given: str) -> bool:
    # Bytes, so a header with non-ASCII characters compares (unequal) instead of raising.
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogateescape"))


def _header(headers: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    """The first of `names` present (name, stripped value)."""
    for name in names:
        value = headers.get(name)
        if value is not None:
            return name, value.strip()
    return None


def verify(provider: WebhookProvider, headers: Mapping[str, str], body: bytes, secret: str) -> None:
    """Return when the delivery carries proof of `secret` for this body; SignatureRejected (which
    names the header expected, never a value) otherwise."""
    match provider:
        case "github" | "generic":
            names: tuple[str, ...] = (GITHUB_SIGNATURE,)
            expected = "sha256=" + hmac_hex(secret, body)
        case "gitlab":
            names = (GITLAB_TOKEN,)
            expected = secret
        case "gitea":
            names = GITEA_SIGNATURES
            expected = hmac_hex(secret, body)
    found = _header(headers, *names)
    if found is None or not found[1]:
        raise SignatureRejected(f"the {' or '.join(names)} header is required")
    name, given = found
    if provider != "gitlab":
        given = given.lower()  # hex digits in either case
    if not _same(expected, given):
        what = "the webhook secret" if provider == "gitlab" else "the body and the webhook secret"
        raise SignatureRejected(f"{name} does not match {what} of this project")


# --- delivery ids -----------------------------------------------------------------------------

DELIVERY_HEADERS: dict[WebhookProvider, tuple[str, ...]] = {
    "github": ("X-GitHub-Delivery",),
    "gitlab": ("X-Gitlab-Event-UUID", "Idempotency-Key"),
    "gitea": ("X-Gitea-Delivery", "X-Forgejo-Delivery"),
    "generic": ("X-Delivery-Id", "Idempotency-Key"),
}
_DELIVERY_ID = re.compile(r"[\x21-\x7e]{1,200}")  # printable ASCII, no space


def delivery_id(provider: WebhookProvider, headers: Mapping[str, str], body: bytes) -> str:
    """The id replays are known by: the host's delivery header, else the body's SHA-256 (the
    same push sent twice is the same body)."""
    found = _header(headers, *DELIVERY_HEADERS[provider])
    if found is not None and found[1]:
        name, value = found
        if not _DELIVERY_ID.fullmatch(value):
            raise DomainError(f"{name} must be 1 to 200 printable ASCII characters")
        return value
    return "sha256:" + hashlib.sha256(body).hexdigest()


# --- events -----------------------------------------------------------------------------------

EventKind = Literal["push", "ping", "other"]


@dataclass(frozen=True)
class Event:
    kind: EventKind
    name: str  # as the host names it, for the answer and the record


EVENT_HEADERS: dict[WebhookProvider, tuple[str, ...]] = {
    "github": ("X-GitHub-Event",),
    "gitlab": ("X-Gitlab-Event",),
    "gitea": ("X-Gitea-Event", "X-Forgejo-Event"),
    "generic": ("X-Event",),
}
_PUSH_EVENTS: dict[WebhookProvider, frozenset[str]] = {
    "github": frozenset({"push"}),
    "gitlab": frozenset({"Push Hook", "Tag Push Hook"}),
    "gitea": frozenset({"push"}),
    "generic": frozenset({"push"}),
}


def event_of(provider: WebhookProvider, headers: Mapping[str, str]) -> Event:
    """The delivery's event; a generic delivery without an event header is a push."""
    found = _header(headers, *EVENT_HEADERS[provider])
    name = found[1][:100] if found else ""
    if not name:
        return Event("push", "push") if provider == "generic" else Event("other", "(none)")
    if name in _PUSH_EVENTS[provider]:
        return Event("push", name)
    if name == "ping" and provider in ("github", "gitea"):
        return Event("ping", name)
    return Event("other", name)


# --- payloads ---------------------------------------------------------------------------------
# Lenient: unknown fields are ignored (hosts send dozens), only what is read is typed.


class Commit(msgspec.Struct, kw_only=True, frozen=True):
    id: str | None = None
    message: str | None = None


class PushPayload(msgspec.Struct, kw_only=True, frozen=True):
    """What a push says, for every host: GitHub and Gitea (`deleted`, `head_commit`), GitLab
    (`checkout_sha`, `commits`), a generic sender (`ref` and `after` are enough)."""

    ref: str
    after: str | None = None
    deleted: bool = False
    checkout_sha: str | None = None
    head_commit: Commit | None = None
    commits: list[Commit] = []


class _AnyObject(msgspec.Struct):
    """Any JSON object: what a delivery that is not a push must at least be."""


FORM = "application/x-www-form-urlencoded"


def json_body(body: bytes, content_type: str) -> bytes:
    """The JSON document of the body: GitHub can be set to post it as the `payload` field of
    a form instead."""
    if content_type != FORM:
        return body
    try:
        fields = parse_qs(body.decode(), strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        raise DomainError("malformed form body: expected payload=<JSON>") from None
    payload = fields.get("payload")
    if not payload:
        raise DomainError("the form body has no payload field")
    return payload[0].encode()


def parse_push(body: bytes) -> PushPayload:
    """The push payload (malformed JSON → 400, the wrong shape → 422 naming the field)."""
    try:
        return msgspec.json.decode(body, type=PushPayload)
    except msgspec.ValidationError as exc:
        raise _invalid(exc) from None
    except msgspec.DecodeError as exc:
        raise DomainError(f"malformed JSON: {exc}") from None
    except UnicodeDecodeError:  # msgspec lets the codec's error through
        raise DomainError("the body is not valid UTF-8") from None
    except RecursionError:  # skipping an unknown field recurses too
        raise DomainError("malformed JSON: nested too deeply") from None


def check_json_object(body: bytes) -> None:
    """Malformed JSON is a 400 even for an event that is ignored."""
    try:
        msgspec.json.decode(body, type=_AnyObject)
    except msgspec.ValidationError:
        raise Invalid.field("body", "must be a JSON object") from None
    except msgspec.DecodeError as exc:
        raise DomainError(f"malformed JSON: {exc}") from None
    except UnicodeDecodeError:  # msgspec lets the codec's error through
        raise DomainError("the body is not valid UTF-8") from None
    except RecursionError:  # skipping an unknown field recurses too
        raise DomainError("malformed JSON: nested too deeply") from None


def _invalid(exc: msgspec.ValidationError) -> Invalid:
    message = str(exc)
    field = "body"
    if " - at `$." in message:
        message, _, path = message.partition(" - at `$.")
        field = path.rstrip("`")
    elif message.startswith("Object missing required field `"):
        field = message.split("`")[1]
        message = "is required"
    return Invalid(f"{field}: {message}", [FieldError(field, message)])


# --- the decision -----------------------------------------------------------------------------

ZERO_SHA = re.compile(r"0+")
COMMIT_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # SHA-1 or SHA-256 repositories
MAX_MESSAGE = 4096


def buildable_ref(name: str) -> bool:
    """The same rule as a ref given to `POST …/builds` (`contracts.api.GitRef`)."""
    try:
        msgspec.convert(name, GitRef)
    except msgspec.ValidationError:
        return False
    return True


@dataclass(frozen=True)
class Build:
    """Build commit `sha` of `ref` (a branch or tag name) for `environment`."""

    ref: str
    sha: str
    environment: Environment
    message: str | None


@dataclass(frozen=True)
class Ignore:
    reason: str


Decision = Build | Ignore


@dataclass(frozen=True)
class ProjectPolicy:
    """What of a project decides what a push builds."""

    name: str
    branch: str
    build_tags: bool


def decide(project: ProjectPolicy, push: PushPayload) -> Decision:
    """What `push` builds for `project` (Invalid for a ref or sha no git would send)."""
    if push.ref.startswith("refs/heads/"):
        kind, name = "branch", push.ref.removeprefix("refs/heads/")
    elif push.ref.startswith("refs/tags/"):
        kind, name = "tag", push.ref.removeprefix("refs/tags/")
    else:
        return Ignore(f"{push.ref!r} is neither a branch nor a tag")
    if not buildable_ref(name):
        raise Invalid.field("ref", f"{push.ref!r} is not a ref Launchdeck can build")
    after = (push.after or "").lower()
    if push.deleted or (after and ZERO_SHA.fullmatch(after)):
        return Ignore(f"{kind} {name!r} was deleted: nothing to build")
    if kind == "tag" and not project.build_tags:
        return Ignore(f"tag {name!r}: project {project.name!r} does not build tags (build_tags)")
    sha = _commit_sha(kind, push)
    if sha is None:
        raise Invalid.field("after", "must be the pushed commit's full hexadecimal sha")
    environment: Environment = (
        "production" if kind == "branch" and name == project.branch else "preview"
    )
    return Build(ref=name, sha=sha, environment=environment, message=_message(push, sha))


def _commit_sha(kind: str, push: PushPayload) -> str | None:
    """The commit to check out. For a branch, `after` (the new head). For a tag, the commit it
    points at where the host says it (GitLab `checkout_sha`, GitHub `head_commit`): an
    annotated tag's `after` is the tag object, not the commit."""
    candidates = [push.after]
    if kind == "tag":
        head = push.head_commit.id if push.head_commit else None
        candidates = [push.checkout_sha, head, push.after]
    elif push.after is None:
        candidates = [push.checkout_sha]
    for candidate in candidates:
        if candidate and COMMIT_SHA.fullmatch(candidate.lower()):
            return candidate.lower()
    return None


def _message(push: PushPayload, sha: str) -> str | None:
    """The pushed commit's message when the payload has it (`head_commit`, or GitLab's
    `commits`), cut to MAX_MESSAGE characters and without NUL (Postgres refuses it)."""
    message = None
    if push.head_commit is not None and push.head_commit.message is not None:
        message = push.head_commit.message
    else:
        matching = [c for c in push.commits if c.id and c.id.lower() == sha]
        if matching:
            message = matching[-1].message
    if message is None:
        return None
    return message.replace("\x00", "")[:MAX_MESSAGE]
