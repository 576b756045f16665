"""The build sandbox: install and build commands run in bubblewrap (`bwrap`) where it works.

A build runs whatever its repository (and every npm `postinstall` of its dependencies) says, as
the worker's user. Unconfined, it could read what that user can: the platform's state
(`dev.json` with the admin token, `secret.key`, Postgres' data and socket, Caddy's admin
socket, releases), other builds' directories, the operator's home. In the sandbox a command
sees only:

- its workspace, read-write, at the same paths as outside (so the paths in its environment,
  HOME and the cache variables, mean the same in and out): the checkout (`src/`), the build's
  HOME, and its own `/tmp` (the attempt's `tmp/`, on disk and removed with the attempt);
- the project's package-manager download caches (`<cache>/<project>/downloads/…`), read-write,
  and nothing else of the cache or of the state directory;
- read-only system paths: `/usr` (and the `/bin`, `/lib*` links or directories beside it), the
  few files of `/etc` that name resolution, TLS, users and the package managers' machine-wide
  configuration need, and the toolchains of the worker's PATH (each PATH directory, and the
  installation prefix of the interpreters a build runs: python, node, git…, e.g.
  `/root/.pyenv/versions/3.11.7` behind a virtualenv's `python3`), never a home directory
  itself;
- a private `/proc` (its own PID namespace: it sees none of the worker's processes) and a
  minimal `/dev`.

It keeps the network (installs need the registries), runs as uid 1000 (`build`) in a user
namespace of its own, with no capabilities (npm, pip and corepack see an ordinary user, not
root), in a new session, and dies with the worker (`--die-with-parent`). When a command ends,
bwrap's PID namespace ends with it: whatever the command left running, double-forked or
`setsid`, is killed by the kernel.

`LAUNCHDECK_BUILD_SANDBOX` chooses: `auto` (the default: bwrap when it works here, else run
unsandboxed and say so loudly at start and in every build's log), `bwrap` (required: the worker
refuses to start without it) or `none`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

SandboxMode = Literal["auto", "bwrap", "none"]
SANDBOX_MODES: tuple[SandboxMode, ...] = ("auto", "bwrap", "none")

# The user a build runs as inside its user namespace. Not root, so package managers behave as
# for any developer (npm's root handling, pip's warnings), and files it creates are the worker's
# own outside (the namespace maps this uid to the worker's).
SANDBOX_UID = 1000
SANDBOX_USER = "build"

# System directories bound read-only when they exist (symlinks, as on merged-/usr systems, are
# recreated as the same symlinks).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# What of /etc a build needs: name resolution, CA certificates and TLS configuration, the
# dynamic linker, time zone, MIME types, `alternatives` (Debian's links in /usr/bin point there)
# and the machine-wide configuration of git, npm and pip (a registry mirror, a CA file).
# Never the whole of /etc: it holds the machine's secrets (shadow, ssh host keys, ssl/private).
ETC_ENTRIES = (
    "resolv.conf",
    "hosts",
    "host.conf",
    "nsswitch.conf",
    "gai.conf",
    "services",
    "protocols",
    "ssl/certs",
    "ssl/openssl.cnf",
    "ca-certificates",
    "ca-certificates.conf",
    "pki/tls/certs",
    "pki/ca-trust",
    "crypto-policies",
    "alternatives",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "timezone",
    "mime.types",
    "os-release",
    "gitconfig",
    "npmrc",
    "pip.conf",
    "xdg/pip",
)
# Programs whose installation prefix (not only their PATH directory) a build needs: an
# interpreter finds its standard library, npm its modules, a pyenv shim its pyenv, from there.
TOOLCHAIN_PROGRAMS = (
    "python3",
    "python",
    "node",
    "npm",
    "npx",
    "corepack",
    "yarn",
    "pnpm",
    "git",
    "sh",
    "bash",
)
BIN_DIR_NAMES = frozenset({"bin", "sbin", "shims"})
PROBE_TIMEOUT_S = 15.0


class SandboxUnavailable(Exception):
    """`LAUNCHDECK_BUILD_SANDBOX=bwrap` on a machine where bubblewrap does not work."""


@dataclass(frozen=True)
class Sandbox:
    """How this worker confines builds: `bwrap` is the program's path, or None when builds run
    unsandboxed, for `reason`."""

    mode: SandboxMode
    bwrap: str | None
    reason: str = ""
    extra_ro_paths: tuple[Path, ...] = ()

    @property
    def enabled(self) -> bool:
        return self.bwrap is not None

    def build_log_warning(self) -> str:
        """The system line every unsandboxed build's log starts with: never silently."""
        return (
            f"⚠ This build runs WITHOUT a sandbox ({self.reason}): its commands run as the "
            "build-worker's user and can read whatever that user can, the platform's own state "
            "included. Install bubblewrap on the worker (see docs/operations.md)"
        )

    def for_build(
        self,
        *,
        workdir: Path,
        writable: Iterable[Path],
        private: Iterable[Path] = (),
    ) -> BuildSandbox | None:
        """The sandbox of one build attempt (None when builds run unsandboxed): `workdir`'s
        `src/`, `home/` and `tmp/` (as /tmp) and the `writable` directories are its read-write
        part; `private` directories (the state, build and cache directories) are hidden even
        where a read-only path would show them."""
        if self.bwrap is None:
            return None
        return BuildSandbox(
            bwrap=self.bwrap,
            workdir=workdir,
            writable=tuple(writable),
            private=tuple(private),
            extra_ro_paths=self.extra_ro_paths,
        )

    def for_app(
        self, *, rundir: Path, release: Path, private: Iterable[Path] = ()
    ) -> BuildSandbox | None:
        """The sandbox of one app process (None when apps run unsandboxed): its release
        read-only, `rundir`'s `home/` and `tmp/` (as /tmp) read-write, the platform's
        `private` directories hidden. Unlike a build's, it outlives the engine that started it
        (no `--die-with-parent`): apps keep serving while the engine restarts, and the next
        engine adopts them (deploy_engine/apps)."""
        if self.bwrap is None:
            return None
        return BuildSandbox(
            bwrap=self.bwrap,
            workdir=rundir,
            private=tuple(private),
            extra_ro_paths=self.extra_ro_paths,
            readonly=(release,),
            outlives_parent=True,
        )


def detect_sandbox(
    mode: SandboxMode,
    extra_ro_paths: Sequence[Path] = (),
    path: str | None = None,
    variable: str = "LAUNCHDECK_BUILD_SANDBOX",
) -> Sandbox:
    """The sandbox this machine allows for `mode`: bwrap is looked up on `path` (the worker's
    PATH) and tried once, since an installed bwrap may still be refused user namespaces.
    `variable` names the setting in messages (the deploy-engine's is `LAUNCHDECK_APP_SANDBOX`)."""
    extra = tuple(extra_ro_paths)
    if mode == "none":
        return Sandbox(mode, None, f"{variable}=none", extra)
    found = shutil.which("bwrap", path=path if path is not None else os.environ.get("PATH"))
    problem = _probe(found) if found else "bubblewrap (bwrap) is not installed on this worker"
    if problem is None:
        return Sandbox(mode, found, "", extra)
    if mode == "bwrap":
        raise SandboxUnavailable(
            f"{variable}=bwrap, but {problem} (install the bubblewrap package; "
            "it needs unprivileged user namespaces)"
        )
    return Sandbox(mode, None, problem, extra)


def _probe(bwrap: str) -> str | None:
    """Why bwrap cannot sandbox a build here, or None when it can: the namespaces a build uses
    are tried with a command that does nothing."""
    argv = [
        bwrap,
        *NAMESPACE_ARGS,
        *_system_args(),
        "--proc", "/proc",
        "--dev", "/dev",
        "--", "true",
    ]  # fmt: skip
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=PROBE_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap ({bwrap}) could not be run: {exc}"
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        return f"bubblewrap ({bwrap}) does not work here: {said[-1] if said else done.returncode}"
    return None


# Every namespace but the network's (installs need the registries), as an unprivileged user.
NAMESPACE_ARGS = (
    "--unshare-user",
    "--uid", str(SANDBOX_UID),
    "--gid", str(SANDBOX_UID),
    "--unshare-pid",
    "--unshare-ipc",
    "--unshare-uts",
    "--unshare-cgroup-try",
    "--share-net",
    "--hostname", "build",
    "--die-with-parent",
    "--new-session",
)  # fmt: skip
DIE_WITH_PARENT = "--die-with-parent"


def _system_args() -> list[str]:
    args: list[str] = []
    for name in SYSTEM_DIRS:
        path = Path(name)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), name]
        elif path.is_dir():
            args += ["--ro-bind", name, name]
    return args


def _home_dirs() -> set[Path]:
    homes = {Path("/root"), Path("/home")}
    homes.update(p for p in Path("/home").glob("*") if p.is_dir())
    home = os.environ.get("HOME")
    if home:
        homes.add(Path(home))
    return {Path(os.path.realpath(h)) for h in homes}


def _covered(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def toolchain_paths(path_var: str, protected: Sequence[Path] = ()) -> list[Path]:
    """What of the machine's toolchains a build reads, for its PATH `path_var`: every PATH
    directory, plus the installation prefix of the interpreters and tools a build runs (the
    directory above their `bin/`, also behind symlinks: a virtualenv's python links to its base
    interpreter). A prefix that is a home directory, `/`, or holds a `protected` directory (the
    platform's state) is not taken; its `bin/` alone is. Sorted, nested paths dropped."""
    homes = _home_dirs()
    protected = [Path(os.path.realpath(p)) for p in protected]

    def acceptable(candidate: Path) -> bool:
        return (
            candidate != Path("/")
            and candidate not in homes
            and not any(p == candidate or p.is_relative_to(candidate) for p in protected)
        )

    wanted: set[Path] = set()
    dirs = [Path(d) for d in path_var.split(os.pathsep) if d and os.path.isabs(d)]
    for directory in dirs:
        real = Path(os.path.realpath(directory))
        if real.is_dir() and acceptable(real):
            wanted.add(real)
    for program in TOOLCHAIN_PROGRAMS:
        found = shutil.which(program, path=path_var)
        if found is None:
            continue
        for executable in {Path(os.path.abspath(found)), Path(os.path.realpath(found))}:
            bin_dir = executable.parent
            prefix = bin_dir.parent if bin_dir.name in BIN_DIR_NAMES else bin_dir
            real_prefix = Path(os.path.realpath(prefix))
            if acceptable(real_prefix):
                wanted.add(real_prefix)
            elif acceptable(Path(os.path.realpath(bin_dir))):
                wanted.add(Path(os.path.realpath(bin_dir)))
    kept: list[Path] = []
    for candidate in sorted(wanted, key=lambda p: (len(p.parts), str(p))):
        if not _covered(candidate, kept):
            kept.append(candidate)
    return sorted(kept)


def passwd_lines(home: Path) -> tuple[str, str]:
    """/etc/passwd and /etc/group of the sandbox: the build user (whose HOME is the build's)
    and nobody, so tools that look the current user up (git, npm, `whoami`) find it."""
    uid = SANDBOX_UID
    passwd = (
        f"{SANDBOX_USER}:x:{uid}:{uid}:Launchdeck build:{home}:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    )
    group = f"{SANDBOX_USER}:x:{uid}:\nnogroup:x:65534:\n"
    return passwd, group


@dataclass(frozen=True)
class BuildSandbox:
    """One build attempt's (or one app process's: `Sandbox.for_app`) sandbox: `argv()` wraps a
    command in bwrap."""

    bwrap: str
    workdir: Path
    writable: tuple[Path, ...] = ()
    private: tuple[Path, ...] = ()
    extra_ro_paths: tuple[Path, ...] = ()
    # Bound read-only even inside a `private` directory (an app's release, under the state).
    readonly: tuple[Path, ...] = ()
    # An app's sandbox is not tied to the engine's life (`Sandbox.for_app`).
    outlives_parent: bool = False
    _prepared: dict[str, Path] = field(default_factory=dict, compare=False, repr=False)
    # The bwrap options up to the command, per PATH: an attempt's commands share them.
    _options: dict[str, list[str]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def home(self) -> Path:
        return self.workdir / "home"

    def _prepare(self) -> dict[str, Path]:
        """The attempt's /tmp, passwd and group files (outside what the build may write)."""
        if not self._prepared:
            etc = self.workdir / "sandbox-etc"
            etc.mkdir(exist_ok=True)
            passwd, group = passwd_lines(self.home)
            (etc / "passwd").write_text(passwd)
            (etc / "group").write_text(group)
            tmp = self.workdir / "tmp"
            tmp.mkdir(exist_ok=True)
            self._prepared.update(passwd=etc / "passwd", group=etc / "group", tmp=tmp)
        return self._prepared

    def argv(self, command: Sequence[str], cwd: Path, env: Mapping[str, str]) -> list[str]:
        """`command`, run in `cwd` with `env`'s PATH, inside the sandbox."""
        path_var = env.get("PATH", "")
        options = self._options.get(path_var)
        if options is None:
            options = self._options[path_var] = self._bwrap_options(path_var)
        return [*options, "--chdir", str(cwd), "--", *command]

    def _bwrap_options(self, path_var: str) -> list[str]:
        files = self._prepare()
        ro = toolchain_paths(path_var, protected=self.private)
        ro += [p for p in self.extra_ro_paths if p.exists()]
        skip = {DIE_WITH_PARENT} if self.outlives_parent else set()
        namespaces = [arg for arg in NAMESPACE_ARGS if arg not in skip]
        args = [self.bwrap, *namespaces, *_system_args()]
        for entry in ETC_ENTRIES:
            source = Path("/etc") / entry
            if source.exists():
                args += ["--ro-bind", str(source), str(source)]
        args += ["--ro-bind", str(files["passwd"]), "/etc/passwd"]
        args += ["--ro-bind", str(files["group"]), "/etc/group"]
        args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/dev/shm"]
        # /tmp before the toolchains: a PATH directory may live under the machine's /tmp.
        args += ["--bind", str(files["tmp"]), "/tmp"]
        system = [Path(d) for d in SYSTEM_DIRS]
        for path in ro:
            if not _covered(path, system):
                args += ["--ro-bind", str(path), str(path)]
        # A read-only path above the platform's directories must not show them.
        for path in self.private:
            if _covered(path, ro) or _covered(path, system):
                args += ["--tmpfs", str(path)]
        for path in dict.fromkeys((self.workdir / "src", self.home, *self.writable)):
            if path.is_dir():
                args += ["--bind", str(path), str(path)]
        for path in self.readonly:
            args += ["--ro-bind", str(path), str(path)]
        return args
