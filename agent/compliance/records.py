"""The compliance journal: every ledger, recording, gap, hold and purge record (docs/compliance.md).

One shared, month-partitioned, hash-chained `Journal` under ``state_dir/journal/records``. The
daemon and CLI commands append to it in turn; queries by time open only the months asked for.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.publish.topics import iso_ms
from agent.store.journal import Journal

__all__ = ["RECORD_TYPES", "ComplianceRecords", "month_label", "months_between", "parse_iso_ms"]

RECORD_TYPES = frozenset({
    "assignment", "hand_out", "hand_in", "recording", "readiness_failure", "integrity_failure",
    "late_offload", "overdue_camera", "gap", "work_record", "hold", "unhold", "purge",
})


def month_label(ms: int) -> str:
    """``YYYY-MM`` (UTC) of a unix-ms time: the partition a record written then goes to."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def parse_iso_ms(text: str) -> int:
    """Unix ms of an ISO 8601 UTC timestamp as written by `iso_ms` (``…Z``)."""
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def months_between(from_ms: int, to_ms: int) -> tuple[str, str]:
    return month_label(from_ms), month_label(to_ms)


class ComplianceRecords:
    """Append and query compliance records. Thread-safe; several processes may share it."""

    def __init__(self, state_dir: Path, *, clock: Any = _now_ms) -> None:
        self._clock = clock
        self.journal = Journal(state_dir / "journal" / "records", shared=True,
                               partition=lambda: month_label(self._clock()))

    def append(self, record_type: str, **fields: Any) -> dict[str, Any]:
        """Append one record (``type`` and ``at`` are added); durable on return. Returns it."""
        if record_type not in RECORD_TYPES:
            raise ValueError(f"unknown compliance record type {record_type!r}")
        record = {"type": record_type, "at": iso_ms(self._clock()), **fields}
        seq = self.journal.append(record)
        return {**record, "seq": seq}

    def read_range(self, from_ms: int, to_ms: int, *,
                   types: Collection[str] | None = None) -> Iterator[dict[str, Any]]:
        """Records written in [from_ms, to_ms] (by their ``at``), oldest first, of `types`."""
        self.journal.refresh()
        first, last = months_between(from_ms, to_ms)
        lo, hi = iso_ms(from_ms), iso_ms(to_ms)
        for rec in self.journal.read_partitions(first, last):
            if (types is None or rec["type"] in types) and lo <= rec["at"] <= hi:
                yield rec

    def read_all(self, *, types: Collection[str] | None = None) -> Iterator[dict[str, Any]]:
        """Every record, oldest first (whole-history scans: retention, verification)."""
        self.journal.refresh()
        for rec in self.journal.read():
            if types is None or rec["type"] in types:
                yield rec

    def verify(self) -> int:
        self.journal.refresh()
        return self.journal.verify()

    def close(self) -> None:
        self.journal.close()
