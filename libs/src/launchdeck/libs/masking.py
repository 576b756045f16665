"""Masking secret values in log lines: every occurrence of a project's env var values becomes
`***` before a line leaves the process that read it.

One masker for every log of user code: the build-worker masks build output with it, the
deploy-engine app output, so the two can never disagree about what counts as a secret. Lines are
masked one at a time, so a multi-line value (a PEM key) is masked line by line too: a build that
prints the key prints it over several log lines, each of which must lose its part.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

MASK = "***"
# Masking one- or two-character values (`1`, `on`) would shred every line for nothing.
MIN_SECRET_LEN = 3

Masker = Callable[[str], str]


def secret_parts(secrets: Iterable[str]) -> set[str]:
    """What to look for: each value, and each line of a multi-line value, when long enough."""
    parts: set[str] = set()
    for value in secrets:
        for candidate in (value, *value.splitlines()):
            candidate = candidate.strip("\r")
            if len(candidate) >= MIN_SECRET_LEN:
                parts.add(candidate)
    return parts


def make_masker(secrets: Iterable[str]) -> Masker | None:
    """A function replacing every secret value in a line with `***`, or None when there is
    nothing to mask (callers then skip the call on their per-line path).

    The longest values are tried first, so a value containing another is masked whole.
    """
    values = sorted(secret_parts(secrets), key=lambda v: (-len(v), v))
    if not values:
        return None
    pattern = re.compile("|".join(re.escape(v) for v in values))
    return lambda line: pattern.sub(MASK, line)
