"""Connection: a full DOCK/CAMERA session in memory, and the session state table."""

from __future__ import annotations

import hashlib
import random
import zlib

import pytest

from firmware_protocol import messages as m
from firmware_protocol._state import CANCEL, STABLE_STATES, TRANSITIONS, Role, State
from firmware_protocol.connection import (
    NEED_DATA,
    SUPPORTED_VERSIONS,
    Connection,
    EndOfChunk,
    StaleFrame,
)
from firmware_protocol.errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from firmware_protocol.frames import (
    HEADER_SIZE,
    INITIAL_MAX_PAYLOAD,
    TRAILER_SIZE,
    FrameError,
    FrameErrorKind,
    encode_frame,
)
from firmware_protocol.signing import ZERO_DIGEST, auth_message, verify_signature
from tests.protocol.helpers import (
    CAMERA_KEY,
    CAMERA_UID,
    FEED_MODES,
    NOW_US,
    CameraApp,
    Link,
    SignedRecording,
    drain,
    frame_seq,
    identity,
    make_recording,
    sample_log,
    split_frames,
)

DOCK, CAMERA = Role.DOCK, Role.CAMERA
ENROLLED = CAMERA_KEY.public_key()  # the key the dock holds for this camera
RID_BIG, RID_SMALL, RID_EMPTY = (bytes([i]) * 16 for i in (0xB1, 0xB2, 0xB3))
BIG_DATA = random.Random(7).randbytes(25_000)


def session_recordings() -> list[SignedRecording]:
    return [
        make_recording(BIG_DATA, 10_000, recording_id=RID_BIG),  # 3 chunks of 3 frames each
        make_recording(b"a short clip", 4096, recording_id=RID_SMALL),  # one 1-frame chunk
        make_recording(b"", 4096, recording_id=RID_EMPTY),  # nothing recorded
    ]


RECORDINGS = session_recordings()


# -- the full session ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", FEED_MODES)
def test_full_session(mode: str) -> None:
    """Everything a dock does with a camera, both byte streams delivered whole, cut at random
    points, or one byte at a time; the dock verifies every signature, hash and chain link."""
    camera = CameraApp(RECORDINGS, max_payload=INITIAL_MAX_PAYLOAD)  # a camera with 4 KiB frames
    link = Link(camera, mode, seed=FEED_MODES.index(mode))
    dock = link.dock

    # HELLO: the camera picks our version and lowers the frame size to its own.
    (ident,) = link.request(m.Hello(SUPPORTED_VERSIONS, 65536))
    assert isinstance(ident, m.Identity)
    assert (ident.version, ident.camera_uid, ident.max_payload) == (1, CAMERA_UID, 4096)
    assert dock.identity == ident and dock.state is State.IDENTIFIED
    assert dock.max_payload == camera.conn.max_payload == 4096

    # AUTH: a real Ed25519 signature over BWCAUTH1 + uid + nonce, made with the device key.
    nonce = random.Random(mode).randbytes(32)
    (resp,) = link.request(m.AuthChallenge(nonce))
    assert isinstance(resp, m.AuthResponse)
    assert verify_signature(ENROLLED, auth_message(ident.camera_uid, nonce), resp.signature)
    assert not verify_signature(ENROLLED, auth_message(ident.camera_uid, bytes(32)),
                                resp.signature)
    assert dock.state is State.READY

    (status,) = link.request(m.GetStatus())
    assert status == camera.status

    # Clock: the dock is 5 s behind the camera; the line takes 300 us round trip.
    t0 = NOW_US - 5_000_000
    (reply,) = link.request(m.TimeProbe(t0))
    assert isinstance(reply, m.TimeReply) and reply.t0_us == t0
    t3 = t0 + 300
    offset = ((reply.t1_us - t0) + (reply.t2_us - t3)) // 2
    rtt = (t3 - t0) - (reply.t2_us - reply.t1_us)
    assert (offset, rtt) == (5_000_000 - 130, 260)
    (time_set,) = link.request(m.SetTime(t3))
    assert time_set == m.TimeSet(NOW_US, t3)

    # Listing, two entries per page.
    infos: list[m.RecordingInfo] = []
    pages = 0
    while True:
        (page,) = link.request(m.ListRecordings(len(infos), 2))
        assert isinstance(page, m.RecordingList) and page.start == len(infos)
        infos += page.entries
        pages += 1
        if len(infos) >= page.total:
            break
    assert pages == 2
    assert infos == [r.info for r in RECORDINGS]

    # Every chunk of every recording, then its seal.
    for info, rec in zip(infos, RECORDINGS, strict=True):
        received = bytearray()
        prev = ZERO_DIGEST
        for index in range(info.chunk_count):
            header, *pieces, end = link.request(m.ReadChunk(info.recording_id, index))
            assert isinstance(header, m.ChunkHeader)
            assert end == EndOfChunk(info.recording_id, index)
            assert all(isinstance(p, m.ChunkData) for p in pieces)
            chunk = b"".join(bytes(p.data) for p in pieces if isinstance(p, m.ChunkData))
            assert len(pieces) == -(-len(chunk) // dock.chunk_data_max)
            cm = header.info
            assert verify_signature(ENROLLED, header.chunk_message, header.signature)
            assert (cm.camera_uid, cm.recording_id, cm.index) == (CAMERA_UID, info.recording_id,
                                                                  index)
            assert (cm.offset, cm.size) == (len(received), len(chunk))
            assert hashlib.sha256(chunk).digest() == cm.sha256
            assert cm.prev == prev
            prev = cm.digest()
            received += chunk
        (seal,) = link.request(m.GetSeal(info.recording_id))
        assert isinstance(seal, m.Seal)
        assert verify_signature(ENROLLED, seal.seal_message, seal.signature)
        s = seal.info
        assert (s.camera_uid, s.recording_id) == (CAMERA_UID, info.recording_id)
        assert (s.chunk_count, s.total_size) == (info.chunk_count, len(received))
        assert s.sha256 == hashlib.sha256(received).digest()
        assert s.last_chunk_digest == prev
        assert (s.started_ms, s.ended_ms, s.media) == (info.started_ms, info.ended_ms, info.media)
        assert bytes(received) == rec.data

    # The camera's event log, two entries per page (it now also holds the CLOCK_SET entry).
    entries: list[m.LogEntry] = []
    since = 0
    while True:
        (log_page,) = link.request(m.GetEventLog(since, 2))
        assert isinstance(log_page, m.EventLog)
        entries += log_page.entries
        if not log_page.more:
            break
        since = log_page.entries[-1].seq + 1
    assert entries == camera.log and len(entries) == 6
    assert entries[-1].kind is m.EventKind.CLOCK_SET

    for info in infos:
        assert link.request(m.Release(info.recording_id)) == [
            m.Released(info.recording_id, info.size)]

    assert dock.state is camera.conn.state is State.READY
    assert dock.outstanding is None and camera.conn.outstanding is None
    assert not camera.rejected
    assert all(isinstance(ev, m.Message) for ev in camera.events)


# -- driving both ends into any state ---------------------------------------------------------

HELLO = m.Hello(SUPPORTED_VERSIONS, 65536)
IDENT = identity(65536)
NONCE = bytes(range(32))
AUTH = m.AuthResponse(CAMERA_KEY.sign(auth_message(CAMERA_UID, NONCE)))
REC = make_recording(bytes(range(256)) * 40, 4000)  # 10 240 bytes in 3 chunks
RID = REC.info.recording_id

REQUEST_FOR = {
    State.AWAIT_STATUS: m.GetStatus(),
    State.AWAIT_TIME: m.TimeProbe(123),
    State.AWAIT_TIME_SET: m.SetTime(456),
    State.AWAIT_LIST: m.ListRecordings(0, 10),
    State.AWAIT_CHUNK: m.ReadChunk(RID, 1),
    State.AWAIT_SEAL: m.GetSeal(RID),
    State.AWAIT_LOG: m.GetEventLog(0, 10),
    State.AWAIT_RELEASE: m.Release(RID),
}

# One valid instance of every message, each a correct answer to the request above.
SAMPLES: dict[type[m.Message], m.Message] = {
    m.Hello: HELLO,
    m.Identity: IDENT,
    m.AuthChallenge: m.AuthChallenge(NONCE),
    m.AuthResponse: AUTH,
    m.GetStatus: m.GetStatus(),
    m.Status: m.Status(50, False, 100, 40, 1000, True, (), 5, False),
    m.TimeProbe: m.TimeProbe(123),
    m.TimeReply: m.TimeReply(123, 1000, 1001),
    m.SetTime: m.SetTime(456),
    m.TimeSet: m.TimeSet(100, 456),
    m.ListRecordings: m.ListRecordings(0, 10),
    m.RecordingList: m.RecordingList(1, 0, (REC.info,)),
    m.ReadChunk: m.ReadChunk(RID, 1),
    m.ChunkHeader: REC.headers[1],
    m.ChunkData: m.ChunkData(0, REC.data[4000:4100]),
    m.GetSeal: m.GetSeal(RID),
    m.Seal: REC.seal,
    m.GetEventLog: m.GetEventLog(0, 10),
    m.EventLog: m.EventLog(tuple(sample_log()), False),
    m.Release: m.Release(RID),
    m.Released: m.Released(RID, len(REC.data)),
    m.Error: m.Error(ErrorCode.BUSY, 0, "busy"),
}
assert set(SAMPLES) == set(m.MESSAGE_TYPES.values())


class Pair:
    """A DOCK and a CAMERA connection passing frames to each other directly."""

    def __init__(self) -> None:
        self.dock = Connection(DOCK, max_payload=65536)
        self.cam = Connection(CAMERA, max_payload=65536)
        self.request_frame = b""  # the dock's last request, as sent

    def conn(self, role: Role) -> Connection:
        return self.dock if role is DOCK else self.cam

    def dock_says(self, msg: m.Message) -> None:
        self.request_frame = self.dock.send(msg)
        self.cam.receive_data(self.request_frame)
        assert drain(self.cam) == [msg]

    def camera_says(self, msg: m.Message) -> None:
        self.dock.receive_data(self.cam.send(msg))
        assert drain(self.dock) == [msg]


def pair_in(state: State) -> Pair:
    """Both ends of a fresh pair, brought into ``state`` by a legal exchange."""
    p = Pair()
    script: list[tuple[State, Role, m.Message]] = [
        (State.AWAIT_IDENTITY, DOCK, HELLO),
        (State.IDENTIFIED, CAMERA, IDENT),
        (State.AWAIT_AUTH, DOCK, m.AuthChallenge(NONCE)),
        (State.READY, CAMERA, AUTH),
    ]
    if state in REQUEST_FOR:
        script.append((state, DOCK, REQUEST_FOR[state]))
    elif state is State.IN_CHUNK:
        script += [(State.AWAIT_CHUNK, DOCK, REQUEST_FOR[State.AWAIT_CHUNK]),
                   (State.IN_CHUNK, CAMERA, REC.headers[1])]
    for reached, sender, msg in [(State.HANDSHAKE, DOCK, None), *script]:
        if msg is not None:
            (p.dock_says if sender is DOCK else p.camera_says)(msg)
        assert p.dock.state is p.cam.state is reached
        if reached is state:
            return p
    raise AssertionError(f"no script reaches {state}")


def frame_to(conn: Connection, msg: m.Message, seq: int) -> bytes:
    return encode_frame(msg.TYPE, seq, msg.encode(), conn.max_payload)


STATES = list(State)
MESSAGE_CLASSES = list(m.MESSAGE_TYPES.values())
LEGAL_SENDS = [(s, r, c) for (s, r, c) in TRANSITIONS if isinstance(c, type)]


def test_every_state_is_reachable_by_both_ends() -> None:
    for state in STATES:
        assert pair_in(state).dock.state is state


# -- sending ------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [DOCK, CAMERA], ids=lambda r: r.value)
@pytest.mark.parametrize("state", STATES, ids=lambda s: s.value)
def test_illegal_sends_raise_local_protocol_error(state: State, role: Role) -> None:
    p = pair_in(state)
    conn = p.conn(role)
    illegal = [cls for cls in MESSAGE_CLASSES if (state, role, cls) not in TRANSITIONS]
    assert illegal
    for cls in illegal:
        with pytest.raises(LocalProtocolError) as info:
            conn.send(SAMPLES[cls])
        assert info.value.code is ErrorCode.BAD_STATE, cls
        assert conn.state is state  # a refused send changes nothing
    assert p.dock.state is p.cam.state is state


@pytest.mark.parametrize(
    ("state", "role", "cls"), LEGAL_SENDS,
    ids=[f"{s.value}-{r.value}-{getattr(c, '__name__', c)}" for s, r, c in LEGAL_SENDS],
)
def test_legal_sends_move_both_ends_as_the_table_says(
    state: State, role: Role, cls: type[m.Message]
) -> None:
    p = pair_in(state)
    sender, receiver = (p.dock, p.cam) if role is DOCK else (p.cam, p.dock)
    frame = sender.send(SAMPLES[cls])
    expected = TRANSITIONS[(state, role, cls)]
    assert sender.state is expected
    receiver.receive_data(frame)
    events = drain(receiver)
    if receiver is p.dock and state in STABLE_STATES:
        assert events == [StaleFrame(cls.TYPE, frame_seq(frame))]  # nothing was asked
    else:
        assert events == [SAMPLES[cls]]
    assert receiver.state is expected


@pytest.mark.parametrize("state", STATES, ids=lambda s: s.value)
def test_cancel_follows_the_table(state: State) -> None:
    p = pair_in(state)
    with pytest.raises(LocalProtocolError):
        p.cam.cancel()  # only the dock cancels
    target = TRANSITIONS.get((state, DOCK, CANCEL))
    if target is None:
        with pytest.raises(LocalProtocolError):
            p.dock.cancel()
        assert p.dock.state is state
    else:
        p.dock.cancel()
        assert p.dock.state is target and p.dock.outstanding is None


# -- receiving what the state does not allow -----------------------------------------------------

WAITING_STATES = [s for s in STATES if s not in STABLE_STATES]


@pytest.mark.parametrize("state", WAITING_STATES, ids=lambda s: s.value)
def test_illegal_receive_on_the_dock_is_remote_and_sticky(state: State) -> None:
    illegal = [cls for cls in MESSAGE_CLASSES if (state, CAMERA, cls) not in TRANSITIONS]
    assert illegal
    for cls in illegal:
        p = pair_in(state)
        seq = frame_seq(p.request_frame)  # right sequence number, wrong message
        p.dock.receive_data(frame_to(p.dock, SAMPLES[cls], seq))
        with pytest.raises(RemoteProtocolError) as first:
            p.dock.next_event()
        assert first.value.code is ErrorCode.BAD_STATE, cls
        with pytest.raises(RemoteProtocolError) as again:
            p.dock.next_event()
        assert again.value is first.value  # sticky: the camera gets no second chance
        with pytest.raises(LocalProtocolError):
            p.dock.send(m.GetStatus())
        with pytest.raises(LocalProtocolError):
            p.dock.send(SAMPLES[cls])


@pytest.mark.parametrize("state", sorted(STABLE_STATES, key=STATES.index), ids=lambda s: s.value)
def test_dock_with_nothing_outstanding_reports_every_frame_as_stale(state: State) -> None:
    p = pair_in(state)
    for cls in MESSAGE_CLASSES:
        for seq in (0, 1, 2, 0xFFFF):
            p.dock.receive_data(frame_to(p.dock, SAMPLES[cls], seq))
            assert drain(p.dock) == [StaleFrame(cls.TYPE, seq)]
    assert p.dock.state is state


CONTINUE_WITH = {  # a stable state -> the next legal request and the camera's answer
    State.HANDSHAKE: (HELLO, IDENT, State.IDENTIFIED),
    State.IDENTIFIED: (m.AuthChallenge(NONCE), AUTH, State.READY),
    State.READY: (m.GetStatus(), SAMPLES[m.Status], State.READY),
}


def camera_rejects_then_continues(p: Pair, bad_frame: bytes, code: ErrorCode) -> None:
    state = p.cam.state
    p.cam.receive_data(bad_frame)
    with pytest.raises(RemoteProtocolError) as info:
        p.cam.next_event()
    assert info.value.code is code
    assert p.cam.next_event() is NEED_DATA  # not sticky on the camera
    error_frame = p.cam.send(m.Error(info.value.code, bad_frame[3], str(info.value)))
    assert frame_seq(error_frame) == frame_seq(bad_frame)  # the reply echoes the bad request
    stable = TRANSITIONS[(state, CAMERA, m.Error)]
    assert p.cam.state is stable
    request, answer, after = CONTINUE_WITH[stable]
    p.cam.receive_data(frame_to(p.cam, request, 0x4343))
    assert drain(p.cam) == [request]
    assert frame_seq(p.cam.send(answer)) == 0x4343
    assert p.cam.state is after


@pytest.mark.parametrize("state", STATES, ids=lambda s: s.value)
def test_illegal_request_on_the_camera_is_answered_with_error_and_the_camera_continues(
    state: State,
) -> None:
    illegal = [cls for cls in MESSAGE_CLASSES if (state, DOCK, cls) not in TRANSITIONS]
    assert illegal
    for cls in illegal:
        p = pair_in(state)
        camera_rejects_then_continues(p, frame_to(p.cam, SAMPLES[cls], 0x4242),
                                      ErrorCode.BAD_STATE)


@pytest.mark.parametrize(
    ("msg_type", "payload", "code"),
    [(0x20, b"", ErrorCode.UNKNOWN_MESSAGE), (m.ReadChunk.TYPE, bytes(19), ErrorCode.MALFORMED),
     (m.Hello.TYPE, bytes.fromhex("00" "00001000"), ErrorCode.MALFORMED),
     (m.GetStatus.TYPE, b"\x00", ErrorCode.MALFORMED)],
    ids=["unknown type", "short ReadChunk", "Hello without versions", "GetStatus with a byte"],
)
@pytest.mark.parametrize("state", sorted(STABLE_STATES, key=STATES.index), ids=lambda s: s.value)
def test_undecodable_request_on_the_camera_is_answered_with_error(
    state: State, msg_type: int, payload: bytes, code: ErrorCode
) -> None:
    p = pair_in(state)
    camera_rejects_then_continues(p, encode_frame(msg_type, 0x4242, payload, 4096), code)


# -- replies that do not match the request --------------------------------------------------------

OTHER_REC = make_recording(REC.data, 4000, recording_id=bytes(16))
OTHER_CAMERA_REC = make_recording(REC.data, 4000, uid=bytes(16))

MISMATCHED = [
    # (state the dock is in, reply, expected code)
    (State.AWAIT_IDENTITY, m.Identity(2, 65536, CAMERA_UID, IDENT.public_key, "m", "f", "s"),
     ErrorCode.VERSION_UNSUPPORTED),
    (State.AWAIT_IDENTITY, identity(65537), ErrorCode.MALFORMED),
    (State.AWAIT_CHUNK, REC.headers[2], ErrorCode.SEQUENCE),  # wrong index
    (State.AWAIT_CHUNK, OTHER_REC.headers[1], ErrorCode.SEQUENCE),  # wrong recording
    (State.AWAIT_CHUNK, OTHER_CAMERA_REC.headers[1], ErrorCode.SEQUENCE),  # wrong camera
    (State.IN_CHUNK, m.ChunkData(1, REC.data[4001:4100]), ErrorCode.SEQUENCE),  # wrong offset
    (State.IN_CHUNK, m.ChunkData(0, REC.data[4000:8001]), ErrorCode.SEQUENCE),  # past the size
    (State.AWAIT_SEAL, OTHER_REC.seal, ErrorCode.SEQUENCE),
    (State.AWAIT_RELEASE, m.Released(bytes(16), 1), ErrorCode.SEQUENCE),
    (State.AWAIT_TIME, m.TimeReply(124, 1, 2), ErrorCode.SEQUENCE),
    (State.AWAIT_LIST, m.RecordingList(2, 1, (REC.info,)), ErrorCode.MALFORMED),  # wrong start
    (State.AWAIT_LIST, m.RecordingList(11, 0, (REC.info,) * 11), ErrorCode.MALFORMED),  # > 10
    (State.AWAIT_LOG, m.EventLog(tuple(sample_log(11)), True), ErrorCode.MALFORMED),  # > 10
]


@pytest.mark.parametrize(("state", "reply", "code"), MISMATCHED,
                         ids=[f"{s.value}-{i}" for i, (s, _, _) in enumerate(MISMATCHED)])
def test_reply_that_does_not_match_the_request_is_remote_and_sticky(
    state: State, reply: m.Message, code: ErrorCode
) -> None:
    p = pair_in(state)
    p.dock.receive_data(frame_to(p.dock, reply, frame_seq(p.request_frame)))
    with pytest.raises(RemoteProtocolError) as info:
        drain(p.dock)
    assert info.value.code is code
    with pytest.raises(RemoteProtocolError):
        p.dock.next_event()


def test_event_log_entry_before_since_is_remote() -> None:
    p = pair_in(State.READY)
    p.dock_says(m.GetEventLog(3, 10))
    p.dock.receive_data(frame_to(p.dock, m.EventLog(tuple(sample_log(4)), False),
                                 frame_seq(p.request_frame)))
    with pytest.raises(RemoteProtocolError):
        drain(p.dock)


def test_chunk_data_after_a_complete_chunk_is_stale() -> None:
    p = pair_in(State.IN_CHUNK)
    last = m.ChunkData(0, REC.data[4000:8000])
    p.dock.receive_data(p.cam.send(last))
    assert drain(p.dock) == [last, EndOfChunk(RID, 1)]
    assert p.dock.state is p.cam.state is State.READY
    p.dock.receive_data(frame_to(p.dock, m.ChunkData(4000, b"x"), frame_seq(p.request_frame)))
    assert drain(p.dock) == [StaleFrame(m.ChunkData.TYPE, frame_seq(p.request_frame))]


def test_identity_is_checked_by_the_camera_before_sending() -> None:
    p = pair_in(State.AWAIT_IDENTITY)
    for bad in (m.Identity(2, 65536, CAMERA_UID, IDENT.public_key, "m", "f", "s"),
                identity(65537)):
        with pytest.raises(LocalProtocolError):
            p.cam.send(bad)
        assert p.cam.state is State.AWAIT_IDENTITY


# -- cancel, stale and damaged replies -------------------------------------------------------------


def test_late_reply_after_cancel_is_stale_and_the_next_request_works() -> None:
    p = pair_in(State.READY)
    p.dock_says(m.GetStatus())
    late = p.cam.send(SAMPLES[m.Status])
    p.dock.cancel()
    assert p.dock.state is State.READY and p.dock.outstanding is None
    p.dock_says(m.TimeProbe(123))
    p.dock.receive_data(late + p.cam.send(SAMPLES[m.TimeReply]))
    assert drain(p.dock) == [StaleFrame(m.Status.TYPE, frame_seq(late)), SAMPLES[m.TimeReply]]
    assert p.dock.state is State.READY


def test_cancel_mid_chunk_makes_the_rest_of_the_chunk_stale() -> None:
    p = pair_in(State.AWAIT_CHUNK)
    header, *data_frames = p.cam.send_chunk(REC.headers[1], REC.data[4000:8000])
    assert len(data_frames) == 1
    p.dock.receive_data(header)
    assert drain(p.dock) == [REC.headers[1]]
    p.dock.cancel()
    assert p.dock.state is State.READY
    p.dock.receive_data(data_frames[0])
    assert drain(p.dock) == [StaleFrame(m.ChunkData.TYPE, frame_seq(header))]
    p.dock_says(m.GetSeal(RID))
    p.camera_says(REC.seal)


def test_cancel_during_handshake_and_auth_makes_the_late_reply_stale() -> None:
    p = pair_in(State.AWAIT_IDENTITY)
    late = p.cam.send(IDENT)
    p.dock.cancel()
    assert p.dock.state is State.HANDSHAKE
    p.dock.receive_data(late)
    assert drain(p.dock) == [StaleFrame(m.Identity.TYPE, 1)]
    assert p.dock.identity is None and p.dock.max_payload == INITIAL_MAX_PAYLOAD
    p = pair_in(State.AWAIT_AUTH)
    late = p.cam.send(AUTH)
    p.dock.cancel()
    assert p.dock.state is State.IDENTIFIED
    p.dock.receive_data(late)
    assert drain(p.dock) == [StaleFrame(m.AuthResponse.TYPE, 2)]


@pytest.mark.parametrize("lost", ["identity", "auth-response"])
def test_handshake_retry_after_a_lost_reply_succeeds(lost: str) -> None:
    """The camera's IDENTITY (or AUTH response) is lost on the line. The dock times out,
    cancels and retries, as the table's CANCEL transitions for AWAIT_IDENTITY/AWAIT_AUTH
    intend; the camera, which did answer, must accept the retry or the session is stuck."""
    link = Link(CameraApp())
    if lost == "identity":
        assert link.camera.receive(link.dock.send(HELLO))  # the reply never reaches the dock
        link.dock.cancel()
        assert link.request(HELLO) == [IDENT]
        assert link.dock.state is State.IDENTIFIED
    else:
        link.request(HELLO)
        assert link.camera.receive(link.dock.send(m.AuthChallenge(NONCE)))  # lost
        link.dock.cancel()
        assert link.request(m.AuthChallenge(NONCE)) == [AUTH]
        assert link.dock.state is State.READY
    assert link.camera.conn.state is link.dock.state


BIG_REC = make_recording(random.Random(3).randbytes(30_000), 10_000, recording_id=RID_BIG)


def chunk_link() -> tuple[Link, list[bytes]]:
    """A READY link with 4 KiB frames, the dock awaiting chunk 1 of BIG_REC; and the camera's
    reply frames (a header and three data frames), not yet delivered."""
    link = Link(CameraApp([BIG_REC], max_payload=INITIAL_MAX_PAYLOAD))
    link.handshake()
    reply = link.camera.receive(link.dock.send(m.ReadChunk(RID_BIG, 1)))
    frames = split_frames(reply)
    assert [f[3] for f in frames] == [m.ChunkHeader.TYPE] + [m.ChunkData.TYPE] * 3
    return link, frames


def corrupt(frame: bytes, how: str) -> bytes:
    data = bytearray(frame)
    if how == "payload":
        data[HEADER_SIZE + 10] ^= 0x01  # -> BAD_CRC
    elif how == "trailer":
        data[-1] ^= 0x80  # -> BAD_CRC
    elif how == "header":
        data[5] ^= 0x01  # the sequence number -> BAD_HEADER
    elif how == "too-large":
        length = (INITIAL_MAX_PAYLOAD + 1).to_bytes(4, "big")
        head = bytes(data[:6]) + length
        data[:HEADER_SIZE] = head + zlib.crc32(head).to_bytes(4, "big")  # -> TOO_LARGE
    elif how == "truncated":
        del data[-7:]  # -> BAD_CRC once later bytes fill the declared length
    return bytes(data)


def retry_succeeds(link: Link) -> None:
    link.dock.cancel()
    assert link.dock.state is State.READY
    events = link.request(m.ReadChunk(RID_BIG, 1))
    assert events[0] == BIG_REC.headers[1] and events[-1] == EndOfChunk(RID_BIG, 1)
    data = b"".join(bytes(e.data) for e in events if isinstance(e, m.ChunkData))
    assert data == BIG_REC.data[10_000:20_000]
    assert link.dock.state is State.READY


@pytest.mark.parametrize("how", ["payload", "trailer", "header", "too-large", "truncated"])
@pytest.mark.parametrize("damaged", [0, 1, 2], ids=["header-frame", "data-frame-1", "data-frame-2"])
def test_lossy_frame_error_mid_chunk_marks_the_request_damaged(damaged: int, how: str) -> None:
    link, frames = chunk_link()
    frames[damaged] = corrupt(frames[damaged], how)
    events = link.deliver(b"".join(frames))
    lossy = [e for e in events
             if isinstance(e, FrameError) and e.kind is not FrameErrorKind.GARBAGE]
    assert lossy, events
    first_lossy = events.index(lossy[0])
    delivered, after = events[:first_lossy], events[first_lossy:]
    assert delivered == [m.decode_message(f[3], f[HEADER_SIZE:-TRAILER_SIZE])
                         for f in frames[:damaged]]
    stale = [e for e in after if not isinstance(e, FrameError)]
    assert stale == [StaleFrame(f[3], frame_seq(f)) for f in frames[damaged + 1 :]]
    assert link.dock.state is (State.AWAIT_CHUNK if damaged == 0 else State.IN_CHUNK)
    retry_succeeds(link)


@pytest.mark.parametrize("how", ["payload", "truncated"])
def test_damaged_last_frame_of_a_chunk_then_retry_succeeds(how: str) -> None:
    """The last data frame is damaged: no EndOfChunk comes, the dock times out, cancels and
    retries. A truncated last frame is only resolved by the retry's own bytes."""
    link, frames = chunk_link()
    frames[-1] = corrupt(frames[-1], how)
    events = link.deliver(b"".join(frames))
    assert not any(isinstance(e, EndOfChunk) for e in events)
    assert link.dock.state is State.IN_CHUNK
    retry_succeeds(link)


@pytest.mark.parametrize(("how", "retry_damaged"), [("payload", False), ("header", True)])
def test_lossy_error_damages_the_request_its_header_names(how: str, retry_damaged: bool) -> None:
    """The dock cancels a chunk transfer and retries; the old reply's remaining frames arrive
    late, one of them corrupted. A BAD_CRC still names the old sequence number and leaves the
    retry intact; a BAD_HEADER names none, so the retry must be treated as damaged."""
    link, frames = chunk_link()
    link.dock.receive_data(frames[0])
    assert drain(link.dock) == [BIG_REC.headers[1]]
    link.dock.cancel()
    old_seq = frame_seq(frames[0])
    fresh = link.camera.receive(link.dock.send(m.ReadChunk(RID_BIG, 1)))
    late = corrupt(frames[1], how) + frames[2] + frames[3]
    events = link.deliver(late + fresh)
    errors = [e for e in events
              if isinstance(e, FrameError) and e.kind is not FrameErrorKind.GARBAGE]
    assert [e.seq for e in errors] == [None if retry_damaged else old_seq]
    assert StaleFrame(m.ChunkData.TYPE, old_seq) in events
    completed = EndOfChunk(RID_BIG, 1) in events
    assert completed is not retry_damaged
    if retry_damaged:
        retry_succeeds(link)


@pytest.mark.parametrize("marker_byte", [0, 1])
@pytest.mark.parametrize("damaged", [0, 1, 2], ids=["header-frame", "data-frame-1", "data-frame-2"])
def test_corrupted_start_marker_mid_chunk_is_recoverable(damaged: int, marker_byte: int) -> None:
    """A flipped bit in a frame's start marker loses that frame just as surely as one in its
    CRC; the dock must treat it as damage (retry), not as a protocol violation."""
    link, frames = chunk_link()
    bad = bytearray(frames[damaged])
    bad[marker_byte] ^= 0x01
    frames[damaged] = bytes(bad)
    events = link.deliver(b"".join(frames))  # must not raise RemoteProtocolError
    assert not any(isinstance(e, EndOfChunk) for e in events)
    retry_succeeds(link)


def test_every_single_byte_corruption_of_a_chunk_reply_is_survivable() -> None:
    """Flip one byte anywhere in a header frame and the first data frame (outside the start
    markers, see the test above): the dock completes the chunk or reports the loss, never
    raises, and a retry after cancel gets the chunk."""
    _, frames = chunk_link()
    positions = [(k, i) for k in (0, 1) for i in range(2, len(frames[k]))
                 if k == 0 or i < 40 or i > len(frames[k]) - 20]
    for k, i in positions:
        link, frames = chunk_link()
        bad = bytearray(frames[k])
        bad[i] ^= 0x10
        frames[k] = bytes(bad)
        events = link.deliver(b"".join(frames))
        assert not any(isinstance(e, EndOfChunk) for e in events), (k, i)
        retry_succeeds(link)


# -- frame size negotiation and buffering -----------------------------------------------------


def test_negotiated_max_payload_applies_to_every_later_frame() -> None:
    camera = CameraApp([make_recording(bytes(range(250)) * 60, 15_000, recording_id=RID_BIG)],
                       max_payload=6000)
    link = Link(camera)
    dock = link.dock
    assert dock.max_payload == camera.conn.max_payload == INITIAL_MAX_PAYLOAD
    dock.receive_data(encode_frame(0x0F, 9, bytes(4097), 4097))
    first, *rest = drain(dock)
    assert first == FrameError(FrameErrorKind.TOO_LARGE, HEADER_SIZE, "length 4097 > 4096", 9)
    assert rest and all(isinstance(e, FrameError) for e in rest)  # the body, skipped
    (ident,) = link.request(m.Hello(SUPPORTED_VERSIONS, 8192))
    assert isinstance(ident, m.Identity) and ident.max_payload == 6000
    assert dock.max_payload == camera.conn.max_payload == 6000
    assert dock.chunk_data_max == camera.conn.chunk_data_max == 5996
    link.request(m.AuthChallenge(NONCE))
    frame = dock.send(m.ReadChunk(RID_BIG, 0))
    frames = split_frames(camera.receive(frame))
    lengths = [len(f) - HEADER_SIZE - TRAILER_SIZE for f in frames]
    assert lengths == [184, 6000, 6000, 15_000 - 2 * 5996 + 4]
    events = link.deliver(b"".join(frames))
    assert events[-1] == EndOfChunk(RID_BIG, 0)
    dock.receive_data(encode_frame(0x0F, 9, bytes(6001), 6001))
    assert drain(dock)[0] == FrameError(FrameErrorKind.TOO_LARGE, HEADER_SIZE,
                                        "length 6001 > 6000", 9)
    dock.receive_data(encode_frame(0x0F, 9, bytes(6000), 6000))
    assert drain(dock) == [StaleFrame(0x0F, 9)]


def test_refused_chunk_data_leaves_the_chunk_untouched() -> None:
    """A ChunkData refused for its size must not advance the camera's chunk offset."""
    link = Link(CameraApp([BIG_REC], max_payload=INITIAL_MAX_PAYLOAD))
    link.handshake()
    cam = link.camera.conn
    cam.receive_data(link.dock.send(m.ReadChunk(RID_BIG, 1)))
    assert drain(cam) == [m.ReadChunk(RID_BIG, 1)]
    frames = [cam.send(BIG_REC.headers[1])]
    chunk = BIG_REC.data[10_000:20_000]
    assert cam.chunk_data_max == 4092
    with pytest.raises(LocalProtocolError) as info:
        cam.send(m.ChunkData(0, chunk[:4093]))  # one byte more than a 4 KiB frame holds
    assert info.value.code is ErrorCode.FRAME_TOO_LARGE
    assert cam.state is State.IN_CHUNK
    frames += [cam.send(m.ChunkData(off, chunk[off : off + 4000]))
               for off in range(0, 10_000, 4000)]
    assert cam.state is State.READY
    events = link.deliver(b"".join(frames))
    assert events[-1] == EndOfChunk(RID_BIG, 1)


def test_send_chunk_refuses_data_of_another_size() -> None:
    p = pair_in(State.AWAIT_CHUNK)
    with pytest.raises(LocalProtocolError):
        p.cam.send_chunk(REC.headers[1], REC.data[4000:7999])
    assert p.cam.state is State.AWAIT_CHUNK


def test_receive_data_without_draining_raises() -> None:
    p = pair_in(State.READY)
    limit = HEADER_SIZE + p.dock.max_payload + TRAILER_SIZE
    small = frame_to(p.dock, m.GetStatus(), 7)
    for _ in range(10):  # less than one maximum frame may pile up
        p.dock.receive_data(small)
    p.dock.receive_data(bytes(limit))  # one large read is accepted...
    with pytest.raises(LocalProtocolError) as info:
        p.dock.receive_data(small)  # ...but not another before draining
    assert info.value.code is ErrorCode.BAD_STATE
    events = drain(p.dock)
    assert events[:10] == [StaleFrame(m.GetStatus.TYPE, 7)] * 10
    p.dock.receive_data(small)
    assert drain(p.dock) == [StaleFrame(m.GetStatus.TYPE, 7)]


def test_sequence_numbers_run_1_to_65535_and_wrap_past_0() -> None:
    p = pair_in(State.READY)  # HELLO was 1, AUTH 2
    seqs = []
    for _ in range(65_536):
        seqs.append(frame_seq(p.dock.send(m.GetStatus())))
        p.dock.cancel()
    assert seqs[:3] == [3, 4, 5]
    assert seqs[65_532:65_536] == [65_535, 1, 2, 3]
    assert 0 not in seqs
    p.dock_says(m.GetStatus())
    p.camera_says(SAMPLES[m.Status])
