"""Generated items published as a static site (`libs.site`): pages, sanitised model output,
indexes, sitemap, unique slugs, the directory and its tarball."""

from __future__ import annotations

import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from launchdeck.libs.exports import ExportItem
from launchdeck.libs.site import (
    SiteBuilder,
    SiteError,
    package_site,
    render_markdown,
    sitemap_files,
    write_site,
)

SITEMAP = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
BASE_URL = "https://pages.example.test/"


def item(index: int, business: str, service: str, page: Any, **overrides: Any) -> ExportItem:
    fields: dict[str, Any] = {
        "index": index,
        "status": "done",
        "variables": {"business": business, "service": service},
        "outputs": {"outline": {"h": 1}, "page": page},
    }
    fields.update(overrides)
    return ExportItem(**fields)


def read(site: Path, rel: str) -> str:
    return (site / rel).read_text()


@pytest.mark.parametrize(
    ("markdown", "forbidden"),
    [
        ("Hi <script>alert('x')</script> there", ["<script", "alert("]),
        ('<img src="/a.png" onerror="alert(1)">', ["onerror", "alert("]),
        ('<p onclick="steal()" onmouseover="x()">p</p>', ["onclick", "onmouseover", "steal"]),
        ('<a href="javascript:alert(1)">a</a>', ["javascript:"]),
        ('<a href=" JaVaScRiPt:alert(1)">a</a>', ["javascript:", "JaVaScRiPt"]),
        ("[link](javascript:alert(1))", ['href="javascript']),
        ('<iframe src="https://evil.test/"></iframe>', ["<iframe", "evil.test"]),
        ('<p style="position:fixed;background:url(x)">s</p>', ["style=", "position:fixed"]),
        ("<style>body{display:none}</style>", ["<style", "display:none"]),
        ('<object data="x.swf"></object><embed src="x.swf">', ["<object", "<embed", "x.swf"]),
        ('<svg onload="alert(1)"><use href="#x"/></svg>', ["<svg", "onload"]),
        ('<a href="data:text/html;base64,PHNjcmlwdD4=">d</a>', ["data:text"]),
        ('<form action="https://evil.test/"><input name="p"></form>', ["<form", "<input"]),
    ],
)
def test_markdown_output_is_sanitised(markdown: str, forbidden: list[str]) -> None:
    """Scripts, event handlers, javascript:/data: URLs, iframes, styles and forms are removed."""
    html, _ = render_markdown(markdown)
    for needle in forbidden:
        assert needle not in html


def test_markdown_keeps_safe_markup_tables_and_links() -> None:
    """CommonMark, tables, safe links (with rel) and harmless raw HTML survive."""
    html, heading = render_markdown(
        "# Plumbing in *Austin*\n\n"
        "Call **now**: [site](https://acme.test/a?b=1&c=2)\n\n"
        "| Service | Price |\n|---|--:|\n| Repair | $90 |\n\n"
        "<details><summary>More</summary>Text</details>"
    )
    assert heading == "Plumbing in Austin"
    assert "<h1>Plumbing in <em>Austin</em></h1>" in html
    assert "<strong>now</strong>" in html
    assert 'href="https://acme.test/a?b=1&amp;c=2"' in html
    assert 'rel="noopener noreferrer nofollow"' in html
    assert "<table>" in html
    assert "<td>Repair</td>" in html
    assert "<details><summary>More</summary>Text</details>" in html


def business_items() -> list[ExportItem]:
    return [
        item(0, "Acme <Plumbing>", "Repair", "# Repair & more\n\nWe fix <b>pipes</b>."),
        item(1, "Acme <Plumbing>", "Repair", "# Repair again\n\nA second page, same slug."),
        item(2, "Acme <Plumbing>", "Install", None, status="failed", outputs={}),
        item(3, "Acme <Plumbing>", "Drains", {"not": "markdown"}),
        item(4, "Bolt Electric", "Wiring", "No heading here.\n\n<script>alert(1)</script>"),
    ]


async def test_site_has_a_page_per_completed_item_with_indexes(tmp_path: Path) -> None:
    """Pages for completed items with Markdown; an index per group and one of groups."""
    site = tmp_path / "site"
    summary = await write_site(
        business_items(),
        SiteBuilder(site, base_url=BASE_URL, page_step="page", group_by="business"),
    )
    assert [p.path for p in summary.pages] == [
        "acme-plumbing/repair/",
        "acme-plumbing/repair-2/",
        "bolt-electric/wiring/",
    ]
    assert summary.groups == 2
    assert summary.skipped == (3,)  # completed, but its page output is JSON

    page = read(site, "acme-plumbing/repair/index.html")
    assert page.startswith("<!doctype html>")
    assert "<title>Repair &amp; more</title>" in page
    assert "We fix <b>pipes</b>." in page
    assert "Content-Security-Policy" in page
    assert '<a href="../">Acme &lt;Plumbing&gt;</a>' in page  # group crumb, escaped
    assert '<a href="../../">Generated pages</a>' in page

    no_heading = read(site, "bolt-electric/wiring/index.html")
    assert "<title>wiring</title>" in no_heading  # falls back to the slug
    assert "<script" not in no_heading

    group_index = read(site, "acme-plumbing/index.html")
    assert "<h1>Acme &lt;Plumbing&gt;</h1>" in group_index
    assert '<a href="repair/">Repair &amp; more</a>' in group_index
    assert '<a href="repair-2/">Repair again</a>' in group_index
    assert "install" not in group_index

    top = read(site, "index.html")
    assert '<a href="acme-plumbing/">Acme &lt;Plumbing&gt; (2)</a>' in top
    assert '<a href="bolt-electric/">Bolt Electric (1)</a>' in top
    assert (site / "404.html").is_file()
    assert "Sitemap: https://pages.example.test/sitemap.xml" in read(site, "robots.txt")


async def test_sitemap_lists_absolute_urls(tmp_path: Path) -> None:
    """sitemap.xml parses as XML and lists the home, group indexes and pages, absolutely."""
    site = tmp_path / "site"
    await write_site(
        business_items(),
        SiteBuilder(
            site, base_url="https://x.test/sub?a=1&b=2", page_step="page", group_by="business"
        ),
    )
    root = ET.parse(site / "sitemap.xml").getroot()
    assert root.tag == f"{SITEMAP}urlset"
    locs = [loc.text for loc in root.iter(f"{SITEMAP}loc")]
    base = "https://x.test/sub?a=1&b=2/"
    assert locs == [
        base,
        base + "acme-plumbing/",
        base + "bolt-electric/",
        base + "acme-plumbing/repair/",
        base + "acme-plumbing/repair-2/",
        base + "bolt-electric/wiring/",
    ]
    assert b"&amp;b=2" in (site / "sitemap.xml").read_bytes()


def test_large_sitemap_becomes_an_index() -> None:
    """More URLs than a sitemap may hold are split, with sitemap.xml as their index."""
    paths = [f"p{i}/" for i in range(50_001)]
    files = dict(sitemap_files(BASE_URL, paths))
    assert sorted(files) == ["sitemap-1.xml", "sitemap-2.xml", "sitemap.xml"]
    index = ET.fromstring(files["sitemap.xml"])
    assert index.tag == f"{SITEMAP}sitemapindex"
    assert [loc.text for loc in index.iter(f"{SITEMAP}loc")] == [
        BASE_URL + "sitemap-1.xml",
        BASE_URL + "sitemap-2.xml",
    ]
    assert len(ET.fromstring(files["sitemap-2.xml"])) == 1


async def test_site_without_groups_and_with_a_title_variable(tmp_path: Path) -> None:
    """Without group_by pages sit at the root; a title variable wins over the heading."""
    site = tmp_path / "site"
    items = [
        item(0, "Acme", "<Repair>", "# Heading"),
        item(1, "Acme", "<Repair>", "# Other"),
        item(2, "../..", "/etc/passwd", "text"),
    ]
    summary = await write_site(
        items,
        SiteBuilder(
            site, base_url=BASE_URL, page_step="page", title_variable="service", site_title="A&B"
        ),
    )
    assert [p.path for p in summary.pages] == ["acme-repair/", "acme-repair-2/", "etc-passwd/"]
    assert "<title>&lt;Repair&gt;</title>" in read(site, "acme-repair/index.html")
    top = read(site, "index.html")
    assert "<title>A&amp;B</title>" in top
    assert '<a href="etc-passwd/">/etc/passwd</a>' in top
    written = {p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file()}
    assert written == {
        "index.html",
        "404.html",
        "robots.txt",
        "sitemap.xml",
        "acme-repair/index.html",
        "acme-repair-2/index.html",
        "etc-passwd/index.html",
    }
    assert summary.files == len(written)


def test_builder_refuses_a_bad_base_url_or_a_used_directory(tmp_path: Path) -> None:
    """A relative base URL or a directory with files in it is refused before writing."""
    with pytest.raises(SiteError, match="absolute"):
        SiteBuilder(tmp_path / "a", base_url="/relative", page_step="page")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "old.html").write_text("stale")
    with pytest.raises(SiteError, match="not empty"):
        SiteBuilder(tmp_path / "b", base_url=BASE_URL, page_step="page")


async def test_package_site_is_a_static_release_tarball(tmp_path: Path) -> None:
    """The written site packs to a tar.gz of relative paths in sorted order, owner 0."""
    site = tmp_path / "site"
    await write_site(
        business_items(),
        SiteBuilder(site, base_url=BASE_URL, page_step="page", group_by="business"),
    )
    package = package_site(site, tmp_path / "site.tar.gz")
    with tarfile.open(package.path, "r:gz") as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names[:3] == ["404.html", "acme-plumbing", "acme-plumbing/index.html"]
    assert "bolt-electric/wiring/index.html" in names
    assert all(not m.name.startswith(("/", "..")) and m.uid == 0 for m in members)
    assert package.files == sum(m.isfile() for m in members) == 9
    assert len(package.sha256) == 64
    extracted = tmp_path / "out"
    with tarfile.open(package.path, "r:gz") as tar:
        tar.extractall(extracted, filter="data")
    assert read(extracted, "index.html") == read(site, "index.html")
