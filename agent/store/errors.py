"""Typed errors of the storage layer.

Callers decide what to do by type: a `CorruptStoreError` means evidence on disk no longer
matches what was written (stop, alert, keep the files for forensics); a `StorageFullError`
means nothing was lost but nothing more can be accepted; any other `StoreError` is a refused
operation (wrong order, wrong state, unsafe file) that changed nothing on disk.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "CorruptStoreError",
    "InsecureKeyFileError",
    "StorageFullError",
    "StoreError",
]


class StoreError(Exception):
    """Base class of every error raised by `agent.store` (and the outbox built on it)."""


class CorruptStoreError(StoreError):
    """Stored data fails a structural or cryptographic check.

    `path` and `line` (1-based line number or record index, when known) locate the damage so
    an operator can find it; the message repeats them for logs.
    """

    def __init__(self, message: str, *, path: Path | None = None, line: int | None = None) -> None:
        where = ""
        if path is not None:
            where = f" [{path}" + (f":{line}" if line is not None else "") + "]"
        super().__init__(message + where)
        self.path = path
        self.line = line


class StorageFullError(StoreError):
    """The filesystem refused a write for lack of space or quota; nothing was acknowledged."""

    def __init__(self, message: str, *, path: Path | None = None) -> None:
        super().__init__(message + (f" [{path}]" if path is not None else ""))
        self.path = path


class InsecureKeyFileError(StoreError):
    """A key file is readable or writable by group/other, or is not a regular file."""

    def __init__(self, message: str, *, path: Path) -> None:
        super().__init__(f"{message} [{path}]")
        self.path = path
