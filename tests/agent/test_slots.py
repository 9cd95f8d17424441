"""SlotManager: hot-plug scans start sessions, tell them when their device left, and never keep
a newly plugged camera waiting for what happened to the previous one in the same slot.

Sessions here are stand-ins that block on events the test controls; the manager's clock is a
fake one, so back-off is asserted by moving the clock, never by waiting.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field

import pytest

from agent.session import SessionEnd, SessionOutcome
from agent.slots import Device, SlotManager, SlotWatch
from agent.transports.base import Transport

DEADLINE_S = 30.0  # generous: only a failing test waits this long


class FakeTransport(Transport):
    def __init__(self, slot: str) -> None:
        self.slot = slot
        self.closed = threading.Event()

    def read(self, max_bytes: int, timeout: float) -> bytes:
        return b""

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        self.closed.set()


@dataclass
class Session:
    """One served session: the test decides when and how it ends."""

    transport: FakeTransport
    watch: SlotWatch
    end: SessionEnd | None = None
    release: threading.Event = field(default_factory=threading.Event)


class Sessions:
    """The ``serve`` callable: records each session and blocks it until told (or, for
    ``until_gone``, until the watch says the device left, as the real idle session does)."""

    def __init__(self) -> None:
        self.started: list[Session] = []
        self.cond = threading.Condition()
        self.until_gone = True

    def __call__(self, transport: Transport, watch: SlotWatch) -> SessionOutcome:
        assert isinstance(transport, FakeTransport)
        session = Session(transport, watch)
        with self.cond:
            self.started.append(session)
            self.cond.notify_all()
        if self.until_gone:
            watch.wait(None)
            if watch.gone:
                return SessionOutcome(SessionEnd.UNPLUGGED, None, "device left")
            return SessionOutcome(SessionEnd.STOPPED)  # woken: the agent stops
        assert session.release.wait(DEADLINE_S)
        assert session.end is not None
        return SessionOutcome(session.end)

    def wait_started(self, count: int) -> Session:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.started) >= count, DEADLINE_S)
            return self.started[count - 1]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sessions() -> Sessions:
    return Sessions()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def manager(sessions: Sessions, clock: Clock) -> Iterator[SlotManager]:
    crashes: list[tuple[str, BaseException]] = []
    mgr = SlotManager(sessions, lambda slot, exc: crashes.append((slot, exc)), clock=clock)
    yield mgr
    for s in sessions.started:  # let every stand-in session end
        if s.end is None:
            s.end = SessionEnd.STOPPED
        s.watch.mark_gone()
        s.release.set()
    assert mgr.join(DEADLINE_S)
    assert crashes == []


def device(slot: str, identity: Hashable = 1) -> Device:
    opener: Callable[[], Transport] = lambda: FakeTransport(slot)  # noqa: E731
    return Device(opener, identity)


def ended(manager: SlotManager) -> None:
    """Every session thread has returned (the manager's own bookkeeping is done)."""
    assert manager.join(DEADLINE_S)


def test_a_device_missing_from_two_scans_is_gone_and_its_session_told(
    manager: SlotManager, sessions: Sessions
) -> None:
    manager.update({"/dev/cam0": device("/dev/cam0")})
    session = sessions.wait_started(1)
    assert not session.watch.gone

    manager.update({})  # one scan without it: could be a failed scan
    assert not session.watch.gone
    manager.update({})
    assert session.watch.gone
    ended(manager)
    assert session.transport.closed.is_set()
    assert manager.active == 0


def test_one_missed_scan_does_not_end_the_session(manager: SlotManager,
                                                  sessions: Sessions) -> None:
    manager.update({"usb:1-1.1": device("usb:1-1.1", (1, 5))})
    session = sessions.wait_started(1)
    for _ in range(3):  # a scan that failed now and then
        manager.update({})
        manager.update({"usb:1-1.1": device("usb:1-1.1", (1, 5))})
    assert not session.watch.gone
    assert manager.active == 1 and len(sessions.started) == 1


def test_a_camera_plugged_into_a_just_vacated_slot_is_served_at_once(
    manager: SlotManager, sessions: Sessions, clock: Clock
) -> None:
    manager.update({"usb:1-1.1": device("usb:1-1.1", (1, 5))})
    first = sessions.wait_started(1)
    manager.update({})
    manager.update({})
    ended(manager)
    assert first.watch.gone
    # The session ended as "unplugged", which earns a back-off when the device stays; this one
    # left, so the next camera there is served at the very next scan (the clock stands still).
    manager.update({"usb:1-1.1": device("usb:1-1.1", (1, 6))})
    second = sessions.wait_started(2)
    assert second.transport is not first.transport and not second.watch.gone


def test_vacated_and_reoccupied_while_the_old_session_still_runs(
    manager: SlotManager, sessions: Sessions
) -> None:
    sessions.until_gone = False
    manager.update({"/dev/cam0": device("/dev/cam0", "a")})
    first = sessions.wait_started(1)
    manager.update({})
    manager.update({})  # gone: the session is told, but has not ended yet
    assert first.watch.gone
    manager.update({"/dev/cam0": device("/dev/cam0", "b")})
    assert len(sessions.started) == 1  # one session per slot at a time
    first.end = SessionEnd.UNPLUGGED
    first.release.set()
    ended(manager)
    manager.update({"/dev/cam0": device("/dev/cam0", "b")})
    sessions.wait_started(2)  # no back-off: its device had left


def test_a_device_replaced_between_two_scans_ends_the_old_session(
    manager: SlotManager, sessions: Sessions
) -> None:
    manager.update({"usb:1-1.2": device("usb:1-1.2", (1, 7))})
    first = sessions.wait_started(1)
    manager.update({})  # missed once...
    manager.update({"usb:1-1.2": device("usb:1-1.2", (1, 8))})  # ...and back as another one
    assert first.watch.gone
    ended(manager)
    manager.update({"usb:1-1.2": device("usb:1-1.2", (1, 8))})
    sessions.wait_started(2)


def test_a_line_failure_with_the_device_still_there_backs_off(
    manager: SlotManager, sessions: Sessions, clock: Clock
) -> None:
    sessions.until_gone = False
    here = {"/dev/cam0": device("/dev/cam0")}
    manager.update(here)
    first = sessions.wait_started(1)
    first.end = SessionEnd.UNPLUGGED  # e.g. a write timeout; the device node is still there
    first.release.set()
    ended(manager)
    manager.update(here)
    assert len(sessions.started) == 1  # backing off
    clock.now += 2.0
    manager.update(here)
    second = sessions.wait_started(2)
    second.end = SessionEnd.UNPLUGGED
    second.release.set()
    ended(manager)
    clock.now += 2.0
    manager.update(here)
    assert len(sessions.started) == 2  # the back-off doubled
    clock.now += 2.0
    manager.update(here)
    sessions.wait_started(3)


@pytest.mark.parametrize("end", [SessionEnd.REFUSED, SessionEnd.PROTOCOL])
def test_a_parked_slot_serves_another_device_at_once(
    manager: SlotManager, sessions: Sessions, clock: Clock, end: SessionEnd
) -> None:
    sessions.until_gone = False
    manager.update({"/dev/cam0": device("/dev/cam0", "stranger")})
    first = sessions.wait_started(1)
    first.end = end
    first.release.set()
    ended(manager)
    clock.now += 3600
    manager.update({"/dev/cam0": device("/dev/cam0", "stranger")})
    assert len(sessions.started) == 1  # parked: left alone while it stays
    manager.update({"/dev/cam0": device("/dev/cam0", "enrolled")})  # swapped within one scan
    sessions.wait_started(2)


def test_wake_all_ends_every_wait_without_marking_anything_gone(
    manager: SlotManager, sessions: Sessions
) -> None:
    manager.update({"/dev/cam0": device("/dev/cam0"), "/dev/cam1": device("/dev/cam1")})
    sessions.wait_started(2)
    watches = [s.watch for s in sessions.started]
    manager.wake_all()
    assert all(w.wait(0) for w in watches)
    assert not any(w.gone for w in watches)


def test_a_session_parked_in_its_slot_ends_when_the_device_is_swapped_within_one_scan(
    manager: SlotManager, sessions: Sessions
) -> None:
    """A session that gave up on its camera (protocol error, crash) waits in its slot for the
    camera to leave, so that leaving is a hand-out. A camera re-plugged between two scans is
    never missed by a scan, and its line is closed: only its new identity tells it apart."""
    sessions.until_gone = False
    manager.update({"/dev/cam0": device("/dev/cam0", "first")})
    first = sessions.wait_started(1)
    manager.update({"/dev/cam0": device("/dev/cam0", "first")})
    first.watch.park()
    manager.update({"/dev/cam0": device("/dev/cam0", "first")})
    assert not first.watch.gone  # still the same device
    manager.update({"/dev/cam0": device("/dev/cam0", "second")})  # unplugged and replugged
    assert first.watch.gone
    first.end = SessionEnd.CRASHED
    first.release.set()
    ended(manager)
    manager.update({"/dev/cam0": device("/dev/cam0", "second")})
    sessions.wait_started(2)  # served at once: not parked, no back-off
