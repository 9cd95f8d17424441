"""Small current compliance state: per camera (open hand-out, recent hand-outs, device-stop
log entries), open gaps, legal holds, counters.

Bounded by the fleet (cameras, open gaps, holds), never by history: the history itself is in
the compliance journal (`agent.compliance.records`). Each camera's state is its own small JSON
file (``compliance/cameras/<uid>.json``): docking one camera rewrites only its own file, so the
cost of a hand-in or a stored recording does not grow with the size of the fleet. Open gaps,
holds and counters are one TinyDB (``compliance.json``). Everything is written atomically
(temp → fsync → rename → fsync dir) and shared by the daemon and CLI commands under one flock
(`StateLock`). Every mutator is durable on return.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tinydb import Query

from agent.store.durable import atomic_write_json, ensure_dir, remove_stale_temps
from agent.store.errors import CorruptStoreError
from agent.store.state import StateLock, open_state

__all__ = ["RECENT_HANDOUTS", "RECENT_LOG_ENTRIES", "ComplianceState"]

RECENT_HANDOUTS = 16  # per camera: links a recording offloaded a few dockings late
RECENT_LOG_ENTRIES = 256  # per camera: device-stop log entries kept as gap evidence


class ComplianceState:
    def __init__(self, path: Path) -> None:
        ensure_dir(path.parent)
        self._lock = StateLock(path.with_name(path.name + ".lock"))
        self._camera_dir = path.parent / "compliance" / "cameras"
        with self._lock:
            self._db = open_state(path)
            ensure_dir(self._camera_dir)
            remove_stale_temps(self._camera_dir, "*")  # under the lock: nobody mid-write
        self._gaps = self._db.table("open_gaps", cache_size=0)
        self._holds = self._db.table("holds", cache_size=0)
        self._meta = self._db.table("meta", cache_size=0)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- per camera: hand-outs and device-stop evidence ---------------------------------------

    def _camera_path(self, camera_uid: str) -> Path:
        if len(camera_uid) != 32 or any(c not in "0123456789abcdef" for c in camera_uid):
            raise ValueError(f"camera uid must be 32 lowercase hex digits, got {camera_uid!r}")
        return self._camera_dir / f"{camera_uid}.json"

    def _read_camera(self, path: Path) -> dict[str, Any] | None:
        try:
            doc = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise CorruptStoreError(f"camera state does not parse: {exc}", path=path) from exc
        if not isinstance(doc, dict):
            raise CorruptStoreError("camera state is not a JSON object", path=path)
        return doc

    def camera(self, camera_uid: str) -> dict[str, Any]:
        with self._lock:
            doc = self._read_camera(self._camera_path(camera_uid))
        base: dict[str, Any] = {"camera_uid": camera_uid, "open_handout": None, "handouts": [],
                                "log_entries": []}
        return {**base, **doc} if doc is not None else base

    def all_cameras(self) -> list[dict[str, Any]]:
        with self._lock:
            paths = sorted(self._camera_dir.glob("*.json"))
            return [d for p in paths if (d := self._read_camera(p)) is not None]

    def update_camera(self, camera_uid: str, fields: dict[str, Any]) -> None:
        path = self._camera_path(camera_uid)
        with self._lock:
            doc = self._read_camera(path) or {}
            atomic_write_json(path, {**doc, "camera_uid": camera_uid, **fields})

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

    def meta(self, name: str, default: Any = 0) -> Any:
        with self._lock:
            doc = self._meta.get(Query().name == name)
        return doc["value"] if isinstance(doc, dict) else default

    def set_meta(self, name: str, value: Any) -> None:
        with self._lock:
            self._meta.upsert({"name": name, "value": value}, Query().name == name)
