"""What to run and what to ship, decided from a checkout and the project's build settings.

Pure logic over the file system (no NATS, no subprocesses). Order (SPEC §5): `launchdeck.toml`
overrides → `package.json` (npm / yarn / pnpm by lock file) → Python app or `Procfile` (a process
app) → static site (`index.html` at the root, then `public/index.html`). `package.json` comes
before the root `index.html` on purpose: a Vite project keeps its unbuilt `index.html` at the root.

`launchdeck.toml` (at the repository root, and at `root_dir` when that is elsewhere) takes the
same keys as the project's build settings, at the top level or under `[build]`; its values win
over the project's, the way a checked-in config should.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from launchdeck.build_worker.errors import BuildFailed
from launchdeck.build_worker.lock_files import deciding_lock_file
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

LOOKED_FOR = (
    f'{TOML_NAME}, package.json with a "build" script, requirements.txt or pyproject.toml '
    'with a Procfile "web:" line, a Procfile, index.html, public/index.html'
)


@dataclass(frozen=True)
class BuildPlan:
    kind: AppKind
    description: str  # for the log: what was detected and why
    checkout: Path  # absolute, resolved
    root: Path  # absolute; commands run here
    install_command: str | None
    build_command: str | None
    output_candidates: tuple[str, ...]  # relative to root; the first existing one is shipped
    start_command: str | None = None
    health_path: str | None = None
    timeout_s: int | None = None


@dataclass(frozen=True)
class PackageManager:
    name: str
    install: str
    build: str


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
        elif not isinstance(value, str):
            raise _fail(f"{TOML_NAME}: {key} must be a string")
    return table


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
        return PackageManager("pnpm", "pnpm install --frozen-lockfile", "pnpm run build")
    if manager == "yarn":
        # Yarn 2+ ("berry") renamed --frozen-lockfile to --immutable.
        frozen = "--immutable" if _yarn_berry(root) else "--frozen-lockfile"
        return PackageManager("yarn", f"yarn install {frozen}", "yarn run build")
    if lock is not None:
        return PackageManager("npm", "npm ci", "npm run build")
    return PackageManager("npm", "npm install", "npm run build")


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
    for field in ("dependencies", "devDependencies"):
        table = pkg.get(field)
        if isinstance(table, dict):
            deps.update(k for k in table if isinstance(k, str))
    for dep, name, outputs in FRAMEWORKS:
        if dep in deps:
            return name, outputs
    return None


def _procfile_web(root: Path) -> str | None:
    path = root / "Procfile"
    if not path.is_file():
        return None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() == "web" and command.strip():
            return command.strip()
    return ""


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
    install_set, install = _explicit(cfg.install_command)
    build_set, build = _explicit(cfg.build_command)

    def plan(
        kind: AppKind,
        description: str,
        outputs: tuple[str, ...],
        install_cmd: str | None,
        build_cmd: str | None,
        start: str | None = None,
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
            build_command=build_cmd,
            output_candidates=outputs,
            start_command=start,
            health_path=cfg.health_path,
            timeout_s=cfg.timeout_s,
        )

    pkg = read_package_json(root)
    pm = package_manager(root) if pkg is not None else None
    scripts = _scripts(pkg) if pkg is not None else {}
    if pm is not None:
        # With a package.json, a build (ours or the project's) needs its dependencies first.
        build = build if build_set else (pm.build if "build" in scripts else None)
        install = install if install_set else (pm.install if build else None)

    if cfg.start_command:
        return plan(
            "process", "app with a start_command", (".",), install, build, cfg.start_command
        )
    if cfg.output_dir:
        out = cfg.output_dir.strip()
        return plan("static", f"static site from output_dir {out!r}", (out,), install, build)
    if pm is not None and pkg is not None and (build or "start" in scripts):
        framework = _framework(pkg)
        if framework is not None and framework[1] is None:
            return plan(
                "process", f"{framework[0]} app (package.json, {pm.name})", (".",), install, build
            )
        if framework is None and "start" in scripts:
            return plan(
                "process",
                f"Node.js app with a start script (package.json, {pm.name})",
                (".",),
                install,
                build,
            )
        name, outputs = (
            (framework[0], framework[1] or DEFAULT_OUTPUTS)
            if framework
            else ("package.json build", DEFAULT_OUTPUTS)
        )
        shown = " or ".join(f"{o}/" for o in outputs)
        return plan("static", f"{name} ({pm.name}), output {shown}", outputs, install, build)
    if build:
        outputs = (*DEFAULT_OUTPUTS, "public")
        shown = " or ".join(f"{o}/" for o in outputs)
        return plan("static", f"custom build command, output {shown}", outputs, install, build)
    web = _procfile_web(root)
    python = (root / "requirements.txt").is_file() or (root / "pyproject.toml").is_file()
    if web:
        kind = "Python app" if python else "app"
        return plan("process", f"{kind} with a Procfile web: command", (".",), install, None, web)
    if (root / "index.html").is_file():
        return plan("static", f"static site (index.html at {where})", (".",), install, None)
    if (root / "public" / "index.html").is_file():
        return plan("static", "static site (public/index.html)", ("public",), install, None)
    if python:
        raise _fail(
            f"Found a Python project in {where} but no start command: process apps need a "
            'Procfile "web:" line or start_command (and are not supported yet); a static site '
            "needs index.html or output_dir"
        )
    raise _fail(
        f"Could not detect how to build this app in {where}. Looked for: {LOOKED_FOR}. "
        "Set output_dir (and build_command if the site needs building) in the project's build "
        f"settings or in {TOML_NAME}"
    )


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
