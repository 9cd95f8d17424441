"""The error codes of ``…/cmd_result`` and the exception that refuses a console command.

Kept apart from `agent.compliance.commands` so that the nonce store, the authenticator and the
dispatcher that executes commands all speak one vocabulary without importing each other.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["CommandRefused", "ErrorCode"]


class ErrorCode(StrEnum):
    """Every `error` value of a ``cmd_result`` (docs/compliance.md, "Console commands")."""

    # Refused before execution (agent.compliance.commands).
    MALFORMED = "malformed"
    UNSIGNED = "unsigned"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_KEY = "unknown_key"
    STALE = "stale"
    REPLAYED = "replayed"
    WRONG_DOCK = "wrong_dock"
    UNKNOWN_COMMAND = "unknown_command"
    # Refused or failed while executing (the dispatcher).
    NOT_FOUND = "not_found"
    HELD = "held"
    NOT_EXPIRED = "not_expired"
    CONFLICT = "conflict"
    STORAGE = "storage"


class CommandRefused(Exception):
    """A console command the dock will not (or could not) carry out.

    `request_id`, `command` and `signed` are what could be read from the payload before it was
    refused (None/False when unknown), so that a ``cmd_result`` and an audit entry can still be
    written for it.
    """

    def __init__(self, code: ErrorCode | str, reason: str, *, request_id: str | None = None,
                 command: str | None = None, signed: bool = False) -> None:
        super().__init__(f"{reason} [{code}]")
        self.code = ErrorCode(code)
        self.reason = reason
        self.request_id = request_id
        self.command = command
        self.signed = signed
