"""Every protocol message: a frozen dataclass with its type code and payload codec.

Field layouts are documented in ``docs/protocol.md``. Constructors validate, so an invalid
message can neither be sent nor come out of the decoder (which turns the validation error into a
``RemoteProtocolError``). The classes live in ``_session_messages`` and ``_recording_messages``;
this module is the catalogue everyone imports from.
"""

from __future__ import annotations

from ._codec import Reader
from ._fields import (
    LOG_ENTRY_FIXED_SIZE,
    MAX_CHUNK_SIZE,
    MAX_STRING,
    RECORDING_INFO_SIZE,
    EventKind,
    Message,
)
from ._recording_messages import (
    ChunkData,
    ChunkHeader,
    Error,
    EventLog,
    GetEventLog,
    GetSeal,
    ListRecordings,
    LogEntry,
    ReadChunk,
    RecordingInfo,
    RecordingList,
    Release,
    Released,
    Seal,
)
from ._session_messages import (
    AuthChallenge,
    AuthResponse,
    GetStatus,
    Hello,
    Identity,
    SetTime,
    Status,
    TimeProbe,
    TimeReply,
    TimeSet,
)
from .errors import ErrorCode, LocalProtocolError, RemoteProtocolError

__all__ = [
    "LOG_ENTRY_FIXED_SIZE", "MAX_CHUNK_SIZE", "MAX_STRING", "MESSAGE_TYPES",
    "RECORDING_INFO_SIZE", "AuthChallenge", "AuthResponse",
    "ChunkData", "ChunkHeader", "Error", "EventKind", "EventLog", "GetEventLog", "GetSeal",
    "GetStatus", "Hello", "Identity", "ListRecordings", "LogEntry", "Message", "ReadChunk",
    "RecordingInfo", "RecordingList", "Release", "Released", "Seal", "SetTime", "Status",
    "TimeProbe", "TimeReply", "TimeSet", "decode_message",
]

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
