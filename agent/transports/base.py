"""The transport interface every session runs over, whatever the wire.

Driver exceptions (pyserial's ``SerialException``, pyusb's ``USBError``, ``OSError``) are
translated at this boundary, so the session only ever sees :class:`TransportError`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

__all__ = ["Transport", "TransportClosed", "TransportError"]


class TransportError(Exception):
    """The transport failed; the session must end."""


class TransportClosed(TransportError):
    """The camera went away: unplugged, end of file, or an I/O error on its device node."""


class Transport(ABC):
    """A full-duplex byte stream to one camera in one slot."""

    #: Physical identity of the slot (serial device path or USB bus-port chain).
    slot: str
    #: "serial" or "usb": the session sizes its frames by it (config chunk_size_serial/_usb).
    kind: str = "serial"

    @abstractmethod
    def read(self, max_bytes: int, timeout: float) -> bytes:
        """Up to ``max_bytes`` bytes; ``b""`` when nothing arrived within ``timeout`` seconds.

        Raises :class:`TransportClosed` when the camera is gone.
        """

    @abstractmethod
    def write(self, data: bytes) -> None:
        """Write all of ``data`` or raise :class:`TransportError`."""

    @abstractmethod
    def close(self) -> None:
        """Release the device; safe to call twice."""

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
