"""The client side of `bench.ws_fanout`, run in child processes (`client_process`): viewers of
one build's log over WebSockets, or nats-py subscriptions to its subject, each checking it gets
lines 1..N in order, all adding their lines' delays to one histogram.

The clients must not be the bottleneck (500 viewers of 2,000 lines/s are a million lines a
second to check): a frame's order is checked by comparing its seqs with the expected range (C
speed), and only its first line's creation stamp is read — the publisher stamps line seq with
`first stamp + (seq - first) * period`, so the other delays follow; they are added up after the
run, not while frames arrive."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec
import nats
from nats.aio.msg import Msg

BUCKET_MS = 0.1  # delay histogram resolution
BUCKETS = 600_000  # up to 60 s


class _Line(msgspec.Struct):
    seq: int
    line: str


class _Frame(msgspec.Struct):
    type: str
    seq: int = 0
    line: str = ""
    lines: list[_Line] = []


class _Batch(msgspec.Struct):
    lines: list[_Line] = []
    eof: bool = False


_frame_decoder = msgspec.json.Decoder(_Frame)
_batch_decoder = msgspec.json.Decoder(_Batch)


@dataclass
class Tally:
    """What one client process saw: a delay histogram and each viewer's verdict."""

    histogram: list[int]
    complete: int = 0  # viewers that got 1..N in order and the end
    problems: list[str] | None = None


class _Viewer:
    def __init__(self, frames: list[tuple[int, int]], expected: int) -> None:
        self.frames = frames  # (delay of the frame's first line in ns, lines in the frame)
        self.expected = expected
        self.next_seq = 1
        self.problem: str | None = None

    def lines(self, lines: list[_Line], now_ns: int) -> None:
        if not lines:
            return
        first = self.next_seq
        seqs = [line.seq for line in lines]
        if seqs != list(range(first, first + len(seqs))) and self.problem is None:
            self.problem = f"got seqs {seqs[0]}..{seqs[-1]} ({len(seqs)}), expected {first}.."
        self.next_seq = seqs[-1] + 1
        self.frames.append((now_ns - int(lines[0].line.split(" ", 1)[0]), len(lines)))

    def verdict(self, ended: bool) -> str | None:
        if self.problem is None and not ended:
            self.problem = f"no end after seq {self.next_seq - 1}"
        if self.problem is None and self.next_seq - 1 != self.expected:
            self.problem = f"ended at seq {self.next_seq - 1} of {self.expected}"
        return self.problem


def _histogram(frames: list[tuple[int, int]], period_ns: float) -> list[int]:
    histogram = [0] * BUCKETS
    for first_delay_ns, count in frames:
        for i in range(count):  # line i of the frame was created i periods after the first
            bucket = int((first_delay_ns - i * period_ns) / 1e6 / BUCKET_MS)
            histogram[min(max(bucket, 0), BUCKETS - 1)] += 1
    return histogram


async def _ws_clients(
    url: str, count: int, expected: int, period_ns: float, *, ready: Any, go: Any
) -> Tally:
    frames: list[tuple[int, int]] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        sockets = []
        for _ in range(count):
            sockets.append(await session.ws_connect(url, max_msg_size=0, heartbeat=None))
        ready.release()
        await asyncio.get_running_loop().run_in_executor(None, go.wait)

        async def view(ws: aiohttp.ClientWebSocketResponse) -> str | None:
            viewer = _Viewer(frames, expected)
            ended = False
            async for msg in ws:
                now = time.time_ns()
                frame = _frame_decoder.decode(msg.data)
                if frame.type == "logs":
                    viewer.lines(frame.lines, now)
                elif frame.type == "log":
                    viewer.lines([_Line(frame.seq, frame.line)], now)
                elif frame.type == "end":
                    ended = True
                    break
            await ws.close()
            return viewer.verdict(ended)

        verdicts = await asyncio.gather(*(view(ws) for ws in sockets))
    problems = [v for v in verdicts if v is not None]
    histogram = _histogram(frames, period_ns)
    return Tally(histogram, complete=len(sockets) - len(problems), problems=problems[:5])


async def _nats_clients(
    url: str,
    login: dict[str, str],
    subject: str,
    count: int,
    expected: int,
    period_ns: float,
    *,
    ready: Any,
    go: Any,
) -> Tally:
    frames: list[tuple[int, int]] = []
    nc = await nats.connect(url, pending_size=0, **login)
    done = asyncio.get_running_loop().create_future()
    viewers = [_Viewer(frames, expected) for _ in range(count)]
    ended = [False] * count
    remaining = [count]

    def callback(i: int) -> Any:
        async def on_msg(msg: Msg) -> None:
            now = time.time_ns()
            batch = _batch_decoder.decode(msg.data)
            viewers[i].lines(batch.lines, now)
            if batch.eof:
                ended[i] = True
                remaining[0] -= 1
                if remaining[0] == 0 and not done.done():
                    done.set_result(None)

        return on_msg

    for i in range(count):
        await nc.subscribe(subject, cb=callback(i), pending_msgs_limit=0, pending_bytes_limit=0)
    await nc.flush()
    ready.release()
    await asyncio.get_running_loop().run_in_executor(None, go.wait)
    await done
    await nc.close()
    verdicts = [v.verdict(e) for v, e in zip(viewers, ended, strict=True)]
    problems = [v for v in verdicts if v is not None]
    histogram = _histogram(frames, period_ns)
    return Tally(histogram, complete=count - len(problems), problems=problems[:5])


def client_process(kind: str, args: tuple[Any, ...], ready: Any, go: Any, out: Any) -> None:
    if kind == "ws":
        tally = asyncio.run(_ws_clients(*args, ready=ready, go=go))
    else:
        tally = asyncio.run(_nats_clients(*args, ready=ready, go=go))
    out.put(tally)
