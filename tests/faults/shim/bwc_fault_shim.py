"""Fault injection at the OS boundary of the agent process (tests/faults only).

Loaded into the agent subprocess, and only there, by ``sitecustomize.py`` next to this file when
``PYTHONPATH`` names this directory and ``BWC_FAULT_SHIM`` names a JSON configuration. It wraps
the ``os`` functions through which the agent touches its state directory (``write``,
``pwrite``, ``writev``, ``fsync``, ``fdatasync``, ``ftruncate``, ``truncate``, ``rename``,
``replace``, ``link``, ``unlink``/``remove``, ``rmdir``, ``mkdir``, ``open``); every call on a
path outside the state directory passes straight through. No function of the project is
patched: the agent's code runs unchanged, only what the kernel answers differs.

What it can do, each switched on by the configuration:

``shadow``  a power-loss model. A *shadow* directory holds only what the kernel has promised to
            keep: on ``fsync`` of a file its content (for an ``O_APPEND`` file only the new
            tail) is copied to the shadow; on ``fsync`` of a directory its entries, as they are
            at that moment, become its durable listing. A rename between two directories is
            atomic, as in a journaling filesystem: it is durable once either directory is
            fsynced. Inodes are told apart by an id kept in an extended attribute (inode numbers
            are reused). `materialize` builds, from the shadow, the state directory a machine
            would find after the power came back: every write not fsynced is gone.
``fault``   an I/O error: the ``nth`` call of a category (``write``, ``fsync``, ``rename``)
            under the state directory (counted once the file ``arm`` exists, if given) fails
            with ``errno`` instead of reaching the kernel; with ``sticky`` every mutating call
            fails from then on (a filesystem remounted read-only).
``kill``    ``SIGKILL`` to the agent itself right before or after the ``nth`` call of a category
            whose path matches a regular expression: a ``kill -9`` that lands inside a chosen
            phase, with no chance of clean-up (the process cannot catch it).
``activity`` a small memory-mapped file: per-category call counts and a ring of the latest calls
            (category, path, thread, entered/returned), readable after a kill to tell what the
            agent was doing at that instant.
``clock_unsynced`` ``adjtimex`` (through ``ctypes``) reports ``TIME_ERROR``, as on a dock whose
            NTP client has not synchronised the clock yet.

Every fault or kill that fires is appended as a JSON line to ``events``.

This file must not import anything of the project: it runs before the agent is imported.
"""

from __future__ import annotations

import contextlib
import errno as errno_mod
import json
import mmap
import os
import re
import signal
import stat
import struct
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from typing import Any

__all__ = ["ACTIVITY_SIZE", "CATEGORIES", "install_from_env", "materialize", "read_activity"]

ENV = "BWC_FAULT_SHIM"
XATTR = "user.bwc-fault-shim"
PENDING = "pending.json"  # see Shadow._save_listings
CATEGORIES = ("write", "fsync", "rename", "open", "mkdir", "unlink", "truncate")
MUTATING = frozenset(CATEGORIES) - {"open"}  # open counts as mutating only with write flags
_RING = 32
_ENTRY = 512
_HEADER = 8 + 8 * len(CATEGORIES) + 8  # magic, counters, ring sequence
ACTIVITY_SIZE = _HEADER + _RING * _ENTRY
_ENTRY_FMT = "<QdB23s32s"  # seq, time, state (1 entered, 2 returned), category, thread
_ENTRY_FIXED = struct.calcsize(_ENTRY_FMT)
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

_real: dict[str, Callable[..., Any]] = {}


def _fd_path(fd: int) -> str | None:
    try:
        path = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None
    return path[: -len(" (deleted)")] if path.endswith(" (deleted)") else path


def _abspath(path: Any, dir_fd: int | None = None) -> str | None:
    if isinstance(path, int):
        return _fd_path(path)
    text = os.fsdecode(path)
    if dir_fd is not None and not os.path.isabs(text):
        base = _fd_path(dir_fd)
        if base is None:
            return None
        text = os.path.join(base, text)
    return os.path.abspath(text)


# ------------------------------------------------------------------------ inode ids (xattr)

def _inode_id(target: int | str) -> str:
    """A stable id for the inode behind an fd or a path (not following symlinks)."""
    follow = isinstance(target, int)
    try:
        return os.getxattr(target, XATTR, follow_symlinks=follow).decode()
    except OSError as exc:
        if exc.errno != errno_mod.ENODATA:
            raise
    new = uuid.uuid4().hex
    try:
        os.setxattr(target, XATTR, new.encode(), os.XATTR_CREATE, follow_symlinks=follow)
    except OSError as exc:
        if exc.errno != errno_mod.EEXIST:
            raise
        return os.getxattr(target, XATTR, follow_symlinks=follow).decode()
    return new


# ------------------------------------------------------------------------------- the shadow

class Shadow:
    """Durable state of the tree under ``root``, kept in ``directory`` (outside ``root``)::

        root            id of the root directory
        files/<id>      durable content of a regular file
        dirs/<id>.json  durable listing of a directory: name -> [kind "f"/"d", id, mode]
    """

    def __init__(self, root: str, directory: str) -> None:
        self.root = root
        self.dir = directory
        self.files = os.path.join(directory, "files")
        self.dirs = os.path.join(directory, "dirs")
        self._lock = threading.RLock()
        self.lock = self._lock  # held by the rename wrapper around a rename and its note
        self._trunc_low: dict[str, int] = {}
        # cross-directory renames not yet durable: (src dir id, src name, dst dir id, dst name,
        # entry) with entry = [kind, id, mode]
        self._renames: list[tuple[str, str, str, str, list[Any]]] = []
        # byte ranges of a file whose fsync failed: the kernel reported the writeback error and
        # marked the pages clean, so they never reach the disk, even if a later fsync of the
        # same file succeeds (Linux since 4.13 reports such an error once). Read back they look
        # fine until the power goes; after it they are zeros (never-written blocks).
        self._lost: dict[str, list[tuple[int, int]]] = {}
        if not os.path.exists(os.path.join(directory, "root")):
            self._snapshot_all()

    # -- helpers using only the real functions (the shadow is outside the state directory) --

    def _write_atomic(self, path: str, data: bytes) -> None:
        tmp = f"{path}.{threading.get_ident()}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        _real["replace"](tmp, path)

    def _listing_path(self, dir_id: str) -> str:
        return os.path.join(self.dirs, f"{dir_id}.json")

    def _load_listing(self, dir_id: str) -> dict[str, list[Any]]:
        try:
            with open(self._listing_path(dir_id), "rb") as f:
                listing: dict[str, list[Any]] = json.load(f)
                return listing
        except FileNotFoundError:
            return {}

    def _save_listing(self, dir_id: str, listing: dict[str, list[Any]]) -> None:
        self._write_atomic(self._listing_path(dir_id), json.dumps(listing).encode())

    def _save_listings(self, updates: dict[str, dict[str, list[Any]]]) -> None:
        """Save several listings as one step. The power cut is a ``kill -9`` that may land
        between two of these writes, and must not leave a rename durable in one directory only
        (both or neither): the set is written first as ``pending.json``, which `materialize`
        finishes applying if the kill came before it was removed."""
        if len(updates) > 1:
            self._write_atomic(os.path.join(self.dir, PENDING), json.dumps(updates).encode())
        for dir_id, listing in updates.items():
            self._save_listing(dir_id, listing)
        if len(updates) > 1:
            _real["unlink"](os.path.join(self.dir, PENDING))

    def _live_listing(self, path: str) -> dict[str, list[Any]]:
        listing: dict[str, list[Any]] = {}
        with os.scandir(path) as it:
            for entry in it:
                try:
                    st = entry.stat(follow_symlinks=False)
                    if stat.S_ISDIR(st.st_mode):
                        kind = "d"
                    elif stat.S_ISREG(st.st_mode):
                        kind = "f"
                    else:
                        continue
                    listing[entry.name] = [kind, _inode_id(entry.path), stat.S_IMODE(st.st_mode)]
                except FileNotFoundError:
                    continue  # removed while we looked: either state is a possible outcome
        return listing

    def _copy_whole(self, src: str, file_id: str) -> None:
        with open(src, "rb") as f:
            data = f.read()
        self._write_atomic(os.path.join(self.files, file_id), data)

    def _snapshot_all(self) -> None:
        """At start-up, everything already in the state directory counts as durable."""
        _real["mkdir"](self.dir) if not os.path.isdir(self.dir) else None
        for sub in (self.files, self.dirs):
            if not os.path.isdir(sub):
                _real["mkdir"](sub)
        root_id = _inode_id(self.root)
        for here, _subdirs, files in os.walk(self.root):
            self._save_listing(_inode_id(here), self._live_listing(here))
            for name in files:
                path = os.path.join(here, name)
                if os.path.isfile(path) and not os.path.islink(path):
                    self._copy_whole(path, _inode_id(path))
        self._write_atomic(os.path.join(self.dir, "root"), root_id.encode())

    # -- events ------------------------------------------------------------------------------

    def truncated(self, fd: int, length: int) -> None:
        file_id = _inode_id(fd)
        with self._lock:
            self._trunc_low[file_id] = min(length, self._trunc_low.get(file_id, length))
            if file_id in self._lost:  # cut-off pages are gone: what is written there is new
                self._lost[file_id] = [(low, min(high, length)) for low, high
                                       in self._lost[file_id] if low < length]

    def fsync_failed(self, fd: int) -> None:
        """An fsync of ``fd`` failed: what it should have made durable never will be."""
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return
        file_id = _inode_id(fd)
        with self._lock:
            try:
                have = os.stat(os.path.join(self.files, file_id)).st_size
            except FileNotFoundError:
                have = 0
            if st.st_size > have:
                self._lost.setdefault(file_id, []).append((have, st.st_size))

    def renamed(self, src: str, dst: str) -> None:
        """A rename between two directories (called after it succeeded)."""
        src_dir, dst_dir = os.path.dirname(src), os.path.dirname(dst)
        if src_dir == dst_dir:
            return  # the directory's own fsync snapshot covers it
        try:
            st = os.stat(dst, follow_symlinks=False)
            kind = "d" if stat.S_ISDIR(st.st_mode) else "f"
            entry = [kind, _inode_id(dst), stat.S_IMODE(st.st_mode)]
            ids = (_inode_id(src_dir), _inode_id(dst_dir))
        except FileNotFoundError:
            return
        with self._lock:
            self._renames.append((ids[0], os.path.basename(src), ids[1],
                                  os.path.basename(dst), entry))

    def fsynced(self, fd: int, path: str) -> None:
        """``fsync(fd)`` returned: what it covered is durable now."""
        st = os.fstat(fd)
        file_id = _inode_id(fd)
        with self._lock:
            if stat.S_ISDIR(st.st_mode):
                listing = self._live_listing(path)
                updates = {file_id: listing}
                self._settle_renames(file_id, updates)
                self._save_listings(updates)
            elif stat.S_ISREG(st.st_mode):
                self._sync_file(fd, file_id, st.st_size)

    def _settle_renames(self, dir_id: str, updates: dict[str, dict[str, list[Any]]]) -> None:
        """Add to ``updates`` (the fsynced directory's new listing) the other side of every
        pending rename into or out of it."""
        keep = []
        for src_dir, src_name, dst_dir, dst_name, entry in self._renames:
            if dir_id not in (src_dir, dst_dir):
                keep.append((src_dir, src_name, dst_dir, dst_name, entry))
                continue
            other = src_dir if dir_id == dst_dir else dst_dir
            listing = updates[other] if other in updates else self._load_listing(other)
            if other == src_dir:
                if listing.get(src_name, [None, None])[1] == entry[1]:
                    del listing[src_name]
            else:
                listing[dst_name] = entry
            updates[other] = listing
        self._renames = keep

    def _sync_file(self, fd: int, file_id: str, size: int) -> None:
        dst = os.path.join(self.files, file_id)
        low = self._trunc_low.pop(file_id, None)
        appending = bool(_real_fcntl_getfl(fd) & os.O_APPEND)
        try:
            have = os.stat(dst).st_size
        except FileNotFoundError:
            have = None
        src = f"/proc/self/fd/{fd}"
        if not appending or have is None:
            self._copy_whole(src, file_id)
            self._zero_lost(file_id)
            return
        start = min(have, size, low if low is not None else have)
        with open(src, "rb") as f:
            f.seek(start)
            tail = f.read(size - start)
        with open(dst, "r+b") as out:
            out.truncate(start)
            out.seek(start)
            out.write(tail)
        self._zero_lost(file_id)

    def _zero_lost(self, file_id: str) -> None:
        ranges = self._lost.get(file_id)
        if not ranges:
            return
        dst = os.path.join(self.files, file_id)
        with open(dst, "r+b") as out:
            size = out.seek(0, os.SEEK_END)
            for low, high in ranges:
                if low < size:
                    out.seek(low)
                    out.write(bytes(min(high, size) - low))


def _real_fcntl_getfl(fd: int) -> int:
    import fcntl
    return fcntl.fcntl(fd, fcntl.F_GETFL)


def materialize(shadow_dir: str, dest: str) -> int:
    """Build at ``dest`` (must not exist) the tree the shadow says is durable; return the
    number of files written."""
    files = os.path.join(shadow_dir, "files")
    dirs = os.path.join(shadow_dir, "dirs")
    pending = os.path.join(shadow_dir, PENDING)
    if os.path.exists(pending):  # the kill came while Shadow._save_listings was writing
        with open(pending, "rb") as f:
            for dir_id, listing in json.load(f).items():
                with open(os.path.join(dirs, f"{dir_id}.json"), "w") as out:
                    json.dump(listing, out)
        os.unlink(pending)
    with open(os.path.join(shadow_dir, "root"), "rb") as f:
        root_id = f.read().decode()
    count = 0

    def build(dir_id: str, path: str, mode: int, depth: int) -> None:
        nonlocal count
        if depth > 64:
            raise RuntimeError(f"shadow tree too deep at {path}")
        os.mkdir(path, mode)
        os.chmod(path, mode)
        try:
            with open(os.path.join(dirs, f"{dir_id}.json"), "rb") as f:
                listing = json.load(f)
        except FileNotFoundError:
            listing = {}
        for name, (kind, entry_id, entry_mode) in sorted(listing.items()):
            target = os.path.join(path, name)
            if kind == "d":
                build(entry_id, target, entry_mode, depth + 1)
                continue
            try:
                with open(os.path.join(files, entry_id), "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                data = b""  # the name is durable, the content never was
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, entry_mode)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            os.chmod(target, entry_mode)
            count += 1

    build(root_id, dest, 0o700, 0)
    return count


# ------------------------------------------------------------------------------- activity

class Activity:
    """Counters and a ring of recent calls in a shared file, written without system calls."""

    def __init__(self, path: str) -> None:
        fd = _real["open"](path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.ftruncate(fd, ACTIVITY_SIZE)
            self._map = mmap.mmap(fd, ACTIVITY_SIZE)
        finally:
            os.close(fd)
        self._map[0:8] = b"BWCSHIM1"
        self._lock = threading.Lock()

    def count(self, category: str) -> int:
        offset = 8 + 8 * CATEGORIES.index(category)
        with self._lock:
            (n,) = struct.unpack_from("<Q", self._map, offset)
            struct.pack_into("<Q", self._map, offset, n + 1)
        return n + 1

    def enter(self, category: str, path: str) -> int:
        with self._lock:
            offset = _HEADER - 8
            (seq,) = struct.unpack_from("<Q", self._map, offset)
            seq += 1
            struct.pack_into("<Q", self._map, offset, seq)
            slot = _HEADER + (seq % _RING) * _ENTRY
            thread = threading.current_thread().name.encode()[:32]
            struct.pack_into(_ENTRY_FMT, self._map, slot, seq, time.time(), 1,
                             category.encode()[:23], thread)
            raw = path.encode(errors="replace")[: _ENTRY - _ENTRY_FIXED - 1]
            self._map[slot + _ENTRY_FIXED : slot + _ENTRY] = raw.ljust(_ENTRY - _ENTRY_FIXED,
                                                                       b"\0")
        return seq

    def leave(self, seq: int) -> None:
        slot = _HEADER + (seq % _RING) * _ENTRY
        with self._lock:
            (current,) = struct.unpack_from("<Q", self._map, slot)
            if current == seq:
                struct.pack_into("<B", self._map, slot + 16, 2)


def read_activity(path: str) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """(counts per category, recent calls oldest first) from an activity file."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < ACTIVITY_SIZE or data[:8] != b"BWCSHIM1":
        return {c: 0 for c in CATEGORIES}, []
    counts = {c: struct.unpack_from("<Q", data, 8 + 8 * i)[0] for i, c in enumerate(CATEGORIES)}
    calls = []
    for i in range(_RING):
        slot = _HEADER + i * _ENTRY
        seq, at, state, cat, thread = struct.unpack_from(_ENTRY_FMT, data, slot)
        if not seq:
            continue
        path = data[slot + _ENTRY_FIXED : slot + _ENTRY].rstrip(b"\0").decode(errors="replace")
        calls.append({"seq": seq, "at": at, "returned": state == 2,
                      "category": cat.rstrip(b"\0").decode(), "path": path,
                      "thread": thread.rstrip(b"\0").decode(errors="replace")})
    calls.sort(key=lambda c: c["seq"])
    return counts, calls


# ------------------------------------------------------------------------------- the shim

class Shim:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.root = os.path.realpath(cfg["root"])
        self.cfg = cfg
        self._lock = threading.Lock()
        self._counts = {c: 0 for c in CATEGORIES}
        self._events_fd = (_real["open"](cfg["events"], os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                                         0o600) if cfg.get("events") else None)
        self.activity = Activity(cfg["activity"]) if cfg.get("activity") else None
        self.shadow = Shadow(self.root, cfg["shadow"]) if cfg.get("shadow") else None
        self.fault = cfg.get("fault")
        self.kill = cfg.get("kill")
        self._kill_re = re.compile(self.kill.get("path", "")) if self.kill else None
        self._kill_seen = 0
        self._fault_re = re.compile(self.fault.get("path", "")) if self.fault else None
        self._fault_seen = 0
        self.sticky_errno: int | None = None
        self._armed_at: float | None = None

    def _armed(self) -> bool:
        """A fault with ``arm`` counts only calls made once that file exists (the test creates
        it when the part of the run it sweeps begins, e.g. right before a camera docks)."""
        if self._armed_at is None:
            arm = self.fault.get("arm") if self.fault else None
            if arm is not None and not os.path.exists(arm):
                return False
            self._armed_at = time.time()
        return True

    def under(self, path: str | None) -> bool:
        return path is not None and (path == self.root or path.startswith(self.root + os.sep))

    def rel(self, path: str) -> str:
        return os.path.relpath(path, self.root)

    def record(self, what: str, **details: Any) -> None:
        if self._events_fd is None:
            return
        stack = [f"{os.path.basename(fr.filename)}:{fr.name}"
                 for fr in traceback.extract_stack(limit=16)[:-3]
                 if "bwc_fault_shim" not in fr.filename]
        line = json.dumps({"what": what, "at": time.time(), "pid": os.getpid(),
                           "thread": threading.current_thread().name, "stack": stack,
                           **details}) + "\n"
        _real["write"](self._events_fd, line.encode())

    def before(self, category: str, path: str, mutating: bool = True,
               fd: int | None = None) -> int | None:
        """Called before a call under the state directory; may raise the injected error or
        kill the process. Returns the activity sequence number (for `after`)."""
        if self.activity is not None:
            self.activity.count(category)
        with self._lock:
            self._counts[category] += 1
            n = self._counts[category]
        seq = self.activity.enter(category, self.rel(path)) if self.activity else None
        if self.sticky_errno is not None and mutating:
            self._failing(category, fd)
            raise OSError(self.sticky_errno, os.strerror(self.sticky_errno), path)
        fault = self.fault
        if fault is not None and category == fault["cat"] and self._fault_re is not None \
                and self._fault_re.search(self.rel(path)) and self._armed():
            with self._lock:
                self._fault_seen += 1
                fire = self._fault_seen == fault["nth"]
            if fire:
                code = getattr(errno_mod, fault["errno"])
                self.record("fault", category=category, path=self.rel(path), nth=fault["nth"],
                            errno=fault["errno"], count=n)
                if fault.get("sticky"):
                    self.sticky_errno = code
                self._failing(category, fd)
                raise OSError(code, os.strerror(code), path)
        self._maybe_kill("before", category, path)
        return seq

    def _failing(self, category: str, fd: int | None) -> None:
        if category == "fsync" and fd is not None and self.shadow is not None:
            self.shadow.fsync_failed(fd)

    def after(self, category: str, path: str, seq: int | None) -> None:
        if seq is not None and self.activity is not None:
            self.activity.leave(seq)
        self._maybe_kill("after", category, path)

    def _maybe_kill(self, when: str, category: str, path: str) -> None:
        kill = self.kill
        if kill is None or kill.get("when", "after") != when or category != kill["cat"]:
            return
        assert self._kill_re is not None
        if not self._kill_re.search(self.rel(path)):
            return
        with self._lock:
            self._kill_seen += 1
            fire = self._kill_seen == kill["nth"]
        if fire:
            self.record("kill", category=category, path=self.rel(path), when=when,
                        nth=kill["nth"], phase=kill.get("phase"))
            os.kill(os.getpid(), signal.SIGKILL)


_shim: Shim | None = None


def _guard(category: str, path: str | None, call: Callable[[], Any], *,
           mutating: bool = True, on_success: Callable[[Any], None] | None = None,
           fd: int | None = None) -> Any:
    shim = _shim
    if shim is None or path is None or not shim.under(path):
        return call()
    seq = shim.before(category, path, mutating, fd)
    result = call()
    if on_success is not None:
        on_success(result)
    shim.after(category, path, seq)
    return result


def _install_wrappers() -> None:
    names = ("write", "pwrite", "writev", "fsync", "fdatasync", "ftruncate", "truncate",
             "rename", "replace", "link", "unlink", "remove", "rmdir", "mkdir", "open")
    for name in names:
        _real[name] = getattr(os, name)

    def write(fd: int, data: Any) -> int:
        return _guard("write", _fd_path(fd), lambda: _real["write"](fd, data))

    def pwrite(fd: int, data: Any, offset: int) -> int:
        return _guard("write", _fd_path(fd), lambda: _real["pwrite"](fd, data, offset))

    def writev(fd: int, buffers: Any) -> int:
        return _guard("write", _fd_path(fd), lambda: _real["writev"](fd, buffers))

    def _sync(real: str) -> Callable[[Any], None]:
        def sync(fd: Any) -> None:
            fileno = fd if isinstance(fd, int) else fd.fileno()
            path = _fd_path(fileno)

            def durable(_result: Any) -> None:
                if _shim is not None and _shim.shadow is not None and path is not None:
                    _shim.shadow.fsynced(fileno, path)
            _guard("fsync", path, lambda: _real[real](fd), on_success=durable, fd=fileno)
        return sync

    def ftruncate(fd: int, length: int) -> None:
        def noted(_result: Any) -> None:
            if _shim is not None and _shim.shadow is not None:
                _shim.shadow.truncated(fd, length)
        _guard("truncate", _fd_path(fd), lambda: _real["ftruncate"](fd, length),
               on_success=noted)

    def truncate(path: Any, length: int) -> None:
        _guard("truncate", _abspath(path), lambda: _real["truncate"](path, length))

    def _move(real: str) -> Callable[..., None]:
        def move(src: Any, dst: Any, *, src_dir_fd: int | None = None,
                 dst_dir_fd: int | None = None) -> None:
            src_path, dst_path = _abspath(src, src_dir_fd), _abspath(dst, dst_dir_fd)
            shadow = _shim.shadow if _shim is not None else None
            tracked = (shadow is not None and _shim is not None and src_path is not None
                       and dst_path is not None and _shim.under(src_path))

            def noted(_result: Any) -> None:
                if tracked and shadow is not None and src_path and dst_path:
                    shadow.renamed(src_path, dst_path)
            # The rename and its note are one step for the shadow: a directory fsync of another
            # thread sees the rename either not yet made or made and noted, so that it stays
            # atomic (never in both directories, never in neither), as on a journaling
            # filesystem.
            with shadow.lock if tracked and shadow is not None else contextlib.nullcontext():
                _guard("rename", dst_path, lambda: _real[real](
                    src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd), on_success=noted)
        return move

    def link(src: Any, dst: Any, *, src_dir_fd: int | None = None,
             dst_dir_fd: int | None = None, follow_symlinks: bool = True) -> None:
        _guard("rename", _abspath(dst, dst_dir_fd), lambda: _real["link"](
            src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd,
            follow_symlinks=follow_symlinks))

    def _remove(real: str) -> Callable[..., None]:
        def remove(path: Any, *, dir_fd: int | None = None) -> None:
            _guard("unlink", _abspath(path, dir_fd), lambda: _real[real](path, dir_fd=dir_fd))
        return remove

    def mkdir(path: Any, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
        _guard("mkdir", _abspath(path, dir_fd), lambda: _real["mkdir"](path, mode,
                                                                       dir_fd=dir_fd))

    def open_(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        where = _abspath(path, dir_fd)
        result: int = _guard("open", where, lambda: _real["open"](path, flags, mode,
                                                                  dir_fd=dir_fd),
                             mutating=bool(flags & _WRITE_FLAGS))
        return result

    os.write = write
    os.pwrite = pwrite
    os.writev = writev
    os.fsync = _sync("fsync")
    os.fdatasync = _sync("fdatasync")
    os.ftruncate = ftruncate
    os.truncate = truncate
    os.rename = _move("rename")
    os.replace = _move("replace")
    os.link = link
    os.unlink = _remove("unlink")
    os.remove = _remove("remove")
    os.rmdir = _remove("rmdir")
    os.mkdir = mkdir
    os.open = open_


def _install_clock_unsynced() -> None:
    """``adjtimex`` answers TIME_ERROR (5): the kernel's "clock not synchronised"."""
    import ctypes

    real_cdll = ctypes.CDLL

    class CDLL(real_cdll):  # type: ignore[misc, valid-type]
        def __getattr__(self, name: str) -> Any:
            if name == "adjtimex":
                return lambda *_args: 5
            return super().__getattr__(name)

    ctypes.CDLL = CDLL  # type: ignore[misc]


def install_from_env() -> None:
    global _shim
    path = os.environ.get(ENV)
    if not path or _shim is not None:
        return
    with open(path, "rb") as f:
        cfg = json.load(f)
    # Only the agent: child processes (there are none in Python) must not inherit it.
    os.environ.pop(ENV, None)
    if cfg.get("clock_unsynced"):
        _install_clock_unsynced()
    if cfg.get("root"):
        _install_wrappers()
        _shim = Shim(cfg)
    parts = [k for k in ("shadow", "fault", "kill", "activity", "clock_unsynced") if cfg.get(k)]
    print(f"bwc-fault-shim: installed ({', '.join(parts)})", file=sys.stderr, flush=True)
