"""Every protocol message: a frozen dataclass with its type code and payload codec.

Field layouts are documented in ``docs/protocol.md``. Constructors validate, so an invalid
message can neither be sent nor come out of the decoder (which turns the validation error into a
``RemoteProtocolError``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar, Self

from ._codec import Reader, Writer
from .errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from .frames import ABS_MAX_PAYLOAD, INITIAL_MAX_PAYLOAD
from .signing import CHUNK_MESSAGE_SIZE, SEAL_MESSAGE_SIZE, ChunkMessage, Media, SealMessage

__all__ = [
    "LOG_ENTRY_FIXED_SIZE", "MAX_CHUNK_SIZE", "MAX_STRING", "MESSAGE_TYPES",
    "RECORDING_INFO_SIZE", "AuthChallenge", "AuthResponse",
    "ChunkData", "ChunkHeader", "Error", "EventKind", "EventLog", "GetEventLog", "GetSeal",
    "GetStatus", "Hello", "Identity", "ListRecordings", "LogEntry", "Message", "ReadChunk",
    "RecordingInfo", "RecordingList", "Release", "Released", "Seal", "SetTime", "Status",
    "TimeProbe", "TimeReply", "TimeSet", "decode_message",
]

MAX_STRING = 1024  # bytes of UTF-8 in any string field
MAX_CHUNK_SIZE = 16 * 1024 * 1024
RECORDING_INFO_SIZE = 50  # bytes per RecordingList entry: fit pages to the frame size
LOG_ENTRY_FIXED_SIZE = 31  # bytes per LogEntry before its detail string's UTF-8 bytes


class EventKind(IntEnum):
    """Kinds of entries in the camera's own event log (Art. 12 evidence)."""

    POWER_ON = 1
    POWER_OFF = 2
    RECORD_START = 3
    RECORD_STOP = 4
    BATTERY_EMPTY = 5
    STORAGE_FULL = 6
    FAULT = 7
    CLOCK_SET = 8
    RELEASED = 9


def _bad(msg: str) -> LocalProtocolError:
    return LocalProtocolError(msg, ErrorCode.MALFORMED)


def _uint(name: str, v: int, bits: int) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < (1 << bits):
        raise _bad(f"{name} must be an unsigned {bits}-bit integer, got {v!r}")


def _blob(name: str, v: bytes, size: int) -> None:
    if not isinstance(v, bytes) or len(v) != size:
        raise _bad(f"{name} must be {size} bytes")


def _text(name: str, v: str) -> None:
    if not isinstance(v, str):
        raise _bad(f"{name} must be a string")
    try:
        size = len(v.encode("utf-8"))
    except UnicodeEncodeError:  # lone surrogates, e.g. from a surrogateescape'd argv
        raise _bad(f"{name} is not encodable as UTF-8") from None
    if size > MAX_STRING:
        raise _bad(f"{name} must be a string of at most {MAX_STRING} UTF-8 bytes")


class Message:
    """Base of all messages. Subclasses define TYPE, _encode and _decode."""

    __slots__ = ()
    TYPE: ClassVar[int]

    def encode(self) -> bytes:
        w = Writer()
        self._encode(w)
        return w.getvalue()

    def _encode(self, w: Writer) -> None:
        """Messages without fields encode to an empty payload."""

    @classmethod
    def _decode(cls, r: Reader) -> Self:
        return cls()


class _RecordingIdBody(Message):
    """Codec of the messages whose only field is a recording id."""

    __slots__ = ()
    recording_id: bytes

    def __post_init__(self) -> None:
        _blob("recording_id", self.recording_id, 16)

    def _encode(self, w: Writer) -> None:
        w.raw(self.recording_id)

    @classmethod
    def _decode(cls, r: Reader) -> Self:
        return cls(r.raw(16))  # type: ignore[call-arg]  # subclasses are 1-field dataclasses


@dataclass(frozen=True, slots=True)
class Hello(Message):
    """Dock → camera: versions the dock speaks and the largest frame payload it accepts."""

    TYPE: ClassVar[int] = 0x01
    versions: tuple[int, ...]
    max_payload: int

    def __post_init__(self) -> None:
        if not self.versions or len(self.versions) > 16:
            raise _bad("versions must list 1..16 versions")
        for v in self.versions:
            _uint("version", v, 8)
        if not INITIAL_MAX_PAYLOAD <= self.max_payload <= ABS_MAX_PAYLOAD:
            raise _bad(f"max_payload must be {INITIAL_MAX_PAYLOAD}..{ABS_MAX_PAYLOAD}")

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
        _uint("version", self.version, 8)
        if not INITIAL_MAX_PAYLOAD <= self.max_payload <= ABS_MAX_PAYLOAD:
            raise _bad(f"max_payload must be {INITIAL_MAX_PAYLOAD}..{ABS_MAX_PAYLOAD}")
        _blob("camera_uid", self.camera_uid, 16)
        _blob("public_key", self.public_key, 32)
        for name in self._STRINGS:
            _text(name, getattr(self, name))

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
        _blob("nonce", self.nonce, 32)

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
        _blob("signature", self.signature, 64)

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
            raise _bad("battery_pct must be 0..100")
        _uint("storage_total", self.storage_total, 64)
        _uint("storage_free", self.storage_free, 64)
        if self.storage_free > self.storage_total:
            raise _bad("storage_free exceeds storage_total")
        _uint("bitrate_bps", self.bitrate_bps, 32)
        if len(self.fault_codes) > 64:
            raise _bad("at most 64 fault codes")
        for code in self.fault_codes:
            _uint("fault code", code, 16)
        if self.self_test_ok and self.fault_codes:
            raise _bad("self_test_ok with fault codes")
        _uint("clock_ms", self.clock_ms, 64)

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
        _uint("t0_us", self.t0_us, 64)

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
            _uint(name, getattr(self, name), 64)

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
        _uint("unix_us", self.unix_us, 64)

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
        _uint("previous_us", self.previous_us, 64)
        _uint("current_us", self.current_us, 64)

    def _encode(self, w: Writer) -> None:
        w.u64(self.previous_us).u64(self.current_us)

    @classmethod
    def _decode(cls, r: Reader) -> Self:
        return cls(r.u64(), r.u64())


@dataclass(frozen=True, slots=True)
class ListRecordings(Message):
    TYPE: ClassVar[int] = 0x0B
    start: int
    max_entries: int

    def __post_init__(self) -> None:
        _uint("start", self.start, 32)
        _uint("max_entries", self.max_entries, 16)
        if self.max_entries == 0:
            raise _bad("max_entries must be at least 1")

    def _encode(self, w: Writer) -> None:
        w.u32(self.start).u16(self.max_entries)

    @classmethod
    def _decode(cls, r: Reader) -> Self:
        return cls(r.u32(), r.u16())


@dataclass(frozen=True, slots=True)
class RecordingInfo:
    """One entry of a recording listing (50 bytes on the wire)."""

    recording_id: bytes
    media: Media
    size: int
    chunk_size: int
    chunk_count: int
    started_ms: int
    ended_ms: int
    sealed: bool

    def __post_init__(self) -> None:
        _blob("recording_id", self.recording_id, 16)
        if self.media not in tuple(Media):
            raise _bad(f"unknown media type {self.media!r}")
        object.__setattr__(self, "media", Media(self.media))
        _uint("size", self.size, 64)
        _uint("chunk_size", self.chunk_size, 32)
        if not 1 <= self.chunk_size <= MAX_CHUNK_SIZE:
            raise _bad(f"chunk_size must be 1..{MAX_CHUNK_SIZE}")
        _uint("chunk_count", self.chunk_count, 32)
        if self.sealed and self.chunk_count != -(-self.size // self.chunk_size):
            raise _bad("chunk_count disagrees with size and chunk_size")
        _uint("started_ms", self.started_ms, 64)
        _uint("ended_ms", self.ended_ms, 64)

    def _encode(self, w: Writer) -> None:
        w.raw(self.recording_id).u8(int(self.media)).u64(self.size).u32(self.chunk_size)
        w.u32(self.chunk_count).u64(self.started_ms).u64(self.ended_ms).boolean(self.sealed)

    @classmethod
    def _decode(cls, r: Reader) -> RecordingInfo:
        rid, media = r.raw(16), r.u8()
        if media not in (1, 2, 3):
            raise RemoteProtocolError(f"unknown media type {media}")
        return cls(rid, Media(media), r.u64(), r.u32(), r.u32(), r.u64(), r.u64(), r.boolean())


@dataclass(frozen=True, slots=True)
class RecordingList(Message):
    """One page of the listing: entries ``start .. start+len(entries)-1`` of ``total``."""

    TYPE: ClassVar[int] = 0x0C
    total: int
    start: int
    entries: tuple[RecordingInfo, ...]

    def __post_init__(self) -> None:
        _uint("total", self.total, 32)
        _uint("start", self.start, 32)
        if len(self.entries) > 0xFFFF or self.start + len(self.entries) > self.total:
            raise _bad("entries run past total")

    def _encode(self, w: Writer) -> None:
        w.u32(self.total).u32(self.start).u16(len(self.entries))
        for entry in self.entries:
            entry._encode(w)

    @classmethod
    def _decode(cls, r: Reader) -> Self:
        total, start, count = r.u32(), r.u32(), r.u16()
        return cls(total, start, tuple(RecordingInfo._decode(r) for _ in range(count)))


@dataclass(frozen=True, slots=True)
class ReadChunk(Message):
    TYPE: ClassVar[int] = 0x0D
    recording_id: bytes
    index: int

    def __post_init__(self) -> None:
        _blob("recording_id", self.recording_id, 16)
        _uint("index", self.index, 32)

    def _encode(self, w: Writer) -> None:
        w.raw(self.recording_id).u32(self.index)

    @classmethod
    def _decode(cls, r: Reader) -> Self:
        return cls(r.raw(16), r.u32())


@dataclass(frozen=True, slots=True)
class ChunkHeader(Message):
    """The signed 120-byte chunk message and its signature; ``size`` data bytes follow."""

    TYPE: ClassVar[int] = 0x0E
    chunk_message: bytes
    signature: bytes
    info: ChunkMessage = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _blob("chunk_message", self.chunk_message, CHUNK_MESSAGE_SIZE)
        _blob("signature", self.signature, 64)
        try:
            info = ChunkMessage.unpack(self.chunk_message)
        except (RemoteProtocolError, ValueError) as exc:
            raise _bad(f"chunk message invalid: {exc}") from None
        if not 1 <= info.size <= MAX_CHUNK_SIZE:
            raise _bad(f"chunk size must be 1..{MAX_CHUNK_SIZE}")
        object.__setattr__(self, "info", info)

    def _encode(self, w: Writer) -> None:
        w.raw(self.chunk_message).raw(self.signature)

    @classmethod
    def _decode(cls, r: Reader) -> Self:
        return cls(r.raw(CHUNK_MESSAGE_SIZE), r.raw(64))


@dataclass(frozen=True, slots=True)
class ChunkData(Message):
    """A piece of chunk bytes at ``offset`` within the chunk. ``data`` may be a memoryview."""

    TYPE: ClassVar[int] = 0x0F
    offset: int
    data: bytes | memoryview

    def __post_init__(self) -> None:
        _uint("offset", self.offset, 32)
        if not isinstance(self.data, bytes | memoryview) or len(self.data) == 0:
            raise _bad("chunk data must be non-empty bytes")

    def encode(self) -> bytes:
        return self.offset.to_bytes(4, "big") + self.data

    @classmethod
    def _decode(cls, r: Reader) -> Self:
        return cls(r.u32(), r.rest())


@dataclass(frozen=True, slots=True)
class GetSeal(_RecordingIdBody):
    TYPE: ClassVar[int] = 0x10
    recording_id: bytes


@dataclass(frozen=True, slots=True)
class Seal(Message):
    """The signed 133-byte seal message and its signature."""

    TYPE: ClassVar[int] = 0x11
    seal_message: bytes
    signature: bytes
    info: SealMessage = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _blob("seal_message", self.seal_message, SEAL_MESSAGE_SIZE)
        _blob("signature", self.signature, 64)
        try:
            info = SealMessage.unpack(self.seal_message)
        except (RemoteProtocolError, ValueError) as exc:
            raise _bad(f"seal message invalid: {exc}") from None
        object.__setattr__(self, "info", info)

    def _encode(self, w: Writer) -> None:
        w.raw(self.seal_message).raw(self.signature)

    @classmethod
    def _decode(cls, r: Reader) -> Self:
        return cls(r.raw(SEAL_MESSAGE_SIZE), r.raw(64))


@dataclass(frozen=True, slots=True)
class GetEventLog(Message):
    """Entries with ``seq >= since``, at most ``max_entries`` of them."""

    TYPE: ClassVar[int] = 0x12
    since: int
    max_entries: int

    def __post_init__(self) -> None:
        _uint("since", self.since, 32)
        _uint("max_entries", self.max_entries, 16)
        if self.max_entries == 0:
            raise _bad("max_entries must be at least 1")

    def _encode(self, w: Writer) -> None:
        w.u32(self.since).u16(self.max_entries)

    @classmethod
    def _decode(cls, r: Reader) -> Self:
        return cls(r.u32(), r.u16())


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One camera event-log entry; ``recording_id`` is 16 zero bytes when none applies."""

    seq: int
    at_ms: int
    kind: EventKind
    recording_id: bytes = bytes(16)
    detail: str = ""

    def __post_init__(self) -> None:
        _uint("seq", self.seq, 32)
        _uint("at_ms", self.at_ms, 64)
        if self.kind not in tuple(EventKind):
            raise _bad(f"unknown event kind {self.kind!r}")
        object.__setattr__(self, "kind", EventKind(self.kind))
        _blob("recording_id", self.recording_id, 16)
        _text("detail", self.detail)

    def _encode(self, w: Writer) -> None:
        w.u32(self.seq).u64(self.at_ms).u8(int(self.kind)).raw(self.recording_id)
        w.string(self.detail)

    @classmethod
    def _decode(cls, r: Reader) -> LogEntry:
        seq, at_ms, kind = r.u32(), r.u64(), r.u8()
        if kind not in EventKind._value2member_map_:
            raise RemoteProtocolError(f"unknown event kind {kind}")
        return cls(seq, at_ms, EventKind(kind), r.raw(16), r.string())


@dataclass(frozen=True, slots=True)
class EventLog(Message):
    """A page of the event log; ``more`` says further entries follow ``entries[-1].seq``."""

    TYPE: ClassVar[int] = 0x13
    entries: tuple[LogEntry, ...]
    more: bool

    def __post_init__(self) -> None:
        if len(self.entries) > 0xFFFF:
            raise _bad("too many entries")
        seqs = [e.seq for e in self.entries]
        if seqs != sorted(set(seqs)):
            raise _bad("entries must be in strictly increasing seq order")

    def _encode(self, w: Writer) -> None:
        w.u16(len(self.entries))
        for entry in self.entries:
            entry._encode(w)
        w.boolean(self.more)

    @classmethod
    def _decode(cls, r: Reader) -> Self:
        entries = tuple(LogEntry._decode(r) for _ in range(r.u16()))
        return cls(entries, r.boolean())


@dataclass(frozen=True, slots=True)
class Release(_RecordingIdBody):
    """The dock's copy is safe: the camera may erase this recording."""

    TYPE: ClassVar[int] = 0x14
    recording_id: bytes


@dataclass(frozen=True, slots=True)
class Released(Message):
    TYPE: ClassVar[int] = 0x15
    recording_id: bytes
    freed_bytes: int

    def __post_init__(self) -> None:
        _blob("recording_id", self.recording_id, 16)
        _uint("freed_bytes", self.freed_bytes, 64)

    def _encode(self, w: Writer) -> None:
        w.raw(self.recording_id).u64(self.freed_bytes)

    @classmethod
    def _decode(cls, r: Reader) -> Self:
        return cls(r.raw(16), r.u64())


@dataclass(frozen=True, slots=True)
class Error(Message):
    """Camera → dock error reply to the request of type ``request_type`` (0 if unknown)."""

    TYPE: ClassVar[int] = 0x7F
    code: int
    request_type: int
    message: str = ""

    def __post_init__(self) -> None:
        _uint("code", self.code, 16)
        _uint("request_type", self.request_type, 8)
        _text("message", self.message)

    def _encode(self, w: Writer) -> None:
        w.u16(self.code).u8(self.request_type).string(self.message)

    @classmethod
    def _decode(cls, r: Reader) -> Self:
        return cls(r.u16(), r.u8(), r.string())


MESSAGE_TYPES: dict[int, type[Message]] = {
    cls.TYPE: cls
    for cls in (
        Hello, Identity, AuthChallenge, AuthResponse, GetStatus, Status, TimeProbe, TimeReply,
        SetTime, TimeSet, ListRecordings, RecordingList, ReadChunk, ChunkHeader, ChunkData,
        GetSeal, Seal, GetEventLog, EventLog, Release, Released, Error,
    )
}


def decode_message(msg_type: int, payload: bytes) -> Message:
    """Decode one frame payload; every problem is a ``RemoteProtocolError``."""
    cls = MESSAGE_TYPES.get(msg_type)
    if cls is None:
        raise RemoteProtocolError(
            f"unknown message type 0x{msg_type:02x}", ErrorCode.UNKNOWN_MESSAGE
        )
    reader = Reader(payload, cls.__name__)
    try:
        message = cls._decode(reader)
    except LocalProtocolError as exc:
        raise RemoteProtocolError(f"{cls.__name__}: {exc.args[0]}", ErrorCode.MALFORMED) from None
    reader.end()
    return message
