"""control-api settings, from environment variables (docs/configuration.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

from launchdeck.libs.db import PoolTimeouts
from launchdeck.libs.generation import pricing, variables
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


# The `leases` KV bucket forgets a key this long after its last write (libs.provisioning).
LEASES_BUCKET_TTL_S = 30.0


@dataclass(frozen=True)
class SchedulerSettings:
    """The scheduler (docs/configuration.md, "Schedules")."""

    # How often the replica holding the lease looks for due ticks.
    poll_interval_s: float = 1.0
    # A holder that stops renewing is taken over after about this long.
    lease_ttl_s: float = 10.0
    # Where HTTP actions reach the edge (the deploy-engine's Caddy); the project's production
    # host goes in the Host header.
    edge_url: str = "http://127.0.0.1:8000"

    @classmethod
    def from_env(cls) -> SchedulerSettings:
        poll_interval_s = env_float("LAUNCHDECK_SCHEDULER_POLL_INTERVAL_S", cls.poll_interval_s)
        lease_ttl_s = env_float("LAUNCHDECK_SCHEDULER_LEASE_TTL_S", cls.lease_ttl_s)
        edge_url = env_str("LAUNCHDECK_EDGE_URL", cls.edge_url).rstrip("/")
        if not 0 < poll_interval_s <= 60:
            raise SettingsError(
                "environment variable LAUNCHDECK_SCHEDULER_POLL_INTERVAL_S must be more than 0 "
                "and at most 60 (seconds)"
            )
        if not 1 <= lease_ttl_s <= LEASES_BUCKET_TTL_S:
            raise SettingsError(
                "environment variable LAUNCHDECK_SCHEDULER_LEASE_TTL_S must be between 1 and "
                f"{LEASES_BUCKET_TTL_S:g} (seconds; the leases bucket's own TTL)"
            )
        if not edge_url.startswith(("http://", "https://")):
            raise SettingsError(
                "environment variable LAUNCHDECK_EDGE_URL must be an http:// or https:// URL"
            )
        return cls(poll_interval_s=poll_interval_s, lease_ttl_s=lease_ttl_s, edge_url=edge_url)


@dataclass(frozen=True)
class GenerationSettings:
    """Generation jobs (docs/configuration.md, "Generation jobs")."""

    # Items one job may have (a matrix's product, or rows inline or uploaded).
    max_items: int = variables.MAX_ITEMS
    # The operator's prices per model (USD per million tokens); a job's own `price` wins.
    prices: pricing.PriceTable = field(default_factory=pricing.PriceTable)

    @classmethod
    def from_env(cls) -> GenerationSettings:
        max_items = env_int("LAUNCHDECK_GENERATION_MAX_ITEMS", variables.MAX_ITEMS)
        if not 1 <= max_items <= 10_000_000:
            raise SettingsError(
                "environment variable LAUNCHDECK_GENERATION_MAX_ITEMS must be between 1 and "
                "10000000"
            )
        try:
            prices = pricing.PriceTable.parse_json(
                env_str("LAUNCHDECK_GENERATION_PRICES", ""), "LAUNCHDECK_GENERATION_PRICES"
            )
        except pricing.PricingError as exc:
            raise SettingsError(
                f"environment variable {exc.field}: {exc.message} (expected JSON such as "
                '{"openai/gpt-4o-mini": {"input_per_mtok": 0.15, "output_per_mtok": 0.6}})'
            ) from None
        return cls(max_items=max_items, prices=prices)


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
    # Git-host webhooks: the largest body read (a larger one is a 413 before the rest is read),
    # and how long deliveries are remembered (a replay within it builds nothing).
    webhook_max_bytes: int = 1024 * 1024
    webhook_delivery_retention_s: float = 30 * DAY
    # Bounds on each wait for PostgreSQL: while it is away requests fail fast with a 503.
    db_timeouts: PoolTimeouts = field(default_factory=PoolTimeouts)
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    generation: GenerationSettings = field(default_factory=GenerationSettings)

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
        webhook_max_bytes = env_int("LAUNCHDECK_WEBHOOK_MAX_BYTES", 1024 * 1024)
        delivery_days = env_float("LAUNCHDECK_WEBHOOK_DELIVERY_RETENTION_DAYS", 30.0)
        db_timeouts = PoolTimeouts(
            connect_s=env_float("LAUNCHDECK_DB_CONNECT_TIMEOUT_S", PoolTimeouts.connect_s),
            acquire_s=env_float("LAUNCHDECK_DB_ACQUIRE_TIMEOUT_S", PoolTimeouts.acquire_s),
            command_s=env_float("LAUNCHDECK_DB_COMMAND_TIMEOUT_S", PoolTimeouts.command_s),
        )
        for name, value in (
            ("LAUNCHDECK_DB_CONNECT_TIMEOUT_S", db_timeouts.connect_s),
            ("LAUNCHDECK_DB_ACQUIRE_TIMEOUT_S", db_timeouts.acquire_s),
            ("LAUNCHDECK_DB_COMMAND_TIMEOUT_S", db_timeouts.command_s),
            ("LAUNCHDECK_BUILD_MAX_TIMEOUT_S", build_max_timeout_s),
            ("LAUNCHDECK_STUCK_BUILD_GRACE_S", stuck_build_grace_s),
            ("LAUNCHDECK_DEPLOY_DEADLINE_S", deploy_deadline_s),
            ("LAUNCHDECK_STUCK_SWEEP_INTERVAL_S", stuck_sweep_interval_s),
            ("LAUNCHDECK_BUILD_LOG_RETENTION_DAYS", log_days),
            ("LAUNCHDECK_PROCESSED_EVENTS_RETENTION_DAYS", event_days),
            ("LAUNCHDECK_KEEP_ARTIFACTS", keep_artifacts),
            ("LAUNCHDECK_PRUNE_INTERVAL_S", prune_interval_s),
            ("LAUNCHDECK_WEBHOOK_MAX_BYTES", webhook_max_bytes),
            ("LAUNCHDECK_WEBHOOK_DELIVERY_RETENTION_DAYS", delivery_days),
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
            webhook_max_bytes=webhook_max_bytes,
            webhook_delivery_retention_s=delivery_days * DAY,
            db_timeouts=db_timeouts,
            scheduler=SchedulerSettings.from_env(),
            generation=GenerationSettings.from_env(),
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
