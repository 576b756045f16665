"""Typed aiohttp application keys: the resources every handler reaches through `request.app`."""

from __future__ import annotations

import asyncpg
from aiohttp import web
from nats.aio.client import Client
from nats.js import JetStreamContext

from launchdeck.control_api.domain.sealing import KeyRing
from launchdeck.control_api.metrics import Metrics
from launchdeck.control_api.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
NC = web.AppKey("nc", Client)
JS = web.AppKey("js", JetStreamContext)
METRICS = web.AppKey("metrics", Metrics)
# The env vars' keys (LAUNCHDECK_SECRET_KEY and, during a rotation, the previous one).
KEYRING = web.AppKey("keyring", KeyRing)
