"""On-disk format of one recording's encrypted chunk file (``chunks.dat``).

Records are appended back to back, one per chunk, in index order::

    header  ">4sI12sIHH": magic b"BWCK", index u32, nonce 12 bytes,
                          len(ciphertext) u32, len(chunk_message) u16, len(signature) u16
    chunk_message   camera-signed chunk metadata (not secret)
    signature       camera signature over chunk_message
    ciphertext      AES-256-GCM(data) including the 16-byte tag

AAD = b"BWCSTOR1" + recording_id + index (u32 BE) + chunk_count (u32 BE)
      + len(chunk_message) (u16 BE) + chunk_message + len(signature) (u16 BE) + signature

The first part makes reordering, splicing between recordings and truncation detectable; the
second authenticates the camera's metadata at rest as well, so the whole record is covered.
The header fields themselves are checked structurally (magic, index sequence, lengths).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agent.store.errors import CorruptStoreError

__all__ = [
    "AAD_PREFIX",
    "DATA_KEY_LEN",
    "MAGIC",
    "ChunkCipher",
    "ChunkRecord",
    "TornTailError",
    "iter_records",
    "read_ciphertext",
]

MAGIC = b"BWCK"
AAD_PREFIX = b"BWCSTOR1"
DATA_KEY_LEN = 32
_HEADER = struct.Struct(">4sI12sIHH")
_NONCE_LEN = 12
_TAG_LEN = 16
# Far above any real chunk; only here so a damaged length field cannot make us allocate GBs.
MAX_CIPHERTEXT = 256 * 1024 * 1024
_U16_MAX = 0xFFFF
_U32_MAX = 0xFFFFFFFF


class TornTailError(CorruptStoreError):
    """The file ends inside a record (or in zero fill) starting at `offset`.

    For a recording still being written this is the expected trace of a crash during an
    append that was never acknowledged; for a stored recording it is corruption.
    """

    def __init__(self, message: str, *, path: Path, offset: int, index: int) -> None:
        super().__init__(f"{message} at byte {offset}", path=path, line=index)
        self.offset = offset


@dataclass(frozen=True, slots=True)
class ChunkRecord:
    """Location and metadata of one complete record; the ciphertext stays on disk."""

    index: int
    offset: int
    nonce: bytes
    chunk_message: bytes
    signature: bytes
    ct_offset: int
    ct_len: int

    @property
    def end(self) -> int:
        return self.ct_offset + self.ct_len


class ChunkCipher:
    """Encrypts and authenticates records of one recording under its data key."""

    def __init__(self, data_key: bytes, recording_id: bytes, chunk_count: int) -> None:
        if len(data_key) != DATA_KEY_LEN:
            raise ValueError("data key must be 32 bytes")
        if not 0 < chunk_count <= _U32_MAX:
            raise ValueError("chunk_count out of range")
        self._aead = AESGCM(data_key)
        self.recording_id = recording_id
        self.chunk_count = chunk_count

    def _aad(self, index: int, chunk_message: bytes, signature: bytes) -> bytes:
        return b"".join((
            AAD_PREFIX, self.recording_id, struct.pack(">II", index, self.chunk_count),
            struct.pack(">H", len(chunk_message)), chunk_message,
            struct.pack(">H", len(signature)), signature,
        ))

    @staticmethod
    def record_size(data_len: int, chunk_message: bytes, signature: bytes) -> int:
        """Bytes of the record `encode_into` builds for a chunk of `data_len` bytes."""
        return _HEADER.size + len(chunk_message) + len(signature) + data_len + _TAG_LEN

    def encode(self, index: int, data: bytes | bytearray | memoryview, chunk_message: bytes,
               signature: bytes) -> bytes:
        """Return the complete record for chunk `index` with a fresh random nonce."""
        out = bytearray(self.record_size(len(data), chunk_message, signature))
        with self.encode_into(out, index, data, chunk_message, signature) as record:
            return bytes(record)

    def encode_into(self, out: bytearray, index: int, data: bytes | bytearray | memoryview,
                    chunk_message: bytes, signature: bytes) -> memoryview:
        """Build the record for chunk `index` (fresh random nonce) at the start of `out`, which
        must hold at least `record_size` bytes; returns the view of `out` that is the record.

        The ciphertext is encrypted straight into place behind the header: no ciphertext
        object, and no second copy to join header and ciphertext (a chunk is a MiB).
        """
        if len(chunk_message) > _U16_MAX or len(signature) > _U16_MAX:
            raise ValueError("chunk_message and signature must each be under 64 KiB")
        if len(data) + _TAG_LEN > MAX_CIPHERTEXT:
            raise ValueError(f"chunk of {len(data)} bytes exceeds the record size limit")
        size = self.record_size(len(data), chunk_message, signature)
        if len(out) < size:
            raise ValueError(f"record buffer of {len(out)} bytes, {size} needed")
        nonce = os.urandom(_NONCE_LEN)
        ct_len = len(data) + _TAG_LEN
        _HEADER.pack_into(out, 0, MAGIC, index, nonce, ct_len, len(chunk_message),
                          len(signature))
        pos = _HEADER.size
        out[pos : pos + len(chunk_message)] = chunk_message
        pos += len(chunk_message)
        out[pos : pos + len(signature)] = signature
        pos += len(signature)
        view = memoryview(out)
        with view[pos:size] as ct_view:
            self._aead.encrypt_into(nonce, data, self._aad(index, chunk_message, signature),
                                    ct_view)
        record = view[:size]
        view.release()
        return record

    def decrypt(self, record: ChunkRecord, ciphertext: bytes, path: Path) -> bytes:
        """Plaintext of `record`; `CorruptStoreError` if anything about it was altered."""
        aad = self._aad(record.index, record.chunk_message, record.signature)
        try:
            return self._aead.decrypt(record.nonce, ciphertext, aad)
        except InvalidTag as exc:
            raise CorruptStoreError(f"chunk {record.index} fails authentication",
                                    path=path, line=record.index) from exc


def _all_zero(f: BinaryIO, offset: int, size: int) -> bool:
    f.seek(offset)
    remaining = size - offset
    while remaining > 0:
        block = f.read(min(remaining, 1 << 20))
        if not block or block.count(0) != len(block):
            return False
        remaining -= len(block)
    return True


def iter_records(f: BinaryIO, path: Path, size: int) -> Iterator[ChunkRecord]:
    """Yield the complete records of the first `size` bytes of `f`, checking structure.

    Raises `TornTailError` if the data ends inside a record or in zero fill (what an
    interrupted append leaves), and `CorruptStoreError` for anything else: a bad magic
    followed by real data, an index out of sequence, an impossible length. Consumers may move
    the file position between items.
    """
    offset, expected = 0, 0
    while offset < size:
        if size - offset < _HEADER.size:
            raise TornTailError("incomplete record header", path=path, offset=offset,
                                index=expected)
        f.seek(offset)
        magic, index, nonce, ct_len, msg_len, sig_len = _HEADER.unpack(f.read(_HEADER.size))
        if magic != MAGIC:
            if _all_zero(f, offset, size):
                raise TornTailError("zero-filled tail", path=path, offset=offset,
                                    index=expected)
            raise CorruptStoreError(f"bad record magic at byte {offset}", path=path,
                                    line=expected)
        if index != expected:
            raise CorruptStoreError(f"record for chunk {index} where {expected} expected",
                                    path=path, line=expected)
        if not _TAG_LEN <= ct_len <= MAX_CIPHERTEXT:
            raise CorruptStoreError(f"impossible ciphertext length {ct_len}", path=path,
                                    line=expected)
        ct_offset = offset + _HEADER.size + msg_len + sig_len
        if ct_offset + ct_len > size:
            raise TornTailError("incomplete record", path=path, offset=offset, index=expected)
        chunk_message = f.read(msg_len)
        signature = f.read(sig_len)
        record = ChunkRecord(index, offset, nonce, chunk_message, signature, ct_offset, ct_len)
        yield record
        offset, expected = record.end, expected + 1


def read_ciphertext(f: BinaryIO, record: ChunkRecord) -> bytes:
    """The ciphertext bytes of `record`."""
    f.seek(record.ct_offset)
    return f.read(record.ct_len)

