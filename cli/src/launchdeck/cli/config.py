"""Where the client commands find the API and their token.

Each value is resolved on its own, first match wins: the `--api-url` / `--token` flags, then
`LAUNCHDECK_API_URL` / `LAUNCHDECK_TOKEN`, then `<state dir>/dev.json` (`api_url`, `admin_token`)
written by `launchdeck dev`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from launchdeck.cli.devstate import dev_json_path, read_dev_json, state_dir


class ConfigError(Exception):
    """Nothing says where the API is or which token to use."""


@dataclass(frozen=True)
class ClientConfig:
    api_url: str
    token: str
    api_url_source: str
    token_source: str


def resolve_config(
    *,
    api_url: str | None,
    token: str | None,
    environ: Mapping[str, str],
    state: Path | None = None,
) -> ClientConfig:
    directory = state if state is not None else state_dir(environ)
    dev_json = dev_json_path(directory)
    recorded = read_dev_json(dev_json)

    def pick(flag: str | None, env_name: str, key: str) -> tuple[str, str] | None:
        if flag:
            return flag, "flag"
        if environ.get(env_name):
            return environ[env_name], env_name
        value = recorded.get(key)
        if isinstance(value, str) and value:
            return value, str(dev_json)
        return None

    url = pick(api_url, "LAUNCHDECK_API_URL", "api_url")
    if url is None:
        raise ConfigError(
            "no API URL: pass --api-url, set LAUNCHDECK_API_URL, "
            f"or start `launchdeck dev` (it writes {dev_json})"
        )
    tok = pick(token, "LAUNCHDECK_TOKEN", "admin_token")
    if tok is None:
        raise ConfigError(
            "no API token: pass --token, set LAUNCHDECK_TOKEN, "
            f"or start `launchdeck dev` (it writes {dev_json})"
        )
    return ClientConfig(
        api_url=url[0].rstrip("/"), token=tok[0], api_url_source=url[1], token_source=tok[1]
    )
