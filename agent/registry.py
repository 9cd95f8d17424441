"""Enrolled cameras and per-camera bookkeeping (small, bounded state in TinyDB).

One document per camera: its enrolled Ed25519 key, officer, the last camera event-log sequence
number already stored, and recordings quarantined from it (so a failing recording is not pulled
again on every docking). Also the short list of manifests between "recording finalised" and
"manifest queued in the outbox", which closes that crash window on restart.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from tinydb import Query

from firmware_protocol.signing import load_public_key, public_key_raw

from .store.durable import ensure_dir
from .store.state import StateLock, open_state

__all__ = ["CameraRecord", "Registry"]


@dataclass(frozen=True)
class CameraRecord:
    camera_uid: bytes
    public_key: Ed25519PublicKey
    officer_id: str | None
    enrolled_at: int  # unix ms
    enrolled_by: str  # "cli", "console", "trust-on-first-use"
    last_log_seq: int
    quarantined: tuple[str, ...]  # recording ids (hex)


def _record(doc: dict[str, Any]) -> CameraRecord:
    return CameraRecord(
        camera_uid=bytes.fromhex(doc["camera_uid"]),
        public_key=load_public_key(base64.b64decode(doc["public_key"])),
        officer_id=doc.get("officer_id"),
        enrolled_at=int(doc["enrolled_at"]),
        enrolled_by=str(doc["enrolled_by"]),
        last_log_seq=int(doc.get("last_log_seq", 0)),
        quarantined=tuple(doc.get("quarantined", ())),
    )


class Registry:
    """Thread- and process-safe access to the camera registry."""

    def __init__(self, path: Path) -> None:
        ensure_dir(path.parent)
        self._lock = StateLock(path.with_name(path.name + ".lock"))
        # Opening the storage removes stale temp files: only under the lock, or it deletes the
        # temp file of a write that another process (daemon or CLI) is making right now.
        with self._lock:
            self._db = open_state(path)
        # cache_size=0: another process (the CLI) may change the file under us.
        self._cameras = self._db.table("cameras", cache_size=0)
        self._unpublished = self._db.table("unpublished", cache_size=0)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- cameras -------------------------------------------------------------------------------

    def get(self, camera_uid: bytes) -> CameraRecord | None:
        with self._lock:
            doc = self._cameras.get(Query().camera_uid == camera_uid.hex())
        return _record(dict(doc)) if isinstance(doc, dict) else None

    def cameras(self) -> list[CameraRecord]:
        with self._lock:
            docs = list(self._cameras.all())
        return [_record(dict(d)) for d in docs]

    def enroll(self, camera_uid: bytes, public_key: Ed25519PublicKey, *,
               officer_id: str | None, by: str) -> CameraRecord:
        """Enrol (or re-key) a camera. Durable on return. ``officer_id=None`` keeps the officer
        already assigned to a re-enrolled camera."""
        if len(camera_uid) != 16:
            raise ValueError("camera uid must be 16 bytes")
        doc: dict[str, Any] = {
            "camera_uid": camera_uid.hex(),
            "public_key": base64.b64encode(public_key_raw(public_key)).decode(),
            "enrolled_at": time.time_ns() // 1_000_000,
            "enrolled_by": by,
        }
        if officer_id is not None or self.get(camera_uid) is None:
            doc["officer_id"] = officer_id
        with self._lock:
            self._cameras.upsert(doc, Query().camera_uid == doc["camera_uid"])
            stored = self._cameras.get(Query().camera_uid == doc["camera_uid"])
        assert isinstance(stored, dict)
        return _record(dict(stored))

    def revoke(self, camera_uid: bytes) -> CameraRecord:
        """Forget an enrolled camera (its key is no longer trusted); return what it was.
        Durable on return. `KeyError` if it is not enrolled."""
        with self._lock:
            doc = self._cameras.get(Query().camera_uid == camera_uid.hex())
            if not isinstance(doc, dict):
                raise KeyError(f"camera {camera_uid.hex()} is not enrolled")
            self._cameras.remove(Query().camera_uid == camera_uid.hex())
        return _record(dict(doc))

    def set_officer(self, camera_uid: bytes, officer_id: str | None) -> None:
        self._update(camera_uid, {"officer_id": officer_id})

    def set_last_log_seq(self, camera_uid: bytes, seq: int) -> None:
        self._update(camera_uid, {"last_log_seq": seq})

    def add_quarantined(self, camera_uid: bytes, recording_id: bytes) -> None:
        record = self.get(camera_uid)
        if record is None:
            raise KeyError(camera_uid.hex())
        ids = sorted({*record.quarantined, recording_id.hex()})
        self._update(camera_uid, {"quarantined": ids})

    def _update(self, camera_uid: bytes, fields: dict[str, Any]) -> None:
        with self._lock:
            changed = self._cameras.update(fields, Query().camera_uid == camera_uid.hex())
        if not changed:
            raise KeyError(f"camera {camera_uid.hex()} is not enrolled")

    # -- manifests not yet queued ------------------------------------------------------------

    def mark_unpublished(self, manifest_id: str, recording_id: bytes) -> None:
        with self._lock:
            self._unpublished.upsert({"manifest_id": manifest_id,
                                      "recording_id": recording_id.hex()},
                                     Query().manifest_id == manifest_id)

    def mark_published(self, manifest_id: str) -> None:
        with self._lock:
            self._unpublished.remove(Query().manifest_id == manifest_id)

    def unpublished(self) -> list[tuple[str, bytes]]:
        with self._lock:
            docs = list(self._unpublished.all())
        return [(d["manifest_id"], bytes.fromhex(d["recording_id"])) for d in docs]
