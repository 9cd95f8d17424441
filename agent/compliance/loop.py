"""The daemon's compliance loop: what has to happen on a clock rather than on an event.

* Every compliance record (from the daemon or a CLI command) is queued for ``…/ledger``, in
  journal order, exactly once by id (``{dock_id}:{seq}``). How far that got is kept durably,
  after the outbox has the items, so a crash in between re-queues (the outbox drops
  duplicates by id) rather than skips.
* The audit head is signed and published (retained) within `HEAD_COALESCE_S` of a change and
  at least every `HEAD_EVERY_S` (Art. 18).
* Cameras away too long raise ``overdue_camera`` once per hand-out (Art. 13).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.compliance.audit import signed_head
from agent.compliance.service import Compliance

__all__ = ["HEAD_COALESCE_S", "HEAD_EVERY_S", "ComplianceLoop"]

log = logging.getLogger(__name__)

HEAD_COALESCE_S = 5.0
HEAD_EVERY_S = 600.0
OVERDUE_EVERY_S = 60.0
_BATCH = 500
_PUBLISHED = "ledger_queued_seq"

SetRetained = Callable[[dict[str, Any]], None]
EventSink = Callable[[str, bytes | None, dict[str, Any]], None]


class ComplianceLoop:
    def __init__(self, book: Compliance, *, dock_id: str, signing_key: Ed25519PrivateKey,
                 queue_ledger: Callable[[list[tuple[dict[str, Any], str]]], None],
                 set_audit_head: SetRetained, event: EventSink,
                 monotonic: Callable[[], float] = time.monotonic,
                 clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> None:
        self.book = book
        self.dock_id = dock_id
        self._key = signing_key
        self._queue_ledger = queue_ledger
        self._set_head = set_audit_head
        self.event = event
        self._mono = monotonic
        self._clock_ms = clock_ms
        self._head_sent: tuple[int, str] | None = None
        self._head_sent_at = float("-inf")
        self._overdue_at = float("-inf")

    def tick(self) -> None:
        """One round; cheap when nothing changed (a stat or two)."""
        self.pump_ledger()
        self.publish_head()
        if self._mono() - self._overdue_at >= OVERDUE_EVERY_S:
            self._overdue_at = self._mono()
            for rec in self.book.overdue():
                self.event("overdue_camera", bytes.fromhex(rec["camera_uid"]), {
                    k: rec[k] for k in ("handout_id", "officer_id", "out_since", "limit_s")})

    def pump_ledger(self) -> int:
        """Queue every compliance record not yet queued; return how many.

        One pass over the journal from the first unqueued record (a read starts at the head of
        that record's segment, so it must not restart per batch), batches of `_BATCH`.
        """
        journal = self.book.records.journal
        journal.refresh()
        done = int(self.book.state.meta(_PUBLISHED, 0))
        if journal.last_seq <= done:
            return 0
        total = 0
        batch: list[tuple[dict[str, Any], str]] = []

        def flush() -> None:
            nonlocal done, total
            if batch:
                self._queue_ledger(batch)
                done = int(batch[-1][0]["entry"]["seq"])
                self.book.state.set_meta(_PUBLISHED, done)
                total += len(batch)
                batch.clear()

        for rec in journal.read(done + 1):
            item_id = f"{self.dock_id}:{rec['seq']}"
            batch.append(({"type": "ledger", "schema": 1, "dock_id": self.dock_id,
                           "id": item_id, "entry": rec}, item_id))
            if len(batch) >= _BATCH:
                flush()
        flush()
        return total

    def publish_head(self, *, force: bool = False) -> bool:
        head = self.book.audit.head()
        now = self._mono()
        since = now - self._head_sent_at
        changed = head != self._head_sent
        if not (force or (changed and since >= HEAD_COALESCE_S) or since >= HEAD_EVERY_S):
            return False
        self._set_head(signed_head(dock_id=self.dock_id, seq=head[0], head=head[1],
                                   at_ms=self._clock_ms(), key=self._key))
        self._head_sent, self._head_sent_at = head, now
        return True
