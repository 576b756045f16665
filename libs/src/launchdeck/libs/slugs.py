"""Path-safe slugs for names that come from users and models (group values, page titles).

A slug is one path segment made of `[a-z0-9-]`: never empty, never `.` or `..`, never a path
separator, so `<slug>/...` stays inside the directory or zip it is written into whatever the
value was. Exports (manifest paths in a zip) and published sites (page directories) share it, so
a manifest's item slug is also the page's path.
"""

from __future__ import annotations

import re
import unicodedata

MAX_SLUG_CHARS = 80  # a path segment well under any file system's 255-byte limit
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def slugify(value: str, *, fallback: str = "item") -> str:
    """`value` as a lower-case ASCII slug (accents folded, anything else a dash); `fallback`
    when nothing is left (e.g. a title that is only punctuation or non-Latin script)."""
    folded = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")
    slug = _NOT_SLUG.sub("-", folded.lower()).strip("-")[:MAX_SLUG_CHARS].strip("-")
    return slug or fallback


class UniqueSlugs:
    """Hands out slugs unique within one scope (a directory): the second "a" is "a-2", the third
    "a-3"; a later "a-2" that is already taken becomes "a-2-2". Never hands out one slug twice."""

    def __init__(self) -> None:
        self._taken: set[str] = set()

    def take(self, value: str, *, fallback: str = "item") -> str:
        base = slugify(value, fallback=fallback)
        slug, n = base, 1
        while slug in self._taken:
            n += 1
            slug = f"{base}-{n}"
        self._taken.add(slug)
        return slug
