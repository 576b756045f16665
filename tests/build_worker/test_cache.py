"""The dependency cache on the file system: keys, snapshots, restore, save, pruning, damage."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import pytest

from launchdeck.build_worker.cache.key import CacheKey, cache_key
from launchdeck.build_worker.cache.snapshot import Snapshot
from launchdeck.build_worker.cache.store import MANIFEST, STALE_TEMP_S, ProjectCache
from launchdeck.build_worker.cache.transfer import CacheError
from launchdeck.build_worker.detect import BuildPlan, package_manager
from tests.build_worker.test_detect import make_tree

PATH = os.environ.get("PATH", "")
PROJECT = "0b8f3c1e-2a4d-4c55-9e1f-6a7b8c9d0e1f"


def plan_for(checkout: Path, root: Path | None = None, install: str | None = "npm ci") -> BuildPlan:
    return BuildPlan(
        kind="static",
        description="test",
        checkout=checkout,
        root=root or checkout,
        install_command=install,
        build_command="npm run build",
        output_candidates=("dist",),
    )


def npm_project(root: Path, lock: str = '{"lockfileVersion": 3}') -> Path:
    return make_tree(
        root,
        {
            "package.json": '{"name": "site", "scripts": {"build": "x"}}',
            "package-lock.json": lock,
            "src/index.js": "console.log(1)",
            "public/robots.txt": "User-agent: *",
        },
    )


def key_of(checkout: Path, root: Path | None = None, install: str = "npm ci") -> CacheKey:
    key = cache_key(plan_for(checkout, root, install), PATH)
    assert key is not None
    return key


def fake_install(root: Path, home: Path) -> None:
    """What an install with a postinstall script and a browser download leaves behind."""
    make_tree(
        root,
        {
            "node_modules/left-pad/index.js": "module.exports = 1",
            "node_modules/left-pad/package.json": '{"name": "left-pad"}',
            "node_modules/.package-lock.json": "{}",
            "public/vendor/lib.js": "// copied by postinstall",
        },
    )
    (root / "node_modules/.bin").mkdir()
    os.symlink("../left-pad/index.js", root / "node_modules/.bin/left-pad")
    (root / "public/robots.txt").write_text("User-agent: *\nDisallow: /tmp")
    make_tree(home, {".cache/browser/chrome": "binary"})


def installed(tmp_path: Path, name: str) -> tuple[Path, Path, Snapshot]:
    """A checkout and a HOME after `fake_install`, with the snapshot taken before it."""
    root = npm_project(tmp_path / name / "src")
    home = tmp_path / name / "home"
    home.mkdir()
    (root / ".git").mkdir()
    (root / ".git/HEAD").write_text("ref: refs/heads/main")
    snapshot = Snapshot.take({"root": root, "home": home})
    fake_install(root, home)
    (root / ".git/index").write_text("git's own business")
    return root, home, snapshot


def fresh(tmp_path: Path, name: str) -> dict[str, Path]:
    root = npm_project(tmp_path / name / "src")
    home = tmp_path / name / "home"
    home.mkdir()
    return {"root": root, "home": home}


def age_entry(entry: Path, seconds: float = 60) -> None:
    """Backdate an entry, as if saved a while ago (edits now are then surely later)."""
    then = time.time_ns() - int(seconds * 1e9)
    for path in [entry, *entry.rglob("*")]:
        os.utime(path, ns=(then, then), follow_symlinks=False)


def saved_entry(tmp_path: Path, keep: int = 2) -> tuple[ProjectCache, CacheKey]:
    root, home, snapshot = installed(tmp_path, "first")
    cache = ProjectCache(tmp_path / "cache", PROJECT, keep, "production")
    key = key_of(root)
    cache.save(key, {"root": root, "home": home}, snapshot.changes())
    return cache, key


def test_key_follows_the_lock_file_not_the_rest_of_the_tree(tmp_path: Path) -> None:
    """The key changes with the lock file, package.json, install command and root_dir only."""
    root = npm_project(tmp_path / "repo")
    first = key_of(root)
    (root / "src/index.js").write_text("console.log(2)")
    (root / "README.md").write_text("docs")
    assert key_of(root) == first
    assert (first.package_manager, first.lock_file, len(first.digest)) == (
        "npm",
        "package-lock.json",
        64,
    )

    (root / "package-lock.json").write_text('{"lockfileVersion": 3, "packages": {}}')
    second = key_of(root)
    assert second.digest != first.digest
    (root / "package.json").write_text('{"name": "site", "version": "2"}')
    assert key_of(root).digest != second.digest
    assert key_of(root, install="npm ci --omit=dev").digest != key_of(root).digest

    nested = npm_project(tmp_path / "mono" / "site")
    assert key_of(tmp_path / "mono", root=nested).digest != key_of(nested).digest


def test_key_names_the_package_managers_lock_file(tmp_path: Path) -> None:
    """yarn.lock and pnpm-lock.yaml make yarn and pnpm keys; no lock or no install: no key."""
    yarn = make_tree(tmp_path / "yarn", {"package.json": "{}", "yarn.lock": "# yarn"})
    pnpm = make_tree(tmp_path / "pnpm", {"package.json": "{}", "pnpm-lock.yaml": "v: 9"})
    loose = make_tree(tmp_path / "loose", {"package.json": "{}"})
    assert (key_of(yarn).package_manager, key_of(yarn).lock_file) == ("yarn", "yarn.lock")
    assert (key_of(pnpm).package_manager, key_of(pnpm).lock_file) == ("pnpm", "pnpm-lock.yaml")
    assert cache_key(plan_for(loose), PATH) is None
    assert cache_key(plan_for(yarn, install=None), PATH) is None


def test_snapshot_lists_what_the_install_created_or_changed(tmp_path: Path) -> None:
    """New directories count whole, changed and new files one by one; .git and the rest not."""
    _, _, snapshot = installed(tmp_path, "build")
    assert snapshot.changes() == [
        ("root", "node_modules"),
        ("root", "public/robots.txt"),
        ("root", "public/vendor"),
        ("home", ".cache"),
    ]


def test_restore_puts_back_what_the_install_wrote(tmp_path: Path) -> None:
    """A hit restores node_modules (links too), changed files and HOME, hardlinked."""
    cache, key = saved_entry(tmp_path)
    areas = fresh(tmp_path, "second")
    restored = cache.restore(key, areas)

    assert restored is not None
    assert (restored.files, restored.linked) == (6, True)
    root = areas["root"]
    assert (root / "node_modules/left-pad/index.js").read_text() == "module.exports = 1"
    assert os.readlink(root / "node_modules/.bin/left-pad") == "../left-pad/index.js"
    assert (root / "node_modules/.bin/left-pad").read_text() == "module.exports = 1"
    assert (root / "public/vendor/lib.js").read_text() == "// copied by postinstall"
    assert (root / "public/robots.txt").read_text() == "User-agent: *\nDisallow: /tmp"
    assert (areas["home"] / ".cache/browser/chrome").read_text() == "binary"
    assert (root / "node_modules/left-pad/index.js").stat().st_nlink == 2  # entry + build
    assert (root / "src/index.js").read_text() == "console.log(1)"  # the rest untouched


def test_a_missing_entry_is_a_miss(tmp_path: Path) -> None:
    """No entry for the key: restore returns None and changes nothing."""
    cache, key = saved_entry(tmp_path)
    areas = fresh(tmp_path, "other")
    (areas["root"] / "package-lock.json").write_text('{"changed": true}')
    other = key_of(areas["root"])
    assert other.digest != key.digest
    assert cache.restore(other, areas) is None
    assert not (areas["root"] / "node_modules").exists()


def test_restore_copies_when_hardlinks_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On another file system (EXDEV) every file is copied instead, same content."""
    cache, key = saved_entry(tmp_path)

    def cross_device(src: str, dst: str, **kwargs: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    areas = fresh(tmp_path, "second")
    restored = cache.restore(key, areas)
    assert restored is not None
    assert (restored.files, restored.linked) == (6, False)
    index = areas["root"] / "node_modules/left-pad/index.js"
    assert (index.read_text(), index.stat().st_nlink) == ("module.exports = 1", 1)


def test_a_partial_entry_is_ignored_and_removed(tmp_path: Path) -> None:
    """An entry without its completion marker is never used: CacheError, entry gone."""
    cache, key = saved_entry(tmp_path)
    entry = cache.entries / key.digest
    (entry / MANIFEST).unlink()
    areas = fresh(tmp_path, "second")
    with pytest.raises(CacheError, match="no completion marker"):
        cache.restore(key, areas)
    assert not entry.exists()
    assert not (areas["root"] / "node_modules").exists()
    assert cache.restore(key, areas) is None


def test_an_entry_missing_files_is_refused_and_undone(tmp_path: Path) -> None:
    """A file gone from an entry: what was restored already is removed again."""
    cache, key = saved_entry(tmp_path)
    (cache.entries / key.digest / "root/node_modules/left-pad/package.json").unlink()
    areas = fresh(tmp_path, "second")
    with pytest.raises(CacheError, match=r"root/node_modules/left-pad/package\.json is missing"):
        cache.restore(key, areas)
    assert not (areas["root"] / "node_modules").exists()
    assert not (areas["home"] / ".cache").exists()
    assert not (cache.entries / key.digest).exists()


def test_an_in_place_edit_through_a_hardlink_spoils_the_entry(tmp_path: Path) -> None:
    """A build that edits a restored file in place edits the entry: the next restore drops it."""
    cache, key = saved_entry(tmp_path)
    age_entry(cache.entries / key.digest)
    areas = fresh(tmp_path, "second")
    assert cache.restore(key, areas) is not None
    with open(areas["root"] / "node_modules/left-pad/index.js", "r+") as f:
        f.write("patched!")  # same inode: the entry's copy changes too

    with pytest.raises(CacheError, match=r"left-pad/index\.js was modified after it was saved"):
        cache.restore(key, fresh(tmp_path, "third"))
    assert not (cache.entries / key.digest).exists()


def tamper(path: Path, text: str) -> None:
    """Change a file's content, keeping its size and its times (what an mtime check sees)."""
    st = path.stat()
    assert len(text.encode()) == st.st_size
    path.write_text(text)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_tampered_file_is_detected_and_not_restored(tmp_path: Path) -> None:
    """An entry file whose content changed — same size, same mtime — is refused by its sha256:
    nothing of the entry reaches the build and the entry is removed."""
    cache, key = saved_entry(tmp_path)
    entry = cache.entries / key.digest
    tamper(entry / "root/node_modules/left-pad/index.js", "require('evil')!!!")
    areas = fresh(tmp_path, "second")
    with pytest.raises(
        CacheError, match=r"root/node_modules/left-pad/index\.js was modified after it was saved"
    ):
        cache.restore(key, areas)
    assert not (areas["root"] / "node_modules").exists()
    assert (areas["root"] / "public/robots.txt").read_text() == "User-agent: *"
    assert not entry.exists()


def test_only_what_the_manifest_lists_is_restored(tmp_path: Path) -> None:
    """A file planted in an entry (in a directory the manifest lists) never reaches the build;
    a listed link turned into a file, or a file into a link, is refused."""
    cache, key = saved_entry(tmp_path)
    entry = cache.entries / key.digest
    (entry / "root/node_modules/left-pad/evil.js").write_text("planted")
    areas = fresh(tmp_path, "second")
    restored = cache.restore(key, areas)
    assert restored is not None
    assert restored.files == 6
    assert not (areas["root"] / "node_modules/left-pad/evil.js").exists()

    index = entry / "root/node_modules/left-pad/index.js"
    index.unlink()
    index.symlink_to("/etc/hostname")
    with pytest.raises(CacheError, match="is no longer a regular file"):
        cache.restore(key, fresh(tmp_path, "third"))


def test_preview_and_production_builds_never_share_a_cache(tmp_path: Path) -> None:
    """What a preview build saved is a miss for a production build of the same lock file (and
    the other way round); their download caches are apart; an entry moved from the preview side
    into the production side is refused."""
    root, home, snapshot = installed(tmp_path, "preview-build")
    key = key_of(root)
    preview = ProjectCache(tmp_path / "cache", PROJECT, 2, "preview")
    production = ProjectCache(tmp_path / "cache", PROJECT, 2, "production")
    preview.save(key, {"root": root, "home": home}, snapshot.changes())

    assert production.restore(key, fresh(tmp_path, "production-build")) is None
    assert preview.restore(key, fresh(tmp_path, "next-preview")) is not None
    assert set(preview.download_env().values()).isdisjoint(production.download_env().values())

    production.entries.mkdir(parents=True)
    os.rename(preview.entries / key.digest, production.entries / key.digest)
    with pytest.raises(CacheError, match="saved by a preview build"):
        production.restore(key, fresh(tmp_path, "production-again"))
    assert not (production.entries / key.digest).exists()


def test_restore_refuses_a_checkout_link_leading_outside(tmp_path: Path) -> None:
    """A checkout whose public/ links elsewhere gets nothing written through that link."""
    cache, key = saved_entry(tmp_path)
    areas = fresh(tmp_path, "second")
    outside = tmp_path / "outside"
    outside.mkdir()
    public = areas["root"] / "public"
    (public / "robots.txt").unlink()
    public.rmdir()
    public.symlink_to(outside)
    with pytest.raises(CacheError, match="outside the build"):
        cache.restore(key, areas)
    assert list(outside.iterdir()) == []


def test_saving_the_same_key_twice_keeps_one_good_entry(tmp_path: Path) -> None:
    """Concurrent saves of one key: one wins, the other reports it, no temp dir is left."""
    root, home, snapshot = installed(tmp_path, "first")
    cache = ProjectCache(tmp_path / "cache", PROJECT, 2, "production")
    key = key_of(root)
    paths = snapshot.changes()
    results = []
    start = threading.Barrier(4)

    def save() -> None:
        start.wait()
        results.append(cache.save(key, {"root": root, "home": home}, paths))

    threads = [threading.Thread(target=save) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(r.already for r in results) == [False, True, True, True]
    assert {(r.files, r.bytes) for r in results} == {(results[0].files, results[0].bytes)}
    assert [p.name for p in cache.entries.iterdir()] == [key.digest]
    assert cache.restore(key, fresh(tmp_path, "second")) is not None


def test_prune_keeps_the_most_recently_used_keys(tmp_path: Path) -> None:
    """keep=2 of 3 entries: the least recently used goes; a restore counts as a use."""
    cache = ProjectCache(tmp_path / "cache", PROJECT, 2, "production")
    keys = []
    for n in range(3):
        root, home, snapshot = installed(tmp_path, f"b{n}")
        (root / "package-lock.json").write_text(f'{{"n": {n}}}')
        keys.append(key_of(root))
        cache.save(keys[-1], {"root": root, "home": home}, snapshot.changes())
        entry = cache.entries / keys[-1].digest
        os.utime(entry, (1000.0 + n, 1000.0 + n))  # b0 oldest, b2 newest
    areas = fresh(tmp_path, "use")
    assert cache.restore(keys[0], areas) is not None  # b0 is now the most recent

    assert cache.prune() == [keys[1].digest]
    assert sorted(p.name for p in cache.entries.iterdir()) == sorted(
        [keys[0].digest, keys[2].digest]
    )


def test_prune_clears_broken_entries_and_stale_leftovers(tmp_path: Path) -> None:
    """Entries without a marker, old temp dirs and trash go; a save in progress stays."""
    cache, key = saved_entry(tmp_path)
    broken = cache.entries / ("f" * 64)
    (broken / "root/node_modules").mkdir(parents=True)
    stale = cache.entries / ".tmp-aaaa-1111"
    stale.mkdir()
    old = time.time() - STALE_TEMP_S - 60
    os.utime(stale, (old, old))
    in_progress = cache.entries / ".tmp-bbbb-2222"
    in_progress.mkdir()
    (cache.entries / ".trash-0123").mkdir()

    assert cache.prune() == [broken.name]
    assert sorted(p.name for p in cache.entries.iterdir()) == sorted([key.digest, in_progress.name])


def test_download_caches_are_per_project(tmp_path: Path) -> None:
    """npm, yarn, pnpm, corepack and pip are pointed at directories of their own under the
    project's cache."""
    env = ProjectCache(tmp_path / "cache", PROJECT, 2, "production").download_env()
    base = tmp_path / "cache" / PROJECT / "production" / "downloads"
    assert env == {
        "npm_config_cache": str(base / "npm"),
        "YARN_CACHE_FOLDER": str(base / "yarn"),
        "PNPM_STORE_DIR": str(base / "pnpm"),
        "npm_config_store_dir": str(base / "pnpm"),
        "COREPACK_HOME": str(base / "corepack"),
        "PIP_CACHE_DIR": str(base / "pip"),
    }
    assert all(Path(path).is_dir() for path in env.values())
    odd = ProjectCache(tmp_path / "cache", "../escape", 2, "preview")
    assert odd.dir.parent.parent == tmp_path / "cache"
    assert odd.dir.parent.name.startswith("p-")


@pytest.mark.parametrize(
    "locks",
    [
        ("package-lock.json",),
        ("npm-shrinkwrap.json", "package-lock.json"),
        ("yarn.lock", "package-lock.json"),
        ("pnpm-lock.yaml", "yarn.lock", "npm-shrinkwrap.json"),
    ],
)
def test_key_and_detection_agree_on_the_package_manager(
    tmp_path: Path, locks: tuple[str, ...]
) -> None:
    """The key names the manager detection installs with and the lock file that decided it."""
    root = make_tree(tmp_path / "repo", {"package.json": "{}", **dict.fromkeys(locks, "lock")})
    key = key_of(root)
    assert (key.package_manager, key.lock_file) == (package_manager(root).name, locks[0])
