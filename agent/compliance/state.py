"""Small current compliance state: open hand-outs, open gaps, legal holds.

Bounded by the fleet (cameras, open gaps, holds), never by history: the history itself is in
the compliance journal (`agent.compliance.records`). TinyDB with atomic writes, shared by the
daemon and CLI commands under one flock (`StateLock`). Every mutator is durable on return.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tinydb import Query

from agent.store.durable import ensure_dir
from agent.store.state import StateLock, open_state

__all__ = ["RECENT_HANDOUTS", "RECENT_LOG_ENTRIES", "ComplianceState"]

RECENT_HANDOUTS = 64  # per camera: enough to link a late-offloaded recording to its hand-out
RECENT_LOG_ENTRIES = 256  # per camera: device-stop log entries kept as gap evidence


class ComplianceState:
    def __init__(self, path: Path) -> None:
        ensure_dir(path.parent)
        self._lock = StateLock(path.with_name(path.name + ".lock"))
        with self._lock:
            self._db = open_state(path)
        self._cameras = self._db.table("cameras", cache_size=0)
        self._gaps = self._db.table("open_gaps", cache_size=0)
        self._holds = self._db.table("holds", cache_size=0)
        self._meta = self._db.table("meta", cache_size=0)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- per camera: hand-outs and device-stop evidence ---------------------------------------

    def camera(self, camera_uid: str) -> dict[str, Any]:
        with self._lock:
            doc = self._cameras.get(Query().camera_uid == camera_uid)
        base: dict[str, Any] = {"camera_uid": camera_uid, "open_handout": None, "handouts": [],
                                "log_entries": []}
        return {**base, **dict(doc)} if isinstance(doc, dict) else base

    def all_cameras(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(d) for d in self._cameras.all()]

    def update_camera(self, camera_uid: str, fields: dict[str, Any]) -> None:
        with self._lock:
            self._cameras.upsert({"camera_uid": camera_uid, **fields},
                                 Query().camera_uid == camera_uid)

    # -- open gaps ---------------------------------------------------------------------------

    def add_open_gap(self, gap: dict[str, Any]) -> None:
        with self._lock:
            self._gaps.upsert(dict(gap), Query().gap_id == gap["gap_id"])

    def open_gap(self, gap_id: str) -> dict[str, Any] | None:
        with self._lock:
            doc = self._gaps.get(Query().gap_id == gap_id)
        return dict(doc) if isinstance(doc, dict) else None

    def close_gap(self, gap_id: str) -> bool:
        with self._lock:
            return bool(self._gaps.remove(Query().gap_id == gap_id))

    def open_gaps(self) -> list[dict[str, Any]]:
        with self._lock:
            docs = [dict(d) for d in self._gaps.all()]
        return sorted(docs, key=lambda g: (g["from"], g["gap_id"]))

    # -- legal holds -------------------------------------------------------------------------

    def hold(self, recording_id: str) -> dict[str, Any] | None:
        with self._lock:
            doc = self._holds.get(Query().recording_id == recording_id)
        return dict(doc) if isinstance(doc, dict) else None

    def set_hold(self, hold: dict[str, Any]) -> None:
        with self._lock:
            self._holds.upsert(dict(hold), Query().recording_id == hold["recording_id"])

    def remove_hold(self, recording_id: str) -> bool:
        with self._lock:
            return bool(self._holds.remove(Query().recording_id == recording_id))

    def holds(self) -> list[dict[str, Any]]:
        with self._lock:
            return sorted((dict(d) for d in self._holds.all()), key=lambda h: h["recording_id"])

    # -- counters (e.g. how far the ledger has been queued for publishing) -------------------

    def meta(self, name: str, default: int = 0) -> int:
        with self._lock:
            doc = self._meta.get(Query().name == name)
        return int(doc["value"]) if isinstance(doc, dict) else default

    def set_meta(self, name: str, value: int) -> None:
        with self._lock:
            self._meta.upsert({"name": name, "value": value}, Query().name == name)
