"""control-api settings, from environment variables (docs/configuration.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

from launchdeck.libs.settings import (
    SettingsError,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_opt,
    env_str,
    nats_url,
)

DAY = 24 * 3600.0


@dataclass(frozen=True)
class Settings:
    database_url: str
    nats_url: str
    host: str
    port: int
    secret_key: str = field(repr=False)
    migrate_on_start: bool
    ws_queue_size: int
    log_sweep_interval_s: int
    # The edge's base domain (the deploy-engine's LAUNCHDECK_BASE_DOMAIN): sites are
    # `<project>.<base domain>`, so no project may claim another's name under it as a domain.
    base_domain: str = "localhost"
    # Host names the API itself is reached at: no project may claim them as a domain.
    api_public_hosts: tuple[str, ...] = ()
    # Operator limits (docs/operations.md, "What grows and what prunes it"). A build silent for
    # longer than the longest time limit (the build-workers' LAUNCHDECK_BUILD_MAX_TIMEOUT_S) plus
    # the grace, or a deployment pending or activating for longer than its deadline, is failed.
    build_max_timeout_s: float = 3600.0
    stuck_build_grace_s: float = 1800.0
    deploy_deadline_s: float = 3600.0
    stuck_sweep_interval_s: float = 60.0
    # Kept this long, then pruned (every `prune_interval_s`, one replica at a time).
    build_log_retention_s: float = 90 * DAY
    processed_events_retention_s: float = 7 * DAY
    keep_artifacts: int = 10  # newest succeeded production builds per project keeping theirs
    prune_interval_s: float = 3600.0
    # During a key rotation, the secret key env var values may still be sealed under
    # (docs/configuration.md: rotating the secret key).
    secret_key_previous: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls) -> Settings:
        build_max_timeout_s = env_float("LAUNCHDECK_BUILD_MAX_TIMEOUT_S", 3600.0)
        stuck_build_grace_s = env_float("LAUNCHDECK_STUCK_BUILD_GRACE_S", 1800.0)
        deploy_deadline_s = env_float("LAUNCHDECK_DEPLOY_DEADLINE_S", 3600.0)
        stuck_sweep_interval_s = env_float("LAUNCHDECK_STUCK_SWEEP_INTERVAL_S", 60.0)
        log_days = env_float("LAUNCHDECK_BUILD_LOG_RETENTION_DAYS", 90.0)
        event_days = env_float("LAUNCHDECK_PROCESSED_EVENTS_RETENTION_DAYS", 7.0)
        keep_artifacts = env_int("LAUNCHDECK_KEEP_ARTIFACTS", 10)
        prune_interval_s = env_float("LAUNCHDECK_PRUNE_INTERVAL_S", 3600.0)
        for name, value in (
            ("LAUNCHDECK_BUILD_MAX_TIMEOUT_S", build_max_timeout_s),
            ("LAUNCHDECK_STUCK_BUILD_GRACE_S", stuck_build_grace_s),
            ("LAUNCHDECK_DEPLOY_DEADLINE_S", deploy_deadline_s),
            ("LAUNCHDECK_STUCK_SWEEP_INTERVAL_S", stuck_sweep_interval_s),
            ("LAUNCHDECK_BUILD_LOG_RETENTION_DAYS", log_days),
            ("LAUNCHDECK_PROCESSED_EVENTS_RETENTION_DAYS", event_days),
            ("LAUNCHDECK_KEEP_ARTIFACTS", keep_artifacts),
            ("LAUNCHDECK_PRUNE_INTERVAL_S", prune_interval_s),
        ):
            if value <= 0:
                raise SettingsError(f"environment variable {name} must be more than 0")
        return cls(
            build_max_timeout_s=build_max_timeout_s,
            stuck_build_grace_s=stuck_build_grace_s,
            deploy_deadline_s=deploy_deadline_s,
            stuck_sweep_interval_s=stuck_sweep_interval_s,
            build_log_retention_s=log_days * DAY,
            processed_events_retention_s=event_days * DAY,
            keep_artifacts=keep_artifacts,
            prune_interval_s=prune_interval_s,
            database_url=env_str("DATABASE_URL"),
            nats_url=nats_url(),
            host=env_str("LAUNCHDECK_API_HOST", "127.0.0.1"),
            port=env_int("LAUNCHDECK_API_PORT", 8080),
            secret_key=env_str("LAUNCHDECK_SECRET_KEY"),
            secret_key_previous=env_opt("LAUNCHDECK_SECRET_KEY_PREVIOUS"),
            migrate_on_start=env_bool("LAUNCHDECK_MIGRATE_ON_START", True),
            ws_queue_size=env_int("LAUNCHDECK_WS_QUEUE_SIZE", 1000),
            log_sweep_interval_s=env_int("LAUNCHDECK_LOG_SWEEP_INTERVAL_S", 300),
            base_domain=_host_setting(
                "LAUNCHDECK_BASE_DOMAIN", env_str("LAUNCHDECK_BASE_DOMAIN", "localhost")
            ),
            api_public_hosts=tuple(
                _host_setting("LAUNCHDECK_API_PUBLIC_HOSTS", host)
                for host in env_list("LAUNCHDECK_API_PUBLIC_HOSTS", ())
            ),
        )


def _host_setting(variable: str, value: str) -> str:
    """A host name as the edge compares it (lower case, no trailing dot); empty stops the
    service at start."""
    host = value.strip().strip(".").lower()
    if not host:
        raise SettingsError(f"environment variable {variable} must not be empty")
    return host
