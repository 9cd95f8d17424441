"""Verified offload of one recording: pull chunks, check them, store them, check the seal.

Every chunk is checked before it is stored: the camera's Ed25519 signature over its 120-byte
message, that the message names this camera, recording, index and offset, the ``prev`` chain and
the SHA-256 of the bytes received. Resuming continues from the store's durable chunk count, so
nothing durable is fetched twice and nothing is accepted twice. The seal is checked against the
chunks and the listing before the recording is finalised.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from firmware_protocol import messages as m
from firmware_protocol.signing import ZERO_DIGEST, ChunkMessage, SealMessage, verify_signature

from .channel import Channel
from .memory import trim_heap
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


class _ChunkBuffers:
    """The buffers one offload receives its chunks into, used again chunk after chunk.

    The frame decoder assembles each chunk-sized frame in place in a buffer taken from here
    (``Connection.set_payload_allocator``), and a chunk that comes in several frames is put
    together in one too. A chunk's buffer comes back once the chunk is durable, so an offload
    cycles through two of them (the chunk being received and the one being stored: the request
    for N+1 waits until N-1 is durable), plus one for the frames of a chunk that comes in
    several, instead of allocating and zero-filling a MiB per chunk; what an offload holds stays
    that, however the heap would have placed fresh ones.

    Used by the session thread only: the decoder takes on it, the offload loop gives back.
    """

    _SPARE = 3

    def __init__(self) -> None:
        self._free: list[bytearray] = []

    def take(self, size: int) -> bytearray:
        for i, buf in enumerate(self._free):
            if len(buf) >= size:
                return self._free.pop(i)
        return bytearray(size)

    def give(self, buf: bytearray | None) -> None:
        """``buf`` is no longer read by anyone (its chunk is durable)."""
        if buf is not None and len(self._free) < self._SPARE:
            self._free.append(buf)


class _ChunkVerifier:
    """Checks one chunk as it streams in and keeps its bytes for the store.

    It also carries the whole-recording SHA-256 (the seal's) on from ``recording``, the state
    after the previous chunk: both hashes are taken on the session thread as each frame comes
    in, while its bytes are still in this core's cache, not later on a store worker's core
    (measured with eight cameras: 0.71 CPU seconds per GiB here, 0.90 on a worker). A chunk
    that fails its checks ends the offload, so its bytes in ``recording`` never count.
    """

    def __init__(self, expected: ChunkMessage, camera_key: Ed25519PublicKey,
                 buffers: _ChunkBuffers, recording: hashlib._Hash) -> None:
        self._expected = expected  # sha256 field unknown: checked against the header's claim
        self._key = camera_key
        self._buffers = buffers
        self._buf: bytearray | None = None
        self._kept: bytes | memoryview | None = None
        self.buffer: bytearray | None = None  # the pool's buffer the chunk's bytes are in
        self._filled = 0
        self._hasher = hashlib.sha256()
        self._recording_before = recording
        self.recording = recording.copy()  # the seal's hash, this chunk included once filled
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
        self.recording.update(data)
        size = self._expected.size
        n = len(data)
        if not self._filled and n == size:
            # The whole chunk in one frame: keep the frame's payload itself. The decoder hands
            # out payloads it never touches again, so holding on to them is safe; one it
            # assembled in a buffer of the pool goes back there once the chunk is durable.
            self._kept = data
            owner = data.obj if isinstance(data, memoryview) else None
            self.buffer = owner if isinstance(owner, bytearray) else None
        else:
            if self._buf is None:
                self._buf = self.buffer = self._buffers.take(size)
            with memoryview(self._buf) as dst:
                dst[self._filled : self._filled + n] = data  # one copy (see frames.py)
            if isinstance(data, memoryview) and isinstance(data.obj, bytearray):
                # A frame's payload from the pool, copied now: its buffer takes the next frame.
                self._buffers.give(data.obj)
        self._filled += n

    def reset(self) -> None:
        self._filled = 0
        self._kept = self.buffer = None
        self._hasher = hashlib.sha256()
        self.recording = self._recording_before.copy()
        self.header = None

    def finish(self) -> bytes | memoryview:
        """The chunk's bytes once every one of them matches the signed SHA-256."""
        size = self._expected.size
        assert self.header is not None and self._filled == size
        if self._hasher.digest() != self.header.info.sha256:
            index = self._expected.index
            raise IntegrityError(IntegrityReason.CHUNK_HASH,
                                 f"chunk {index}: bytes do not match the signed SHA-256", index)
        if self._kept is not None:
            return self._kept
        assert self._buf is not None
        return memoryview(self._buf)[:size]


class Offloader:
    """Offloads recordings of one camera into the store.

    Pipelined: while chunk N is checked, encrypted, appended and fsynced on a store worker
    (a pool shared by all offloads), the session thread already requests and receives chunk
    N+1 (hashlib, AES-GCM and fsync all release the GIL). Chunks still reach the store strictly
    in order, and the request for N+2 waits until N is durable, so a failure surfaces at most
    one chunk late and never leaves a gap. A chunk byte is copied once, from the transport's
    read buffer into the frame's payload buffer (or, for a chunk in several frames, into one of
    the offload's buffers); there it is hashed twice and encrypted straight into the record.
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
        with _active_offload():
            try:
                return partial, self._pull_into(partial, info)
            except BaseException:
                partial.close()
                raise

    def _pull_into(self, partial: PartialRecording, info: m.RecordingInfo) -> OffloadResult:
        rid = info.recording_id
        chunks = partial.chunks()
        recording = hashlib.sha256()
        prev, offset = ZERO_DIGEST, 0
        if chunks:
            # Resuming: re-derive the chain and the whole-recording hash from what is durable.
            for plain in partial.read_chunks():
                recording.update(plain)
            last = ChunkMessage.unpack(chunks[-1][0])
            prev, offset = last.digest(), last.offset + last.size
            log.info("recording=%s resume at chunk %d of %d", rid.hex(), len(chunks),
                     info.chunk_count)
        fetched = 0
        buffers = _ChunkBuffers()
        worker = _store_workers()
        committing: Future[None] | None = None
        stored: _ChunkVerifier | None = None  # the chunk being committed
        connection = self._channel.connection
        connection.set_payload_allocator(buffers.take)
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
                verifier = _ChunkVerifier(expected, self._key, buffers, recording)
                header = self._channel.read_chunk(rid, index, verifier)
                recording = verifier.recording
                if committing is not None and stored is not None:
                    committing.result()  # chunk N-1 durable (or its failure raised here)
                    buffers.give(stored.buffer)
                committing = worker.submit(self._commit, partial, verifier, header, chunks)
                stored = verifier
                prev, offset = header.info.digest(), offset + size
                fetched += size
            if committing is not None:
                committing.result()
        except BaseException as exc:
            _settle(committing, exc)
            raise
        finally:
            connection.set_payload_allocator(None)
        seal = self._channel.request(m.GetSeal(rid), m.Seal)
        self._check_seal(seal, info, offset, prev, recording.digest())
        return OffloadResult(seal.seal_message, seal.signature, chunks, fetched)

    def _commit(self, partial: PartialRecording, verifier: _ChunkVerifier,
                header: m.ChunkHeader, chunks: list[tuple[bytes, bytes]]) -> None:
        """Worker thread: the hash check, then encrypt + append + fsync, in chunk order."""
        data = verifier.finish()  # no copy: the frame's payload or the session's buffer
        info = header.info
        partial.append_chunk(info.index, data, header.chunk_message, header.signature)
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


_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_active = 0


def _store_workers() -> ThreadPoolExecutor:
    """The store workers every offload shares, one per core.

    Encryption, hashing and fsync release the GIL, so more workers than cores buy nothing; a
    worker per offload would mean 16 threads (and their malloc arenas and stacks) on a full
    dock. Each offload has at most one chunk in the queue, so the queue is fair by itself.
    """
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="offload-store")
        return _pool


@contextlib.contextmanager
def _active_offload() -> Iterator[None]:
    """Counts running offloads; when the last one ends, freed chunk buffers go back to the
    kernel (the heap keeps them otherwise, see agent.memory)."""
    global _active
    with _pool_lock:
        _active += 1
    try:
        yield
    finally:
        with _pool_lock:
            _active -= 1
            last = _active == 0
        if last:
            trim_heap()


def _settle(committing: Future[None] | None, raised: BaseException) -> None:
    """On the way out, let the chunk being committed finish (or fail) before the partial closes:
    a chunk half-written by a thread still running is what the store must never see."""
    if committing is None:
        return
    failure = committing.exception()  # waits for the worker
    if failure is not None and failure is not raised:
        log.warning("chunk commit also failed while ending the offload: %s", failure)
