"""Serial transport (CDC-ACM, UART, pty) through pyserial's ``serial_for_url``.

``serial_for_url`` rather than ``Serial`` so that ``loop://``, ``socket://`` and ``spy://``
(a hexdump of the line, for field debugging) work without code changes.
"""

from __future__ import annotations

import logging
import os
import select
from typing import cast

import serial

from .base import Transport, TransportClosed, TransportError

__all__ = ["SerialTransport"]

log = logging.getLogger(__name__)

_READ_SIZE = 1 << 20


class SerialTransport(Transport):
    def __init__(self, url: str, *, baudrate: int = 115200) -> None:
        self.slot = url
        try:
            self._port = serial.serial_for_url(url, baudrate=baudrate, timeout=0,
                                               write_timeout=30, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise TransportClosed(f"cannot open {url}: {exc}") from None
        self._closed = False
        self._timeout: float | None = 0
        # A real device node or pty: read it directly. pyserial re-configures the port (flock,
        # tcgetattr, tcsetattr) on every timeout change, which cost as much CPU as the whole
        # offload pipeline; select + os.read cost one syscall each. URL handlers without a file
        # descriptor (loop://, socket://, spy://) keep the portable path.
        fileno = getattr(self._port, "fileno", None)
        try:
            self._fd: int | None = fileno() if fileno is not None and url.startswith("/") else None
        except (OSError, AttributeError, serial.SerialException):
            self._fd = None
        # The direct path reads into this one buffer (see _read_fd).
        self._buf = bytearray(_READ_SIZE if self._fd is not None else 0)
        self._view = memoryview(self._buf)

    def read(self, max_bytes: int, timeout: float) -> bytes:
        if self._fd is not None:
            return self._read_fd(self._fd, max_bytes, timeout)
        port = self._port
        try:
            waiting = port.in_waiting
            if not waiting:
                # Block for the first byte only; then take everything already buffered.
                self._set_timeout(timeout)
                first = bytes(port.read(1))
                if not first:
                    return b""
                waiting = port.in_waiting
                self._set_timeout(0)
                return first + bytes(port.read(min(waiting, max_bytes - 1))) if waiting else first
            self._set_timeout(0)
            return bytes(port.read(min(waiting, max_bytes, _READ_SIZE)))
        except (serial.SerialException, OSError) as exc:
            raise TransportClosed(f"{self.slot}: {exc}") from None

    def _set_timeout(self, timeout: float) -> None:
        if self._timeout != timeout:
            self._port.timeout = timeout
            self._timeout = timeout

    def _read_fd(self, fd: int, max_bytes: int, timeout: float) -> bytes:
        """What arrived, as a view of this transport's read buffer, valid until the next read
        (as on USB: the channel's connection reads it in place until it needs more data).

        Into one buffer rather than ``os.read``: that allocates ``max_bytes`` (1 MiB, from the
        heap with the raised mmap threshold, see agent.memory) and shrinks it to the few KiB a
        tty read returns, and a camera streaming without end fragmented the session thread's
        arena by tens of MiB that way (measured: +37 MiB RSS over 300 MB of garbage on a pty,
        +0.1 MiB reading into one buffer).
        """
        try:
            readable, _, _ = select.select([fd], [], [], max(0.0, timeout))
            if not readable:
                return b""
            view = self._view[: min(max_bytes, _READ_SIZE)]
            n = os.readv(fd, [view])
        except (OSError, ValueError) as exc:  # EIO: the other end went away; EBADF: closed
            raise TransportClosed(f"{self.slot}: {exc}") from None
        if not n:
            raise TransportClosed(f"{self.slot}: end of file")
        return cast(bytes, view[:n])

    def write(self, data: bytes) -> None:
        try:
            self._port.write(data)
        except serial.SerialTimeoutException as exc:
            raise TransportError(f"{self.slot}: write timed out: {exc}") from None
        except (serial.SerialException, OSError) as exc:
            raise TransportClosed(f"{self.slot}: {exc}") from None

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._port.close()
            except (serial.SerialException, OSError) as exc:
                log.debug("closing %s: %s", self.slot, exc)
