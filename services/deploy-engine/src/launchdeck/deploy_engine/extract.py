"""Safe extraction of a release artifact (tar.gz) into a new, immutable release directory.

Pure and synchronous (run it in a thread). The archive's sha256 is checked first; members are
then written into a temporary directory beside the target, which is renamed into place only when
everything passed, so a refused archive leaves no partial release behind. Refused: absolute paths,
`..` components, links resolving outside the release, device/fifo files, and archives with more
than `max_files` members or `max_bytes` of content (the decompressed stream is bounded too, so a
gzip bomb stops early).

Why symlinks are created last: while regular files are written no link exists in the tree, so
no write can be redirected through one. Each link is checked on disk (`realpath`) right after it
is made, and every link again once all of them exist: a link is resolved through the links that
exist when it is checked, so a chain made in reverse order (`l3 → l2/..`, `l2 → l1/..`,
`l1 → .`) looks harmless link by link and escapes only when complete. The second pass resolves
each link in the finished tree, which is what the edge will serve.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import secrets
import shutil
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

CHUNK = 1024 * 1024
# Per-member tar overhead allowed in the decompressed stream (header blocks, pax records, padding).
_MEMBER_OVERHEAD = 3 * 512
_STREAM_SLACK = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    max_files: int = 20_000
    max_bytes: int = 1024 * 1024 * 1024  # total size of the extracted content


@dataclass(frozen=True)
class ExtractStats:
    files: int
    bytes: int


class ReleaseArchiveError(Exception):
    """The artifact cannot become a release (base class)."""


class ChecksumMismatch(ReleaseArchiveError):
    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"artifact sha256 mismatch: expected {expected}, got {actual}")
        self.expected = expected
        self.actual = actual


class UnsafeArchive(ReleaseArchiveError):
    """A member (or the archive as a whole) that extraction refuses."""

    def __init__(self, reason: str, member: str | None = None) -> None:
        where = f"unsafe archive member {member!r}" if member else "unsafe archive"
        super().__init__(f"{where}: {reason}")
        self.reason = reason
        self.member = member


class InvalidArchive(ReleaseArchiveError):
    """Not a readable tar.gz."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class _BoundedReader:
    """A read-only stream that refuses to yield more than `limit` bytes (decompression bomb)."""

    def __init__(self, raw: io.BufferedIOBase, limit: int) -> None:
        self._raw = raw
        self._limit = limit
        self._read = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._read += len(data)
        if self._read > self._limit:
            raise UnsafeArchive(f"archive expands beyond {self._limit} bytes")
        return data


def extract_release(
    archive: Path, dest: Path, *, sha256: str | None, limits: Limits = Limits()
) -> ExtractStats:
    """Verify `archive` and extract it into the new directory `dest` (which must not exist)."""
    if sha256 is not None:
        actual = sha256_file(archive)
        if actual.lower() != sha256.lower():
            raise ChecksumMismatch(sha256, actual)
    if dest.exists() or dest.is_symlink():
        raise FileExistsError(f"release directory {dest} already exists")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = dest.parent / f".tmp-{dest.name}-{secrets.token_hex(4)}"
    staging.mkdir(mode=0o755)
    try:
        stats = _extract_into(archive, staging, limits)
        os.rename(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return stats


def _member_path(name: str, *, what: str = "path") -> PurePosixPath | None:
    """The member's path relative to the release root; None for the root itself."""
    if not name or "\x00" in name:
        raise UnsafeArchive(f"empty or invalid {what}", name)
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith("/"):
        raise UnsafeArchive(f"absolute {what}", name)
    parts = [p for p in path.parts if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive(f"'..' in {what}", name)
    return PurePosixPath(*parts) if parts else None


def _inside(root: Path, candidate: str) -> bool:
    return os.path.commonpath([str(root), candidate]) == str(root)


class _Extractor:
    def __init__(self, root: Path, limits: Limits) -> None:
        self.root = root
        self.real_root = Path(os.path.realpath(root))
        self.limits = limits
        self.files = 0
        self.bytes = 0
        self.regular: set[PurePosixPath] = set()
        self.seen: set[PurePosixPath] = set()
        self.links: list[tuple[tarfile.TarInfo, PurePosixPath]] = []

    def count(self, member: tarfile.TarInfo, size: int) -> None:
        self.files += 1
        if self.files > self.limits.max_files:
            raise UnsafeArchive(f"more than {self.limits.max_files} files", member.name)
        self.bytes += size
        if self.bytes > self.limits.max_bytes:
            raise UnsafeArchive(f"content exceeds {self.limits.max_bytes} bytes", member.name)

    def add(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        rel = _member_path(member.name)
        if rel is None:
            if member.isdir():
                return  # the archive's own root entry ("./")
            raise UnsafeArchive("a non-directory at the archive root", member.name)
        if member.ischr() or member.isblk() or member.isfifo() or member.isdev():
            raise UnsafeArchive("device or fifo files are not allowed", member.name)
        if rel in self.seen and not member.isdir():
            raise UnsafeArchive("duplicate member", member.name)
        self.seen.add(rel)
        target = self.root / rel
        if member.isdir():
            self.count(member, 0)
            _mkdir(target, member)
        elif member.isreg():
            self.count(member, member.size)
            self._write(tar, member, target)
            self.regular.add(rel)
        elif member.islnk():
            try:
                source = _member_path(member.linkname, what="hard link target")
            except UnsafeArchive as exc:
                raise UnsafeArchive(f"{exc.reason} {member.linkname!r}", member.name) from exc
            if source is None or source not in self.regular:
                raise UnsafeArchive("hard link to something outside the release", member.name)
            self.count(member, member.size or (self.root / source).stat().st_size)
            _mkdir(target.parent, member)
            if target.exists():
                raise UnsafeArchive("path conflicts with another member", member.name)
            # A copy, not a link: a release shares no inode with anything.
            shutil.copyfile(self.root / source, target, follow_symlinks=False)
            os.chmod(target, _file_mode(member.mode))
            self.regular.add(rel)
        elif member.issym():
            self.count(member, 0)
            self._check_link_text(member, rel)
            self.links.append((member, rel))
        else:
            raise UnsafeArchive(f"unsupported member type {member.type!r}", member.name)

    def _write(self, tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> None:
        _mkdir(target.parent, member)
        source = tar.extractfile(member)
        if source is None:
            raise UnsafeArchive("unreadable file member", member.name)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        try:
            fd = os.open(target, flags, _file_mode(member.mode))
        except (FileExistsError, IsADirectoryError, NotADirectoryError) as exc:
            raise UnsafeArchive("path conflicts with another member", member.name) from exc
        written = 0
        with os.fdopen(fd, "wb") as out:
            while chunk := source.read(CHUNK):
                written += len(chunk)
                if written > member.size:
                    raise UnsafeArchive("member larger than declared", member.name)
                out.write(chunk)

    def _check_link_text(self, member: tarfile.TarInfo, rel: PurePosixPath) -> None:
        text = member.linkname
        if not text or "\x00" in text:
            raise UnsafeArchive("empty symlink target", member.name)
        if text.startswith("/"):
            raise UnsafeArchive(f"symlink to absolute path {text!r}", member.name)
        resolved = os.path.normpath(os.path.join(str(rel.parent), text))
        if resolved == ".." or resolved.startswith("../"):
            raise UnsafeArchive(f"symlink {text!r} points outside the release", member.name)

    def finish_links(self) -> None:
        for member, rel in self.links:
            target = self.root / rel
            parent = os.path.realpath(target.parent)
            if not _inside(self.real_root, parent):
                raise UnsafeArchive("symlink inside a link that leaves the release", member.name)
            _mkdir(target.parent, member)
            try:
                os.symlink(member.linkname, target)
            except FileExistsError as exc:
                raise UnsafeArchive("path conflicts with another member", member.name) from exc
            self._check_resolves_inside(member, rel)
        # Links checked above may go through links made after them: resolve each one again
        # now that the tree is complete.
        for member, rel in self.links:
            self._check_resolves_inside(member, rel)

    def _check_resolves_inside(self, member: tarfile.TarInfo, rel: PurePosixPath) -> None:
        if not _inside(self.real_root, os.path.realpath(self.root / rel)):
            raise UnsafeArchive(
                f"symlink {member.linkname!r} resolves outside the release", member.name
            )


def _mkdir(path: Path, member: tarfile.TarInfo) -> None:
    try:
        path.mkdir(mode=0o755, parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise UnsafeArchive("path conflicts with another member", member.name) from exc


def _file_mode(mode: int) -> int:
    # Keep the executable bits, drop setuid/setgid/sticky and group/world write.
    return (mode & 0o755) | 0o644


def _extract_into(archive: Path, root: Path, limits: Limits) -> ExtractStats:
    extractor = _Extractor(root, limits)
    stream_limit = limits.max_bytes + limits.max_files * _MEMBER_OVERHEAD + _STREAM_SLACK
    try:
        with gzip.open(archive, "rb") as raw:
            bounded = _BoundedReader(raw, stream_limit)
            with tarfile.open(fileobj=bounded, mode="r|") as tar:  # type: ignore[call-overload]
                for member in tar:
                    extractor.add(tar, member)
    except (tarfile.TarError, gzip.BadGzipFile, zlib.error, EOFError) as exc:
        raise InvalidArchive(f"artifact is not a valid tar.gz: {exc}") from exc
    extractor.finish_links()
    return ExtractStats(files=extractor.files, bytes=extractor.bytes)
