"""Offloader and its chunk verifier, over a channel stand-in that streams signed chunks.

What the hot path promises beyond "every chunk verified and stored": a chunk that arrives in
one frame is stored from that frame's payload (no copy), a chunk in several frames is assembled
in one of two reused buffers, and the seal's whole-recording SHA-256 survives a retried chunk.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent import offload
from agent.channel import Channel, ChunkSink
from agent.offload import IntegrityError, IntegrityReason, Offloader, _ChunkBuffers, _ChunkVerifier
from agent.store.footage import FootageStore
from agent.store.keys import KeyStore
from firmware_protocol import messages as m
from firmware_protocol.signing import ZERO_DIGEST, ChunkMessage, Media, SealMessage

UID = bytes(range(16))
RID = bytes(range(16, 32))
KEY = Ed25519PrivateKey.generate()


class Recording:
    """A camera-signed recording: chunk headers, their data, the seal and the listing entry."""

    def __init__(self, data: bytes, chunk_size: int, *, rid: bytes = RID) -> None:
        self.data = data
        self.headers: list[m.ChunkHeader] = []
        prev = ZERO_DIGEST
        for index, offset in enumerate(range(0, len(data), chunk_size)):
            part = data[offset : offset + chunk_size]
            msg = ChunkMessage(UID, rid, index, offset, len(part), hashlib.sha256(part).digest(),
                               prev)
            self.headers.append(m.ChunkHeader(msg.pack(), KEY.sign(msg.pack())))
            prev = msg.digest()
        seal = SealMessage(UID, rid, len(self.headers), len(data), hashlib.sha256(data).digest(),
                           prev, 1000, 2000, Media.VIDEO).pack()
        self.seal = m.Seal(seal, KEY.sign(seal))
        self.info = m.RecordingInfo(rid, Media.VIDEO, len(data), chunk_size, len(self.headers),
                                    1000, 2000, True)


class Decoding:
    """The part of a :class:`Connection` the offloader uses: where large payloads go."""

    def __init__(self) -> None:
        self.allocate: Callable[[int], bytearray] = bytearray
        self.buffers: list[bytearray] = []  # every buffer a payload was assembled in

    def set_payload_allocator(self, allocate: Callable[[int], bytearray] | None) -> None:
        self.allocate = allocate or bytearray

    def payload(self, data: bytes) -> memoryview:
        """``data`` as the decoder hands out a frame it assembled in place."""
        buf = self.allocate(len(data))
        buf[: len(data)] = data
        self.buffers.append(buf)
        return memoryview(buf)[: len(data)].toreadonly()


class StreamingChannel:
    """Serves ``read_chunk`` like :class:`agent.channel.Channel`: begin, data frames of
    ``frame_size`` bytes (each assembled in a buffer from the connection's allocator, as the
    decoder does), end. ``damage`` maps a chunk index to a frame count after which the first
    attempt is cut off and retried."""

    def __init__(self, rec: Recording, frame_size: int, damage: dict[int, int] | None = None,
                 tamper: Callable[[int, bytes], bytes] = lambda index, part: part) -> None:
        self.rec = rec
        self.frame_size = frame_size
        self.damage = dict(damage or {})
        self.tamper = tamper
        self.connection = Decoding()

    def read_chunk(self, recording_id: bytes, index: int, sink: ChunkSink) -> m.ChunkHeader:
        header = self.rec.headers[index]
        info = header.info
        part = self.tamper(index, self.rec.data[info.offset : info.offset + info.size])
        frames = [bytes(part[i : i + self.frame_size])
                  for i in range(0, len(part), self.frame_size)]
        if index in self.damage:  # a reply damaged on the line: what arrived is forgotten
            sink.begin(header)
            for frame in frames[: self.damage.pop(index)]:
                sink.data(frame)
            sink.reset()
        sink.begin(header)
        for frame in frames:
            sink.data(self.connection.payload(frame))
        return header

    def request(self, msg: m.Message, expect: type[m.Message]) -> m.Message:
        assert isinstance(msg, m.GetSeal) and expect is m.Seal
        return self.rec.seal


def make_store(tmp_path: Path) -> FootageStore:
    return FootageStore(tmp_path / "store", KeyStore(tmp_path / "keys"))


def pull(tmp_path: Path, channel: StreamingChannel, **kwargs: object) -> bytes:
    store = make_store(tmp_path)
    offloader = Offloader(cast(Channel, channel), store, UID, KEY.public_key(),
                          **kwargs)  # type: ignore[arg-type]
    partial, result = offloader.pull(channel.rec.info, {})
    with partial:
        partial.finalise(result.seal_message, result.seal_signature)
    stored = store.stored(channel.rec.info.recording_id)
    assert stored is not None
    return b"".join(stored.read_chunks())


@pytest.mark.parametrize(("chunk_size", "frame_size"), [
    (64 * 1024, 64 * 1024),  # one frame per chunk: stored from the frame itself
    (64 * 1024, 10_000),  # several frames: assembled in the two buffers
    (64 * 1024, 1),  # one byte per frame
])
def test_every_chunk_is_stored_and_the_seal_matches(tmp_path: Path, chunk_size: int,
                                                     frame_size: int) -> None:
    data = os.urandom(5 * chunk_size + 1234)  # a short last chunk too
    channel = StreamingChannel(Recording(data, chunk_size), frame_size)
    assert pull(tmp_path, channel) == data


def test_an_offload_receives_every_chunk_into_the_same_two_buffers(tmp_path: Path) -> None:
    data = os.urandom(12 * 4096)
    channel = StreamingChannel(Recording(data, 4096), 4096)
    assert pull(tmp_path, channel) == data
    assert len(channel.connection.buffers) == 12
    assert len({id(b) for b in channel.connection.buffers}) == 2
    assert channel.connection.allocate is bytearray  # the pool is gone with the offload


def test_chunks_in_several_frames_reuse_the_frame_buffers_too(tmp_path: Path) -> None:
    data = os.urandom(12 * 4096)
    channel = StreamingChannel(Recording(data, 4096), 1024)
    assert pull(tmp_path, channel) == data
    assert len(channel.connection.buffers) == 48
    assert len({id(b) for b in channel.connection.buffers}) <= 3


def test_retried_chunks_leave_the_recording_hash_as_if_sent_once(tmp_path: Path) -> None:
    data = os.urandom(4 * 4096)
    channel = StreamingChannel(Recording(data, 4096), 1000, damage={0: 2, 2: 4, 3: 1})
    assert pull(tmp_path, channel) == data  # the seal check would fail on a doubled byte


def test_a_chunk_in_one_frame_is_kept_not_copied() -> None:
    rec = Recording(os.urandom(3 * 4096), 4096)
    buffers = _ChunkBuffers()
    recording = hashlib.sha256()
    for header in rec.headers:
        info = header.info
        frame = memoryview(rec.data[info.offset : info.offset + info.size])
        verifier = _ChunkVerifier(ChunkMessage(UID, RID, info.index, info.offset, info.size,
                                               ZERO_DIGEST, info.prev), KEY.public_key(),
                                  buffers, recording)
        verifier.begin(header)
        verifier.data(frame)
        assert verifier.finish() is frame
        recording = verifier.recording
    assert recording.digest() == hashlib.sha256(rec.data).digest()
    assert buffers._free == []  # never needed


def test_chunks_in_several_frames_alternate_between_two_pool_buffers() -> None:
    rec = Recording(os.urandom(5 * 4096), 4096)
    buffers = _ChunkBuffers()
    recording = hashlib.sha256()
    seen: list[object] = []
    previous: _ChunkVerifier | None = None
    for header in rec.headers:
        info = header.info
        verifier = _ChunkVerifier(ChunkMessage(UID, RID, info.index, info.offset, info.size,
                                               ZERO_DIGEST, info.prev), KEY.public_key(),
                                  buffers, recording)
        verifier.begin(header)
        for start in range(0, info.size, 1000):
            verifier.data(rec.data[info.offset + start : info.offset + min(info.size,
                                                                             start + 1000)])
        out = verifier.finish()
        assert isinstance(out, memoryview)
        assert out == rec.data[info.offset : info.offset + info.size]
        seen.append(out.obj)
        recording = verifier.recording
        if previous is not None:  # the offload loop: chunk N-1 durable, its buffer free again
            buffers.give(previous.buffer)
        previous = verifier
    assert seen[0] is seen[2] is seen[4] and seen[1] is seen[3] and seen[0] is not seen[1]


def test_a_chunk_whose_bytes_do_not_match_its_signed_hash_is_refused(tmp_path: Path) -> None:
    data = os.urandom(3 * 4096)

    def flip(index: int, part: bytes) -> bytes:
        return part if index != 1 else bytes([part[0] ^ 1]) + part[1:]

    channel = StreamingChannel(Recording(data, 4096), 4096, tamper=flip)
    store = make_store(tmp_path)
    offloader = Offloader(cast(Channel, channel), store, UID, KEY.public_key())
    with pytest.raises(IntegrityError) as exc:
        offloader.pull(channel.rec.info, {})
    assert exc.value.reason is IntegrityReason.CHUNK_HASH and exc.value.index == 1
    assert store.partials() == [RID]  # chunk 0 stayed durable, for the quarantine


def test_offloads_share_the_store_workers_and_trim_the_heap_when_the_last_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trims: list[int] = []
    monkeypatch.setattr(offload, "trim_heap", lambda: trims.append(offload._active) or True)
    workers: set[str] = set()
    started = threading.Barrier(3)

    def progress(rid: bytes, done: int) -> None:
        workers.add(threading.current_thread().name)

    def one(n: int) -> None:
        rid = bytes([n]) * 16
        channel = StreamingChannel(Recording(os.urandom(8 * 4096), 4096, rid=rid), 4096)
        started.wait()
        assert pull(tmp_path / str(n), channel, progress=progress) == channel.rec.data

    threads = [threading.Thread(target=one, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert workers and all(name.startswith("offload-store") for name in workers)
    assert len(workers) <= (os.cpu_count() or 1)
    assert trims and trims[-1] == 0  # trimmed once nothing was offloading any more

