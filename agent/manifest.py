"""Manifests: the dock's signed statement of what it stored, checkable by anyone.

A manifest carries the camera's own signatures (one per chunk, one over the seal) and the dock's
Ed25519 signature over the canonical JSON of everything else, so a third party needs only the two
public keys to check it (``docs/manifest.md`` walks through it without our code). The chunk
messages the camera signed are rebuilt from manifest fields; ``prev`` is recomputed along the
chain, which is why the manifest does not carry it.

JSON holds integers and strings only: a float has no single canonical spelling, and a canonical
form is what the dock signs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

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

__all__ = [
    "SCHEMA",
    "Manifest",
    "ManifestError",
    "ManifestErrorCode",
    "build_manifest",
    "canonical_bytes",
    "format_timestamp",
    "parse_timestamp",
    "sign_manifest",
    "verify_footage",
    "verify_manifest",
]

SCHEMA = 1
Manifest = dict[str, Any]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ISO = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{3})Z")
_HEX16 = re.compile(r"[0-9a-f]{32}")
_HEX32 = re.compile(r"[0-9a-f]{64}")
_MEDIA = {m: m.name.lower() for m in Media}
_FIELDS = ("type", "schema", "manifest_id", "dock_id", "unit", "camera_uid", "officer_id",
           "recording_id", "media", "started_at", "ended_at", "clock_offset_ms", "size", "sha256",
           "chunks", "seal", "seal_signature", "stored_at", "offload_delay_s", "signature")
_CHUNK_FIELDS = ("index", "offset", "size", "sha256", "signature")


class ManifestErrorCode(StrEnum):
    MALFORMED = "malformed"  # missing/unknown field, wrong type, float, bad encoding
    DOCK_SIGNATURE = "dock_signature"
    SEAL_SIGNATURE = "seal_signature"
    SEAL_MISMATCH = "seal_mismatch"  # manifest fields or chunk list disagree with the seal
    CHUNK_SIGNATURE = "chunk_signature"
    CHAIN = "chain"  # chunk missing, duplicated or out of order; prev chain broken
    CONTIGUITY = "contiguity"  # offsets/sizes leave a gap or overlap
    INCONSISTENT = "inconsistent"  # dock-computed fields disagree with each other
    FOOTAGE = "footage"  # the bytes do not match the manifest


class ManifestError(Exception):
    def __init__(self, message: str, code: ManifestErrorCode) -> None:
        super().__init__(message)
        self.code = code

    def __str__(self) -> str:
        return f"{self.args[0]} [{self.code.value}]"


def _malformed(message: str) -> ManifestError:
    return ManifestError(message, ManifestErrorCode.MALFORMED)


# --------------------------------------------------------------------------- encodings

def format_timestamp(ms: int) -> str:
    """Unix milliseconds → ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (UTC), without going through floats."""
    try:
        dt = _EPOCH + timedelta(milliseconds=ms)
    except OverflowError:
        raise _malformed(f"timestamp {ms} ms is out of range") from None
    return (f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:"
            f"{dt.second:02d}.{dt.microsecond // 1000:03d}Z")


def parse_timestamp(text: str) -> int:
    """The inverse of :func:`format_timestamp`; only that exact form is accepted."""
    m = _ISO.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise _malformed(f"timestamp {text!r} is not of the form YYYY-MM-DDTHH:MM:SS.mmmZ")
    try:
        y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
        dt = datetime(y, mo, d, h, mi, s, tzinfo=UTC)
    except ValueError as exc:
        raise _malformed(f"timestamp {text!r}: {exc}") from None
    delta = dt - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1000 + int(m[7])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(name: str, value: object, size: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise _malformed(f"{name} must be a base64 string, got {type(value).__name__}")
    try:
        raw = base64.b64decode(value, validate=True)
    except binascii.Error:
        raise _malformed(f"{name} is not valid standard base64") from None
    if _b64(raw) != value:  # non-canonical padding bits would let two strings mean one value
        raise _malformed(f"{name} is not canonical base64")
    if size is not None and len(raw) != size:
        raise _malformed(f"{name} decodes to {len(raw)} bytes, expected {size}")
    return raw


def _unhex(name: str, value: object, pattern: re.Pattern[str]) -> bytes:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        digits = pattern.pattern.rpartition("{")[2].rstrip("}")
        raise _malformed(f"{name} must be {digits} lowercase hex digits, got {value!r}")
    return bytes.fromhex(value)


def _int(name: str, value: object) -> int:
    if type(value) is not int:
        raise _malformed(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    return value


def _str(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise _malformed(f"{name} must be a string, got {type(value).__name__}")
    return value


def canonical_bytes(manifest: Manifest) -> bytes:
    """The bytes the dock signs: canonical JSON of the manifest without ``signature``."""
    unsigned = {k: v for k, v in manifest.items() if k != "signature"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


# --------------------------------------------------------------------------- parsing

@dataclass(frozen=True, slots=True)
class _Chunk:
    index: int
    offset: int
    size: int
    sha256: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class _Parsed:
    camera_uid: bytes
    recording_id: bytes
    manifest_id: bytes
    sha256: bytes
    seal: SealMessage
    seal_bytes: bytes
    seal_signature: bytes
    signature: bytes | None
    chunks: tuple[_Chunk, ...]


def _find_float(value: object, where: str) -> None:
    if isinstance(value, float):
        raise _malformed(f"float at {where}: manifests carry integers and strings only")
    if isinstance(value, dict):
        for k, v in value.items():
            _find_float(v, f"{where}.{k}" if where else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _find_float(v, f"{where}[{i}]")


def _parse(m: object, *, signed: bool) -> _Parsed:
    """Check shape and types of every field and decode the binary ones."""
    if not isinstance(m, dict):
        raise _malformed("a manifest must be a JSON object")
    _find_float(m, "")
    expected = set(_FIELDS) if signed else set(_FIELDS) - {"signature"}
    for name in _FIELDS:
        if name in expected and name not in m:
            raise _malformed(f"missing field {name!r}")
    extra = sorted(set(m) - set(_FIELDS))
    if extra:
        raise _malformed(f"unknown field {extra[0]!r}")
    if m["type"] != "manifest":
        raise _malformed(f"type must be 'manifest', got {m['type']!r}")
    if _int("schema", m["schema"]) != SCHEMA:
        raise _malformed(f"unsupported schema {m['schema']}")
    for name in ("dock_id", "unit", "media"):
        _str(name, m[name])
    if m["officer_id"] is not None:
        _str("officer_id", m["officer_id"])
    if m["media"] not in _MEDIA.values():
        raise _malformed(f"media must be one of {sorted(_MEDIA.values())}, got {m['media']!r}")
    for name in ("started_at", "ended_at", "stored_at"):
        parse_timestamp(m[name])
    for name in ("clock_offset_ms", "size", "offload_delay_s"):
        _int(name, m[name])
    seal_bytes = _unb64("seal", m["seal"], SEAL_MESSAGE_SIZE)
    try:
        seal = SealMessage.unpack(seal_bytes)
    except (ProtocolError, ValueError) as exc:
        raise _malformed(f"seal does not decode: {exc}") from None
    if not isinstance(m["chunks"], list):
        raise _malformed("chunks must be a list")
    chunks = []
    for i, c in enumerate(m["chunks"]):
        if not isinstance(c, dict) or set(c) != set(_CHUNK_FIELDS):
            raise _malformed(f"chunks[{i}] must be an object with exactly {list(_CHUNK_FIELDS)}")
        chunk = _Chunk(_int(f"chunks[{i}].index", c["index"]),
                       _int(f"chunks[{i}].offset", c["offset"]),
                       _int(f"chunks[{i}].size", c["size"]),
                       _unhex(f"chunks[{i}].sha256", c["sha256"], _HEX32),
                       _unb64(f"chunks[{i}].signature", c["signature"], SIGNATURE_SIZE))
        if not (0 <= chunk.index < 1 << 32 and 0 <= chunk.offset < 1 << 64
                and 0 <= chunk.size < 1 << 32):
            raise _malformed(f"chunks[{i}]: index, offset or size out of range")
        chunks.append(chunk)
    return _Parsed(
        camera_uid=_unhex("camera_uid", m["camera_uid"], _HEX16),
        recording_id=_unhex("recording_id", m["recording_id"], _HEX16),
        manifest_id=_unhex("manifest_id", m["manifest_id"], _HEX32),
        sha256=_unhex("sha256", m["sha256"], _HEX32),
        seal=seal, seal_bytes=seal_bytes,
        seal_signature=_unb64("seal_signature", m["seal_signature"], SIGNATURE_SIZE),
        signature=_unb64("signature", m["signature"], SIGNATURE_SIZE) if "signature" in m
        else None,
        chunks=tuple(chunks),
    )


def _offload_delay_s(ended_ms: int, clock_offset_ms: int, stored_at_ms: int) -> int:
    # Recording end in dock time = camera time - (camera - dock); floor to whole seconds.
    return (stored_at_ms - (ended_ms - clock_offset_ms)) // 1000


# --------------------------------------------------------------------------- build / sign

def build_manifest(*, dock_id: str, unit: str, camera_uid: bytes, officer_id: str | None,
                   seal: bytes, seal_signature: bytes, chunks: Sequence[tuple[bytes, bytes]],
                   clock_offset_ms: int, stored_at_ms: int) -> Manifest:
    """The unsigned manifest of a stored recording.

    ``chunks`` are the camera's 120-byte chunk messages with their signatures, in order. The
    signatures must already have been verified (offload does); here the structure is checked —
    chain, contiguity, agreement with the seal — so a malformed manifest is never produced.
    """
    try:
        seal_msg = SealMessage.unpack(bytes(seal))
        messages = [ChunkMessage.unpack(bytes(c)) for c, _ in chunks]
    except (ProtocolError, ValueError) as exc:
        raise _malformed(f"cannot build manifest: {exc}") from None
    if seal_msg.camera_uid != camera_uid:
        raise ManifestError("seal is from another camera", ManifestErrorCode.SEAL_MISMATCH)
    prev, offset = ZERO_DIGEST, 0
    for i, msg in enumerate(messages):
        if (msg.camera_uid, msg.recording_id) != (seal_msg.camera_uid, seal_msg.recording_id):
            raise ManifestError(f"chunk {i} belongs to another recording",
                                ManifestErrorCode.SEAL_MISMATCH)
        if msg.index != i or msg.prev != prev:
            raise ManifestError(f"chunk {i}: index or prev breaks the chain",
                                ManifestErrorCode.CHAIN)
        if msg.offset != offset:
            raise ManifestError(f"chunk {i}: offset {msg.offset}, expected {offset}",
                                ManifestErrorCode.CONTIGUITY)
        prev, offset = msg.digest(), offset + msg.size
    if (len(messages), offset, prev) != (seal_msg.chunk_count, seal_msg.total_size,
                                         seal_msg.last_chunk_digest):
        raise ManifestError("chunk count, total size or last chunk digest disagree with the seal",
                            ManifestErrorCode.SEAL_MISMATCH)
    manifest: Manifest = {
        "type": "manifest",
        "schema": SCHEMA,
        "manifest_id": seal_msg.digest().hex(),
        "dock_id": dock_id,
        "unit": unit,
        "camera_uid": camera_uid.hex(),
        "officer_id": officer_id,
        "recording_id": seal_msg.recording_id.hex(),
        "media": _MEDIA[seal_msg.media],
        "started_at": format_timestamp(seal_msg.started_ms),
        "ended_at": format_timestamp(seal_msg.ended_ms),
        "clock_offset_ms": clock_offset_ms,
        "size": seal_msg.total_size,
        "sha256": seal_msg.sha256.hex(),
        "chunks": [
            {"index": m.index, "offset": m.offset, "size": m.size, "sha256": m.sha256.hex(),
             "signature": _b64(bytes(sig))}
            for m, (_, sig) in zip(messages, chunks, strict=True)
        ],
        "seal": _b64(bytes(seal)),
        "seal_signature": _b64(bytes(seal_signature)),
        "stored_at": format_timestamp(stored_at_ms),
        "offload_delay_s": _offload_delay_s(seal_msg.ended_ms, clock_offset_ms, stored_at_ms),
    }
    _parse(manifest, signed=False)  # types, lengths and encodings, as a verifier will see them
    return manifest


def sign_manifest(manifest: Manifest, private_key: Ed25519PrivateKey) -> Manifest:
    """A copy of ``manifest`` with ``signature`` set (replacing any previous one)."""
    unsigned = {k: v for k, v in manifest.items() if k != "signature"}
    _parse(unsigned, signed=False)
    return {**unsigned, "signature": _b64(private_key.sign(canonical_bytes(unsigned)))}


# --------------------------------------------------------------------------- verify

def verify_manifest(manifest: Manifest, dock_public_key: Ed25519PublicKey,
                    camera_public_key: Ed25519PublicKey) -> None:
    """Check everything a manifest claims; raise :class:`ManifestError` at the first failure.

    Order: shape and types, the dock's signature, the seal (id, camera signature, fields), the
    chunk list's structure against the seal, then each chunk's camera signature along the chain.
    """
    p = _parse(manifest, signed=True)
    assert p.signature is not None
    if not verify_signature(dock_public_key, canonical_bytes(manifest), p.signature):
        raise ManifestError("dock signature does not verify", ManifestErrorCode.DOCK_SIGNATURE)
    mismatch = ManifestErrorCode.SEAL_MISMATCH
    if hashlib.sha256(p.seal_bytes).digest() != p.manifest_id:
        raise ManifestError("manifest_id is not the SHA-256 of the seal", mismatch)
    if not verify_signature(camera_public_key, p.seal_bytes, p.seal_signature):
        raise ManifestError("seal signature does not verify with the camera key",
                            ManifestErrorCode.SEAL_SIGNATURE)
    seal = p.seal
    for name, ours, sealed in (
        ("camera_uid", p.camera_uid, seal.camera_uid),
        ("recording_id", p.recording_id, seal.recording_id),
        ("media", manifest["media"], _MEDIA[seal.media]),
        ("started_at", manifest["started_at"], format_timestamp(seal.started_ms)),
        ("ended_at", manifest["ended_at"], format_timestamp(seal.ended_ms)),
        ("size", manifest["size"], seal.total_size),
        ("sha256", p.sha256, seal.sha256),
    ):
        if ours != sealed:
            raise ManifestError(f"field {name!r} disagrees with the seal", mismatch)
    expected_delay = _offload_delay_s(seal.ended_ms, manifest["clock_offset_ms"],
                                      parse_timestamp(manifest["stored_at"]))
    if manifest["offload_delay_s"] != expected_delay:
        raise ManifestError(f"offload_delay_s is {manifest['offload_delay_s']}, but ended_at, "
                            f"clock_offset_ms and stored_at give {expected_delay}",
                            ManifestErrorCode.INCONSISTENT)
    offset = 0
    for pos, c in enumerate(p.chunks):
        if c.index != pos:
            raise ManifestError(f"chunk at position {pos} has index {c.index}: a chunk is "
                                f"missing, duplicated or out of order", ManifestErrorCode.CHAIN)
        if c.offset != offset:
            raise ManifestError(f"chunk {pos}: offset {c.offset}, expected {offset} "
                                f"(chunks must be contiguous)", ManifestErrorCode.CONTIGUITY)
        offset += c.size
    if len(p.chunks) != seal.chunk_count:
        raise ManifestError(f"{len(p.chunks)} chunks listed, the seal says {seal.chunk_count}",
                            mismatch)
    if offset != seal.total_size:
        raise ManifestError(f"chunks cover {offset} bytes, the seal says {seal.total_size}",
                            mismatch)
    prev = ZERO_DIGEST
    for c in p.chunks:
        msg = ChunkMessage(p.camera_uid, p.recording_id, c.index, c.offset, c.size, c.sha256, prev)
        if not verify_signature(camera_public_key, msg.pack(), c.signature):
            raise ManifestError(f"chunk {c.index}: camera signature does not verify over the "
                                f"chunk message rebuilt from the manifest",
                                ManifestErrorCode.CHUNK_SIGNATURE)
        prev = msg.digest()
    if prev != seal.last_chunk_digest:
        raise ManifestError("the chunk chain does not end in the seal's last chunk digest",
                            ManifestErrorCode.CHAIN)


def verify_footage(manifest: Manifest, data_iter: Iterable[bytes]) -> None:
    """Check plaintext footage against the manifest's chunk digests and whole-file digest.

    ``data_iter`` may yield blocks of any size (chunk-aligned or not). Signatures are not checked
    here: call :func:`verify_manifest` first.
    """
    p = _parse(manifest, signed="signature" in manifest)
    footage = ManifestErrorCode.FOOTAGE
    whole = hashlib.sha256()
    pending = list(p.chunks)
    pending.reverse()  # pop() from the end = next chunk in order
    current: _Chunk | None = None
    hasher, remaining, seen = hashlib.sha256(), 0, 0

    def next_chunk() -> None:
        nonlocal current, hasher, remaining
        while True:
            if current is not None and hasher.digest() != current.sha256:
                raise ManifestError(f"chunk {current.index} (bytes {current.offset}.."
                                    f"{current.offset + current.size}): SHA-256 mismatch", footage)
            current = pending.pop() if pending else None
            hasher, remaining = hashlib.sha256(), current.size if current else 0
            if current is None or remaining:
                return

    next_chunk()
    for block in data_iter:
        view = memoryview(block)
        whole.update(view)
        seen += len(view)
        while view:
            if current is None:
                raise ManifestError(f"footage is longer than the manifest's {p.seal.total_size} "
                                    f"bytes of chunks", footage)
            n = min(remaining, len(view))
            hasher.update(view[:n])
            view, remaining = view[n:], remaining - n
            if remaining == 0:
                next_chunk()
    if current is not None:
        raise ManifestError(f"footage ends at byte {seen}, inside chunk {current.index}", footage)
    if seen != manifest["size"] or whole.digest() != p.sha256:
        raise ManifestError("SHA-256 of the whole recording does not match", footage)
