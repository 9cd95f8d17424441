"""Frame layer: start marker, version, type, sequence number, length, header CRC, payload, CRC.

Header (14 bytes, big-endian)::

    0  magic    2  B7 C3
    2  version  1  protocol version of this frame (1)
    3  type     1  message type
    4  seq      2  request sequence number (replies echo it)
    6  length   4  payload length
   10  hcrc     4  CRC-32 of bytes 0..9

then ``length`` payload bytes and a CRC-32 over the whole frame before it (header, header CRC and
payload; 4 bytes). CRC-32 is the IEEE 802.3 polynomial (zlib's). The header has its own CRC so
that a decoder hunting through garbage never trusts a length it found by accident: a bogus length
would otherwise make it wait for, and swallow, up to one maximum frame of good data. The trailer
covers the header too, so that the header of one frame and the body of another (bytes lost in
between) never combine into a frame that passes both checks.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from enum import Enum

from .errors import ErrorCode, LocalProtocolError

__all__ = [
    "ABS_MAX_PAYLOAD",
    "HEADER_SIZE",
    "INITIAL_MAX_PAYLOAD",
    "MAGIC",
    "PROTOCOL_VERSION",
    "TRAILER_SIZE",
    "Frame",
    "FrameDecoder",
    "FrameError",
    "FrameErrorKind",
    "encode_frame",
]

MAGIC = b"\xb7\xc3"
PROTOCOL_VERSION = 1
HEADER_SIZE = 14
TRAILER_SIZE = 4
INITIAL_MAX_PAYLOAD = 4096  # in force until HELLO/IDENTITY negotiated a larger one
ABS_MAX_PAYLOAD = 16 * 1024 * 1024

_HEAD = struct.Struct(">2sBBHI")  # the 10 bytes covered by hcrc
_U32 = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class Frame:
    type: int
    seq: int
    payload: bytes


class FrameErrorKind(Enum):
    GARBAGE = "garbage"  # bytes before a start marker
    BAD_HEADER = "bad_header"  # start marker found but header CRC or version wrong
    TOO_LARGE = "too_large"  # declared length above the negotiated maximum
    BAD_CRC = "bad_crc"  # payload CRC mismatch: corrupted or truncated frame


@dataclass(frozen=True, slots=True)
class FrameError:
    """A recoverable framing problem: the decoder skipped ``skipped`` bytes and hunts on."""

    kind: FrameErrorKind
    skipped: int
    detail: str = ""
    seq: int | None = None  # known when the header CRC held (too_large, bad_crc)


def encode_frame(msg_type: int, seq: int, payload: bytes, max_payload: int) -> bytes:
    if len(payload) > max_payload:
        raise LocalProtocolError(
            f"payload of {len(payload)} bytes exceeds the frame maximum {max_payload}",
            ErrorCode.FRAME_TOO_LARGE,
        )
    head = _HEAD.pack(MAGIC, PROTOCOL_VERSION, msg_type, seq & 0xFFFF, len(payload))
    head += _U32.pack(zlib.crc32(head))
    return b"".join((head, payload, _U32.pack(zlib.crc32(payload, zlib.crc32(head)))))


class FrameDecoder:
    """Incremental decoder that resynchronises on the next start marker after any error.

    It holds at most one maximum frame plus whatever the caller fed since the last drained event:
    callers feed a bounded read, then call :meth:`next` until it returns ``None``.
    """

    def __init__(self, max_payload: int = INITIAL_MAX_PAYLOAD) -> None:
        # One buffer for the connection's lifetime, grown but never shrunk: allocating a fresh
        # large buffer per read costs page faults that dominate the decoder's CPU time.
        self._buf = bytearray(HEADER_SIZE + max_payload + TRAILER_SIZE)
        self._pos = 0  # start of unconsumed data
        self._end = 0  # end of valid data; bytes past it are spare capacity
        self.max_payload = max_payload

    @property
    def buffered(self) -> int:
        return self._end - self._pos

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        n = len(data)
        buf = self._buf
        if self._end + n > len(buf):
            live = self._end - self._pos
            if self._pos:
                with memoryview(buf) as view:
                    buf[:live] = view[self._pos : self._end]  # memmove, no temporary copy
                self._pos, self._end = 0, live
            if live + n > len(buf):
                buf.extend(bytes(live + n - len(buf)))
        buf[self._end : self._end + n] = data
        self._end += n

    def next(self) -> Frame | FrameError | None:
        """The next frame, a framing error, or ``None`` when more data is needed."""
        buf = self._buf
        pos = self._pos
        end = self._end
        if end - pos < 2 and (end == pos or buf[pos] == 0xB7):
            return None  # a lone byte is kept only if it may start a marker
        if buf[pos] != 0xB7 or buf[pos + 1] != 0xC3:
            found = buf.find(MAGIC, pos, end)
            if found < 0:
                # Keep a trailing 0xB7: it may be the first half of a marker.
                keep = 1 if buf[end - 1] == 0xB7 else 0
                self._consume(end - keep)
                return FrameError(FrameErrorKind.GARBAGE, end - keep - pos)
            self._consume(found)
            return FrameError(FrameErrorKind.GARBAGE, found - pos)
        if end - pos < HEADER_SIZE:
            return None
        _, version, msg_type, seq, length = _HEAD.unpack_from(buf, pos)
        with memoryview(buf) as view:
            hcrc_ok = zlib.crc32(view[pos : pos + 10]) == _U32.unpack_from(buf, pos + 10)[0]
        if not hcrc_ok or version != PROTOCOL_VERSION:
            self._consume(pos + 1)
            detail = "header CRC mismatch" if not hcrc_ok else f"unknown version {version}"
            return FrameError(FrameErrorKind.BAD_HEADER, 1, detail)
        if length > self.max_payload:
            # Rejected before buffering the body: skip only the header and hunt on.
            self._consume(pos + HEADER_SIZE)
            return FrameError(
                FrameErrorKind.TOO_LARGE, HEADER_SIZE, f"length {length} > {self.max_payload}",
                seq,
            )
        total = HEADER_SIZE + length + TRAILER_SIZE
        if end - pos < total:
            return None
        body = pos + HEADER_SIZE
        with memoryview(buf) as view:
            payload_view = view[body : body + length]
            head_crc = zlib.crc32(view[pos:body])
            crc_ok = (zlib.crc32(payload_view, head_crc)
                      == _U32.unpack_from(buf, body + length)[0])
            payload = bytes(payload_view) if crc_ok else b""
            payload_view.release()
        if not crc_ok:
            # The body may hold the start of the next frame (truncated frame): resume just
            # past this marker rather than past the declared length.
            self._consume(pos + 1)
            return FrameError(FrameErrorKind.BAD_CRC, 1, f"type {msg_type} seq {seq}", seq)
        self._consume(pos + total)
        return Frame(msg_type, seq, payload)

    def discard(self) -> None:
        """Drop everything buffered (the dock abandoned the reply it belonged to)."""
        self._pos = self._end = 0

    def _consume(self, new_pos: int) -> None:
        if new_pos >= self._end:
            self._pos = self._end = 0
        else:
            self._pos = new_pos
