"""Stored recordings made the way the agent makes them: camera-signed chunks, the footage store's
encryption, a dock-signed manifest. For tests of what is built on top of the store."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.manifest import build_manifest, sign_manifest
from agent.store.footage import FootageStore
from firmware_protocol.signing import ZERO_DIGEST, ChunkMessage, Media, SealMessage

__all__ = ["StoredFixture", "store_recording"]


@dataclass(frozen=True)
class StoredFixture:
    recording_id: bytes
    data: bytes
    manifest: dict[str, Any]


def store_recording(store: FootageStore, *, camera_key: Ed25519PrivateKey, dock_key:
                    Ed25519PrivateKey, camera_uid: bytes, started_ms: int, ended_ms: int,
                    data: bytes | None = None, chunk_size: int = 4096,
                    recording_id: bytes | None = None, officer_id: str | None = "PD-0042",
                    clock_offset_ms: int = 0, stored_at_ms: int | None = None,
                    dock_id: str = "dock-01", unit: str = "zhanhe") -> StoredFixture:
    rid = recording_id or os.urandom(16)
    payload = data if data is not None else os.urandom(10_000)
    chunks, prev = [], ZERO_DIGEST
    for index, offset in enumerate(range(0, len(payload), chunk_size)):
        part = payload[offset:offset + chunk_size]
        msg = ChunkMessage(camera_uid, rid, index, offset, len(part),
                           hashlib.sha256(part).digest(), prev)
        chunks.append((msg.pack(), camera_key.sign(msg.pack()), part))
        prev = msg.digest()
    seal = SealMessage(camera_uid, rid, len(chunks), len(payload),
                       hashlib.sha256(payload).digest(), prev, started_ms, ended_ms,
                       Media.VIDEO).pack()
    seal_sig = camera_key.sign(seal)
    manifest = sign_manifest(build_manifest(
        dock_id=dock_id, unit=unit, camera_uid=camera_uid, officer_id=officer_id, seal=seal,
        seal_signature=seal_sig, chunks=[(c, s) for c, s, _ in chunks],
        clock_offset_ms=clock_offset_ms,
        stored_at_ms=stored_at_ms if stored_at_ms is not None else ended_ms + 60_000),
        dock_key)
    with store.open_partial(rid, camera_uid, len(chunks), {}) as partial:
        for index, (msg_bytes, sig, part) in enumerate(chunks):
            partial.append_chunk(index, part, msg_bytes, sig)
        partial.finalise(seal, seal_sig, manifest)
    return StoredFixture(rid, payload, manifest)
