"""generator settings, from environment variables (docs/configuration.md)."""

from __future__ import annotations

from dataclasses import dataclass

from launchdeck.libs.settings import SettingsError, env_float, env_int, env_str, nats_url


@dataclass(frozen=True)
class Settings:
    nats_url: str
    ollama_url: str  # a job's base URL when it names none (provider ollama)
    openai_base_url: str = "https://api.openai.com"  # … (provider openai)
    jobs: int = 4  # generation jobs run at once by this process
    # JetStream AckWait of the generation jobs: a job whose generator died (no heartbeat) is
    # redelivered — and resumes from its checkpoint — this long after its last heartbeat.
    ack_wait_s: float = 30.0
    # The first retry of a transient provider error waits up to this long (then 2x, 4x…).
    retry_base_s: float = 5.0
    call_timeout_s: float = 120.0  # one model call, answer included
    # The watchdog: a job attempt without progress (a call answered, an item settled) for this
    # long is cancelled and redelivered. Above 3 calls with their backoffs, so slow models pass.
    stall_timeout_s: float = 900.0

    @classmethod
    def from_env(cls) -> Settings:
        jobs = env_int("LAUNCHDECK_GENERATOR_JOBS", 4)
        ack_wait_s = env_float("LAUNCHDECK_GENERATION_ACK_WAIT_S", 30.0)
        retry_base_s = env_float("LAUNCHDECK_GENERATION_RETRY_BASE_S", 5.0)
        call_timeout_s = env_float("LAUNCHDECK_GENERATION_CALL_TIMEOUT_S", 120.0)
        stall_timeout_s = env_float("LAUNCHDECK_GENERATION_STALL_TIMEOUT_S", 900.0)
        if jobs < 1:
            raise SettingsError("environment variable LAUNCHDECK_GENERATOR_JOBS must be at least 1")
        for name, value in (
            ("LAUNCHDECK_GENERATION_ACK_WAIT_S", ack_wait_s),
            ("LAUNCHDECK_GENERATION_CALL_TIMEOUT_S", call_timeout_s),
            ("LAUNCHDECK_GENERATION_STALL_TIMEOUT_S", stall_timeout_s),
        ):
            if value < 1:
                raise SettingsError(f"environment variable {name} must be at least 1")
        if retry_base_s < 0:
            raise SettingsError(
                "environment variable LAUNCHDECK_GENERATION_RETRY_BASE_S must be 0 or more"
            )
        return cls(
            nats_url=nats_url(),
            ollama_url=env_str("OLLAMA_URL", "http://127.0.0.1:11434"),
            openai_base_url=env_str("OPENAI_BASE_URL", "https://api.openai.com"),
            jobs=jobs,
            ack_wait_s=ack_wait_s,
            retry_base_s=retry_base_s,
            call_timeout_s=call_timeout_s,
            stall_timeout_s=stall_timeout_s,
        )
