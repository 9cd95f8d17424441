"""The DOCK side of a whole session against an adversarial camera (Hypothesis stateful test).

The machine drives a DOCK ``Connection`` through the real request sequence (hello, auth, time,
status, listing, chunks, seal, event log, release) in any order the state table allows. After
each request the camera model either answers correctly (cut at arbitrary byte boundaries, chunk
data in frames of any size) or misbehaves: wrong message types, replies with another sequence
number, replays of earlier replies, duplicated chunk data, chunks of another index or another
camera, damaged replies (bit flips, truncation, insertions, deletions, duplicated runs),
garbage bursts, endless garbage, oversized length headers, maximum-size frames fed in small
reads. Silence and damage are handled the way ``agent.channel`` does: the dock cancels.

Invariants, after every step:
- only ``RemoteProtocolError`` escapes ``next_event``; every event is a message the state table
  allows, an ``EndOfChunk``, a ``FrameError`` or a ``StaleFrame``; no message is forged;
- a dock that raised stays failed (the same error again, ``send`` refused) until the camera is
  replugged; one that did not has a request outstanding exactly when it waits, and can always
  cancel and go on;
- the decoder never holds more than one maximum frame plus the read being fed, less once drained,
  and a flood of garbage allocates no more than that (tracemalloc);
- a correct answer to a request sent with nothing left in the decoder yields exactly the
  camera's messages, verified as the dock's offload verifies them (signatures, chunk identity,
  offsets, hash chain, data hashes, seal agreement).
"""

from __future__ import annotations

import hashlib
import itertools
import tracemalloc
import zlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from firmware_protocol import messages as m
from firmware_protocol._state import CANCEL, STABLE_STATES, TRANSITIONS, Role, State
from firmware_protocol.connection import (
    NEED_DATA,
    SUPPORTED_VERSIONS,
    Connection,
    EndOfChunk,
    Event,
    StaleFrame,
)
from firmware_protocol.errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from firmware_protocol.frames import (
    HEADER_SIZE,
    MAGIC,
    TRAILER_SIZE,
    FrameError,
    FrameErrorKind,
    encode_frame,
)
from firmware_protocol.signing import (
    ZERO_DIGEST,
    auth_message,
    public_key_raw,
    verify_signature,
)
from tests.protocol.helpers import (
    CAMERA_KEY,
    CAMERA_UID,
    CameraApp,
    SignedRecording,
    buffered,
    make_recording,
    split_frames,
)
from tests.protocol.protocol_strategies import any_message

DOCK, CAMERA = Role.DOCK, Role.CAMERA
EVENT_TYPES = (m.Message, EndOfChunk, FrameError, StaleFrame)
BIG = 1 << 24  # encode_frame limit for building test frames, oversized ones included
DOCK_MAX = 65536  # what the dock offers in HELLO; the camera picks 4096 or 32768
CAMERA_PUBLIC = CAMERA_KEY.public_key()

REC_A = make_recording(bytes(i * 7 % 256 for i in range(1800)), 700,
                       recording_id=bytes([0xA0]) * 16)  # 700 + 700 + 400
# one 20 000-byte chunk: with 32 KiB frames it arrives in one frame assembled in place
REC_B = make_recording(bytes(i % 253 for i in range(20_000)), 20_000,
                       recording_id=bytes([0xB0]) * 16)
UNKNOWN_RID = bytes(16)
RECORDINGS = (REC_A, REC_B)
# Another camera's recording under the same id: headers a hostile camera could replay.
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
FOREIGN_A = make_recording(REC_A.data, 700, recording_id=REC_A.info.recording_id, key=OTHER_KEY,
                           uid=bytes(range(16)))


# -- what the dock asks -----------------------------------------------------------------------

RIDS = st.sampled_from([REC_A.info.recording_id, REC_B.info.recording_id, UNKNOWN_RID])
U64 = st.integers(0, 2**64 - 1)
# every chunk there is (asked for more often: the chunk path is the one that carries footage)
chunks = st.sampled_from([m.ReadChunk(r.info.recording_id, h.info.index)
                          for r in RECORDINGS for h in r.headers])
requests = st.one_of(
    chunks, chunks, chunks,
    st.just(m.Hello(SUPPORTED_VERSIONS, DOCK_MAX)),
    st.builds(m.AuthChallenge, st.binary(min_size=32, max_size=32)),
    st.just(m.GetStatus()),
    st.builds(m.TimeProbe, U64),
    st.builds(m.SetTime, st.integers(0, 2**62)),
    st.builds(m.ListRecordings, st.integers(0, 3), st.integers(1, 3)),
    st.builds(m.ReadChunk, RIDS, st.integers(0, 3)),
    st.builds(m.GetSeal, RIDS),
    st.builds(m.GetEventLog, st.integers(0, 8), st.integers(1, 4)),
    st.builds(m.Release, RIDS),
)


def recording(rid: bytes) -> SignedRecording | None:
    return next((r for r in RECORDINGS if r.info.recording_id == rid), None)


def frame_of(msg_type: int, seq: int, payload: bytes | memoryview) -> bytes:
    return encode_frame(msg_type, seq, payload, BIG)


def reframe(frames: list[bytes], seq: int) -> list[bytes]:
    """The same frames with another sequence number (CRCs recomputed)."""
    return [frame_of(f[3], seq, f[HEADER_SIZE:-TRAILER_SIZE]) for f in frames]


def recut_chunk(frames: list[bytes], size: int) -> list[bytes]:
    """A chunk reply with its data in frames of ``size`` bytes (any size is a correct answer)."""
    if frames[0][3] != m.ChunkHeader.TYPE:
        return frames
    seq = int.from_bytes(frames[0][4:6], "big")
    data = b"".join(f[HEADER_SIZE + 4 : -TRAILER_SIZE] for f in frames[1:])
    return [frames[0], *(frame_of(m.ChunkData.TYPE, seq, m.ChunkData(o, data[o : o + size])
                                  .encode()) for o in range(0, len(data), size))]


def cut(data: bytes, points: list[int]) -> list[bytes]:
    """``data`` cut at the given offsets (taken modulo its length)."""
    if not data:
        return []
    bounds = sorted({p % len(data) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


cuts = st.lists(st.integers(0, 1 << 20), max_size=6)
mutation = st.tuples(st.sampled_from(["flip", "insert", "delete", "truncate", "duplicate"]),
                     st.integers(0, 1 << 20), st.integers(1, 255),
                     st.binary(min_size=1, max_size=24))


def mutate(data: bytes, ops: list[tuple[str, int, int, bytes]]) -> bytes:
    out = bytearray(data)
    for kind, where, value, blob in ops:
        pos = where % (len(out) + 1)
        if kind == "flip" and out:
            out[where % len(out)] ^= value
        elif kind == "insert":
            out[pos:pos] = blob
        elif kind == "delete":
            del out[pos : pos + value % 64 + 1]
        elif kind == "truncate":
            del out[pos:]
        else:
            out[pos:pos] = out[pos : pos + value % 64 + 1]
    return bytes(out)


# -- verifying a correct answer as the offload does ---------------------------------------------


def verify_chunk(header: m.ChunkHeader, data: bytes, req: m.ReadChunk) -> None:
    """The checks of agent/offload.py on one chunk, against what the camera recorded."""
    rec = recording(req.recording_id)
    assert rec is not None
    info = header.info
    assert verify_signature(CAMERA_PUBLIC, header.chunk_message, header.signature)
    assert (info.camera_uid, info.recording_id, info.index) == (
        CAMERA_UID, req.recording_id, req.index)
    assert info.offset == sum(h.info.size for h in rec.headers[: req.index])
    prev = (ZERO_DIGEST if req.index == 0
            else hashlib.sha256(rec.headers[req.index - 1].chunk_message).digest())
    assert info.prev == prev
    assert hashlib.sha256(data).digest() == info.sha256
    assert data == rec.data[info.offset : info.offset + info.size]


def verify_seal(seal: m.Seal, rec: SignedRecording) -> None:
    info = seal.info
    assert verify_signature(CAMERA_PUBLIC, seal.seal_message, seal.signature)
    assert (info.camera_uid, info.recording_id) == (CAMERA_UID, rec.info.recording_id)
    assert (info.chunk_count, info.total_size, info.media) == (
        len(rec.headers), len(rec.data), rec.info.media)
    assert info.sha256 == hashlib.sha256(rec.data).digest()
    assert info.last_chunk_digest == hashlib.sha256(rec.headers[-1].chunk_message).digest()


class DockVsCamera(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.limit = 4096
        self._new_session()

    def _new_session(self) -> None:
        """A camera (re)plugged: a fresh camera application and a fresh DOCK connection."""
        self.camera = CameraApp(RECORDINGS, max_payload=self.limit)
        self.dock = Connection(DOCK, max_payload=DOCK_MAX)
        self.failed: RemoteProtocolError | None = None
        self.request: m.Message | None = None
        self.seq = 0  # the seq of the last request sent
        self.reply: list[bytes] = []  # the camera's correct reply frames, not yet delivered
        self.clean = False  # nothing but the correct reply reached the dock since the request
        self.history: list[bytes] = []  # every reply frame the camera sent, for replays
        self.framed: set[bytes] = set()  # every payload that went onto the line in a frame

    @initialize(limit=st.sampled_from([4096, 32768]), handshake=st.booleans())
    def plug(self, limit: int, handshake: bool) -> None:
        self.limit = limit
        self._new_session()
        if handshake:  # start most runs authenticated, where most requests live
            for req in (m.Hello(SUPPORTED_VERSIONS, DOCK_MAX), m.AuthChallenge(bytes(32))):
                self.ask(req, 1, now=True, legal=0, points=[])
            assert self.dock.state is State.READY

    @property
    def alive(self) -> bool:
        return self.failed is None

    def waiting(self) -> bool:
        return self.alive and self.dock.state not in STABLE_STATES

    # -- feeding the dock ------------------------------------------------------------------------

    def feed(self, pieces: list[bytes]) -> list[Event]:
        """Feed and drain, checking every event; stops at a RemoteProtocolError."""
        dock, events = self.dock, []
        frame_max = HEADER_SIZE + dock.max_payload + TRAILER_SIZE
        for piece in pieces:
            dock.receive_data(piece)
            assert buffered(dock) <= frame_max + len(piece)
            budget = 2 * buffered(dock) + 2  # every event consumes input: more is a hang
            while True:
                budget -= 1
                assert budget >= 0, "next_event() yields without consuming input"
                before = dock.state
                try:
                    ev = dock.next_event()
                except RemoteProtocolError as exc:
                    self.failed = exc
                    event(f"dock failed: {exc.code.name}")
                    return events
                if ev is NEED_DATA:
                    break
                assert isinstance(ev, EVENT_TYPES), ev
                if isinstance(ev, m.Message):
                    assert (before, CAMERA, type(ev)) in TRANSITIONS
                    assert bytes(ev.encode()) in self.framed, f"forged {type(ev).__name__}"
                events.append(ev)
            frame_max = HEADER_SIZE + dock.max_payload + TRAILER_SIZE
            assert buffered(dock) < frame_max
        return events

    def put(self, frames: list[bytes]) -> bytes:
        for f in frames:
            self.framed.add(f[HEADER_SIZE:-TRAILER_SIZE])
        return b"".join(frames)

    # -- the dock asks ---------------------------------------------------------------------------

    @precondition(lambda self: self.alive and self.dock.state in STABLE_STATES)
    @rule(req=requests, data_frame=st.integers(1, 40_000), now=st.booleans(),
          legal=st.integers(0, 7), points=cuts)
    def ask(self, req: m.Message, data_frame: int, now: bool, legal: int,
            points: list[int]) -> None:
        """The dock sends a request (mostly one the state allows); the camera prepares the
        correct reply, delivered at once (``now``) or left to another rule."""
        state = self.dock.state
        if (state, DOCK, type(req)) not in TRANSITIONS and legal:
            req = m.Hello(SUPPORTED_VERSIONS, DOCK_MAX) if state is State.HANDSHAKE else (
                m.AuthChallenge(bytes([legal]) * 32))
        if (state, DOCK, type(req)) not in TRANSITIONS:
            try:
                self.dock.send(req)
            except LocalProtocolError:
                assert self.dock.state is state
                return
            raise AssertionError(f"sent {type(req).__name__} in {state.value}")
        self.clean = buffered(self.dock) == 0
        frame = self.dock.send(req)
        self.request, self.seq = req, int.from_bytes(frame[4:6], "big")
        assert self.dock.outstanding is req
        reply = split_frames(self.camera.receive(frame))
        assert reply, "the camera answers every request"
        self.reply = recut_chunk(reply, min(data_frame, self.camera.conn.chunk_data_max))
        self.history += self.reply
        if now:
            self.answer_correctly(points)

    @precondition(lambda self: self.waiting() and self.reply)
    @rule(points=cuts)
    def answer_correctly(self, points: list[int]) -> None:
        expected = [m.decode_message(f[3], f[HEADER_SIZE:-TRAILER_SIZE]) for f in self.reply]
        events = self.feed(cut(self.put(self.reply), points))
        self.reply = []
        if not self.clean:
            # Earlier noise may have damaged or swallowed it. Like agent.channel, the dock times
            # out, cancels (dropping what it holds) and asks again: that answer must get through.
            if self.alive and self.dock.state not in STABLE_STATES and self.request is not None:
                request = self.request
                self.time_out()
                self.ask(request, 1 << 20, now=True, legal=0, points=points)
            return
        assert self.alive, self.failed
        assert [e for e in events if not isinstance(e, m.Message | EndOfChunk)] == []
        got = [e for e in events if isinstance(e, m.Message)]
        assert [(type(e), bytes(e.encode())) for e in got] == [
            (type(e), bytes(e.encode())) for e in expected]
        assert self.dock.state in STABLE_STATES and self.dock.outstanding is None
        self.check_answer(events)
        event(f"verified answer: {type(self.request).__name__} -> {type(events[0]).__name__}")

    def check_answer(self, events: list[Event]) -> None:
        req, first = self.request, events[0]
        assert req is not None
        if isinstance(first, m.Error):
            assert len(events) == 1
            return
        if isinstance(req, m.Hello):
            assert isinstance(first, m.Identity) and first.camera_uid == CAMERA_UID
            assert first.public_key == public_key_raw(CAMERA_KEY)
            assert self.dock.max_payload == first.max_payload == min(DOCK_MAX, self.limit)
            assert self.dock.state is State.IDENTIFIED
        elif isinstance(req, m.AuthChallenge):
            assert isinstance(first, m.AuthResponse)
            assert verify_signature(CAMERA_PUBLIC, auth_message(CAMERA_UID, req.nonce),
                                    first.signature)
            assert self.dock.state is State.READY
        elif isinstance(req, m.ReadChunk):
            assert isinstance(first, m.ChunkHeader)
            assert events[-1] == EndOfChunk(req.recording_id, req.index)
            data = b"".join(bytes(e.data) for e in events if isinstance(e, m.ChunkData))
            verify_chunk(first, data, req)
        elif isinstance(req, m.GetSeal):
            rec = recording(req.recording_id)
            assert isinstance(first, m.Seal) and rec is not None
            verify_seal(first, rec)
        else:
            reply_type = {m.GetStatus: m.Status, m.TimeProbe: m.TimeReply,
                          m.SetTime: m.TimeSet, m.ListRecordings: m.RecordingList,
                          m.GetEventLog: m.EventLog, m.Release: m.Released}[type(req)]
            assert isinstance(first, reply_type) and len(events) == 1
            if isinstance(req, m.TimeProbe):
                assert isinstance(first, m.TimeReply) and first.t0_us == req.t0_us
            if isinstance(req, m.ListRecordings):
                assert isinstance(first, m.RecordingList)
                assert first.entries == tuple(
                    r.info for r in RECORDINGS[req.start : req.start + req.max_entries])
            if isinstance(req, m.GetEventLog):
                assert isinstance(first, m.EventLog)
                assert all(e.seq >= req.since for e in first.entries)
            if isinstance(req, m.Release):
                assert isinstance(first, m.Released)
                assert first.recording_id == req.recording_id

    # -- the camera misbehaves -------------------------------------------------------------------

    @precondition(lambda self: self.alive and self.reply)
    @rule(ops=st.lists(mutation, min_size=1, max_size=4), points=cuts)
    def answer_damaged(self, ops: list[tuple[str, int, int, bytes]], points: list[int]) -> None:
        self.feed(cut(mutate(self.put(self.reply), ops), points))
        self.reply, self.clean = [], False

    @precondition(lambda self: self.alive and self.reply)
    @rule(delta=st.integers(1, 0xFFFF), points=cuts)
    def answer_with_another_seq(self, delta: int, points: list[int]) -> None:
        """Replies for a request the dock abandoned: discarded, nothing changes."""
        seq = (self.seq + delta) % 0x10000
        empty, state = buffered(self.dock) == 0, self.dock.state
        events = self.feed(cut(self.put(reframe(self.reply, seq)), points))
        if empty:
            assert self.alive and self.dock.state is state
            assert all(isinstance(e, StaleFrame) and e.seq == seq for e in events), events
            assert buffered(self.dock) == 0

    @precondition(lambda self: self.alive and self.history)
    @rule(pick=st.integers(0, 1 << 16), current=st.booleans(), points=cuts)
    def replay_an_old_reply(self, pick: int, current: bool, points: list[int]) -> None:
        """A frame of an earlier reply, seq and all, or resent with the awaited seq."""
        old = self.history[pick % len(self.history)]
        frame = reframe([old], self.seq)[0] if current else old
        awaited = int.from_bytes(frame[4:6], "big") == self.seq
        waiting, empty = self.dock.outstanding is not None, buffered(self.dock) == 0
        events = self.feed(cut(self.put([frame]), points))
        if empty and not (awaited and waiting):
            assert self.alive and all(isinstance(e, StaleFrame) for e in events), events
        if awaited and waiting:
            self.clean = False

    @precondition(lambda self: self.alive)
    @rule(msg=any_message, seq_pick=st.integers(0, 3))
    def send_any_message(self, msg: m.Message, seq_pick: int) -> None:
        """Any message at all (usually the wrong type for the state), with the awaited seq
        (a quarter of the time: it ends the session) or another."""
        current = seq_pick == 0
        seq = self.seq if current else (self.seq + seq_pick) % 0x10000
        payload = msg.encode()
        state, waiting = self.dock.state, self.dock.outstanding is not None
        fits, empty = len(payload) <= self.dock.max_payload, buffered(self.dock) == 0
        events = self.feed([self.put([frame_of(msg.TYPE, seq, payload)])])
        if fits and empty and self.clean and waiting and current and (
                state, CAMERA, type(msg)) not in TRANSITIONS:
            assert self.failed is not None and self.failed.code is ErrorCode.BAD_STATE
        if fits and empty and not (waiting and current):
            assert self.alive and all(isinstance(e, StaleFrame) for e in events), events
        self.clean = False

    @precondition(lambda self: self.alive and self.clean and self.reply
                  and self.reply[0][3] == m.ChunkHeader.TYPE)
    @rule(kind=st.sampled_from(["duplicate", "index", "camera", "content"]),
          where=st.integers(0, 1 << 20))
    def misbehave_in_a_chunk(self, kind: str, where: int) -> None:
        """Duplicated chunk data, a chunk of another index or another camera (the protocol
        refuses them), or well-framed data that is not what the camera signed (the protocol
        cannot tell; the offload's hash check does)."""
        req = self.request
        assert isinstance(req, m.ReadChunk)
        rec = recording(req.recording_id)
        assert rec is not None
        if buffered(self.dock):
            return
        self.reply, reply = [], self.reply
        if kind == "duplicate":  # the first data frame twice: the second is at a wrong offset
            self.feed([self.put([*reply[:2], reply[1]])])
            if len(reply) > 2:
                assert self.failed is not None and self.failed.code is ErrorCode.SEQUENCE
            return
        if kind in ("index", "camera"):
            if kind == "camera":  # the same chunk, signed by another camera
                header = FOREIGN_A.headers[min(req.index, len(FOREIGN_A.headers) - 1)]
            elif len(rec.headers) > 1:
                header = rec.headers[(req.index + 1) % len(rec.headers)]
            else:
                header = REC_A.headers[0]  # another recording
            self.feed([self.put([frame_of(header.TYPE, self.seq, header.encode())])])
            assert self.failed is not None and self.failed.code is ErrorCode.SEQUENCE
            return
        header = rec.headers[req.index]
        data = bytearray(b"".join(f[HEADER_SIZE + 4 : -TRAILER_SIZE] for f in reply[1:]))
        data[where % len(data)] ^= 0xFF
        step = self.dock.max_payload - 4
        frames = [reply[0], *(frame_of(m.ChunkData.TYPE, self.seq,
                                       m.ChunkData(o, bytes(data[o : o + step])).encode())
                              for o in range(0, len(data), step))]
        events = self.feed([self.put(frames)])
        assert self.alive, self.failed
        got = b"".join(bytes(e.data) for e in events if isinstance(e, m.ChunkData))
        assert events[-1] == EndOfChunk(req.recording_id, req.index)
        assert hashlib.sha256(got).digest() != header.info.sha256
        event("corrupted chunk content caught by its hash")

    @precondition(lambda self: self.alive)
    @rule(kind=st.sampled_from(["oversized", "garbage", "endless", "markers", "max_frame"]),
          blob=st.binary(max_size=4096), read=st.sampled_from([1, 7, 64, 1000, 4096]),
          current=st.booleans(), excess=st.integers(1, 2**32 - 1 - 32768))
    def noise(self, kind: str, blob: bytes, read: int, current: bool, excess: int) -> None:
        """Noise and floods; memory is measured: never more than a frame plus a read."""
        if kind == "oversized":
            self.oversized_length(current, excess)
            return
        limit = self.dock.max_payload
        if kind == "garbage":
            data = blob
        elif kind == "endless":
            data = bytes((b % 0xB7) for b in blob * 16)[:65536] or b"\0"
        elif kind == "markers":
            data = MAGIC * (1 + len(blob) // 2)
        else:  # a maximum-size frame of a stale request
            seq = (self.seq + 3) % 0x10000
            data = self.put([frame_of(m.ChunkData.TYPE, seq, bytes(limit - 4) + b"tail")])
            read = max(read, 64)  # bytewise: benchmarks/decoder_memory.py
        pieces = [data[i : i + read] for i in range(0, len(data), read)]
        frame_max = HEADER_SIZE + limit + TRAILER_SIZE
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            self.feed(pieces)
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
        # One frame held, one read, and the frame handed out (a max frame's payload), plus the
        # events list and small objects.
        assert peak <= 2 * frame_max + read + 64 * 1024, (kind, peak)
        self.clean = False

    def oversized_length(self, seq_is_current: bool, excess: int) -> None:
        """A header whose CRC holds and whose length exceeds the limit: rejected before any
        body is buffered; if it names the awaited request, that reply counts as damaged."""
        seq = self.seq if seq_is_current else (self.seq + 7) % 0x10000
        head = MAGIC + bytes([1, m.ChunkData.TYPE]) + seq.to_bytes(2, "big")
        head += min(self.dock.max_payload + excess, 2**32 - 1).to_bytes(4, "big")
        head += zlib.crc32(head).to_bytes(4, "big")
        empty, waiting = buffered(self.dock) == 0, self.dock.outstanding is not None
        events = self.feed([head])
        assert self.alive
        if empty:
            assert [(e.kind, e.skipped, e.seq) for e in events if isinstance(e, FrameError)] == [
                (FrameErrorKind.TOO_LARGE, HEADER_SIZE, seq)] and len(events) == 1
            assert buffered(self.dock) == 0
            if seq_is_current and waiting and self.reply:
                # the rest of the reply is now stale: nothing of it is taken
                later = self.feed([self.put(self.reply)])
                assert self.alive and all(isinstance(e, StaleFrame) for e in later)
                self.reply = []
        self.clean = False

    # -- the dock's timers -----------------------------------------------------------------------

    @precondition(lambda self: self.alive)
    @rule()
    def time_out(self) -> None:
        """What agent.channel does on a timeout or a damaged reply: cancel (and ask again).
        With nothing outstanding there is nothing to cancel."""
        before = self.dock.state
        if before in STABLE_STATES:
            try:
                self.dock.cancel()
            except LocalProtocolError:
                assert self.dock.state is before
                return
            raise AssertionError("cancel without a request")
        self.dock.cancel()
        assert self.dock.state is TRANSITIONS[(before, DOCK, CANCEL)]
        assert self.dock.outstanding is None and buffered(self.dock) == 0
        self.reply, self.request = [], None

    @precondition(lambda self: not self.alive)
    @rule(handshake=st.booleans())
    def replug(self, handshake: bool) -> None:
        """The session with a misbehaving camera is over: the line is closed, it replugs."""
        self.plug(self.limit, handshake)

    # -- invariants ------------------------------------------------------------------------------

    @invariant()
    def consistent(self) -> None:
        dock = self.dock
        if self.failed is not None:
            for _ in range(2):  # sticky: the same error every time
                try:
                    dock.next_event()
                except RemoteProtocolError as exc:
                    assert exc is self.failed
                else:
                    raise AssertionError("a failed dock yields events")
            try:
                dock.send(m.GetStatus())
            except LocalProtocolError:
                pass
            else:
                raise AssertionError("a failed dock sends")
            return
        assert (dock.outstanding is None) == (dock.state in STABLE_STATES)
        assert buffered(dock) < HEADER_SIZE + dock.max_payload + TRAILER_SIZE
        assert dock.max_payload in (4096, min(DOCK_MAX, self.limit))


DockVsCamera.TestCase.settings = settings(
    max_examples=2000, stateful_step_count=20, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_dock_against_an_adversarial_camera = DockVsCamera.TestCase
