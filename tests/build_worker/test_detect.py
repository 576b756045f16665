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
    """Next.js, a start script or a Procfile web: line make a process app."""
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


@pytest.mark.parametrize(
    ("lock", "install", "prune"),
    [
        (None, "npm install", "npm prune --omit=dev"),
        ("package-lock.json", "npm ci", "npm prune --omit=dev"),
        ("pnpm-lock.yaml", "pnpm install --frozen-lockfile", "pnpm prune --prod"),
        (
            "yarn.lock",
            "yarn install --frozen-lockfile",
            "yarn install --production --frozen-lockfile --ignore-scripts --prefer-offline",
        ),
        (".yarnrc.yml", "yarn install --immutable", "yarn workspaces focus --production"),
    ],
)
def test_node_server_installs_builds_and_prunes_with_its_package_manager(
    tmp_path: Path, lock: str | None, install: str, prune: str
) -> None:
    """A start script: installed (even without a build script), then dev dependencies pruned
    by the package manager the lock file names; `npm start` is the web process."""
    files = {"package.json": package_json({"start": "node server.js"}, {"nodemon": "3"})}
    if lock == ".yarnrc.yml":
        files.update({"yarn.lock": "", ".yarnrc.yml": "nodeLinker: node-modules\n"})
    elif lock:
        files[lock] = ""
    make_tree(tmp_path, files)
    plan = detect(tmp_path, BuildConfig())
    assert (plan.kind, plan.install_command, plan.build_command) == ("process", install, None)
    assert plan.prune_command == prune
    assert plan.processes == {"web": "npm start"}
    assert plan.output_candidates == (".",)
    assert plan.runtimes == ("node",)


def test_configured_start_command_wins_and_no_install_means_no_prune(tmp_path: Path) -> None:
    """start_command replaces `npm start` (and a Procfile's web); an empty install_command
    (node_modules committed) installs and prunes nothing."""
    make_tree(
        tmp_path,
        {
            "package.json": package_json({"start": "node .", "build": "tsc"}),
            "Procfile": "web: node old.js\nworker: node jobs.js\n",
        },
    )
    plan = detect(tmp_path, BuildConfig(start_command="node dist/main.js", install_command=""))
    assert plan.processes == {"web": "node dist/main.js", "worker": "node jobs.js"}
    assert (plan.install_command, plan.prune_command) == (None, None)
    assert plan.build_command == "npm run build"


def test_static_frameworks_stay_static_with_a_start_script(tmp_path: Path) -> None:
    """Vite with a `start` (its dev server) is still a static site built into dist/."""
    make_tree(
        tmp_path,
        {"package.json": package_json({"build": "vite build", "start": "vite"}, {"vite": "5"})},
    )
    plan = detect(tmp_path, BuildConfig())
    assert (plan.kind, plan.output_candidates, plan.prune_command) == ("static", ("dist",), None)
    assert plan.processes == {}


def test_procfile_types_and_release_command(tmp_path: Path) -> None:
    """Every Procfile type is a process; `release:` is the release command, not a process;
    an app may be a worker only; the health path is made absolute."""
    make_tree(
        tmp_path / "full",
        {"Procfile": "web: ./server\nworker: ./jobs --queue=a\nrelease: ./migrate\n"},
    )
    make_tree(tmp_path / "worker", {"Procfile": "worker: ./bot\n"})
    full = detect(tmp_path / "full", BuildConfig(health_path="healthz"))
    assert full.processes == {"web": "./server", "worker": "./jobs --queue=a"}
    assert (full.release_command, full.health_path, full.runtimes) == ("./migrate", "/healthz", ())
    assert full.description == "app with a Procfile (web, worker)"
    worker = detect(tmp_path / "worker", BuildConfig())
    assert (worker.kind, worker.processes, worker.start_command) == (
        "process",
        {"worker": "./bot"},
        None,
    )


@pytest.mark.parametrize(
    ("files", "install"),
    [
        (
            {"requirements.txt": "waitress\n", "pyproject.toml": "[project]\nname='x'\n"},
            "python3 -m pip install --target .launchdeck/site-packages -r requirements.txt",
        ),
        (
            {"pyproject.toml": "[project]\nname = 'app'\ndependencies = ['waitress>=3', 'six']\n"},
            "python3 -m pip install --target .launchdeck/site-packages 'waitress>=3' six",
        ),
        (
            {
                "pyproject.toml": "[project]\nname = 'app'\ndependencies = ['six']\n"
                "[build-system]\nrequires = ['hatchling']\nbuild-backend = 'hatchling.build'\n"
            },
            "python3 -m pip install --target .launchdeck/site-packages .",
        ),
        ({"pyproject.toml": "[project]\nname = 'app'\n"}, None),
    ],
)
def test_python_dependencies_install_into_the_release(
    tmp_path: Path, files: dict[str, str], install: str | None
) -> None:
    """requirements.txt first; a packaged pyproject installs itself, an unpackaged one its
    dependency list; the start command comes from the Procfile."""
    make_tree(tmp_path, {**files, "Procfile": "web: python3 app.py\n"})
    plan = detect(tmp_path, BuildConfig())
    assert (plan.kind, plan.python_install, plan.install_command) == ("process", install, None)
    assert plan.runtimes == ("python",)
    assert plan.processes == {"web": "python3 app.py"}


def test_a_configured_install_command_replaces_the_python_install(tmp_path: Path) -> None:
    make_tree(tmp_path, {"requirements.txt": "six\n", "Procfile": "web: python3 app.py\n"})
    plan = detect(tmp_path, BuildConfig(install_command="make deps"))
    assert (plan.install_command, plan.python_install) == ("make deps", None)


def test_python_project_without_a_command_names_what_it_needs(tmp_path: Path) -> None:
    make_tree(tmp_path, {"pyproject.toml": "[project]\nname = 'app'\n", "app.py": ""})
    with pytest.raises(BuildFailed, match=r'Found a Python project \(pyproject.toml\).*"web:"'):
        detect(tmp_path, BuildConfig())


def test_unknown_layout_names_what_was_looked_for(tmp_path: Path) -> None:
    """A repository with nothing recognisable fails with a message listing every signal."""
    make_tree(tmp_path, {"README.md": "hello", "src/main.c": "int main(){}"})
    with pytest.raises(BuildFailed) as info:
        detect(tmp_path, BuildConfig())
    message = str(info.value)
    assert message.startswith("Could not detect how to build this app in the repository root")
    for looked_for in (
        "launchdeck.toml",
        'package.json with a "build" or "start" script',
        "Procfile",
        "requirements.txt",
        "pyproject.toml",
        "public/index.html",
    ):
        assert looked_for in message
    assert "output_dir" in message


def test_missing_root_dir_is_a_clear_error(tmp_path: Path) -> None:
    """A root_dir that is not in the repository fails naming it."""
    make_tree(tmp_path, {"index.html": "x"})
    with pytest.raises(BuildFailed, match="root_dir 'apps/web' is not a directory"):
        detect(tmp_path, BuildConfig(root_dir="apps/web"))
