"""The annual review's figures (docs/compliance.md, "Annual report"): one :class:`Tally` per
camera, per officer and for the fleet, the open gaps, and the report's JSON form — the dock
report's members, plus ``docks``."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = [
    "DELAY_BOUNDS_S",
    "DELAY_LABELS",
    "REASON_ORDER",
    "UNASSIGNED",
    "UNKNOWN",
    "OpenGap",
    "Report",
    "Tally",
    "count_real",
    "sorted_ids",
    "sorted_reasons",
]

UNASSIGNED = "(unassigned)"
UNKNOWN = "(unknown)"
DELAY_BOUNDS_S = (3600, 6 * 3600, 24 * 3600, 48 * 3600)
DELAY_LABELS = ("≤ 1 h", "1-6 h", "6-24 h", "24-48 h", "> 48 h")
#: Readiness reasons in the order docs/mqtt.md lists them; others after, alphabetically.
REASON_ORDER = ("clock_unsynced", "battery_low", "storage_low", "self_test_failed",
                "footage_pending")
_DIGITS = re.compile(r"(\d+)")

@dataclass(slots=True)
class Tally:
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
        for name in _SUMMED:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.max_offload_delay_s = max(self.max_offload_delay_s, other.max_offload_delay_s)
        for reason, n in other.readiness_reasons.items():
            self.readiness_reasons[reason] = self.readiness_reasons.get(reason, 0) + n

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        d["readiness_reasons"] = {r: self.readiness_reasons[r]
                                  for r in sorted_reasons(self.readiness_reasons)}
        d["hours_recorded"] = self.hours_recorded
        return d


_SUMMED = tuple(f.name for f in fields(Tally)
                if f.name not in ("readiness_reasons", "max_offload_delay_s"))


@dataclass(frozen=True, slots=True)
class OpenGap:
    gap_id: str
    camera_uid: str
    officer_id: str
    kind: str | None
    start: str | None
    end: str | None
    duration_s: float | None
    handout_id: str | None
    opened_at: str | None
    in_year: bool

    def to_dict(self) -> dict[str, Any]:
        return {"gap_id": self.gap_id, "camera_uid": self.camera_uid,
                "officer_id": self.officer_id, "kind": self.kind, "from": self.start,
                "to": self.end, "duration_s": self.duration_s, "handout_id": self.handout_id,
                "opened_at": self.opened_at, "in_year": self.in_year}


@dataclass(slots=True)
class Report:
    dock_id: str  # the dock, or "(fleet)" for several
    unit: str
    docks: list[str]
    year: int
    generated_at: str
    cameras: dict[str, Tally]
    officers: dict[str, Tally]
    fleet: Tally
    offload_delay: list[int]
    offload_delay_unknown: int
    readiness_per_month: list[int]
    open_gaps: list[OpenGap]
    records: dict[str, int]
    work_records: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        """The dock report's JSON (docs/compliance.md), plus ``docks``: the docks covered."""
        return {
            "type": "annual_report", "schema": 1, "dock_id": self.dock_id, "unit": self.unit,
            "year": self.year, "generated_at": self.generated_at,
            "period": {"from": f"{self.year:04d}-01-01T00:00:00.000Z",
                       "to": f"{self.year + 1:04d}-01-01T00:00:00.000Z"},
            "records": dict(self.records), "work_records": dict(self.work_records),
            "fleet": {"cameras": count_real(self.cameras), "officers": count_real(self.officers),
                      **self.fleet.to_dict()},
            "cameras": {k: self.cameras[k].to_dict() for k in sorted_ids(self.cameras)},
            "officers": {k: self.officers[k].to_dict()
                         for k in sorted_ids(self.officers, natural=True)},
            "offload_delay": {"buckets": [{"label": label, "max_s": bound, "count": n}
                                          for label, bound, n in zip(
                                              DELAY_LABELS, (*DELAY_BOUNDS_S, None),
                                              self.offload_delay, strict=True)],
                              "unknown": self.offload_delay_unknown},
            "readiness_failures_per_month": list(self.readiness_per_month),
            "open_gaps": [g.to_dict() for g in self.open_gaps],
            "docks": list(self.docks),
        }


def sorted_ids(table: Mapping[str, Any], *, natural: bool = False) -> list[str]:
    """Real ids in order (``natural``: officer-2 before officer-10); the placeholders last."""
    def key(k: str) -> tuple[bool, list[tuple[int, str]]]:
        parts = _DIGITS.split(k) if natural else [k]
        return k in (UNASSIGNED, UNKNOWN), [(int(p), p) if i % 2 else (-1, p)
                                            for i, p in enumerate(parts)]
    return sorted(table, key=key)


def count_real(table: Mapping[str, Any]) -> int:
    return sum(1 for k in table if k not in (UNASSIGNED, UNKNOWN))


def sorted_reasons(reasons: Iterable[str]) -> list[str]:
    order = {r: i for i, r in enumerate(REASON_ORDER)}
    return sorted(reasons, key=lambda r: (order.get(r, len(order)), r))
