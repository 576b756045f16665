"""A per-process cache of encoded list pages of one project (the builds list, the API's hottest
read), with a stated staleness bound.

An entry is served for at most `ttl_s` (1 s), counted from before the query that filled it:
that bounds how stale a page can be after a change this process did not see (another replica's
write, a direct SQL change). Changes this process makes call `invalidate(project_id)` *after
they committed* (the write routes' middleware, the events consumer, the scheduler), and an entry
filled by a query that started before such a call is never served: `mark()` takes the
generation before the query and `put` files the entry under it, so a query that raced a commit
cannot bring back the old page. Authorisation is the caller's, on every request, hit or miss:
an entry carries the project's id for it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Hashable
from dataclasses import dataclass

# How long an entry is served: the bound on staleness for changes made elsewhere.
PAGE_CACHE_TTL_S = 1.0
# Entries (and per-project invalidation marks) kept at most; past it the cache is emptied.
PAGE_CACHE_MAX_ENTRIES = 2048


@dataclass(frozen=True, slots=True)
class Mark:
    """Taken before the query whose result will be `put`: the generation and the time."""

    generation: int
    at: float


@dataclass(frozen=True, slots=True)
class _Entry:
    project_id: uuid.UUID
    body: bytes
    mark: Mark


class PageCache:
    def __init__(
        self,
        *,
        ttl_s: float = PAGE_CACHE_TTL_S,
        max_entries: int = PAGE_CACHE_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl_s = ttl_s
        self._max = max_entries
        self._clock = clock
        self._entries: dict[Hashable, _Entry] = {}
        self._generation = 0
        # The generation of each project's last invalidation, and of the last "everything".
        self._invalidated: dict[uuid.UUID, int] = {}
        self._all_invalidated = 0

    def mark(self) -> Mark:
        return Mark(self._generation, self._clock())

    def get(self, key: Hashable) -> tuple[uuid.UUID, bytes] | None:
        """The project's id and the page's body, if an entry is fresh and still valid."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if not self._valid(entry, self._clock()):
            del self._entries[key]
            return None
        return entry.project_id, entry.body

    def put(self, key: Hashable, project_id: uuid.UUID, body: bytes, mark: Mark) -> None:
        entry = _Entry(project_id, body, mark)
        now = self._clock()
        if not self._valid(entry, now):  # invalidated (or expired) while it was fetched
            return
        if len(self._entries) >= self._max:
            self._entries = {k: e for k, e in self._entries.items() if self._valid(e, now)}
            if len(self._entries) >= self._max:
                self._entries.clear()
        self._entries[key] = entry

    def invalidate(self, project_id: uuid.UUID | None = None) -> None:
        """After a change to the project's builds committed (None: a project we cannot name,
        so every entry): no entry filled before this call is served again."""
        self._generation += 1
        if project_id is None or len(self._invalidated) >= self._max:
            self._all_invalidated = self._generation
            self._invalidated.clear()
            self._entries.clear()
            return
        self._invalidated[project_id] = self._generation

    def _valid(self, entry: _Entry, now: float) -> bool:
        filled = entry.mark.generation
        return (
            now - entry.mark.at < self._ttl_s
            and self._all_invalidated <= filled
            and self._invalidated.get(entry.project_id, 0) <= filled
        )
