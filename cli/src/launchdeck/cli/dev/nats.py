"""The embedded NATS of `launchdeck dev`: one server (the default), or with
`LAUNCHDECK_DEV_NATS_NODES=3` a JetStream cluster on this machine, so anyone can try failover
(`kill -9` one of the `nats_pids` of dev.json) without setting up machines.

One server stores in `<state>/nats/`; a cluster's nodes in `<state>/nats-cluster/n1/`… . They
are separate stores because a single server's streams do not become clustered ones: switching
starts on the other store (empty the first time), and switching back finds the first one again.
With a cluster the services get every node in `NATS_URL` and `LAUNCHDECK_NATS_REPLICAS` set to
the cluster's size (at most 3), unless the caller set it. Either way the server lets in only the
platform's users (`libs.nats_access`, passwords from `dev.credentials`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from launchdeck.devservers import start_nats, start_nats_cluster, stop_leftover
from launchdeck.libs.provisioning import MAX_AUTO_REPLICAS
from launchdeck.libs.settings import SettingsError

NODES_VARIABLE = "LAUNCHDECK_DEV_NATS_NODES"
MAX_NODES = 5


def nats_nodes(environ: Mapping[str, str]) -> int:
    """`LAUNCHDECK_DEV_NATS_NODES`: how many NATS servers to run, 1 (default) to 5."""
    raw = environ.get(NODES_VARIABLE, "").strip()
    if not raw:
        return 1
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_NODES:
        raise SettingsError(
            f"environment variable {NODES_VARIABLE} must be an integer from 1 to {MAX_NODES} "
            f"(3 for a cluster), got {raw!r}"
        )
    return int(raw)


def replicas_for(nodes: int) -> int | None:
    """The `LAUNCHDECK_NATS_REPLICAS` the services get: None on one server (they choose 1)."""
    return min(nodes, MAX_AUTO_REPLICAS) if nodes > 1 else None


@dataclass(frozen=True)
class EmbeddedNats:
    urls: list[str]
    pids: list[int]
    stop: Callable[[], None]

    @property
    def url(self) -> str:
        """What `NATS_URL` (and dev.json's `nats_url`) says: every node, comma-separated."""
        return ",".join(self.urls)

    @property
    def port(self) -> int:
        """The first node's client port (dev.json's `ports.nats`)."""
        return int(urlsplit(self.urls[0]).port or 4222)


def start_embedded_nats(
    state: Path, nodes: int, ports: list[int], log_dir: Path, config: str
) -> EmbeddedNats:
    """Start `nodes` servers on `ports` (one per node; blocking: run it in a thread), with
    `config` (the `authorization` block) added to each one's configuration."""
    if nodes == 1:
        server = start_nats(state / "nats", ports[0], log_dir / "nats.log", config=config)
        return EmbeddedNats([server.url], [server.process.pid], server.stop)
    cluster = start_nats_cluster(
        state / "nats-cluster", nodes, ports=ports, config=config, log_dir=log_dir
    )
    return EmbeddedNats(cluster.urls, cluster.pids, cluster.stop)


def recorded_nats_ports(previous: Mapping[str, Any], nodes: int) -> list[int | None]:
    """A previous run's client port of each node (from `nats_urls`, else `ports.nats` for the
    first), so URLs stay the same from one run to the next when those ports are free."""
    urls = previous.get("nats_urls")
    ports: list[int | None] = []
    if isinstance(urls, list):
        for url in urls:
            try:
                ports.append(urlsplit(str(url)).port)
            except ValueError:
                ports.append(None)
    else:
        recorded = previous.get("ports")
        first = recorded.get("nats") if isinstance(recorded, dict) else None
        ports.append(first if isinstance(first, int) else None)
    return (ports + [None] * nodes)[:nodes]


def stop_leftover_nats(state: Path, previous: Mapping[str, Any]) -> list[int]:
    """Stop the NATS servers a crashed run on `state` left running (its `nats_pids`, or the
    `nats_pid` of a run from before clusters); return the pids stopped. Only processes whose
    command line names this state directory's NATS store are touched."""
    pids = previous.get("nats_pids")
    if not isinstance(pids, list):
        pids = [previous.get("nats_pid")]
    marker = str(state / "nats")  # `…/nats` (one server) and `…/nats-cluster/…` (a cluster)
    return [pid for pid in pids if isinstance(pid, int) and stop_leftover(pid, marker)]
