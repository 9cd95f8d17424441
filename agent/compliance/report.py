"""The annual review (Art. 17): one year of compliance records summed up per camera and officer.

:func:`build_report` folds a stream of compliance records (``docs/compliance.md``, "Record
types") into a :class:`Report` in one pass. Memory grows with the number of cameras, officers and
gaps still open, never with the number of records, so a year of a busy dock (~120k records) costs
the same few kilobytes as a quiet one. The module does no I/O: the caller reads the journal and
writes what :func:`render_json`, :func:`render_csv` or :func:`render_html` return.

Rules, in the words of ``docs/compliance.md`` ("Annual report"):

* A record belongs to the year by its ``at``; a ``recording`` by its ``stored_at``.
* Every counted record goes to exactly one camera row and one officer row, so the fleet totals
  are the sum of either table. The officer is the record's ``officer_id`` (null: "(unassigned)").
  Records without the field: an ``integrity_failure`` goes to the officer of that camera's latest
  hand-in, hand-out or recording before it; ``hold``, ``unhold`` and ``purge`` to the recording's
  camera and officer as ``recording_lookup`` resolves them; otherwise to "(unknown)".
* A ``gap`` with status ``explained`` is explained automatically; with ``open`` it stays open
  until a ``work_record`` with its ``gap_id`` closes it. Gaps still open from earlier years come
  in as ``open_gaps`` (e.g. from ``compliance.json``) and are listed too.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from agent.readiness import Reason

__all__ = [
    "DELAY_BOUNDS_S",
    "DELAY_LABELS",
    "SCHEMA",
    "UNASSIGNED",
    "UNKNOWN",
    "OpenGap",
    "RecordingLookup",
    "Report",
    "Tally",
    "build_report",
    "render_csv",
    "render_html",
    "render_json",
]

SCHEMA = 1
UNASSIGNED = "(unassigned)"  # the record says no officer had the camera
UNKNOWN = "(unknown)"  # the record does not say, and nothing else in the stream does
#: Upper bounds (inclusive) of the offload-delay buckets; the last bucket has none.
DELAY_BOUNDS_S = (3600, 6 * 3600, 24 * 3600, 48 * 3600)
DELAY_LABELS = ("≤ 1 h", "1-6 h", "6-24 h", "24-48 h", "> 48 h")
_REASON_ORDER = {str(r): i for i, r in enumerate(Reason)}
_NO_REASON = "(none given)"
_DIGITS = re.compile(r"(\d+)")

#: Resolves a recording id to a mapping with its ``camera_uid`` and ``officer_id`` (or None).
RecordingLookup = Callable[[str], Mapping[str, Any] | None]


@dataclass(slots=True)
class Tally:
    """What one camera, one officer or the whole fleet did in the year."""

    assignments: int = 0
    hand_outs: int = 0
    hand_outs_not_ready: int = 0
    hand_ins: int = 0
    recordings: int = 0
    recorded_s: float = 0
    stored_bytes: int = 0
    max_offload_delay_s: float = 0
    readiness_failures: int = 0
    readiness_reasons: dict[str, int] = field(default_factory=dict)
    late_offloads: int = 0
    overdue: int = 0
    gaps: int = 0
    gaps_explained: int = 0
    gaps_closed: int = 0
    gaps_open: int = 0
    integrity_alerts: int = 0
    holds: int = 0
    unholds: int = 0
    purges: int = 0

    @property
    def hours_recorded(self) -> float:
        return round(self.recorded_s / 3600, 3)

    def add(self, other: Tally) -> None:
        for f in _TALLY_NUMBERS:
            setattr(self, f, getattr(self, f) + getattr(other, f))
        self.max_offload_delay_s = max(self.max_offload_delay_s, other.max_offload_delay_s)
        for reason, n in other.readiness_reasons.items():
            self.readiness_reasons[reason] = self.readiness_reasons.get(reason, 0) + n

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        d["readiness_reasons"] = {r: self.readiness_reasons[r]
                                  for r in _sorted_reasons(self.readiness_reasons)}
        d["hours_recorded"] = self.hours_recorded
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Tally:
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


_TALLY_NUMBERS = tuple(f.name for f in fields(Tally)
                       if f.name not in ("readiness_reasons", "max_offload_delay_s"))


@dataclass(frozen=True, slots=True)
class OpenGap:
    """A gap without an explanation or a work record (Art. 12): the legal office follows up."""

    gap_id: str
    camera_uid: str
    officer_id: str
    kind: str | None
    start: str | None  # the gap's ``from``
    end: str | None  # the gap's ``to``
    duration_s: float | None
    handout_id: str | None
    opened_at: str | None  # the gap record's ``at``
    in_year: bool  # False: carried over from an earlier year (``open_gaps``)

    def to_dict(self) -> dict[str, Any]:
        return {"gap_id": self.gap_id, "camera_uid": self.camera_uid,
                "officer_id": self.officer_id, "kind": self.kind, "from": self.start,
                "to": self.end, "duration_s": self.duration_s, "handout_id": self.handout_id,
                "opened_at": self.opened_at, "in_year": self.in_year}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OpenGap:
        return cls(d["gap_id"], d["camera_uid"], d["officer_id"], d["kind"], d["from"], d["to"],
                   d["duration_s"], d["handout_id"], d["opened_at"], d["in_year"])


@dataclass(slots=True)
class Report:
    """The annual review. ``records`` counts what the stream held: ``in_year`` (counted),
    ``outside_year``, ``unknown_type``, ``malformed`` and ``duplicate_gaps`` (all skipped)."""

    dock_id: str
    unit: str
    year: int
    generated_at: str
    cameras: dict[str, Tally]
    officers: dict[str, Tally]
    fleet: Tally
    offload_delay: list[int]  # one count per DELAY_LABELS bucket
    offload_delay_unknown: int  # recordings without an offload_delay_s
    readiness_per_month: list[int]  # January .. December
    open_gaps: list[OpenGap]
    records: dict[str, int]
    work_records: dict[str, int]  # total, for_earlier_gaps, unmatched

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "annual_report", "schema": SCHEMA, "dock_id": self.dock_id,
            "unit": self.unit, "year": self.year, "generated_at": self.generated_at,
            "period": {"from": f"{self.year:04d}-01-01T00:00:00.000Z",
                       "to": f"{self.year + 1:04d}-01-01T00:00:00.000Z"},
            "records": dict(self.records), "work_records": dict(self.work_records),
            "fleet": {"cameras": _count_real(self.cameras), "officers": _count_real(self.officers),
                      **self.fleet.to_dict()},
            "cameras": {k: self.cameras[k].to_dict() for k in _sorted_ids(self.cameras)},
            "officers": {k: self.officers[k].to_dict()
                         for k in _sorted_ids(self.officers, natural=True)},
            "offload_delay": {"buckets": [{"label": label, "max_s": bound, "count": n}
                                          for label, bound, n in zip(
                                              DELAY_LABELS, (*DELAY_BOUNDS_S, None),
                                              self.offload_delay, strict=True)],
                              "unknown": self.offload_delay_unknown},
            "readiness_failures_per_month": list(self.readiness_per_month),
            "open_gaps": [g.to_dict() for g in self.open_gaps],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Report:
        """The inverse of :meth:`to_dict` (``json.loads(render_json(r))`` gives ``r`` back)."""
        return cls(
            d["dock_id"], d["unit"], d["year"], d["generated_at"],
            {k: Tally.from_dict(v) for k, v in d["cameras"].items()},
            {k: Tally.from_dict(v) for k, v in d["officers"].items()},
            Tally.from_dict(d["fleet"]),
            [b["count"] for b in d["offload_delay"]["buckets"]], d["offload_delay"]["unknown"],
            list(d["readiness_failures_per_month"]),
            [OpenGap.from_dict(g) for g in d["open_gaps"]], dict(d["records"]),
            dict(d["work_records"]))


def _sorted_ids(table: Mapping[str, Any], *, natural: bool = False) -> list[str]:
    """Real ids in order (``natural``: officer-2 before officer-10), the "(unassigned)" and
    "(unknown)" rows last."""
    def key(k: str) -> tuple[bool, list[tuple[int, str]]]:
        parts = _DIGITS.split(k) if natural else [k]
        return k in (UNASSIGNED, UNKNOWN), [(int(p), p) if i % 2 else (-1, p)
                                            for i, p in enumerate(parts)]
    return sorted(table, key=key)


def _count_real(table: Mapping[str, Any]) -> int:
    return sum(1 for k in table if k not in (UNASSIGNED, UNKNOWN))


def _sorted_reasons(reasons: Iterable[str]) -> list[str]:
    return sorted(reasons, key=lambda r: (_REASON_ORDER.get(r, len(_REASON_ORDER)), r))


def _number(value: object) -> float:
    """A JSON number (not a bool, not NaN/inf); None counts as 0. Anything else: malformed."""
    if value is None:
        return 0
    if type(value) is int:
        return value
    if type(value) is float and math.isfinite(value):
        return value
    raise ValueError(f"not a number: {value!r}")


def _id(value: object, default: str = UNKNOWN) -> str:
    return default if value is None else str(value)


# -- building ---------------------------------------------------------------------------------

class _Skip(Exception):
    """A well-formed record that is not counted; ``counter`` says under which ``records`` key."""

    def __init__(self, counter: str) -> None:
        super().__init__(counter)
        self.counter = counter


class _Builder:
    def __init__(self, year: int, open_gaps: Iterable[Mapping[str, Any]],
                 lookup: RecordingLookup | None) -> None:
        self.prefix = f"{year:04d}-"
        self.lookup = lookup
        self.cameras: dict[str, Tally] = {}
        self.officers: dict[str, Tally] = {}
        self.last_officer: dict[str, str] = {}  # camera -> officer of its latest hand-in/out/rec
        self.delay = [0] * (len(DELAY_BOUNDS_S) + 1)
        self.delay_unknown = 0
        self.months = [0] * 12
        self.open: dict[str, OpenGap] = {}  # gaps of the year still open
        self.carried: dict[str, OpenGap] = {}
        for g in open_gaps:
            gap = self._open_gap(g, in_year=False)
            if gap.opened_at is None or not gap.opened_at.startswith(self.prefix):
                self.carried[gap.gap_id] = gap
        self.early_work: set[str] = set()  # work records whose gap was not seen (yet)
        self.records = dict.fromkeys(
            ("in_year", "outside_year", "unknown_type", "malformed", "duplicate_gaps"), 0)
        self.work = dict.fromkeys(("total", "for_earlier_gaps", "unmatched"), 0)
        self.handlers: dict[object, Callable[[Mapping[str, Any], str], None]] = {
            "assignment": self._assignment, "hand_out": self._hand_out,
            "hand_in": self._hand_in, "recording": self._recording,
            "readiness_failure": self._readiness_failure,
            "integrity_failure": self._integrity_failure, "late_offload": self._late_offload,
            "overdue_camera": self._overdue, "gap": self._gap, "work_record": self._work_record,
            "hold": self._hold, "unhold": self._unhold, "purge": self._purge,
        }

    def feed(self, records: Iterable[Mapping[str, Any]]) -> None:
        prefix, handlers, counts = self.prefix, self.handlers, self.records
        for rec in records:
            kind = rec.get("type")
            when = rec.get("stored_at") or rec.get("at") if kind == "recording" else rec.get("at")
            if type(when) is not str:
                counts["malformed"] += 1
            elif not when.startswith(prefix):
                counts["outside_year"] += 1
            elif (handler := handlers.get(kind)) is None:
                counts["unknown_type"] += 1
            else:
                try:
                    handler(rec, when)
                except _Skip as skip:
                    counts[skip.counter] += 1
                except (ValueError, TypeError):
                    counts["malformed"] += 1
                else:
                    counts["in_year"] += 1

    # Each handler checks everything it reads before it changes any count: a malformed record
    # is skipped whole.

    def _rows(self, camera: str, officer: str) -> tuple[Tally, Tally]:
        cam = self.cameras.get(camera)
        if cam is None:
            cam = self.cameras[camera] = Tally()
        off = self.officers.get(officer)
        if off is None:
            off = self.officers[officer] = Tally()
        return cam, off

    def _who(self, rec: Mapping[str, Any]) -> tuple[str, str]:
        officer = rec.get("officer_id", UNKNOWN)
        return _id(rec.get("camera_uid")), UNASSIGNED if officer is None else str(officer)

    def _assignment(self, rec: Mapping[str, Any], at: str) -> None:
        for t in self._rows(*self._who(rec)):
            t.assignments += 1

    def _hand_out(self, rec: Mapping[str, Any], at: str) -> None:
        camera, officer = self._who(rec)
        self.last_officer[camera] = officer
        not_ready = rec.get("ready") is False
        for t in self._rows(camera, officer):
            t.hand_outs += 1
            t.hand_outs_not_ready += not_ready

    def _hand_in(self, rec: Mapping[str, Any], at: str) -> None:
        camera, officer = self._who(rec)
        self.last_officer[camera] = officer
        for t in self._rows(camera, officer):
            t.hand_ins += 1

    def _recording(self, rec: Mapping[str, Any], at: str) -> None:
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

    def _integrity_failure(self, rec: Mapping[str, Any], at: str) -> None:
        camera = _id(rec.get("camera_uid"))
        if "officer_id" in rec:
            camera, officer = self._who(rec)
        else:
            officer = self.last_officer.get(camera, UNKNOWN)
        for t in self._rows(camera, officer):
            t.integrity_alerts += 1

    def _late_offload(self, rec: Mapping[str, Any], at: str) -> None:
        for t in self._rows(*self._who(rec)):
            t.late_offloads += 1

    def _overdue(self, rec: Mapping[str, Any], at: str) -> None:
        for t in self._rows(*self._who(rec)):
            t.overdue += 1

    def _open_gap(self, rec: Mapping[str, Any], *, in_year: bool) -> OpenGap:
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

    def _gap(self, rec: Mapping[str, Any], at: str) -> None:
        explained = rec.get("status") == "explained"
        gap = None if explained else self._open_gap(rec, in_year=True)
        if gap is not None and gap.gap_id in self.open:
            raise _Skip("duplicate_gaps")
        rows = self._rows(*self._who(rec))
        gap_id = rec.get("gap_id")
        if isinstance(gap_id, str):
            self.carried.pop(gap_id, None)  # the year's own record is the one that counts
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

    def _work_record(self, rec: Mapping[str, Any], at: str) -> None:
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

    def _about_recording(self, rec: Mapping[str, Any]) -> tuple[str, str]:
        camera, officer = rec.get("camera_uid"), rec.get("officer_id", UNKNOWN)
        recording_id = rec.get("recording_id")
        if (camera is None or officer == UNKNOWN) and self.lookup is not None \
                and isinstance(recording_id, str):
            found = self.lookup(recording_id)
            if found is not None:
                camera = camera if camera is not None else found.get("camera_uid")
                if officer == UNKNOWN:
                    officer = found.get("officer_id", UNKNOWN)
        return _id(camera), UNASSIGNED if officer is None else str(officer)

    def _hold(self, rec: Mapping[str, Any], at: str) -> None:
        for t in self._rows(*self._about_recording(rec)):
            t.holds += 1

    def _unhold(self, rec: Mapping[str, Any], at: str) -> None:
        for t in self._rows(*self._about_recording(rec)):
            t.unholds += 1

    def _purge(self, rec: Mapping[str, Any], at: str) -> None:
        for t in self._rows(*self._about_recording(rec)):
            t.purges += 1

    def open_gaps(self) -> list[OpenGap]:
        self.work["unmatched"] = len(self.early_work)
        gaps = [*self.open.values(), *self.carried.values()]
        return sorted(gaps, key=lambda g: (g.start or g.opened_at or "", g.gap_id))


def build_report(records: Iterable[Mapping[str, Any]], *, year: int, dock_id: str, unit: str,
                 generated_at: str, open_gaps: Iterable[Mapping[str, Any]] = (),
                 recording_lookup: RecordingLookup | None = None) -> Report:
    """Sum up ``year``'s compliance records in one pass (see the module docstring for the rules).

    ``open_gaps``: gap records still open that may predate the year (``compliance.json``); they
    are listed, and a work record in the year closes them. ``recording_lookup``: resolves the
    camera and officer of a recording for hold, unhold and purge records, which do not carry them.
    """
    if not 1 <= year <= 9998:
        raise ValueError(f"year out of range: {year!r}")
    b = _Builder(year, open_gaps, recording_lookup)
    b.feed(records)
    fleet = Tally()
    for t in b.cameras.values():
        fleet.add(t)
    gaps = b.open_gaps()
    return Report(dock_id, unit, year, generated_at, b.cameras, b.officers, fleet, b.delay,
                  b.delay_unknown, b.months, gaps, b.records, b.work)


# -- rendering --------------------------------------------------------------------------------

def render_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"


_CSV_COLUMNS = ("hand_outs", "hand_outs_not_ready", "hand_ins", "assignments", "recordings",
                "hours_recorded", "stored_bytes", "max_offload_delay_s", "late_offloads",
                "overdue", "readiness_failures")
_CSV_TAIL = ("gaps", "gaps_explained", "gaps_closed", "gaps_open", "integrity_alerts", "holds",
             "unholds", "purges")


def _cell(text: str) -> str:
    """No id may start a spreadsheet formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def render_csv(report: Report) -> str:
    """One row per camera, then per officer (``scope``), then the fleet; one column per reason."""
    reasons = _sorted_reasons(report.fleet.readiness_reasons)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(("scope", "id", *_CSV_COLUMNS, *(f"readiness:{r}" for r in reasons), *_CSV_TAIL))
    rows = [("camera", k, report.cameras[k]) for k in _sorted_ids(report.cameras)]
    rows += [("officer", k, report.officers[k]) for k in _sorted_ids(report.officers, natural=True)]
    rows.append(("fleet", "", report.fleet))
    for scope, key, t in rows:
        d = t.to_dict()
        w.writerow((scope, _cell(key), *(d[c] for c in _CSV_COLUMNS),
                    *(t.readiness_reasons.get(r, 0) for r in reasons), *(d[c] for c in _CSV_TAIL)))
    return out.getvalue()


def render_html(report: Report) -> str:
    """One self-contained, printable HTML page with inline SVG plots (``report_html``)."""
    from agent.compliance.report_html import render_html as render

    return render(report)
