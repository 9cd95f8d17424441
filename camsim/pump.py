"""The transport-independent half of a front end: host bytes in, shaped reply bytes queued out.

A front end (``pty``, ``usb_bus``) owns the line and its event loop; it hands what the host wrote
to :meth:`ReplyQueue.receive` and drains :meth:`ReplyQueue.flush` into the line when
:meth:`ReplyQueue.ready_in` says so and the line is writable. Session, line faults and the output
queue live here so that every front end behaves the same: a stalled camera keeps reading (and
dropping) so the host's writes never block, a flooding one also writes random bytes whenever the
line takes them, a slow-loris one writes one byte per interval, an unplugged one stops once the
bytes returned so far are written, and a host that goes away takes its unread replies and its
session with it.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from enum import Enum

from .line import LineShaper, LineState
from .session import CameraSession

__all__ = ["ExitReason", "ReplyQueue"]

log = logging.getLogger(__name__)


class ExitReason(Enum):
    STOPPED = "stopped"  # a signal asked us to stop
    UNPLUGGED = "unplugged"  # the unplug-after-bytes fault fired


_FLOOD_BLOCK = 64 * 1024  # random bytes per write while flooding


class ReplyQueue:
    def __init__(self, session: CameraSession, shaper: LineShaper,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.session = session
        self.shaper = shaper
        self._out: deque[bytes | memoryview] = deque()
        self._clock = clock
        self._flushed = 0  # bytes written to the line (the slow-loris fault counts these)
        self._next_byte_at = 0.0  # slow loris: when the next byte may go

    @property
    def pending(self) -> bool:
        """There is something to write (now or, paced, later)."""
        return bool(self._out) or self.shaper.state is LineState.FLOODING

    def ready_in(self) -> float | None:
        """Seconds until :meth:`flush` has something to write (0: now); None: nothing to."""
        if not self.pending:
            return None
        faults = self.shaper.faults
        if faults.slowloris_ms is None or self._flushed < faults.slowloris_after:
            return 0.0
        return max(0.0, self._next_byte_at - self._clock())

    @property
    def unplug_due(self) -> bool:
        """The unplug fault fired and everything before it has been written."""
        return self.shaper.state is LineState.UNPLUGGED and not self._out

    def receive(self, data: bytes) -> None:
        """Bytes from the host: answer them (unless the camera is stalled, flooding or
        unplugged)."""
        log.debug("read %d bytes", len(data))
        shaper = self.shaper
        if shaper.state is not LineState.OPEN:
            return  # stalled: read and dropped, so the host's writes never block
        bursts = shaper.noise_bursts
        out = shaper.shape(self.session.receive_data(data))
        log.debug("queued %d bytes in %d writes, %d noise bursts", sum(map(len, out)), len(out),
                  shaper.noise_bursts - bursts)
        self._out.extend(out)
        state = self._state()
        if state is LineState.STALLED:
            log.info("stall fault: %d bytes written, no more answers", shaper.written)
        elif state is LineState.FLOODING:
            log.info("endless-garbage fault: %d bytes written, random bytes from now on",
                     shaper.written)

    def _state(self) -> LineState:
        # A call, not an inline test: shape() changes the state behind the type checker's back.
        return self.shaper.state

    def flush(self, write: Callable[[bytes | memoryview], int]) -> None:
        """Write queued bytes until the queue is empty or ``write`` raises ``BlockingIOError``
        (a flooding line: until ``write`` blocks; a slow-loris one: one byte when it is due).

        ``write`` returns how many bytes it took; any other ``OSError`` propagates (the front end
        decides whether it means the host went away).
        """
        out = self._out
        faults = self.shaper.faults
        pace_ms = faults.slowloris_ms
        while out or self.shaper.state is LineState.FLOODING:
            if not out:
                out.append(self.shaper.flood(_FLOOD_BLOCK))
            head = out[0]
            paced = pace_ms is not None and self._flushed >= faults.slowloris_after
            if paced:
                if self._clock() < self._next_byte_at:
                    return
                head = memoryview(head)[:1]
            elif pace_ms is not None:  # up to the byte the pacing starts at
                head = memoryview(head)[: faults.slowloris_after - self._flushed]
            try:
                n = write(head)
            except BlockingIOError:
                return
            self._flushed += n
            if paced and n and pace_ms is not None:
                self._next_byte_at = self._clock() + pace_ms / 1000
            if n < len(out[0]):
                out[0] = memoryview(out[0])[n:]
                if n < len(head):
                    return  # the line took less than offered: it is full
                continue
            out.popleft()

    def host_gone(self) -> int:
        """The host closed the line: drop unsent replies, reset the session; bytes dropped."""
        dropped = sum(len(b) for b in self._out)
        self._out.clear()
        self.session.reset()
        return dropped
