"""Typed protocol errors, each carrying an :class:`ErrorCode`.

``RemoteProtocolError`` means the peer sent something wrong; ``LocalProtocolError`` means our own
code misused the API. Both derive from ``ProtocolError`` so a transport loop can catch one type.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["ErrorCode", "LocalProtocolError", "ProtocolError", "RemoteProtocolError"]


class ErrorCode(IntEnum):
    """Error codes: carried on the wire in ``Error`` replies and inside our exceptions."""

    UNKNOWN_MESSAGE = 1  # message type not defined
    MALFORMED = 2  # payload does not decode / violates a field constraint
    BAD_STATE = 3  # message not legal in the current session state
    UNKNOWN_RECORDING = 4
    BAD_INDEX = 5  # chunk index out of range
    NOT_SEALED = 6  # recording still being written
    STORAGE_FAULT = 7  # camera could not read its own storage
    VERSION_UNSUPPORTED = 8
    NOT_AUTHENTICATED = 9
    BUSY = 10
    INTERNAL = 11
    FRAME_TOO_LARGE = 12  # declared length above the negotiated maximum
    SEQUENCE = 13  # chunk data out of order / reply with a wrong sequence number
    BAD_SIGNATURE = 14


class ProtocolError(Exception):
    """Base of every protocol error."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.MALFORMED) -> None:
        super().__init__(message)
        self.code = code
        # Set by Connection.next_event for errors about a received frame, so that a camera can
        # fill ERROR.request_type and reply with the frame's sequence number.
        self.frame_type: int | None = None
        self.frame_seq: int | None = None

    def __str__(self) -> str:
        return f"{self.args[0]} [{self.code.name}]"


class RemoteProtocolError(ProtocolError):
    """The peer violated the protocol; the connection is unusable afterwards."""


class LocalProtocolError(ProtocolError):
    """We asked the connection to do something the protocol does not allow."""
