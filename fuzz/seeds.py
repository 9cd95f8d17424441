"""Starting points for the fuzzer: real messages and sessions, including the largest of each.

The seed corpus holds one valid example of every message, the worst cases a frame limit allows
(event logs and listings filling a whole frame, strings at their maximum) and, for the DOCK, the
reference camera's correct reply to every request. Everything here is deterministic.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from firmware_protocol import messages as m
from firmware_protocol._state import Role
from firmware_protocol.connection import NEED_DATA, SUPPORTED_VERSIONS, Connection
from firmware_protocol.frames import HEADER_SIZE, INITIAL_MAX_PAYLOAD, TRAILER_SIZE
from firmware_protocol.signing import ChunkMessage, SealMessage
from tests.protocol.helpers import CameraApp, Link, identity, make_recording, split_frames

from .streams import frame, oversized_header

__all__ = ["AUTH", "HELLO", "DockCase", "dock_seeds", "dock_setups", "frame_pool",
           "frame_seeds", "message_seeds", "reply_pool", "signed_seeds"]

NONCE = bytes(range(32))
AUTH = m.AuthChallenge(NONCE)
HELLO = m.Hello(SUPPORTED_VERSIONS, INITIAL_MAX_PAYLOAD)
RID = bytes(range(0xA0, 0xB0))
# Three chunks of 1000 bytes (the last shorter), so chunk replies span several data frames.
RECORDING = make_recording(bytes(i % 251 for i in range(2500)), 1000, recording_id=RID)
LONG_TEXT = "é" * (m.MAX_STRING // 2)  # the longest string: 1024 bytes of UTF-8


def _largest_log(max_payload: int) -> m.EventLog:
    n = min(0xFFFF, (max_payload - 3) // m.LOG_ENTRY_FIXED_SIZE)
    return m.EventLog(tuple(m.LogEntry(i, i, m.EventKind.FAULT) for i in range(n)), True)


def _largest_list(max_payload: int) -> m.RecordingList:
    n = min(0xFFFF, (max_payload - 10) // m.RECORDING_INFO_SIZE)
    info = RECORDING.info
    entries = tuple(m.RecordingInfo(i.to_bytes(16, "big"), info.media, info.size,
                                    info.chunk_size, info.chunk_count, 1, 2, True)
                    for i in range(n))
    return m.RecordingList(n, 0, entries)


@functools.cache
def messages(max_payload: int) -> tuple[m.Message, ...]:
    """One or more valid instances of every message type, the largest ones included."""
    return (
        HELLO, m.Hello(tuple(range(16)), max_payload),
        identity(max_payload),
        m.Identity(1, max_payload, bytes(16), bytes(32), *([LONG_TEXT] * 7)),
        AUTH, m.AuthResponse(bytes(range(64))), m.GetStatus(),
        m.Status(87, True, 1 << 40, 1 << 30, 8_000_000, True, (), 1_760_000_000_000, False),
        m.Status(3, False, 100, 0, 0, False, tuple(range(64)), 0, True),
        m.TimeProbe(5), m.TimeReply(5, 6, 7), m.SetTime(1 << 60), m.TimeSet(1, 2),
        m.ListRecordings(0, 64), m.RecordingList(3, 1, (RECORDING.info,)),
        _largest_list(max_payload),
        m.ReadChunk(RID, 1), RECORDING.headers[1],
        m.ChunkData(0, RECORDING.data[:1000]), m.ChunkData(7, bytes(max_payload - 4)),
        m.GetSeal(RID), RECORDING.seal,
        m.GetEventLog(1, 64), m.EventLog((m.LogEntry(1, 2, m.EventKind.POWER_ON, RID, "x"),),
                                         False),
        _largest_log(max_payload),
        m.Release(RID), m.Released(RID, 2500),
        m.Error(4, m.GetSeal.TYPE, "no such recording"), m.Error(0xFFFF, 0xFF, LONG_TEXT),
    )


def message_seeds(max_payload: int) -> list[tuple[int, bytes]]:
    return [(msg.TYPE, msg.encode()) for msg in messages(max_payload)]


def signed_seeds(cls: type[ChunkMessage] | type[SealMessage]) -> list[bytes]:
    if cls is ChunkMessage:
        return [h.chunk_message for h in RECORDING.headers]
    return [RECORDING.seal.seal_message]


# -- the frame decoder ----------------------------------------------------------------------------


@functools.cache
def frame_pool() -> list[tuple[int, bytes]]:
    return message_seeds(INITIAL_MAX_PAYLOAD)[:12]


def frame_seeds(cfg: object) -> list[bytes]:
    frames = b"".join(frame(t, 7, p) for t, p in frame_pool())
    raw = [
        bytes([1]) + len(frames).to_bytes(2, "big") + frames,  # limit 4096, whole
        # split: three reads of 5 bytes, then 0x8040: 64 one-byte reads, then the rest
        bytes([1]) + len(frames).to_bytes(2, "big") + frames
        + b"\x04\x00\x05\x00\x05\x00\x05\x80\x40",
        bytes([0]) + (36).to_bytes(2, "big") + oversized_header(3, 65) + b"noise\xb7\xc3\x01!!",
    ]
    # structured: limit 4096 / the largest, a max-size frame, an oversized header, pool frames
    # structured (flags: limit, direct_min, 0x10 structured, 0x20 reused read buffer):
    # a max-size frame; one cut short then an oversized header; one fed a byte at a time
    structured = [
        bytes([0x13, 0, 5, 0x00, 0x0F, 0x00, 0x00]),
        bytes([0x3B, 1, 5, 0x41, 0x0F, 0x00, 0x04, 0, 0, 0, 200, 2, 0x00, 0, 0, 0, 0, 0x00]),
        bytes([0x11, 0, 5, 0x55, 0x0F, 0x00, 0x00, 3, 0x80, 0x7F, 0x80, 0x7F, 0x80, 0x7F]),
    ]
    return raw + structured


# -- the DOCK connection --------------------------------------------------------------------------

DOCK_LIMITS = (INITIAL_MAX_PAYLOAD, 65536)

REQUESTS: tuple[m.Message, ...] = (
    m.GetStatus(), m.TimeProbe(1_000), m.SetTime(2_000), m.ListRecordings(0, 64),
    m.ReadChunk(RID, 0), m.ReadChunk(RID, 2), m.ReadChunk(RID, 3), m.ReadChunk(bytes(16), 0),
    m.GetSeal(RID), m.GetEventLog(0, 64), m.Release(RID),
)


@dataclass(frozen=True)
class DockCase:
    name: str
    start: Callable[[], Connection]  # a fresh DOCK waiting for the reply to seq ``seq``
    seq: int
    reply: bytes  # the reference camera's correct reply


def _drained(dock: Connection, data: bytes) -> None:
    dock.receive_data(data)
    while dock.next_event() is not NEED_DATA:
        pass


@functools.cache
def dock_setups(max_payload: int) -> list[DockCase]:
    cases: list[DockCase] = []
    for limit in dict.fromkeys((*DOCK_LIMITS, max_payload)):
        link = Link(CameraApp([RECORDING], max_payload=limit), max_payload=limit)
        hello = m.Hello(SUPPORTED_VERSIONS, limit)
        link.request(hello)
        link.request(AUTH)
        id_reply, auth_reply = link.replies

        def handshaken(limit: int = limit, id_reply: bytes = id_reply,
                       auth_reply: bytes = auth_reply, hello: m.Hello = hello) -> Connection:
            dock = Connection(Role.DOCK, max_payload=limit)
            dock.send(hello)
            _drained(dock, id_reply)
            dock.send(AUTH)
            _drained(dock, auth_reply)
            return dock

        def fresh(limit: int = limit) -> Connection:
            return Connection(Role.DOCK, max_payload=limit)

        def hello_sent(limit: int = limit, hello: m.Hello = hello) -> Connection:
            dock = Connection(Role.DOCK, max_payload=limit)
            dock.send(hello)
            return dock

        def auth_sent(limit: int = limit, id_reply: bytes = id_reply,
                      hello: m.Hello = hello) -> Connection:
            dock = Connection(Role.DOCK, max_payload=limit)
            dock.send(hello)
            _drained(dock, id_reply)
            dock.send(AUTH)
            return dock

        cases += [DockCase(f"handshake/{limit}", fresh, 1, b""),
                  DockCase(f"hello/{limit}", hello_sent, 1, id_reply),
                  DockCase(f"auth/{limit}", auth_sent, 2, auth_reply),
                  DockCase(f"ready/{limit}", handshaken, 3, b"")]
        for req in REQUESTS:
            link.request(req)

            def requested(req: m.Message = req, handshaken: Callable[[], Connection] = handshaken
                          ) -> Connection:
                dock = handshaken()
                dock.send(req)
                return dock

            # the link numbered this request on from the handshake; a fresh dock says 3
            reply = b"".join(frame(f[3], 3, f[HEADER_SIZE:-TRAILER_SIZE])
                             for f in split_frames(link.replies[-1]))
            cases.append(DockCase(f"{type(req).__name__}/{limit}", requested, 3, reply))
    return cases


@functools.cache
def reply_pool(max_payload: int) -> list[tuple[int, bytes]]:
    """(type, payload) of every camera reply recorded, and the largest of each message."""
    pool: dict[tuple[int, bytes], None] = {}
    for case in dock_setups(max_payload):
        for f in split_frames(case.reply) if case.reply else []:
            pool[(f[3], f[HEADER_SIZE:-TRAILER_SIZE])] = None
    for t, p in message_seeds(max_payload):
        pool[(t, p)] = None
    return list(pool)


def dock_seeds(cfg: object) -> list[bytes]:
    max_payload = getattr(cfg, "max_payload", INITIAL_MAX_PAYLOAD)
    cases = dock_setups(max_payload)
    pool = reply_pool(max_payload)
    out = []
    for i in range(len(cases)):
        out.append(bytes([i, 0, 3, 0]))  # the correct reply, whole
        out.append(bytes([i, 0, 3, 4, 0, 0, 0, 40]))  # cut short after 40 bytes
        out.append(bytes([i, 1, 0, 8]) + b"\xb7\xc3garbag" + bytes([0, 3, 0]))  # after noise
        out.append(bytes([i, 0, 3, 0, 1, 0x80, 0x7F]))  # 127 one-byte reads, then the rest
    # the largest lists and data frames, with the awaited seq, in the state that awaits them
    for j, (t, _) in enumerate(pool):
        for i, case in enumerate(cases):
            awaits = {m.EventLog.TYPE: "GetEventLog", m.RecordingList.TYPE: "ListRecordings",
                      m.ChunkData.TYPE: "ReadChunk"}.get(t)
            if awaits is not None and case.name.startswith(awaits):
                out.append(bytes([i, 0, 4]) + j.to_bytes(2, "big") + bytes([0, 0]))
    return out
