"""A minimal dock for the emulator tests: a line (pyserial on the pty, or any :class:`Line`,
e.g. pyusb bulk endpoints), a ``Connection(Role.DOCK)``, and the checks a real dock makes (auth
signature, chunk hashes, signatures, chain, seal)."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import serial
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from firmware_protocol import messages as m
from firmware_protocol._state import Role
from firmware_protocol.connection import NEED_DATA, Connection, EndOfChunk, Event, StaleFrame
from firmware_protocol.frames import Frame, FrameDecoder, FrameError, encode_frame
from firmware_protocol.signing import ZERO_DIGEST, auth_message, verify_signature

REPLY_TIMEOUT = 5.0


class NoReply(AssertionError):
    """The camera did not complete its reply before the deadline."""


class LineClosed(Exception):
    """The line went away under us (the emulator closed the pty)."""


@dataclass
class Reply:
    events: list[Event]

    @property
    def messages(self) -> list[m.Message]:
        return [e for e in self.events if isinstance(e, m.Message)]

    @property
    def frame_errors(self) -> list[FrameError]:
        return [e for e in self.events if isinstance(e, FrameError)]

    @property
    def stale(self) -> list[StaleFrame]:
        return [e for e in self.events if isinstance(e, StaleFrame)]


@dataclass
class ChunkRead:
    header: m.ChunkHeader
    data: bytes


@dataclass
class RecordingCheck:
    """What a dock found reading one recording: every index that failed a check."""

    data: bytes
    headers: list[m.ChunkHeader]
    seal: m.Seal
    bad_sha: list[int] = field(default_factory=list)
    bad_signature: list[int] = field(default_factory=list)
    bad_chain: list[int] = field(default_factory=list)
    seal_problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.bad_sha or self.bad_signature or self.bad_chain or self.seal_problems)


class Line(Protocol):
    """Bytes to and from the camera. ``read`` returns what is there after at most a short wait
    (b"" if nothing); both raise :class:`LineClosed` when the line has gone."""

    def read(self) -> bytes: ...

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class SerialLine:
    def __init__(self, port: Path) -> None:
        # Short read timeout: the deadlines live in Host._pump, this only bounds one read.
        self.serial = serial.serial_for_url(str(port), timeout=0.05)

    def read(self) -> bytes:
        try:
            data: bytes = self.serial.read(max(1, self.serial.in_waiting))
        except (serial.SerialException, OSError) as exc:
            raise LineClosed(str(exc)) from exc
        return data

    def write(self, data: bytes) -> None:
        try:
            self.serial.write(data)
        except (serial.SerialException, OSError) as exc:
            raise LineClosed(str(exc)) from exc

    def close(self) -> None:
        self.serial.close()


class Host:
    def __init__(self, port: Path | Line, *, max_payload: int = 65536) -> None:
        self.line: Line = SerialLine(port) if isinstance(port, Path) else port
        self.conn = Connection(Role.DOCK, max_payload=max_payload)
        self.received = 0
        self.events: list[Event] = []  # everything seen, frame errors included

    @property
    def serial(self) -> serial.Serial:
        assert isinstance(self.line, SerialLine)
        return self.line.serial

    def close(self) -> None:
        self.line.close()

    def __enter__(self) -> Host:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the byte pump -------------------------------------------------------------------------

    def _read(self) -> bytes:
        data = self.line.read()
        self.received += len(data)
        return data

    def _pump(self, done: Callable[[list[Event]], bool], timeout: float) -> list[Event]:
        deadline = time.monotonic() + timeout
        events: list[Event] = []
        while True:
            while (ev := self.conn.next_event()) is not NEED_DATA:
                assert not isinstance(ev, type(NEED_DATA))
                events.append(ev)
                self.events.append(ev)
            if done(events):
                return events
            if time.monotonic() > deadline:
                raise NoReply(f"no complete reply within {timeout} s; got {events!r:.300}")
            data = self._read()
            if data:
                self.conn.receive_data(data)

    def write(self, data: bytes) -> None:
        self.line.write(data)

    def request(self, msg: m.Message, timeout: float = REPLY_TIMEOUT) -> Reply:
        self.write(self.conn.send(msg))
        if isinstance(msg, m.ReadChunk):
            def done(evs: list[Event]) -> bool:
                return any(isinstance(e, EndOfChunk | m.Error) for e in evs)
        else:
            def done(evs: list[Event]) -> bool:
                return any(isinstance(e, m.Message) for e in evs)
        return Reply(self._pump(done, timeout))

    def expect(self, msg: m.Message, cls: type[m.Message], timeout: float = REPLY_TIMEOUT
               ) -> m.Message:
        reply = self.request(msg, timeout)
        last = reply.messages[-1]
        assert isinstance(last, cls), f"{type(msg).__name__} answered {last!r}"
        return last

    def exchange_raw(self, msg_type: int, payload: bytes, seq: int = 1) -> tuple[Frame, m.Message]:
        """Send a hand-made frame (bypassing the dock's state table) and decode the reply."""
        self.write(encode_frame(msg_type, seq, payload, 4096))
        decoder = FrameDecoder(self.conn.max_payload)
        deadline = time.monotonic() + REPLY_TIMEOUT
        while time.monotonic() < deadline:
            decoder.feed(self._read())
            while (item := decoder.next()) is not None:
                if isinstance(item, Frame):
                    return item, m.decode_message(item.type, item.payload)
        raise NoReply("no reply to a raw frame")

    # -- a dock's session ----------------------------------------------------------------------

    def hello(self) -> m.Identity:
        msg = self.expect(m.Hello((1,), self.conn.our_max_payload), m.Identity)
        assert isinstance(msg, m.Identity)
        return msg

    def authenticate(self, key: Ed25519PublicKey, nonce: bytes | None = None) -> bool:
        nonce = nonce or os.urandom(32)
        reply = self.expect(m.AuthChallenge(nonce), m.AuthResponse)
        assert isinstance(reply, m.AuthResponse)
        identity = self.conn.identity
        assert identity is not None
        return verify_signature(key, auth_message(identity.camera_uid, nonce), reply.signature)

    def status(self) -> m.Status:
        msg = self.expect(m.GetStatus(), m.Status)
        assert isinstance(msg, m.Status)
        return msg

    def probe(self) -> tuple[int, int, int, int]:
        """(t0, t1, t2, t3) in µs: dock, camera, camera, dock."""
        t0 = time.time_ns() // 1000
        msg = self.expect(m.TimeProbe(t0), m.TimeReply)
        t3 = time.time_ns() // 1000
        assert isinstance(msg, m.TimeReply)
        return t0, msg.t1_us, msg.t2_us, t3

    def set_time(self, unix_us: int) -> m.TimeSet:
        msg = self.expect(m.SetTime(unix_us), m.TimeSet)
        assert isinstance(msg, m.TimeSet)
        return msg

    def list_recordings(self, page: int = 100) -> list[m.RecordingInfo]:
        entries: list[m.RecordingInfo] = []
        while True:
            msg = self.expect(m.ListRecordings(len(entries), page), m.RecordingList)
            assert isinstance(msg, m.RecordingList)
            entries += msg.entries
            if len(entries) >= msg.total:
                return entries
            assert msg.entries, "empty page before the end of the listing"

    def read_chunk(self, recording_id: bytes, index: int, timeout: float = REPLY_TIMEOUT
                   ) -> ChunkRead | m.Error:
        reply = self.request(m.ReadChunk(recording_id, index), timeout)
        msgs = reply.messages
        if isinstance(msgs[-1], m.Error):
            return msgs[-1]
        header = msgs[0]
        assert isinstance(header, m.ChunkHeader)
        data = b"".join(bytes(d.data) for d in msgs[1:] if isinstance(d, m.ChunkData))
        return ChunkRead(header, data)

    def seal(self, recording_id: bytes) -> m.Seal:
        msg = self.expect(m.GetSeal(recording_id), m.Seal)
        assert isinstance(msg, m.Seal)
        return msg

    def event_log(self, since: int = 0, page: int = 1000) -> list[m.LogEntry]:
        entries: list[m.LogEntry] = []
        while True:
            msg = self.expect(m.GetEventLog(since, page), m.EventLog)
            assert isinstance(msg, m.EventLog)
            entries += msg.entries
            if not msg.more:
                return entries
            since = msg.entries[-1].seq + 1

    def release(self, recording_id: bytes) -> m.Released:
        msg = self.expect(m.Release(recording_id), m.Released)
        assert isinstance(msg, m.Released)
        return msg

    def read_recording(self, info: m.RecordingInfo, key: Ed25519PublicKey) -> RecordingCheck:
        """Read every chunk and the seal, checking everything section 4.3 of the spec lists."""
        identity = self.conn.identity
        assert identity is not None
        whole = hashlib.sha256()
        parts: list[bytes] = []
        headers: list[m.ChunkHeader] = []
        bad_sha, bad_sig, bad_chain = [], [], []
        prev, offset = ZERO_DIGEST, 0
        for index in range(info.chunk_count):
            got = self.read_chunk(info.recording_id, index)
            assert isinstance(got, ChunkRead), f"chunk {index}: {got!r}"
            h = got.header.info
            assert (h.camera_uid, h.recording_id, h.index) == (
                identity.camera_uid, info.recording_id, index)
            if hashlib.sha256(got.data).digest() != h.sha256 or len(got.data) != h.size:
                bad_sha.append(index)
            if not verify_signature(key, got.header.chunk_message, got.header.signature):
                bad_sig.append(index)
            if h.prev != prev or h.offset != offset:
                bad_chain.append(index)
            prev, offset = hashlib.sha256(got.header.chunk_message).digest(), offset + h.size
            whole.update(got.data)
            parts.append(got.data)
            headers.append(got.header)
        seal = self.seal(info.recording_id)
        s = seal.info
        problems = []
        if not verify_signature(key, seal.seal_message, seal.signature):
            problems.append("signature")
        if s.sha256 != whole.digest():
            problems.append("sha256")
        if s.last_chunk_digest != prev:
            problems.append("last_chunk_digest")
        if (s.chunk_count, s.total_size) != (info.chunk_count, info.size) or offset != info.size:
            problems.append("count/size")
        if (s.camera_uid, s.recording_id) != (identity.camera_uid, info.recording_id):
            problems.append("names")
        if (s.started_ms, s.ended_ms, s.media) != (info.started_ms, info.ended_ms, info.media):
            problems.append("times/media")
        return RecordingCheck(b"".join(parts), headers, seal, bad_sha, bad_sig, bad_chain,
                              problems)
