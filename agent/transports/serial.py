"""Serial transport (CDC-ACM, UART, pty) through pyserial's ``serial_for_url``.

``serial_for_url`` rather than ``Serial`` so that ``loop://``, ``socket://`` and ``spy://``
(a hexdump of the line, for field debugging) work without code changes.
"""

from __future__ import annotations

import logging

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

    def read(self, max_bytes: int, timeout: float) -> bytes:
        port = self._port
        try:
            waiting = port.in_waiting
            if not waiting:
                # Block for the first byte only; then take everything already buffered.
                port.timeout = timeout
                first = bytes(port.read(1))
                if not first:
                    return b""
                waiting = port.in_waiting
                port.timeout = 0
                return first + bytes(port.read(min(waiting, max_bytes - 1))) if waiting else first
            port.timeout = 0
            return bytes(port.read(min(waiting, max_bytes, _READ_SIZE)))
        except (serial.SerialException, OSError) as exc:
            raise TransportClosed(f"{self.slot}: {exc}") from None

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
