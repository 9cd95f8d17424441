"""Handshake, authentication, status and clock messages (docs/protocol.md §3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

from ._codec import Reader, Writer
from ._fields import Message, bad, blob, text, uint
from .frames import ABS_MAX_PAYLOAD, INITIAL_MAX_PAYLOAD

__all__ = [
    "AuthChallenge", "AuthResponse", "GetStatus", "Hello", "Identity", "SetTime", "Status",
    "TimeProbe", "TimeReply", "TimeSet",
]


@dataclass(frozen=True, slots=True)
class Hello(Message):
    """Dock → camera: versions the dock speaks and the largest frame payload it accepts."""

    TYPE: ClassVar[int] = 0x01
    versions: tuple[int, ...]
    max_payload: int

    def __post_init__(self) -> None:
        if not self.versions or len(self.versions) > 16:
            raise bad("versions must list 1..16 versions")
        for v in self.versions:
            uint("version", v, 8)
        if not INITIAL_MAX_PAYLOAD <= self.max_payload <= ABS_MAX_PAYLOAD:
            raise bad(f"max_payload must be {INITIAL_MAX_PAYLOAD}..{ABS_MAX_PAYLOAD}")

    def _encode(self, w: Writer) -> None:
        w.u8(len(self.versions))
        for v in self.versions:
            w.u8(v)
        w.u32(self.max_payload)

    @classmethod
    def _decode(cls, r: Reader) -> Self:
        versions = tuple(r.u8() for _ in range(r.u8()))
        return cls(versions, r.u32())


@dataclass(frozen=True, slots=True)
class Identity(Message):
    """Camera → dock: the chosen version, negotiated frame size, identity and GA/T 947-style
    device info. ``public_key`` (raw Ed25519, 32 bytes) lets a dock that trusts on first use
    enrol the camera; a strict dock only compares it with the enrolled key (AUTH proves it)."""

    TYPE: ClassVar[int] = 0x02
    version: int
    max_payload: int
    camera_uid: bytes
    public_key: bytes
    model: str
    firmware: str
    serial: str
    officer_id: str = ""
    officer_name: str = ""
    unit_code: str = ""
    unit_name: str = ""

    _STRINGS: ClassVar[tuple[str, ...]] = (
        "model", "firmware", "serial", "officer_id", "officer_name", "unit_code", "unit_name",
    )

    def __post_init__(self) -> None:
        uint("version", self.version, 8)
        if not INITIAL_MAX_PAYLOAD <= self.max_payload <= ABS_MAX_PAYLOAD:
            raise bad(f"max_payload must be {INITIAL_MAX_PAYLOAD}..{ABS_MAX_PAYLOAD}")
        blob("camera_uid", self.camera_uid, 16)
        blob("public_key", self.public_key, 32)
        for name in self._STRINGS:
            text(name, getattr(self, name))

    def _encode(self, w: Writer) -> None:
        w.u8(self.version).u32(self.max_payload).raw(self.camera_uid).raw(self.public_key)
        for name in self._STRINGS:
            w.string(getattr(self, name))

    @classmethod
    def _decode(cls, r: Reader) -> Self:
        version, max_payload, uid, key = r.u8(), r.u32(), r.raw(16), r.raw(32)
        return cls(version, max_payload, uid, key, *(r.string() for _ in cls._STRINGS))


@dataclass(frozen=True, slots=True)
class AuthChallenge(Message):
    TYPE: ClassVar[int] = 0x03
    nonce: bytes

    def __post_init__(self) -> None:
        blob("nonce", self.nonce, 32)

    def _encode(self, w: Writer) -> None:
        w.raw(self.nonce)

    @classmethod
    def _decode(cls, r: Reader) -> Self:
        return cls(r.raw(32))


@dataclass(frozen=True, slots=True)
class AuthResponse(Message):
    """Ed25519 signature over ``BWCAUTH1 + camera_uid + nonce`` by the camera's device key."""

    TYPE: ClassVar[int] = 0x04
    signature: bytes

    def __post_init__(self) -> None:
        blob("signature", self.signature, 64)

    def _encode(self, w: Writer) -> None:
        w.raw(self.signature)

    @classmethod
    def _decode(cls, r: Reader) -> Self:
        return cls(r.raw(64))


@dataclass(frozen=True, slots=True)
class GetStatus(Message):
    TYPE: ClassVar[int] = 0x05


@dataclass(frozen=True, slots=True)
class Status(Message):
    TYPE: ClassVar[int] = 0x06
    battery_pct: int
    charging: bool
    storage_total: int
    storage_free: int
    bitrate_bps: int
    self_test_ok: bool
    fault_codes: tuple[int, ...]
    clock_ms: int
    recording: bool

    def __post_init__(self) -> None:
        if not isinstance(self.battery_pct, int) or not 0 <= self.battery_pct <= 100:
            raise bad("battery_pct must be 0..100")
        uint("storage_total", self.storage_total, 64)
        uint("storage_free", self.storage_free, 64)
        if self.storage_free > self.storage_total:
            raise bad("storage_free exceeds storage_total")
        uint("bitrate_bps", self.bitrate_bps, 32)
        if len(self.fault_codes) > 64:
            raise bad("at most 64 fault codes")
        for code in self.fault_codes:
            uint("fault code", code, 16)
        if self.self_test_ok and self.fault_codes:
            raise bad("self_test_ok with fault codes")
        uint("clock_ms", self.clock_ms, 64)

    def _encode(self, w: Writer) -> None:
        w.u8(self.battery_pct).boolean(self.charging).u64(self.storage_total)
        w.u64(self.storage_free).u32(self.bitrate_bps).boolean(self.self_test_ok)
        w.u8(len(self.fault_codes))
        for code in self.fault_codes:
            w.u16(code)
        w.u64(self.clock_ms).boolean(self.recording)

    @classmethod
    def _decode(cls, r: Reader) -> Self:
        battery, charging, total, free = r.u8(), r.boolean(), r.u64(), r.u64()
        bitrate, ok = r.u32(), r.boolean()
        faults = tuple(r.u16() for _ in range(r.u8()))
        return cls(battery, charging, total, free, bitrate, ok, faults, r.u64(), r.boolean())


@dataclass(frozen=True, slots=True)
class TimeProbe(Message):
    """NTP-style probe: the dock's transmit time t0 (unix µs)."""

    TYPE: ClassVar[int] = 0x07
    t0_us: int

    def __post_init__(self) -> None:
        uint("t0_us", self.t0_us, 64)

    def _encode(self, w: Writer) -> None:
        w.u64(self.t0_us)

    @classmethod
    def _decode(cls, r: Reader) -> Self:
        return cls(r.u64())


@dataclass(frozen=True, slots=True)
class TimeReply(Message):
    """Echoed t0 and the camera's receive (t1) and transmit (t2) times, unix µs."""

    TYPE: ClassVar[int] = 0x08
    t0_us: int
    t1_us: int
    t2_us: int

    def __post_init__(self) -> None:
        for name in ("t0_us", "t1_us", "t2_us"):
            uint(name, getattr(self, name), 64)

    def _encode(self, w: Writer) -> None:
        w.u64(self.t0_us).u64(self.t1_us).u64(self.t2_us)

    @classmethod
    def _decode(cls, r: Reader) -> Self:
        return cls(r.u64(), r.u64(), r.u64())


@dataclass(frozen=True, slots=True)
class SetTime(Message):
    TYPE: ClassVar[int] = 0x09
    unix_us: int

    def __post_init__(self) -> None:
        uint("unix_us", self.unix_us, 64)

    def _encode(self, w: Writer) -> None:
        w.u64(self.unix_us)

    @classmethod
    def _decode(cls, r: Reader) -> Self:
        return cls(r.u64())


@dataclass(frozen=True, slots=True)
class TimeSet(Message):
    """The camera's clock just before and just after applying ``SetTime``."""

    TYPE: ClassVar[int] = 0x0A
    previous_us: int
    current_us: int

    def __post_init__(self) -> None:
        uint("previous_us", self.previous_us, 64)
        uint("current_us", self.current_us, 64)

    def _encode(self, w: Writer) -> None:
        w.u64(self.previous_us).u64(self.current_us)

    @classmethod
    def _decode(cls, r: Reader) -> Self:
        return cls(r.u64(), r.u64())

