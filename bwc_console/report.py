"""The fleet-wide annual review (Art. 17) from the ledger records the console ingested.

The rules are docs/compliance.md's "Annual report", re-implemented from the document (the
console does not import the agent), so that a report over one dock's records equals the dock's
own ``dock-agent report`` (the test-suite compares them):

* a record belongs to the year of its ``at``; a ``recording`` to the year of its ``stored_at``;
* every counted record goes to one camera row and one officer row; the officer is the record's
  ``officer_id`` (null: ``(unassigned)``; no such field: ``(unknown)``); an
  ``integrity_failure`` goes to the officer of the camera's latest hand-in, hand-out or
  recording; ``hold``/``unhold``/``purge`` to the recording's camera and officer as the
  manifests resolve them;
* a ``gap`` is explained (status ``explained``), closed (a ``work_record`` names it) or open;
  gaps still open from earlier years are listed with ``in_year`` false.

Across docks, each dock's records are taken in its journal order and the docks are merged by
``at``: a camera that moves between docks keeps one row.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .report_model import (
    DELAY_BOUNDS_S,
    UNASSIGNED,
    UNKNOWN,
    OpenGap,
    Report,
    Tally,
)

__all__ = ["RecordingLookup", "build_report"]

_NO_REASON = "(none given)"
#: Resolves a recording id to its ``camera_uid`` and ``officer_id`` (or None).
RecordingLookup = Callable[[str], Mapping[str, Any] | None]


def _number(value: object) -> float:
    if value is None:
        return 0
    if type(value) is int:
        return value
    if type(value) is float and math.isfinite(value):
        return value
    raise ValueError(f"not a number: {value!r}")


def _id(value: object) -> str:
    return UNKNOWN if value is None else str(value)


class _Skip(Exception):
    def __init__(self, counter: str) -> None:
        super().__init__(counter)
        self.counter = counter


class _Builder:
    def __init__(self, year: int, carried: Iterable[Mapping[str, Any]],
                 lookup: RecordingLookup | None) -> None:
        self.prefix = f"{year:04d}-"
        self.lookup = lookup
        self.cameras: dict[str, Tally] = {}
        self.officers: dict[str, Tally] = {}
        self.last_officer: dict[str, str] = {}
        self.delay = [0] * (len(DELAY_BOUNDS_S) + 1)
        self.delay_unknown = 0
        self.months = [0] * 12
        self.open: dict[str, OpenGap] = {}
        self.carried: dict[str, OpenGap] = {}
        for g in carried:
            gap = self._gap_of(g, in_year=False)
            if gap.opened_at is None or not gap.opened_at.startswith(self.prefix):
                self.carried[gap.gap_id] = gap
        self.early_work: set[str] = set()
        self.records = dict.fromkeys(
            ("in_year", "outside_year", "unknown_type", "malformed", "duplicate_gaps"), 0)
        self.work = dict.fromkeys(("total", "for_earlier_gaps", "unmatched"), 0)
        self.handlers: dict[object, Callable[[Mapping[str, Any], str], None]] = {
            "assignment": self._count("assignments"), "hand_out": self._hand_out,
            "hand_in": self._hand_in, "recording": self._recording,
            "readiness_failure": self._readiness_failure,
            "integrity_failure": self._integrity_failure,
            "late_offload": self._count("late_offloads"), "overdue_camera": self._count("overdue"),
            "gap": self._gap, "work_record": self._work_record,
            "hold": self._about_recording("holds"), "unhold": self._about_recording("unholds"),
            "purge": self._about_recording("purges"),
        }

    def feed(self, records: Iterable[Mapping[str, Any]]) -> None:
        for rec in records:
            kind = rec.get("type")
            when = rec.get("stored_at") or rec.get("at") if kind == "recording" else rec.get("at")
            if type(when) is not str:
                self.records["malformed"] += 1
            elif not when.startswith(self.prefix):
                self.records["outside_year"] += 1
            elif (handler := self.handlers.get(kind)) is None:
                self.records["unknown_type"] += 1
            else:
                try:
                    handler(rec, when)
                except _Skip as skip:
                    self.records[skip.counter] += 1
                except (ValueError, TypeError):
                    self.records["malformed"] += 1
                else:
                    self.records["in_year"] += 1

    def _rows(self, camera: str, officer: str) -> tuple[Tally, Tally]:
        return (self.cameras.setdefault(camera, Tally()),
                self.officers.setdefault(officer, Tally()))

    @staticmethod
    def _who(rec: Mapping[str, Any]) -> tuple[str, str]:
        officer = rec.get("officer_id", UNKNOWN)
        return _id(rec.get("camera_uid")), UNASSIGNED if officer is None else str(officer)

    def _count(self, name: str) -> Callable[[Mapping[str, Any], str], None]:
        def handle(rec: Mapping[str, Any], _at: str) -> None:
            for t in self._rows(*self._who(rec)):
                setattr(t, name, getattr(t, name) + 1)
        return handle

    def _hand_out(self, rec: Mapping[str, Any], _at: str) -> None:
        camera, officer = self._who(rec)
        self.last_officer[camera] = officer
        for t in self._rows(camera, officer):
            t.hand_outs += 1
            t.hand_outs_not_ready += rec.get("ready") is False

    def _hand_in(self, rec: Mapping[str, Any], _at: str) -> None:
        camera, officer = self._who(rec)
        self.last_officer[camera] = officer
        for t in self._rows(camera, officer):
            t.hand_ins += 1

    def _recording(self, rec: Mapping[str, Any], _at: str) -> None:
        duration, size = _number(rec.get("duration_s")), int(_number(rec.get("size")))
        raw_delay = rec.get("offload_delay_s")
        delay = None if raw_delay is None else _number(raw_delay)
        camera, officer = self._who(rec)
        self.last_officer[camera] = officer
        for t in self._rows(camera, officer):
            t.recordings += 1
            t.recorded_s += duration
            t.stored_bytes += size
            if delay is not None and delay > t.max_offload_delay_s:
                t.max_offload_delay_s = delay
        if delay is None:
            self.delay_unknown += 1
        else:
            self.delay[bisect_left(DELAY_BOUNDS_S, delay)] += 1

    def _readiness_failure(self, rec: Mapping[str, Any], at: str) -> None:
        month = int(at[5:7]) - 1
        reasons = rec.get("reasons") or [_NO_REASON]
        if not 0 <= month < 12 or not isinstance(reasons, list | tuple):
            raise ValueError("bad month or reasons")
        keys = [str(r) for r in reasons]
        self.months[month] += 1
        for t in self._rows(*self._who(rec)):
            t.readiness_failures += 1
            for r in keys:
                t.readiness_reasons[r] = t.readiness_reasons.get(r, 0) + 1

    def _integrity_failure(self, rec: Mapping[str, Any], _at: str) -> None:
        camera = _id(rec.get("camera_uid"))
        if "officer_id" in rec:
            camera, officer = self._who(rec)
        else:
            officer = self.last_officer.get(camera, UNKNOWN)
        for t in self._rows(camera, officer):
            t.integrity_alerts += 1

    def _gap_of(self, rec: Mapping[str, Any], *, in_year: bool) -> OpenGap:
        gap_id, duration = rec.get("gap_id"), rec.get("duration_s")
        if not isinstance(gap_id, str) or not gap_id:
            raise ValueError("gap without gap_id")
        officer = rec.get("officer_id", UNKNOWN)

        def text(key: str) -> str | None:
            value = rec.get(key)
            return None if value is None else str(value)

        return OpenGap(gap_id, _id(rec.get("camera_uid")),
                       UNASSIGNED if officer is None else str(officer), text("kind"),
                       text("from"), text("to"), None if duration is None else _number(duration),
                       text("handout_id"), text("at"), in_year)

    def _gap(self, rec: Mapping[str, Any], _at: str) -> None:
        explained = rec.get("status") == "explained"
        gap = None if explained else self._gap_of(rec, in_year=True)
        if gap is not None and gap.gap_id in self.open:
            raise _Skip("duplicate_gaps")
        rows = self._rows(*self._who(rec))
        gap_id = rec.get("gap_id")
        if isinstance(gap_id, str):
            self.carried.pop(gap_id, None)
        closed = gap is not None and gap.gap_id in self.early_work
        if gap is not None:
            if closed:
                self.early_work.discard(gap.gap_id)
            else:
                self.open[gap.gap_id] = gap
        for t in rows:
            t.gaps += 1
            t.gaps_explained += explained
            t.gaps_closed += closed
            t.gaps_open += gap is not None and not closed

    def _work_record(self, rec: Mapping[str, Any], _at: str) -> None:
        gap_id = rec.get("gap_id")
        if not isinstance(gap_id, str):
            raise ValueError("work record without gap_id")
        self.work["total"] += 1
        gap = self.open.pop(gap_id, None)
        if gap is not None:
            for t in self._rows(gap.camera_uid, gap.officer_id):
                t.gaps_open -= 1
                t.gaps_closed += 1
        elif self.carried.pop(gap_id, None) is not None:
            self.work["for_earlier_gaps"] += 1
        else:
            self.early_work.add(gap_id)

    def _about_recording(self, name: str) -> Callable[[Mapping[str, Any], str], None]:
        def handle(rec: Mapping[str, Any], _at: str) -> None:
            camera, officer = rec.get("camera_uid"), rec.get("officer_id", UNKNOWN)
            rid = rec.get("recording_id")
            if (camera is None or officer == UNKNOWN) and self.lookup is not None \
                    and isinstance(rid, str):
                found = self.lookup(rid)
                if found is not None:
                    camera = camera if camera is not None else found.get("camera_uid")
                    if officer == UNKNOWN:
                        officer = found.get("officer_id", UNKNOWN)
            for t in self._rows(_id(camera), UNASSIGNED if officer is None else str(officer)):
                setattr(t, name, getattr(t, name) + 1)
        return handle

    def open_gaps(self) -> list[OpenGap]:
        self.work["unmatched"] = len(self.early_work)
        gaps = [*self.open.values(), *self.carried.values()]
        return sorted(gaps, key=lambda g: (g.start or g.opened_at or "", g.gap_id))


def build_report(records: Iterable[Mapping[str, Any]], *, year: int, dock_id: str, unit: str,
                 docks: Iterable[str], generated_at: str,
                 open_gaps: Iterable[Mapping[str, Any]] = (),
                 recording_lookup: RecordingLookup | None = None) -> Report:
    """Sum up ``year``'s records in one pass; ``open_gaps``: gap records of earlier years still
    open at its start."""
    if not 1 <= year <= 9998:
        raise ValueError(f"year out of range: {year!r}")
    b = _Builder(year, open_gaps, recording_lookup)
    b.feed(records)
    fleet = Tally()
    for t in b.cameras.values():
        fleet.add(t)
    gaps = b.open_gaps()
    return Report(dock_id, unit, sorted(docks), year, generated_at, b.cameras, b.officers,
                  fleet, b.delay, b.delay_unknown, b.months, gaps, b.records, b.work)
