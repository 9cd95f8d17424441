"""The transport-independent half of a front end: host bytes in, shaped reply bytes queued out.

A front end (``pty``, ``usb_bus``) owns the line and its event loop; it hands what the host wrote
to :meth:`ReplyQueue.receive` and drains :meth:`ReplyQueue.flush` into the line when the line is
writable. Session, line faults and the output queue live here so that every front end behaves the
same: a stalled camera keeps reading (and dropping) so the host's writes never block, an
unplugged one stops once the bytes returned so far are written, and a host that goes away
takes its unread replies and its session with it.
"""

from __future__ import annotations

import logging
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


class ReplyQueue:
    def __init__(self, session: CameraSession, shaper: LineShaper) -> None:
        self.session = session
        self.shaper = shaper
        self._out: deque[bytes | memoryview] = deque()

    @property
    def pending(self) -> bool:
        return bool(self._out)

    @property
    def unplug_due(self) -> bool:
        """The unplug fault fired and everything before it has been written."""
        return self.shaper.state is LineState.UNPLUGGED and not self._out

    def receive(self, data: bytes) -> None:
        """Bytes from the host: answer them (unless the camera is stalled or unplugged)."""
        log.debug("read %d bytes", len(data))
        shaper = self.shaper
        if shaper.state is not LineState.OPEN:
            return  # stalled: read and dropped, so the host's writes never block
        bursts = shaper.noise_bursts
        out = shaper.shape(self.session.receive_data(data))
        log.debug("queued %d bytes in %d writes, %d noise bursts", sum(map(len, out)), len(out),
                  shaper.noise_bursts - bursts)
        self._out.extend(out)
        if self._stalled():
            log.info("stall fault: %d bytes written, no more answers", shaper.written)

    def _stalled(self) -> bool:
        # A call, not an inline test: shape() changes the state behind the type checker's back.
        return self.shaper.state is LineState.STALLED

    def flush(self, write: Callable[[bytes | memoryview], int]) -> None:
        """Write queued bytes until the queue is empty or ``write`` raises ``BlockingIOError``.

        ``write`` returns how many bytes it took; any other ``OSError`` propagates (the front end
        decides whether it means the host went away).
        """
        out = self._out
        while out:
            head = out[0]
            try:
                n = write(head)
            except BlockingIOError:
                return
            if n < len(head):
                out[0] = memoryview(head)[n:]
                return
            out.popleft()

    def host_gone(self) -> int:
        """The host closed the line: drop unsent replies, reset the session; bytes dropped."""
        dropped = sum(len(b) for b in self._out)
        self._out.clear()
        self.session.reset()
        return dropped
