"""Encoding and typed decoding of contract messages (JSON on the wire)."""

from __future__ import annotations

from typing import TypeVar

import msgspec

T = TypeVar("T")

_encoder = msgspec.json.Encoder()


def encode(message: msgspec.Struct) -> bytes:
    return _encoder.encode(message)


def decode(data: bytes, type_: type[T]) -> T:
    """Decode `data` as `type_`; raises msgspec.ValidationError / DecodeError on bad input."""
    return msgspec.json.decode(data, type=type_)
