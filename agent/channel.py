"""Request/reply over a transport: timeouts, damaged replies and retries (the transaction layer).

``firmware_protocol`` knows no clocks; this is where a request gets a deadline. Every request is
idempotent (docs/protocol.md §2.3), so a reply that timed out or was damaged on the line is
cancelled and the request sent again, at most ``retries`` more times.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from firmware_protocol import messages as m
from firmware_protocol.connection import NEED_DATA, Connection, EndOfChunk, StaleFrame
from firmware_protocol.errors import ErrorCode, RemoteProtocolError
from firmware_protocol.frames import FrameError, FrameErrorKind

from .transports.base import Transport

__all__ = [
    "CameraErrorReply",
    "Channel",
    "ChannelStats",
    "ChunkSink",
    "ProtocolViolation",
    "ReplyTimeout",
    "SessionError",
]

log = logging.getLogger(__name__)

T = TypeVar("T", bound=m.Message)

# A chunk must arrive at no less than this rate: a camera dripping one byte per timeout would
# otherwise hold a slot forever (the per-frame timeout restarts on every data frame).
MIN_CHUNK_RATE = 8 * 1024


class SessionError(Exception):
    """The session with this camera cannot go on."""


class ReplyTimeout(SessionError):
    pass


class ProtocolViolation(SessionError):
    def __init__(self, error: RemoteProtocolError) -> None:
        super().__init__(str(error))
        self.code = error.code


class CameraErrorReply(Exception):
    """The camera answered a request with ERROR (not fatal by itself)."""

    def __init__(self, reply: m.Error) -> None:
        super().__init__(f"camera error {reply.code}: {reply.message}")
        self.code = reply.code
        self.message = reply.message


class ChunkSink(Protocol):
    """Receives one chunk as it streams in; raising aborts the request (no retry)."""

    def begin(self, header: m.ChunkHeader) -> None: ...

    def data(self, data: bytes | memoryview) -> None: ...

    def reset(self) -> None:
        """A damaged reply is being retried: forget what ``begin``/``data`` saw."""


@dataclass
class ChannelStats:
    frame_errors: int = 0
    garbage_bytes: int = 0
    stale_frames: int = 0
    retries: int = 0
    bytes_in: int = 0


class _Retry(Exception):
    """An attempt failed: ``damage`` is the frame error that damaged the reply, None when the
    reply timed out."""

    def __init__(self, damage: FrameError | None = None) -> None:
        super().__init__()
        self.damage = damage

    @property
    def reason(self) -> str:
        return "timeout" if self.damage is None else self.damage.kind.value


class Channel:
    def __init__(
        self,
        transport: Transport,
        connection: Connection,
        *,
        timeout_s: float,
        retries: int = 3,
        read_size: int = 1 << 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.transport = transport
        self.connection = connection
        self.timeout_s = timeout_s
        self.retries = retries
        self.read_size = read_size
        self.stats = ChannelStats()
        self._clock = clock

    def request(self, msg: m.Message, expect: type[T]) -> T:
        """Send ``msg`` and return its reply; ``CameraErrorReply`` if the camera refused it."""
        failures: list[_Retry] = []
        garbage = self.stats.garbage_bytes
        for _attempt in self._attempts(msg):
            try:
                reply = self._await_message(self._clock() + self.timeout_s)
            except _Retry as failed:
                failures.append(failed)
                continue
            if isinstance(reply, m.Error):
                raise CameraErrorReply(reply)
            if not isinstance(reply, expect):
                raise SessionError(f"expected {expect.__name__}, got {type(reply).__name__}")
            return reply
        raise self._gave_up(f"no valid reply to {type(msg).__name__}", failures, garbage)

    def read_chunk(self, recording_id: bytes, index: int, sink: ChunkSink) -> m.ChunkHeader:
        """Stream one chunk into ``sink``; returns its header once every byte arrived."""
        msg = m.ReadChunk(recording_id, index)
        failures: list[_Retry] = []
        garbage = self.stats.garbage_bytes
        for _attempt in self._attempts(msg):
            try:
                return self._stream_chunk(sink)
            except _Retry as failed:
                failures.append(failed)
                sink.reset()
            except Exception:
                # The sink refused the chunk: abandon the reply so the session can go on.
                if self.connection.outstanding is not None:
                    self.connection.cancel()
                raise
        raise self._gave_up(f"chunk {index} not received", failures, garbage)

    # -- internals ---------------------------------------------------------------------------

    def _gave_up(self, what: str, failures: Sequence[_Retry], garbage_before: int
                 ) -> SessionError:
        """What ends the session once every attempt at a request failed, saying how they failed.

        A header announcing a payload above the maximum is not line noise (its header CRC held):
        if one of the attempts got such a frame, the camera broke the protocol, and that is
        reported (``FRAME_TOO_LARGE``). Otherwise it is a ``ReplyTimeout`` listing each attempt's
        failure (``timeout``, or the frame error that damaged it) and the garbage bytes the
        attempts hunted through.
        """
        tries = f"{what} after {len(failures)} tries"
        oversize = [f.damage for f in failures
                    if f.damage is not None and f.damage.kind is FrameErrorKind.TOO_LARGE]
        if oversize:
            return ProtocolViolation(RemoteProtocolError(
                f"{tries}: the camera announced a frame above the maximum ({oversize[-1].detail})",
                ErrorCode.FRAME_TOO_LARGE))
        how = ", ".join(f.reason for f in failures)
        garbage = self.stats.garbage_bytes - garbage_before
        return ReplyTimeout(f"{tries} ({how}{f'; {garbage} bytes of garbage' if garbage else ''})")

    def _attempts(self, msg: m.Message) -> Iterator[int]:
        return _AttemptRange(self, msg)

    def _stream_chunk(self, sink: ChunkSink) -> m.ChunkHeader:
        deadline = self._clock() + self.timeout_s
        header = self._await_message(deadline)
        if isinstance(header, m.Error):
            raise CameraErrorReply(header)
        if not isinstance(header, m.ChunkHeader):
            raise SessionError(f"expected ChunkHeader, got {type(header).__name__}")
        # A chunk the sink refuses is still read to its end, and dropped: cancelled mid-stream,
        # its rest would stay on the line, be hunted through as garbage and count as damage to
        # the next reply (a lost timeout, or all retries used up at once on false markers).
        refused: Exception | None = None
        try:
            sink.begin(header)
        except Exception as exc:
            refused = exc
        hard_deadline = self._clock() + self.timeout_s + header.info.size / MIN_CHUNK_RATE
        while True:
            deadline = min(self._clock() + self.timeout_s, hard_deadline)
            try:
                event = self._await_event(deadline)
            except _Retry:
                if refused is not None:
                    raise refused from None  # read_chunk cancels what is left of it
                raise
            if isinstance(event, m.ChunkData):
                if refused is None:
                    try:
                        sink.data(event.data)
                    except Exception as exc:
                        refused = exc
            elif isinstance(event, EndOfChunk):
                if refused is not None:
                    raise refused
                return header
            else:
                raise SessionError(f"unexpected {type(event).__name__} inside a chunk")

    def _await_message(self, deadline: float) -> m.Message:
        event = self._await_event(deadline)
        if isinstance(event, EndOfChunk):
            raise SessionError("end of chunk outside a chunk")
        return event

    def _await_event(self, deadline: float) -> m.Message | EndOfChunk:
        conn = self.connection
        while True:
            try:
                event = conn.next_event()
            except RemoteProtocolError as exc:
                raise ProtocolViolation(exc) from None
            if event is NEED_DATA:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    log.info("slot=%s reply timeout", self.transport.slot)
                    raise _Retry()
                data = self.transport.read(self.read_size, remaining)
                if data:
                    self.stats.bytes_in += len(data)
                    conn.receive_data(data)
                continue
            if isinstance(event, FrameError):
                self.stats.frame_errors += 1
                if event.kind is FrameErrorKind.GARBAGE:
                    self.stats.garbage_bytes += event.skipped
                elif conn.outstanding is not None:
                    log.info("slot=%s damaged reply (%s)", self.transport.slot, event.kind.value)
                    raise _Retry(event)
                continue
            if isinstance(event, StaleFrame):
                self.stats.stale_frames += 1
                continue
            return event


class _AttemptRange:
    """Iterates over send attempts: cancels a failed attempt and re-sends the request."""

    def __init__(self, channel: Channel, msg: m.Message) -> None:
        self._channel = channel
        self._msg = msg
        self._n = 0

    def __iter__(self) -> _AttemptRange:
        return self

    def __next__(self) -> int:
        ch = self._channel
        if self._n > 0:
            ch.connection.cancel()
            if self._n > ch.retries:
                raise StopIteration
            ch.stats.retries += 1
        self._n += 1
        ch.transport.write(ch.connection.send(self._msg))
        return self._n

