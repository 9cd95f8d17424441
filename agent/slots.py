"""Slots: one session thread per docked camera, started and ended by hot-plug.

A camera that was refused (unknown, failed auth) or broke the protocol is *parked*: left
untouched until it is unplugged, so that it is not hammered with sessions and the console is not
flooded with the same event. A session that ended for any other reason while the device node is
still there (a stalled line, a timeout) is retried after a back-off.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .session import SessionEnd, SessionOutcome
from .transports.base import Transport, TransportError

__all__ = ["OffloadSlots", "SlotManager"]

log = logging.getLogger(__name__)

_BACKOFF_MIN_S = 2.0
_BACKOFF_MAX_S = 60.0


@dataclass
class _Slot:
    thread: threading.Thread | None = None
    transport: Transport | None = None
    parked: bool = False
    retry_at: float = 0.0
    backoff: float = _BACKOFF_MIN_S


class SlotManager:
    def __init__(
        self,
        serve: Callable[[Transport], SessionOutcome],
        on_crash: Callable[[str, BaseException], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._serve = serve
        self._on_crash = on_crash
        self._clock = clock
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.Lock()

    @property
    def active(self) -> int:
        with self._lock:
            return sum(1 for s in self._slots.values() if s.thread and s.thread.is_alive())

    def update(self, present: Mapping[str, Callable[[], Transport]]) -> None:
        """Reconcile sessions with the slots present now (slot name -> how to open it)."""
        now = self._clock()
        with self._lock:
            for path in list(self._slots):
                slot = self._slots[path]
                if path not in present and not (slot.thread and slot.thread.is_alive()):
                    del self._slots[path]  # unplugged: forget parking and back-off
            for path in present:
                slot = self._slots.setdefault(path, _Slot())
                busy = slot.thread is not None and slot.thread.is_alive()
                if busy or slot.parked or now < slot.retry_at:
                    continue
                slot.thread = threading.Thread(target=self._run,
                                               args=(path, slot, present[path]),
                                               name=f"session:{path}", daemon=True)
                slot.thread.start()

    def _run(self, path: str, slot: _Slot, opener: Callable[[], Transport]) -> None:
        try:
            transport = opener()
        except TransportError as exc:
            log.info("slot=%s cannot open: %s", path, exc)
            self._schedule_retry(slot)
            return
        slot.transport = transport
        try:
            outcome = self._serve(transport)
        except Exception as exc:  # a bug or a storage failure: park, alert, never release
            log.exception("slot=%s session crashed", path)
            slot.parked = True
            self._on_crash(path, exc)
            return
        finally:
            slot.transport = None
            transport.close()
        log.info("slot=%s session ended: %s %s", path, outcome.end.value, outcome.detail)
        if outcome.end in (SessionEnd.REFUSED, SessionEnd.PROTOCOL):
            slot.parked = True
        elif outcome.end is SessionEnd.UNPLUGGED:
            self._schedule_retry(slot)

    def _schedule_retry(self, slot: _Slot) -> None:
        slot.retry_at = self._clock() + slot.backoff
        slot.backoff = min(slot.backoff * 2, _BACKOFF_MAX_S)

    def close_all(self) -> None:
        """Force every transport closed (shutdown): blocked reads end at once."""
        with self._lock:
            transports = [s.transport for s in self._slots.values() if s.transport]
        for transport in transports:
            transport.close()

    def join(self, timeout: float) -> bool:
        deadline = self._clock() + timeout
        with self._lock:
            threads = [s.thread for s in self._slots.values() if s.thread]
        for thread in threads:
            thread.join(max(0.0, deadline - self._clock()))
        return not any(t.is_alive() for t in threads)


class OffloadSlots:
    """Limits concurrent offloads (``max_concurrent_offloads``); waiters are served FIFO-ish
    by the semaphore, and the count in use is reported in health."""

    def __init__(self, limit: int) -> None:
        self._sem = threading.BoundedSemaphore(limit)
        self._lock = threading.Lock()
        self._in_use = 0

    @property
    def in_use(self) -> int:
        with self._lock:
            return self._in_use

    def acquire(self, timeout: float | None = None) -> bool:
        """Take a slot; False if none came free within ``timeout`` seconds."""
        if not self._sem.acquire(timeout=timeout):
            return False
        with self._lock:
            self._in_use += 1
        return True

    def release(self) -> None:
        with self._lock:
            self._in_use -= 1
        self._sem.release()

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
