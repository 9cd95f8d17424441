"""Small, bounded, mutable agent state in TinyDB, stored crash-safely.

Only for state that is rewritten whole and stays small (per-camera bookkeeping, counters,
settings learned at run time). Unbounded histories belong in `agent.store.journal`, and
nothing about footage progress lives here: that is derived from the footage files themselves.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from pathlib import Path
from typing import Any

from tinydb import TinyDB
from tinydb.storages import Storage

from agent.store.durable import atomic_write_bytes, ensure_dir, remove_stale_temps
from agent.store.errors import CorruptStoreError

__all__ = ["AtomicJSONStorage", "StateLock", "open_state"]


class AtomicJSONStorage(Storage):
    """TinyDB storage that replaces its JSON file atomically on every write.

    TinyDB's own `JSONStorage` seeks to 0, overwrites the file in place and truncates
    afterwards: a crash or power loss in between leaves a file that mixes old and new bytes
    (or is empty) and no longer parses, i.e. all state is lost. Here every `write()` goes
    through `atomic_write_bytes` (temp → fsync → rename → fsync dir).

    Promise after `write()` returns: the new state survives power loss; a crash at any point
    leaves either the complete previous state or the complete new state.
    """

    def __init__(self, path: str | Path, **_ignored: Any) -> None:
        super().__init__()
        self.path = Path(path)
        ensure_dir(self.path.parent)
        remove_stale_temps(self.path.parent, self.path.name)

    def read(self) -> dict[str, dict[str, Any]] | None:
        """Return the stored state, or None if the file does not exist yet.

        An existing but empty or unparseable file raises `CorruptStoreError`: with atomic
        writes that cannot come from a crash, and silently starting over would hide it.
        """
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, ValueError) as exc:
            raise CorruptStoreError(f"state file does not parse: {exc}", path=self.path) from exc
        if not isinstance(data, dict):
            raise CorruptStoreError("state file is not a JSON object", path=self.path)
        return data

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        """Atomically replace the state file with `data` (see the class docstring)."""
        # Not canonical JSON: sorting keys would reorder TinyDB's documents ("10" < "9").
        raw = json.dumps(data, ensure_ascii=True, allow_nan=False).encode("ascii")
        atomic_write_bytes(self.path, raw)

    def close(self) -> None:
        """Nothing to release: no handle is kept open between writes."""


def open_state(path: Path) -> TinyDB:
    """Open (or lazily create, on first write) a TinyDB at `path` with atomic storage."""
    return TinyDB(path, storage=AtomicJSONStorage)


class StateLock:
    """Thread lock plus an ``flock`` on a side file: the daemon and CLI commands (such as
    ``dock-agent enroll`` or ``hold``) share state files, and TinyDB's read-modify-write would
    otherwise lose one of two concurrent updates."""

    def __init__(self, path: Path) -> None:
        self._thread_lock = threading.Lock()
        self._path = path

    def __enter__(self) -> None:
        self._thread_lock.acquire()
        try:
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread_lock.release()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            os.close(self._fd)  # releases the flock
        finally:
            self._thread_lock.release()
