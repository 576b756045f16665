"""Packing a directory into a release tarball (tar.gz) and its sha256: the one format of static
and process releases, written by the build-worker and by the publish of generated sites.

Pure file-system logic. Entries are relative paths in a stable order; ownership is dropped; only
directories, regular files and symbolic links that stay inside the directory are packed. A link
pointing outside (or any other special file) is left out and reported, never followed: following
it would ship the worker's own files. `.git` directories are never packed.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path

COMPRESS_LEVEL = 3  # static sites are mostly text; level 3 is several times faster than 9
EXCLUDED_NAMES = frozenset({".git"})


class NothingToShip(Exception):
    """The directory holds no file to pack (the message names it)."""


@dataclass(frozen=True)
class Package:
    path: Path
    sha256: str
    size: int
    files: int
    skipped: tuple[str, ...]  # "<path>: <why>" for entries left out


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _info(name: str, st: os.stat_result, type_: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = type_
    info.mtime = int(st.st_mtime)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    executable = type_ == tarfile.DIRTYPE or bool(st.st_mode & stat.S_IXUSR)
    info.mode = 0o755 if executable else 0o644
    return info


def pack(source: Path, dest: Path, *, label: str = "the output directory") -> Package:
    """Write `source`'s tree to `dest` as tar.gz; NothingToShip if it holds no file."""
    base = source.resolve()
    files = 0
    skipped: list[str] = []

    with tarfile.open(dest, "w:gz", compresslevel=COMPRESS_LEVEL) as tar:

        def add_tree(directory: Path, prefix: str) -> None:
            nonlocal files
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
            for entry in entries:
                if entry.name in EXCLUDED_NAMES:
                    continue
                name = f"{prefix}{entry.name}"
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    target = Path(entry.path).resolve()
                    if not target.is_relative_to(base):
                        skipped.append(
                            f"{name}: link to {os.readlink(entry.path)} leaves the output directory"
                        )
                        continue
                    info = _info(name, st, tarfile.SYMTYPE)
                    # Rewritten relative to the link, so it means the same after extraction.
                    link_dir = (base / name).parent
                    info.linkname = os.path.relpath(target, link_dir)
                    info.mode = 0o777
                    tar.addfile(info)
                elif stat.S_ISDIR(st.st_mode):
                    tar.addfile(_info(name, st, tarfile.DIRTYPE))
                    add_tree(Path(entry.path), f"{name}/")
                elif stat.S_ISREG(st.st_mode):
                    info = _info(name, st, tarfile.REGTYPE)
                    info.size = st.st_size
                    with open(entry.path, "rb") as f:
                        tar.addfile(info, f)
                    files += 1
                else:
                    skipped.append(f"{name}: not a regular file, directory or link")

        add_tree(base, "")

    if files == 0:
        raise NothingToShip(f"Nothing to ship: {label} contains no files")
    return Package(
        path=dest,
        sha256=sha256_file(dest),
        size=dest.stat().st_size,
        files=files,
        skipped=tuple(skipped),
    )
