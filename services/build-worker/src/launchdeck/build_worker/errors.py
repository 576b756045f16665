"""The errors that mean "the build failed because of the project", not the platform."""

from __future__ import annotations

from launchdeck.contracts.messages import BUILD_REASON_TIMEOUT


class BuildFailed(Exception):
    """A user-facing failure (bad repo, failing command, unknown layout).

    The message is shown as the build's `error` and in its log, so it must read well on its own
    and never contain a secret. The build is reported failed and the job acknowledged: retrying
    the same inputs would fail the same way. `reason` goes with the `failed` event when a client
    may want to act on it (`messages.BUILD_REASON_*`).
    """

    reason: str | None = None


class BuildTimedOut(BuildFailed):
    """The build ran past its time limit, wherever that happened (cloning, a command, between
    steps): one reason, `timeout`, and one wording, whatever was running. `when` says when it
    was reached ("while running `npm run build`"); `limit_s`, when known where it is
    raised, the limit."""

    reason = BUILD_REASON_TIMEOUT

    def __init__(self, when: str, limit_s: float | None = None) -> None:
        self.when = when
        self.limit_s = limit_s
        limit = f" of {limit_s:.0f}s" if limit_s is not None else ""
        super().__init__(
            f"Timed out: the build's time limit{limit} was reached {when}; "
            "its processes were killed"
        )

    def with_limit(self, limit_s: float) -> BuildTimedOut:
        """The same timeout, its message naming the limit (known to the caller, not to
        `run_command` or `clone`, which only get the time left)."""
        return BuildTimedOut(self.when, limit_s)
