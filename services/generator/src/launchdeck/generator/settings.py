"""generator settings, from environment variables (docs/configuration.md)."""

from __future__ import annotations

from dataclasses import dataclass

from launchdeck.libs.settings import env_str, nats_url


@dataclass(frozen=True)
class Settings:
    nats_url: str
    ollama_url: str

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            nats_url=nats_url(),
            ollama_url=env_str("OLLAMA_URL", "http://127.0.0.1:11434"),
        )
