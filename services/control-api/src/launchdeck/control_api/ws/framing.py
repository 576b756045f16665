"""A build's log lines as WebSocket frames, built by splicing bytes.

Each line is encoded once, as the `{"seq", "ts", "stream", "line"}` object both frame kinds
share (`LogEntry`); the frame around it is constant per subscription and spliced on:
`{"type":"log","build_id":…,` + the entry's fields + `,"channel":…}` for a `log` frame, or the
entries joined into a `logs` frame by the outbox writer (`Batcher`). The bytes are exactly what
encoding `LogFrame` / `LogsFrame` would give (the tests decode them with the contract's types),
without a Struct per line and per frame.
"""

from __future__ import annotations

import msgspec

from launchdeck.contracts.messages import LogLine
from launchdeck.control_api.logs.stream import LogChunk
from launchdeck.control_api.ws.connection import Batcher

_encoder = msgspec.json.Encoder()


class LogFraming:
    """The frames of one subscription to one build's log: single lines, or batched."""

    def __init__(self, build_id: str, channel: str | None, batch_limit: int) -> None:
        self.build_id = build_id
        self.channel = channel
        build = _encoder.encode(build_id)
        suffix = b"}" if channel is None else b',"channel":' + _encoder.encode(channel) + b"}"
        self.batcher: Batcher | None = None
        if batch_limit > 0:
            prefix = b'{"type":"logs","build_id":' + build + b',"lines":['
            self.batcher = Batcher(prefix=prefix, suffix=b"]" + suffix, limit=batch_limit)
        self._prefix = b'{"type":"log","build_id":' + build + b","
        self._suffix = suffix
        # What `items` depends on besides the lines (the build is the chunk's): viewers of a
        # shared chunk with the same key reuse one encoding (`LogChunk.memo`).
        self.key: object = "entries" if self.batcher is not None else ("log", channel)

    def chunk_items(self, chunk: LogChunk) -> list[bytes]:
        """`items` of the chunk's lines, encoded once per key for every viewer of the chunk."""
        items = chunk.memo.get(self.key)
        if items is None:
            if chunk.parts:  # joined chunks: each part's encoding, shared with other viewers
                items = [item for part in chunk.parts for item in self.chunk_items(part)]
            else:
                items = self.items(chunk.lines)
            chunk.memo[self.key] = items
        return items

    def items(self, lines: list[LogLine]) -> list[bytes]:
        """What to queue for `lines`: batcher items, or whole `log` frames."""
        encode = _encoder.encode
        if self.batcher is not None:
            return [encode(line) for line in lines]
        prefix, suffix = self._prefix, self._suffix
        # `encode(line)` is `{...}`: its fields go between the frame's prefix and suffix.
        return [prefix + encode(line)[1:-1] + suffix for line in lines]
