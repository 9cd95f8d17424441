"""Append-only, hash-chained JSON-lines journal in size-rotated segment files.

For unbounded histories (events, outbox, ledger, audit). Each record is one line of canonical
JSON carrying two fields the journal adds itself:

* ``seq``:  1, 2, 3, … without gaps, across segments;
* ``prev``: hex SHA-256 of the previous line's bytes (without its newline), ``"0" * 64`` for
  seq 1. Editing, removing or reordering any line breaks the chain at the next line.

Segments are named by the seq of their first line (``00000000000000000042.jsonl``) and
rotated when the current one reaches ``segment_max_bytes`` (checked before each append, so a
batch never straddles two files). Compaction drops whole leading segments; the first surviving
line still carries the hash of the line before it, so the chain continues from that anchor.

Partitioned journals (``partition=``, e.g. the calendar month) also rotate when the partition
label changes, and carry the label in the segment name (``…0042.2026-11.jsonl``); labels never
go back, so `read_partitions` opens only the segments of the labels asked for. That keeps a
month's query as cheap in year 10 as in year 1.

Ownership: by default one `Journal` object owns the directory (flock held while open). A
*shared* journal (``shared=True``) takes the flock only around each operation, so a daemon and
CLI commands append to the same history: before appending it reads just what other writers
added since its own last look, so the chain stays linear.

Crash model: only the last line of the last segment can be torn, because every append is
fsynced before it is acknowledged and nothing is ever written behind it. On open such a line
(incomplete, or complete but unparseable) is truncated away with a warning. Any other damage
raises `CorruptStoreError` naming the file and line.
"""

from __future__ import annotations

import bisect
import fcntl
import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from agent.store.durable import AppendOnlyFile, canonical_json_bytes, ensure_dir, fsync_dir
from agent.store.errors import CorruptStoreError, StoreError

__all__ = ["DEFAULT_SEGMENT_MAX_BYTES", "GENESIS_HASH", "Journal"]

log = logging.getLogger(__name__)

DEFAULT_SEGMENT_MAX_BYTES = 4 * 1024 * 1024
GENESIS_HASH = "0" * 64
_SEGMENT_RE = re.compile(r"^(\d{20})(?:\.([0-9A-Za-z][0-9A-Za-z_-]{0,31}))?\.jsonl$")
_LABEL_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_-]{0,31}$")
_LOCK_NAME = "journal.lock"
_TAIL_BLOCK = 64 * 1024


def _segment_name(first_seq: int, label: str | None = None) -> str:
    return f"{first_seq:020d}.jsonl" if label is None else f"{first_seq:020d}.{label}.jsonl"


def _line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def _decode(line: bytes) -> dict[str, Any]:
    """Parse one line (without newline); `ValueError` if it is not a journal record."""
    obj = json.loads(line)
    if not isinstance(obj, dict):
        raise ValueError("line is not a JSON object")
    seq, prev = obj.get("seq"), obj.get("prev")
    if type(seq) is not int or seq < 1:
        raise ValueError("missing or invalid 'seq'")
    if not isinstance(prev, str) or len(prev) != 64:
        raise ValueError("missing or invalid 'prev'")
    return obj


def _check_link(
    rec: Mapping[str, Any], seq: int, prev: str | None, path: Path, lineno: int
) -> None:
    """Raise unless `rec` is record `seq` chained to `prev` (None: unverifiable anchor)."""
    if rec["seq"] != seq:
        raise CorruptStoreError(
            f"seq gap or reorder: expected seq {seq}, found {rec['seq']}", path=path, line=lineno
        )
    if prev is not None and rec["prev"] != prev:
        raise CorruptStoreError(f"hash chain broken at seq {seq}", path=path, line=lineno)


class Journal:
    """One journal directory.

    Thread-safe for appends and compaction. Memory use is constant in the history length:
    only the segment start numbers (and labels), the last seq and the head hash are kept.
    """

    def __init__(
        self, directory: Path, *, segment_max_bytes: int = DEFAULT_SEGMENT_MAX_BYTES,
        partition: Callable[[], str] | None = None, shared: bool = False,
    ) -> None:
        """Open (creating if needed) the journal in `directory`.

        `partition` returns the label new records belong to (called at each append, e.g. the
        current UTC month); `shared` lets several `Journal` objects, in any processes, append
        to the same directory in turn (see the module docstring).
        """
        if segment_max_bytes < 1:
            raise ValueError("segment_max_bytes must be positive")
        self.directory = Path(directory)
        self.segment_max_bytes = segment_max_bytes
        self._partition = partition
        self._shared = shared
        self._lock = threading.Lock()
        ensure_dir(self.directory)
        self._closed = False
        self._lock_fd: int | None = self._lock_directory()
        self._tail: AppendOnlyFile | None = None
        self._labels: dict[int, str | None] = {}
        self._listed: tuple[list[str], dict[int, str | None]] = ([], {})
        try:
            self._starts = self._list_segments()
            self._last_seq, self._head = self._recover()
        except BaseException:
            self.close()
            raise
        if shared:
            self._unlock_directory()

    # -- opening -------------------------------------------------------------------------

    def _lock_directory(self) -> int:
        fd = os.open(self.directory / _LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            # A shared journal waits its turn (another writer holds the lock for one append);
            # an owned one refuses a second owner at once.
            fcntl.flock(fd, fcntl.LOCK_EX if self._shared else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise StoreError(f"journal {self.directory} is open elsewhere") from exc
        return fd

    def _unlock_directory(self) -> None:
        if self._lock_fd is not None:
            fd, self._lock_fd = self._lock_fd, None
            os.close(fd)  # releases the flock

    def _list_segments(self) -> list[int]:
        names = os.listdir(self.directory)
        if names == self._listed[0]:
            # The same directory entries as last time (a shared journal looks before every
            # append): skip re-parsing hundreds of segment names in a long history.
            self._labels = dict(self._listed[1])
            return sorted(self._labels)
        labels: dict[int, str | None] = {}
        for name in names:
            if (m := _SEGMENT_RE.match(name)) is not None:
                first = int(m.group(1))
                if first in labels:
                    raise CorruptStoreError(f"two segments start at seq {first}",
                                            path=self.directory / name)
                labels[first] = m.group(2)
        self._labels = labels
        self._listed = (names, dict(labels))
        return sorted(labels)

    def _path(self, first_seq: int) -> Path:
        return self.directory / _segment_name(first_seq, self._labels.get(first_seq))

    def _last_line_of(self, first_seq: int) -> tuple[int, str]:
        """(seq, hash) of the last line of a sealed (non-tail) segment, reading from the end."""
        path = self._path(first_seq)
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                raise CorruptStoreError("segment before the tail is empty", path=path)
            f.seek(size - 1)
            if f.read(1) != b"\n":
                raise CorruptStoreError("sealed segment ends mid-line", path=path)
            buf, pos = b"", size - 1
            while pos > 0 and b"\n" not in buf:
                start = max(0, pos - _TAIL_BLOCK)
                f.seek(start)
                buf = f.read(pos - start) + buf
                pos = start
        line = buf[buf.rfind(b"\n") + 1 :]
        try:
            rec = _decode(line)
        except ValueError as exc:
            raise CorruptStoreError(f"last line unparseable: {exc}", path=path) from exc
        return rec["seq"], _line_hash(line)

    def _recover(self) -> tuple[int, str]:
        """Validate the tail segment, cut a torn last line, return (last_seq, head_hash)."""
        if not self._starts:
            return 0, GENESIS_HASH
        tail_start = self._starts[-1]
        expected_prev: str | None = GENESIS_HASH if tail_start == 1 else None
        if len(self._starts) > 1:
            prev_seq, expected_prev = self._last_line_of(self._starts[-2])
            if prev_seq != tail_start - 1:
                raise CorruptStoreError(
                    f"previous segment ends at seq {prev_seq}, tail starts at {tail_start}",
                    path=self._path(tail_start),
                )
        seq, head = self._scan_tail(0, tail_start - 1, expected_prev)
        if head is None:
            raise CorruptStoreError("tail segment is empty and has no predecessor",
                                    path=self._path(tail_start))
        return seq, head

    def _scan_tail(self, offset: int, seq: int, head: str | None) -> tuple[int, str | None]:
        """Open the tail segment and check its lines from byte `offset` on, which must follow
        record `seq` whose hash is `head`; cut a torn last line; return the new (seq, head)."""
        path = self._path(self._starts[-1])
        self._tail = AppendOnlyFile(path)
        size = self._tail.size
        good_end, lineno = offset, 0
        with open(path, "rb") as f:
            f.seek(offset)
            for raw in f:
                lineno += 1
                end = good_end + len(raw)
                if not raw.endswith(b"\n"):
                    break  # incomplete, therefore last: torn
                line = raw[:-1]
                try:
                    rec = _decode(line)
                except ValueError as exc:
                    if end >= size:
                        break  # complete but garbled last line: torn as well
                    raise CorruptStoreError(f"unparseable line: {exc}", path=path,
                                            line=lineno) from exc
                _check_link(rec, seq + 1, head, path, lineno)
                seq, head, good_end = seq + 1, _line_hash(line), end
        if good_end < size:
            # Its fsync never returned, so nobody was told it was stored. (A shared journal
            # holds the lock here, so the writer that tore it is gone, not mid-append.)
            log.warning("journal %s: truncating torn tail after line %d (%d bytes)",
                        path, lineno, size - good_end)
            self._tail.truncate(good_end)
        return seq, head

    def _catch_up(self) -> None:
        """Shared journals, lock held: take in what other writers appended since our last look.

        Costs only what they added, except when they opened a new segment: then the new tail is
        scanned whole (bounded by ``segment_max_bytes``)."""
        known_tail = self._starts[-1] if self._starts else None
        known_size = self._tail.size if self._tail is not None else 0
        starts = self._list_segments()
        same_tail = starts[-1:] == ([known_tail] if known_tail is not None else [])
        if same_tail and (known_tail is None
                          or os.stat(self._path(known_tail)).st_size == known_size):
            return
        if self._tail is not None:
            self._tail.close()
            self._tail = None
        self._starts = starts
        if same_tail:
            self._last_seq, head = self._scan_tail(known_size, self._last_seq, self._head)
            assert head is not None  # the scan starts from our known head
            self._head = head
        else:
            self._last_seq, self._head = self._recover()

    # -- properties ----------------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        """Seq of the newest durable record; 0 for an empty journal."""
        return self._last_seq

    @property
    def head_hash(self) -> str:
        """Hash of the newest line: what the next record's ``prev`` will be."""
        return self._head

    @property
    def first_seq(self) -> int:
        """Seq of the oldest retained record (``last_seq + 1`` when nothing is retained)."""
        with self._lock:
            return self._starts[0] if self._starts else self._last_seq + 1

    @property
    def segment_starts(self) -> tuple[int, ...]:
        """First seq of every retained segment, oldest first."""
        with self._lock:
            return tuple(self._starts)

    # -- writing -------------------------------------------------------------------------

    def append(self, record: Mapping[str, Any]) -> int:
        """Append one record; return its seq.

        Promise on return: the record survives power loss and will be returned by `read`.
        """
        return self.append_many((record,))[0]

    def append_many(self, records: Iterable[Mapping[str, Any]]) -> list[int]:
        """Append records with a single write and a single fsync; return their seqs.

        Promise on return: all of them survive power loss. After a crash before return, any
        prefix of the batch may have survived (each surviving record is complete and valid).
        `ValueError`/`TypeError` for records that use ``seq``/``prev`` or are not JSON-able
        are raised before anything is written.
        """
        batch = list(records)
        for record in batch:
            if "seq" in record or "prev" in record:
                raise ValueError("'seq' and 'prev' are assigned by the journal")
        with self._lock:
            if self._closed:
                raise StoreError(f"journal {self.directory} is closed")
            if not self._shared:
                return self._append_locked(batch)
            self._lock_fd = self._lock_directory()
            try:
                self._catch_up()
                return self._append_locked(batch)
            finally:
                self._unlock_directory()

    def refresh(self) -> None:
        """Shared journals: take in what other writers appended (for `read` and `last_seq`)."""
        if not self._shared:
            return
        with self._lock:
            if self._closed:
                raise StoreError(f"journal {self.directory} is closed")
            self._lock_fd = self._lock_directory()
            try:
                self._catch_up()
            finally:
                self._unlock_directory()

    def _append_locked(self, batch: list[Mapping[str, Any]]) -> list[int]:
        seq, prev, lines = self._last_seq, self._head, []
        for record in batch:
            seq += 1
            line = canonical_json_bytes({**record, "seq": seq, "prev": prev})
            prev = _line_hash(line)
            lines.append(line + b"\n")
        if not lines:
            return []
        self._tail_for_append().append(b"".join(lines))
        first = self._last_seq + 1
        self._last_seq, self._head = seq, prev
        return list(range(first, seq + 1))

    def _tail_for_append(self) -> AppendOnlyFile:
        if self._tail is not None and self._tail.broken:
            self._reopen_tail()
        tail = self._tail
        label = self._partition() if self._partition is not None else None
        if label is not None and not _LABEL_RE.match(label):
            raise ValueError(f"bad partition label {label!r}")
        current = self._labels.get(self._starts[-1]) if self._starts else None
        # A label that goes back (the clock stepped backwards) stays in the current segment:
        # segment labels must never decrease, or a partition read could miss a segment.
        relabel = label is not None and (current is None or label > current)
        if tail is not None and not relabel and tail.size < self.segment_max_bytes:
            return tail
        if tail is not None:
            tail.close()
            self._tail = None
        start = self._last_seq + 1
        if tail is not None and tail.size == 0:
            # An empty tail (created, then the append failed) is renamed to its new label.
            self._path(start).unlink()
            self._starts.pop()
        self._labels[start] = label if relabel else current
        self._tail = AppendOnlyFile(self._path(start))  # durable before anything goes in
        self._starts.append(start)
        return self._tail

    def _reopen_tail(self) -> None:
        """An fsync of the tail failed (its append was cut off again): reopen the tail and
        rescan it before anything else goes in, as `AppendOnlyFile` asks. Without this, one
        transient I/O error would refuse every later append until the agent restarts."""
        assert self._tail is not None
        log.warning("journal %s: reopening the tail after a failed fsync", self.directory)
        self._tail.close()
        self._tail = None
        self._starts = self._list_segments()
        self._last_seq, self._head = self._recover()

    def drop_segments_before(self, seq: int) -> int:
        """Delete whole segments all of whose records have seq < `seq`; return how many.

        Never drops the tail segment, nor the segment holding the newest record (its last
        line is what the chain continues from). Promise on return: the deletions are durable;
        a crash part-way leaves a consistent, shorter prefix removed.
        """
        with self._lock:
            if self._shared:
                # Shared journals hold histories kept for good (audit, compliance records).
                raise StoreError(f"journal {self.directory} is shared: it is never compacted")
            limit = min(seq, self._last_seq)
            drop = 0
            while drop + 1 < len(self._starts) and self._starts[drop + 1] <= limit:
                drop += 1
            for first in self._starts[:drop]:
                self._path(first).unlink()
            if drop:
                fsync_dir(self.directory)
                log.info("journal %s: dropped %d segment(s) below seq %d",
                         self.directory, drop, self._starts[drop])
                del self._starts[:drop]
            return drop

    # -- reading -------------------------------------------------------------------------

    def read(self, from_seq: int = 0) -> Iterator[dict[str, Any]]:
        """Yield records with seq >= `from_seq` (including ``seq`` and ``prev``), oldest first.

        Validates as it goes (parse, seq continuity, hash chain) and raises
        `CorruptStoreError` on damage. Stops at the last record durable when called.
        Records below the oldest retained segment are silently unavailable (compacted).
        """
        return (rec for rec, _ in self._walk(from_seq))

    def read_partitions(self, first: str, last: str) -> Iterator[dict[str, Any]]:
        """Yield the records of the segments labelled `first` … `last` (inclusive, compared as
        strings), oldest first, validated like `read`. Only those segments are opened.

        A partition read cannot check the link into its first segment (that needs the line
        before it); `verify` checks the whole chain.
        """
        with self._lock:
            starts, end = list(self._starts), self._last_seq
            labels = dict(self._labels)
        chosen = [i for i, s in enumerate(starts) if (lab := labels.get(s)) is not None
                  and first <= lab <= last]
        if not chosen:
            return iter(())
        # Labels never decrease, so the chosen segments are consecutive.
        lo, hi = chosen[0], chosen[-1]
        stop = starts[hi + 1] - 1 if hi + 1 < len(starts) else end
        return (rec for rec, _ in self._walk_snapshot(starts[lo:hi + 1], stop, starts[lo]))

    def partitions(self) -> list[str]:
        """Labels of the retained segments, oldest first, without repeats."""
        with self._lock:
            seen = [self._labels.get(s) for s in self._starts]
        return list(dict.fromkeys(lab for lab in seen if lab is not None))

    def verify(self) -> int:
        """Re-walk every retained record, checking the chain up to `head_hash`; return count."""
        count, head = 0, None
        for _, line_hash in self._walk(0):
            count, head = count + 1, line_hash
        if count and head != self._head:
            raise CorruptStoreError("newest line does not match the head hash",
                                    path=self._path(self._starts[-1]))
        return count

    def _walk(self, from_seq: int) -> Iterator[tuple[dict[str, Any], str]]:
        with self._lock:
            starts, end = list(self._starts), self._last_seq
        return self._walk_snapshot(starts, end, from_seq)

    def _walk_snapshot(
        self, starts: list[int], end: int, from_seq: int
    ) -> Iterator[tuple[dict[str, Any], str]]:
        if end == 0 or from_seq > end or not starts:
            return
        index = max(0, bisect.bisect_right(starts, from_seq) - 1)
        seq = starts[index]
        prev: str | None = GENESIS_HASH if seq == 1 else None
        for first in starts[index:]:
            path = self._path(first)
            if first != seq:
                raise CorruptStoreError(f"segment starts at seq {first}, expected {seq}",
                                        path=path)
            try:
                f = open(path, "rb")  # noqa: SIM115 - closed by the with below
            except FileNotFoundError as exc:
                raise StoreError(f"segment {path} vanished while reading (compacted?)") from exc
            with f:
                for lineno, raw in enumerate(f, start=1):
                    if not raw.endswith(b"\n"):
                        raise CorruptStoreError("incomplete line", path=path, line=lineno)
                    line = raw[:-1]
                    try:
                        rec = _decode(line)
                    except ValueError as exc:
                        raise CorruptStoreError(f"unparseable line: {exc}", path=path,
                                                line=lineno) from exc
                    _check_link(rec, seq, prev, path, lineno)
                    prev = _line_hash(line)
                    if seq >= from_seq:
                        yield rec, prev
                    if seq == end:
                        return
                    seq += 1
        raise CorruptStoreError(f"journal ends at seq {seq - 1}, expected {end}",
                                path=self._path(starts[-1]))

    # -- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Close files and release the directory lock. Idempotent."""
        with self._lock:
            self._closed = True
            if self._tail is not None:
                self._tail.close()
                self._tail = None
            if self._lock_fd is not None:
                fd, self._lock_fd = self._lock_fd, None
                os.close(fd)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
