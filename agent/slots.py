"""Slots: one session thread per docked camera, started and ended by hot-plug.

A slot is a physical place a camera plugs into (a serial device path, a USB port chain). The
manager is told every hot-plug scan (a quarter second) which slots hold a device, and:

* starts a session for a device that has none;
* tells a running session at once when its device has left (:class:`SlotWatch`), so that an
  idle camera's session ends and its undock is published within a second instead of at the
  next status poll;
* forgets a slot's back-off and parking as soon as its device has left, or another device
  (different identity) is found there: a camera plugged into a just-vacated slot is served at
  the next scan, never kept waiting by what happened to its predecessor.

A camera that was refused (unknown, failed auth) is *parked*: left untouched until it is
unplugged, so that it is not hammered with sessions and the console is not flooded with the same
event. A camera that broke the protocol or stopped answering stays in its session, which reports
it docked and waits for it to leave. A session that ended for any other reason while the device
is still there (a write timeout, a device that cannot be opened) is retried after a back-off.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field

from .session import SessionEnd, SessionOutcome
from .transports.base import Transport, TransportError

__all__ = ["Device", "OffloadSlots", "SlotManager", "SlotWatch"]

log = logging.getLogger(__name__)

_BACKOFF_MIN_S = 2.0
_BACKOFF_MAX_S = 60.0
# A device counts as gone once two scans in a row miss it (0.25-0.5 s after it left): one scan
# that fails (a USB enumeration error reads as "no devices") must not end every session.
_GONE_AFTER_SCANS = 2


@dataclass(frozen=True, slots=True)
class Device:
    """One device a hot-plug scan found in a slot."""

    #: Opens the transport to it (called on the session's thread).
    open: Callable[[], Transport]
    #: What tells this device from the next one plugged into the same slot (serial: the link's
    #: inode and change time; USB: bus and address, which the host assigns anew on each plug-in).
    identity: Hashable = None


class SlotWatch:
    """One session's line to the slot manager: the device has left, or the agent is stopping.

    The session's waits (idle between status polls, waiting for an offload slot, parked after a
    failure) go through :meth:`wait`, so either news ends them at once.
    """

    def __init__(self) -> None:
        self._wake = threading.Event()
        self._gone = threading.Event()
        self._parked = False

    @property
    def gone(self) -> bool:
        """The device is no longer found by hot-plug."""
        return self._gone.is_set()

    def mark_gone(self) -> None:
        self._gone.set()
        self._wake.set()

    def park(self) -> None:
        """The session closed its line and only waits for the device to leave: nothing on the
        line will tell it of a re-plug any more, so a new identity in the slot must."""
        self._parked = True

    @property
    def parked(self) -> bool:
        return self._parked

    def wake(self) -> None:
        """End the current wait without news (the agent is stopping)."""
        self._wake.set()

    def wait(self, timeout: float | None) -> bool:
        """Sleep up to ``timeout`` seconds; True if woken (gone or stopping) before that."""
        return self._wake.wait(timeout)


@dataclass
class _Slot:
    identity: Hashable = None
    thread: threading.Thread | None = None
    watch: SlotWatch = field(default_factory=SlotWatch)
    transport: Transport | None = None
    parked: bool = False
    retry_at: float = 0.0
    backoff: float = _BACKOFF_MIN_S
    missed_scans: int = 0

    @property
    def busy(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def forget(self) -> None:
        """The device that earned the parking or back-off is not the one here any more."""
        self.parked = False
        self.retry_at = 0.0
        self.backoff = _BACKOFF_MIN_S


class SlotManager:
    def __init__(
        self,
        serve: Callable[[Transport, SlotWatch], SessionOutcome],
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
            return sum(1 for s in self._slots.values() if s.busy)

    def update(self, present: Mapping[str, Device]) -> None:
        """Reconcile sessions with the devices present now (slot name -> device)."""
        now = self._clock()
        with self._lock:
            for path, slot in list(self._slots.items()):
                if path in present:
                    continue
                slot.missed_scans += 1
                if not slot.busy:
                    del self._slots[path]  # unplugged: forget parking and back-off
                elif slot.missed_scans >= _GONE_AFTER_SCANS:
                    self._gone(path, slot)
            for path, device in present.items():
                found = self._slots.get(path)
                if found is None:
                    found = self._slots[path] = _Slot(identity=device.identity)
                slot = found
                missed, slot.missed_scans = slot.missed_scans, 0
                if slot.busy:
                    # Another device where a scan missed this one: unplugged and replaced. A
                    # parked session's device replaced between two scans is never missed, and
                    # its closed line cannot tell; an active session's line tells it, and its
                    # identity may change while present (udev settling a new node's owner).
                    if device.identity != slot.identity and (missed or slot.watch.parked):
                        self._gone(path, slot)
                    continue
                if device.identity != slot.identity:
                    slot.identity = device.identity  # another device in this slot
                    slot.forget()
                if slot.parked or now < slot.retry_at:
                    continue
                slot.watch = SlotWatch()
                slot.thread = threading.Thread(target=self._run,
                                               args=(path, slot, slot.watch, device.open),
                                               name=f"session:{path}", daemon=True)
                slot.thread.start()

    @staticmethod
    def _gone(path: str, slot: _Slot) -> None:
        """The device of a running session has left: the session ends and reports the undock;
        whatever comes next into this slot is served without back-off."""
        if not slot.watch.gone:
            log.info("slot=%s device left", path)
            slot.watch.mark_gone()
            slot.forget()

    def _run(self, path: str, slot: _Slot, watch: SlotWatch,
             opener: Callable[[], Transport]) -> None:
        try:
            transport = opener()
        except TransportError as exc:
            log.info("slot=%s cannot open: %s", path, exc)
            self._after(slot, watch, retry=True)
            return
        slot.transport = transport
        try:
            outcome = self._serve(transport, watch)
        except Exception as exc:  # a bug or a storage failure: park, alert, never release
            log.exception("slot=%s session crashed", path)
            self._after(slot, watch, park=True)
            self._on_crash(path, exc)
            return
        finally:
            slot.transport = None
            transport.close()
        log.info("slot=%s session ended: %s %s", path, outcome.end.value, outcome.detail)
        self._after(slot, watch, park=outcome.end in (SessionEnd.REFUSED, SessionEnd.PROTOCOL,
                                                      SessionEnd.CRASHED),
                    retry=outcome.end is SessionEnd.UNPLUGGED)

    def _after(self, slot: _Slot, watch: SlotWatch, *, park: bool = False,
               retry: bool = False) -> None:
        """Park the slot or schedule a retry, unless the device has left meanwhile: then the
        next device found there is served at once."""
        with self._lock:
            if watch.gone:
                return
            if park:
                slot.parked = True
            elif retry:
                slot.retry_at = self._clock() + slot.backoff
                slot.backoff = min(slot.backoff * 2, _BACKOFF_MAX_S)

    def wake_all(self) -> None:
        """The agent is stopping: end every session's wait now (they see ``stopping`` set)."""
        with self._lock:
            watches = [s.watch for s in self._slots.values()]
        for watch in watches:
            watch.wake()

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
