"""Which host names a project may serve, and claiming them: a domain belongs to one project.

A host listed in `domains` is routed by the edge to the project, so a project that could list
any host could take another project's traffic (`victim.localhost`: its route would win and the
victim's own deploys would then fail their check through the edge), the API's own name, or the
names the platform hands out under its base domain (every project's `<name>.<base domain>` and
each preview's `<build8>-<name>.<base domain>`). So:

- the API's public hosts (`LAUNCHDECK_API_PUBLIC_HOSTS`), `localhost` and `*.localhost`, the base
  domain itself and IP addresses are nobody's (422);
- under the base domain a project may list only its own `<name>.<base domain>` (422);
- any other host belongs to the first project that claims it (`project_domains`, unique on
  `lower(host)`, so two concurrent requests cannot both have it): another project gets 409, told
  which project owns it only when its token could see that project anyway (an admin token).
"""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass
from typing import Any

from launchdeck.control_api.domain.errors import Conflict, FieldError, Invalid
from launchdeck.control_api.store import domains as store


@dataclass(frozen=True)
class DomainPolicy:
    """The names no project may claim: what the platform itself answers to."""

    base_domain: str
    api_hosts: frozenset[str] = frozenset()

    def refusal(self, project_name: str, host: str) -> str | None:
        """Why the project `project_name` may not list `host` (lower case), or None."""
        if _is_ip_address(host):
            return "must be a host name, not an IP address"
        if host in self.api_hosts:
            return "is the API's own host name"
        # With the base domain `localhost` (make dev) the rules below cover these names.
        is_local = host == "localhost" or host.endswith(".localhost")
        if is_local and self.base_domain != "localhost":
            return "is a name of this machine (localhost), not a domain of its own"
        if host == self.base_domain:
            return f"is the platform's base domain ({self.base_domain})"
        own = f"{project_name}.{self.base_domain}"
        if host.endswith(f".{self.base_domain}") and host != own:
            return (
                f"is under the platform's base domain {self.base_domain}, where this project "
                f"has only {own}"
            )
        return None


def _is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def check_domains(policy: DomainPolicy, project_name: str, hosts: list[str]) -> list[str]:
    """The hosts, in lower case and in order, if the project may list every one of them;
    Invalid naming the first that it may not (`domains[i]`)."""
    seen: set[str] = set()
    checked: list[str] = []
    for index, raw in enumerate(hosts):
        host = raw.lower()
        field = f"domains[{index}]"
        if host in seen:
            raise Invalid.field(field, f"{host!r} is listed twice")
        if reason := policy.refusal(project_name, host):
            raise Invalid.field(field, f"{host!r} {reason}")
        seen.add(host)
        checked.append(host)
    return checked


async def claim_domains(
    conn: Any, project_id: uuid.UUID, hosts: list[str], *, reveal_owner: bool
) -> None:
    """Make `hosts` (checked) the project's domains and release the ones it no longer lists;
    Conflict if another project owns one. Call it inside the transaction that changes the
    project, so a refusal undoes the change."""
    taken = await store.replace(conn, project_id, hosts)
    if not taken:
        return
    first = taken[0]
    index = next(i for i, host in enumerate(hosts) if host == first.host)
    owner = f"project {first.owner_name!r}" if reveal_owner else "another project"
    message = f"{first.host!r} is already a domain of {owner}"
    raise Conflict(f"domains[{index}]: {message}", [FieldError(f"domains[{index}]", message)])
