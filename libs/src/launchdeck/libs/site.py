"""Publishing a generation job's items as a static site, ready to ship as a static release.

One page per completed item, rendered from the Markdown of one of its outputs (markdown-it-py,
CommonMark plus tables) and then sanitised with nh3, because model output is untrusted: only
nh3's default allow-list of tags and attributes survives; `<script>`, `<style>`, `<iframe>`,
`<object>`, `<embed>` and `<template>` go with their content; event handler (`on*`) and `style`
attributes go; links and images keep only `http`, `https` and `mailto` URLs (or relative ones);
links get `rel="noopener noreferrer nofollow"`. The layout around it is ours, its title escaped,
and each page carries a Content-Security-Policy that forbids scripts as a second line of defence.

Layout, in the directory the site is written to (what a static release holds at its root; the
edge serves `<path>/index.html` for `<path>/` and `404.html` for unknown paths):

    index.html                     the groups (or, without `group_by`, the pages)
    <group>/index.html             a group's pages
    <group>/<item>/index.html      an item's page (`<item>/index.html` without `group_by`)
    404.html, sitemap.xml, robots.txt

Group and item slugs are those of the export manifests (`exports.ItemGrouper`): path-safe,
unique per directory, and an item's page is at its manifest slug. Links between pages are
relative, so the site works under any path; the sitemap's URLs are absolute, from `base_url`.
"""

from __future__ import annotations

import html
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

import nh3
from markdown_it import MarkdownIt
from markdown_it.token import Token

from launchdeck.libs.exports import (
    COMPLETED,
    ExportItem,
    ItemGrouper,
    ItemSource,
    each_item,
    group_value,
)
from launchdeck.libs.tarball import Package, pack

SITEMAP_NS = "http://www.sitemaps.org/schemas/sitemap/0.9"
SITEMAP_MAX_URLS = 50_000  # the protocol's limit per sitemap file; more get a sitemap index
UNGROUPED = "(ungrouped)"  # the display name of items without a group value

# html=True: raw HTML in the Markdown is rendered and then sanitised like the rest, so harmless
# markup (<details>, <sup>) survives and dangerous markup is removed by one policy, nh3's.
_markdown = MarkdownIt("commonmark", {"html": True}).enable("table")
_cleaner = nh3.Cleaner(
    clean_content_tags={"script", "style", "iframe", "object", "embed", "template"},
    url_schemes={"http", "https", "mailto"},
    link_rel="noopener noreferrer nofollow",
    strip_comments=True,
)

_CSP = (
    "default-src 'none'; img-src http: https: data:; style-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'"
)
_STYLE = (
    "body{font:16px/1.6 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;"
    "color:#1d1d1f}nav{font-size:.9rem;margin-bottom:1.5rem}table{border-collapse:collapse}"
    "th,td{border:1px solid #ccc;padding:.3rem .6rem}img{max-width:100%}"
    "pre{overflow-x:auto;background:#f5f5f7;padding:.8rem}"
)


class SiteError(ValueError):
    """The site cannot be written as asked (bad base URL, non-empty directory)."""


def render_markdown(text: str) -> tuple[str, str | None]:
    """`text` as sanitised HTML, and the plain text of its first heading (None without one)."""
    tokens = _markdown.parse(text)
    body = _markdown.renderer.render(tokens, _markdown.options, {})
    return _cleaner.clean(body), _first_heading(tokens)


def sanitize_html(fragment: str) -> str:
    """An untrusted HTML fragment reduced to what `render_markdown` lets through."""
    return _cleaner.clean(fragment)


def _first_heading(tokens: list[Token]) -> str | None:
    for i, token in enumerate(tokens[:-1]):
        if token.type == "heading_open":
            inline = tokens[i + 1]
            text = "".join(
                child.content
                for child in inline.children or []
                if child.type in ("text", "code_inline", "softbreak")
            ).strip()
            return text or None
    return None


def _layout(title: str, body: str, crumbs: list[tuple[str, str]]) -> bytes:
    """A whole page: `title` is plain text (escaped here), `body` trusted or sanitised HTML,
    `crumbs` (href, label) pairs of plain text leading back to the index."""
    nav = " / ".join(
        f'<a href="{html.escape(href)}">{html.escape(label)}</a>' for href, label in crumbs
    )
    return (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        + (f"<nav>{nav}</nav>\n" if crumbs else "")
        + f"<main>\n{body}\n</main>\n</body>\n</html>\n"
    ).encode()


def _link_list(links: list[tuple[str, str]]) -> str:
    items = "".join(
        f'<li><a href="{html.escape(href)}">{html.escape(label)}</a></li>\n'
        for href, label in links
    )
    return f"<ul>\n{items}</ul>"


@dataclass(frozen=True)
class SitePage:
    group: str | None  # the group variable's value; None without `group_by`
    title: str
    path: str  # URL path from the site root, ending in "/": "acme/plumbing-austin/"


@dataclass
class _Group:
    name: str | None
    slug: str | None
    pages: list[SitePage] = field(default_factory=list)


@dataclass(frozen=True)
class SiteSummary:
    directory: Path
    pages: tuple[SitePage, ...]
    groups: int
    skipped: tuple[int, ...]  # indexes of completed items without Markdown in `page_step`
    files: int


def _check_base_url(base_url: str) -> str:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SiteError(f"base_url must be an absolute http(s) URL, not {base_url!r}")
    return base_url.rstrip("/") + "/"


def sitemap_files(base_url: str, paths: list[str]) -> Iterator[tuple[str, bytes]]:
    """`sitemap.xml` listing `base_url` + each path (URL-quoted, XML-escaped); with more than
    SITEMAP_MAX_URLS paths, `sitemap-<n>.xml` files and `sitemap.xml` as their index."""
    base = _check_base_url(base_url)

    def document(root: ET.Element) -> bytes:
        data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
        return data + b"\n"

    def urlset(part: list[str]) -> bytes:
        root = ET.Element("urlset", xmlns=SITEMAP_NS)
        for path in part:
            ET.SubElement(ET.SubElement(root, "url"), "loc").text = base + quote(path)
        return document(root)

    if len(paths) <= SITEMAP_MAX_URLS:
        yield "sitemap.xml", urlset(paths)
        return
    index = ET.Element("sitemapindex", xmlns=SITEMAP_NS)
    for n, start in enumerate(range(0, len(paths), SITEMAP_MAX_URLS), start=1):
        name = f"sitemap-{n}.xml"
        yield name, urlset(paths[start : start + SITEMAP_MAX_URLS])
        ET.SubElement(ET.SubElement(index, "sitemap"), "loc").text = base + name
    yield "sitemap.xml", document(index)


class SiteBuilder:
    """Writes a site into `directory` (created; must be empty) one item at a time: `add` each
    item, in group order as for the export manifests, then `finish` for the indexes and the
    sitemap. Synchronous file writes, a page each: run it in a worker or a thread.

    An item gets a page when its status is `completed` and its `page_step` output is text; its
    title is its `title_variable` value when given and not empty, else its first Markdown
    heading, else its slug. What it keeps in memory is one (title, path) per page.
    """

    def __init__(
        self,
        directory: Path,
        *,
        base_url: str,
        page_step: str,
        group_by: str | None = None,
        title_variable: str | None = None,
        site_title: str = "Generated pages",
    ) -> None:
        self.base = _check_base_url(base_url)
        directory.mkdir(parents=True, exist_ok=True)
        if any(directory.iterdir()):
            raise SiteError(f"{directory} is not empty")
        self.directory = directory
        self.page_step = page_step
        self.group_by = group_by
        self.title_variable = title_variable
        self.site_title = site_title
        self._grouper = ItemGrouper(group_by)
        self._groups: list[_Group] = []
        self._skipped: list[int] = []
        self._files = 0

    def _write(self, rel: str, data: bytes) -> None:
        target = self.directory / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        self._files += 1

    def add(self, item: ExportItem) -> SitePage | None:
        """Write `item`'s page; None when it gets none."""
        _, group_slug, entry = self._grouper.add(item)
        if not self._groups or self._groups[-1].slug != group_slug:
            name = None
            if self.group_by is not None:
                name = group_value(item, self.group_by) or UNGROUPED
            self._groups.append(_Group(name=name, slug=group_slug))
        group = self._groups[-1]
        if item.status != COMPLETED:
            return None
        markdown = item.outputs.get(self.page_step)
        if not isinstance(markdown, str):
            self._skipped.append(item.index)
            return None
        body, heading = render_markdown(markdown)
        wanted = item.variables.get(self.title_variable) if self.title_variable else None
        title = str(wanted) if wanted not in (None, "") else heading or entry.slug
        if group_slug:
            path = f"{group_slug}/{entry.slug}/"
            crumbs = [("../../", self.site_title), ("../", group.name or "")]
        else:
            path = f"{entry.slug}/"
            crumbs = [("../", self.site_title)]
        self._write(path + "index.html", _layout(title, body, crumbs))
        page = SitePage(group=group.name, title=title, path=path)
        group.pages.append(page)
        return page

    def finish(self) -> SiteSummary:
        """Write the indexes, `404.html`, the sitemap and `robots.txt`."""
        self._grouper.finish()
        home = self.site_title
        pages = [page for group in self._groups for page in group.pages]
        if self.group_by is None:
            top = [(page.path, page.title) for page in pages]
        else:
            for group in self._groups:
                name = group.name or ""
                links = [(p.path.removeprefix(f"{group.slug}/"), p.title) for p in group.pages]
                body = f"<h1>{html.escape(name)}</h1>\n{_link_list(links)}"
                self._write(f"{group.slug}/index.html", _layout(name, body, [("../", home)]))
            top = [(f"{g.slug}/", f"{g.name} ({len(g.pages)})") for g in self._groups]
        index = f"<h1>{html.escape(home)}</h1>\n{_link_list(top)}"
        self._write("index.html", _layout(home, index, []))
        self._write("404.html", _layout("Not found", "<h1>Not found</h1>", [("/", home)]))
        group_urls = [f"{g.slug}/" for g in self._groups] if self.group_by else []
        for name, data in sitemap_files(self.base, ["", *group_urls, *(p.path for p in pages)]):
            self._write(name, data)
        robots = f"User-agent: *\nAllow: /\nSitemap: {self.base}sitemap.xml\n"
        self._write("robots.txt", robots.encode())
        return SiteSummary(
            directory=self.directory,
            pages=tuple(pages),
            groups=len(self._groups) if self.group_by else 0,
            skipped=tuple(self._skipped),
            files=self._files,
        )


async def write_site(items: ItemSource, builder: SiteBuilder) -> SiteSummary:
    """Feed `items` (async or plain) to `builder` and finish the site."""
    async for item in each_item(items):
        builder.add(item)
    return builder.finish()


# --- packaging ---------------------------------------------------------------------------------


def package_site(directory: Path, dest: Path) -> Package:
    """`directory` as a static release tarball at `dest`, in the one release format
    (`libs.tarball`), so the deploy-engine unpacks and serves it like any static build."""
    return pack(directory, dest, label="the generated site")
