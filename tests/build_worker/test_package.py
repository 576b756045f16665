"""Packing an output directory into a release tarball."""

from __future__ import annotations

import hashlib
import os
import tarfile
from pathlib import Path

import pytest

from launchdeck.libs.tarball import NothingToShip, pack


def test_tarball_holds_relative_entries_and_its_sha256(tmp_path: Path) -> None:
    """Files and directories are packed under relative names; sha256 and size match the file."""
    site = tmp_path / "site"
    (site / "assets" / "img").mkdir(parents=True)
    (site / "index.html").write_text("<h1>home</h1>")
    (site / "assets" / "app.js").write_text("console.log(1)")
    (site / "assets" / "img" / "logo.png").write_bytes(bytes(range(256)) * 10)
    (site / "empty").mkdir()
    tool = site / "run.sh"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o700)

    package = pack(site, tmp_path / "out.tar.gz")

    data = (tmp_path / "out.tar.gz").read_bytes()
    assert package.sha256 == hashlib.sha256(data).hexdigest()
    assert package.size == len(data)
    assert package.files == 4
    with tarfile.open(tmp_path / "out.tar.gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert sorted(members) == [
            "assets", "assets/app.js", "assets/img", "assets/img/logo.png",
            "empty", "index.html", "run.sh",
        ]  # fmt: skip
        assert all(not name.startswith(("/", "..")) for name in members)
        assert members["empty"].isdir()
        assert members["run.sh"].mode == 0o755
        assert members["index.html"].mode == 0o644
        assert {m.uid for m in members.values()} == {0}
        logo = tar.extractfile("assets/img/logo.png")
        assert logo is not None
        assert logo.read() == bytes(range(256)) * 10


def test_links_inside_are_kept_outside_are_left_out(tmp_path: Path) -> None:
    """A link within the output stays a relative link; a link leading out is dropped, reported."""
    secret = tmp_path / "secret.txt"
    secret.write_text("worker credentials")
    site = tmp_path / "site"
    (site / "docs").mkdir(parents=True)
    (site / "index.html").write_text("home")
    (site / "docs" / "home.html").symlink_to(site / "index.html")  # absolute, but inside
    (site / "leak.txt").symlink_to(secret)
    (site / "up").symlink_to("..")
    os.mkfifo(site / "pipe")

    package = pack(site, tmp_path / "out.tar.gz")

    with tarfile.open(tmp_path / "out.tar.gz") as tar:
        names = tar.getnames()
        link = tar.getmember("docs/home.html")
    assert link.issym()
    assert link.linkname == "../index.html"
    assert "leak.txt" not in names
    assert "up" not in names
    assert "pipe" not in names
    assert b"worker credentials" not in (tmp_path / "out.tar.gz").read_bytes()
    assert sorted(s.split(":")[0] for s in package.skipped) == ["leak.txt", "pipe", "up"]


def test_git_directories_are_never_packed(tmp_path: Path) -> None:
    """Shipping the repository root leaves its .git directory out."""
    site = tmp_path / "repo"
    (site / ".git" / "objects").mkdir(parents=True)
    (site / ".git" / "config").write_text("[core]")
    (site / "index.html").write_text("home")
    pack(site, tmp_path / "out.tar.gz")
    with tarfile.open(tmp_path / "out.tar.gz") as tar:
        assert tar.getnames() == ["index.html"]


def test_an_output_without_files_fails(tmp_path: Path) -> None:
    """An output directory with no file at all fails the build with a readable reason."""
    (tmp_path / "dist" / "nested").mkdir(parents=True)
    with pytest.raises(NothingToShip, match="Nothing to ship: dist/ contains no files"):
        pack(tmp_path / "dist", tmp_path / "out.tar.gz", label="dist/")
