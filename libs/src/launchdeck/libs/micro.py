"""NATS micro-service registration, so `nats micro ls` / `nats micro info` list the workers."""

from __future__ import annotations

import json
from collections.abc import Callable

from nats.aio.client import Client
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import EndpointConfig, Service

from launchdeck.contracts.subjects import service_status_subject


async def register(
    nc: Client,
    name: str,
    description: str,
    status: Callable[[], dict[str, object]],
    version: str = "0.1.0",
) -> Service:
    """Register `name` with PING/INFO/STATS plus a `status` endpoint returning `status()`."""
    service = await add_service(nc, name=name, version=version, description=description)

    async def _status(req: Request) -> None:
        await req.respond(json.dumps(status()).encode())

    await service.add_endpoint(
        EndpointConfig(name="status", subject=service_status_subject(name), handler=_status)
    )
    return service
