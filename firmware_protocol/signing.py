"""Camera-signed message layouts (fixed, big-endian) and Ed25519 helpers.

These bytes are what the camera signs while it records and what the dock copies into its manifests,
so a third party can verify footage with only the camera's public key. The layouts never change
within a magic (``BWCCHNK1``/``BWCSEAL1``/``BWCAUTH1``); a new layout gets a new magic.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from enum import IntEnum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import RemoteProtocolError

__all__ = [
    "AUTH_MAGIC",
    "CHUNK_MAGIC",
    "CHUNK_MESSAGE_SIZE",
    "SEAL_MAGIC",
    "SEAL_MESSAGE_SIZE",
    "SIGNATURE_SIZE",
    "ZERO_DIGEST",
    "ChunkMessage",
    "Media",
    "SealMessage",
    "auth_message",
    "load_private_key",
    "load_public_key",
    "public_key_raw",
    "verify_signature",
]

CHUNK_MAGIC = b"BWCCHNK1"
SEAL_MAGIC = b"BWCSEAL1"
AUTH_MAGIC = b"BWCAUTH1"
SIGNATURE_SIZE = 64
ZERO_DIGEST = bytes(32)

_CHUNK = struct.Struct(">8s16s16sIQI32s32s")
_SEAL = struct.Struct(">8s16s16sIQ32s32sQQB")
CHUNK_MESSAGE_SIZE = _CHUNK.size
SEAL_MESSAGE_SIZE = _SEAL.size
assert CHUNK_MESSAGE_SIZE == 120 and SEAL_MESSAGE_SIZE == 133


class Media(IntEnum):
    VIDEO = 1
    AUDIO = 2
    PHOTO = 3


def _check_bytes(name: str, value: bytes, size: int) -> None:
    if not isinstance(value, bytes | bytearray) or len(value) != size:
        raise ValueError(f"{name} must be {size} bytes")


def _check_uint(name: str, value: int, bits: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < (1 << bits):
        raise ValueError(f"{name} must be an unsigned {bits}-bit integer, got {value!r}")


@dataclass(frozen=True, slots=True)
class ChunkMessage:
    """The 120-byte message a camera signs for each chunk of a recording."""

    camera_uid: bytes
    recording_id: bytes
    index: int
    offset: int
    size: int
    sha256: bytes
    prev: bytes  # SHA-256 of the previous chunk's 120-byte message; zeros for index 0

    def __post_init__(self) -> None:
        _check_bytes("camera_uid", self.camera_uid, 16)
        _check_bytes("recording_id", self.recording_id, 16)
        _check_uint("index", self.index, 32)
        _check_uint("offset", self.offset, 64)
        _check_uint("size", self.size, 32)
        _check_bytes("sha256", self.sha256, 32)
        _check_bytes("prev", self.prev, 32)

    def pack(self) -> bytes:
        return _CHUNK.pack(
            CHUNK_MAGIC, self.camera_uid, self.recording_id, self.index, self.offset,
            self.size, self.sha256, self.prev,
        )

    def digest(self) -> bytes:
        """SHA-256 of the packed message: the next chunk's ``prev``."""
        return hashlib.sha256(self.pack()).digest()

    @classmethod
    def unpack(cls, data: bytes) -> ChunkMessage:
        if len(data) != CHUNK_MESSAGE_SIZE:
            raise RemoteProtocolError(f"chunk message is {len(data)} bytes, expected 120")
        magic, uid, rid, index, offset, size, sha, prev = _CHUNK.unpack(data)
        if magic != CHUNK_MAGIC:
            raise RemoteProtocolError("chunk message has a wrong magic")
        return cls(bytes(uid), bytes(rid), index, offset, size, bytes(sha), bytes(prev))


@dataclass(frozen=True, slots=True)
class SealMessage:
    """The 133-byte message a camera signs when a recording is closed."""

    camera_uid: bytes
    recording_id: bytes
    chunk_count: int
    total_size: int
    sha256: bytes  # of the whole recording
    last_chunk_digest: bytes  # SHA-256 of the last chunk message; zeros if no chunks
    started_ms: int
    ended_ms: int
    media: Media

    def __post_init__(self) -> None:
        _check_bytes("camera_uid", self.camera_uid, 16)
        _check_bytes("recording_id", self.recording_id, 16)
        _check_uint("chunk_count", self.chunk_count, 32)
        _check_uint("total_size", self.total_size, 64)
        _check_bytes("sha256", self.sha256, 32)
        _check_bytes("last_chunk_digest", self.last_chunk_digest, 32)
        _check_uint("started_ms", self.started_ms, 64)
        _check_uint("ended_ms", self.ended_ms, 64)
        if self.media not in tuple(Media):
            raise ValueError(f"media must be 1, 2 or 3, got {self.media!r}")
        object.__setattr__(self, "media", Media(self.media))

    def pack(self) -> bytes:
        return _SEAL.pack(
            SEAL_MAGIC, self.camera_uid, self.recording_id, self.chunk_count, self.total_size,
            self.sha256, self.last_chunk_digest, self.started_ms, self.ended_ms, int(self.media),
        )

    def digest(self) -> bytes:
        """SHA-256 of the packed seal: the manifest id."""
        return hashlib.sha256(self.pack()).digest()

    @classmethod
    def unpack(cls, data: bytes) -> SealMessage:
        if len(data) != SEAL_MESSAGE_SIZE:
            raise RemoteProtocolError(f"seal message is {len(data)} bytes, expected 133")
        magic, uid, rid, count, total, sha, last, started, ended, media = _SEAL.unpack(data)
        if magic != SEAL_MAGIC:
            raise RemoteProtocolError("seal message has a wrong magic")
        if media not in (1, 2, 3):
            raise RemoteProtocolError(f"seal message has unknown media type {media}")
        return cls(bytes(uid), bytes(rid), count, total, bytes(sha), bytes(last), started, ended,
                   Media(media))


def auth_message(camera_uid: bytes, nonce: bytes) -> bytes:
    """What the camera signs to prove it holds its device key: ``BWCAUTH1 + uid + nonce``."""
    _check_bytes("camera_uid", camera_uid, 16)
    _check_bytes("nonce", nonce, 32)
    return AUTH_MAGIC + bytes(camera_uid) + bytes(nonce)


def verify_signature(public_key: Ed25519PublicKey, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``message``; never raises."""
    if len(signature) != SIGNATURE_SIZE:
        return False
    try:
        public_key.verify(bytes(signature), bytes(message))
    except InvalidSignature:
        return False
    return True


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("not an Ed25519 private key")
    return key


def load_public_key(data: bytes) -> Ed25519PublicKey:
    """Accepts a SubjectPublicKeyInfo PEM or the raw 32-byte key."""
    if len(data) == 32:
        return Ed25519PublicKey.from_public_bytes(bytes(data))
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise ValueError(f"not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def public_key_raw(key: Ed25519PublicKey | Ed25519PrivateKey) -> bytes:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


