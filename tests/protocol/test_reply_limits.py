"""A hostile camera's reply must cost the dock no more than its bytes (fuzz finding, issue 6).

Decoding builds Python objects several times the size of the payload: a frame-filling event log
(33 825 entries at 1 MiB) took ~0.2 s and ~10 MB to decode before the dock found out it had asked
for 64 entries, or that the state did not allow an event log at all. The dock now refuses such a
reply from the frame's type and entry count, before decoding. Memory is what these tests measure
(tracemalloc): the refused reply may allocate little beyond the frame the decoder holds.
"""

from __future__ import annotations

import tracemalloc

import pytest

from firmware_protocol import messages as m
from firmware_protocol._state import Role
from firmware_protocol.connection import NEED_DATA, SUPPORTED_VERSIONS, Connection
from firmware_protocol.errors import ErrorCode, RemoteProtocolError
from firmware_protocol.frames import HEADER_SIZE, TRAILER_SIZE, encode_frame
from tests.protocol.helpers import identity

LIMIT = 1_048_580  # what the reference dock offers over USB
FRAME = HEADER_SIZE + LIMIT + TRAILER_SIZE


def dock_awaiting(request: m.Message) -> Connection:
    """A DOCK that negotiated LIMIT, authenticated, and sent ``request`` (seq 3)."""
    dock = Connection(Role.DOCK, max_payload=LIMIT)
    dock.send(m.Hello(SUPPORTED_VERSIONS, LIMIT))
    dock.receive_data(encode_frame(m.Identity.TYPE, 1, identity(LIMIT).encode(), LIMIT))
    assert dock.next_event() == identity(LIMIT)
    dock.send(m.AuthChallenge(bytes(32)))
    dock.receive_data(encode_frame(m.AuthResponse.TYPE, 2, bytes(64), LIMIT))
    assert isinstance(dock.next_event(), m.AuthResponse)
    dock.send(request)
    return dock


def largest_event_log() -> bytes:
    n = (LIMIT - 3) // m.LOG_ENTRY_FIXED_SIZE
    log = m.EventLog(tuple(m.LogEntry(i, i, m.EventKind.FAULT) for i in range(n)), False)
    return encode_frame(m.EventLog.TYPE, 3, log.encode(), LIMIT)


def largest_listing() -> bytes:
    n = (LIMIT - 10) // m.RECORDING_INFO_SIZE
    info = m.RecordingInfo(bytes(16), 1, 1, 1, 1, 0, 0, True)
    return encode_frame(m.RecordingList.TYPE, 3, m.RecordingList(n, 0, (info,) * n).encode(),
                        LIMIT)


def refused(dock: Connection, reply: bytes) -> tuple[RemoteProtocolError, int]:
    """Feed ``reply``; the error it raised and the peak bytes allocated meanwhile."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        dock.receive_data(reply)
        with pytest.raises(RemoteProtocolError) as caught:
            while dock.next_event() is not NEED_DATA:
                pass
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return caught.value, peak


@pytest.mark.parametrize(("request_", "reply"), [
    (m.GetEventLog(0, 64), largest_event_log),
    (m.ListRecordings(0, 64), largest_listing),
], ids=["event log", "listing"])
def test_a_page_longer_than_asked_for_is_refused_before_decoding(
    request_: m.Message, reply: object
) -> None:
    assert callable(reply)
    error, peak = refused(dock_awaiting(request_), reply())
    assert error.code is ErrorCode.MALFORMED and "more entries than the 64" in str(error)
    # the frame's payload (the decoder hands out a copy) and little else; decoded, ~10x
    assert peak < 2 * FRAME + 64 * 1024, peak


@pytest.mark.parametrize("reply", [largest_event_log, largest_listing],
                         ids=["event log", "listing"])
def test_a_reply_the_state_does_not_allow_is_refused_before_decoding(reply: object) -> None:
    assert callable(reply)
    error, peak = refused(dock_awaiting(m.GetStatus()), reply())
    assert error.code is ErrorCode.BAD_STATE
    assert peak < 2 * FRAME + 64 * 1024, peak


def test_a_page_of_what_was_asked_for_still_decodes() -> None:
    dock = dock_awaiting(m.GetEventLog(0, 2))
    page = m.EventLog((m.LogEntry(1, 1, m.EventKind.POWER_ON),
                       m.LogEntry(2, 2, m.EventKind.POWER_OFF)), True)
    dock.receive_data(encode_frame(m.EventLog.TYPE, 3, page.encode(), LIMIT))
    assert dock.next_event() == page
