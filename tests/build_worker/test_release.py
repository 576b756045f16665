"""A process release's own files: the Procfile read, the manifest written and read back, the
Python scripts made relocatable, and none of it writing through a link the build left."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from launchdeck.build_worker.detect import detect
from launchdeck.build_worker.procfile import parse_procfile
from launchdeck.build_worker.release import prepare_release, relocate_scripts
from launchdeck.contracts.messages import RELEASE_MANIFEST, BuildConfig, ReleaseManifest
from launchdeck.libs.launcher.release import ManifestError, process_env, read_manifest
from tests.build_worker.test_detect import make_tree


def test_procfile_lines_comments_and_release() -> None:
    procfile = parse_procfile(
        "# a comment\n"
        "web:   gunicorn app:app --bind 0.0.0.0:$PORT  \n"
        "\n"
        "worker: celery -A app worker\n"
        "not a process line\n"
        "release: python manage.py migrate\n"
        "clock:bin/clock\n"
        "worker: rq worker\n"
    )
    assert procfile.processes == {
        "web": "gunicorn app:app --bind 0.0.0.0:$PORT",
        "worker": "rq worker",  # given twice: the last one
        "clock": "bin/clock",
    }
    assert procfile.release == "python manage.py migrate"
    assert parse_procfile("web:\n").processes == {}  # no command, no process


def python_app(root: Path) -> Path:
    make_tree(
        root,
        {
            "requirements.txt": "waitress\n",
            "Procfile": "web: waitress-serve app:app\nrelease: python3 migrate.py\n",
        },
    )
    return root


def test_manifest_is_written_and_read_back(tmp_path: Path) -> None:
    """What the build writes is what the deploy-engine reads: processes, release command,
    runtime, defaults, and the release's own directories on the search paths."""
    root = python_app(tmp_path / "app")
    plan = detect(root, BuildConfig(health_path="/up"))

    written = prepare_release(plan, {"python": "3.11.7"})

    read = read_manifest(root)
    assert read == written
    assert read == ReleaseManifest(
        kind="process",
        processes={"web": "waitress-serve app:app"},
        release_command="python3 migrate.py",
        health_path="/up",
        runtime={"python": "3.11.7"},
        env={"PYTHONUNBUFFERED": "1"},
        paths={
            "PATH": [".launchdeck/bin", ".launchdeck/site-packages/bin"],
            "PYTHONPATH": [".launchdeck/site-packages"],
        },
    )
    assert (root / ".launchdeck/bin/python").read_text() == '#!/bin/sh\nexec python3 "$@"\n'
    assert os.access(root / ".launchdeck/bin/python", os.X_OK)


def test_process_env_puts_the_release_first_and_lets_the_project_win(tmp_path: Path) -> None:
    manifest = ReleaseManifest(
        kind="process",
        env={"NODE_ENV": "production", "PYTHONUNBUFFERED": "1"},
        paths={"PATH": [".launchdeck/bin", "node_modules/.bin"], "PYTHONPATH": ["lib"]},
    )
    env = process_env(manifest, tmp_path, {"PATH": "/usr/bin", "NODE_ENV": "staging"})
    assert env == {
        "NODE_ENV": "staging",
        "PYTHONUNBUFFERED": "1",
        "PATH": f"{tmp_path}/.launchdeck/bin:{tmp_path}/node_modules/.bin:/usr/bin",
        "PYTHONPATH": f"{tmp_path}/lib",
    }


@pytest.mark.parametrize("bad", ["/usr/bin", "../other", "bin/../../x", ""])
def test_a_manifest_path_outside_the_release_is_refused(tmp_path: Path, bad: str) -> None:
    (tmp_path / ".launchdeck").mkdir()
    (tmp_path / RELEASE_MANIFEST).write_text(
        '{"kind": "process", "paths": {"PATH": ["%s"]}}' % bad  # noqa: UP031
    )
    with pytest.raises(ManifestError, match="is not inside the release"):
        read_manifest(tmp_path)


def test_no_manifest_is_a_static_release_and_garbage_is_an_error(tmp_path: Path) -> None:
    assert read_manifest(tmp_path) is None
    (tmp_path / ".launchdeck").mkdir()
    (tmp_path / RELEASE_MANIFEST).write_text('{"kind": "lambda"}')
    with pytest.raises(ManifestError, match="is not a valid manifest"):
        read_manifest(tmp_path)


def test_scripts_pip_wrote_run_with_python3_from_path(tmp_path: Path) -> None:
    """Both shebangs pip writes (the interpreter's path, or `/bin/sh` exec-ing a long one)
    become `/usr/bin/env python3`; other files and links are left alone."""
    bin_dir = tmp_path / ".launchdeck/site-packages/bin"
    bin_dir.mkdir(parents=True)
    body = "import sys\nfrom waitress.runner import run\nsys.exit(run())\n"
    (bin_dir / "waitress-serve").write_text(
        f"#!/root/.pyenv/versions/3.11.7/bin/python3.11\n{body}"
    )
    (bin_dir / "long").write_text(
        f"#!/bin/sh\n'''exec' \"/a path/with spaces/bin/python3\" \"$0\" \"$@\"\n' '''\n{body}"
    )
    (bin_dir / "tool.sh").write_text("#!/bin/sh\necho hi\n")
    (bin_dir / "waitress-serve").chmod(0o755)
    outside = tmp_path / "outside"
    outside.write_text("#!/usr/bin/python3\nprint('not mine')\n")
    (bin_dir / "link").symlink_to(outside)

    assert relocate_scripts(tmp_path) == 2

    assert (bin_dir / "waitress-serve").read_text() == f"#!/usr/bin/env python3\n{body}"
    assert os.access(bin_dir / "waitress-serve", os.X_OK)
    assert (bin_dir / "long").read_text() == f"#!/usr/bin/env python3\n{body}"
    assert (bin_dir / "tool.sh").read_text() == "#!/bin/sh\necho hi\n"
    assert outside.read_text() == "#!/usr/bin/python3\nprint('not mine')\n"


def test_links_the_build_left_are_never_written_through(tmp_path: Path) -> None:
    """A build that makes `.launchdeck` (or its bin/, or a script) a link to the worker's files
    gets real directories instead; the files pointed at are untouched."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "python").write_text("worker file")
    (victim / "release.json").write_text("worker file")
    root = python_app(tmp_path / "app")
    (root / ".launchdeck").symlink_to(victim)
    plan = detect(root, BuildConfig())

    prepare_release(plan, {})

    assert not (root / ".launchdeck").is_symlink()
    assert (root / RELEASE_MANIFEST).is_file()
    assert sorted(p.name for p in victim.iterdir()) == ["python", "release.json"]
    assert (victim / "python").read_text() == "worker file"
    assert (victim / "release.json").read_text() == "worker file"

    # A link to a directory outside as site-packages/bin: its scripts are not rewritten.
    (root / ".launchdeck/site-packages").mkdir()
    (victim / "script").write_text("#!/usr/bin/python3\n")
    (root / ".launchdeck/site-packages/bin").symlink_to(victim)
    assert relocate_scripts(root) == 0
    assert (victim / "script").read_text() == "#!/usr/bin/python3\n"
