"""The dock's side of a USB camera through pyusb's public API: a :class:`~tests.camsim.host.Line`
over the bulk endpoints, found the way a dock finds them (configuration, claim, endpoint lookup)."""

from __future__ import annotations

import array
from typing import Any

import usb.core
import usb.util

from .host import LineClosed

READ_TIMEOUT_MS = 50  # one poll of the IN endpoint; Host._pump owns the reply deadline
WRITE_TIMEOUT_MS = 5000


def bulk_endpoints(dev: Any) -> tuple[Any, Any]:
    """Configure ``dev``, claim its interface and return its (bulk OUT, bulk IN) endpoints."""
    dev.set_configuration()
    intf = dev.get_active_configuration()[(0, 0)]
    usb.util.claim_interface(dev, intf)

    def bulk(direction: int) -> Any:
        return usb.util.find_descriptor(intf, custom_match=lambda e: (
            usb.util.endpoint_direction(e.bEndpointAddress) == direction
            and usb.util.endpoint_type(e.bmAttributes) == usb.util.ENDPOINT_TYPE_BULK))

    return bulk(usb.util.ENDPOINT_OUT), bulk(usb.util.ENDPOINT_IN)


class UsbLine:
    def __init__(self, dev: Any, read_size: int = 1 << 20) -> None:
        self.dev = dev
        self.ep_out, self.ep_in = bulk_endpoints(dev)
        self.read_size = read_size
        self._buf = array.array("B", bytes(read_size))
        self.read_sizes: list[int] = []  # what each non-empty read returned
        self.error: usb.core.USBError | None = None  # what closed the line

    def read(self) -> bytes:
        if len(self._buf) != self.read_size:
            self._buf = array.array("B", bytes(self.read_size))
        buf = self._buf
        try:
            n = self.ep_in.read(buf, READ_TIMEOUT_MS)
        except usb.core.USBTimeoutError:
            return b""
        except usb.core.USBError as exc:
            self.error = exc
            raise LineClosed(str(exc)) from exc
        self.read_sizes.append(n)
        return memoryview(buf)[:n].tobytes()

    def write(self, data: bytes) -> None:
        try:
            written = self.ep_out.write(data, WRITE_TIMEOUT_MS)
        except usb.core.USBError as exc:
            self.error = exc
            raise LineClosed(str(exc)) from exc
        assert written == len(data)

    def close(self) -> None:
        usb.util.dispose_resources(self.dev)
