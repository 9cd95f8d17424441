"""USB descriptors of a simulated device: what the emulator publishes, what the backend serves.

The emulator writes a :class:`DeviceRecord` as ``device.json`` in its device directory; the pyusb
backend reads it back, checks every field (it never trusts the file) and answers
``get_*_descriptor`` and ``GET_DESCRIPTOR`` control requests from it. Field names are the USB 2.0
chapter 9 names, which are also the attribute names pyusb reads from a backend's descriptor
objects. Length, type and count fields (``bLength``, ``wTotalLength``, ``bNumInterfaces``, …)
are derived, never stored, so they cannot disagree with the structure.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "LANGID_EN_US",
    "SPEED_HIGH",
    "ConfigurationDescriptor",
    "DescriptorError",
    "DeviceDescriptor",
    "DeviceRecord",
    "EndpointDescriptor",
    "InterfaceDescriptor",
    "camera_record",
    "string_descriptor",
]

SCHEMA = 1
SPEED_HIGH = 3  # libusb_speed / usb.util.SPEED_HIGH
LANGID_EN_US = 0x0409
DT_DEVICE, DT_CONFIG, DT_STRING, DT_INTERFACE, DT_ENDPOINT = 1, 2, 3, 4, 5
BULK = 0x02
MAX_STRING_UNITS = 126  # a string descriptor is at most 255 bytes: 2 + 2 * 126
CLASS_VENDOR_SPECIFIC = 0xFF


class DescriptorError(ValueError):
    """A descriptor record that no real device could have sent."""


@dataclass(frozen=True, slots=True)
class EndpointDescriptor:
    bEndpointAddress: int
    bmAttributes: int
    wMaxPacketSize: int
    bInterval: int = 0
    bLength: int = field(default=7, init=False)
    bDescriptorType: int = field(default=DT_ENDPOINT, init=False)
    bRefresh: int = field(default=0, init=False)  # audio-class fields libusb also reports
    bSynchAddress: int = field(default=0, init=False)
    extra_descriptors: tuple[int, ...] = field(default=(), init=False)

    def raw(self) -> bytes:
        return struct.pack("<BBBBHB", self.bLength, self.bDescriptorType, self.bEndpointAddress,
                           self.bmAttributes, self.wMaxPacketSize, self.bInterval)


@dataclass(frozen=True, slots=True)
class InterfaceDescriptor:
    bInterfaceNumber: int
    bAlternateSetting: int
    bInterfaceClass: int
    bInterfaceSubClass: int
    bInterfaceProtocol: int
    iInterface: int
    endpoints: tuple[EndpointDescriptor, ...]
    bLength: int = field(default=9, init=False)
    bDescriptorType: int = field(default=DT_INTERFACE, init=False)
    extra_descriptors: tuple[int, ...] = field(default=(), init=False)

    @property
    def bNumEndpoints(self) -> int:
        return len(self.endpoints)

    def raw(self) -> bytes:
        head = struct.pack("<BBBBBBBBB", self.bLength, self.bDescriptorType,
                           self.bInterfaceNumber, self.bAlternateSetting, self.bNumEndpoints,
                           self.bInterfaceClass, self.bInterfaceSubClass,
                           self.bInterfaceProtocol, self.iInterface)
        return head + b"".join(ep.raw() for ep in self.endpoints)


@dataclass(frozen=True, slots=True)
class ConfigurationDescriptor:
    bConfigurationValue: int
    iConfiguration: int
    bmAttributes: int
    bMaxPower: int  # units of 2 mA
    interfaces: tuple[InterfaceDescriptor, ...]  # every alternate setting, in descriptor order
    bLength: int = field(default=9, init=False)
    bDescriptorType: int = field(default=DT_CONFIG, init=False)
    extra_descriptors: tuple[int, ...] = field(default=(), init=False)

    @property
    def bNumInterfaces(self) -> int:
        return len({i.bInterfaceNumber for i in self.interfaces})

    @property
    def wTotalLength(self) -> int:
        return 9 + sum(9 + 7 * i.bNumEndpoints for i in self.interfaces)

    def altsettings(self, index: int) -> list[InterfaceDescriptor]:
        """The alternate settings of the ``index``-th interface (logical index, as pyusb uses)."""
        numbers = list(dict.fromkeys(i.bInterfaceNumber for i in self.interfaces))
        if not 0 <= index < len(numbers):
            raise IndexError(f"Invalid interface index {index}")
        return [i for i in self.interfaces if i.bInterfaceNumber == numbers[index]]

    def raw(self) -> bytes:
        head = struct.pack("<BBHBBBBB", self.bLength, self.bDescriptorType, self.wTotalLength,
                           self.bNumInterfaces, self.bConfigurationValue, self.iConfiguration,
                           self.bmAttributes, self.bMaxPower)
        return head + b"".join(i.raw() for i in self.interfaces)


@dataclass(frozen=True, slots=True)
class DeviceDescriptor:
    """The 18-byte device descriptor plus what libusb adds about the device's place on the bus."""

    bcdUSB: int
    bDeviceClass: int
    bDeviceSubClass: int
    bDeviceProtocol: int
    bMaxPacketSize0: int
    idVendor: int
    idProduct: int
    bcdDevice: int
    iManufacturer: int
    iProduct: int
    iSerialNumber: int
    bNumConfigurations: int
    bus: int
    address: int
    port_number: int
    port_numbers: tuple[int, ...]
    speed: int
    bLength: int = field(default=18, init=False)
    bDescriptorType: int = field(default=DT_DEVICE, init=False)

    def raw(self) -> bytes:
        return struct.pack("<BBHBBBBHHHBBBB", self.bLength, self.bDescriptorType, self.bcdUSB,
                           self.bDeviceClass, self.bDeviceSubClass, self.bDeviceProtocol,
                           self.bMaxPacketSize0, self.idVendor, self.idProduct, self.bcdDevice,
                           self.iManufacturer, self.iProduct, self.iSerialNumber,
                           self.bNumConfigurations)


def string_descriptor(text: str) -> bytes:
    """A STRING descriptor (bLength, 0x03, UTF-16LE), cut to the 126 code units that fit."""
    units = text.encode("utf-16-le")[: 2 * MAX_STRING_UNITS]
    if len(units) >= 2 and 0xD8 <= units[-1] <= 0xDB:  # never end on half a surrogate pair
        units = units[:-2]
    return bytes((2 + len(units), DT_STRING)) + units


# -- the record in device.json ------------------------------------------------------------------

_DEVICE_FIELDS = ("bcdUSB", "bDeviceClass", "bDeviceSubClass", "bDeviceProtocol",
                  "bMaxPacketSize0", "idVendor", "idProduct", "bcdDevice", "iManufacturer",
                  "iProduct", "iSerialNumber")
_WIDE = frozenset({"bcdUSB", "idVendor", "idProduct", "bcdDevice"})
_CONFIG_FIELDS = ("bConfigurationValue", "iConfiguration", "bmAttributes", "bMaxPower")
_INTERFACE_FIELDS = ("bInterfaceNumber", "bAlternateSetting", "bInterfaceClass",
                     "bInterfaceSubClass", "bInterfaceProtocol", "iInterface")
_ENDPOINT_FIELDS = ("bEndpointAddress", "bmAttributes", "wMaxPacketSize", "bInterval")


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """One device on the simulated bus, as published in ``device.json``."""

    instance: str  # 32 hex: this plug-in of this emulator (a replug is a new instance)
    pid: int
    bus: int
    port_numbers: tuple[int, ...]
    address: int
    speed: int
    device: dict[str, int]  # _DEVICE_FIELDS
    configurations: tuple[ConfigurationDescriptor, ...]
    strings: dict[int, str]  # index -> text, all in LANGID_EN_US
    langids: tuple[int, ...] = (LANGID_EN_US,)

    @property
    def chain(self) -> str:
        """The sysfs-style port path: ``1-1.3`` is bus 1, root port 1, hub port 3."""
        return f"{self.bus}-{'.'.join(map(str, self.port_numbers))}"

    def device_descriptor(self) -> DeviceDescriptor:
        return DeviceDescriptor(**self.device, bNumConfigurations=len(self.configurations),
                                bus=self.bus, address=self.address,
                                port_number=self.port_numbers[-1],
                                port_numbers=self.port_numbers, speed=self.speed)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA, "instance": self.instance, "pid": self.pid, "bus": self.bus,
            "port_numbers": list(self.port_numbers), "address": self.address,
            "speed": self.speed, "device": dict(self.device),
            "configurations": [
                {**{k: getattr(c, k) for k in _CONFIG_FIELDS},
                 "interfaces": [
                     {**{k: getattr(i, k) for k in _INTERFACE_FIELDS},
                      "endpoints": [{k: getattr(e, k) for k in _ENDPOINT_FIELDS}
                                    for e in i.endpoints]}
                     for i in c.interfaces]}
                for c in self.configurations],
            "strings": {str(k): v for k, v in sorted(self.strings.items())},
            "langids": list(self.langids),
        }

    @classmethod
    def from_json(cls, data: object) -> DeviceRecord:
        """Parse and check a record; :class:`DescriptorError` names what is wrong."""
        try:
            return _parse(data)
        except DescriptorError:
            raise
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise DescriptorError(f"malformed device record: {exc!r}") from None


def _int(obj: Any, name: str, high: int, low: int = 0) -> int:
    value = obj[name]
    if type(value) is not int or not low <= value <= high:
        raise DescriptorError(f"{name}={value!r} is not in {low}..{high}")
    return value


def _parse(data: Any) -> DeviceRecord:
    if data["schema"] != SCHEMA:
        raise DescriptorError(f"unknown device record schema {data['schema']!r}")
    instance = data["instance"]
    if not isinstance(instance, str) or len(instance) != 32:
        raise DescriptorError("instance must be 32 hex digits")
    bytes.fromhex(instance)
    ports = tuple(data["port_numbers"])
    if not 1 <= len(ports) <= 7 or any(type(p) is not int or not 1 <= p <= 255 for p in ports):
        raise DescriptorError(f"bad port_numbers {ports!r}")
    device = {k: _int(data["device"], k, 0xFFFF if k in _WIDE else 0xFF) for k in _DEVICE_FIELDS}
    configs = tuple(_configuration(c) for c in data["configurations"])
    if not 1 <= len(configs) <= 0xFF:
        raise DescriptorError("a device has 1..255 configurations")
    strings = {}
    for key, text in data["strings"].items():
        index = int(key)
        if not 1 <= index <= 0xFF or not isinstance(text, str):
            raise DescriptorError(f"bad string {key!r}")
        strings[index] = text
    langids = tuple(_int({"langid": x}, "langid", 0xFFFF, 1) for x in data["langids"])
    return DeviceRecord(instance, _int(data, "pid", 1 << 22, 1), _int(data, "bus", 0xFF, 1),
                        ports, _int(data, "address", 127, 1), _int(data, "speed", 5), device,
                        configs, strings, langids)


def _configuration(c: Any) -> ConfigurationDescriptor:
    interfaces = tuple(
        InterfaceDescriptor(**{k: _int(i, k, 0xFF) for k in _INTERFACE_FIELDS},
                            endpoints=tuple(_endpoint(e) for e in i["endpoints"]))
        for i in c["interfaces"])
    return ConfigurationDescriptor(**{k: _int(c, k, 0xFF) for k in _CONFIG_FIELDS},
                                   interfaces=interfaces)


def _endpoint(e: Any) -> EndpointDescriptor:
    address = _int(e, "bEndpointAddress", 0xFF)
    if address & 0x0F == 0 or address & 0x70:
        raise DescriptorError(f"bad endpoint address 0x{address:02x}")
    return EndpointDescriptor(address, _int(e, "bmAttributes", 0xFF),
                              _int(e, "wMaxPacketSize", 0xFFFF), _int(e, "bInterval", 0xFF))


# -- the camera ----------------------------------------------------------------------------------

def camera_record(*, instance: str, pid: int, port_numbers: tuple[int, ...], address: int,
                  id_vendor: int, id_product: int, manufacturer: str, product: str,
                  serial: str) -> DeviceRecord:
    """A body camera as docks see it: high speed, one vendor-specific interface, bulk 0x01/0x81."""
    bulk = (EndpointDescriptor(0x01, BULK, 512), EndpointDescriptor(0x81, BULK, 512))
    interface = InterfaceDescriptor(0, 0, CLASS_VENDOR_SPECIFIC, 0, 0, 0, bulk)
    config = ConfigurationDescriptor(1, 0, 0x80, 250, (interface,))  # bus-powered, 500 mA
    device = {"bcdUSB": 0x0200, "bDeviceClass": 0, "bDeviceSubClass": 0, "bDeviceProtocol": 0,
              "bMaxPacketSize0": 64, "idVendor": id_vendor, "idProduct": id_product,
              "bcdDevice": 0x0100, "iManufacturer": 1, "iProduct": 2, "iSerialNumber": 3}
    return DeviceRecord(instance, pid, 1, port_numbers, address, SPEED_HIGH, device, (config,),
                        {1: manufacturer, 2: product, 3: serial})

