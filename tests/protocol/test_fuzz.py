"""Hypothesis properties: whatever arrives on the line, the connection yields events or raises
RemoteProtocolError (never anything else), never hangs, and never buffers more than one maximum
frame plus the last read."""

from __future__ import annotations

import hashlib
import itertools
import zlib
from collections.abc import Callable

from hypothesis import HealthCheck, assume, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from firmware_protocol import messages as m
from firmware_protocol._state import STABLE_STATES, TRANSITIONS, Role, State
from firmware_protocol.connection import (
    NEED_DATA,
    SUPPORTED_VERSIONS,
    Connection,
    EndOfChunk,
    Event,
    StaleFrame,
)
from firmware_protocol.errors import LocalProtocolError, RemoteProtocolError
from firmware_protocol.frames import (
    HEADER_SIZE,
    INITIAL_MAX_PAYLOAD,
    MAGIC,
    TRAILER_SIZE,
    Frame,
    FrameDecoder,
    FrameError,
    encode_frame,
)
from tests.protocol.helpers import (
    CameraApp,
    Link,
    buffered,
    drain,
    make_recording,
    split_frames,
)
from tests.protocol.protocol_strategies import any_message

DOCK, CAMERA = Role.DOCK, Role.CAMERA
EVENT_TYPES = (m.Message, EndOfChunk, FrameError, StaleFrame)
BIG = 1 << 24  # frame limit for building test frames, so oversized ones can be made too

NONCE = bytes(range(32))
HELLO = m.Hello(SUPPORTED_VERSIONS, 65536)
FUZZ_RID = bytes(range(16))
FUZZ_REC = make_recording(bytes(range(64)), 64, recording_id=FUZZ_RID)


def label(text: str) -> None:
    """Count an outcome in Hypothesis' statistics (pytest --hypothesis-show-statistics)."""
    if currently_in_test_context():
        event(text)


def frame_of(msg: m.Message, seq: int) -> bytes:
    return encode_frame(msg.TYPE, seq, msg.encode(), BIG)


def cut(data: bytes, sizes: list[int]) -> list[bytes]:
    """``data`` in reads of the given sizes, the rest in one final read."""
    pieces, pos = [], 0
    for size in sizes:
        pieces.append(data[pos : pos + size])
        pos += size
    return [*pieces, data[pos:]]


# -- the DOCK awaiting a chunk, and a CAMERA, set up cheaply -----------------------------------



def record_setup() -> list[tuple[m.Message, bytes]]:
    """HELLO and AUTH with a 4 KiB camera: each request and the camera's reply bytes."""
    link = Link(CameraApp([FUZZ_REC], max_payload=INITIAL_MAX_PAYLOAD))
    setup = []
    for req in (HELLO, m.AuthChallenge(NONCE)):
        link.request(req)
        setup.append((req, link.replies[-1]))
    return setup


SETUP = record_setup()
AWAITED_SEQ = 3


def dock_awaiting_chunk() -> Connection:
    """A DOCK in a stable READY session (4 KiB frames) that has just sent ReadChunk (seq 3)."""
    dock = Connection(DOCK, max_payload=65536)
    for req, reply in SETUP:
        dock.send(req)
        dock.receive_data(reply)
        drain(dock)
    assert dock.state is State.READY
    assert dock.send(m.ReadChunk(FUZZ_RID, 0))[4:6] == AWAITED_SEQ.to_bytes(2, "big")
    assert dock.state is State.AWAIT_CHUNK
    return dock


def camera(ready: bool) -> CameraApp:
    app = CameraApp([FUZZ_REC], max_payload=INITIAL_MAX_PAYLOAD)
    if ready:
        app.receive(frame_of(HELLO, 1) + frame_of(m.AuthChallenge(NONCE), 2))
        assert app.conn.state is State.READY
    return app


def feed_dock(dock: Connection, pieces: list[bytes],
              on_event: Callable[[State, Event], None] | None = None) -> bool:
    """Feed and drain; check the invariants. False once the dock raised RemoteProtocolError."""
    for piece in pieces:
        dock.receive_data(piece)
        assert buffered(dock) <= HEADER_SIZE + dock.max_payload + TRAILER_SIZE + len(piece)
        budget = 2 * buffered(dock) + 2  # every event consumes input: more is a hang
        while True:
            budget -= 1
            assert budget >= 0, "next_event() keeps returning events without consuming input"
            before = dock.state
            try:
                ev = dock.next_event()
            except RemoteProtocolError as exc:
                try:
                    dock.next_event()
                except RemoteProtocolError as again:
                    assert again is exc  # sticky
                else:
                    raise AssertionError("a RemoteProtocolError on the dock must be sticky")
                return False
            if ev is NEED_DATA:
                break
            assert isinstance(ev, EVENT_TYPES), ev
            if isinstance(ev, m.Message):
                assert (before, CAMERA, type(ev)) in TRANSITIONS
            if on_event is not None:
                on_event(before, ev)
        assert buffered(dock) < HEADER_SIZE + dock.max_payload + TRAILER_SIZE
    return True


def assert_usable(dock: Connection) -> None:
    """A dock that raised nothing can always move on: cancel if waiting, then ask again."""
    if dock.state not in STABLE_STATES:
        dock.cancel()
    follow_up = {State.HANDSHAKE: HELLO, State.IDENTIFIED: m.AuthChallenge(NONCE),
                 State.READY: m.GetStatus()}[dock.state]
    assert dock.send(follow_up)[:2] == MAGIC


def assert_failed(dock: Connection) -> None:
    """A dock that raised RemoteProtocolError refuses to send anything more."""
    try:
        dock.send(m.GetStatus())
    except LocalProtocolError:
        return
    raise AssertionError("a failed dock must refuse to send")


def assert_camera_restartable(app: CameraApp) -> None:
    """After anything at all, the camera answers a HELLO (a dock starting the session over).
    The dock repeats it until answered: a frame cut short at the end of the stream swallows
    the bytes after it until its declared length has arrived (at most one maximum frame)."""
    assert app.conn.state in STABLE_STATES
    hello = frame_of(HELLO, 0x5151)
    for _ in range((HEADER_SIZE + app.conn.max_payload + TRAILER_SIZE) // len(hello) + 2):
        reply = app.receive(hello)
        if reply:
            break
    assert split_frames(reply)[-1][3] == m.Identity.TYPE
    assert app.conn.state is State.IDENTIFIED


def feed_camera(app: CameraApp, pieces: list[bytes]) -> bytes:
    replies = b"".join(app.receive(piece) for piece in pieces)
    assert buffered(app.conn) < HEADER_SIZE + app.conn.max_payload + TRAILER_SIZE
    decoder = FrameDecoder(BIG)  # everything the camera says is a valid frame and message
    decoder.feed(replies)
    while (item := decoder.next()) is not None:
        assert isinstance(item, Frame), item
        m.decode_message(item.type, item.payload)
    assert decoder.buffered == 0
    return replies


# -- (a) arbitrary byte streams -------------------------------------------------------------------

SEQS = st.one_of(st.sampled_from([AWAITED_SEQ, AWAITED_SEQ, 2, 4, 0]), st.integers(0, 0xFFFF))
CHUNK_DATA = FUZZ_REC.data
CHUNK_REPLIES = [  # right answers to the awaited request, the data cut in two frames
    frame_of(FUZZ_REC.headers[0], AWAITED_SEQ),
    frame_of(m.ChunkData(0, CHUNK_DATA[:32]), AWAITED_SEQ),
    frame_of(m.ChunkData(32, CHUNK_DATA[32:]), AWAITED_SEQ),
    frame_of(m.ChunkData(0, CHUNK_DATA), AWAITED_SEQ),
    frame_of(m.Error(4, m.ReadChunk.TYPE), AWAITED_SEQ),
]


@st.composite
def whole_chunk_replies(draw: st.DrawFn) -> bytes:
    """The awaited chunk's header and data frames in order, maybe with noise between them."""
    frames = CHUNK_REPLIES[:3] if draw(st.booleans()) else [CHUNK_REPLIES[0], CHUNK_REPLIES[3]]
    return b"".join(f + draw(st.one_of(st.just(b""), noise)) for f in frames)


REQUESTS = [HELLO, m.AuthChallenge(NONCE), m.GetStatus(), m.TimeProbe(5), m.SetTime(6),
            m.ListRecordings(0, 3), m.ListRecordings(9, 1), m.ReadChunk(FUZZ_RID, 0),
            m.ReadChunk(FUZZ_RID, 1), m.ReadChunk(bytes(16), 0), m.GetSeal(FUZZ_RID),
            m.GetEventLog(0, 2), m.Release(FUZZ_RID), m.Release(bytes(16))]

noise = st.one_of(st.binary(max_size=32), st.lists(st.sampled_from(b"\xb7\xc3\x01\x00\xff"),
                                                   max_size=16).map(bytes))
random_frames = st.builds(lambda t, s, p: encode_frame(t, s, p, BIG),
                          st.integers(0, 0xFF), SEQS, st.binary(max_size=48))
message_frames = st.builds(frame_of, any_message, SEQS)
oversized_headers = st.builds(
    lambda s, n: encode_frame(0x0F, s, b"", BIG)[:6] + n.to_bytes(4, "big"), SEQS,
    st.integers(INITIAL_MAX_PAYLOAD + 1, 2**32 - 1),
).map(lambda head: head + zlib.crc32(head).to_bytes(4, "big"))


def streams(*valid: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """At most 512 bytes: raw bytes, or framed pieces (good, random, oversized) among noise."""
    segment = st.one_of(noise, random_frames, message_frames, oversized_headers, *valid)
    framed = st.lists(segment, max_size=10).map(lambda segs: b"".join(segs)[:512])
    return st.one_of(st.binary(max_size=512), framed)


READS = st.lists(st.integers(0, 64), max_size=12)


@settings(max_examples=10_000, deadline=None)
@given(data=streams(st.sampled_from(CHUNK_REPLIES), whole_chunk_replies()), reads=READS)
def test_dock_awaiting_a_chunk_survives_any_bytes(data: bytes, reads: list[int]) -> None:
    dock = dock_awaiting_chunk()
    assembled = bytearray()

    def check(before: State, ev: Event) -> None:
        if isinstance(ev, m.ChunkHeader):
            assert (ev.info.recording_id, ev.info.index) == (FUZZ_RID, 0)
        elif isinstance(ev, m.ChunkData):
            assembled.extend(ev.data)
        elif isinstance(ev, EndOfChunk):
            assert ev == EndOfChunk(FUZZ_RID, 0)
            assert bytes(assembled) == CHUNK_DATA
            label("chunk completed")
        label(f"event: {type(ev).__name__}")

    if feed_dock(dock, cut(data, reads), check):
        assert dock.state in (State.AWAIT_CHUNK, State.IN_CHUNK, State.READY)
        assert_usable(dock)
    else:
        label("RemoteProtocolError")
        assert_failed(dock)


@settings(max_examples=1_500, deadline=None)
@given(data=streams(st.builds(frame_of, st.sampled_from(REQUESTS), SEQS)),
       reads=READS, ready=st.booleans())
def test_camera_survives_any_bytes(data: bytes, reads: list[int], ready: bool) -> None:
    """The camera application answers what it can and sends Error for what its connection
    rejects; nothing else ever escapes, and every reply is a well-formed frame."""
    app = camera(ready)
    feed_camera(app, cut(data, reads))
    assert all(isinstance(ev, EVENT_TYPES) for ev in app.events)
    assert_camera_restartable(app)


# -- (b) mutated valid sessions -------------------------------------------------------------------

SESSION_REC = make_recording(bytes(range(250)), 100, recording_id=bytes([0xAB]) * 16)
SESSION_REQUESTS: list[m.Message] = [
    HELLO, m.AuthChallenge(NONCE), m.GetStatus(), m.TimeProbe(1_000), m.SetTime(2_000),
    m.ListRecordings(0, 5), *(m.ReadChunk(SESSION_REC.info.recording_id, i) for i in range(3)),
    m.GetSeal(SESSION_REC.info.recording_id), m.GetEventLog(0, 10),
    m.Release(SESSION_REC.info.recording_id),
]


def record_session() -> tuple[list[bytes], list[bytes]]:
    """A clean session: the dock's request frames and, per request, the camera's reply bytes,
    with chunk data re-cut into 40-byte frames so every chunk spans several frames."""
    link = Link(CameraApp([SESSION_REC], max_payload=INITIAL_MAX_PAYLOAD))
    replies = []
    for req in SESSION_REQUESTS:
        events = link.request(req)
        assert not any(isinstance(e, FrameError | StaleFrame) for e in events)
        reply = link.replies[-1]
        if isinstance(req, m.ReadChunk):
            header = split_frames(reply)[0]
            seq = int.from_bytes(header[4:6], "big")
            chunk = b"".join(bytes(e.data) for e in events if isinstance(e, m.ChunkData))
            reply = header + b"".join(frame_of(m.ChunkData(o, chunk[o : o + 40]), seq)
                                      for o in range(0, len(chunk), 40))
        replies.append(reply)
    assert link.dock.state is State.READY
    return link.sent, replies


SESSION_SENT, SESSION_REPLIES = record_session()


def payloads_of(streams_: list[bytes]) -> set[tuple[int, bytes]]:
    """(type, payload) of every frame in the streams, plus every splice of one frame's type
    with another's payload of the same length: lost bytes can join a header to another frame's
    body and pass both CRCs, a known weakness pinned down by
    test_frames.py::test_a_lost_run_splicing_two_frames_yields_no_frame. Anything else that
    comes out of a damaged stream would be a forgery the CRCs should have stopped."""
    frames = [(f[3], f[HEADER_SIZE:-TRAILER_SIZE]) for data in streams_
              for f in split_frames(data)]
    return {(kind, body) for kind, own in frames for _, body in frames if len(body) == len(own)}


ORIGINAL_REPLIES = payloads_of(SESSION_REPLIES)
ORIGINAL_REQUESTS = payloads_of(SESSION_SENT)

Mutation = tuple[str, int, int, bytes]


def mutations(parts: list[bytes]) -> st.SearchStrategy[list[Mutation]]:
    """A few edits at positions anywhere in the concatenated ``parts``; truncation is rarer."""
    kinds = st.sampled_from(["flip", "flip", "insert", "delete", "duplicate", "truncate"])
    starts = list(itertools.accumulate((len(p) for p in parts), initial=0))
    # pick the part first: a plain position would mostly land in the first few bytes
    position = st.sampled_from(range(len(parts))).flatmap(
        lambda i: st.integers(starts[i], starts[i + 1]))
    edit = st.tuples(kinds, position, st.integers(1, 255), st.binary(min_size=1, max_size=8))
    return st.lists(edit, min_size=1, max_size=4)



def mutate(parts: list[bytes], ops: list[Mutation]) -> list[bytes]:
    """Apply flips, insertions, deletions, duplicated runs (a retransmission) and a truncation
    to the concatenation of ``parts``; return it cut back where the parts' bounds moved to."""
    data = bytearray(b"".join(parts))
    bounds = [0]
    for part in parts:
        bounds.append(bounds[-1] + len(part))
    for kind, where, value, blob in ops:
        pos = where % (len(data) + 1)
        if kind == "flip" and data:
            data[where % len(data)] ^= value
        elif kind in ("insert", "duplicate"):
            piece = blob if kind == "insert" else bytes(data[pos : pos + value % 64])
            data[pos:pos] = piece
            bounds = [b + len(piece) if b > pos else b for b in bounds]
        elif kind == "delete":
            end = min(len(data), pos + value % 64)
            del data[pos:end]
            bounds = [b if b <= pos else max(pos, b - (end - pos)) for b in bounds]
        elif kind == "truncate":
            del data[pos:]
            bounds = [min(b, pos) for b in bounds]
    return [bytes(data[a:b]) for a, b in itertools.pairwise(bounds)]


def run_dock_session(replies: list[bytes], reads: list[int]) -> tuple[Connection, bool]:
    """Drive a dock through SESSION_REQUESTS, feeding ``replies[i]`` after request i. Like a
    real agent it cancels what went unanswered and skips what the state does not allow."""
    dock = Connection(DOCK, max_payload=65536)
    chunk: list[m.ChunkHeader | bytes] = []

    def check(before: State, ev: Event) -> None:
        if isinstance(ev, m.Message):  # CRCs let nothing forged or corrupted through
            assert (ev.TYPE, ev.encode()) in ORIGINAL_REPLIES, ev
        if isinstance(ev, m.ChunkHeader):
            chunk[:] = [ev]
        elif isinstance(ev, m.ChunkData):
            chunk.append(bytes(ev.data))
        elif isinstance(ev, EndOfChunk):
            header = chunk[0]
            assert isinstance(header, m.ChunkHeader)
            assert (ev.recording_id, ev.index) == (header.info.recording_id, header.info.index)
            data = b"".join(p for p in chunk[1:] if isinstance(p, bytes))
            assert hashlib.sha256(data).digest() == header.info.sha256

    for step, (req, reply) in enumerate(zip(SESSION_REQUESTS, replies, strict=True)):
        if dock.state not in STABLE_STATES:
            dock.cancel()  # the reply went missing: time out and move on
        if (dock.state, DOCK, type(req)) in TRANSITIONS:
            dock.send(req)
        if not feed_dock(dock, cut(reply, reads), check):
            label(f"RemoteProtocolError at step {step}")
            return dock, False
    label(f"session ended in {dock.state.value}")
    return dock, True


def test_unmutated_session_completes() -> None:
    dock, ok = run_dock_session(SESSION_REPLIES, [])
    assert ok and dock.state is State.READY and dock.outstanding is None
    app = camera(ready=False)
    replies = feed_camera(app, SESSION_SENT)
    assert all(isinstance(ev, m.Message) for ev in app.events) and not app.rejected
    assert replies  # the camera answered everything


@settings(max_examples=1_500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=mutations(SESSION_REPLIES), reads=READS)
def test_dock_survives_a_mutated_session(ops: list[Mutation], reads: list[int]) -> None:
    dock, ok = run_dock_session(mutate(SESSION_REPLIES, ops), reads)
    if ok:
        assert_usable(dock)
    else:
        assert_failed(dock)


@settings(max_examples=1_500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=mutations(SESSION_SENT), reads=READS)
def test_camera_survives_a_mutated_session(ops: list[Mutation], reads: list[int]) -> None:
    app = camera(ready=False)
    feed_camera(app, cut(b"".join(mutate(SESSION_SENT, ops)), reads))
    for ev in app.events:
        assert isinstance(ev, EVENT_TYPES)
        if isinstance(ev, m.Message):
            assert (ev.TYPE, ev.encode()) in ORIGINAL_REQUESTS, ev
    assert_camera_restartable(app)


# -- (c) the frame decoder on valid frames among garbage ------------------------------------------

DECODER_MAX = 256
valid_frames = st.builds(lambda t, s, p: Frame(t, s, p), st.integers(0, 0xFF),
                         st.integers(0, 0xFFFF), st.binary(max_size=64))


def encoded(f: Frame) -> bytes:
    return encode_frame(f.type, f.seq, f.payload, DECODER_MAX)


@st.composite
def frames_among_garbage(draw: st.DrawFn) -> tuple[bytes, list[Frame], list[Frame]]:
    """Valid frames, with garbage between them: noise, oversized headers, and truncated frames
    (any prefix of a frame). Returns the stream, the valid frames, and the truncated ones."""
    parts: list[bytes] = []
    good: list[Frame] = []
    cut_short: list[Frame] = []
    truncated: list[tuple[int, bytes]] = []  # where each truncated frame starts, whole
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["frame", "frame", "noise", "oversized", "truncated"]))
        if kind == "frame":
            f = draw(valid_frames)
            good.append(f)
            parts.append(encoded(f))
        elif kind == "noise":
            parts.append(draw(noise))
        elif kind == "oversized":
            head = MAGIC + bytes([1, 0x0F, 0, 1]) + (DECODER_MAX + 1).to_bytes(4, "big")
            parts.append(head + zlib.crc32(head).to_bytes(4, "big"))
        else:
            f = draw(valid_frames)
            data = encoded(f)
            cut = draw(st.integers(1, len(data) - 1))
            if cut == HEADER_SIZE and len(f.payload) == 10:
                # the next header would pass for this frame's body: a known weakness, see
                # test_frames.py::test_a_frame_cut_right_after_its_header_does_not_swallow_...
                cut += 1
            cut_short.append(f)
            truncated.append((sum(map(len, parts)), data))
            parts.append(data[:cut])
    stream = b"".join(parts)
    # A frame cut inside its trailer is whole after all when the bytes after it happen to be
    # the missing ones (1 in 256 for one byte): then it eats the next frame's start marker.
    assume(all(stream[at : at + len(whole)] != whole for at, whole in truncated))
    return stream, good, cut_short


@settings(max_examples=1_500, deadline=None)
@given(case=frames_among_garbage(), reads=READS)
def test_decoder_recovers_every_frame_not_overlapped_by_garbage(
    case: tuple[bytes, list[Frame], list[Frame]], reads: list[int]
) -> None:
    stream, good, cut_short = case
    # Enough zero bytes after the stream to settle any truncated frame still awaiting its body.
    stream += bytes(HEADER_SIZE + DECODER_MAX + TRAILER_SIZE)
    decoder = FrameDecoder(DECODER_MAX)
    frames: list[Frame] = []
    skipped = 0
    for piece in cut(stream, reads):
        decoder.feed(piece)
        while (item := decoder.next()) is not None:
            if isinstance(item, Frame):
                frames.append(item)
            else:
                skipped += item.skipped
    # every good frame, in order (a truncated frame that happens to be completed by the bytes
    # after it is an extra frame, and it can only be the frame it was cut from)
    it = iter(frames)
    assert all(any(f == g for f in it) for g in good), (frames, good)
    assert all(f in good or f in cut_short for f in frames)
    consumed = sum(len(encoded(f)) for f in frames)
    assert consumed + skipped + decoder.buffered == len(stream)  # every byte accounted for


def _decode_through(decoder: FrameDecoder, pieces: list[bytes], *, reuse: bool
                    ) -> tuple[list[tuple[int, int, bytes] | FrameError], int]:
    """Everything the decoder yields for ``pieces``. With ``reuse``, every piece is fed from one
    buffer that is overwritten as soon as ``next`` asked for more, as a transport reading into
    one preallocated buffer does. Frames are compared only at the end, so a payload that still
    pointed into that buffer would show up as changed."""
    buffer = bytearray(max((len(p) for p in pieces), default=0))
    got: list[Frame | FrameError] = []
    for piece in pieces:
        if reuse:
            buffer[: len(piece)] = piece
            decoder.feed(memoryview(buffer)[: len(piece)])
        else:
            decoder.feed(piece)
        while (item := decoder.next()) is not None:
            got.append(item)
        if reuse:
            buffer[:] = b"\xb7" * len(buffer)  # the next read lands here
    return ([(f.type, f.seq, bytes(f.payload)) if isinstance(f, Frame) else f for f in got],
            decoder.buffered)


@settings(max_examples=1_000, deadline=None)
@given(case=frames_among_garbage(), reads=READS, reuse=st.booleans())
def test_assembling_frames_in_place_changes_no_event(
    case: tuple[bytes, list[Frame], list[Frame]], reads: list[int], reuse: bool
) -> None:
    """A frame assembled in its own buffer (``direct_min``) decodes exactly as one buffered
    whole: same frames, same errors and skipped counts, same bytes left buffered, whatever the
    read sizes, even when the caller reuses its read buffer and the payload buffers it hands
    the decoder (``allocate``) are larger than the payload and not blank."""
    stream = case[0] + bytes(HEADER_SIZE + DECODER_MAX + TRAILER_SIZE)
    pieces = cut(stream, reads)
    reference = _decode_through(FrameDecoder(DECODER_MAX, direct_min=DECODER_MAX + 1), pieces,
                                reuse=False)
    decoder = FrameDecoder(DECODER_MAX, direct_min=1)
    if reuse:  # and payload buffers larger than asked for, holding an earlier frame's bytes
        decoder.allocate = lambda n: bytearray(b"\xb7\xc3" * (n // 2 + 5))
    in_place = _decode_through(decoder, pieces, reuse=reuse)
    assert in_place == reference
