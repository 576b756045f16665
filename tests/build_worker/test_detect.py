"""Detection of what to build and ship, from a checkout and the project's settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from launchdeck.build_worker.detect import detect, resolve_output
from launchdeck.build_worker.errors import BuildFailed
from launchdeck.contracts.messages import BuildConfig


def make_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def package_json(scripts: dict[str, str], dev: dict[str, str] | None = None) -> str:
    return json.dumps({"name": "site", "scripts": scripts, "devDependencies": dev or {}})


def test_index_html_at_the_root_ships_the_root(tmp_path: Path) -> None:
    """index.html at the root: no commands, the root itself is the output."""
    make_tree(tmp_path, {"index.html": "<h1>hi</h1>", "about/index.html": "x"})
    plan = detect(tmp_path, BuildConfig())
    assert plan.kind == "static"
    assert plan.install_command is None
    assert plan.build_command is None
    assert resolve_output(plan) == tmp_path.resolve()
    assert "index.html at the repository root" in plan.description


def test_public_index_html_ships_public(tmp_path: Path) -> None:
    """public/index.html (and none at the root): public/ is the output."""
    make_tree(tmp_path, {"public/index.html": "x", "README.md": "y"})
    plan = detect(tmp_path, BuildConfig())
    assert plan.kind == "static"
    assert resolve_output(plan) == (tmp_path / "public").resolve()


def test_output_dir_setting_wins(tmp_path: Path) -> None:
    """output_dir set: that directory ships even when index.html exists at the root."""
    make_tree(tmp_path, {"index.html": "x", "site/index.html": "y"})
    plan = detect(tmp_path, BuildConfig(output_dir="site"))
    assert resolve_output(plan) == (tmp_path / "site").resolve()


@pytest.mark.parametrize(
    ("lock", "install", "build"),
    [
        (None, "npm install", "npm run build"),
        ("package-lock.json", "npm ci", "npm run build"),
        ("yarn.lock", "yarn install --frozen-lockfile", "yarn run build"),
        ("pnpm-lock.yaml", "pnpm install --frozen-lockfile", "pnpm run build"),
    ],
)
def test_package_json_build_script_by_lock_file(
    tmp_path: Path, lock: str | None, install: str, build: str
) -> None:
    """A build script runs with the package manager its lock file names; Vite ships dist/."""
    files = {
        "package.json": package_json({"build": "vite build"}, {"vite": "^5"}),
        # Vite keeps its (unbuilt) index.html at the root: package.json must win over it.
        "index.html": "<script type=module src=/src/main.js></script>",
    }
    if lock:
        files[lock] = ""
    make_tree(tmp_path, files)
    plan = detect(tmp_path, BuildConfig())
    assert (plan.kind, plan.install_command, plan.build_command) == ("static", install, build)
    assert plan.output_candidates == ("dist",)
    assert "Vite" in plan.description


@pytest.mark.parametrize(
    "files",
    [
        {"yarn.lock": "__metadata:\n  version: 8\n"},  # a Yarn 2+ lock file
        {"yarn.lock": "", ".yarnrc.yml": "nodeLinker: node-modules\n"},
    ],
)
def test_yarn_berry_installs_with_immutable(tmp_path: Path, files: dict[str, str]) -> None:
    """Yarn 2+ renamed --frozen-lockfile to --immutable; a Yarn 1 lock keeps the old flag."""
    make_tree(tmp_path, {"package.json": package_json({"build": "vite build"}), **files})
    plan = detect(tmp_path, BuildConfig())
    assert (plan.install_command, plan.build_command) == (
        "yarn install --immutable",
        "yarn run build",
    )


def test_generic_build_output_is_the_first_directory_that_exists(tmp_path: Path) -> None:
    """Without a known framework the build's output is dist/, build/ or out/, whichever exists."""
    make_tree(tmp_path, {"package.json": package_json({"build": "node make.js"})})
    plan = detect(tmp_path, BuildConfig())
    assert plan.output_candidates == ("dist", "build", "out")
    (tmp_path / "out").mkdir()
    assert resolve_output(plan) == (tmp_path / "out").resolve()


def test_missing_output_after_build_names_the_candidates(tmp_path: Path) -> None:
    """A build that writes nothing fails naming every directory it looked for."""
    make_tree(tmp_path, {"package.json": package_json({"build": "node make.js"})})
    plan = detect(tmp_path, BuildConfig())
    with pytest.raises(BuildFailed, match=r"none of dist/, build/, out/ exists"):
        resolve_output(plan)


def test_explicit_commands_and_empty_install(tmp_path: Path) -> None:
    """Project commands replace detected ones; an empty install_command means no install."""
    make_tree(tmp_path, {"package.json": package_json({"build": "vite build"}, {"vite": "5"})})
    plan = detect(tmp_path, BuildConfig(install_command="", build_command="npm run docs"))
    assert plan.install_command is None
    assert plan.build_command == "npm run docs"


def test_launchdeck_toml_overrides_project_settings(tmp_path: Path) -> None:
    """launchdeck.toml keys (top level or [build]) override the project's build settings."""
    make_tree(
        tmp_path,
        {
            "launchdeck.toml": 'root_dir = "web"\n[build]\nbuild_command = "python3 gen.py"\n'
            'output_dir = "_site"\n',
            "web/gen.py": "",
        },
    )
    plan = detect(tmp_path, BuildConfig(output_dir="ignored", build_command="make"))
    assert plan.root == (tmp_path / "web").resolve()
    assert plan.build_command == "python3 gen.py"
    assert plan.output_candidates == ("_site",)


def test_launchdeck_toml_unknown_key_is_a_clear_error(tmp_path: Path) -> None:
    """A typo in launchdeck.toml fails the build naming the key and the known keys."""
    make_tree(tmp_path, {"launchdeck.toml": 'outptu_dir = "x"\n', "index.html": "x"})
    with pytest.raises(BuildFailed, match=r"unknown key\(s\) outptu_dir \(known: root_dir"):
        detect(tmp_path, BuildConfig())


@pytest.mark.parametrize("path", ["../elsewhere", "/etc", "link-out"])
def test_paths_outside_the_repository_are_refused(tmp_path: Path, path: str) -> None:
    """output_dir may not be absolute or lead (even through a link) out of the checkout."""
    repo = make_tree(tmp_path / "repo", {"index.html": "x"})
    (repo / "link-out").symlink_to(tmp_path)
    with pytest.raises(BuildFailed, match="output_dir"):
        detect(repo, BuildConfig(output_dir=path))


def test_process_apps_are_detected(tmp_path: Path) -> None:
    """Next.js, a start script or a Procfile web: line make a process app (not shipped yet)."""
    next_app = make_tree(
        tmp_path / "next",
        {
            "package.json": json.dumps(
                {
                    "scripts": {"build": "next build", "start": "next start"},
                    "dependencies": {"next": "14"},
                }
            )
        },
    )
    express = make_tree(tmp_path / "express", {"package.json": package_json({"start": "node ."})})
    python = make_tree(
        tmp_path / "py", {"requirements.txt": "flask\n", "Procfile": "web: gunicorn app:app\n"}
    )
    assert detect(next_app, BuildConfig()).kind == "process"
    assert detect(express, BuildConfig()).kind == "process"
    plan = detect(python, BuildConfig())
    assert (plan.kind, plan.start_command) == ("process", "gunicorn app:app")
    assert "Python app" in plan.description


def test_unknown_layout_names_what_was_looked_for(tmp_path: Path) -> None:
    """A repository with nothing recognisable fails with a message listing every signal."""
    make_tree(tmp_path, {"README.md": "hello", "src/main.c": "int main(){}"})
    with pytest.raises(BuildFailed) as info:
        detect(tmp_path, BuildConfig())
    message = str(info.value)
    assert message.startswith("Could not detect how to build this app in the repository root")
    for looked_for in ("launchdeck.toml", "package.json", "Procfile", "public/index.html"):
        assert looked_for in message
    assert "output_dir" in message


def test_missing_root_dir_is_a_clear_error(tmp_path: Path) -> None:
    """A root_dir that is not in the repository fails naming it."""
    make_tree(tmp_path, {"index.html": "x"})
    with pytest.raises(BuildFailed, match="root_dir 'apps/web' is not a directory"):
        detect(tmp_path, BuildConfig(root_dir="apps/web"))
