"""Loopback ports for web processes, from a range of their own.

The range (`LAUNCHDECK_APP_PORTS`, default 20000-29999) lies below Linux's ephemeral range
(32768-60999), where the kernel picks the local ports of outgoing connections: a port chosen there
could be taken by any connection a moment later, and the app would fail to bind it. A port is
handed out when nothing on this machine has it bound (tried on 0.0.0.0 and 127.0.0.1: an app
told to listen on `PORT` often binds every address) and no instance of this engine holds it.
"""

from __future__ import annotations

import contextlib
import random
import socket


class NoFreePort(RuntimeError):
    pass


def bindable(port: int) -> bool:
    """Whether `port` can be bound on every IPv4 address now, as servers bind it
    (SO_REUSEADDR: connections of a crashed predecessor in TIME_WAIT do not count)."""
    for host in ("0.0.0.0", "127.0.0.1"):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


class Ports:
    def __init__(self, low: int, high: int) -> None:
        self.low = low
        self.high = high
        self._held: set[int] = set()

    def hold(self, port: int) -> None:
        """Mark `port` as an instance's (an adopted app's, whose port is bound already)."""
        self._held.add(port)

    def release(self, port: int | None) -> None:
        if port is not None:
            self._held.discard(port)

    def take(self, preferred: int | None = None) -> int:
        """A free port: `preferred` (a restarted process keeps its route) when it is still
        free, else a random one of the range."""
        if preferred is not None and self.low <= preferred <= self.high and bindable(preferred):
            self._held.add(preferred)
            return preferred
        candidates = [p for p in range(self.low, self.high + 1) if p not in self._held]
        random.shuffle(candidates)  # two engines on one machine rarely race for the same one
        for port in candidates[:2000]:
            with contextlib.suppress(OSError):
                if bindable(port):
                    self._held.add(port)
                    return port
        raise NoFreePort(f"no free port in {self.low}-{self.high} (LAUNCHDECK_APP_PORTS)")
