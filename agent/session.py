"""One docked camera, from HELLO to unplug (Art. 7 readiness, verified offload, release).

The order is fixed and every step is recorded: identify → authenticate against the enrolled key
→ measure the clock offset (kept as evidence) → set the clock if the dock's own clock can be
trusted → verify the residual → status → readiness → offload → event log → release → keep the
status fresh until the camera leaves.

The camera's leaving is noticed two ways: its transport fails (during a transfer, at once), or
the slot manager's hot-plug scan no longer finds the device and says so through the session's
:class:`DeviceWatch` (while idle or waiting, within a second). Either way the session ends and
publishes ``docked: false``. A camera that breaks the protocol or stops answering is still in its
slot: it stays reported docked, is left alone (the line is released) and the session waits for
it to leave before publishing the undock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware_protocol import messages as m
from firmware_protocol._state import Role
from firmware_protocol.connection import SUPPORTED_VERSIONS, Connection
from firmware_protocol.signing import auth_message, load_public_key, verify_signature

from .channel import CameraErrorReply, Channel, ProtocolViolation, SessionError
from .clock import ClockSample, dock_clock_synchronised, measure_offset, now_us
from .compliance.service import Compliance
from .config import Config, EraseAfter
from .manifest import build_manifest, sign_manifest
from .offload import IntegrityError, Offloader, OffloadStopped
from .readiness import ReadinessInput, ReadinessThresholds, assess
from .registry import CameraRecord, Registry
from .store.footage import FootageStore
from .transports.base import Transport, TransportClosed, TransportError

__all__ = ["DeviceWatch", "SessionEnd", "SessionHost", "SessionOutcome", "run_session"]

log = logging.getLogger(__name__)

_LIST_PAGE = 64
LATE_OFFLOAD_S = 24 * 3600  # Art. 13: footage is stored within 24 hours of the recording's end
_LOG_PAGE = 64
# How often a wait for an offload slot looks at the watch (a semaphore cannot wait on an event).
_WATCH_POLL_S = 0.25
# Safety net for a parked session: the watch wakes it; this only bounds a missed wake-up.
_PARKED_POLL_S = 5.0
_LEFT = "device left (no longer found by hot-plug)"


class SessionEnd(StrEnum):
    UNPLUGGED = "unplugged"  # transport closed or device gone: the camera left (or line broke)
    REFUSED = "refused"  # unknown device / failed auth: left untouched, not retried until replug
    PROTOCOL = "protocol"  # the camera broke the protocol or stopped answering (and then left)
    STOPPED = "stopped"  # the agent is shutting down
    CRASHED = "crashed"  # an unexpected error (a bug, a failing store): parked until it left


@dataclass
class SessionOutcome:
    end: SessionEnd
    camera_uid: bytes | None = None
    detail: str = ""


class OffloadSlotsLike(Protocol):
    def acquire(self, timeout: float | None = None) -> bool: ...

    def release(self) -> None: ...


class DeviceWatch(Protocol):
    """The slot manager's word on this session's device (``agent.slots.SlotWatch``)."""

    @property
    def gone(self) -> bool:
        """Hot-plug no longer finds the device."""
        ...

    def wait(self, timeout: float | None) -> bool:
        """Sleep up to ``timeout`` s; returns early (True) when the device left or the agent
        is stopping."""
        ...

    def park(self) -> None:
        """The session closed its line and waits only for the device to leave."""
        ...


class _StoppingOnly:
    """The watch of a session run without a slot manager: only the agent stopping ends waits."""

    def __init__(self, stopping: threading.Event) -> None:
        self._stopping = stopping

    @property
    def gone(self) -> bool:
        return False

    def wait(self, timeout: float | None) -> bool:
        return self._stopping.wait(timeout)

    def park(self) -> None:
        pass  # nobody watches for a replug


class SessionHost(Protocol):
    """What a session needs from the daemon around it."""

    config: Config
    store: FootageStore
    registry: Registry
    compliance: Compliance
    signing_key: Ed25519PrivateKey
    stopping: threading.Event

    @property
    def offload_slots(self) -> OffloadSlotsLike: ...

    def event(self, name: str, camera_uid: bytes | None, details: dict[str, Any]) -> None: ...

    def session_crashed(self, slot: str, exc: BaseException) -> None: ...

    def camera_status(self, camera_uid: bytes, status: dict[str, Any]) -> None: ...

    def queue_manifest(self, manifest: dict[str, Any], recording_id: bytes) -> None: ...

    def manifest_acknowledged(self, manifest_id: str) -> bool: ...

    def finish_stored(self, manifest_id: str, recording_id: bytes) -> bool: ...

    def record_step(self, session_id: str, step: str, details: dict[str, Any]) -> None: ...

    def wait_for_space(self, size: int, while_waiting: Callable[[], None] = ...) -> None: ...


@dataclass
class _Docked:
    identity: m.Identity
    record: CameraRecord
    status: dict[str, Any] = field(default_factory=dict)
    offset_before: ClockSample | None = None
    residual: ClockSample | None = None
    clock_set: bool = False
    listing: list[m.RecordingInfo] = field(default_factory=list)
    ready: bool | None = None
    reasons: list[str] = field(default_factory=list)
    # (camera clock_ms, dock monotonic s) of the last STATUS: a clock that moves otherwise
    # than the dock's between two is a camera clock jump (reported once per docking)
    clock_reading: tuple[int, float] | None = None
    clock_jumped: bool = False


def run_session(host: SessionHost, transport: Transport,
                watch: DeviceWatch | None = None) -> SessionOutcome:
    """Serve one camera until it leaves or the agent stops (a camera that misbehaves is left
    alone, still docked, until it leaves). Never raises."""
    session = _Session(host, transport, watch or _StoppingOnly(host.stopping))
    try:
        return session.run()
    finally:
        transport.close()


class _Session:
    def __init__(self, host: SessionHost, transport: Transport, watch: DeviceWatch) -> None:
        self.host = host
        self.cfg = host.config
        self.transport = transport
        self.watch = watch
        self.id = os.urandom(8).hex()
        self.status_interval_s = self.cfg.status_interval_s
        chunk = self.cfg.chunk_size_usb if transport.kind == "usb" else self.cfg.chunk_size_serial
        self.conn = Connection(Role.DOCK, max_payload=chunk + 4)
        self.channel = Channel(transport, self.conn, timeout_s=self.cfg.session_timeout_s)
        self.uid: bytes | None = None
        # May this session publish the camera's status? Only once the device proved it holds
        # the enrolled key, or when nobody is enrolled under that uid (docs/mqtt.md: a refused
        # unknown device gets docked/slot). A device announcing an enrolled uid without proving
        # it must not touch that camera's status (e.g. mark it undocked from another slot).
        self.may_report = False
        self.docked: _Docked | None = None  # set once handed in (Art. 4 ledger)

    def step(self, name: str, **details: Any) -> None:
        self.host.record_step(self.id, name, {"slot": self.transport.slot,
                                              "camera_uid": self.uid.hex() if self.uid else None,
                                              **details})

    def run(self) -> SessionOutcome:
        try:
            docked = self._identify()
            if docked is None:
                return SessionOutcome(SessionEnd.REFUSED, self.uid)
            self._dock(docked)
            self._idle(docked)
            return SessionOutcome(SessionEnd.STOPPED, self.uid)
        except TransportError as exc:
            self.step("unplugged", reason=str(exc))
            self._hand_out()
            return SessionOutcome(SessionEnd.UNPLUGGED, self.uid, str(exc))
        except (SessionError, CameraErrorReply) as exc:
            code = exc.code.name if isinstance(exc, ProtocolViolation) else type(exc).__name__
            self.step("session_failed", error=str(exc), code=code)
            self.host.event("protocol_error", self.uid,
                            {"slot": self.transport.slot, "error": str(exc), "code": code})
            self._park()
            return SessionOutcome(SessionEnd.PROTOCOL, self.uid, str(exc))
        except Exception as exc:
            # A bug or a failing store: alert now, release nothing, and stay parked in the slot
            # so that the camera is still reported docked and its leaving is still a hand-out
            # (Art. 4). A second failure while parked (the store still broken) escapes to the
            # slot manager, which alerts again.
            log.exception("slot=%s session crashed", self.transport.slot)
            self.host.session_crashed(self.transport.slot, exc)
            self._park()
            return SessionOutcome(SessionEnd.CRASHED, self.uid, f"{type(exc).__name__}: {exc}")
        finally:
            if self.uid is not None and self.may_report:
                self.host.camera_status(self.uid, {"docked": False, "slot": self.transport.slot})

    # -- the device's presence -----------------------------------------------------------------

    def _check_present(self) -> None:
        """Raise :class:`TransportClosed` if hot-plug no longer finds the device."""
        if self.watch.gone:
            raise TransportClosed(f"{self.transport.slot}: {_LEFT}")

    def _pause(self, seconds: float) -> bool:
        """Wait up to ``seconds``; True when the agent is stopping. Ends at once, raising
        :class:`TransportClosed`, when the device leaves meanwhile."""
        self.watch.wait(seconds)
        self._check_present()
        return self.host.stopping.is_set()

    def _park(self) -> None:
        """The camera failed but is still in its slot: docked, not communicating. Release the
        line (a hung camera is not polled again), keep it reported docked, and wait until it
        leaves (or the agent stops); ``run``'s ``finally`` then publishes the undock."""
        self.transport.close()
        self.watch.park()
        if self.uid is not None and self.may_report:
            self.host.camera_status(self.uid, {"docked": True, "slot": self.transport.slot})
        while not self.watch.gone and not self.host.stopping.is_set():
            self.watch.wait(_PARKED_POLL_S)
        if self.watch.gone:
            self.step("unplugged", reason=_LEFT)
            self._hand_out()

    def _hand_out(self) -> None:
        """The camera left the dock: an officer took it (Art. 4). A session that never got as
        far as the hand-in (refused, or unplugged during identification) records nothing."""
        d, self.docked = self.docked, None
        if d is not None:
            self.host.compliance.hand_out(d.identity.camera_uid, slot=self.transport.slot,
                                          status=_ledger_status(d.status), ready=d.ready,
                                          reasons=d.reasons)

    # -- identify and authenticate -----------------------------------------------------------

    def _identify(self) -> _Docked | None:
        hello = m.Hello(SUPPORTED_VERSIONS, self.conn.our_max_payload)
        identity = self.channel.request(hello, m.Identity)
        self.uid = identity.camera_uid
        info = {"model": identity.model, "serial": identity.serial,
                "firmware": identity.firmware, "officer_id": identity.officer_id}
        self.step("hello", **info)
        record = self.host.registry.get(identity.camera_uid)
        if record is None:
            if self.cfg.enrollment == "trust-on-first-use":
                record = self.host.registry.enroll(
                    identity.camera_uid, load_public_key(identity.public_key),
                    officer_id=identity.officer_id or None, by="trust-on-first-use")
                self.step("enrolled", by="trust-on-first-use")
                self.host.compliance.audit.append(
                    "enroll", "daemon", camera_uid=identity.camera_uid.hex(),
                    officer_id=identity.officer_id or None, by="trust-on-first-use")
                self.host.event("enrolled", self.uid, {"by": "trust-on-first-use", **info})
            else:
                self.may_report = True
                self.step("refused", reason="unknown_device")
                self.host.event("unknown_device", self.uid, {"slot": self.transport.slot, **info})
                return None
        nonce = os.urandom(32)
        response = self.channel.request(m.AuthChallenge(nonce), m.AuthResponse)
        if not verify_signature(record.public_key, auth_message(identity.camera_uid, nonce),
                                response.signature):
            self.step("refused", reason="auth_failed")
            self.host.event("auth_failed", self.uid, {"slot": self.transport.slot, **info})
            return None
        self.may_report = True
        self.step("authenticated")
        return _Docked(identity, record)

    # -- the docking sequence ----------------------------------------------------------------

    def _dock(self, d: _Docked) -> None:
        self._clock(d)
        self._refresh_status(d)
        self.host.compliance.hand_in(
            d.identity.camera_uid, slot=self.transport.slot, status=_ledger_status(d.status),
            clock_offset_ms=d.offset_before.offset_ms if d.offset_before else 0)
        self.docked = d
        d.listing = self._list()
        self._publish_readiness(d, announce=True)
        self._finish_interrupted(d)
        self._offload(d)
        if self.host.stopping.is_set():
            return
        self._pull_event_log(d)
        if not self._pending(d):
            self._check_gaps(d)
        self._release(d)
        self._refresh_status(d)
        d.listing = self._list()
        self._publish_readiness(d, announce=False)

    def _clock(self, d: _Docked) -> None:
        ccfg = self.cfg.clock
        d.offset_before = measure_offset(self.channel)
        trusted = not ccfg.require_ntp_sync or dock_clock_synchronised()
        self.step("clock_measured", offset_ms=d.offset_before.offset_ms,
                  rtt_us=d.offset_before.rtt_us, dock_clock_trusted=trusted)
        if not trusted:
            d.residual = d.offset_before
            self.step("clock_not_set", reason="dock clock not synchronised")
            return
        for attempt in range(1, ccfg.sync_attempts + 1):
            estimate = d.residual or d.offset_before
            # Aim at the moment the camera applies it: half a round trip from now.
            self.channel.request(m.SetTime(now_us() + estimate.rtt_us // 2), m.TimeSet)
            d.residual = measure_offset(self.channel)
            d.clock_set = True
            self.step("clock_set", attempt=attempt, residual_ms=d.residual.offset_ms)
            if abs(d.residual.offset_us) <= ccfg.max_residual_ms * 1000:
                return
        log.warning("camera=%s residual offset %d ms after %d attempts", self.uid and
                    self.uid.hex(), d.residual.offset_ms if d.residual else -1,
                    ccfg.sync_attempts)

    def _refresh_status(self, d: _Docked) -> None:
        st = self.channel.request(m.GetStatus(), m.Status)
        read_at = time.monotonic()
        if d.clock_reading is not None and not d.clock_jumped:
            before_ms, before_at = d.clock_reading
            jump_ms = st.clock_ms - (before_ms + round((read_at - before_at) * 1000))
            if abs(jump_ms) > self.cfg.readiness.clock_tolerance_ms:
                self._clock_jumped(d, st.clock_ms, jump_ms)
        d.clock_reading = (st.clock_ms, read_at)
        d.status = {
            "battery_pct": st.battery_pct, "charging": st.charging,
            "storage_total": st.storage_total, "storage_free": st.storage_free,
            "bitrate_bps": st.bitrate_bps, "self_test_ok": st.self_test_ok,
            "fault_codes": list(st.fault_codes), "camera_clock_ms": st.clock_ms,
            "recording": st.recording,
        }

    def _clock_jumped(self, d: _Docked, clock_ms: int, jump_ms: int) -> None:
        """The camera clock moved by more than the clock tolerance against the dock's between
        two status readings (a failing RTC, a tampered clock): record it, measure the offset
        again — it becomes the residual the readiness is judged on, so a clock now off shows as
        ``clock_unsynced`` — and tell the console. The clock is not set again here: the jump is
        evidence, and the next docking sets the clock. Once per docking: a clock that keeps
        jumping (or stands still) would otherwise raise an event at every status reading."""
        d.clock_jumped = True
        d.residual = measure_offset(self.channel)
        self.step("camera_clock_jump", jump_ms=jump_ms, camera_clock_ms=clock_ms,
                  offset_ms=d.residual.offset_ms)
        self.host.event("camera_clock_jump", self.uid, {
            "slot": self.transport.slot, "jump_ms": jump_ms, "camera_clock_ms": clock_ms,
            "offset_ms": d.residual.offset_ms})

    def _list(self) -> list[m.RecordingInfo]:
        entries: list[m.RecordingInfo] = []
        while True:
            page = self.channel.request(m.ListRecordings(len(entries), _LIST_PAGE),
                                        m.RecordingList)
            entries.extend(page.entries)
            if len(entries) >= page.total or not page.entries:
                return entries

    def _pending(self, d: _Docked) -> list[m.RecordingInfo]:
        record = self.host.registry.get(d.identity.camera_uid) or d.record
        store = self.host.store
        return [r for r in d.listing if r.sealed and not store.is_stored(r.recording_id)
                and r.recording_id.hex() not in record.quarantined
                and not store.is_purged(r.recording_id)]

    def _publish_readiness(self, d: _Docked, *, announce: bool,
                           offload: dict[str, int] | None = None) -> None:
        st = d.status
        readiness = assess(ReadinessInput(
            battery_pct=st["battery_pct"], storage_free_bytes=st["storage_free"],
            bitrate_bps=st["bitrate_bps"], self_test_ok=st["self_test_ok"],
            fault_codes=tuple(st["fault_codes"]),
            clock_residual_ms=d.residual.offset_ms if d.residual else None,
            clock_set=d.clock_set,
            pending_recordings=len([r for r in d.listing if r.sealed
                                    and not self.host.store.is_stored(r.recording_id)]),
        ), ReadinessThresholds.from_config(self.cfg.readiness))
        reasons = [str(r) for r in readiness.reasons]
        status = {
            "docked": True, "slot": self.transport.slot, "model": d.identity.model,
            "serial": d.identity.serial, "firmware": d.identity.firmware,
            "officer_id": d.record.officer_id, **st,
            "clock_offset_before_ms": d.offset_before.offset_ms if d.offset_before else None,
            "clock_residual_ms": d.residual.offset_ms if d.residual else None,
            "clock_set": d.clock_set, "ready": readiness.ready, "reasons": reasons,
            "offload": offload or self._progress_summary(d),
        }
        self.host.camera_status(d.identity.camera_uid, status)
        d.ready, d.reasons = readiness.ready, reasons
        if announce:
            self.step("readiness", ready=readiness.ready, reasons=reasons)
            if not readiness.ready:
                self.host.compliance.readiness_failure(d.identity.camera_uid,
                                                       slot=self.transport.slot, reasons=reasons)
                self.host.event("not_ready", self.uid, {"reasons": reasons,
                                                        "slot": self.transport.slot})

    def _progress_summary(self, d: _Docked, done_bytes: int | None = None) -> dict[str, int]:
        sealed = [r for r in d.listing if r.sealed]
        stored = [r for r in sealed if self.host.store.is_stored(r.recording_id)]
        return {"recordings_total": len(sealed), "recordings_stored": len(stored),
                "bytes_total": sum(r.size for r in sealed),
                "bytes_stored": done_bytes if done_bytes is not None
                else sum(r.size for r in stored)}

    # -- offload -----------------------------------------------------------------------------

    def _offload(self, d: _Docked) -> None:
        pending = self._pending(d)
        if not pending:
            return
        with self._offload_slot(d) as granted:
            if not granted:
                return  # the agent is stopping
            base = sum(r.size for r in d.listing if r.sealed
                       and self.host.store.is_stored(r.recording_id))
            done = [base]  # bytes stored, updated from the store worker thread
            last_report = [0.0]
            last_status = [time.monotonic()]

            def progress(rid: bytes, done_in_recording: int) -> None:
                done[0] = base + done_in_recording
                now = time.monotonic()
                if now - last_report[0] >= 1.0:
                    last_report[0] = now
                    summary = self._progress_summary(d, done[0])
                    self._publish_readiness(d, announce=False, offload=summary)

            def between_chunks() -> None:
                # Battery, storage and clock keep being reported while a long offload runs, or
                # while it is paused on the store's reserve (then this runs every second).
                self._check_present()
                if time.monotonic() - last_status[0] >= self.status_interval_s:
                    last_status[0] = time.monotonic()
                    self._refresh_status(d)
                    self._publish_readiness(d, announce=False,
                                            offload=self._progress_summary(d, done[0]))

            offloader = Offloader(self.channel, self.host.store, d.identity.camera_uid,
                                  d.record.public_key, progress=progress,
                                  should_stop=self.host.stopping.is_set,
                                  make_room=lambda size: self.host.wait_for_space(
                                      size, between_chunks),
                                  between_chunks=between_chunks)
            for info in pending:
                if self.host.stopping.is_set():
                    return
                self._offload_one(d, offloader, info)
                base += info.size

    @contextlib.contextmanager
    def _offload_slot(self, d: _Docked) -> Iterator[bool]:
        """Hold one of the ``max_concurrent_offloads`` slots (yields False if the agent stops
        first). The wait can last hours on a full dock: meanwhile the camera's status is
        refreshed every status interval, as during an offload; an unplug ends the wait within
        a quarter second."""
        slots = self.host.offload_slots
        refresh_at = time.monotonic() + self.status_interval_s
        while not slots.acquire(timeout=_WATCH_POLL_S):
            self._check_present()
            if self.host.stopping.is_set():
                yield False
                return
            if time.monotonic() >= refresh_at:
                refresh_at = time.monotonic() + self.status_interval_s
                self._refresh_status(d)
                self._publish_readiness(d, announce=False)
        try:
            yield True
        finally:
            slots.release()

    def _offload_one(self, d: _Docked, offloader: Offloader, info: m.RecordingInfo) -> None:
        rid = info.recording_id
        meta = {"camera_uid": d.identity.camera_uid.hex(), "recording_id": rid.hex(),
                "size": info.size, "chunk_size": info.chunk_size,
                "chunk_count": info.chunk_count, "media": int(info.media),
                "started_ms": info.started_ms, "ended_ms": info.ended_ms,
                "session": self.id, "slot": self.transport.slot}
        self.step("offload_start", recording_id=rid.hex(), size=info.size)
        try:
            partial, result = offloader.pull(info, meta)
        except IntegrityError as exc:
            self._quarantine(d, rid, exc)
            return
        except OffloadStopped:
            self.step("offload_paused", recording_id=rid.hex(), reason="agent stopping")
            return
        with partial:
            offset = d.offset_before.offset_ms if d.offset_before else 0
            manifest = sign_manifest(build_manifest(
                dock_id=self.cfg.dock_id, unit=self.cfg.unit, camera_uid=d.identity.camera_uid,
                officer_id=d.record.officer_id, seal=result.seal_message,
                seal_signature=result.seal_signature, chunks=result.chunks,
                clock_offset_ms=offset, stored_at_ms=time.time_ns() // 1_000_000,
            ), self.host.signing_key)
            self.host.registry.mark_unpublished(manifest["manifest_id"], rid)
            partial.finalise(result.seal_message, result.seal_signature, manifest)
        # The record before the manifest leaves `unpublished`: a crash between the two is
        # finished by `finish_stored`, which writes the record only if it is missing.
        self.host.compliance.recording_stored(manifest)
        self.host.queue_manifest(manifest, rid)
        self.step("stored", recording_id=rid.hex(), manifest_id=manifest["manifest_id"],
                  fetched=result.fetched_bytes)
        if manifest["offload_delay_s"] > LATE_OFFLOAD_S:
            self.host.event("late_offload", self.uid, {
                "recording_id": rid.hex(), "manifest_id": manifest["manifest_id"],
                "ended_at": manifest["ended_at"], "stored_at": manifest["stored_at"],
                "offload_delay_s": manifest["offload_delay_s"], "slot": self.transport.slot})

    def _finish_interrupted(self, d: _Docked) -> None:
        """This camera's recordings that an earlier session stored but could not finish (an
        I/O error right after the move into ``recordings/``) are finished now, not only at the
        agent's next start: until then they are neither published nor ever released."""
        mine = {info.recording_id for info in d.listing}
        for manifest_id, rid in self.host.registry.unpublished():
            if rid in mine and self.host.store.is_stored(rid) and self.host.finish_stored(
                    manifest_id, rid):
                self.step("stored", recording_id=rid.hex(), manifest_id=manifest_id,
                          fetched=0, finished_late=True)

    def _quarantine(self, d: _Docked, rid: bytes, exc: IntegrityError) -> None:
        where = self.host.store.quarantine(rid, str(exc))
        self.host.registry.add_quarantined(d.identity.camera_uid, rid)
        self.step("quarantined", recording_id=rid.hex(), reason=exc.reason.value,
                  detail=exc.detail)
        self.host.compliance.integrity_failure(d.identity.camera_uid, recording_id=rid,
                                               reason=exc.reason.value, detail=exc.detail)
        self.host.event("integrity_failure", self.uid, {
            "recording_id": rid.hex(), "reason": exc.reason.value, "detail": exc.detail,
            "chunk_index": exc.index, "quarantine": where.name, "slot": self.transport.slot,
        })

    # -- event log, release, idle ------------------------------------------------------------

    def _pull_event_log(self, d: _Docked) -> None:
        record = self.host.registry.get(d.identity.camera_uid) or d.record
        since = record.last_log_seq + 1 if record.last_log_seq else 0
        entries: list[m.LogEntry] = []
        while True:
            page = self.channel.request(m.GetEventLog(since, _LOG_PAGE), m.EventLog)
            entries.extend(page.entries)
            if not page.more or not page.entries:
                break
            since = page.entries[-1].seq + 1
        as_json = [{"seq": e.seq, "at_ms": e.at_ms, "kind": e.kind.name.lower(),
                    "recording_id": e.recording_id.hex() if any(e.recording_id) else None,
                    "detail": e.detail} for e in entries]
        self.step("event_log", entries=as_json)
        # Evidence first, then the high-water mark: a crash in between pulls the entries again.
        self.host.compliance.camera_log(d.identity.camera_uid, as_json)
        if entries:
            self.host.registry.set_last_log_seq(d.identity.camera_uid, entries[-1].seq)

    def _check_gaps(self, d: _Docked) -> None:
        """Every recording of the last hand-out is stored and the camera's log is in: look
        for interruptions (Art. 8, 12) and tell the console about each."""
        for gap in self.host.compliance.check_gaps(d.identity.camera_uid):
            self.step("gap", gap_id=gap["gap_id"], kind=gap["kind"], status=gap["status"])
            self.host.event("gap", self.uid, {k: gap[k] for k in (
                "gap_id", "kind", "status", "reason", "from", "to", "duration_s",
                "handout_id", "officer_id")})

    def _releasable(self, d: _Docked) -> list[m.RecordingInfo]:
        policy = self.cfg.erase_after
        if policy == EraseAfter.NEVER:
            return []
        out = []
        for info in d.listing:
            stored = self.host.store.stored(info.recording_id)
            manifest = stored.manifest if stored is not None else None
            if manifest is None:
                continue
            if policy == EraseAfter.ACKNOWLEDGED and not self.host.manifest_acknowledged(
                    manifest["manifest_id"]):
                continue
            out.append(info)
        return out

    def _release(self, d: _Docked) -> None:
        released = False
        for info in self._releasable(d):
            reply = self.channel.request(m.Release(info.recording_id), m.Released)
            self.step("released", recording_id=info.recording_id.hex(),
                      freed_bytes=reply.freed_bytes)
            released = True
        if released:
            d.listing = self._list()

    def _idle(self, d: _Docked) -> None:
        """Docked and done: refresh the status every status interval until the camera leaves
        (the watch ends the wait at once) or the agent stops."""
        while not self._pause(self.status_interval_s):
            self._refresh_status(d)
            if self._releasable(d):
                self._release(d)
                self._refresh_status(d)  # the release freed storage: publish what is true now
            if self._pending(d):
                self._offload(d)
            self._publish_readiness(d, announce=False)


def _ledger_status(status: dict[str, Any]) -> dict[str, Any]:
    """The camera's state as the usage ledger records it at hand-in and hand-out."""
    return {"battery_pct": status.get("battery_pct"),
            "storage_free_bytes": status.get("storage_free")}
