"""control-api settings, from environment variables (docs/configuration.md)."""

from __future__ import annotations

from dataclasses import dataclass

from launchdeck.libs.settings import env_bool, env_int, env_str, nats_url


@dataclass(frozen=True)
class Settings:
    database_url: str
    nats_url: str
    host: str
    port: int
    secret_key: str
    migrate_on_start: bool
    ws_queue_size: int
    log_sweep_interval_s: int

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            database_url=env_str("DATABASE_URL"),
            nats_url=nats_url(),
            host=env_str("LAUNCHDECK_API_HOST", "127.0.0.1"),
            port=env_int("LAUNCHDECK_API_PORT", 8080),
            secret_key=env_str("LAUNCHDECK_SECRET_KEY"),
            migrate_on_start=env_bool("LAUNCHDECK_MIGRATE_ON_START", True),
            ws_queue_size=env_int("LAUNCHDECK_WS_QUEUE_SIZE", 1000),
            log_sweep_interval_s=env_int("LAUNCHDECK_LOG_SWEEP_INTERVAL_S", 300),
        )
