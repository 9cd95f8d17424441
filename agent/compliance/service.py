"""The compliance book-keeper: one object the daemon's sessions and the CLI call (Art. 4-18).

It turns what happens at the dock (docking, undocking, a stored recording, a readiness
failure …) into compliance records, keeps the small current state (open hand-outs, open gaps,
holds), and carries out the evidence-changing decisions (assign, work record, hold, unhold,
purge), each audited. Records reach the console through `pending_records` (the daemon's
compliance loop puts them in the outbox); nothing here talks to MQTT.
"""

from __future__ import annotations

import calendar
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.compliance.audit import AuditLog
from agent.compliance.gaps import DEVICE_STOP_KINDS, RecordingSpan, find_gaps
from agent.compliance.records import ComplianceRecords, parse_iso_ms
from agent.compliance.state import RECENT_HANDOUTS, RECENT_LOG_ENTRIES, ComplianceState
from agent.manifest import parse_timestamp
from agent.publish.topics import iso_ms
from agent.registry import Registry
from agent.store.footage import FootageStore

__all__ = ["HOLD_REASONS", "MIN_RETENTION_MONTHS", "Compliance", "ComplianceError",
           "ComplianceSettings", "add_months"]

log = logging.getLogger(__name__)

MIN_RETENTION_MONTHS = 120  # Art. 15: configurable only upward
HOLD_REASONS = ("dispute", "obstruction", "major_case")  # Art. 16 (1)-(3)


class ComplianceError(Exception):
    """A refused compliance action; `code` is the cmd_result error code (docs/compliance.md)."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class ComplianceSettings:
    dock_id: str
    gap_threshold_s: int = 600
    overdue_after_s: int = 86_400
    retention_months: int = MIN_RETENTION_MONTHS
    late_offload_s: int = 86_400


def add_months(ms: int, months: int) -> int:
    """`ms` plus calendar months (UTC), the day clamped to the target month's length."""
    t = datetime.fromtimestamp(ms / 1000, UTC)
    index = t.year * 12 + (t.month - 1) + months
    year, month = divmod(index, 12)
    day = min(t.day, calendar.monthrange(year, month + 1)[1])
    return int(t.replace(year=year, month=month + 1, day=day).timestamp() * 1000)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _status_fields(status: dict[str, Any]) -> dict[str, Any]:
    return {"battery_pct": status.get("battery_pct"),
            "storage_free_bytes": status.get("storage_free_bytes")}


class Compliance:
    """Thread-safe; the daemon and CLI commands may each hold one over the same state dir."""

    def __init__(self, state_dir: Path, settings: ComplianceSettings, *, store: FootageStore,
                 registry: Registry, clock: Callable[[], int] = _now_ms) -> None:
        if settings.retention_months < MIN_RETENTION_MONTHS:
            raise ValueError(f"retention_months must be at least {MIN_RETENTION_MONTHS}")
        self.settings = settings
        self.store = store
        self.registry = registry
        self._clock = clock
        self.records = ComplianceRecords(state_dir, clock=clock)
        self.audit = AuditLog(state_dir, clock=clock)
        self.state = ComplianceState(state_dir / "compliance.json")
        self._lock = threading.RLock()

    def close(self) -> None:
        self.records.close()
        self.audit.close()
        self.state.close()

    # -- hand-in / hand-out (Art. 4) ---------------------------------------------------------

    def hand_in(self, camera_uid: bytes, *, slot: str, status: dict[str, Any],
                clock_offset_ms: int) -> str | None:
        """A camera was docked and authenticated; close its open hand-out. Returns that
        hand-out's id (None if it had none: first docking, or undocked while we were down)."""
        uid = camera_uid.hex()
        officer = self._officer(camera_uid)
        now = self._clock()
        with self._lock:
            cam = self.state.camera(uid)
            open_h = cam["open_handout"]
            handouts = list(cam["handouts"])
            handout_id = open_h["handout_id"] if open_h else None
            if open_h is not None:
                handouts = [h for h in handouts if h["handout_id"] != handout_id]
                handouts.append({**open_h, "in_ms": now, "in_offset_ms": clock_offset_ms,
                                 "gaps_checked": False})
            self.records.append("hand_in", handout_id=handout_id, camera_uid=uid,
                                officer_id=officer, slot=slot, clock_offset_ms=clock_offset_ms,
                                **_status_fields(status))
            self.state.update_camera(uid, {"open_handout": None,
                                           "handouts": handouts[-RECENT_HANDOUTS:],
                                           "docked_offset_ms": clock_offset_ms})
        return handout_id

    def hand_out(self, camera_uid: bytes, *, slot: str, status: dict[str, Any],
                 ready: bool | None, reasons: Sequence[str]) -> str:
        """A docked camera left the dock: the officer took it. Returns the new hand-out id."""
        uid = camera_uid.hex()
        officer = self._officer(camera_uid)
        handout_id = uuid.uuid4().hex
        now = self._clock()
        with self._lock:
            self.records.append("hand_out", handout_id=handout_id, camera_uid=uid,
                                officer_id=officer, slot=slot, ready=ready,
                                reasons=list(reasons), **_status_fields(status))
            self.state.update_camera(uid, {"open_handout": {
                "handout_id": handout_id, "out_ms": now, "officer_id": officer,
                "recordings": [], "overdue_reported": False}})
        return handout_id

    def _officer(self, camera_uid: bytes) -> str | None:
        record = self.registry.get(camera_uid)
        return record.officer_id if record is not None else None

    # -- what a docking finds ----------------------------------------------------------------

    def recording_stored(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Record a stored recording, linked to the hand-out it was made during."""
        uid = manifest["camera_uid"]
        started_cam = parse_timestamp(manifest["started_at"])
        ended_cam = parse_timestamp(manifest["ended_at"])
        offset = int(manifest["clock_offset_ms"])
        started_dock = started_cam - offset  # offset = camera clock - dock clock
        with self._lock:
            cam = self.state.camera(uid)
            handouts = list(cam["handouts"])
            handout_id = None
            for h in reversed(handouts):
                if h["out_ms"] <= started_dock <= h.get("in_ms", started_dock):
                    handout_id = h["handout_id"]
                    span = {"recording_id": manifest["recording_id"], "started_ms": started_cam,
                            "ended_ms": ended_cam}
                    if span not in h["recordings"]:
                        h["recordings"] = [*h["recordings"], span]
                    break
            rec = self.records.append(
                "recording", recording_id=manifest["recording_id"],
                manifest_id=manifest["manifest_id"], camera_uid=uid,
                officer_id=manifest.get("officer_id"), handout_id=handout_id,
                media=manifest["media"], started_at=manifest["started_at"],
                ended_at=manifest["ended_at"],
                duration_s=max(0, (ended_cam - started_cam) // 1000), size=manifest["size"],
                sha256=manifest["sha256"], stored_at=manifest["stored_at"],
                offload_delay_s=manifest["offload_delay_s"],
                expires_at=iso_ms(self.expiry_ms(manifest["started_at"])))
            if handout_id is not None:
                self.state.update_camera(uid, {"handouts": handouts})
            if manifest["offload_delay_s"] > self.settings.late_offload_s:
                self.records.append("late_offload", camera_uid=uid,
                                    officer_id=manifest.get("officer_id"),
                                    recording_id=manifest["recording_id"],
                                    manifest_id=manifest["manifest_id"],
                                    offload_delay_s=manifest["offload_delay_s"])
        return rec

    def recording_stored_once(self, manifest: dict[str, Any]) -> None:
        """`recording_stored`, unless its record is already written: recovery calls this for a
        recording whose session died between storing it and queueing its manifest, which may
        be before or after the record. The record is written after the manifest's
        ``stored_at``, so only the months since (a day's margin for a clock step) are read."""
        since = parse_timestamp(manifest["stored_at"]) - 86_400_000
        for rec in self.records.read_range(since, max(self._clock(), since),
                                           types=("recording",)):
            if rec.get("manifest_id") == manifest["manifest_id"]:
                return
        self.recording_stored(manifest)

    def readiness_failure(self, camera_uid: bytes, *, slot: str, reasons: Sequence[str]) -> None:
        self.records.append("readiness_failure", camera_uid=camera_uid.hex(),
                            officer_id=self._officer(camera_uid), slot=slot,
                            reasons=list(reasons))

    def integrity_failure(self, camera_uid: bytes, *, recording_id: bytes, reason: str,
                          detail: str) -> None:
        self.records.append("integrity_failure", camera_uid=camera_uid.hex(),
                            officer_id=self._officer(camera_uid),
                            recording_id=recording_id.hex(), reason=reason, detail=detail)

    def camera_log(self, camera_uid: bytes, entries: Sequence[dict[str, Any]]) -> None:
        """Keep the device-stop entries of the camera's event log as evidence for gaps."""
        stops = [e for e in entries if e.get("kind") in DEVICE_STOP_KINDS]
        if not stops:
            return
        uid = camera_uid.hex()
        with self._lock:
            cam = self.state.camera(uid)
            kept = {e["seq"]: e for e in [*cam["log_entries"], *stops]}
            ordered = [kept[s] for s in sorted(kept)][-RECENT_LOG_ENTRIES:]
            self.state.update_camera(uid, {"log_entries": ordered})

    def check_gaps(self, camera_uid: bytes) -> list[dict[str, Any]]:
        """Look for gaps in every closed hand-out not yet checked. Call once the camera has no
        sealed recording left to offload and its event log is pulled. Returns new gap records."""
        uid = camera_uid.hex()
        threshold_ms = self.settings.gap_threshold_s * 1000
        out: list[dict[str, Any]] = []
        with self._lock:
            cam = self.state.camera(uid)
            handouts = list(cam["handouts"])
            for h in handouts:
                if h.get("gaps_checked", True) or "in_ms" not in h:
                    continue
                spans = [RecordingSpan(r["recording_id"], r["started_ms"], r["ended_ms"])
                         for r in h["recordings"]]
                offset = int(h.get("in_offset_ms", 0))
                for gap in find_gaps(uid, spans, cam["log_entries"], threshold_ms=threshold_ms,
                                     hand_in_ms=h["in_ms"] + offset):
                    record = {
                        "gap_id": gap.gap_id, "camera_uid": uid, "officer_id": h["officer_id"],
                        "handout_id": h["handout_id"], "kind": gap.kind,
                        "from": iso_ms(gap.from_ms - offset), "to": iso_ms(gap.to_ms - offset),
                        "duration_s": (gap.to_ms - gap.from_ms) // 1000,
                        "before_recording": gap.before_recording,
                        "after_recording": gap.after_recording,
                        "status": "explained" if gap.explained else "open",
                        "reason": 1 if gap.explained else None,
                        "evidence": list(gap.evidence)}
                    self.records.append("gap", **record)
                    if not gap.explained:
                        self.state.add_open_gap(record)
                    out.append(record)
                h["gaps_checked"] = True
                h["recordings"] = []  # checked: the spans are in the journal
            # Log entries up to the latest checked hand-in (camera clock) have been weighed
            # against every hand-out they could belong to, and any gap they explain carries
            # them as evidence: keeping them would grow compliance.json with the history.
            checked_until = max((h["in_ms"] + int(h.get("in_offset_ms", 0)) for h in handouts
                                 if h.get("gaps_checked", True) and "in_ms" in h), default=None)
            entries = cam["log_entries"] if checked_until is None else [
                e for e in cam["log_entries"] if e["at_ms"] > checked_until]
            self.state.update_camera(uid, {"handouts": handouts, "log_entries": entries})
        return out

    def overdue(self) -> list[dict[str, Any]]:
        """Cameras away longer than `overdue_after_s` since their hand-out, each reported once."""
        now = self._clock()
        limit_ms = self.settings.overdue_after_s * 1000
        found = []
        with self._lock:
            for cam in self.state.all_cameras():
                h = cam.get("open_handout")
                if not h or h.get("overdue_reported") or now - h["out_ms"] <= limit_ms:
                    continue
                record = self.records.append(
                    "overdue_camera", camera_uid=cam["camera_uid"], officer_id=h["officer_id"],
                    handout_id=h["handout_id"], out_since=iso_ms(h["out_ms"]),
                    limit_s=self.settings.overdue_after_s)
                self.state.update_camera(cam["camera_uid"], {
                    "open_handout": {**h, "overdue_reported": True}})
                found.append(record)
        return found

    # -- decisions (console commands and CLI) ------------------------------------------------

    def assign(self, camera_uid: bytes, officer_id: str | None, *, actor: str,
               request_id: str | None = None) -> None:
        try:
            self.registry.set_officer(camera_uid, officer_id)
        except KeyError:
            raise ComplianceError("not_found", f"camera {camera_uid.hex()} is not enrolled"
                                  ) from None
        self.records.append("assignment", camera_uid=camera_uid.hex(), officer_id=officer_id,
                            by=actor, request_id=request_id)
        self.audit.append("assign", actor, camera_uid=camera_uid.hex(), officer_id=officer_id,
                          request_id=request_id)

    def work_record(self, gap_id: str, *, reason: int, text: str, approver: str, actor: str,
                    request_id: str | None = None) -> None:
        if reason not in (1, 2, 3, 4):
            raise ComplianceError("malformed", "reason must be 1-4 (Art. 12)")
        with self._lock:
            if self.state.open_gap(gap_id) is None:
                raise ComplianceError("not_found", f"no open gap {gap_id}")
            self.records.append("work_record", gap_id=gap_id, reason=reason, text=text,
                                approver=approver, request_id=request_id)
            self.state.close_gap(gap_id)
        self.audit.append("work_record", actor, gap_id=gap_id, reason=reason,
                          approver=approver, request_id=request_id)

    def _require_stored(self, rid_hex: str) -> dict[str, Any]:
        stored = self.store.stored(bytes.fromhex(rid_hex))
        manifest = stored.manifest if stored is not None else None
        if manifest is None:
            raise ComplianceError("not_found", f"recording {rid_hex} is not stored")
        return manifest

    def hold(self, recording_ids: Sequence[str], *, reason: str, text: str, actor: str,
             request_id: str | None = None) -> None:
        """Legal hold (Art. 16): exempt from purge until lifted. All or nothing."""
        if reason not in HOLD_REASONS:
            raise ComplianceError("malformed", f"hold reason must be one of {HOLD_REASONS}")
        with self._lock:
            manifests = {rid: self._require_stored(rid) for rid in recording_ids}
            for rid, m in manifests.items():
                who = {"camera_uid": m["camera_uid"], "officer_id": m.get("officer_id")}
                self.state.set_hold({"recording_id": rid, "reason": reason, "text": text,
                                     "by": actor, "at": iso_ms(self._clock()), **who})
                self.records.append("hold", recording_id=rid, reason=reason, text=text,
                                    by=actor, request_id=request_id, **who)
        self.audit.append("hold", actor, recording_ids=list(recording_ids), reason=reason,
                          request_id=request_id)

    def unhold(self, recording_ids: Sequence[str], *, text: str, actor: str,
               request_id: str | None = None) -> None:
        with self._lock:
            holds = {r: self.state.hold(r) for r in recording_ids}
            missing = [r for r, h in holds.items() if h is None]
            if missing:
                raise ComplianceError("not_found", f"not under hold: {', '.join(missing)}")
            for rid, h in holds.items():
                assert h is not None
                self.state.remove_hold(rid)
                self.records.append("unhold", recording_id=rid, reason=None, text=text,
                                    by=actor, request_id=request_id,
                                    camera_uid=h.get("camera_uid"),
                                    officer_id=h.get("officer_id"))
        self.audit.append("unhold", actor, recording_ids=list(recording_ids),
                          request_id=request_id)

    # -- retention and purge (Art. 15) -------------------------------------------------------

    def expiry_ms(self, started_at: str) -> int:
        return add_months(parse_timestamp(started_at), self.settings.retention_months)

    def expired(self, now_ms: int | None = None) -> Iterator[dict[str, Any]]:
        """Stored recordings past retention and not purged, with whether they are held.
        Scans the whole history: an administrator's query, not daily work."""
        now = self._clock() if now_ms is None else now_ms
        purged = {r["recording_id"] for r in self.records.read_all(types=("purge",))}
        for rec in self.records.read_all(types=("recording",)):
            rid = rec["recording_id"]
            if rid in purged or parse_iso_ms(rec["expires_at"]) > now:
                continue
            if not self.store.is_stored(bytes.fromhex(rid)):
                continue
            yield {**rec, "held": self.state.hold(rid) is not None}

    def purge(self, recording_ids: Sequence[str], *, admin_id: str, reason: str, actor: str,
              request_id: str | None = None) -> list[dict[str, Any]]:
        """Delete expired, unheld recordings (footage and keys), leaving tombstones.

        All are checked before any is touched. Per recording: out of ``recordings/`` (durable)
        → tombstone (durable) → delete. A crash in between is finished by `recover_purges`.
        """
        if not admin_id or not reason:
            raise ComplianceError("malformed", "a purge needs an administrator id and a reason")
        now = self._clock()
        tombstones = []
        with self._lock:
            manifests = {}
            for rid in recording_ids:
                if self.state.hold(rid) is not None:
                    raise ComplianceError("held", f"recording {rid} is under legal hold")
                manifest = self._require_stored(rid)
                if self.expiry_ms(manifest["started_at"]) > now:
                    raise ComplianceError(
                        "not_expired", f"recording {rid} is kept until "
                        f"{iso_ms(self.expiry_ms(manifest['started_at']))} (Art. 15)")
                manifests[rid] = manifest
            for rid, manifest in manifests.items():
                raw = bytes.fromhex(rid)
                self.store.begin_purge(raw)
                tombstones.append(self.records.append(
                    "purge", recording_id=rid, manifest_id=manifest["manifest_id"],
                    sha256=manifest["sha256"], camera_uid=manifest["camera_uid"],
                    officer_id=manifest.get("officer_id"),
                    started_at=manifest["started_at"], admin_id=admin_id, reason=reason,
                    request_id=request_id))
                self.store.finish_purge(raw)
        self.audit.append("purge", actor, recording_ids=list(recording_ids), admin_id=admin_id,
                          reason=reason, request_id=request_id)
        return tombstones

    def recover_purges(self) -> None:
        """At start: finish purges whose tombstone is durable, undo the others."""
        pending = self.store.purges_in_progress()
        if not pending:
            return
        wanted = {rid.hex() for rid in pending}
        tombstoned = {r["recording_id"] for r in self.records.read_all(types=("purge",))
                      if r["recording_id"] in wanted}
        for rid in pending:
            if rid.hex() in tombstoned:
                self.store.finish_purge(rid)
            else:
                log.warning("purge of %s had no tombstone: restoring it", rid.hex())
                self.store.abort_purge(rid)

    # -- queries -----------------------------------------------------------------------------

    def ledger(self, *, camera_uid: str | None = None, officer_id: str | None = None,
               from_ms: int, to_ms: int) -> Iterator[dict[str, Any]]:
        """Hand-outs, hand-ins, assignments and the recordings linked to hand-outs in range."""
        types = ("assignment", "hand_out", "hand_in", "recording")
        for rec in self.records.read_range(from_ms, to_ms, types=types):
            if camera_uid is not None and rec.get("camera_uid") != camera_uid:
                continue
            if officer_id is not None and rec.get("officer_id") != officer_id:
                continue
            yield rec
