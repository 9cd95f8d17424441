"""Field rules and the message base class shared by every protocol message."""

from __future__ import annotations

from enum import IntEnum
from typing import ClassVar, Self

from ._codec import Reader, Writer
from .errors import ErrorCode, LocalProtocolError

__all__ = [
    "LOG_ENTRY_FIXED_SIZE", "MAX_CHUNK_SIZE", "MAX_STRING", "RECORDING_INFO_SIZE", "EventKind",
    "Message", "RecordingIdBody", "bad", "blob", "text", "uint",
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


def bad(msg: str) -> LocalProtocolError:
    return LocalProtocolError(msg, ErrorCode.MALFORMED)


def uint(name: str, v: int, bits: int) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < (1 << bits):
        raise bad(f"{name} must be an unsigned {bits}-bit integer, got {v!r}")


def blob(name: str, v: bytes, size: int) -> None:
    if not isinstance(v, bytes) or len(v) != size:
        raise bad(f"{name} must be {size} bytes")


def text(name: str, v: str) -> None:
    if not isinstance(v, str):
        raise bad(f"{name} must be a string")
    try:
        size = len(v.encode("utf-8"))
    except UnicodeEncodeError:  # lone surrogates, e.g. from a surrogateescape'd argv
        raise bad(f"{name} is not encodable as UTF-8") from None
    if size > MAX_STRING:
        raise bad(f"{name} must be a string of at most {MAX_STRING} UTF-8 bytes")


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


class RecordingIdBody(Message):
    """Codec of the messages whose only field is a recording id."""

    __slots__ = ()
    recording_id: bytes

    def __post_init__(self) -> None:
        blob("recording_id", self.recording_id, 16)

    def _encode(self, w: Writer) -> None:
        w.raw(self.recording_id)

    @classmethod
    def _decode(cls, r: Reader) -> Self:
        return cls(r.raw(16))  # type: ignore[call-arg]  # subclasses are 1-field dataclasses

