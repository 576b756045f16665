"""build-worker settings, from environment variables (docs/configuration.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from launchdeck.libs.launcher.limits import MIB, ResourceLimits
from launchdeck.libs.launcher.sandbox import SANDBOX_MODES, SandboxMode
from launchdeck.libs.settings import (
    SettingsError,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_opt,
    env_str,
    nats_url,
)

# Worker variables a build inherits by default: where the machine's trusted CA certificates are
# (a TLS-inspecting proxy's CA, say; Node.js reads only its own list without the first) and the
# registry corepack fetches yarn and pnpm from, and the keys it checks their signatures with (an
# empty value skips the check, for a mirror that drops the signatures). Names, not credentials.
BUILD_ENV_PASSTHROUGH = (
    "NODE_EXTRA_CA_CERTS",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "GIT_SSL_CAINFO",
    "CURL_CA_BUNDLE",
    "REQUESTS_CA_BUNDLE",
    "PIP_CERT",
    "COREPACK_NPM_REGISTRY",
    "COREPACK_INTEGRITY_KEYS",
)


# What one build command may take by default (LAUNCHDECK_BUILD_LIMIT_AS_MB, _NOFILE, _NPROC;
# `libs.launcher.limits`). 16 GiB of address space, not less: Node.js's `fetch()` (corepack's
# downloads, many build tools) needs ~10 GiB of it for WebAssembly and fails at 8 GiB.
BUILD_LIMITS = ResourceLimits(
    address_space_bytes=16 * 1024 * MIB, open_files=16_384, processes=4_096
)


@dataclass(frozen=True)
class Settings:
    nats_url: str
    build_dir: Path  # one scratch directory per build attempt lives under here
    allow_local_repos: bool  # local paths / file:// read the worker's own disk: opt-in only
    concurrency: int
    timeout_s: int  # clone + install + build, per build; a project's config.timeout_s overrides
    log_max_bytes: int
    # The operator's ceiling on any build's time limit: a project's or launchdeck.toml's
    # timeout_s above it is clamped to it (and the build log says so).
    max_timeout_s: int = 3600
    # JetStream AckWait of the build jobs: a job whose worker died (no heartbeat) is
    # redelivered this long after its last heartbeat.
    ack_wait_s: float = 30.0
    # NATS away mid-build: unsent log lines held (past it they are counted and dropped) …
    log_buffer_lines: int = 10_000
    # … and how long past the build's time limit its publishes still wait for NATS.
    outage_grace_s: float = 120.0
    # The watchdog: an attempt without progress for this long is cancelled and redelivered
    # (None: off). A running clone or build command counts as progress.
    stall_timeout_s: float | None = 600.0
    # Sent only to `git_token_hosts`, as an HTTP header through git's environment; never logged.
    git_token: str | None = field(default=None, repr=False)
    git_token_hosts: tuple[str, ...] = ("github.com",)
    # Dependency cache (cache/): None turns it off. Local to this worker, best effort.
    cache_dir: Path | None = None
    cache_keep: int = 2  # entries (lock-file states) kept per project
    # The whole cache directory (entries and download caches of every project) is kept under
    # this size and rid of what was not used for this long (`cache/budget.py`).
    cache_max_bytes: int = 10 * 1024**3
    cache_max_age_s: float = 30 * 24 * 3600.0
    # Worker environment variables passed on to install/build commands (when set).
    build_env_passthrough: tuple[str, ...] = BUILD_ENV_PASSTHROUGH
    # Builds run in bubblewrap (`sandbox.py`): auto (when it works here, else unsandboxed with a
    # warning at start and in every build's log), bwrap (required) or none.
    sandbox: SandboxMode = "auto"
    sandbox_ro_paths: tuple[Path, ...] = ()  # more read-only paths a sandboxed build sees
    # The platform's state (dev.json, secret.key, Postgres, Caddy's socket, releases): never
    # shown to a sandboxed build, even under a read-only path.
    state_dir: Path | None = None
    # rlimits of every build command, sandboxed or not (`libs.launcher.limits`):
    # LAUNCHDECK_BUILD_LIMIT_AS_MB, _NOFILE, _NPROC.
    limits: ResourceLimits = BUILD_LIMITS
    # The engine Dockerfile apps are built with (`container_engine.py`): a path or a name on
    # PATH; None: podman, else docker, when found; "none": container builds off.
    container_engine: str | None = None

    @classmethod
    def from_env(cls) -> Settings:
        state_dir = Path(env_str("LAUNCHDECK_STATE_DIR", ".launchdeck"))
        concurrency = env_int("LAUNCHDECK_BUILD_CONCURRENCY", 1)
        timeout_s = env_int("LAUNCHDECK_BUILD_TIMEOUT_S", 1800)
        max_timeout_s = env_int("LAUNCHDECK_BUILD_MAX_TIMEOUT_S", 3600)
        cache_max_bytes = env_int("LAUNCHDECK_BUILD_CACHE_MAX_BYTES", 10 * 1024**3)
        cache_max_age_days = env_float("LAUNCHDECK_BUILD_CACHE_MAX_AGE_DAYS", 30.0)
        log_max_bytes = env_int("LAUNCHDECK_LOG_MAX_BYTES", 10 * 1024 * 1024)
        cache_keep = env_int("LAUNCHDECK_BUILD_CACHE_KEEP", 2)
        ack_wait_s = env_float("LAUNCHDECK_BUILD_ACK_WAIT_S", 30.0)
        log_buffer_lines = env_int("LAUNCHDECK_LOG_BUFFER_LINES", 10_000)
        outage_grace_s = env_float("LAUNCHDECK_BUILD_OUTAGE_GRACE_S", 120.0)
        stall_timeout_s = env_float("LAUNCHDECK_BUILD_STALL_TIMEOUT_S", 600.0)
        for name, number in (
            ("LAUNCHDECK_BUILD_ACK_WAIT_S", ack_wait_s),
            ("LAUNCHDECK_BUILD_OUTAGE_GRACE_S", outage_grace_s),
        ):
            if number < 1:
                raise SettingsError(f"environment variable {name} must be at least 1")
        if stall_timeout_s < 0:
            raise SettingsError(
                "environment variable LAUNCHDECK_BUILD_STALL_TIMEOUT_S must be 0 (off) or more"
            )
        for name, value in (
            ("LAUNCHDECK_BUILD_CONCURRENCY", concurrency),
            ("LAUNCHDECK_BUILD_TIMEOUT_S", timeout_s),
            ("LAUNCHDECK_BUILD_MAX_TIMEOUT_S", max_timeout_s),
            ("LAUNCHDECK_BUILD_CACHE_MAX_BYTES", cache_max_bytes),
            ("LAUNCHDECK_LOG_MAX_BYTES", log_max_bytes),
            ("LAUNCHDECK_BUILD_CACHE_KEEP", cache_keep),
            ("LAUNCHDECK_LOG_BUFFER_LINES", log_buffer_lines),
        ):
            if value < 1:
                raise SettingsError(f"environment variable {name} must be at least 1")
        if cache_max_age_days <= 0:
            raise SettingsError(
                "environment variable LAUNCHDECK_BUILD_CACHE_MAX_AGE_DAYS must be more than 0"
            )
        if timeout_s > max_timeout_s:
            raise SettingsError(
                "environment variable LAUNCHDECK_BUILD_TIMEOUT_S must not exceed "
                f"LAUNCHDECK_BUILD_MAX_TIMEOUT_S ({max_timeout_s})"
            )
        cache_dir = (
            Path(env_str("LAUNCHDECK_BUILD_CACHE_DIR", str(state_dir / "build-cache"))).absolute()
            if env_bool("LAUNCHDECK_BUILD_CACHE", True)
            else None
        )
        return cls(
            nats_url=nats_url(),
            build_dir=Path(env_str("LAUNCHDECK_BUILD_DIR", str(state_dir / "builds"))).absolute(),
            allow_local_repos=env_bool("LAUNCHDECK_ALLOW_LOCAL_REPOS", False),
            concurrency=concurrency,
            timeout_s=timeout_s,
            log_max_bytes=log_max_bytes,
            max_timeout_s=max_timeout_s,
            ack_wait_s=ack_wait_s,
            log_buffer_lines=log_buffer_lines,
            outage_grace_s=outage_grace_s,
            stall_timeout_s=stall_timeout_s or None,
            git_token=env_opt("LAUNCHDECK_GIT_TOKEN"),
            git_token_hosts=tuple(
                h.lower() for h in env_list("LAUNCHDECK_GIT_TOKEN_HOSTS", ("github.com",))
            ),
            cache_dir=cache_dir,
            cache_keep=cache_keep,
            cache_max_bytes=cache_max_bytes,
            cache_max_age_s=cache_max_age_days * 24 * 3600,
            build_env_passthrough=env_list(
                "LAUNCHDECK_BUILD_ENV_PASSTHROUGH", BUILD_ENV_PASSTHROUGH
            ),
            sandbox=env_choice("LAUNCHDECK_BUILD_SANDBOX", SANDBOX_MODES, "auto"),
            sandbox_ro_paths=_absolute_paths("LAUNCHDECK_BUILD_SANDBOX_RO_PATHS"),
            state_dir=state_dir.absolute(),
            limits=ResourceLimits.from_env("LAUNCHDECK_BUILD", BUILD_LIMITS),
            container_engine=env_opt("LAUNCHDECK_CONTAINER_ENGINE"),
        )

    def time_limit(self, requested: int | None) -> tuple[int, bool]:
        """A build's time limit: `requested` (a project's or launchdeck.toml's timeout_s) or the
        default, never above the operator's maximum; and whether it was clamped to it."""
        limit = requested or self.timeout_s
        if limit > self.max_timeout_s:
            return self.max_timeout_s, True
        return limit, False


def _absolute_paths(name: str) -> tuple[Path, ...]:
    """Comma-separated absolute paths (a relative one would depend on the worker's directory)."""
    paths = tuple(Path(p) for p in env_list(name, ()))
    for path in paths:
        if not path.is_absolute():
            raise SettingsError(
                f"environment variable {name} must list absolute paths, got {str(path)!r}"
            )
    return paths
