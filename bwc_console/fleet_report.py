"""``bwc-console report``: the annual review over the ledger records in the console's store.

Which records: those of the year by their ``at`` (as the dock reads its journal by month),
each dock's in journal order, the docks merged by ``at``. Gaps carried over: gap records of
earlier years with status ``open`` that no earlier work record closed. Hold, unhold and purge
records are attributed through the manifest index.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping
from typing import Any

from .report import build_report
from .report_model import Report
from .store import Store
from .wire import iso_now

__all__ = ["FLEET", "fleet_report"]

FLEET = "(fleet)"


def _carried_gaps(store: Store, docks: list[str], before: str) -> list[dict[str, Any]]:
    gaps: dict[str, dict[str, Any]] = {}
    closed: set[str] = set()
    for dock in docks:
        for rec in store.ledger_stream(dock, at_before=before):
            if rec.get("type") == "gap" and rec.get("status") == "open" and \
                    isinstance(rec.get("gap_id"), str):
                gaps.setdefault(rec["gap_id"], rec)
            elif rec.get("type") == "work_record" and isinstance(rec.get("gap_id"), str):
                closed.add(rec["gap_id"])
    return [g for gap_id, g in gaps.items() if gap_id not in closed]


def fleet_report(store: Store, year: int, *, dock: str | None = None, unit: str | None = None,
                 generated_at: str | None = None) -> Report:
    units = store.units()
    docks = [d for d in store.ledger_docks()
             if (dock is None or d == dock) and (unit is None or units.get(d) == unit)]
    start, end = f"{year:04d}-01-01T00:00:00.000Z", f"{year + 1:04d}-01-01T00:00:00.000Z"

    def by_at(rec: Mapping[str, Any]) -> str:
        at = rec.get("at")
        return at if isinstance(at, str) else ""

    streams: list[Iterator[dict[str, Any]]] = [
        store.ledger_stream(d, at_from=start, at_before=end) for d in docks]
    seen_units = sorted({units[d] for d in docks if d in units})
    return build_report(
        heapq.merge(*streams, key=by_at), year=year,
        dock_id=docks[0] if len(docks) == 1 else FLEET,
        unit=unit if unit is not None else ", ".join(seen_units),
        docks=docks, generated_at=generated_at or iso_now(),
        open_gaps=_carried_gaps(store, docks, start), recording_lookup=store.recording)
