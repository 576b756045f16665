"""What to run and what to ship, decided from a checkout and the project's build settings.

Pure logic over the file system (no NATS, no subprocesses). Order (SPEC §5): `launchdeck.toml`
overrides → `package.json` (npm / yarn / pnpm by lock file) → Python app or `Procfile` (a process
app) → static site (`index.html` at the root, then `public/index.html`) → a `Dockerfile` (a
container app). `package.json` comes before the root `index.html` on purpose: a Vite project keeps
its unbuilt `index.html` at the root. A `Dockerfile` next to another layout changes nothing (many
repositories carry one for other uses); `dockerfile` in the settings or `launchdeck.toml` makes
the app a container app whatever else is there. Its image is built by `container_build.py`.

A process app is one with a `start_command`, a Node.js server (a `start` script, or Next.js), or
a Procfile naming a process type (`procfile.py`); a Python project (`python_app.py`) needs one of
these to say what to run. Its release is the app's root directory, dependencies included: Node's
`node_modules` pruned of dev dependencies after the build (`PackageManager.prune`), Python's in
`.launchdeck/site-packages`. Static frameworks (Vite, Astro, …) and a plain `build` script stay
static sites, as does anything with `output_dir` set.

`launchdeck.toml` (at the repository root, and at `root_dir` when that is elsewhere) takes the
same keys as the project's build settings, at the top level or under `[build]`; its values win
over the project's, the way a checked-in config should.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec

from launchdeck.build_worker.errors import BuildFailed
from launchdeck.build_worker.lock_files import deciding_lock_file
from launchdeck.build_worker.procfile import PROCFILE, Procfile, read_procfile
from launchdeck.build_worker.python_app import PythonProject, python_project
from launchdeck.contracts.messages import AppKind, BuildConfig

TOML_NAME = "launchdeck.toml"
CONFIG_KEYS: tuple[str, ...] = tuple(f.name for f in msgspec.structs.fields(BuildConfig))

# Frameworks by a dependency name: where their build writes the static site (None: a server).
FRAMEWORKS: tuple[tuple[str, str, tuple[str, ...] | None], ...] = (
    ("next", "Next.js", None),
    ("vite", "Vite", ("dist",)),
    ("react-scripts", "Create React App", ("build",)),
    ("astro", "Astro", ("dist",)),
    ("gatsby", "Gatsby", ("public",)),
    ("@11ty/eleventy", "Eleventy", ("_site",)),
    ("@docusaurus/core", "Docusaurus", ("build",)),
)
DEFAULT_OUTPUTS = ("dist", "build", "out")

DOCKERFILE = "Dockerfile"
LOOKED_FOR = (
    f'{TOML_NAME}, package.json with a "build" or "start" script, a {PROCFILE} naming a process '
    "type (web:, worker:, …), requirements.txt or pyproject.toml with a Procfile or "
    f"start_command, index.html, public/index.html, a {DOCKERFILE}"
)
# A build argument names one of the project's env vars (their names' rule).
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
NODE_START = "npm start"
Runtime = Literal["node", "python"]  # a runtime whose version a process release records


@dataclass(frozen=True)
class BuildPlan:
    kind: AppKind
    description: str  # for the log: what was detected and why
    checkout: Path  # absolute, resolved
    root: Path  # absolute; commands run here
    install_command: str | None  # the package manager's (cached), or the configured one
    build_command: str | None
    output_candidates: tuple[str, ...]  # relative to root; the first existing one is shipped
    health_path: str | None = None
    timeout_s: int | None = None
    # A process app: type → command (`web` is the one with a port), and its release command.
    processes: dict[str, str] = field(default_factory=dict)
    release_command: str | None = None
    # Installs the Python dependencies into the release (`python_app.py`); after install_command.
    python_install: str | None = None
    # After the build: dev dependencies out of the node_modules a process release ships.
    prune_command: str | None = None
    runtimes: tuple[Runtime, ...] = ()  # whose versions are probed and recorded
    # A container app: its Dockerfile (absolute) and the variables given as build arguments.
    dockerfile: Path | None = None
    build_args: tuple[str, ...] = ()

    @property
    def start_command(self) -> str | None:
        """The `web` process's command (None for a static site or a worker-only app)."""
        return self.processes.get("web")


@dataclass(frozen=True)
class PackageManager:
    name: str
    install: str
    build: str
    prune: str  # removes the dev dependencies from an installed node_modules


def _fail(message: str) -> BuildFailed:
    return BuildFailed(message)


def inside(checkout: Path, base: Path, rel: str, what: str) -> Path:
    """`base / rel`, refused when it is absolute or resolves (through links) out of `checkout`."""
    if not rel or Path(rel).is_absolute():
        raise _fail(f"{what} {rel!r} must be a relative path inside the repository")
    target = (base / rel).resolve()
    if not target.is_relative_to(checkout):
        raise _fail(f"{what} {rel!r} points outside the repository")
    return target


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise _fail(f"{TOML_NAME} is not valid TOML: {exc}") from None
    table = dict(data)
    build = table.pop("build", {})
    if not isinstance(build, dict):
        raise _fail(f"{TOML_NAME}: [build] must be a table")
    table.update(build)
    unknown = sorted(set(table) - set(CONFIG_KEYS))
    if unknown:
        raise _fail(
            f"{TOML_NAME}: unknown key(s) {', '.join(unknown)} (known: {', '.join(CONFIG_KEYS)})"
        )
    for key, value in table.items():
        if key == "timeout_s":
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise _fail(f"{TOML_NAME}: timeout_s must be a positive integer")
        elif key == "build_args":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise _fail(f"{TOML_NAME}: build_args must be a list of env var names")
            _check_build_args(value, TOML_NAME)
        elif not isinstance(value, str):
            raise _fail(f"{TOML_NAME}: {key} must be a string")
    return table


def _check_build_args(names: list[str], where: str) -> None:
    bad = [name for name in names if not ENV_NAME.match(name)]
    if bad:
        shown = ", ".join(repr(name) for name in bad)
        raise _fail(
            f"{where}: build_args must name env vars (A-Z, 0-9 and _, not starting with a "
            f"digit): {shown}"
        )


def effective_config(checkout: Path, config: BuildConfig) -> BuildConfig:
    """The project's settings with `launchdeck.toml` (repository root, then root_dir) applied."""
    overrides: dict[str, Any] = {}
    top = checkout / TOML_NAME
    if top.is_file():
        overrides.update(_read_toml(top))
    root_dir = overrides.get("root_dir", config.root_dir)
    if root_dir and root_dir not in (".", "./"):
        nested = inside(checkout, checkout, root_dir, "root_dir") / TOML_NAME
        if nested.is_file():
            extra = _read_toml(nested)
            extra.pop("root_dir", None)  # already chosen; a nested file cannot move it again
            overrides.update(extra)
    return msgspec.structs.replace(config, **overrides) if overrides else config


def package_manager(root: Path) -> PackageManager:
    """The package manager its lock file names (`lock_files.LOCK_FILES`); npm without one."""
    lock = deciding_lock_file(root)
    manager = lock[1] if lock is not None else "npm"
    if manager == "pnpm":
        return PackageManager(
            "pnpm", "pnpm install --frozen-lockfile", "pnpm run build", "pnpm prune --prod"
        )
    if manager == "yarn":
        if _yarn_berry(root):
            # Yarn 2+ ("berry") renamed --frozen-lockfile to --immutable, and prunes by focusing.
            return PackageManager(
                "yarn",
                "yarn install --immutable",
                "yarn run build",
                "yarn workspaces focus --production",
            )
        # Yarn 1 has no prune: an install with --production removes what it does not need.
        return PackageManager(
            "yarn",
            "yarn install --frozen-lockfile",
            "yarn run build",
            "yarn install --production --frozen-lockfile --ignore-scripts --prefer-offline",
        )
    install = "npm ci" if lock is not None else "npm install"
    return PackageManager("npm", install, "npm run build", "npm prune --omit=dev")


def _yarn_berry(root: Path) -> bool:
    """Yarn 2+: it has a `.yarnrc.yml` (Yarn 1 reads `.yarnrc`) or a lock file in its format."""
    if (root / ".yarnrc.yml").is_file():
        return True
    with (root / "yarn.lock").open("rb") as lock:
        return b"__metadata:" in lock.read(4096)


def read_package_json(root: Path) -> dict[str, Any] | None:
    path = root / "package.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _fail(f"package.json is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _fail("package.json must contain a JSON object")
    return data


def _scripts(pkg: dict[str, Any]) -> dict[str, str]:
    scripts = pkg.get("scripts")
    if not isinstance(scripts, dict):
        return {}
    return {k: v for k, v in scripts.items() if isinstance(k, str) and isinstance(v, str)}


def _framework(pkg: dict[str, Any]) -> tuple[str, tuple[str, ...] | None] | None:
    deps: set[str] = set()
    for name in ("dependencies", "devDependencies"):
        table = pkg.get(name)
        if isinstance(table, dict):
            deps.update(k for k in table if isinstance(k, str))
    for dep, name, outputs in FRAMEWORKS:
        if dep in deps:
            return name, outputs
    return None


def _health_path(value: str | None) -> str | None:
    value = (value or "").strip()
    if not value:
        return None
    return value if value.startswith("/") else f"/{value}"


def _explicit(value: str | None) -> tuple[bool, str | None]:
    """(was it set, the command): an empty string means "set to nothing", not "detect"."""
    if value is None:
        return False, None
    value = value.strip()
    return True, value or None


def detect(checkout: Path, config: BuildConfig) -> BuildPlan:
    """Decide the plan for `checkout`; raises BuildFailed naming what was looked for."""
    checkout = checkout.resolve()
    cfg = effective_config(checkout, config)
    root_rel = (cfg.root_dir or ".").strip() or "."
    root = checkout if root_rel in (".", "./") else inside(checkout, checkout, root_rel, "root_dir")
    if not root.is_dir():
        raise _fail(f"root_dir {root_rel!r} is not a directory in the repository")
    where = "the repository root" if root == checkout else f"root_dir {root_rel!r}"
    if cfg.build_args:
        _check_build_args(list(cfg.build_args), "The build settings")
    if cfg.dockerfile is not None and cfg.dockerfile.strip():
        return _container(checkout, root, cfg, cfg.dockerfile.strip(), "dockerfile setting")
    install_set, install = _explicit(cfg.install_command)
    build_set, build = _explicit(cfg.build_command)
    pkg = read_package_json(root)
    pm = package_manager(root) if pkg is not None else None
    scripts = _scripts(pkg) if pkg is not None else {}
    framework = _framework(pkg) if pkg is not None else None
    procfile = read_procfile(root)
    python = python_project(root)
    if pm is not None:
        build = build if build_set else (pm.build if "build" in scripts else None)
    # A configured install_command of a Python app without package.json is its Python install.
    python_install = (
        python.install_command
        if python is not None and (pm is not None or not install_set)
        else None
    )
    runtimes: tuple[Runtime, ...] = (
        *(("node",) if pkg is not None else ()),
        *(("python",) if python is not None else ()),
    )

    def plan(
        kind: AppKind,
        description: str,
        outputs: tuple[str, ...],
        install_cmd: str | None,
        **process: Any,
    ) -> BuildPlan:
        for rel in outputs:
            if rel not in (".", "./"):
                inside(checkout, root, rel, "output_dir")
        return BuildPlan(
            kind=kind,
            description=description,
            checkout=checkout,
            root=root,
            install_command=install_cmd,
            build_command=build,
            output_candidates=outputs,
            health_path=_health_path(cfg.health_path),
            timeout_s=cfg.timeout_s,
            runtimes=runtimes,
            **process,
        )

    if not cfg.output_dir:
        processes = _processes(cfg.start_command, procfile, pkg, scripts, framework)
        if processes:
            # With a package.json, a process release ships node_modules: always installed.
            node_install = install if install_set or pm is None else pm.install
            return plan(
                "process",
                _process_description(cfg.start_command, procfile, pm, framework, python),
                (".",),
                node_install,
                processes=processes,
                release_command=procfile.release if procfile is not None else None,
                python_install=python_install,
                prune_command=pm.prune if pm is not None and node_install else None,
            )
    # A static site: its build (ours or the project's) needs its dependencies first.
    if pm is not None:
        install = install if install_set else (pm.install if build else None)
    static_python = python_install if build else None  # e.g. mkdocs, installed for the build
    if cfg.output_dir:
        out = cfg.output_dir.strip()
        return plan(
            "static",
            f"static site from output_dir {out!r}",
            (out,),
            install,
            python_install=static_python,
        )
    if pm is not None and pkg is not None and build:
        name, outputs = (
            (framework[0], framework[1] or DEFAULT_OUTPUTS)
            if framework
            else ("package.json build", DEFAULT_OUTPUTS)
        )
        shown = " or ".join(f"{o}/" for o in outputs)
        return plan("static", f"{name} ({pm.name}), output {shown}", outputs, install)
    if build:
        outputs = (*DEFAULT_OUTPUTS, "public")
        shown = " or ".join(f"{o}/" for o in outputs)
        return plan(
            "static",
            f"custom build command, output {shown}",
            outputs,
            install,
            python_install=static_python,
        )
    if (root / "index.html").is_file():
        return plan("static", f"static site (index.html at {where})", (".",), install)
    if (root / "public" / "index.html").is_file():
        return plan("static", "static site (public/index.html)", ("public",), install)
    if (root / DOCKERFILE).is_file():  # a Python project without a Procfile included
        return _container(checkout, root, cfg, DOCKERFILE, f"at {where}")
    if python is not None:
        raise _fail(
            f"Found a Python project ({python.source}) in {where} but nothing to run: a Python "
            f'app needs a {PROCFILE} with a "web:" (or "worker:") line, or start_command; a '
            "static site needs index.html or output_dir"
        )
    raise _fail(
        f"Could not detect how to build this app in {where}. Looked for: {LOOKED_FOR}. "
        "Set output_dir (and build_command if the site needs building) in the project's build "
        f"settings or in {TOML_NAME}, or start_command for an app that runs"
    )


def _container(checkout: Path, root: Path, cfg: BuildConfig, rel: str, why: str) -> BuildPlan:
    """A container app's plan: the image is built from `rel` (relative to root), with root as
    the build context; no command of the worker's runs."""
    dockerfile = inside(checkout, root, rel, "dockerfile")
    if not dockerfile.is_file():
        raise _fail(f"The Dockerfile {rel!r} ({why}) is not a file in the repository")
    return BuildPlan(
        kind="container",
        description=f"{rel} ({why}): a container image",
        checkout=checkout,
        root=root,
        install_command=None,
        build_command=None,
        output_candidates=(),
        health_path=_health_path(cfg.health_path),
        timeout_s=cfg.timeout_s,
        dockerfile=dockerfile,
        build_args=tuple(cfg.build_args or ()),
    )


def _processes(
    start_command: str | None,
    procfile: Procfile | None,
    pkg: dict[str, Any] | None,
    scripts: dict[str, str],
    framework: tuple[str, tuple[str, ...] | None] | None,
) -> dict[str, str]:
    """The process types of the app (empty: not a process app). `web` is the configured
    start_command, else the Procfile's, else a Node.js server's `npm start` (`next start` for a
    Next.js app without a start script) — Heroku's rule: a Procfile adds to and overrides what
    the app's language would run."""
    processes = dict(procfile.processes) if procfile is not None else {}
    if start_command and start_command.strip():
        processes["web"] = start_command.strip()
    elif "web" not in processes and pkg is not None and (framework is None or not framework[1]):
        # A server, not a static framework's site.
        if "start" in scripts:
            processes["web"] = NODE_START
        elif framework is not None and "build" in scripts:  # Next.js without a start script
            processes["web"] = "next start"
    web = processes.pop("web", None)
    return processes if web is None else {"web": web, **processes}  # web first, as it is shown


def _process_description(
    start_command: str | None,
    procfile: Procfile | None,
    pm: PackageManager | None,
    framework: tuple[str, tuple[str, ...] | None] | None,
    python: PythonProject | None,
) -> str:
    server = framework is not None and framework[1] is None  # Next.js
    if python is not None:
        what = f"Python app ({python.source})"
    elif pm is not None:
        what = (
            f"{framework[0] if framework and server else 'Node.js'} app (package.json, {pm.name})"
        )
    else:
        what = "app"
    if start_command and start_command.strip():
        return f"{what} with a start_command"
    if procfile is not None and procfile.processes:
        return f"{what} with a {PROCFILE} ({', '.join(procfile.processes)})"
    return what if server or pm is None else f"{what} with a start script"


def resolve_output(plan: BuildPlan) -> Path:
    """The directory to ship: the first candidate that exists after the build."""
    for rel in plan.output_candidates:
        if rel in (".", "./"):
            path = plan.root
        else:
            path = inside(plan.checkout, plan.root, rel, "output_dir")
        if path.is_dir():
            return path
    names = ", ".join(f"{rel.rstrip('/')}/" for rel in plan.output_candidates)
    if len(plan.output_candidates) == 1:
        raise _fail(
            f"The output directory {names} does not exist"
            + (" after the build" if plan.build_command else "")
        )
    raise _fail(
        f"The build finished but none of {names} exists; set output_dir to where it writes the site"
    )
