"""Recording listing, chunk transfer, seal, event log, release and error messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Self

from ._codec import Reader, Writer
from ._fields import MAX_CHUNK_SIZE, EventKind, Message, RecordingIdBody, bad, blob, text, uint
from .errors import RemoteProtocolError
from .signing import CHUNK_MESSAGE_SIZE, SEAL_MESSAGE_SIZE, ChunkMessage, Media, SealMessage

__all__ = [
    "ChunkData", "ChunkHeader", "Error", "EventLog", "GetEventLog", "GetSeal", "ListRecordings",
    "LogEntry", "ReadChunk", "RecordingInfo", "RecordingList", "Release", "Released", "Seal",
]


@dataclass(frozen=True, slots=True)
class ListRecordings(Message):
    TYPE: ClassVar[int] = 0x0B
    start: int
    max_entries: int

    def __post_init__(self) -> None:
        uint("start", self.start, 32)
        uint("max_entries", self.max_entries, 16)
        if self.max_entries == 0:
            raise bad("max_entries must be at least 1")

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
        blob("recording_id", self.recording_id, 16)
        if self.media not in tuple(Media):
            raise bad(f"unknown media type {self.media!r}")
        object.__setattr__(self, "media", Media(self.media))
        uint("size", self.size, 64)
        uint("chunk_size", self.chunk_size, 32)
        if not 1 <= self.chunk_size <= MAX_CHUNK_SIZE:
            raise bad(f"chunk_size must be 1..{MAX_CHUNK_SIZE}")
        uint("chunk_count", self.chunk_count, 32)
        if self.sealed and self.chunk_count != -(-self.size // self.chunk_size):
            raise bad("chunk_count disagrees with size and chunk_size")
        uint("started_ms", self.started_ms, 64)
        uint("ended_ms", self.ended_ms, 64)

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
        uint("total", self.total, 32)
        uint("start", self.start, 32)
        if len(self.entries) > 0xFFFF or self.start + len(self.entries) > self.total:
            raise bad("entries run past total")

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
        blob("recording_id", self.recording_id, 16)
        uint("index", self.index, 32)

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
        blob("chunk_message", self.chunk_message, CHUNK_MESSAGE_SIZE)
        blob("signature", self.signature, 64)
        try:
            info = ChunkMessage.unpack(self.chunk_message)
        except (RemoteProtocolError, ValueError) as exc:
            raise bad(f"chunk message invalid: {exc}") from None
        if not 1 <= info.size <= MAX_CHUNK_SIZE:
            raise bad(f"chunk size must be 1..{MAX_CHUNK_SIZE}")
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
        uint("offset", self.offset, 32)
        if not isinstance(self.data, bytes | memoryview) or len(self.data) == 0:
            raise bad("chunk data must be non-empty bytes")

    def encode(self) -> bytes:
        return self.offset.to_bytes(4, "big") + self.data

    @classmethod
    def _decode(cls, r: Reader) -> Self:
        return cls(r.u32(), r.rest())


@dataclass(frozen=True, slots=True)
class GetSeal(RecordingIdBody):
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
        blob("seal_message", self.seal_message, SEAL_MESSAGE_SIZE)
        blob("signature", self.signature, 64)
        try:
            info = SealMessage.unpack(self.seal_message)
        except (RemoteProtocolError, ValueError) as exc:
            raise bad(f"seal message invalid: {exc}") from None
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
        uint("since", self.since, 32)
        uint("max_entries", self.max_entries, 16)
        if self.max_entries == 0:
            raise bad("max_entries must be at least 1")

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
        uint("seq", self.seq, 32)
        uint("at_ms", self.at_ms, 64)
        if self.kind not in tuple(EventKind):
            raise bad(f"unknown event kind {self.kind!r}")
        object.__setattr__(self, "kind", EventKind(self.kind))
        blob("recording_id", self.recording_id, 16)
        text("detail", self.detail)

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
            raise bad("too many entries")
        seqs = [e.seq for e in self.entries]
        if seqs != sorted(set(seqs)):
            raise bad("entries must be in strictly increasing seq order")

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
class Release(RecordingIdBody):
    """The dock's copy is safe: the camera may erase this recording."""

    TYPE: ClassVar[int] = 0x14
    recording_id: bytes


@dataclass(frozen=True, slots=True)
class Released(Message):
    TYPE: ClassVar[int] = 0x15
    recording_id: bytes
    freed_bytes: int

    def __post_init__(self) -> None:
        blob("recording_id", self.recording_id, 16)
        uint("freed_bytes", self.freed_bytes, 64)

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
        uint("code", self.code, 16)
        uint("request_type", self.request_type, 8)
        text("message", self.message)

    def _encode(self, w: Writer) -> None:
        w.u16(self.code).u8(self.request_type).string(self.message)

    @classmethod
    def _decode(cls, r: Reader) -> Self:
        return cls(r.u16(), r.u8(), r.string())

