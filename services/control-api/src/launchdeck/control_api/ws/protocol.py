"""The server's reading of client messages and channel names (the wire types themselves are
in `launchdeck.contracts.ws`): what a client may ask for, and the error text when it is wrong.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

import msgspec

from launchdeck.contracts import ws as wire
from launchdeck.control_api.api.problems import field_error


class BadRequest(Exception):
    """A client message the server cannot act on; the text goes back as an error frame."""


def decode_client_message(data: str | bytes) -> wire.ClientMessage:
    try:
        return wire.decode_client_message(data)
    except msgspec.ValidationError as exc:
        if "matching regex" in str(exc):  # a sentence rather than the regular expression
            error = field_error(exc)
            raise BadRequest(f"invalid message: {error.field}: {error.message}") from None
        raise BadRequest(f"invalid message: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None
    except RecursionError:  # msgspec's depth limit is Python's recursion limit
        raise BadRequest("malformed JSON: nested too deeply") from None


@dataclass(frozen=True)
class BuildLogsChannel:
    build_id: str


@dataclass(frozen=True)
class ProjectEventsChannel:
    project: str  # an id or a name, resolved against the projects table


@dataclass(frozen=True)
class ProjectLogsChannel:
    project: str  # an id or a name: the running app's log lines


@dataclass(frozen=True)
class GenerationChannel:
    job_id: str


@dataclass(frozen=True)
class RunLogsChannel:
    run_id: str


Channel = (
    BuildLogsChannel
    | ProjectEventsChannel
    | ProjectLogsChannel
    | GenerationChannel
    | RunLogsChannel
)

_BUILD_LOGS = re.compile(r"build:(?P<id>[^:]+):logs")
_PROJECT_EVENTS = re.compile(r"project:(?P<id>[^:]+):events")
_PROJECT_LOGS = re.compile(r"project:(?P<id>[^:]+):logs")
_GENERATION = re.compile(r"generation:(?P<id>[^:]+)")
_RUN_LOGS = re.compile(r"run:(?P<id>[^:]+):logs")


def _uuid(value: str, what: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise BadRequest(f"{what} must be a UUID, got {value!r}") from None


def parse_channel(name: str) -> Channel:
    if match := _BUILD_LOGS.fullmatch(name):
        return BuildLogsChannel(_uuid(match["id"], "a build id"))
    if match := _PROJECT_EVENTS.fullmatch(name):
        return ProjectEventsChannel(match["id"])
    if match := _PROJECT_LOGS.fullmatch(name):
        return ProjectLogsChannel(match["id"])
    if match := _GENERATION.fullmatch(name):
        return GenerationChannel(_uuid(match["id"], "a generation id"))
    if match := _RUN_LOGS.fullmatch(name):
        return RunLogsChannel(_uuid(match["id"], "a run id"))
    raise BadRequest(
        f"unknown channel {name!r}: expected build:<id>:logs, project:<id>:events, "
        "project:<id>:logs, generation:<id> or run:<id>:logs"
    )
