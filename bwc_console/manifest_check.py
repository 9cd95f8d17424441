"""Independent verification of a dock's manifest (docs/manifest.md, "Verifying, step by step").

Only the documents and ``firmware_protocol``'s signed-message layouts are used: the chunk messages
are rebuilt from the manifest's fields, the seal is unpacked from its bytes, and every signature
is checked with the dock key and the enrolled camera key. A failure names the first check that
failed with a short code (:data:`CODES`) and a detail for people.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from firmware_protocol.errors import ProtocolError
from firmware_protocol.signing import (
    SEAL_MESSAGE_SIZE,
    SIGNATURE_SIZE,
    ZERO_DIGEST,
    ChunkMessage,
    Media,
    SealMessage,
    verify_signature,
)

from .wire import NAME, WireError, b64decode_strict, canonical_utf8, is_hex, parse_ms

__all__ = ["CODES", "FIELDS", "ManifestRejected", "Verified", "check_shape", "verify_manifest"]

FIELDS = frozenset({
    "type", "schema", "manifest_id", "dock_id", "unit", "camera_uid", "officer_id",
    "recording_id", "media", "started_at", "ended_at", "clock_offset_ms", "size", "sha256",
    "chunks", "seal", "seal_signature", "stored_at", "offload_delay_s", "signature"})
CHUNK_FIELDS = frozenset({"index", "offset", "size", "sha256", "signature"})
_MEDIA = {m.name.lower(): m for m in Media}

#: Why a manifest is refused, in the order the checks run.
CODES = ("malformed", "wrong_dock", "unknown_dock", "unknown_camera", "dock_signature",
         "seal_id", "seal_signature", "seal_mismatch", "offload_delay", "chunk_order",
         "chunk_signature", "chain")


class ManifestRejected(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Verified:
    """What a verified manifest vouches for, as the console indexes it."""

    manifest_id: str
    dock_id: str
    camera_uid: str
    recording_id: str
    officer_id: str | None
    stored_at: str
    size: int


def _fail(code: str, detail: str) -> ManifestRejected:
    return ManifestRejected(code, detail)


def _int(m: Mapping[str, Any], key: str, *, signed: bool = False) -> int:
    value = m.get(key)
    if type(value) is not int or (not signed and value < 0):
        raise _fail("malformed", f"{key} is not {'an' if signed else 'a non-negative'} integer")
    return value


def _no_floats(value: object) -> bool:
    if isinstance(value, dict):
        return all(_no_floats(v) for v in value.values())
    if isinstance(value, list):
        return all(_no_floats(v) for v in value)
    return not isinstance(value, float)


def check_shape(m: object) -> dict[str, Any]:
    """Step 1: every field present, nothing else, each of its documented type and form."""
    if not isinstance(m, dict):
        raise _fail("malformed", "not a JSON object")
    if set(m) != FIELDS:
        missing, extra = sorted(FIELDS - set(m)), sorted(set(m) - FIELDS)
        raise _fail("malformed", f"fields missing {missing}, unexpected {extra}")
    if not _no_floats(m):
        raise _fail("malformed", "a float in the manifest")
    if m["type"] != "manifest" or type(m["schema"]) is not int or m["schema"] != 1:
        raise _fail("malformed", "type/schema is not manifest/1")
    for key, digits in (("manifest_id", 64), ("camera_uid", 32), ("recording_id", 32),
                        ("sha256", 64)):
        if not is_hex(m[key], digits):
            raise _fail("malformed", f"{key} is not {digits} lower-case hex digits")
    for key in ("dock_id", "unit"):
        if not isinstance(m[key], str) or not NAME.fullmatch(m[key]):
            raise _fail("malformed", f"{key} is not a valid name")
    if m["officer_id"] is not None and not isinstance(m["officer_id"], str):
        raise _fail("malformed", "officer_id is neither a string nor null")
    if m["media"] not in _MEDIA:
        raise _fail("malformed", f"media {m['media']!r} is not video, audio or photo")
    try:
        for key in ("started_at", "ended_at", "stored_at"):
            parse_ms(m[key])
        b64decode_strict(m["seal"], SEAL_MESSAGE_SIZE)
        for key in ("seal_signature", "signature"):
            b64decode_strict(m[key], SIGNATURE_SIZE)
    except WireError as exc:
        raise _fail("malformed", str(exc)) from None
    _int(m, "clock_offset_ms", signed=True)
    _int(m, "size")
    _int(m, "offload_delay_s", signed=True)
    chunks = m["chunks"]
    if not isinstance(chunks, list):
        raise _fail("malformed", "chunks is not a list")
    for i, c in enumerate(chunks):
        if not isinstance(c, dict) or set(c) != CHUNK_FIELDS:
            raise _fail("malformed", f"chunk {i} does not have exactly {sorted(CHUNK_FIELDS)}")
        for key in ("index", "offset", "size"):
            _int(c, key)
        if not is_hex(c["sha256"], 64):
            raise _fail("malformed", f"chunk {i} sha256 is not 64 lower-case hex digits")
        try:
            b64decode_strict(c["signature"], SIGNATURE_SIZE)
        except WireError as exc:
            raise _fail("malformed", f"chunk {i} signature: {exc}") from None
    return m


def verify_manifest(manifest: object, dock_key: Ed25519PublicKey,
                    camera_key: Ed25519PublicKey) -> Verified:
    """Steps 1-5 of docs/manifest.md; raises :class:`ManifestRejected` at the first failure."""
    m = check_shape(manifest)
    unsigned = {k: v for k, v in m.items() if k != "signature"}
    if not verify_signature(dock_key, canonical_utf8(unsigned), b64decode_strict(m["signature"])):
        raise _fail("dock_signature", "the dock's signature does not verify with its key")

    seal_bytes = b64decode_strict(m["seal"])
    if hashlib.sha256(seal_bytes).hexdigest() != m["manifest_id"]:
        raise _fail("seal_id", "manifest_id is not the SHA-256 of the seal")
    if not verify_signature(camera_key, seal_bytes, b64decode_strict(m["seal_signature"])):
        raise _fail("seal_signature", "the camera's seal signature does not verify")
    try:
        seal = SealMessage.unpack(seal_bytes)
    except (ProtocolError, ValueError) as exc:
        raise _fail("seal_mismatch", f"the seal does not unpack: {exc}") from None
    ended = parse_ms(m["ended_at"])
    if (seal.camera_uid.hex(), seal.recording_id.hex(), seal.media, seal.started_ms,
            seal.ended_ms, seal.total_size, seal.sha256.hex()) != (
            m["camera_uid"], m["recording_id"], _MEDIA[m["media"]], parse_ms(m["started_at"]),
            ended, m["size"], m["sha256"]):
        raise _fail("seal_mismatch", "the seal disagrees with the manifest's fields")
    delay_ms = parse_ms(m["stored_at"]) - (ended - m["clock_offset_ms"])
    if delay_ms // 1000 != m["offload_delay_s"]:
        raise _fail("offload_delay", f"offload_delay_s {m['offload_delay_s']} is not "
                                     f"{delay_ms // 1000}")

    prev, offset = ZERO_DIGEST, 0
    for i, c in enumerate(m["chunks"]):
        if c["index"] != i or c["offset"] != offset:
            raise _fail("chunk_order", f"chunk {i} missing, out of order or not contiguous")
        try:
            message = ChunkMessage(seal.camera_uid, seal.recording_id, i, offset, c["size"],
                                   bytes.fromhex(c["sha256"]), prev)
        except ValueError as exc:
            raise _fail("malformed", f"chunk {i}: {exc}") from None
        if not verify_signature(camera_key, message.pack(), b64decode_strict(c["signature"])):
            raise _fail("chunk_signature", f"the camera's signature over chunk {i} does not "
                                           "verify")
        prev, offset = message.digest(), offset + c["size"]
    if (len(m["chunks"]), offset, prev) != (seal.chunk_count, seal.total_size,
                                            seal.last_chunk_digest):
        raise _fail("chain", "the chunks do not add up to the seal (count, size or last digest)")
    return Verified(m["manifest_id"], m["dock_id"], m["camera_uid"], m["recording_id"],
                    m["officer_id"], m["stored_at"], m["size"])
