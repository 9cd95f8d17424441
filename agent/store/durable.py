"""The only place that knows how to make bytes survive power loss.

Two patterns, nothing else in the agent re-implements them:

* replace a whole file: write a temp file in the same directory → fsync it → rename over the
  target → fsync the directory (`atomic_write_*`). Readers see the old or the new content,
  never a mix, and after return the new content survives power loss.
* grow a file: append → fsync (`append_and_fsync`, `AppendOnlyFile`). After return the
  appended bytes survive power loss; a crash before return may leave any prefix of them, which
  the owner of the file format must recognise and cut off on reopen.

A newly created file or directory is only durable once its *parent* directory has been
fsynced, which is why creation goes through `ensure_dir` and `AppendOnlyFile` too.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from agent.store.errors import StorageFullError, StoreError

__all__ = [
    "AppendOnlyFile",
    "append_and_fsync",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_stream",
    "canonical_json_bytes",
    "disk_full_guard",
    "ensure_dir",
    "fsync_dir",
    "move_durable",
    "remove_stale_temps",
]

log = logging.getLogger(__name__)

_TEMP_SUFFIX = ".tmp"
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


@contextlib.contextmanager
def disk_full_guard(path: Path) -> Iterator[None]:
    """Turn ENOSPC/EDQUOT into `StorageFullError` naming `path`; other OSErrors pass unchanged.

    A full disk is an operational state the daemon reports (and stops offloading on), not a
    crash, so it deserves its own type.
    """
    try:
        yield
    except OSError as exc:
        if exc.errno in _FULL_ERRNOS:
            raise StorageFullError(f"no space left writing: {exc.strerror}", path=path) from exc
        raise


def fsync_dir(path: Path) -> None:
    """fsync a directory so that entries created, renamed or removed in it are durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(path: Path, mode: int = 0o700) -> None:
    """Create `path` and any missing parents with exactly `mode`.

    Promise on return: the directory exists and its entry in the parent is durable. Existing
    directories are left alone (their mode is the operator's business).
    """
    path = Path(path)
    if path.is_dir():
        return
    ensure_dir(path.parent, mode)
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        if not path.is_dir():
            raise
        return
    # mkdir's mode is filtered by the umask; evidence directories must not depend on it.
    os.chmod(path, mode)
    fsync_dir(path.parent)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    # os.write may write less than asked (signals, some filesystems); loop until done.
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def atomic_write_stream(
    path: Path, chunks: Iterable[bytes], mode: int = 0o600, *, overwrite: bool = True
) -> None:
    """Write the concatenation of `chunks` to `path`, replacing it atomically.

    Promise on return: `path` holds exactly the new bytes with `mode`, and survives power loss.
    If this raises (including when `chunks` raises), `path` is unchanged and the temp file is
    removed. With `overwrite=False` an existing `path` raises `FileExistsError` and is kept
    (used for keys, where clobbering would destroy every recording wrapped under them).
    """
    path = Path(path)
    directory = path.parent
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=_TEMP_SUFFIX)
    tmp = Path(tmp_name)
    try:
        with disk_full_guard(path):
            os.fchmod(fd, mode)
            for chunk in chunks:
                _write_all(fd, chunk)
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    try:
        if overwrite:
            os.replace(tmp, path)
        else:
            # link() refuses to replace an existing name, unlike rename().
            os.link(tmp, path)
            tmp.unlink()
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(directory)


def atomic_write_bytes(
    path: Path, data: bytes, mode: int = 0o600, *, overwrite: bool = True
) -> None:
    """Replace `path` with `data` atomically; same promise as `atomic_write_stream`."""
    atomic_write_stream(path, (data,), mode, overwrite=overwrite)


def canonical_json_bytes(obj: Any) -> bytes:
    """Deterministic JSON: sorted keys, no whitespace, ASCII only, NaN/Infinity refused.

    Whether floats are acceptable at all is the caller's policy; this only keeps output
    byte-stable so it can be hashed and signed.
    """
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def atomic_write_json(path: Path, obj: Any, *, overwrite: bool = True) -> None:
    """Replace `path` with canonical JSON of `obj` plus a newline, mode 0600.

    Promise on return: as `atomic_write_stream`. Serialisation errors (`TypeError`,
    `ValueError`) are raised before anything touches the disk.
    """
    atomic_write_bytes(path, canonical_json_bytes(obj) + b"\n", overwrite=overwrite)


def move_durable(src: Path, dst: Path) -> None:
    """Rename `src` (file or directory) to `dst`, refusing to replace anything at `dst`.

    Promise on return: the move survives power loss (both parent directories are fsynced).
    A crash before return leaves the entry either at `src` or at `dst`, never both or neither.
    """
    src, dst = Path(src), Path(dst)
    if dst.exists() or dst.is_symlink():
        # rename() would silently replace a file or an empty directory.
        raise FileExistsError(errno.EEXIST, "refusing to replace existing entry", str(dst))
    os.rename(src, dst)
    fsync_dir(dst.parent)
    if src.parent != dst.parent:
        fsync_dir(src.parent)


def remove_stale_temps(directory: Path, name: str) -> int:
    """Remove temp files an interrupted `atomic_write_*` of `directory/name` left behind.

    They were never renamed into place, so nothing acknowledged lives in them; leaving them
    would leak disk space and, for key files, copies of key material. Returns how many.
    """
    removed = 0
    for stale in Path(directory).glob(f".{name}.*{_TEMP_SUFFIX}"):
        log.warning("removing stale temp file %s from an interrupted write", stale)
        stale.unlink(missing_ok=True)
        removed += 1
    if removed:
        fsync_dir(Path(directory))
    return removed


def append_and_fsync(fd_or_file: int | IO[bytes], data: bytes) -> None:
    """Append `data` to an open file descriptor or binary file object, then fsync it.

    Promise on return: `data` survives power loss (provided the file's own directory entry is
    already durable). On error nothing is promised: any prefix of `data` may be on disk.
    """
    if isinstance(fd_or_file, int):
        _write_all(fd_or_file, data)
        os.fsync(fd_or_file)
        return
    fd_or_file.write(data)
    fd_or_file.flush()
    os.fsync(fd_or_file.fileno())


class AppendOnlyFile:
    """A file that only grows, tracking the size that is known to be durable.

    Owners (journal segments, footage data files) scan the content on open, call `truncate`
    to cut off a torn tail, and then `append`. A failed write is rolled back to the last
    durable size so later appends never land behind garbage. A failed fsync poisons the
    object: after such an error the kernel may have dropped dirty pages and a retried fsync
    can falsely succeed, so the only safe continuation is to reopen and rescan; the failed
    append is cut off first, so that the rescan cannot find it in the page cache.
    """

    def __init__(self, path: Path, *, mode: int = 0o600, lock: bool = False) -> None:
        """Open `path` for appending, creating it (durably) if missing.

        Promise on return: the file, its directory entry and its current content are durable.

        With `lock=True` an exclusive advisory lock is taken so a second writer, in this or
        another process, gets `StoreError` instead of interleaving records.
        """
        self.path = Path(path)
        flags = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC
        created = False
        try:
            fd = os.open(self.path, flags | os.O_CREAT | os.O_EXCL, mode)
            created = True
        except FileExistsError:
            fd = os.open(self.path, flags)
        try:
            if lock:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError as exc:
                    raise StoreError(f"{self.path} is open by another writer") from exc
            if created:
                os.fchmod(fd, mode)
                os.fsync(fd)
                fsync_dir(self.path.parent)
            else:
                # A writer killed between write() and fsync() leaves bytes that are only in
                # the page cache; make them durable before anything is appended behind them,
                # or a later power loss could punch a hole in the middle of the file.
                os.fsync(fd)
            self._size = os.fstat(fd).st_size
        except BaseException:
            os.close(fd)
            raise
        self._fd: int | None = fd
        self._broken = False

    @property
    def size(self) -> int:
        """Bytes known to be in the file (all durable once the owner's scan accepted them)."""
        return self._size

    @property
    def broken(self) -> bool:
        """An fsync failed: only closing, reopening and rescanning can go on from here."""
        return self._broken

    def _require_fd(self) -> int:
        if self._fd is None:
            raise StoreError(f"{self.path} is closed")
        if self._broken:
            raise StoreError(f"{self.path} had an fsync failure; reopen to recover")
        return self._fd

    def append(self, data: bytes) -> int:
        """Append `data` and fsync; return the offset it starts at.

        Promise on return: `data` survives power loss. On error the file is cut back to its
        previous size (or the object is poisoned if even that fails).
        """
        fd = self._require_fd()
        offset = self._size
        try:
            with disk_full_guard(self.path):
                _write_all(fd, data)
        except BaseException:
            self._rollback(offset)
            raise
        try:
            os.fsync(fd)
        except BaseException:
            # The kernel may have dropped the pages it could not write, and reports that only
            # once: a later fsync (a reopen's) can succeed while reads still return the bytes
            # from the page cache, never on disk. Cut them off, or a rescan after reopening
            # would take this unacknowledged append for a durable one.
            self._rollback(offset)
            self._broken = True
            raise
        self._size = offset + len(data)
        return offset

    def _rollback(self, size: int) -> None:
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, size)
        except OSError:
            log.exception("could not roll %s back to %d bytes; refusing further writes",
                          self.path, size)
            self._broken = True

    def truncate(self, size: int) -> None:
        """Cut the file to `size` bytes and fsync: used to drop a torn, unacknowledged tail."""
        fd = self._require_fd()
        if size > self._size:
            raise ValueError(f"cannot truncate {self.path} forward to {size} > {self._size}")
        os.ftruncate(fd, size)
        try:
            os.fsync(fd)
        except BaseException:
            self._broken = True
            raise
        self._size = size

    def close(self) -> None:
        """Close the descriptor (releasing the lock). Idempotent."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> AppendOnlyFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
