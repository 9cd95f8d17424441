"""Signing a recording's chunk chain and seal with the device key, once, at start-up.

A real camera signs while it records, not while it serves; doing it up front also means a dock
never waits for a 1 GiB hash on its first ``ReadChunk``. Only the 120-byte chunk messages and
their signatures are kept (184 bytes per chunk), never the media bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware_protocol import messages as m
from firmware_protocol.signing import ZERO_DIGEST, ChunkMessage, SealMessage, auth_message

from .recordings import Recording

__all__ = ["SignedRecording", "Signer", "spoil_signature"]


def spoil_signature(signature: bytes) -> bytes:
    """The same signature with one bit of R flipped: well-formed, never valid."""
    return bytes([signature[0] ^ 0x01]) + signature[1:]


@dataclass(frozen=True, slots=True)
class SignedRecording:
    headers: tuple[m.ChunkHeader, ...]
    seal: m.Seal


class Signer:
    def __init__(self, key: Ed25519PrivateKey, camera_uid: bytes) -> None:
        self._key = key
        self._uid = camera_uid

    def sign_auth(self, nonce: bytes) -> bytes:
        return self._key.sign(auth_message(self._uid, nonce))

    def sign_recording(self, rec: Recording, bad_signatures: Collection[int] = (), *,
                       bad_seal: bool = False) -> SignedRecording:
        """Hash and sign every chunk (reading one at a time), then the seal.

        Chunk indexes in ``bad_signatures`` get a spoiled signature (the ``bad-signature`` fault).
        With ``bad_seal`` the seal names a whole-recording SHA-256 with one bit flipped, and is
        signed all the same (the ``bad-seal`` fault: a seal that disagrees with the chunks).
        """
        whole = hashlib.sha256()
        prev = ZERO_DIGEST
        headers = []
        for index in range(rec.chunk_count):
            offset, size = rec.chunk_span(index)
            data = rec.item.source.read(offset, size)
            whole.update(data)
            packed = ChunkMessage(self._uid, rec.recording_id, index, offset, size,
                                  hashlib.sha256(data).digest(), prev).pack()
            signature = self._key.sign(packed)
            if index in bad_signatures:
                signature = spoil_signature(signature)
            headers.append(m.ChunkHeader(packed, signature))
            prev = hashlib.sha256(packed).digest()
        digest = whole.digest()
        if bad_seal:
            digest = bytes([digest[0] ^ 0x01]) + digest[1:]
        seal = SealMessage(self._uid, rec.recording_id, rec.chunk_count, rec.size,
                           digest, prev, rec.started_ms, rec.ended_ms, rec.item.media).pack()
        return SignedRecording(tuple(headers), m.Seal(seal, self._key.sign(seal)))
