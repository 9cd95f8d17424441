"""In-memory helpers for protocol tests: a camera key, signed recordings, a wired pair."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware_protocol import messages as m
from firmware_protocol.connection import NEED_DATA, Connection, Event
from firmware_protocol.signing import (
    ZERO_DIGEST,
    ChunkMessage,
    Media,
    SealMessage,
    public_key_raw,
)

CAMERA_UID = bytes.fromhex("00112233445566778899aabbccddeeff")
# A fixed key so golden bytes and doc examples are reproducible (never use outside tests/docs).
CAMERA_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


@dataclass(frozen=True)
class SignedRecording:
    info: m.RecordingInfo
    data: bytes
    headers: tuple[m.ChunkHeader, ...]
    seal: m.Seal


def make_recording(
    data: bytes, chunk_size: int, recording_id: bytes = bytes(range(16)),
    key: Ed25519PrivateKey = CAMERA_KEY, uid: bytes = CAMERA_UID,
    started_ms: int = 1_760_000_000_000, ended_ms: int = 1_760_000_060_000,
) -> SignedRecording:
    headers = []
    prev = ZERO_DIGEST
    for index, offset in enumerate(range(0, len(data), chunk_size)):
        piece = data[offset : offset + chunk_size]
        cm = ChunkMessage(uid, recording_id, index, offset, len(piece),
                          hashlib.sha256(piece).digest(), prev)
        packed = cm.pack()
        headers.append(m.ChunkHeader(packed, key.sign(packed)))
        prev = hashlib.sha256(packed).digest()
    seal_msg = SealMessage(uid, recording_id, len(headers), len(data),
                           hashlib.sha256(data).digest(), prev if headers else ZERO_DIGEST,
                           started_ms, ended_ms, Media.VIDEO).pack()
    info = m.RecordingInfo(recording_id, Media.VIDEO, len(data), chunk_size, len(headers),
                           started_ms, ended_ms, True)
    return SignedRecording(info, data, tuple(headers), m.Seal(seal_msg, key.sign(seal_msg)))


def drain(conn: Connection) -> list[Event]:
    events = []
    while (ev := conn.next_event()) is not NEED_DATA:
        assert not isinstance(ev, type(NEED_DATA))
        events.append(ev)
    return events


def identity(max_payload: int = 65536) -> m.Identity:
    return m.Identity(1, max_payload, CAMERA_UID, public_key_raw(CAMERA_KEY), "BWC-9", "1.2.3",
                      "SN0001", "010203", "张三", "410402", "湛河区司法局")
