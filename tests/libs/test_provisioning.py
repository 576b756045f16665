"""JetStream provisioning (`libs.provisioning`) on real servers: replicas from the setting or the
cluster, never lowered at a restart, raised when asked; an existing stream's retention,
subjects and limits never changed behind the operator's back."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from structlog.testing import capture_logs

from launchdeck.contracts import subjects as s
from launchdeck.devservers import NatsCluster
from launchdeck.libs.jetstream import connect, disconnect
from launchdeck.libs.provisioning import choose_replicas, provision, stream_configs
from launchdeck.libs.settings import SettingsError, nats_replicas
from tests.libs.support import RestartableNats
from tests.nats_auth import operator_url
from tests.nats_cluster import MakeNatsCluster, new_leader, stream_leader, stream_replicas
from tests.service_process import SERVICE_MODULES, service_env

BUCKET_STREAMS = [
    f"OBJ_{s.OBJECT_STORE_ARTIFACTS}",
    f"KV_{s.KV_LEASES}",
    f"KV_{s.KV_CANCELLATIONS}",
]
EVERY_STREAM = [str(config.name) for config in stream_configs()] + BUCKET_STREAMS


@asynccontextmanager
async def jetstream(url: str) -> AsyncIterator[JetStreamContext]:
    nc = await connect(url, name="test-provisioning")
    try:
        yield nc.jetstream()
    finally:
        await disconnect(nc)


async def replicas(js: JetStreamContext) -> dict[str, int]:
    return {name: await stream_replicas(js, name) for name in EVERY_STREAM}


def differences(logs: list[MutableMapping[str, Any]]) -> dict[str, MutableMapping[str, Any]]:
    """The `jetstream_stream_differs` warnings logged, by stream."""
    found = {}
    for entry in logs:
        if entry["event"] == "jetstream_stream_differs":
            assert entry["log_level"] == "warning"
            found[entry["stream"]] = entry
    return found


async def test_a_single_server_gets_one_replica(restartable_nats: RestartableNats) -> None:
    """With the setting unset, a server that reports no cluster gets everything with 1 replica."""
    async with jetstream(restartable_nats.url) as js:
        choice = await provision(js)
        assert (choice.count, choice.reason) == (1, "single server")
        assert await replicas(js) == dict.fromkeys(EVERY_STREAM, 1)


async def test_a_cluster_gets_three_replicas_and_a_restart_keeps_them(
    nats_cluster: NatsCluster,
) -> None:
    """On a 3-node cluster, provisioning with the setting unset gives every stream, object
    store and KV bucket 3 replicas. Provisioning again — as every service start does — with the
    setting unset changes nothing and says nothing; with `LAUNCHDECK_NATS_REPLICAS=1` it keeps
    the 3 replicas and warns, for each, that it does not lower them and why."""
    async with jetstream(operator_url(nats_cluster.url)) as js:
        choice = await provision(js)
        assert choice.count == 3
        assert "cluster" in choice.reason
        assert await replicas(js) == dict.fromkeys(EVERY_STREAM, 3)

        with capture_logs() as logs:
            await provision(js)
        assert differences(logs) == {}
        assert [e["log_level"] for e in logs] == ["info"]  # jetstream_provisioned, no change
        assert "updated" not in logs[0]

        with capture_logs() as logs:
            await provision(js, replicas=1)
        assert await replicas(js) == dict.fromkeys(EVERY_STREAM, 3)
        warned = differences(logs)
        assert sorted(warned) == sorted(EVERY_STREAM)
        for entry in warned.values():
            assert entry["changing"] == {}
            kept = entry["keeping"]["num_replicas"]
            assert (kept["stream"], kept["platform"]) == (3, 1)
            assert "never lowers" in kept["why"]


async def test_replicas_are_raised_when_more_are_asked_for(
    make_nats_cluster: MakeNatsCluster,
) -> None:
    """Streams and buckets made with 1 replica get 3 when a later start-up asks for 3 (here:
    the cluster's size), keeping what they hold; each raise is a warning saying why."""
    cluster = make_nats_cluster()
    async with jetstream(operator_url(cluster.url)) as js:
        await provision(js, replicas=1)
        assert await replicas(js) == dict.fromkeys(EVERY_STREAM, 1)
        artifacts = await js.object_store(s.OBJECT_STORE_ARTIFACTS)
        await artifacts.put("build.tar.gz", b"release bytes")
        await js.publish("ld.events.build.p.b", b"{}")

        with capture_logs() as logs:
            choice = await provision(js)
        assert choice.count == 3
        assert await replicas(js) == dict.fromkeys(EVERY_STREAM, 3)
        for name, entry in differences(logs).items():
            raised = entry["changing"]["num_replicas"]
            assert (raised["stream"], raised["platform"]) == (1, 3), name
            assert "more replicas" in raised["why"]
        assert sorted(differences(logs)) == sorted(EVERY_STREAM)

        assert (await artifacts.get("build.tar.gz")).data == b"release bytes"
        assert (await js.stream_info(s.STREAM_EVENTS)).state.messages == 1


async def test_a_stream_that_differs_is_not_silently_changed(
    restartable_nats: RestartableNats,
) -> None:
    """Existing streams made otherwise (by hand, by an older release): their retention, their
    extra subjects and their limits stay as they are, a subject the platform publishes on is
    added, and one warning per stream says what is changed, what is kept and why."""
    day = 24 * 3600.0
    async with jetstream(restartable_nats.url) as js:
        await js.add_stream(
            StreamConfig(
                name=s.STREAM_BUILDS,
                subjects=[s.SUBJECT_BUILD_JOBS, "ops.audit.>"],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                duplicate_window=2 * 3600.0,
            )
        )
        await js.add_stream(  # an older release: no undeploy or run jobs yet
            StreamConfig(
                name=s.STREAM_DEPLOYS,
                subjects=[s.SUBJECT_DEPLOY_JOBS],
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
                duplicate_window=2 * 3600.0,
            )
        )
        await js.add_stream(  # an operator shortened the events' retention
            StreamConfig(
                name=s.STREAM_EVENTS,
                subjects=[s.SUBJECT_EVENTS_ALL],
                storage=StorageType.FILE,
                max_age=day,
                duplicate_window=2 * 3600.0,
            )
        )

        with capture_logs() as logs:
            await provision(js)

        builds = (await js.stream_info(s.STREAM_BUILDS)).config
        assert builds.retention == RetentionPolicy.LIMITS
        assert builds.subjects == [s.SUBJECT_BUILD_JOBS, "ops.audit.>"]
        deploys = (await js.stream_info(s.STREAM_DEPLOYS)).config
        assert deploys.subjects == [
            s.SUBJECT_DEPLOY_JOBS,
            s.SUBJECT_UNDEPLOY_JOBS,
            s.SUBJECT_RUN_JOBS,
        ]
        assert (await js.stream_info(s.STREAM_EVENTS)).config.max_age == day

        warned = differences(logs)
        assert sorted(warned) == sorted([s.STREAM_BUILDS, s.STREAM_DEPLOYS, s.STREAM_EVENTS])
        kept = warned[s.STREAM_BUILDS]["keeping"]
        assert (kept["retention"]["stream"], kept["retention"]["platform"]) == (
            "limits",
            "workqueue",
        )
        assert kept["subjects"]["keeping"] == ["ops.audit.>"]
        assert warned[s.STREAM_BUILDS]["changing"] == {}
        added = warned[s.STREAM_DEPLOYS]["changing"]["subjects"]
        assert added["adding"] == [s.SUBJECT_UNDEPLOY_JOBS, s.SUBJECT_RUN_JOBS]
        assert warned[s.STREAM_DEPLOYS]["keeping"] == {}
        assert set(warned[s.STREAM_EVENTS]["keeping"]) == {"max_age"}
        for entry in warned.values():
            for difference in [*entry["changing"].values(), *entry["keeping"].values()]:
                assert difference["why"]

        # Once added, the subject no longer differs; what is kept is said again at each start.
        with capture_logs() as logs:
            await provision(js)
        assert sorted(differences(logs)) == sorted([s.STREAM_BUILDS, s.STREAM_EVENTS])


async def test_a_killed_node_leaves_every_stream_answering_with_three_replicas(
    make_nats_cluster: MakeNatsCluster,
) -> None:
    """kill -9 the LOGS leader of a provisioned 3-node cluster: within the deadline LOGS answers
    with a new leader and 3 replicas, keeps what it held and takes new messages; the node,
    started again on its store, rejoins the cluster."""
    cluster = make_nats_cluster()
    async with jetstream(operator_url(cluster.url)) as js:
        await provision(js)
        await js.publish("ld.logs.build.b1", b"line 1")
        leader = await stream_leader(js, s.STREAM_LOGS)
        assert leader is not None
        cluster.node(leader).kill()

        assert await new_leader(js, s.STREAM_LOGS, instead_of=leader) != leader
        info = await js.stream_info(s.STREAM_LOGS)
        assert info.config.num_replicas == 3
        assert info.state.messages == 1
        ack = await js.publish("ld.logs.build.b1", b"line 2", timeout=10)
        assert ack.seq == 2

        await asyncio.to_thread(cluster.node(leader).start)
        await asyncio.to_thread(cluster.wait_ready)
        assert await replicas(js) == dict.fromkeys(EVERY_STREAM, 3)


@pytest.mark.parametrize("raw", ["0", "abc", "6", "-1", "1.5"])
def test_a_replica_count_out_of_range_is_a_settings_error(
    raw: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAUNCHDECK_NATS_REPLICAS", raw)
    with pytest.raises(SettingsError, match=f"LAUNCHDECK_NATS_REPLICAS .* 1 to 5, got '{raw}'"):
        nats_replicas()


@pytest.mark.parametrize("raw", ["0", "abc"])
async def test_a_service_with_a_bad_replica_count_stops_at_start(raw: str, tmp_path: Path) -> None:
    """A service refuses to start with `LAUNCHDECK_NATS_REPLICAS=0` or `abc`, before it connects
    anywhere: exit code 1, one line on stderr naming the variable, no traceback."""
    env = service_env(
        "generator", tmp_path, NATS_URL="nats://127.0.0.1:1", LAUNCHDECK_NATS_REPLICAS=raw
    )
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", SERVICE_MODULES["generator"]],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "generator: environment variable LAUNCHDECK_NATS_REPLICAS must be an integer from 1 "
        f"to 5, got {raw!r}"
    )


@pytest.mark.parametrize(("raw", "expected"), [("", None), ("1", 1), (" 3 ", 3), ("5", 5)])
def test_the_replica_count_setting(
    raw: str, expected: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAUNCHDECK_NATS_REPLICAS", raw)
    assert nats_replicas() == expected


@pytest.mark.parametrize(
    ("setting", "info", "expected"),
    [
        (None, {"server_name": "n1"}, 1),  # no `cluster`: a single server
        (None, {"cluster": "c", "connect_urls": ["a:1"]}, 1),  # a cluster of one
        (None, {"cluster": "c", "connect_urls": ["a:1", "b:1"]}, 2),
        (None, {"cluster": "c", "connect_urls": ["a:1", "b:1", "c:1", "d:1", "e:1"]}, 3),
        (None, {"cluster": "c"}, 1),  # no_advertise: nothing to count
        (5, {"cluster": "c", "connect_urls": ["a:1", "b:1", "c:1"]}, 5),  # the setting wins
        (1, {"cluster": "c", "connect_urls": ["a:1", "b:1", "c:1"]}, 1),
    ],
)
def test_replicas_are_chosen_from_the_setting_else_the_cluster(
    setting: int | None, info: dict[str, Any], expected: int
) -> None:
    assert choose_replicas(setting, info).count == expected
