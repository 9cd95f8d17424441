"""Line faults: what happens to the camera's output bytes between the session and the wire.

Transport-agnostic: a front end hands every reply frame to :meth:`LineShaper.shape` and writes
what comes back, then looks at :attr:`LineShaper.state` to learn whether the line was "unplugged"
or the camera "stalled". Byte counts are of bytes handed to the line, noise included.

A stalled camera stays stalled for the rest of the run, even if the host closes and reopens the
port: it is hung, not merely slow.

Noise (``garbage-every``) is only ever inserted *between* frames and never contains the byte
0xB7, so it cannot form a start marker or a header: the dock's decoder reports it as GARBAGE and
resynchronises on the next frame without losing anything.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

__all__ = ["NOISE_MAX", "LineFaults", "LineShaper", "LineState"]

NOISE_MAX = 8  # bytes per burst
_NOISE_ALPHABET = bytes(b for b in range(256) if b != 0xB7)  # 0xB7 starts the frame marker


class LineState(Enum):
    OPEN = "open"
    STALLED = "stalled"  # the camera stopped answering; the line stays up
    UNPLUGGED = "unplugged"  # the line must be closed once the bytes returned so far are written


@dataclass(frozen=True, slots=True)
class LineFaults:
    unplug_after_bytes: int | None = None
    stall_after_bytes: int | None = None
    garbage_every: int | None = None


class LineShaper:
    def __init__(self, faults: LineFaults = LineFaults(), seed: int | bytes = 0) -> None:
        self._faults = faults
        self._rng = random.Random(seed)
        self.state = LineState.OPEN
        self.written = 0  # bytes handed to the line in total
        self.noise_bursts = 0
        self._since_noise = 0

    def shape(self, frames: Sequence[bytes]) -> list[bytes]:
        """The bytes to write for ``frames``: possibly with noise, possibly cut short."""
        out: list[bytes] = []
        every = self._faults.garbage_every
        for frame in frames:
            if self.state is not LineState.OPEN:
                break
            if every is not None and self._since_noise >= every:
                self._since_noise = 0
                self.noise_bursts += 1
                size = self._rng.randint(1, NOISE_MAX)
                self._emit(bytes(self._rng.choices(_NOISE_ALPHABET, k=size)), out)
            if self.state is LineState.OPEN:
                self._since_noise += len(frame)
                self._emit(frame, out)
        return out

    def _emit(self, data: bytes, out: list[bytes]) -> None:
        limit, then = self._next_limit()
        if limit is not None and self.written + len(data) >= limit:
            data = data[: limit - self.written]
            self.state = then
        if data:
            out.append(data)
            self.written += len(data)

    def _next_limit(self) -> tuple[int | None, LineState]:
        """The nearest byte limit and the state it leads to (an unplug wins a tie)."""
        unplug, stall = self._faults.unplug_after_bytes, self._faults.stall_after_bytes
        if unplug is not None and (stall is None or unplug <= stall):
            return unplug, LineState.UNPLUGGED
        if stall is not None:
            return stall, LineState.STALLED
        return None, LineState.OPEN
