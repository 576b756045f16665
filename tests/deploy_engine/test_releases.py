"""The release store: atomic `current` swap, listing, pruning, bookkeeping."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from launchdeck.deploy_engine.releases import InvalidName, ProjectMeta, ReleaseStore


def make_release(store: ReleaseStore, project: str, build: str, mtime: float) -> Path:
    path = store.release_dir(project, build)
    path.mkdir(parents=True)
    (path / "index.html").write_text(build)
    os.utime(path, (mtime, mtime))
    return path


def test_activate_swaps_current_and_returns_previous(tmp_path: Path) -> None:
    """`current` is a relative symlink moved atomically from one release to the next."""
    store = ReleaseStore(tmp_path)
    make_release(store, "site", "b1", 1000)
    make_release(store, "site", "b2", 2000)
    assert store.active_build("site") is None
    assert store.activate("site", "b1") is None
    assert store.activate("site", "b2") == "b1"
    link = store.current_link("site")
    assert os.readlink(link) == "b2"
    assert (link / "index.html").read_text() == "b2"
    assert store.active_build("site") == "b2"
    assert sorted(p.name for p in link.parent.iterdir()) == ["b1", "b2", "current"]


def test_activate_missing_release_keeps_current(tmp_path: Path) -> None:
    """Activating a release that is not on disk fails and leaves `current` alone."""
    store = ReleaseStore(tmp_path)
    make_release(store, "site", "b1", 1000)
    store.activate("site", "b1")
    with pytest.raises(FileNotFoundError):
        store.activate("site", "nope")
    assert store.active_build("site") == "b1"


def test_prune_keeps_newest_and_active(tmp_path: Path) -> None:
    """Prune keeps the N newest by mtime plus the active release, removes the rest."""
    store = ReleaseStore(tmp_path)
    for i in range(1, 6):
        make_release(store, "site", f"b{i}", 1000 * i)
    store.activate("site", "b1")  # an old build rolled back to: touched, so now the newest
    os.utime(store.release_dir("site", "b1"), (500, 500))  # ...made the oldest again
    removed = store.prune("site", keep=2)
    assert sorted(removed) == ["b2", "b3"]
    assert [r.build_id for r in store.list_releases("site")] == ["b5", "b4", "b1"]
    assert store.active_build("site") == "b1"


def test_names_that_are_not_path_components_are_refused(tmp_path: Path) -> None:
    """Project names and build ids never reach the filesystem unless they are plain names."""
    store = ReleaseStore(tmp_path)
    for bad in ("../x", "Site", "", "a/b", ".hidden"):
        with pytest.raises(InvalidName):
            store.project_dir(bad)
    for bad in ("../x", "current", "a/b", ".tmp"):
        with pytest.raises(InvalidName):
            store.release_dir("site", bad)


def test_meta_round_trip_and_leftovers(tmp_path: Path) -> None:
    """Project metadata survives a restart; interrupted work is cleaned at start."""
    store = ReleaseStore(tmp_path)
    store.write_meta("site", ProjectMeta(domains=["example.test"], previews=["b9"]))
    assert store.read_meta("site") == ProjectMeta(domains=["example.test"], previews=["b9"])
    (store.project_dir("site") / ".tmp-b1-abcd").mkdir()
    (store.project_dir("site") / ".incoming-b1-abcd.tar.gz").write_bytes(b"x")
    assert store.clean_leftovers() == 2
    assert sorted(p.name for p in store.project_dir("site").iterdir()) == [".project.json"]
    assert store.projects() == ["site"]


def test_current_never_goes_missing_while_activations_swap_it(tmp_path: Path) -> None:
    """A reader looping over `current` during 300 activations always finds it, pointing at a
    release: the swap is one rename, never an unlink followed by a new link."""
    store = ReleaseStore(tmp_path)
    builds = ("b1", "b2")
    for i, build in enumerate(builds):
        make_release(store, "site", build, 1000 * (i + 1))
    store.activate("site", "b1")
    link = store.current_link("site")
    done = threading.Event()
    seen: list[str] = []
    misses: list[str] = []

    def reader() -> None:
        while not done.is_set():
            try:
                seen.append(os.readlink(link))
            except FileNotFoundError as exc:
                misses.append(str(exc))

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        for i in range(300):
            store.activate("site", builds[i % 2 - 1])  # b2, b1, b2, …
    finally:
        done.set()
        thread.join()
    assert misses == [], f"`current` was missing {len(misses)} time(s) during the swaps"
    assert set(seen) <= set(builds)
    assert len(seen) > 300, "the reader must have run alongside the activations"
    assert store.active_build("site") == "b1"
