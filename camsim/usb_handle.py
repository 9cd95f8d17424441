"""The host side of one open simulated device: claim state, the connection, bulk transfers.

Errors are those libusb's pyusb backend raises, same code, errno and message
(:func:`usb_error`). The transfer path is one ``recv_into``/``send`` on a non-blocking socket
when data (or room) is there, and a ``poll`` with the caller's timeout only when it is not.
"""

from __future__ import annotations

import errno
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from usb.core import USBError, USBTimeoutError

from .usb_descriptors import ConfigurationDescriptor, DeviceDescriptor, DeviceRecord
from .usb_layout import GREETING_OK, GREETING_SIZE, device_present, is_gone, tune, unix_address

__all__ = [
    "LIBUSB_ERROR_BUSY",
    "LIBUSB_ERROR_IO",
    "LIBUSB_ERROR_NOT_FOUND",
    "LIBUSB_ERROR_NO_DEVICE",
    "LIBUSB_ERROR_PIPE",
    "LIBUSB_ERROR_TIMEOUT",
    "DeviceHandle",
    "SimDevice",
    "usb_error",
]

# libusb error codes and the errno values libusb's pyusb backend pairs them with
LIBUSB_ERROR_IO = -1
LIBUSB_ERROR_NOT_FOUND = -5
LIBUSB_ERROR_NO_DEVICE = -4
LIBUSB_ERROR_BUSY = -6
LIBUSB_ERROR_TIMEOUT = -7
LIBUSB_ERROR_PIPE = -9
_ERRORS = {
    LIBUSB_ERROR_IO: (errno.EIO, "Input/output error"),
    LIBUSB_ERROR_NO_DEVICE: (errno.ENODEV, "No such device (it may have been disconnected)"),
    LIBUSB_ERROR_NOT_FOUND: (errno.ENOENT, "Entity not found"),
    LIBUSB_ERROR_BUSY: (errno.EBUSY, "Resource busy"),
    LIBUSB_ERROR_TIMEOUT: (errno.ETIMEDOUT, "Operation timed out"),
    LIBUSB_ERROR_PIPE: (errno.EPIPE, "Pipe error"),
}
CLAIM_TIMEOUT_S = 5.0  # for the emulator's greeting; it answers from its event loop at once


def usb_error(code: int) -> USBError:
    eno, text = _ERRORS[code]
    if code == LIBUSB_ERROR_TIMEOUT:
        return USBTimeoutError(text, code, eno)
    return USBError(text, code, eno)


@dataclass(frozen=True, eq=False)
class SimDevice:
    """A device as enumerated: its directory and the record read at enumeration time."""

    path: Path
    record: DeviceRecord
    descriptor: DeviceDescriptor = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "descriptor", self.record.device_descriptor())

    def present(self) -> bool:
        return device_present(self.path, self.record.instance)


class DeviceHandle:
    """An open device: configuration and claim state, and the connection once claimed."""

    def __init__(self, dev: SimDevice) -> None:
        self.dev = dev
        self.config = dev.record.configurations[0].bConfigurationValue  # as the kernel leaves it
        self.sock: socket.socket | None = None
        self.claimed: set[int] = set()
        self.gone = False
        self.closed = False
        self.lock = threading.Lock()  # claim/release/close against each other, not transfers
        self._in: frozenset[int] = frozenset()
        self._out: frozenset[int] = frozenset()
        self._rpoll = select.poll()
        self._wpoll = select.poll()
        self._endpoints()

    def _endpoints(self) -> None:
        ins: set[int] = set()
        outs: set[int] = set()
        for cfg in self.dev.record.configurations:
            if cfg.bConfigurationValue == self.config:
                for intf in cfg.interfaces:
                    for ep in intf.endpoints:
                        (ins if ep.bEndpointAddress & 0x80 else outs).add(ep.bEndpointAddress)
        self._in, self._out = frozenset(ins), frozenset(outs)

    def configuration(self) -> ConfigurationDescriptor | None:
        for cfg in self.dev.record.configurations:
            if cfg.bConfigurationValue == self.config:
                return cfg
        return None

    def set_config(self, value: int) -> None:
        self.config = value
        self._endpoints()

    def check(self) -> None:
        """Raise ENODEV if the device has gone (now or before). Not on the transfer path: there
        the connection itself tells (end of stream, reset)."""
        if self.gone or self.closed:
            raise usb_error(LIBUSB_ERROR_NO_DEVICE)
        if not self.dev.present():
            self.mark_gone()
            raise usb_error(LIBUSB_ERROR_NO_DEVICE)

    def mark_gone(self) -> None:
        self.gone = True
        self.disconnect()

    def connect(self) -> None:
        """Claim: connect to the device's socket and check its greeting."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with unix_address(self.dev.path) as address:
                sock.connect(address)
            tune(sock)
            greeting = self._greeting(sock)
        except OSError:
            sock.close()
            self.mark_gone()
            raise usb_error(LIBUSB_ERROR_NO_DEVICE) from None
        if greeting[1:] != bytes.fromhex(self.dev.record.instance):
            sock.close()  # another device now sits in that port
            self.mark_gone()
            raise usb_error(LIBUSB_ERROR_NO_DEVICE)
        if greeting[0] != GREETING_OK:
            sock.close()
            raise usb_error(LIBUSB_ERROR_BUSY)
        self.sock = sock
        self._rpoll = select.poll()
        self._rpoll.register(sock, select.POLLIN)
        self._wpoll = select.poll()
        self._wpoll.register(sock, select.POLLOUT)

    @staticmethod
    def _greeting(sock: socket.socket) -> bytes:
        got = b""
        deadline = time.monotonic() + CLAIM_TIMEOUT_S
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        while len(got) < GREETING_SIZE:
            left = deadline - time.monotonic()
            if left <= 0 or not poller.poll(left * 1000):
                raise TimeoutError("no greeting")
            chunk = sock.recv(GREETING_SIZE - len(got))
            if not chunk:
                raise ConnectionResetError("closed during the greeting")
            got += chunk
        return got

    def disconnect(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.claimed.clear()

    # -- transfers --------------------------------------------------------------------------

    def _transfer_socket(self, ep: int, endpoints: frozenset[int]) -> socket.socket:
        sock = self.sock
        if sock is not None:
            if ep not in endpoints:
                raise usb_error(LIBUSB_ERROR_IO)
            return sock
        if self.gone or self.closed:
            raise usb_error(LIBUSB_ERROR_NO_DEVICE)
        if ep not in endpoints:
            raise usb_error(LIBUSB_ERROR_IO)
        with self.lock:
            self._auto_claim()
        assert self.sock is not None
        return self.sock

    def _auto_claim(self) -> None:
        """A transfer on an unclaimed interface claims it, as Linux usbfs does."""
        self.check()
        cfg = self.configuration()
        assert cfg is not None and cfg.interfaces  # the endpoint was found in it
        if self.sock is None:
            self.connect()
        self.claimed.add(cfg.interfaces[0].bInterfaceNumber)

    def read(self, ep: int, buff: Any, timeout: int) -> int:
        sock = self._transfer_socket(ep, self._in)
        view = memoryview(buff).cast("B")
        if not len(view):
            return 0
        try:
            n = sock.recv_into(view)
        except BlockingIOError:
            n = self._read_slow(sock, view, timeout)
        except OSError as exc:
            n = self._failed(exc)
        if n == 0:
            self.mark_gone()
            raise usb_error(LIBUSB_ERROR_NO_DEVICE)
        return n

    def _read_slow(self, sock: socket.socket, view: memoryview, timeout: int) -> int:
        deadline = None if timeout <= 0 else time.monotonic() + timeout / 1000
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic()) * 1000
            if not self._rpoll.poll(wait) and deadline is not None \
                    and time.monotonic() >= deadline:
                raise usb_error(LIBUSB_ERROR_TIMEOUT)
            try:
                return sock.recv_into(view)
            except BlockingIOError:
                continue
            except OSError as exc:
                return self._failed(exc)

    def write(self, ep: int, data: Any, timeout: int) -> int:
        sock = self._transfer_socket(ep, self._out)
        view = memoryview(data).cast("B")
        sent, total = 0, len(view)
        deadline = None
        while sent < total:
            try:
                sent += sock.send(view[sent:])
                continue
            except BlockingIOError:
                pass
            except OSError as exc:
                self._failed(exc)
            if deadline is None and timeout > 0:
                deadline = time.monotonic() + timeout / 1000
            wait = None if deadline is None else max(0.0, deadline - time.monotonic()) * 1000
            if not self._wpoll.poll(wait) and deadline is not None \
                    and time.monotonic() >= deadline:
                if sent:
                    return sent  # libusb: a timeout after some I/O reports what was moved
                raise usb_error(LIBUSB_ERROR_TIMEOUT)
        return sent

    def _failed(self, exc: OSError) -> int:
        if not is_gone(exc) and exc.errno != errno.EBADF:
            raise exc
        self.mark_gone()
        raise usb_error(LIBUSB_ERROR_NO_DEVICE) from None
