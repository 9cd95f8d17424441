"""The sans-IO connection, one class for both roles (like h11's ``Connection``).

Feed bytes with :meth:`Connection.receive_data`, pull events with :meth:`Connection.next_event`
until it returns ``NEED_DATA``, and turn messages into bytes with :meth:`Connection.send`. Nothing
here reads a clock, a socket or a thread: timeouts and retries belong to the caller, which uses
:meth:`Connection.cancel` to abandon a request before retrying it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import cast

from . import messages as m
from ._state import CANCEL, CHUNK_COMPLETE, STABLE_STATES, TRANSITIONS, Role, State
from .errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from .frames import (
    ABS_MAX_PAYLOAD,
    HEADER_SIZE,
    INITIAL_MAX_PAYLOAD,
    PROTOCOL_VERSION,
    TRAILER_SIZE,
    Frame,
    FrameDecoder,
    FrameError,
    FrameErrorKind,
    encode_frame,
    payload_buffer,
)

__all__ = [
    "DEFAULT_MAX_PAYLOAD",
    "NEED_DATA",
    "SUPPORTED_VERSIONS",
    "Connection",
    "EndOfChunk",
    "Event",
    "NeedData",
    "Role",
    "StaleFrame",
    "State",
]

SUPPORTED_VERSIONS = (PROTOCOL_VERSION,)
DEFAULT_MAX_PAYLOAD = 256 * 1024

# Frame errors that may have swallowed a whole frame. Garbage may too, when the frame's start
# marker was the damaged part: a run of garbage at least as long as the smallest frame counts.
_LOSSY = frozenset({FrameErrorKind.BAD_HEADER, FrameErrorKind.BAD_CRC, FrameErrorKind.TOO_LARGE})
_MIN_FRAME = HEADER_SIZE + TRAILER_SIZE
# Where the u16 entry count of a page sits in its payload (checked before decoding the entries).
_PAGE_COUNT_AT = {m.RecordingList.TYPE: 8, m.EventLog.TYPE: 0}


class NeedData(Enum):
    NEED_DATA = "need_data"


NEED_DATA = NeedData.NEED_DATA


@dataclass(frozen=True, slots=True)
class EndOfChunk:
    """Every data byte of the requested chunk has arrived."""

    recording_id: bytes
    index: int


@dataclass(frozen=True, slots=True)
class StaleFrame:
    """A reply frame for a cancelled or damaged request; it was discarded."""

    type: int
    seq: int


Event = m.Message | EndOfChunk | FrameError | StaleFrame


class Connection:
    def __init__(
        self,
        role: Role,
        *,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        versions: tuple[int, ...] = SUPPORTED_VERSIONS,
    ) -> None:
        if not INITIAL_MAX_PAYLOAD <= max_payload <= ABS_MAX_PAYLOAD:
            raise LocalProtocolError(
                f"max_payload must be {INITIAL_MAX_PAYLOAD}..{ABS_MAX_PAYLOAD}"
            )
        self.role = role
        self.our_max_payload = max_payload
        self.versions = versions
        self.state = State.HANDSHAKE
        self.identity: m.Identity | None = None
        self.hello: m.Hello | None = None
        self._decoder = FrameDecoder(INITIAL_MAX_PAYLOAD)
        self._max_payload = INITIAL_MAX_PAYLOAD
        self._error: RemoteProtocolError | None = None
        self._seq = 0
        self._request: m.Message | None = None  # dock: outstanding request; camera: being answered
        self._request_seq: int | None = None
        self._damaged = False
        self._chunk_remaining = 0
        self._chunk_offset = 0
        self._pending_end: EndOfChunk | None = None
        self._garbage_run = 0  # unexplained garbage bytes since the last good frame
        self._garbage_explained = False

    # -- properties --------------------------------------------------------------------------

    @property
    def max_payload(self) -> int:
        """The frame payload limit in force (initial 4096 until HELLO/IDENTITY negotiated)."""
        return self._max_payload

    @property
    def outstanding(self) -> m.Message | None:
        """The dock's request still awaiting its reply, or the camera's request being answered."""
        return self._request

    @property
    def chunk_data_max(self) -> int:
        """Largest ``ChunkData.data`` that fits in one frame."""
        return self._max_payload - 4

    # -- receiving ---------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer bytes from the peer. Drain :meth:`next_event` before feeding more.

        ``data`` may be read in place until :meth:`next_event` returns ``NEED_DATA``: a caller
        reading into one reused buffer must not overwrite it before then.
        """
        if self._decoder.buffered > HEADER_SIZE + self._max_payload + TRAILER_SIZE:
            raise LocalProtocolError(
                "receive_data called again without draining next_event()", ErrorCode.BAD_STATE
            )
        self._decoder.feed(data)

    def set_payload_allocator(self, allocate: Callable[[int], bytearray] | None) -> None:
        """Where large payloads are assembled: ``allocate(n)`` returns a bytearray of at least
        ``n`` bytes that nothing else uses (see ``FrameDecoder``); ``None``, a new one each
        (``payload_buffer``). A receiver that is done with a payload can so have its buffer
        used again."""
        self._decoder.allocate = allocate or payload_buffer

    def next_event(self) -> Event | NeedData:
        if self._error is not None:
            raise self._error
        if self._pending_end is not None:
            end, self._pending_end = self._pending_end, None
            return end
        item = self._decoder.next()
        if item is None:
            return NEED_DATA
        if isinstance(item, FrameError):
            if item.kind is FrameErrorKind.GARBAGE:
                # Garbage right after a bad frame of a known, other request is that frame's
                # body being skipped; otherwise it may be a frame whose marker was hit.
                if not self._garbage_explained:
                    self._garbage_run += item.skipped
                lossy = self._garbage_run >= _MIN_FRAME
            else:
                lossy = item.kind in _LOSSY and item.seq in (None, self._request_seq)
                self._garbage_explained = item.seq is not None and not lossy
            if lossy and self.role is Role.DOCK and self._request is not None:
                self._damaged = True
            return item
        self._garbage_run = 0
        self._garbage_explained = False
        try:
            return self._receive_frame(item)
        except RemoteProtocolError as exc:
            exc.frame_type, exc.frame_seq = item.type, item.seq
            if self.role is Role.DOCK:
                self._error = exc  # a camera that breaks the protocol gets no second chance
            else:
                # The camera answers a bad request with an Error reply and carries on.
                self._request_seq = item.seq
            raise

    def _receive_frame(self, frame: Frame) -> Event:
        if self.role is Role.DOCK:
            if frame.seq != self._request_seq or self._request is None or self._damaged:
                return StaleFrame(frame.type, frame.seq)
            self._check_before_decoding(frame)
        else:
            self._request_seq = frame.seq
        # decode_message reads through a Reader, which takes any buffer: a large payload is a
        # memoryview (see Frame) that ChunkData keeps a view of instead of a copy.
        msg = m.decode_message(frame.type, cast(bytes, frame.payload))
        peer = Role.CAMERA if self.role is Role.DOCK else Role.DOCK
        new_state = TRANSITIONS.get((self.state, peer, type(msg)))
        if new_state is None:
            raise RemoteProtocolError(
                f"{type(msg).__name__} not allowed in state {self.state.value}", ErrorCode.BAD_STATE
            )
        if self.role is Role.DOCK:
            self._check_reply(msg)
            if isinstance(msg, m.ChunkData):
                new_state = self._after_chunk_data()
                if new_state is not State.IN_CHUNK:
                    req = self._request
                    assert isinstance(req, m.ReadChunk)
                    self._pending_end = EndOfChunk(req.recording_id, req.index)
        else:
            self._request = msg
            if isinstance(msg, m.Hello):
                self.hello = msg
        self.state = new_state
        if self.role is Role.DOCK and new_state in STABLE_STATES:
            self._request = None
        return msg

    def _check_before_decoding(self, frame: Frame) -> None:
        """Dock: refuse a reply the state does not allow, or a page of more entries than asked
        for, before decoding it. Decoding builds objects several times the payload's size (a
        frame-filling event log: ~10x, and ~0.2 s at 1 MiB), so such a reply must cost no more
        than its bytes."""
        cls = m.MESSAGE_TYPES.get(frame.type)
        if cls is None:
            return  # decode_message names the unknown type
        if (self.state, Role.CAMERA, cls) not in TRANSITIONS:
            raise RemoteProtocolError(
                f"{cls.__name__} not allowed in state {self.state.value}", ErrorCode.BAD_STATE
            )
        at = _PAGE_COUNT_AT.get(frame.type)
        req = self._request
        if (at is not None and isinstance(req, m.ListRecordings | m.GetEventLog)
                and len(frame.payload) >= at + 2
                and int.from_bytes(frame.payload[at : at + 2], "big") > req.max_entries):
            raise RemoteProtocolError(
                f"{cls.__name__} of more entries than the {req.max_entries} asked for"
            )

    def _check_reply(self, msg: m.Message) -> None:
        req = self._request
        if isinstance(msg, m.Identity):
            assert isinstance(req, m.Hello)
            if msg.version not in req.versions:
                raise RemoteProtocolError(
                    f"camera chose version {msg.version}", ErrorCode.VERSION_UNSUPPORTED
                )
            if msg.max_payload > req.max_payload:
                raise RemoteProtocolError("camera raised max_payload above ours")
            self.identity = msg
            self._set_max_payload(msg.max_payload)
        elif isinstance(msg, m.ChunkHeader):
            assert isinstance(req, m.ReadChunk)
            if (msg.info.recording_id, msg.info.index) != (req.recording_id, req.index):
                raise RemoteProtocolError("chunk header is for another chunk", ErrorCode.SEQUENCE)
            if self.identity is not None and msg.info.camera_uid != self.identity.camera_uid:
                raise RemoteProtocolError("chunk header names another camera", ErrorCode.SEQUENCE)
            self._chunk_remaining = msg.info.size
            self._chunk_offset = 0
        elif isinstance(msg, m.ChunkData):
            self._take_chunk_data(msg, remote=True)
        elif isinstance(msg, m.Seal | m.Released):
            assert isinstance(req, m.GetSeal | m.Release)
            rid = msg.info.recording_id if isinstance(msg, m.Seal) else msg.recording_id
            if rid != req.recording_id:
                raise RemoteProtocolError("reply names another recording", ErrorCode.SEQUENCE)
        elif isinstance(msg, m.TimeReply):
            assert isinstance(req, m.TimeProbe)
            if msg.t0_us != req.t0_us:
                raise RemoteProtocolError("time reply echoes another probe", ErrorCode.SEQUENCE)
        elif isinstance(msg, m.RecordingList):
            assert isinstance(req, m.ListRecordings)
            if msg.start != req.start or len(msg.entries) > req.max_entries:
                raise RemoteProtocolError("listing page does not match the request")
        elif isinstance(msg, m.EventLog):
            assert isinstance(req, m.GetEventLog)
            if len(msg.entries) > req.max_entries or any(e.seq < req.since for e in msg.entries):
                raise RemoteProtocolError("event log page does not match the request")

    def _take_chunk_data(self, msg: m.ChunkData, *, remote: bool) -> None:
        err = RemoteProtocolError if remote else LocalProtocolError
        if msg.offset != self._chunk_offset:
            raise err(f"chunk data at offset {msg.offset}, expected {self._chunk_offset}",
                      ErrorCode.SEQUENCE)
        if len(msg.data) > self._chunk_remaining:
            raise err("chunk data runs past the chunk size", ErrorCode.SEQUENCE)
        self._chunk_offset += len(msg.data)
        self._chunk_remaining -= len(msg.data)

    def _after_chunk_data(self) -> State:
        """The state after a data frame: back to READY once the last byte went through."""
        if self._chunk_remaining:
            return State.IN_CHUNK
        return TRANSITIONS[(State.IN_CHUNK, Role.CAMERA, CHUNK_COMPLETE)]

    def _set_max_payload(self, value: int) -> None:
        self._max_payload = value
        self._decoder.max_payload = value

    # -- sending -----------------------------------------------------------------------------

    def send(self, msg: m.Message) -> bytes:
        """Encode ``msg`` as one frame, after checking it is legal now."""
        if self._error is not None:
            raise LocalProtocolError(f"connection failed earlier: {self._error}")
        new_state = TRANSITIONS.get((self.state, self.role, type(msg)))
        if new_state is None:
            raise LocalProtocolError(
                f"cannot send {type(msg).__name__} in state {self.state.value}", ErrorCode.BAD_STATE
            )
        self._check_our_limits(msg)
        if self.role is Role.DOCK:
            self._seq = (self._seq % 0xFFFF) + 1  # 1..65535; 0 is never a request
            seq = self._seq
        else:
            seq = self._request_seq or 0
        frame = encode_frame(msg.TYPE, seq, msg.encode(), self._max_payload)
        if self.role is Role.CAMERA:
            self._check_camera_reply(msg)  # after encoding: a refused frame changes nothing
        self.state = new_state
        if self.role is Role.DOCK:
            self._request, self._request_seq, self._damaged = msg, seq, False
            if isinstance(msg, m.Hello):
                self.hello = msg
        else:
            if isinstance(msg, m.Identity):
                self.identity = msg
                self._set_max_payload(msg.max_payload)
            if isinstance(msg, m.ChunkData):
                self.state = self._after_chunk_data()
            if self.state in STABLE_STATES:
                self._request = None
        return frame

    def _check_our_limits(self, msg: m.Message) -> None:
        """HELLO/IDENTITY may only offer what this connection was built to accept."""
        if isinstance(msg, m.Hello | m.Identity):
            offered = msg.versions if isinstance(msg, m.Hello) else (msg.version,)
            if not set(offered) <= set(self.versions):
                raise LocalProtocolError(f"version(s) {offered} not in {self.versions}")
            if msg.max_payload > self.our_max_payload:
                raise LocalProtocolError(
                    f"max_payload {msg.max_payload} above this connection's {self.our_max_payload}"
                )

    def _check_camera_reply(self, msg: m.Message) -> None:
        if isinstance(msg, m.Identity):
            hello = self.hello
            assert hello is not None
            if msg.version not in hello.versions or msg.max_payload > hello.max_payload:
                raise LocalProtocolError("identity must pick an offered version and frame size")
        elif isinstance(msg, m.ChunkHeader):
            self._chunk_remaining = msg.info.size
            self._chunk_offset = 0
        elif isinstance(msg, m.ChunkData):
            self._take_chunk_data(msg, remote=False)

    def send_chunk(self, header: m.ChunkHeader, data: bytes | memoryview) -> list[bytes]:
        """Camera side: the header frame then as many data frames as the frame size needs."""
        if len(data) != header.info.size:
            raise LocalProtocolError("chunk data length differs from the signed size")
        frames = [self.send(header)]
        step = self.chunk_data_max
        view = memoryview(data)
        for offset in range(0, len(data), step):
            frames.append(self.send(m.ChunkData(offset, view[offset : offset + step])))
        return frames

    def cancel(self) -> None:
        """Dock side: abandon the outstanding request; late replies to it become StaleFrames."""
        if self.role is not Role.DOCK:
            raise LocalProtocolError("only the dock cancels requests")
        new_state = TRANSITIONS.get((self.state, self.role, CANCEL))
        if new_state is None:
            raise LocalProtocolError(f"nothing to cancel in state {self.state.value}")
        self.state = new_state
        self._request = None
        self._request_seq = None
        self._damaged = False
        self._chunk_remaining = 0
        self._pending_end = None
        self._garbage_run = 0
        self._garbage_explained = False
        # Whatever is buffered arrived before the next request exists, so it cannot be part of
        # the next reply; a truncated frame left here would otherwise damage that reply too.
        self._decoder.discard()

