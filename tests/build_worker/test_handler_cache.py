"""Builds through `handle_build` with the dependency cache: hit, miss, damage, failure, off."""

from __future__ import annotations

import io
import os
import re
import tarfile
import uuid
from pathlib import Path

import msgspec
from nats.js import JetStreamContext

from launchdeck.build_worker.handler import BuildWorker
from launchdeck.contracts.messages import BuildRequested
from launchdeck.libs.jobs import Outcome
from tests.build_worker.streams import build_events, log_lines
from tests.build_worker.support import CommandFactory, delivery, make_settings
from tests.build_worker.test_handler import fetch_artifact
from tests.support import GitRepoFactory, git

# Stands in for `npm ci` (no network): counts its runs, writes node_modules, talks a lot. It counts
# in a file of the test's, outside its workspace: these builds run unsandboxed.
INSTALL = """\
import os, pathlib, sys
runs = pathlib.Path({runs!r})
runs.write_text(str(int(runs.read_text()) + 1) if runs.exists() else "1")
os.makedirs("node_modules/dep", exist_ok=True)
open("node_modules/dep/index.js", "w").write(open("package-lock.json").read())
for i in range(1, 41):
    print(f"fetching package {{i}}")
print("npm cache at", os.environ.get("npm_config_cache"))
sys.exit(int(os.environ.get("FAIL_INSTALL", "0")) or int(os.path.exists("fail-install")))
"""
BUILD = """\
import os
os.makedirs("dist", exist_ok=True)
open("dist/index.html", "w").write("<p>" + open("node_modules/dep/index.js").read() + "</p>")
"""
TOML = """\
[build]
install_command = "python3 install.py"
build_command = "python3 build.py"
output_dir = "dist"
"""
INSTALL_LINE = "▶ Install: python3 install.py"


def project(make_git_repo: GitRepoFactory, runs: Path, **extra: str) -> Path:
    return make_git_repo(
        {
            "launchdeck.toml": TOML,
            "install.py": INSTALL.format(runs=str(runs)),
            "build.py": BUILD,
            "package.json": '{"name": "site", "private": true}',
            "package-lock.json": '{"lockfileVersion": 3, "v": 1}',
            **extra,
        }
    )


def again(cmd: BuildRequested) -> BuildRequested:
    """The same project and ref, as a new build."""
    return msgspec.structs.replace(cmd, build_id=str(uuid.uuid4()))


async def build(js: JetStreamContext, worker: BuildWorker, cmd: BuildRequested) -> list[str]:
    assert await worker.handle_build(cmd, delivery()) is Outcome.ACK
    events = await build_events(js, cmd.project_id, cmd.build_id)
    assert events[-1].status == "succeeded", events[-1].error
    return [line.line for line in await log_lines(js, cmd.build_id)]


async def shipped_index(js: JetStreamContext, cmd: BuildRequested) -> str:
    """index.html as the build's artifact holds it."""
    events = await build_events(js, cmd.project_id, cmd.build_id)
    assert events[-1].artifact is not None
    data = await fetch_artifact(js, events[-1].artifact.key)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.extractfile("index.html")
        assert member is not None
        return member.read().decode()


def key_in(line: str) -> str:
    found = re.search(r"\bkey ([0-9a-f]{12})\b", line)
    assert found is not None, line
    return found[1]


def line_starting(lines: list[str], prefix: str) -> str:
    found = [line for line in lines if line.startswith(prefix)]
    assert len(found) == 1, f"{prefix!r} in {lines}"
    return found[0]


async def test_second_build_restores_dependencies_instead_of_installing(
    js: JetStreamContext,
    command: CommandFactory,
    make_git_repo: GitRepoFactory,
    tmp_path: Path,
) -> None:
    """Same lock file: restored, install skipped; new lock file: installed and saved again."""
    cache_dir = tmp_path / "cache"
    worker = BuildWorker(
        js, make_settings(tmp_path / "builds", cache_dir=cache_dir, sandbox="none")
    )
    runs = tmp_path / "install-runs"
    repo = project(make_git_repo, runs)
    first = msgspec.structs.replace(command(repo), environment="production")

    cold = await build(js, worker, first)
    key = key_in(line_starting(cold, "▶ No cached dependencies for this package-lock.json (key "))
    assert line_starting(cold, "▶ No cached").endswith(", production cache)")
    assert INSTALL_LINE in cold
    assert "fetching package 40" in cold
    downloads = cache_dir / first.project_id / "production" / "downloads"
    assert f"npm cache at {downloads / 'npm'}" in cold
    saved = line_starting(
        cold, f"✔ Saved dependencies to the production cache (key {key}, 1 files, "
    )
    assert cold.index(INSTALL_LINE) < cold.index(saved) < cold.index("▶ Build: python3 build.py")
    assert runs.read_text() == "1"

    second = again(first)
    warm = await build(js, worker, second)
    line_starting(
        warm,
        f"✔ Dependencies restored from the production cache (package-lock.json unchanged, key "
        f"{key}, 1 files checked and hardlinked) in ",
    )
    assert INSTALL_LINE not in warm
    assert not any(line.startswith(("fetching package", "✔ Install finished")) for line in warm)
    assert "▶ Build: python3 build.py" in warm
    assert len(warm) <= len(cold) - 40  # the install's output is gone from the log
    assert runs.read_text() == "1"
    events = await build_events(js, second.project_id, second.build_id)
    assert [e.status for e in events] == [
        "cloning", "installing", "building", "packaging", "succeeded",
    ]  # fmt: skip
    assert await shipped_index(js, second) == '<p>{"lockfileVersion": 3, "v": 1}</p>'

    (repo / "package-lock.json").write_text('{"lockfileVersion": 3, "v": 2}')
    git(repo, "commit", "-qam", "bump a dependency")
    third = again(first)
    changed = await build(js, worker, third)
    assert INSTALL_LINE in changed
    assert runs.read_text() == "2"
    new_key = key_in(line_starting(changed, "✔ Saved dependencies to the production cache (key "))
    assert new_key != key
    assert await shipped_index(js, third) == '<p>{"lockfileVersion": 3, "v": 2}</p>'

    (repo / "README.md").write_text("only docs changed")
    git(repo, "add", "README.md")
    git(repo, "commit", "-qm", "docs")
    fourth = await build(js, worker, again(first))
    line_starting(
        fourth,
        f"✔ Dependencies restored from the production cache (package-lock.json unchanged, key "
        f"{new_key}",
    )
    assert runs.read_text() == "2"
    entries = sorted(
        p.name[:12] for p in (cache_dir / first.project_id / "production" / "deps").iterdir()
    )
    assert entries == sorted([key, new_key])
    assert list((tmp_path / "builds").iterdir()) == []


async def test_a_damaged_entry_is_ignored_and_the_install_runs(
    js: JetStreamContext,
    command: CommandFactory,
    make_git_repo: GitRepoFactory,
    tmp_path: Path,
) -> None:
    """An entry that lost its completion marker is reported, removed, and replaced by a new save."""
    cache_dir = tmp_path / "cache"
    worker = BuildWorker(
        js, make_settings(tmp_path / "builds", cache_dir=cache_dir, sandbox="none")
    )
    runs = tmp_path / "install-runs"
    first = command(project(make_git_repo, runs))
    await build(js, worker, first)
    [entry] = (cache_dir / first.project_id / "preview" / "deps").iterdir()
    (entry / "manifest.json").unlink()

    lines = await build(js, worker, again(first))
    assert (
        f"⚠ Ignored a damaged dependency cache entry (key {entry.name[:12]}: incomplete: "
        "no completion marker); it was removed"
    ) in lines
    assert INSTALL_LINE in lines
    line_starting(lines, f"✔ Saved dependencies to the preview cache (key {entry.name[:12]}, ")
    assert runs.read_text() == "2"
    assert (entry / "manifest.json").is_file()


async def test_cache_trouble_never_fails_a_build(
    js: JetStreamContext,
    command: CommandFactory,
    make_git_repo: GitRepoFactory,
    tmp_path: Path,
) -> None:
    """An unusable cache directory: one warning line, then the build goes on without a cache."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    worker = BuildWorker(
        js, make_settings(tmp_path / "builds", cache_dir=blocker / "cache", sandbox="none")
    )
    cmd = command(project(make_git_repo, tmp_path / "install-runs"))

    lines = await build(js, worker, cmd)
    line_starting(lines, "⚠ Dependency cache unavailable (NotADirectoryError: Not a directory)")
    assert INSTALL_LINE in lines
    assert not any("Saved dependencies" in line for line in lines)


async def test_a_failed_install_is_not_saved(
    js: JetStreamContext,
    command: CommandFactory,
    make_git_repo: GitRepoFactory,
    tmp_path: Path,
) -> None:
    """An install that exits non-zero fails the build and leaves nothing in the cache."""
    cache_dir = tmp_path / "cache"
    worker = BuildWorker(
        js, make_settings(tmp_path / "builds", cache_dir=cache_dir, sandbox="none")
    )
    cmd = command(project(make_git_repo, tmp_path / "runs", **{"fail-install": "yes"}))

    assert await worker.handle_build(cmd, delivery()) is Outcome.ACK
    events = await build_events(js, cmd.project_id, cmd.build_id)
    assert (events[-1].status, events[-1].error) == (
        "failed",
        "`python3 install.py` exited with code 1",
    )
    assert list((cache_dir / cmd.project_id).glob("*/deps/*")) == []


async def test_without_the_cache_every_build_installs(
    js: JetStreamContext,
    command: CommandFactory,
    make_git_repo: GitRepoFactory,
    tmp_path: Path,
) -> None:
    """LAUNCHDECK_BUILD_CACHE=false (cache_dir None): no cache lines, no cache env, installs."""
    worker = BuildWorker(js, make_settings(tmp_path / "builds", cache_dir=None, sandbox="none"))
    runs = tmp_path / "install-runs"
    first = command(project(make_git_repo, runs))
    for cmd in (first, again(first)):
        lines = await build(js, worker, cmd)
        assert INSTALL_LINE in lines
        assert "npm cache at None" in lines
        assert not any("ependenc" in line for line in lines)  # no restore/save/warning line
    assert runs.read_text() == "2"


# What a branch anyone can push to runs as its install: same lock file, package.json and
# install command as the main branch (so the same cache key), but the script plants its own code.
POISONING_INSTALL = """\
import os
os.makedirs("node_modules/dep", exist_ok=True)
open("node_modules/dep/index.js", "w").write("POISONED by a preview branch")
"""


async def test_a_preview_build_does_not_poison_the_cache_production_restores(
    js: JetStreamContext,
    command: CommandFactory,
    make_git_repo: GitRepoFactory,
    tmp_path: Path,
) -> None:
    """A preview build of an untrusted branch installs and saves under the same key as the main
    branch; the next production build misses (its own cache), installs for real and ships the
    genuine dependency. The preview's entry is only ever restored by preview builds."""
    cache_dir = tmp_path / "cache"
    worker = BuildWorker(js, make_settings(tmp_path / "builds", cache_dir=cache_dir))
    runs = tmp_path / "install-runs"
    repo = project(make_git_repo, runs)
    git(repo, "checkout", "-qb", "evil")
    (repo / "install.py").write_text(POISONING_INSTALL)
    git(repo, "commit", "-qam", "a contribution")
    git(repo, "checkout", "-q", "main")

    preview = msgspec.structs.replace(command(repo, ref="evil"), environment="preview")
    lines = await build(js, worker, preview)
    key = key_in(line_starting(lines, "✔ Saved dependencies to the preview cache (key "))
    assert await shipped_index(js, preview) == "<p>POISONED by a preview branch</p>"

    production = msgspec.structs.replace(again(preview), ref="main", environment="production")
    lines = await build(js, worker, production)
    assert line_starting(lines, "▶ No cached dependencies").endswith(
        f"key {key}, production cache)"
    )
    assert INSTALL_LINE in lines
    assert "fetching package 40" in lines  # the main branch's own install ran
    assert await shipped_index(js, production) == '<p>{"lockfileVersion": 3, "v": 1}</p>'

    again_preview = msgspec.structs.replace(again(preview), environment="preview")
    lines = await build(js, worker, again_preview)
    line_starting(
        lines,
        f"✔ Dependencies restored from the preview cache (package-lock.json unchanged, key {key}",
    )


async def test_a_tampered_cache_file_is_detected_and_not_shipped(
    js: JetStreamContext,
    command: CommandFactory,
    make_git_repo: GitRepoFactory,
    tmp_path: Path,
) -> None:
    """A file of a saved entry changed behind the cache's back — same size, same mtime — is
    found by its sha256 on the next restore: the entry is dropped, the install runs again, and
    the build ships the genuine file."""
    cache_dir = tmp_path / "cache"
    worker = BuildWorker(js, make_settings(tmp_path / "builds", cache_dir=cache_dir))
    runs = tmp_path / "install-runs"
    first = msgspec.structs.replace(command(project(make_git_repo, runs)), environment="production")
    await build(js, worker, first)
    [entry] = (cache_dir / first.project_id / "production" / "deps").iterdir()
    saved = entry / "root" / "node_modules" / "dep" / "index.js"
    st = saved.stat()
    genuine = saved.read_text()
    saved.write_text("X" * len(genuine))
    os.utime(saved, ns=(st.st_atime_ns, st.st_mtime_ns))

    second = again(first)
    lines = await build(js, worker, second)
    assert (
        f"⚠ Ignored a damaged dependency cache entry (key {entry.name[:12]}: "
        "root/node_modules/dep/index.js was modified after it was saved (its sha256 differs)); "
        "it was removed"
    ) in lines
    assert INSTALL_LINE in lines
    assert "fetching package 40" in lines
    assert await shipped_index(js, second) == f"<p>{genuine}</p>"
