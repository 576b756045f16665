"""The embedded NATS of `launchdeck dev` (`cli.dev.nats`): how many nodes, their ports from one
run to the next, the services' replicas, and the nodes a crashed run left behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from launchdeck.cli.dev.nats import (
    nats_nodes,
    recorded_nats_ports,
    replicas_for,
    start_embedded_nats,
    stop_leftover_nats,
)
from launchdeck.cli.dev.services import DevPorts, service_specs
from launchdeck.libs.processes import process_alive
from launchdeck.libs.settings import SettingsError
from tests.nats_auth import AUTH_CONFIG
from tests.polling import eventually_sync


@pytest.mark.parametrize(("raw", "nodes"), [("", 1), ("1", 1), ("3", 3), (" 5 ", 5)])
def test_the_number_of_nodes(raw: str, nodes: int) -> None:
    assert nats_nodes({"LAUNCHDECK_DEV_NATS_NODES": raw}) == nodes
    assert nats_nodes({}) == 1


@pytest.mark.parametrize("raw", ["0", "6", "three", "-3", "2.5"])
def test_a_bad_number_of_nodes_is_refused_naming_the_variable(raw: str) -> None:
    with pytest.raises(SettingsError, match=f"LAUNCHDECK_DEV_NATS_NODES .*got '{raw}'"):
        nats_nodes({"LAUNCHDECK_DEV_NATS_NODES": raw})


def test_each_node_gets_its_previous_port_back() -> None:
    """Ports come from the previous run's `nats_urls` (or `ports.nats` of a run from before
    clusters); nodes it did not have get none (a free port)."""
    previous = {"nats_urls": ["nats://127.0.0.1:41001", "nats://127.0.0.1:41002"]}
    assert recorded_nats_ports(previous, 3) == [41001, 41002, None]
    assert recorded_nats_ports(previous, 1) == [41001]
    assert recorded_nats_ports({"ports": {"nats": 41000}}, 3) == [41000, None, None]
    assert recorded_nats_ports({}, 1) == [None]


def test_the_services_get_the_cluster_and_its_replicas(tmp_path: Path) -> None:
    """With a cluster, every service gets all its nodes in NATS_URL and 3 replicas, unless the
    caller chose the replicas; with one server the services choose (1)."""
    url = "nats://127.0.0.1:41001,nats://127.0.0.1:41002,nats://127.0.0.1:41003"

    def env(replicas: int | None, base: dict[str, str]) -> list[dict[str, str]]:
        specs = service_specs(
            base_env=base,
            state=tmp_path,
            database_url="postgresql://x",
            nats_url=url,
            secret_key="k",
            ports=DevPorts(api=1, edge=2, deploy_engine=3, nats=41001),
            nats_replicas=replicas,
            console=False,
        )
        return [dict(spec.env) for spec in specs]

    assert replicas_for(3) == 3
    assert replicas_for(5) == 3
    assert replicas_for(1) is None
    for service in env(replicas_for(3), {}):
        assert service["NATS_URL"] == url
        assert service["LAUNCHDECK_NATS_REPLICAS"] == "3"
    for service in env(replicas_for(3), {"LAUNCHDECK_NATS_REPLICAS": "2"}):
        assert service["LAUNCHDECK_NATS_REPLICAS"] == "2"
    for service in env(replicas_for(1), {}):
        assert "LAUNCHDECK_NATS_REPLICAS" not in service


def test_the_nodes_of_a_crashed_run_are_stopped(tmp_path: Path) -> None:
    """The nodes a run killed without its clean-up left running (`nats_pids` of its dev.json)
    are stopped by the next run; a process that is not this state's NATS is left alone."""
    state = tmp_path / "state"
    nats = start_embedded_nats(state, 3, [0, 0, 0], tmp_path, AUTH_CONFIG)
    unrelated = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert all(process_alive(pid) for pid in nats.pids)
        previous = {"nats_pids": [*nats.pids, unrelated.pid]}
        assert stop_leftover_nats(state, previous) == nats.pids
        eventually_sync("every node to exit", lambda: not any(map(process_alive, nats.pids)))
        assert unrelated.poll() is None
    finally:
        unrelated.kill()
        unrelated.wait()
        nats.stop()


def test_the_server_of_a_crashed_run_from_before_clusters_is_stopped(tmp_path: Path) -> None:
    """A dev.json with only `nats_pid` (one server, as before clusters) still works."""
    state = tmp_path / "state"
    nats = start_embedded_nats(state, 1, [0], tmp_path, AUTH_CONFIG)
    try:
        assert stop_leftover_nats(state, {"nats_pid": nats.pids[0]}) == nats.pids
        eventually_sync("the server to exit", lambda: not process_alive(nats.pids[0]))
    finally:
        nats.stop()
