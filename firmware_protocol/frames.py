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
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from .errors import ErrorCode, LocalProtocolError

__all__ = [
    "ABS_MAX_PAYLOAD",
    "DIRECT_MIN",
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
    "payload_buffer",
]

MAGIC = b"\xb7\xc3"
PROTOCOL_VERSION = 1
HEADER_SIZE = 14
TRAILER_SIZE = 4
INITIAL_MAX_PAYLOAD = 4096  # in force until HELLO/IDENTITY negotiated a larger one
ABS_MAX_PAYLOAD = 16 * 1024 * 1024
# Payloads at least this large are assembled in place (see FrameDecoder): below it, one more
# copy costs less than a buffer of their own.
DIRECT_MIN = 16 * 1024
# What the decoder's own buffer may keep of its capacity once drained.
_KEEP_BUFFER = 64 * 1024
# Copies into a bytearray go through a memoryview of it: ``buf[a:b] = view`` makes CPython turn
# ``view`` into a new bytearray first (a second copy and a frame-sized temporary per read),
# while a memoryview's slice assignment is one memmove, overlapping ranges included.

_HEAD = struct.Struct(">2sBBHI")  # the 10 bytes covered by hcrc
_U32 = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class Frame:
    type: int
    seq: int
    # A large payload is a read-only view of a buffer the decoder assembled it in and then let
    # go of: it stays valid and unchanged for as long as the receiver holds it.
    payload: bytes | memoryview


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


def encode_frame(msg_type: int, seq: int, payload: bytes | bytearray | memoryview,
                 max_payload: int) -> bytes:
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

    Callers feed a bounded read, then call :meth:`next` until it returns ``None``. Until then
    the decoder may read the fed object in place, so it must not change before that (nor before
    the next :meth:`feed` or :meth:`discard`); whatever is left of it is copied when ``next``
    needs more data.

    A frame of at least ``direct_min`` payload bytes whose body is still incomplete when its
    header checked out is assembled in place: it gets a buffer of its own from ``allocate``
    (``allocate(n)`` returns a bytearray of at least ``n`` bytes that nothing else uses; by
    default a new one), the body bytes already here are moved into it and later feeds are copied
    straight there, and that buffer becomes the frame's payload, never touched by the decoder
    again. Each byte of a chunk is thus copied once, and the decoder holds at most one frame plus
    the last feed. If the frame fails its CRC, the decoder keeps the buffer and hunts through it.
    """

    def __init__(self, max_payload: int = INITIAL_MAX_PAYLOAD, *,
                 direct_min: int = DIRECT_MIN) -> None:
        # Bytes kept across feeds: headers, small frames, garbage being hunted through. One
        # buffer, grown as needed and reused: a fresh one per read costs page faults.
        self._buf = bytearray(HEADER_SIZE + INITIAL_MAX_PAYLOAD + TRAILER_SIZE)
        self._pos = 0  # start of unconsumed data in _buf
        self._end = 0  # end of valid data; bytes past it are spare capacity
        # The last feed, read in place (only while _buf holds nothing).
        self._ext: memoryview | None = None
        self._xpos = 0
        # The frame being assembled in place: its header, and its payload filled so far.
        self._head = b""
        self._body: bytearray | None = None
        self._length = 0
        self._filled = 0
        # After a frame assembled in place failed its CRC, its body is hunted through as _buf;
        # what followed it waits here (so _buf never grows, see _fail_in_place), and _carry
        # counts the failed header's bytes already skipped, reported with the next GARBAGE.
        self._tail: memoryview | None = None
        self._carry = 0
        self.max_payload = max_payload
        self.direct_min = direct_min
        self.allocate: Callable[[int], bytearray] = payload_buffer

    @property
    def buffered(self) -> int:
        n = self._end - self._pos
        if self._ext is not None:
            n += len(self._ext) - self._xpos
        if self._body is not None:
            n += HEADER_SIZE + self._filled
        if self._tail is not None:
            n += len(self._tail)
        return n

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if not len(data):
            return
        view = memoryview(data).cast("B")
        body = self._body
        if body is not None and self._filled < self._length:
            # The rest of a frame being assembled in place goes straight to its payload.
            k = min(len(view), self._length - self._filled)
            with view[:k] as part, memoryview(body) as dst:
                dst[self._filled : self._filled + k] = part
            self._filled += k
            if k == len(view):
                view.release()
                return
            rest = view[k:]
            view.release()
            view = rest
        if self._ext is not None:
            self._spill()  # fed again before next() drained the last feed
        if self._pos == self._end:
            self._ext, self._xpos = view, 0
        else:
            self._append(view)
            view.release()

    def next(self) -> Frame | FrameError | None:
        """The next frame, a framing error, or ``None`` when more data is needed."""
        if self._body is not None:
            return self._finish_in_place()
        ext = self._ext
        src: bytearray | memoryview
        if ext is not None:
            src, pos, end = ext, self._xpos, len(ext)
        else:
            src, pos, end = self._buf, self._pos, self._end
        if end - pos < 2 and (end == pos or src[pos] == 0xB7):
            # a lone byte is kept only if it may start a marker
            return self.next() if self._need_more() else None
        if src[pos] != 0xB7 or src[pos + 1] != 0xC3:
            return self._hunt()
        if self._carry:
            return self._garbage(0)
        if end - pos < HEADER_SIZE:
            return self.next() if self._need_more() else None
        _, version, msg_type, seq, length = _HEAD.unpack_from(src, pos)
        with memoryview(src) as view:
            hcrc_ok = zlib.crc32(view[pos : pos + 10]) == _U32.unpack_from(src, pos + 10)[0]
        if not hcrc_ok or version != PROTOCOL_VERSION:
            self._advance(pos + 1)
            detail = "header CRC mismatch" if not hcrc_ok else f"unknown version {version}"
            return FrameError(FrameErrorKind.BAD_HEADER, 1, detail)
        if length > self.max_payload:
            # Rejected before buffering the body: skip only the header and hunt on.
            self._advance(pos + HEADER_SIZE)
            return FrameError(
                FrameErrorKind.TOO_LARGE, HEADER_SIZE, f"length {length} > {self.max_payload}",
                seq,
            )
        total = HEADER_SIZE + length + TRAILER_SIZE
        body = pos + HEADER_SIZE
        if end - pos < total:
            if length >= self.direct_min and end - body < length:
                self._assemble_in_place(src, pos, end, length)
                return self._finish_in_place()
            return self.next() if self._need_more() else None
        with memoryview(src) as view:
            payload_view = view[body : body + length]
            head_crc = zlib.crc32(view[pos:body])
            crc_ok = (zlib.crc32(payload_view, head_crc)
                      == _U32.unpack_from(src, body + length)[0])
            payload = bytes(payload_view) if crc_ok else b""
            payload_view.release()
        if not crc_ok:
            # The body may hold the start of the next frame (truncated frame): resume just
            # past this marker rather than past the declared length.
            self._advance(pos + 1)
            return FrameError(FrameErrorKind.BAD_CRC, 1, f"type {msg_type} seq {seq}", seq)
        self._advance(pos + total)
        return Frame(msg_type, seq, payload)

    def discard(self) -> None:
        """Drop everything buffered (the dock abandoned the reply it belonged to)."""
        self._release_ext()
        if self._tail is not None:
            self._tail.release()
        self._body = self._tail = None
        self._carry = 0
        self._pos = self._end = 0

    # -- internals ---------------------------------------------------------------------------

    def _hunt(self) -> FrameError:
        """Skip garbage up to the next start marker (searched in _buf: garbage is rare)."""
        self._spill()
        buf, pos, end = self._buf, self._pos, self._end
        found = buf.find(MAGIC, pos, end)
        if found < 0:
            # Keep a trailing 0xB7: it may be the first half of a marker.
            keep = 1 if buf[end - 1] == 0xB7 else 0
            self._consume(end - keep)
            if self._tail is not None:  # one run of garbage, one event, as if never split
                self._carry += end - keep - pos
                self._take_tail()
                return self._hunt()
            return self._garbage(end - keep - pos)
        self._consume(found)
        return self._garbage(found - pos)

    def _garbage(self, skipped: int) -> FrameError:
        skipped, self._carry = skipped + self._carry, 0
        return FrameError(FrameErrorKind.GARBAGE, skipped)

    def _assemble_in_place(self, src: bytearray | memoryview, pos: int, end: int,
                           length: int) -> None:
        body_at = pos + HEADER_SIZE
        have = end - body_at
        with memoryview(src) as view:
            self._head = bytes(view[pos:body_at])
        if src is self._buf and len(self._buf) > _KEEP_BUFFER:
            # _buf grew (a failed frame's body, a burst hunted through) and holds the start of
            # this body: it becomes the body rather than be kept beside a second one.
            body = self._buf
            with memoryview(body) as view:
                view[:have] = view[body_at:end]  # memmove
            self._buf = bytearray(HEADER_SIZE + INITIAL_MAX_PAYLOAD + TRAILER_SIZE)
            self._pos = self._end = 0
            _resize(body, length)
        else:
            body = self.allocate(length)
            with memoryview(src) as view, memoryview(body) as dst:
                dst[:have] = view[body_at:end]
            self._advance(end)
            self._shrink()  # what _buf held is in the body now: its grown capacity must go
        self._body, self._length, self._filled = body, length, have
        tail, self._tail = self._tail, None
        if tail is not None:
            with tail:
                self.feed(tail)

    def _finish_in_place(self) -> Frame | FrameError | None:
        body = self._body
        assert body is not None
        if self._filled < self._length:
            return None  # every byte fed since went into the body: nothing else is held
        ext = self._ext
        src: bytearray | memoryview
        if ext is not None:
            src, pos, end = ext, self._xpos, len(ext)
        else:
            src, pos, end = self._buf, self._pos, self._end
        if end - pos < TRAILER_SIZE:
            return self._finish_in_place() if self._need_more() else None
        head = self._head
        _, _, msg_type, seq, _ = _HEAD.unpack_from(head)
        self._body = None
        payload = memoryview(body)[: self._length].toreadonly()
        if zlib.crc32(payload, zlib.crc32(head)) == _U32.unpack_from(src, pos)[0]:
            self._advance(pos + TRAILER_SIZE)
            return Frame(msg_type, seq, payload)
        payload.release()
        self._fail_in_place(head, body, src, pos, end)
        return FrameError(FrameErrorKind.BAD_CRC, 1, f"type {msg_type} seq {seq}", seq)

    def _fail_in_place(self, head: bytes, body: bytearray, src: bytearray | memoryview,
                       pos: int, end: int) -> None:
        """As for a frame decoded whole, hunt on from just past its marker: through the rest of
        its header, its body and what followed.

        The body's buffer becomes _buf (it was never handed out), so the failed frame is not
        held twice. It never grows: a frame-sized bytearray grown by a few bytes over-allocates
        an eighth. So the header's bytes are skipped (counted in _carry) unless a start marker
        hides in them, and what followed the body waits in _tail until _buf runs dry.
        """
        with memoryview(src) as view:
            # The trailer and the rest of the read, in place: a copy would hold that read
            # twice. The tail is always taken before ``next`` returns None, which is when the
            # caller may reuse its buffer (the old _buf, if it was that, is simply kept alive).
            tail = view[pos:end]
        self._advance(end)
        del body[self._length :]
        with memoryview(body) as view, view[:1] as first:
            hidden = (head[1:] + first).find(MAGIC)
        if hidden >= 0:
            body[:0] = head[1 + hidden :]  # only a crafted header hides a marker
        self._carry = hidden if hidden >= 0 else HEADER_SIZE - 1
        self._buf, self._pos, self._end = body, 0, len(body)
        self._tail = tail

    def _need_more(self) -> bool:
        """``next`` is out of _buf. True when the tail was moved in (``next`` goes on);
        otherwise keep what is left of the last feed, which the caller may now reuse."""
        if self._tail is not None:
            self._take_tail()
            return True
        self._spill()
        self._shrink()
        return False

    def _take_tail(self) -> None:
        tail, self._tail = self._tail, None
        if tail is not None:
            with tail:
                self._append(tail)

    def _shrink(self) -> None:
        if self._pos == self._end and len(self._buf) > _KEEP_BUFFER:
            # A burst of garbage or a big frame received whole grew it: give that back.
            self._buf = bytearray(HEADER_SIZE + INITIAL_MAX_PAYLOAD + TRAILER_SIZE)
            self._pos = self._end = 0

    def _spill(self) -> None:
        ext = self._ext
        if ext is None:
            return
        if self._xpos < len(ext):
            with ext[self._xpos :] as rest:
                self._append(rest)
        self._release_ext()

    def _release_ext(self) -> None:
        if self._ext is not None:
            self._ext.release()  # the caller may resize its buffer again
            self._ext = None

    def _append(self, data: bytes | bytearray | memoryview) -> None:
        n = len(data)
        buf = self._buf
        if self._end + n > len(buf):
            live = self._end - self._pos
            if self._pos:
                with memoryview(buf) as view:
                    view[:live] = view[self._pos : self._end]  # memmove
                self._pos, self._end = 0, live
            if live + n > len(buf):
                del buf[self._end :]  # grow by appending: no zero-filled temporary
                buf += data
                self._end += n
                return
        with memoryview(buf) as view:
            view[self._end : self._end + n] = data
        self._end += n

    def _advance(self, new_pos: int) -> None:
        """Consume up to ``new_pos`` of whichever buffer ``next`` is reading."""
        if self._ext is not None:
            self._xpos = new_pos
            if new_pos >= len(self._ext):
                self._release_ext()
        else:
            self._consume(new_pos)

    def _consume(self, new_pos: int) -> None:
        if new_pos >= self._end:
            self._pos = self._end = 0
        else:
            self._pos = new_pos


_ZEROS = bytes(64 * 1024)


def _resize(buf: bytearray, size: int) -> None:
    """Make ``buf`` exactly ``size`` bytes long in place: growing it in steps never allocates a
    temporary as large as the growth."""
    if len(buf) >= size:
        del buf[size:]
        return
    while len(buf) < size:
        buf += _ZEROS[: size - len(buf)]  # at most 64 KiB at a time


def payload_buffer(size: int) -> bytearray:
    """The default ``FrameDecoder.allocate``: ``size`` bytes with room for a header's more
    behind them, so that hunting through a failed frame (which may put back up to 12 bytes of
    its header in front) never reallocates, and so never over-allocates, a frame-sized buffer."""
    buf = bytearray(size + HEADER_SIZE)
    del buf[size:]  # a bytearray keeps its capacity when shortened by less than half
    return buf
