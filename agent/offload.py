"""Verified offload of one recording: pull chunks, check them, store them, check the seal.

Every chunk is checked before it is stored: the camera's Ed25519 signature over its 120-byte
message, that the message names this camera, recording, index and offset, the ``prev`` chain and
the SHA-256 of the bytes received. Resuming continues from the store's durable chunk count, so
nothing durable is fetched twice and nothing is accepted twice. The seal is checked against the
chunks and the listing before the recording is finalised.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from firmware_protocol import messages as m
from firmware_protocol.signing import ZERO_DIGEST, ChunkMessage, SealMessage, verify_signature

from .channel import Channel
from .store.footage import FootageStore, PartialRecording

__all__ = ["IntegrityError", "IntegrityReason", "OffloadResult", "OffloadStopped", "Offloader"]

log = logging.getLogger(__name__)


class IntegrityReason(StrEnum):
    CHUNK_SIGNATURE = "chunk_signature"
    CHUNK_HASH = "chunk_hash"
    CHUNK_IDENTITY = "chunk_identity"  # names another camera, recording or index
    CHUNK_OFFSET = "chunk_offset"
    CHUNK_SIZE = "chunk_size"
    CHAIN = "chain"
    SEAL_SIGNATURE = "seal_signature"
    SEAL_MISMATCH = "seal_mismatch"


class IntegrityError(Exception):
    """Footage failed verification: it is quarantined and never released."""

    def __init__(self, reason: IntegrityReason, detail: str, index: int | None = None) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
        self.index = index


@dataclass(frozen=True)
class OffloadResult:
    seal_message: bytes
    seal_signature: bytes
    chunks: list[tuple[bytes, bytes]]
    fetched_bytes: int  # bytes pulled in this session (less than size after a resume)


# What a stored chunk costs beyond its bytes: record header, signed message, signature, GCM tag,
# rounded up to a filesystem block.
_RECORD_SLACK = 4096


class OffloadStopped(Exception):
    """The agent is stopping: the offload ended between two chunks (resumable)."""


class _ChunkVerifier:
    """Checks one chunk as it streams in and keeps its bytes for the store."""

    def __init__(self, expected: ChunkMessage, camera_key: Ed25519PublicKey) -> None:
        self._expected = expected  # sha256 field unknown: checked against the header's claim
        self._key = camera_key
        # Filled in place: growing a buffer and copying it out costs two extra copies per chunk.
        self._buf = bytearray(expected.size)
        self._filled = 0
        self._hasher = hashlib.sha256()
        self.header: m.ChunkHeader | None = None

    def begin(self, header: m.ChunkHeader) -> None:
        exp, got = self._expected, header.info
        if not verify_signature(self._key, header.chunk_message, header.signature):
            raise IntegrityError(IntegrityReason.CHUNK_SIGNATURE,
                                 f"chunk {exp.index}: signature does not verify", exp.index)
        if (got.camera_uid, got.recording_id, got.index) != (
            exp.camera_uid, exp.recording_id, exp.index
        ):
            raise IntegrityError(IntegrityReason.CHUNK_IDENTITY,
                                 f"chunk {exp.index}: signed for another chunk", exp.index)
        if got.offset != exp.offset:
            raise IntegrityError(IntegrityReason.CHUNK_OFFSET,
                                 f"chunk {exp.index}: offset {got.offset}, expected {exp.offset}",
                                 exp.index)
        if got.size != exp.size:
            raise IntegrityError(IntegrityReason.CHUNK_SIZE,
                                 f"chunk {exp.index}: size {got.size}, expected {exp.size}",
                                 exp.index)
        if got.prev != exp.prev:
            raise IntegrityError(IntegrityReason.CHAIN,
                                 f"chunk {exp.index}: prev does not match the previous chunk",
                                 exp.index)
        self.header = header

    def data(self, data: bytes | memoryview) -> None:
        # The connection already refuses data past the signed size; begin() checked that size.
        self._hasher.update(data)
        end = self._filled + len(data)
        self._buf[self._filled : end] = data
        self._filled = end

    def reset(self) -> None:
        self._filled = 0
        self._hasher = hashlib.sha256()
        self.header = None

    def finish(self) -> bytearray:
        assert self.header is not None and self._filled == len(self._buf)
        if self._hasher.digest() != self.header.info.sha256:
            index = self._expected.index
            raise IntegrityError(IntegrityReason.CHUNK_HASH,
                                 f"chunk {index}: bytes do not match the signed SHA-256", index)
        return self._buf


class Offloader:
    """Offloads recordings of one camera into the store.

    Pipelined: while chunk N is checked, encrypted, appended and fsynced on a worker thread,
    the session thread already requests and receives chunk N+1 (hashlib, AES-GCM and fsync all
    release the GIL). Chunks still reach the store strictly in order, and the request for N+2
    waits until N is durable, so a failure surfaces at most one chunk late and never leaves a
    gap.
    """

    def __init__(
        self,
        channel: Channel,
        store: FootageStore,
        camera_uid: bytes,
        camera_key: Ed25519PublicKey,
        *,
        progress: Callable[[bytes, int], None] = lambda rid, n: None,
        should_stop: Callable[[], bool] = lambda: False,
        make_room: Callable[[int], None] = lambda size: None,
        between_chunks: Callable[[], None] = lambda: None,
    ) -> None:
        self._channel = channel
        self._store = store
        self._uid = camera_uid
        self._key = camera_key
        self._progress = progress
        self._should_stop = should_stop
        # Called before each chunk with its size; returns once the store can take it (it may
        # wait for space) or raises OffloadStopped.
        self._make_room = make_room
        # Runs on the session thread between two chunk requests (the connection is idle then):
        # the session refreshes the camera's status there during long offloads.
        self._between_chunks = between_chunks

    def pull(self, info: m.RecordingInfo, meta: dict[str, object]) -> tuple[
        PartialRecording, OffloadResult
    ]:
        """Pull and verify every chunk not yet durable, then the seal.

        Returns the open partial recording (complete, not yet finalised) and the verified seal.
        ``IntegrityError`` leaves the partial open for the caller to quarantine.
        """
        rid = info.recording_id
        partial = self._store.open_partial(rid, self._uid, info.chunk_count, dict(meta))
        try:
            return partial, self._pull_into(partial, info)
        except BaseException:
            partial.close()
            raise

    def _pull_into(self, partial: PartialRecording, info: m.RecordingInfo) -> OffloadResult:
        rid = info.recording_id
        chunks = partial.chunks()
        whole = hashlib.sha256()
        prev, offset = ZERO_DIGEST, 0
        if chunks:
            # Resuming: re-derive the chain and the whole-recording hash from what is durable.
            for plain in partial.read_chunks():
                whole.update(plain)
            last = ChunkMessage.unpack(chunks[-1][0])
            prev, offset = last.digest(), last.offset + last.size
            log.info("recording=%s resume at chunk %d of %d", rid.hex(), len(chunks),
                     info.chunk_count)
        fetched = 0
        with ThreadPoolExecutor(1, thread_name_prefix="offload-store") as worker:
            committing: Future[None] | None = None
            try:
                for index in range(partial.next_index, info.chunk_count):
                    if self._should_stop():
                        raise OffloadStopped(f"stopping before chunk {index}")
                    size = min(info.chunk_size, info.size - offset)
                    if size <= 0:
                        raise IntegrityError(IntegrityReason.SEAL_MISMATCH,
                                             "listing size and chunk count disagree", index)
                    # The previous chunk may still be on its way to disk: count it too.
                    in_flight = 0 if committing is None or committing.done() else (
                        info.chunk_size + _RECORD_SLACK)
                    self._make_room(size + _RECORD_SLACK + in_flight)
                    self._between_chunks()
                    expected = ChunkMessage(self._uid, rid, index, offset, size, ZERO_DIGEST,
                                            prev)
                    verifier = _ChunkVerifier(expected, self._key)
                    header = self._channel.read_chunk(rid, index, verifier)
                    if committing is not None:
                        committing.result()  # chunk N-1 durable (or its failure raised here)
                    committing = worker.submit(self._commit, partial, verifier, header, whole,
                                               chunks)
                    prev, offset = header.info.digest(), offset + size
                    fetched += size
                if committing is not None:
                    committing.result()
            except BaseException as exc:
                _settle(committing, exc)
                raise
        seal = self._channel.request(m.GetSeal(rid), m.Seal)
        self._check_seal(seal, info, offset, prev, whole.digest())
        return OffloadResult(seal.seal_message, seal.signature, chunks, fetched)

    def _commit(self, partial: PartialRecording, verifier: _ChunkVerifier,
                header: m.ChunkHeader, whole: hashlib._Hash,
                chunks: list[tuple[bytes, bytes]]) -> None:
        """Worker thread: the hash check, then encrypt + append + fsync, in chunk order."""
        data = verifier.finish()
        info = header.info
        partial.append_chunk(info.index, data, header.chunk_message, header.signature)
        whole.update(data)
        chunks.append((header.chunk_message, header.signature))
        self._progress(info.recording_id, info.offset + info.size)

    def _check_seal(self, seal: m.Seal, info: m.RecordingInfo, total: int, last: bytes,
                    sha: bytes) -> None:
        if not verify_signature(self._key, seal.seal_message, seal.signature):
            raise IntegrityError(IntegrityReason.SEAL_SIGNATURE, "seal signature does not verify")
        s: SealMessage = seal.info
        problems = [
            name for name, ok in (
                ("camera", s.camera_uid == self._uid),
                ("recording", s.recording_id == info.recording_id),
                ("chunk_count", s.chunk_count == info.chunk_count),
                ("total_size", s.total_size == total == info.size),
                ("sha256", s.sha256 == sha),
                ("last_chunk_digest", s.last_chunk_digest == last),
                ("times", (s.started_ms, s.ended_ms) == (info.started_ms, info.ended_ms)),
                ("media", s.media == info.media),
            ) if not ok
        ]
        if problems:
            raise IntegrityError(IntegrityReason.SEAL_MISMATCH,
                                 "seal disagrees with the chunks/listing: " + ", ".join(problems))


def _settle(committing: Future[None] | None, raised: BaseException) -> None:
    """On the way out, let the chunk being committed finish (or fail) before the partial closes:
    a chunk half-written by a thread still running is what the store must never see."""
    if committing is None:
        return
    failure = committing.exception()  # waits for the worker
    if failure is not None and failure is not raised:
        log.warning("chunk commit also failed while ending the offload: %s", failure)
