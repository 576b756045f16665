"""Safe extraction of release artifacts: what is refused, and that a refusal writes nothing."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

from launchdeck.deploy_engine.extract import (
    ChecksumMismatch,
    InvalidArchive,
    Limits,
    UnsafeArchive,
    extract_release,
)

from .archives import Member, directory, file, hardlink, make_tar_gz, sha256, symlink


def snapshot(root: Path) -> set[str]:
    """Every path under `root` (links not followed), to prove nothing else was written."""
    found: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            found.add(os.path.relpath(os.path.join(dirpath, name), root))
    return found


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "releases" / "site").mkdir(parents=True)
    return tmp_path


def write_archive(workdir: Path, members: list[Member]) -> tuple[Path, str]:
    data = make_tar_gz(members)
    archive = workdir / "artifact.tar.gz"
    archive.write_bytes(data)
    return archive, sha256(data)


def assert_refused(
    workdir: Path, members: list[Member], member: str | None, limits: Limits | None = None
) -> UnsafeArchive:
    archive, digest = write_archive(workdir, members)
    before = snapshot(workdir)
    dest = workdir / "releases" / "site" / "b1"
    with pytest.raises(UnsafeArchive) as info:
        extract_release(archive, dest, sha256=digest, limits=limits or Limits())
    assert info.value.member == member
    if member:
        assert repr(member) in str(info.value)
    assert snapshot(workdir) == before, "a refused archive changed the disk"
    assert not dest.exists()
    return info.value


def test_extracts_a_site_with_dirs_and_inner_links(workdir: Path) -> None:
    """An honest archive becomes the release dir with content, inner links and file modes."""
    archive, digest = write_archive(
        workdir,
        [
            directory("./"),
            file("./index.html", "<h1>home</h1>"),
            directory("./assets"),
            file("./assets/app.js", "console.log(1)"),
            Member("./bin/run.sh", b"#!/bin/sh\n", mode=0o4755),
            symlink("./latest.js", "assets/app.js"),
            symlink("./assets/self", "."),
            hardlink("./copy.html", "index.html"),
        ],
    )
    dest = workdir / "releases" / "site" / "b1"
    stats = extract_release(archive, dest, sha256=digest)
    assert (dest / "index.html").read_text() == "<h1>home</h1>"
    assert (dest / "latest.js").read_text() == "console.log(1)"
    assert os.readlink(dest / "latest.js") == "assets/app.js"
    assert (dest / "copy.html").read_text() == "<h1>home</h1>"
    assert (dest / "copy.html").stat().st_ino != (dest / "index.html").stat().st_ino
    assert (dest / "bin/run.sh").stat().st_mode & 0o7777 == 0o755  # setuid dropped
    assert stats.files == 7
    assert [p.name for p in dest.parent.iterdir()] == ["b1"]  # no staging dir left


def test_refuses_parent_traversal(workdir: Path) -> None:
    """A `../` member is refused and nothing lands beside the release."""
    assert_refused(
        workdir, [file("index.html", "ok"), file("../../escaped.txt", "x")], "../../escaped.txt"
    )


def test_refuses_dotdot_inside_a_path(workdir: Path) -> None:
    """`a/../../x` is refused even though it starts inside."""
    assert_refused(workdir, [file("a/../../x.txt", "x")], "a/../../x.txt")


def test_refuses_absolute_path(workdir: Path) -> None:
    """An absolute member path is refused and the file is not created there."""
    target = workdir / "absolute.txt"
    error = assert_refused(workdir, [file(str(target), "x")], str(target))
    assert "absolute" in error.reason
    assert not target.exists()


def test_refuses_symlink_pointing_outside(workdir: Path) -> None:
    """A relative symlink climbing out of the release is refused."""
    assert_refused(workdir, [file("index.html", "ok"), symlink("evil", "../../../outside")], "evil")


def test_refuses_absolute_symlink(workdir: Path) -> None:
    """A symlink to an absolute path (e.g. /etc/passwd) is refused."""
    assert_refused(workdir, [symlink("passwd", "/etc/passwd")], "passwd")


def test_refuses_symlink_chain_that_escapes_only_on_disk(workdir: Path) -> None:
    """Links that look inside one by one but escape together are caught on disk."""
    error = assert_refused(
        workdir,
        [
            directory("sub"),
            symlink("sub/up", ".."),  # the release root: fine
            symlink("t", "sub/up/.."),  # lexically "sub", on disk the release's parent
            symlink("t/planted", "x"),
        ],
        "t",
    )
    assert "outside" in error.reason


def test_refuses_link_chain_created_in_reverse_order(workdir: Path) -> None:
    """`l3 → l2/..`, `l2 → l1/..`, `l1 → .`: each link resolves inside while the ones it goes
    through do not exist yet; once all exist, `l2` is the release's parent and `l3` above it.
    Every link is checked again against the finished tree, and the release is refused."""
    error = assert_refused(
        workdir,
        [
            file("index.html", "ok"),
            symlink("l3", "l2/.."),
            symlink("l2", "l1/.."),
            symlink("l1", "."),
        ],
        "l3",
    )
    assert "outside" in error.reason


def test_refuses_reverse_link_chain_in_a_subdirectory(workdir: Path) -> None:
    """The same chain one level down escapes two levels up through `sub/l2/..`."""
    assert_refused(
        workdir,
        [
            directory("sub"),
            symlink("sub/l3", "l2/../.."),  # lexically the release root: fine on its own
            symlink("sub/l2", "l1/.."),
            symlink("sub/l1", "."),
        ],
        "sub/l3",
    )


def test_refuses_write_through_symlinked_directory(workdir: Path) -> None:
    """A file under a path that is also a symlink cannot be written through the link."""
    assert_refused(workdir, [symlink("d", "sub"), directory("sub"), file("d/f.txt", "x")], "d")


def test_refuses_hardlink_outside(workdir: Path) -> None:
    """A hard link to a file outside the release (relative or absolute) is refused."""
    assert_refused(workdir, [hardlink("h", "../../artifact.tar.gz")], "h")
    assert_refused(workdir, [hardlink("h", "/etc/passwd")], "h")


def test_refuses_hardlink_to_unknown_member(workdir: Path) -> None:
    """A hard link must name a regular file extracted earlier from the same archive."""
    assert_refused(workdir, [hardlink("h", "not-there.txt")], "h")


def test_refuses_device_files(workdir: Path) -> None:
    """Character/block devices and fifos are refused."""
    for kind in (tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE):
        error = assert_refused(workdir, [Member("dev", type=kind)], "dev")
        assert "device" in error.reason


def test_refuses_too_many_files(workdir: Path) -> None:
    """More members than the limit is refused (at the first one past it)."""
    members = [file(f"f{i}.txt", "x") for i in range(6)]
    error = assert_refused(workdir, members, "f5.txt", Limits(max_files=5, max_bytes=10_000))
    assert "more than 5 files" in error.reason


def test_refuses_too_many_bytes(workdir: Path) -> None:
    """Content beyond the byte limit is refused before it is written."""
    members = [file("a.bin", b"a" * 600), file("b.bin", b"b" * 600)]
    error = assert_refused(workdir, members, "b.bin", Limits(max_files=10, max_bytes=1000))
    assert "exceeds 1000 bytes" in error.reason


def test_checksum_mismatch_extracts_nothing(workdir: Path) -> None:
    """A wrong sha256 is reported before any member is read."""
    archive, _ = write_archive(workdir, [file("index.html", "ok")])
    dest = workdir / "releases" / "site" / "b1"
    with pytest.raises(ChecksumMismatch, match="sha256 mismatch"):
        extract_release(archive, dest, sha256="0" * 64)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []


def test_not_a_tar_gz(workdir: Path) -> None:
    """Garbage is an InvalidArchive and leaves no partial release."""
    archive = workdir / "artifact.tar.gz"
    archive.write_bytes(b"this is not gzip")
    dest = workdir / "releases" / "site" / "b1"
    with pytest.raises(InvalidArchive, match=r"not a valid tar\.gz"):
        extract_release(archive, dest, sha256=None)
    assert list(dest.parent.iterdir()) == []


def test_release_dir_is_never_overwritten(workdir: Path) -> None:
    """Releases are immutable: extracting onto an existing release fails."""
    archive, digest = write_archive(workdir, [file("index.html", "new")])
    dest = workdir / "releases" / "site" / "b1"
    dest.mkdir()
    (dest / "index.html").write_text("old")
    with pytest.raises(FileExistsError):
        extract_release(archive, dest, sha256=digest)
    assert (dest / "index.html").read_text() == "old"
