"""The one error type that means "the build failed because of the project", not the platform."""

from __future__ import annotations


class BuildFailed(Exception):
    """A user-facing failure (bad repo, failing command, unknown layout).

    The message is shown as the build's `error` and in its log, so it must read well on its own
    and never contain a secret. The build is reported failed and the job acknowledged: retrying
    the same inputs would fail the same way.
    """
