"""Line faults: what happens to the camera's output bytes between the session and the wire.

Transport-agnostic: a front end hands every reply frame to :meth:`LineShaper.shape` and writes
what comes back, then looks at :attr:`LineShaper.state` to learn whether the line was "unplugged"
or the camera "stalled". Byte counts are of bytes handed to the line, noise included.

A stalled camera stays stalled for the rest of the run, even if the host closes and reopens the
port: it is hung, not merely slow. So does a flooding one (``endless-garbage``): it stopped
answering and sends random bytes (never 0xB7, see :meth:`LineShaper.flood`) for as long as the
line takes them; the front end asks for them only when the line is writable, so the flood costs
the emulator no memory.

Noise (``garbage-every``) is only ever inserted *between* frames and never contains the byte
0xB7, so it cannot form a start marker or a header: the dock's decoder reports it as GARBAGE and
resynchronises on the next frame without losing anything.

Frame rewrites (hostile cameras): ``malformed`` cuts the payload of the named replies to their
first three bytes (or by one byte, if that is shorter), and ``oversize-length`` makes every header
sent from its byte on announce a payload of 4 GiB - 1; both keep the header CRC and the frame CRC
valid, so only the content is wrong. Pacing (``slowloris``) is the front end's
(``pump.ReplyQueue``): from its byte on, one byte is written every so many milliseconds.
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

from firmware_protocol.frames import ABS_MAX_PAYLOAD, HEADER_SIZE, TRAILER_SIZE, encode_frame

__all__ = ["NOISE_MAX", "OVERSIZE_LENGTH", "LineFaults", "LineShaper", "LineState"]

NOISE_MAX = 8  # bytes per burst
_NOISE_ALPHABET = bytes(b for b in range(256) if b != 0xB7)  # 0xB7 starts the frame marker
_NO_MARKER = bytes.maketrans(b"\xb7", b"\x37")  # a flood is random bytes but 0xB7
OVERSIZE_LENGTH = 0xFFFF_FFFF  # what an oversize-length header announces
# Payload bytes a malformed reply keeps (one fewer if it had no more): no camera message decodes
# from that.
MALFORMED_KEEP = 3
_HEAD = struct.Struct(">2sBBHI")  # magic, version, type, seq, length: what hcrc covers


class LineState(Enum):
    OPEN = "open"
    STALLED = "stalled"  # the camera stopped answering; the line stays up
    FLOODING = "flooding"  # the camera stopped answering and sends random bytes without end
    UNPLUGGED = "unplugged"  # the line must be closed once the bytes returned so far are written


@dataclass(frozen=True, slots=True)
class LineFaults:
    unplug_after_bytes: int | None = None
    stall_after_bytes: int | None = None
    garbage_every: int | None = None
    endless_garbage_after: int | None = None
    oversize_after: int | None = None
    slowloris_ms: int | None = None  # one byte every this many ms …
    slowloris_after: int = 0  # … from this byte on
    malformed: frozenset[int] = field(default_factory=frozenset)  # reply types cut short


class LineShaper:
    def __init__(self, faults: LineFaults = LineFaults(), seed: int | bytes = 0) -> None:
        self._faults = faults
        self._rng = random.Random(seed)
        self.state = LineState.OPEN
        self.written = 0  # bytes handed to the line in total
        self.noise_bursts = 0
        self._since_noise = 0

    @property
    def faults(self) -> LineFaults:
        return self._faults

    def shape(self, frames: Sequence[bytes]) -> list[bytes]:
        """The bytes to write for ``frames``: possibly rewritten, with noise, cut short."""
        out: list[bytes] = []
        every = self._faults.garbage_every
        for frame in frames:
            if self.state is not LineState.OPEN:
                break
            frame = self._rewrite(frame)
            if every is not None and self._since_noise >= every:
                self._since_noise = 0
                self.noise_bursts += 1
                size = self._rng.randint(1, NOISE_MAX)
                self._emit(bytes(self._rng.choices(_NOISE_ALPHABET, k=size)), out)
            if self.state is LineState.OPEN:
                self._since_noise += len(frame)
                self._emit(frame, out)
        return out

    def flood(self, size: int) -> bytes:
        """``size`` random bytes for a flooding line (counted as written), without 0xB7: the
        dock never finds a frame start in them, has no frame error to end its wait early, and
        hunts through all of it until its reply timeout."""
        self.written += size
        return self._rng.randbytes(size).translate(_NO_MARKER)

    def _rewrite(self, frame: bytes) -> bytes:
        """The frame as a hostile camera sends it (CRCs valid): cut short, or oversized."""
        faults = self._faults
        if frame[3] in faults.malformed:
            _, _, msg_type, seq, length = _HEAD.unpack_from(frame)
            keep = max(0, min(MALFORMED_KEEP, length - 1))
            frame = encode_frame(msg_type, seq, frame[HEADER_SIZE : HEADER_SIZE + keep],
                                 ABS_MAX_PAYLOAD)
        if faults.oversize_after is not None and self.written >= faults.oversize_after:
            magic, version, msg_type, seq, _ = _HEAD.unpack_from(frame)
            head = _HEAD.pack(magic, version, msg_type, seq, OVERSIZE_LENGTH)
            head += zlib.crc32(head).to_bytes(4, "big")
            body = frame[HEADER_SIZE : len(frame) - TRAILER_SIZE]
            frame = b"".join((head, body, zlib.crc32(body, zlib.crc32(head)).to_bytes(4, "big")))
        return frame

    def _emit(self, data: bytes, out: list[bytes]) -> None:
        limit, then = self._next_limit()
        if limit is not None and self.written + len(data) >= limit:
            data = data[: limit - self.written]
            self.state = then
        if data:
            out.append(data)
            self.written += len(data)

    def _next_limit(self) -> tuple[int | None, LineState]:
        """The nearest byte limit and the state it leads to (an unplug wins a tie, then a
        stall)."""
        f = self._faults
        limits = [(limit, rank, state) for rank, (limit, state) in enumerate((
            (f.unplug_after_bytes, LineState.UNPLUGGED), (f.stall_after_bytes, LineState.STALLED),
            (f.endless_garbage_after, LineState.FLOODING))) if limit is not None]
        if not limits:
            return None, LineState.OPEN
        limit, _, state = min(limits)
        return limit, state
