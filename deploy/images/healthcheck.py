"""The services' container HEALTHCHECK, with nothing but the standard library (no curl).

    launchdeck-healthcheck http://127.0.0.1:8080/health   # 2xx from the URL
    launchdeck-healthcheck nats                           # connected to NATS

The workers (build-worker, generator) serve no HTTP: they are healthy while they hold an
established TCP connection to the NATS server of $NATS_URL (they reconnect on their own, so a
lost connection that stays lost is what a health check should report). Exit 0 healthy, 1 not.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

ESTABLISHED = "01"


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return bool(200 <= response.status < 300)
    except OSError:
        return False


def nats_ports() -> set[int]:
    urls = os.environ.get("NATS_URL", "nats://127.0.0.1:4222").split(",")
    return {urlsplit(url.strip()).port or 4222 for url in urls if url.strip()}


def connected_to(ports: set[int]) -> bool:
    """Any established connection to one of `ports` in this network namespace
    (/proc/net/tcp*: `local rem_address st ...`, addresses as HEX_IP:HEX_PORT)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == ESTABLISHED and int(fields[2].rsplit(":", 1)[1], 16) in ports:
                return True
    return False


def main() -> int:
    target = sys.argv[1] if len(sys.argv) > 1 else "nats"
    healthy = connected_to(nats_ports()) if target == "nats" else http_ok(target)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
