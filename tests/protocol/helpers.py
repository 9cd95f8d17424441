"""In-memory helpers for protocol tests: a camera key, signed recordings, a wired pair."""

from __future__ import annotations

import hashlib
import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware_protocol import messages as m
from firmware_protocol._state import Role, State
from firmware_protocol.connection import (
    NEED_DATA,
    SUPPORTED_VERSIONS,
    Connection,
    Event,
    NeedData,
)
from firmware_protocol.errors import ErrorCode, RemoteProtocolError
from firmware_protocol.frames import HEADER_SIZE, PROTOCOL_VERSION, TRAILER_SIZE
from firmware_protocol.signing import (
    ZERO_DIGEST,
    ChunkMessage,
    Media,
    SealMessage,
    auth_message,
    public_key_raw,
)

CAMERA_UID = bytes.fromhex("00112233445566778899aabbccddeeff")
# A fixed key so golden bytes and doc examples are reproducible (never use outside tests/docs).
CAMERA_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


@dataclass(frozen=True)
class SignedRecording:
    info: m.RecordingInfo
    data: bytes
    headers: tuple[m.ChunkHeader, ...]
    seal: m.Seal


def make_recording(
    data: bytes, chunk_size: int, recording_id: bytes = bytes(range(16)),
    key: Ed25519PrivateKey = CAMERA_KEY, uid: bytes = CAMERA_UID,
    started_ms: int = 1_760_000_000_000, ended_ms: int = 1_760_000_060_000,
) -> SignedRecording:
    headers = []
    prev = ZERO_DIGEST
    for index, offset in enumerate(range(0, len(data), chunk_size)):
        piece = data[offset : offset + chunk_size]
        cm = ChunkMessage(uid, recording_id, index, offset, len(piece),
                          hashlib.sha256(piece).digest(), prev)
        packed = cm.pack()
        headers.append(m.ChunkHeader(packed, key.sign(packed)))
        prev = hashlib.sha256(packed).digest()
    seal_msg = SealMessage(uid, recording_id, len(headers), len(data),
                           hashlib.sha256(data).digest(), prev if headers else ZERO_DIGEST,
                           started_ms, ended_ms, Media.VIDEO).pack()
    info = m.RecordingInfo(recording_id, Media.VIDEO, len(data), chunk_size, len(headers),
                           started_ms, ended_ms, True)
    return SignedRecording(info, data, tuple(headers), m.Seal(seal_msg, key.sign(seal_msg)))


def drain(conn: Connection) -> list[Event]:
    events = []
    while (ev := conn.next_event()) is not NEED_DATA:
        assert not isinstance(ev, type(NEED_DATA))
        events.append(ev)
    return events


def identity(max_payload: int = 65536) -> m.Identity:
    return m.Identity(1, max_payload, CAMERA_UID, public_key_raw(CAMERA_KEY), "BWC-9", "1.2.3",
                      "SN0001", "010203", "张三", "410402", "湛河区司法局")


# -- feeding bytes ---------------------------------------------------------------------------

FEED_MODES = ("whole", "random-1", "random-2", "random-3", "bytewise")


def feedings(data: bytes) -> Iterator[tuple[str, list[bytes]]]:
    """Every way a decoder test feeds ``data``: whole, split in two at every position
    (including the empty halves at both ends), and one byte at a time."""
    yield "whole", [data]
    for cut in range(len(data) + 1):
        yield f"split@{cut}", [data[:cut], data[cut:]]
    yield "bytewise", [data[i : i + 1] for i in range(len(data))]


def pieces(data: bytes, mode: str, rng: random.Random) -> list[bytes]:
    """``data`` as one line read would deliver it: whole, cut at random points, or bytewise."""
    if mode == "whole":
        return [data]
    if mode == "bytewise":
        return [data[i : i + 1] for i in range(len(data))]
    assert mode.startswith("random")
    cuts = sorted(rng.randrange(len(data) + 1) for _ in range(rng.randrange(6)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def frame_seq(frame: bytes) -> int:
    """The sequence number in an encoded frame's header."""
    return int.from_bytes(frame[4:6], "big")


def split_frames(data: bytes) -> list[bytes]:
    """Cut a clean stream of encoded frames into frames, by their length fields."""
    frames = []
    pos = 0
    while pos < len(data):
        end = pos + HEADER_SIZE + int.from_bytes(data[pos + 6 : pos + 10], "big") + TRAILER_SIZE
        frames.append(data[pos:end])
        pos = end
    assert pos == len(data)
    return frames


def buffered(conn: Connection) -> int:
    """Bytes a connection holds undecoded (the decoder is private; tests need the figure)."""
    return conn._decoder.buffered


# -- a camera application on the CAMERA role ---------------------------------------------------

NOW_US = 1_760_000_100_000_000  # the camera's clock at the start of every test session


def sample_log(count: int = 5) -> list[m.LogEntry]:
    kinds = [m.EventKind.POWER_ON, m.EventKind.RECORD_START, m.EventKind.RECORD_STOP,
             m.EventKind.BATTERY_EMPTY, m.EventKind.FAULT, m.EventKind.POWER_OFF]
    return [m.LogEntry(seq, 1_760_000_000_000 + 1000 * seq, kinds[seq % len(kinds)],
                       detail=f"entry {seq}") for seq in range(1, count + 1)]


class CameraApp:
    """A small camera application built on the CAMERA role: it answers every request from
    fixed state, and answers a request the connection rejects with an ``Error`` reply."""

    def __init__(
        self, recordings: Sequence[SignedRecording] = (), *, max_payload: int = 65536,
        key: Ed25519PrivateKey = CAMERA_KEY, uid: bytes = CAMERA_UID,
        log: Sequence[m.LogEntry] | None = None,
    ) -> None:
        self.conn = Connection(Role.CAMERA, max_payload=max_payload)
        self.max_payload = max_payload
        self.key = key
        self.uid = uid
        self.recordings = list(recordings)
        self.log = list(sample_log() if log is None else log)
        self.clock_us = NOW_US
        self.events: list[Event] = []  # every event the camera's connection produced
        self.rejected: list[RemoteProtocolError] = []
        self.status = m.Status(87, True, 64 * 2**30, 18 * 2**30, 8_000_000, True, (),
                               NOW_US // 1000, False)

    def receive(self, data: bytes) -> bytes:
        """Feed bytes from the dock; return the bytes of every reply they caused."""
        out: list[bytes] = []
        self.conn.receive_data(data)
        # Every event consumes input (an EndOfChunk follows a frame of at least 18 bytes), so a
        # drain that runs longer than this is a hang.
        budget = 2 * buffered(self.conn) + 2
        while True:
            budget -= 1
            assert budget >= 0, "next_event() keeps returning events without consuming input"
            try:
                ev = self.conn.next_event()
            except RemoteProtocolError as exc:
                self.rejected.append(exc)
                out.append(self.conn.send(m.Error(exc.code, 0, str(exc))))
                continue
            if ev is NEED_DATA:
                return b"".join(out)
            assert not isinstance(ev, NeedData)
            self.events.append(ev)
            if isinstance(ev, m.Message):
                out.extend(self.answer(ev))

    def _find(self, rid: bytes) -> SignedRecording | None:
        return next((r for r in self.recordings if r.info.recording_id == rid), None)

    def _log(self, kind: m.EventKind, rid: bytes = bytes(16), detail: str = "") -> None:
        seq = self.log[-1].seq + 1 if self.log else 1
        self.log.append(m.LogEntry(seq, self.clock_us // 1000, kind, rid, detail))

    def answer(self, req: m.Message) -> list[bytes]:
        send = self.conn.send
        if isinstance(req, m.Hello):
            if PROTOCOL_VERSION not in req.versions:
                return [send(m.Error(ErrorCode.VERSION_UNSUPPORTED, req.TYPE))]
            return [send(identity(min(req.max_payload, self.max_payload)))]
        if isinstance(req, m.AuthChallenge):
            return [send(m.AuthResponse(self.key.sign(auth_message(self.uid, req.nonce))))]
        if isinstance(req, m.GetStatus):
            return [send(self.status)]
        if isinstance(req, m.TimeProbe):
            # A fuzzed SET_TIME may leave the clock at the top of the u64 range.
            t2 = min(self.clock_us + 40, (1 << 64) - 1)
            return [send(m.TimeReply(req.t0_us, self.clock_us, t2))]
        if isinstance(req, m.SetTime):
            previous, self.clock_us = self.clock_us, req.unix_us
            self._log(m.EventKind.CLOCK_SET, detail=f"was {previous}")
            return [send(m.TimeSet(previous, req.unix_us))]
        if isinstance(req, m.ListRecordings):
            if req.start > len(self.recordings):
                return [send(m.Error(ErrorCode.BAD_INDEX, req.TYPE))]
            page = self.recordings[req.start : req.start + req.max_entries]
            return [send(m.RecordingList(len(self.recordings), req.start,
                                         tuple(r.info for r in page)))]
        if isinstance(req, m.GetEventLog):
            entries = [e for e in self.log if e.seq >= req.since]
            page = tuple(entries[: req.max_entries])
            return [send(m.EventLog(page, len(entries) > len(page)))]
        if isinstance(req, m.ReadChunk | m.GetSeal | m.Release):
            rec = self._find(req.recording_id)
            if rec is None:
                return [send(m.Error(ErrorCode.UNKNOWN_RECORDING, req.TYPE))]
            if isinstance(req, m.GetSeal):
                return [send(rec.seal)]
            if isinstance(req, m.Release):
                self._log(m.EventKind.RELEASED, req.recording_id)
                return [send(m.Released(req.recording_id, len(rec.data)))]
            if req.index >= len(rec.headers):
                return [send(m.Error(ErrorCode.BAD_INDEX, req.TYPE))]
            header = rec.headers[req.index]
            start = header.info.offset
            return self.conn.send_chunk(header, rec.data[start : start + header.info.size])
        return [send(m.Error(ErrorCode.BAD_STATE, req.TYPE))]


# -- a dock wired to a camera in memory ---------------------------------------------------------


class Link:
    """A DOCK connection and a :class:`CameraApp` joined by an in-memory line that delivers
    bytes whole, cut at random points, or one byte at a time (``mode``, see FEED_MODES)."""

    def __init__(self, camera: CameraApp, mode: str = "whole", *, seed: int = 0,
                 max_payload: int = 65536) -> None:
        self.dock = Connection(Role.DOCK, max_payload=max_payload)
        self.camera = camera
        self.mode = mode
        self.rng = random.Random(seed)
        self.sent: list[bytes] = []  # frames the dock sent, in order
        self.replies: list[bytes] = []  # the camera's reply bytes, one entry per request

    def request(self, msg: m.Message) -> list[Event]:
        """Send one request, carry it to the camera and its reply back; the dock's events."""
        frame = self.dock.send(msg)
        self.sent.append(frame)
        reply = b"".join(self.camera.receive(p) for p in pieces(frame, self.mode, self.rng))
        self.replies.append(reply)
        return self.deliver(reply)

    def deliver(self, data: bytes) -> list[Event]:
        """Carry bytes to the dock, draining its events after every piece."""
        events: list[Event] = []
        for piece in pieces(data, self.mode, self.rng):
            self.dock.receive_data(piece)
            events += drain(self.dock)
        return events

    def handshake(self, nonce: bytes = bytes(range(32)), max_payload: int = 65536) -> None:
        assert self.request(m.Hello(SUPPORTED_VERSIONS, max_payload)) == [self.dock.identity]
        (resp,) = self.request(m.AuthChallenge(nonce))
        assert isinstance(resp, m.AuthResponse)
        assert self.dock.state is State.READY
