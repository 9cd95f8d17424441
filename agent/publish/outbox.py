"""The durable outbox: what must reach the console survives crashes until it is acknowledged.

paho-mqtt queues publishes in memory only, so anything the console has not confirmed is kept
here. Two journals under the outbox directory:

* ``items/`` one record per queued message (kind, topic, item_id, payload, created_at);
* ``done/``  one record per `mark_done` call, listing the item seqs acknowledged.

An item is pending when it is in ``items/`` and no ``done/`` record names it. Delivery is
at-least-once: a crash after the console acknowledged but before `mark_done` returned
re-publishes the item, so consumers deduplicate by ``item_id``.

Compaction: once every item in an ``items/`` segment is done, the segment is dropped; then
``done/`` segments that only mention dropped items are dropped too (in that order, so a
crash in between can only leave harmless extra done records, never resurrect or lose an
item). Deduplication by `item_id` covers every item still retained in ``items/``; an id whose
segment was compacted away can be queued again.

Memory: an index of pending ids (seq, created_at) and of retained ids (seq) — never payloads,
which `pending()` reads back from the journal.
"""

from __future__ import annotations

import bisect
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from agent.store.errors import CorruptStoreError
from agent.store.journal import DEFAULT_SEGMENT_MAX_BYTES, Journal

__all__ = ["Outbox", "OutboxItem"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One queued message as stored; `seq` is its position in the items journal."""

    seq: int
    kind: str
    topic: str
    item_id: str
    payload: dict[str, Any]
    created_at: float


class _Pending(NamedTuple):
    seq: int
    created_at: float


def _item_from_record(rec: Mapping[str, Any], path: Path) -> OutboxItem:
    try:
        item = OutboxItem(rec["seq"], rec["kind"], rec["topic"], rec["item_id"],
                          rec["payload"], rec["created_at"])
    except KeyError as exc:
        raise CorruptStoreError(f"outbox record {rec.get('seq')} lacks {exc}",
                                path=path) from exc
    if not (isinstance(item.kind, str) and isinstance(item.topic, str)
            and isinstance(item.item_id, str) and isinstance(item.payload, dict)
            and isinstance(item.created_at, int | float)):
        raise CorruptStoreError(f"outbox record {item.seq} has mistyped fields", path=path)
    return item


def _check_text(name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")


class Outbox:
    """Durable, idempotent, ack-driven message queue (thread-safe)."""

    def __init__(self, directory: Path, *, clock: Callable[[], float] = time.time,
                 segment_max_bytes: int = DEFAULT_SEGMENT_MAX_BYTES) -> None:
        self.directory = Path(directory)
        self._clock = clock
        self._lock = threading.Lock()
        self._items = Journal(self.directory / "items", segment_max_bytes=segment_max_bytes)
        try:
            self._done = Journal(self.directory / "done", segment_max_bytes=segment_max_bytes)
        except BaseException:
            self._items.close()
            raise
        # Both in seq order; OrderedDict because we pop from the front and peek at it often.
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._retained: OrderedDict[str, int] = OrderedDict()
        # done-journal segment start -> highest item seq its records acknowledge
        self._done_max_ref: dict[int, int] = {}
        try:
            self._load()
        except BaseException:
            self.close()
            raise

    def _load(self) -> None:
        done_seqs: set[int] = set()
        starts = self._done.segment_starts
        for rec in self._done.read():
            seqs = rec.get("done")
            if not isinstance(seqs, list) or not all(type(s) is int for s in seqs) or not seqs:
                raise CorruptStoreError(f"done record {rec['seq']} is malformed",
                                        path=self._done.directory)
            done_seqs.update(seqs)
            segment = starts[bisect.bisect_right(starts, rec["seq"]) - 1]
            self._done_max_ref[segment] = max(self._done_max_ref.get(segment, 0), max(seqs))
        for rec in self._items.read():
            item = _item_from_record(rec, self._items.directory)
            if item.item_id in self._retained:
                log.warning("outbox: duplicate item_id %r at seq %d ignored", item.item_id,
                            item.seq)
                continue
            self._retained[item.item_id] = item.seq
            if item.seq not in done_seqs:
                self._pending[item.item_id] = _Pending(item.seq, float(item.created_at))
        log.info("outbox %s: %d pending of %d retained", self.directory, len(self._pending),
                 len(self._retained))

    def put(self, kind: str, topic: str, payload: Mapping[str, Any], item_id: str) -> bool:
        """Queue one message; False (and nothing written) if `item_id` is already queued.

        Promise on return: the item survives power loss until marked done.
        """
        return self.put_many(((kind, topic, payload, item_id),))[0]

    def put_many(
        self, items: Iterable[tuple[str, str, Mapping[str, Any], str]]
    ) -> list[bool]:
        """Queue (kind, topic, payload, item_id) tuples with one fsync; per item, whether it
        was newly queued (False for an id already retained or repeated in the batch).

        Promise on return: every newly queued item survives power loss. A crash before return
        may keep any prefix of the batch; re-putting the batch then queues only the rest.
        """
        with self._lock:
            now = self._clock()
            if not math.isfinite(now):
                raise ValueError("clock returned a non-finite time")
            records: list[dict[str, Any]] = []
            result: list[bool] = []
            batch: set[str] = set()
            for kind, topic, payload, item_id in items:
                _check_text("kind", kind)
                _check_text("topic", topic)
                _check_text("item_id", item_id)
                if not isinstance(payload, Mapping):
                    raise TypeError("payload must be a mapping")
                fresh = item_id not in self._retained and item_id not in batch
                result.append(fresh)
                if fresh:
                    batch.add(item_id)
                    records.append({"kind": kind, "topic": topic, "item_id": item_id,
                                    "payload": dict(payload), "created_at": now})
            seqs = self._items.append_many(records)
            for record, seq in zip(records, seqs, strict=True):
                self._retained[record["item_id"]] = seq
                self._pending[record["item_id"]] = _Pending(seq, now)
            return result

    def pending(self, limit: int) -> list[OutboxItem]:
        """Up to `limit` not-yet-done items, oldest first, payloads read from disk."""
        with self._lock:
            wanted: set[int] = set()
            for entry in self._pending.values():
                if len(wanted) >= limit:
                    break
                wanted.add(entry.seq)
            if not wanted:
                return []
            found: list[OutboxItem] = []
            for rec in self._items.read(min(wanted)):
                if rec["seq"] in wanted:
                    found.append(_item_from_record(rec, self._items.directory))
                    if len(found) == len(wanted):
                        break
            if len(found) != len(wanted):
                raise CorruptStoreError(f"{len(wanted) - len(found)} pending items missing",
                                        path=self._items.directory)
            return found

    def mark_done(self, ids: Iterable[str]) -> int:
        """Record that the console acknowledged `ids`; return how many were pending.

        Unknown or already-done ids are ignored. Promise on return: the acknowledgement
        survives power loss. Fully acknowledged segments are compacted afterwards.
        """
        with self._lock:
            acked: dict[str, int] = {}
            for item_id in ids:
                entry = self._pending.get(item_id)
                if entry is not None:
                    acked[item_id] = entry.seq
            if not acked:
                return 0
            seqs = sorted(acked.values())
            done_seq = self._done.append({"done": seqs, "ids": list(acked)})
            for item_id in acked:
                del self._pending[item_id]
            starts = self._done.segment_starts
            segment = starts[bisect.bisect_right(starts, done_seq) - 1]
            self._done_max_ref[segment] = max(self._done_max_ref.get(segment, 0), seqs[-1])
            self._compact_locked()
            return len(acked)

    def compact(self) -> int:
        """Drop fully acknowledged segments of both journals; return how many were dropped.

        Promise on return: the deletions are durable (and never touch a pending item).
        """
        with self._lock:
            return self._compact_locked()

    def _compact_locked(self) -> int:
        # Everything below the oldest pending item is done.
        oldest = next(iter(self._pending.values()), None)
        cut = oldest.seq if oldest is not None else self._items.last_seq + 1
        dropped = self._items.drop_segments_before(cut)
        first_item = self._items.first_seq
        while self._retained and next(iter(self._retained.values())) < first_item:
            self._retained.popitem(last=False)
        # Only now may done records for the dropped items go: see the module docstring.
        starts = self._done.segment_starts
        n = 0
        while n + 1 < len(starts) and self._done_max_ref.get(starts[n], 0) < first_item:
            n += 1
        if n:
            removed = self._done.drop_segments_before(starts[n])
            for start in starts[:removed]:
                self._done_max_ref.pop(start, None)
            dropped += removed
        return dropped

    def is_pending(self, item_id: str) -> bool:
        """True while `item_id` is queued and not yet marked done."""
        with self._lock:
            return item_id in self._pending

    @property
    def depth(self) -> int:
        """Number of pending items."""
        with self._lock:
            return len(self._pending)

    @property
    def oldest_pending_created_at(self) -> float | None:
        """`created_at` of the oldest pending item, None when nothing is pending."""
        with self._lock:
            if not self._pending:
                return None
            return next(iter(self._pending.values())).created_at

    def close(self) -> None:
        """Close both journals. Idempotent."""
        self._items.close()
        self._done.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
