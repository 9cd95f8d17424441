"""CameraSession and Camera in memory, wired to a DOCK Connection: no pty, no process."""

from __future__ import annotations

import hashlib
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from camsim.boot import CameraConfig, boot_camera
from camsim.errors import ConfigError
from camsim.model import PowerAndStorage
from camsim.recordings import generate_items
from camsim.session import CameraSession
from firmware_protocol import messages as m
from firmware_protocol._state import Role, State
from firmware_protocol.connection import NEED_DATA, Connection, EndOfChunk, Event
from firmware_protocol.errors import ErrorCode
from firmware_protocol.frames import Frame, FrameDecoder, encode_frame
from firmware_protocol.signing import auth_message, verify_signature

UID = bytes.fromhex("00112233445566778899aabbccddeeff")
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def camera_session(count: int = 2, size: int = 5000, max_payload: int = 65536,
                   chunk_size: int = 2048, **config: object) -> CameraSession:
    cfg = CameraConfig(key=KEY, camera_uid=UID, media=generate_items(UID, count, size),
                       chunk_size=chunk_size, **config)  # type: ignore[arg-type]
    return CameraSession(boot_camera(cfg), max_payload=max_payload)


def exchange(session: CameraSession, dock: Connection, msg: m.Message) -> list[Event]:
    events: list[Event] = []
    for data in session.receive_data(dock.send(msg)):
        dock.receive_data(data)
        while (ev := dock.next_event()) is not NEED_DATA:
            assert not isinstance(ev, type(NEED_DATA))
            events.append(ev)
    return events


def reply(session: CameraSession, dock: Connection, msg: m.Message) -> m.Message:
    events = exchange(session, dock, msg)
    assert len(events) == 1 and isinstance(events[0], m.Message), events
    return events[0]


def raw(session: CameraSession, msg_type: int, payload: bytes, seq: int = 9) -> tuple[Frame, ...]:
    decoder = FrameDecoder(1 << 20)
    for data in session.receive_data(encode_frame(msg_type, seq, payload, 1 << 20)):
        decoder.feed(data)
    frames = []
    while (item := decoder.next()) is not None:
        assert isinstance(item, Frame)
        frames.append(item)
    return tuple(frames)


def ready(session: CameraSession, max_payload: int = 65536) -> Connection:
    dock = Connection(Role.DOCK, max_payload=max_payload)
    assert isinstance(reply(session, dock, m.Hello((1,), max_payload)), m.Identity)
    assert isinstance(reply(session, dock, m.AuthChallenge(bytes(32))), m.AuthResponse)
    return dock


def test_requests_before_auth_get_bad_state_with_their_type_and_seq() -> None:
    session = camera_session()
    (frame,) = raw(session, m.GetStatus.TYPE, b"", seq=41)
    error = m.decode_message(frame.type, frame.payload)
    assert frame.seq == 41
    assert isinstance(error, m.Error) and (error.code, error.request_type) == (
        ErrorCode.BAD_STATE, m.GetStatus.TYPE)
    dock = Connection(Role.DOCK)
    assert isinstance(reply(session, dock, m.Hello((1,), 65536)), m.Identity)
    (frame,) = raw(session, m.ReadChunk.TYPE, bytes(20))  # identified, not authenticated
    error = m.decode_message(frame.type, frame.payload)
    assert isinstance(error, m.Error) and error.code == ErrorCode.BAD_STATE
    assert isinstance(reply(session, dock, m.AuthChallenge(bytes(32))), m.AuthResponse)
    assert session.connection.state is State.READY


@pytest.mark.parametrize(("msg_type", "payload", "code"), [
    (0x55, b"", ErrorCode.UNKNOWN_MESSAGE),
    (m.GetStatus.TYPE, b"\x00", ErrorCode.MALFORMED),
    (m.ReadChunk.TYPE, bytes(5), ErrorCode.MALFORMED),
    (m.Identity.TYPE, b"", ErrorCode.MALFORMED),
])
def test_bad_requests_get_an_error_and_the_session_carries_on(msg_type: int, payload: bytes,
                                                              code: ErrorCode) -> None:
    session = camera_session()
    dock = ready(session)
    (frame,) = raw(session, msg_type, payload)
    error = m.decode_message(frame.type, frame.payload)
    assert isinstance(error, m.Error) and (error.code, error.request_type) == (code, msg_type)
    assert isinstance(reply(session, dock, m.GetStatus()), m.Status)


def test_refused_requests() -> None:
    session = camera_session(count=1, size=5000)
    dock = ready(session)
    rid = reply(session, dock, m.ListRecordings(0, 10))
    assert isinstance(rid, m.RecordingList)
    known = rid.entries[0].recording_id
    cases: list[tuple[m.Message, ErrorCode]] = [
        (m.ReadChunk(bytes(16), 0), ErrorCode.UNKNOWN_RECORDING),
        (m.GetSeal(bytes(16)), ErrorCode.UNKNOWN_RECORDING),
        (m.ReadChunk(known, 3), ErrorCode.BAD_INDEX),  # 5000 bytes in 2048-byte chunks: 0..2
        (m.ListRecordings(2, 1), ErrorCode.BAD_INDEX),
    ]
    for msg, code in cases:
        error = reply(session, dock, msg)
        assert isinstance(error, m.Error) and (error.code, error.request_type) == (code, msg.TYPE)
    assert reply(session, dock, m.Release(bytes(16))) == m.Released(bytes(16), 0)


def test_unsupported_version_then_a_good_hello() -> None:
    session = camera_session()
    dock = Connection(Role.DOCK, versions=(7,))
    error = reply(session, dock, m.Hello((7,), 65536))
    assert isinstance(error, m.Error) and error.code == ErrorCode.VERSION_UNSUPPORTED
    assert dock.state is State.HANDSHAKE
    dock = Connection(Role.DOCK, versions=(7, 1))
    assert isinstance(reply(session, dock, m.Hello((7, 1), 4096)), m.Identity)


def test_pages_fit_the_initial_frame_size_and_chunks_span_frames() -> None:
    session = camera_session(count=120, size=25000, max_payload=4096, chunk_size=10000)
    dock = ready(session, max_payload=1 << 20)
    assert dock.max_payload == 4096  # the camera's limit wins
    page = reply(session, dock, m.ListRecordings(0, 1000))
    assert isinstance(page, m.RecordingList)
    assert page.total == 120 and len(page.entries) == (4096 - 10) // 50
    log = reply(session, dock, m.GetEventLog(0, 1000))
    assert isinstance(log, m.EventLog) and log.more and len(log.encode()) <= 4096
    rec = page.entries[5]
    events = exchange(session, dock, m.ReadChunk(rec.recording_id, 1))
    header = events[0]
    assert isinstance(header, m.ChunkHeader) and isinstance(events[-1], EndOfChunk)
    pieces = [e for e in events if isinstance(e, m.ChunkData)]
    assert [len(p.data) for p in pieces] == [4092, 4092, 1816]  # 10000 bytes, 4096-byte frames
    data = b"".join(bytes(p.data) for p in pieces)
    assert hashlib.sha256(data).digest() == header.info.sha256


def test_time_probe_reports_the_skewed_clock_and_storage_accounts_for_releases() -> None:
    session = camera_session(count=2, size=5000, clock_skew_s=3600.0,
                             power=PowerAndStorage(storage_total=1_000_000,
                                                   storage_free=500_000))
    dock = ready(session)
    t0 = time.time_ns() // 1000
    probe = reply(session, dock, m.TimeProbe(t0))
    assert isinstance(probe, m.TimeReply) and probe.t0_us == t0
    assert abs(probe.t1_us - t0 - 3_600_000_000) < 1_000_000 and probe.t1_us <= probe.t2_us
    page = reply(session, dock, m.ListRecordings(0, 10))
    assert isinstance(page, m.RecordingList)
    reply(session, dock, m.Release(page.entries[0].recording_id))
    status = reply(session, dock, m.GetStatus())
    assert isinstance(status, m.Status) and status.storage_free == 505_000


def test_storage_that_cannot_hold_the_recordings_is_refused() -> None:
    with pytest.raises(ConfigError, match="exceed --storage-total"):
        camera_session(count=2, size=5000, power=PowerAndStorage(storage_total=9000))
    with pytest.raises(ConfigError, match="exceed --storage-total"):
        camera_session(count=2, size=5000,
                       power=PowerAndStorage(storage_total=20000, storage_free=15000))


def test_handshake_retries_after_lost_replies_are_answered() -> None:
    session = camera_session()
    dock = Connection(Role.DOCK)
    session.receive_data(dock.send(m.Hello((1,), 65536)))  # IDENTITY lost on the line
    dock.cancel()
    assert isinstance(reply(session, dock, m.Hello((1,), 65536)), m.Identity)
    session.receive_data(dock.send(m.AuthChallenge(bytes(32))))  # AUTH_RESPONSE lost
    dock.cancel()
    nonce = bytes(range(32))
    response = reply(session, dock, m.AuthChallenge(nonce))
    assert isinstance(response, m.AuthResponse)
    assert verify_signature(KEY.public_key(), auth_message(UID, nonce), response.signature)
    assert dock.state is State.READY and session.connection.state is State.READY
    assert isinstance(reply(session, dock, m.GetStatus()), m.Status)
    assert dock.max_payload == session.connection.max_payload == 65536


def test_a_hello_mid_session_does_not_drop_the_requests_behind_it() -> None:
    session = camera_session()
    ready(session)
    dock = Connection(Role.DOCK)  # the dock restarted; its first two requests arrive together
    burst = dock.send(m.Hello((1,), 65536))
    replies = session.receive_data(burst + encode_frame(m.GetStatus.TYPE, 2, b"", 4096))
    assert len(replies) == 2
    dock.receive_data(replies[0])
    assert isinstance(dock.next_event(), m.Identity)
    decoder = FrameDecoder(65536)
    decoder.feed(replies[1])
    frame = decoder.next()
    assert isinstance(frame, Frame) and frame.seq == 2
    error = m.decode_message(frame.type, frame.payload)
    # Not yet authenticated in the new session: refused, but answered, not lost.
    assert isinstance(error, m.Error) and error.code == ErrorCode.BAD_STATE
