"""Typed errors of the emulator."""

from __future__ import annotations

from firmware_protocol.errors import ErrorCode

__all__ = ["CameraError", "CamsimError", "ConfigError"]


class CamsimError(Exception):
    """Base of every emulator error."""


class ConfigError(CamsimError):
    """The command line, a key, a media file or the state directory is unusable (exit status 2)."""


class CameraError(CamsimError):
    """The camera refuses a request; the session turns it into an ``Error`` reply."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code

    def __str__(self) -> str:
        return f"{self.args[0]} [{self.code.name}]"
