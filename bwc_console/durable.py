"""Durable files: temp → fsync → rename → fsync the directory; nothing half-written is visible."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["ensure_dir", "fsync_dir", "write_atomic", "write_exclusive"]


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(directory: Path, mode: int = 0o750) -> None:
    """Create ``directory`` (and parents) durably: each new entry's parent is fsynced."""
    if directory.is_dir():
        return
    ensure_dir(directory.parent, mode)
    with contextlib.suppress(FileExistsError):
        directory.mkdir(mode)
        fsync_dir(directory.parent)


def write_atomic(path: Path, data: bytes, mode: int = 0o640) -> None:
    """Replace ``path`` with ``data``: once this returns, it survives a crash or power cut."""
    ensure_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_exclusive(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``data`` and exactly ``mode``, all or nothing; ``FileExistsError``
    if it exists already (the complete temp file is hard-linked into place)."""
    ensure_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # whatever the umask
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.link(tmp, path)
    finally:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            tmp.unlink()
    fsync_dir(path.parent)
