"""A pyusb backend (``usb.backend.IBackend``) presenting a simulated USB bus directory to pyusb.

``get_backend(BUS_DIR)`` is the ``usb_backend = "camsim:BUS_DIR"`` of the agent's config. Code
using it goes through pyusb's public API exactly as with libusb (``usb.core.find``,
``set_configuration``, ``claim_interface``, ``read``/``write`` on bulk endpoints,
``usb.util.get_string``), and sees the same errors as libusb's backend raises:

* nothing to read (or no room to write) within the timeout: ``USBTimeoutError``, errno
  ETIMEDOUT, ``backend_error_code`` -7 (a write that moved some bytes returns their count,
  as libusb does);
* the device is gone (emulator exited or killed, socket closed): ``USBError`` errno ENODEV,
  ``backend_error_code`` -4, on that call and every later call on the handle;
* the interface is claimed through another handle: EBUSY (-6); a transfer on an endpoint the
  active configuration lacks: EIO (-1); an unknown configuration or interface: ENOENT (-5);
  a control request the device does not implement: EPIPE (-9), the device stalls EP0.

Transfers: a bulk IN transfer returns as soon as any data is there, up to the buffer's size,
filling the caller's array in place (one ``recv_into``); a bulk OUT transfer takes any length.
Timeouts are milliseconds, 0 meaning none (libusb's convention). One thread per direction at a
time, as with any USB endpoint. See docs/protocol.md section 7 for what is not simulated.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import usb.backend

from .usb_descriptors import (
    ConfigurationDescriptor,
    DeviceDescriptor,
    DeviceRecord,
    EndpointDescriptor,
    InterfaceDescriptor,
    string_descriptor,
)
from .usb_handle import (
    LIBUSB_ERROR_BUSY,
    LIBUSB_ERROR_NO_DEVICE,
    LIBUSB_ERROR_NOT_FOUND,
    LIBUSB_ERROR_PIPE,
    DeviceHandle,
    SimDevice,
    usb_error,
)
from .usb_layout import CHAIN_RE, RECORD_NAME, device_present

__all__ = ["CamsimBackend", "get_backend"]

_GET_DESCRIPTOR, _GET_CONFIGURATION = 0x06, 0x08
_DT_DEVICE, _DT_CONFIG, _DT_STRING = 1, 2, 3


class CamsimBackend(usb.backend.IBackend):  # type: ignore[misc]  # pyusb is untyped
    """pyusb's view of one bus directory."""

    def __init__(self, bus_dir: Path) -> None:
        super().__init__()
        self.bus_dir = bus_dir

    def __repr__(self) -> str:
        return f"<CamsimBackend {self.bus_dir}>"

    # -- enumeration and descriptors ----------------------------------------------------------

    def enumerate_devices(self) -> Iterator[SimDevice]:
        try:
            names = [n for n in os.listdir(self.bus_dir) if CHAIN_RE.match(n)]
        except FileNotFoundError:
            return iter(())
        names.sort(key=lambda n: [int(p) for p in n.replace("-", ".").split(".")])
        devices = []
        for name in names:
            path = self.bus_dir / name
            try:
                record = DeviceRecord.from_json(json.loads((path / RECORD_NAME).read_bytes()))
            except (OSError, ValueError):  # being created or removed, or not a device
                continue
            if record.chain == name and device_present(path, record.instance):
                devices.append(SimDevice(path, record))
        return iter(devices)

    def get_parent(self, dev: SimDevice) -> None:
        return None  # the hub in the port chain is not simulated

    def get_device_descriptor(self, dev: SimDevice) -> DeviceDescriptor:
        return dev.descriptor

    def get_configuration_descriptor(self, dev: SimDevice, config: int
                                     ) -> ConfigurationDescriptor:
        configs = dev.record.configurations
        if not 0 <= config < len(configs):
            raise usb_error(LIBUSB_ERROR_NOT_FOUND)
        return configs[config]

    def get_interface_descriptor(self, dev: SimDevice, intf: int, alt: int, config: int
                                 ) -> InterfaceDescriptor:
        alts = self.get_configuration_descriptor(dev, config).altsettings(intf)
        if not 0 <= alt < len(alts):
            raise IndexError(f"Invalid alternate setting index {alt}")
        return alts[alt]

    def get_endpoint_descriptor(self, dev: SimDevice, ep: int, intf: int, alt: int,
                                config: int) -> EndpointDescriptor:
        endpoints = self.get_interface_descriptor(dev, intf, alt, config).endpoints
        if not 0 <= ep < len(endpoints):
            raise IndexError(f"Invalid endpoint index {ep}")
        return endpoints[ep]

    # -- handles, configuration, interfaces ---------------------------------------------------

    def open_device(self, dev: SimDevice) -> DeviceHandle:
        if not dev.present():
            raise usb_error(LIBUSB_ERROR_NO_DEVICE)
        return DeviceHandle(dev)

    def close_device(self, dev_handle: DeviceHandle) -> None:
        with dev_handle.lock:
            dev_handle.disconnect()
            dev_handle.closed = True

    def set_configuration(self, dev_handle: DeviceHandle, config_value: int) -> None:
        with dev_handle.lock:
            dev_handle.check()
            known = {c.bConfigurationValue for c in dev_handle.dev.record.configurations}
            if config_value not in known | {0}:
                raise usb_error(LIBUSB_ERROR_NOT_FOUND)
            if dev_handle.claimed:
                raise usb_error(LIBUSB_ERROR_BUSY)
            dev_handle.set_config(config_value)

    def get_configuration(self, dev_handle: DeviceHandle) -> int:
        dev_handle.check()
        return dev_handle.config

    def set_interface_altsetting(self, dev_handle: DeviceHandle, intf: int, altsetting: int
                                 ) -> None:
        dev_handle.check()
        cfg = dev_handle.configuration()
        if cfg is None or not any(i.bInterfaceNumber == intf and i.bAlternateSetting == altsetting
                                  for i in cfg.interfaces):
            raise usb_error(LIBUSB_ERROR_NOT_FOUND)

    def claim_interface(self, dev_handle: DeviceHandle, intf: int) -> None:
        with dev_handle.lock:
            dev_handle.check()
            cfg = dev_handle.configuration()
            if cfg is None or not any(i.bInterfaceNumber == intf for i in cfg.interfaces):
                raise usb_error(LIBUSB_ERROR_NOT_FOUND)
            if dev_handle.sock is None:
                dev_handle.connect()
            dev_handle.claimed.add(intf)

    def release_interface(self, dev_handle: DeviceHandle, intf: int) -> None:
        with dev_handle.lock:
            if dev_handle.gone or dev_handle.closed:
                raise usb_error(LIBUSB_ERROR_NO_DEVICE)
            if intf not in dev_handle.claimed:
                raise usb_error(LIBUSB_ERROR_NOT_FOUND)
            dev_handle.disconnect()  # the camera sees the host go, as when a port is closed

    # -- transfers ----------------------------------------------------------------------------

    def bulk_write(self, dev_handle: DeviceHandle, ep: int, intf: int, data: Any, timeout: int
                   ) -> int:
        return dev_handle.write(ep, data, timeout)

    def bulk_read(self, dev_handle: DeviceHandle, ep: int, intf: int, buff: Any, timeout: int
                  ) -> int:
        return dev_handle.read(ep, buff, timeout)

    def ctrl_transfer(self, dev_handle: DeviceHandle, bmRequestType: int, bRequest: int,
                      wValue: int, wIndex: int, data: Any, timeout: int) -> int:
        dev_handle.check()
        reply = self._control_reply(dev_handle, bmRequestType, bRequest, wValue, wIndex)
        view = memoryview(data).cast("B")
        n = min(len(view), len(reply))
        view[:n] = reply[:n]
        return n

    @staticmethod
    def _control_reply(handle: DeviceHandle, request_type: int, request: int, value: int,
                       index: int) -> bytes:
        """Standard requests a device answers; anything else stalls EP0 (EPIPE)."""
        record = handle.dev.record
        if request_type == 0x80 and request == _GET_DESCRIPTOR:
            kind, number = value >> 8, value & 0xFF
            if kind == _DT_DEVICE and number == 0:
                return handle.dev.descriptor.raw()
            if kind == _DT_CONFIG and number < len(record.configurations):
                return record.configurations[number].raw()
            if kind == _DT_STRING and number == 0:
                return bytes((2 + 2 * len(record.langids), _DT_STRING)) + b"".join(
                    lang.to_bytes(2, "little") for lang in record.langids)
            if kind == _DT_STRING and number in record.strings and index in record.langids:
                return string_descriptor(record.strings[number])
        elif request_type == 0x80 and request == _GET_CONFIGURATION:
            return bytes((handle.config,))
        raise usb_error(LIBUSB_ERROR_PIPE)

    def clear_halt(self, dev_handle: DeviceHandle, ep: int) -> None:
        dev_handle.check()
        cfg = dev_handle.configuration()
        if cfg is None or not any(e.bEndpointAddress == ep for i in cfg.interfaces
                                  for e in i.endpoints):
            raise usb_error(LIBUSB_ERROR_NOT_FOUND)
        # No endpoint ever halts in the simulation: nothing to clear.

    def reset_device(self, dev_handle: DeviceHandle) -> None:
        """A port reset: the camera starts over (new session); claims survive, as in libusb."""
        with dev_handle.lock:
            dev_handle.check()
            claimed = set(dev_handle.claimed)
            dev_handle.disconnect()
            dev_handle.set_config(dev_handle.dev.record.configurations[0].bConfigurationValue)
            if claimed:
                dev_handle.connect()
                dev_handle.claimed |= claimed

    def is_kernel_driver_active(self, dev_handle: DeviceHandle, intf: int) -> bool:
        dev_handle.check()
        return False  # vendor-specific class: no kernel driver binds to it

    def detach_kernel_driver(self, dev_handle: DeviceHandle, intf: int) -> None:
        dev_handle.check()
        raise usb_error(LIBUSB_ERROR_NOT_FOUND)  # what libusb says when no driver is attached

    def attach_kernel_driver(self, dev_handle: DeviceHandle, intf: int) -> None:
        dev_handle.check()
        raise usb_error(LIBUSB_ERROR_NOT_FOUND)


_backends: dict[Path, CamsimBackend] = {}
_backends_lock = threading.Lock()


def get_backend(bus_dir: str | os.PathLike[str]) -> CamsimBackend:
    """The backend for ``bus_dir``: one object per directory, so pyusb ``Device`` equality
    (backend, bus, address) holds across ``find`` calls, as with libusb's singleton."""
    path = Path(os.path.abspath(bus_dir))
    with _backends_lock:
        backend = _backends.get(path)
        if backend is None:
            backend = _backends[path] = CamsimBackend(path)
        return backend

