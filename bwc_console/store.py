"""The console's store: what it verified and acknowledged, durably, before it acknowledged it.

Layout of ``DIR`` (docs/console.md, "Store"):

* ``manifests/<dock_id>/<manifest_id>.json`` — each verified manifest, the bytes as received,
  written temp → fsync → rename → fsync dir;
* ``rejected/<dock_id>/<manifest_id>-<sha>.json`` — each distinct refused payload with the
  reason (never acknowledged);
* ``alerts/<time>-<dock_id>-<kind>-<digest>.json`` — rollback, fork and other alerts;
* ``console.db`` — SQLite (WAL, ``synchronous=FULL``: a commit is on disk when it returns):
  events, ledger records and command results by id, pinned dock keys, the last audit head per
  dock, an index of the manifests, and which alerts were raised;
* ``ingest.lock`` — held (flock) by the one ``bwc-console ingest`` using the store.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

from .audit_head import Head
from .durable import ensure_dir, write_atomic
from .manifest_check import Verified
from .wire import canonical_ascii, iso_now

__all__ = ["Saved", "Store", "StoreBusy", "payload_digest"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL, dock_id TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER, at TEXT,
    received_at TEXT NOT NULL, digest TEXT NOT NULL, payload TEXT NOT NULL,
    PRIMARY KEY (kind, dock_id, id));
CREATE TABLE IF NOT EXISTS conflicts (
    kind TEXT NOT NULL, dock_id TEXT NOT NULL, id TEXT NOT NULL, received_at TEXT NOT NULL,
    digest TEXT NOT NULL, payload TEXT NOT NULL, PRIMARY KEY (kind, dock_id, id, digest));
CREATE TABLE IF NOT EXISTS manifests (
    dock_id TEXT NOT NULL, manifest_id TEXT NOT NULL, recording_id TEXT NOT NULL,
    camera_uid TEXT NOT NULL, officer_id TEXT, stored_at TEXT NOT NULL, size INTEGER NOT NULL,
    received_at TEXT NOT NULL, PRIMARY KEY (dock_id, manifest_id));
CREATE INDEX IF NOT EXISTS manifests_by_recording ON manifests (recording_id);
CREATE TABLE IF NOT EXISTS docks (
    dock_id TEXT PRIMARY KEY, public_key TEXT NOT NULL, pinned_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS units (
    dock_id TEXT PRIMARY KEY, unit TEXT NOT NULL, seen_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit_heads (
    dock_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, head TEXT NOT NULL, at TEXT NOT NULL,
    received_at TEXT NOT NULL, payload TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS alerts (
    digest TEXT PRIMARY KEY, kind TEXT NOT NULL, dock_id TEXT NOT NULL, at TEXT NOT NULL,
    file TEXT NOT NULL);
"""


class StoreBusy(RuntimeError):
    """Another ``bwc-console ingest`` holds the store."""


class Saved(StrEnum):
    NEW = "new"
    DUPLICATE = "duplicate"  # the same id with the same content: already stored
    CONFLICT = "conflict"  # the same id with other content: kept apart, the first one stays


def payload_digest(payload: Any) -> str:
    return hashlib.sha256(canonical_ascii(payload)).hexdigest()


class Store:
    def __init__(self, root: Path, *, exclusive: bool = False) -> None:
        self.root = root
        ensure_dir(root)
        self._lock_fd: int | None = None
        if exclusive:
            fd = os.open(root / "ingest.lock", os.O_RDWR | os.O_CREAT, 0o640)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise StoreBusy(f"{root} is in use by another bwc-console ingest") from None
            self._lock_fd = fd
        self._mutex = threading.Lock()
        self._db = sqlite3.connect(root / "console.db", check_same_thread=False,
                                   isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._units = self.units()

    def close(self) -> None:
        with self._mutex:
            self._db.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _one(self, sql: str, *args: object) -> tuple[Any, ...] | None:
        with self._mutex:
            row: tuple[Any, ...] | None = self._db.execute(sql, args).fetchone()
            return row

    def _write(self, sql: str, *args: object) -> None:
        with self._mutex:
            self._db.execute(sql, args)  # autocommit: durable when it returns

    # -- dock keys ------------------------------------------------------------------------------

    def pinned_key(self, dock_id: str) -> str | None:
        row = self._one("SELECT public_key FROM docks WHERE dock_id = ?", dock_id)
        return None if row is None else str(row[0])

    def pin_dock(self, dock_id: str, public_key_b64: str) -> None:
        self._write("INSERT OR IGNORE INTO docks VALUES (?, ?, ?)", dock_id, public_key_b64,
                    iso_now())

    def note_unit(self, dock_id: str, unit: str) -> None:
        """Remember the unit a dock publishes under (from its topics)."""
        if self._units.get(dock_id) != unit:
            self._write("INSERT OR REPLACE INTO units VALUES (?, ?, ?)", dock_id, unit, iso_now())
            self._units[dock_id] = unit

    def units(self) -> dict[str, str]:
        with self._mutex:
            return {str(d): str(u) for d, u in self._db.execute("SELECT dock_id, unit FROM units")}

    # -- manifests ------------------------------------------------------------------------------

    def manifest_path(self, dock_id: str, manifest_id: str) -> Path:
        return self.root / "manifests" / dock_id / f"{manifest_id}.json"

    def stored_manifest(self, dock_id: str, manifest_id: str) -> bytes | None:
        try:
            return self.manifest_path(dock_id, manifest_id).read_bytes()
        except FileNotFoundError:
            return None

    def save_manifest(self, v: Verified, raw: bytes) -> None:
        """The file first (durably), then its index row: both are there when this returns."""
        path = self.manifest_path(v.dock_id, v.manifest_id)
        if not path.exists():
            write_atomic(path, raw)
        self._write("INSERT OR IGNORE INTO manifests VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    v.dock_id, v.manifest_id, v.recording_id, v.camera_uid, v.officer_id,
                    v.stored_at, v.size, iso_now())

    def save_rejected(self, dock_id: str, name: str, *, code: str, detail: str, topic: str,
                      raw: bytes) -> Path | None:
        """Keep a refused payload apart, once per distinct payload; its path if new."""
        sha = hashlib.sha256(raw).hexdigest()[:16]
        path = self.root / "rejected" / dock_id / f"{name}-{sha}.json"
        if path.exists():
            return None
        doc = {"type": "rejected_manifest", "schema": 1, "dock_id": dock_id, "topic": topic,
               "received_at": iso_now(), "reason": code, "detail": detail,
               "payload": raw.decode("utf-8", errors="replace")}
        write_atomic(path, json.dumps(doc, indent=2, ensure_ascii=False).encode() + b"\n")
        return path

    def recording(self, recording_id: str) -> dict[str, Any] | None:
        """camera_uid and officer_id of a recording from the manifests ingested."""
        row = self._one("SELECT camera_uid, officer_id FROM manifests WHERE recording_id = ?",
                        recording_id)
        return None if row is None else {"camera_uid": row[0], "officer_id": row[1]}

    def manifest_ids(self) -> list[tuple[str, str]]:
        with self._mutex:
            return [(str(d), str(m)) for d, m in self._db.execute(
                "SELECT dock_id, manifest_id FROM manifests ORDER BY dock_id, manifest_id")]

    # -- events, ledger records, command results -------------------------------------------------

    def save_record(self, kind: str, dock_id: str, item_id: str, payload: Mapping[str, Any], *,
                    at: str | None, seq: int | None = None) -> Saved:
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        digest = payload_digest(payload)
        with self._mutex:
            row = self._db.execute("SELECT digest FROM records WHERE kind = ? AND dock_id = ? "
                                   "AND id = ?", (kind, dock_id, item_id)).fetchone()
            if row is None:
                self._db.execute("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                 (kind, dock_id, item_id, seq, at, iso_now(), digest, text))
                return Saved.NEW
            if row[0] == digest:
                return Saved.DUPLICATE
            self._db.execute("INSERT OR IGNORE INTO conflicts VALUES (?, ?, ?, ?, ?, ?)",
                             (kind, dock_id, item_id, iso_now(), digest, text))
            return Saved.CONFLICT

    def records(self, kind: str, dock_id: str | None = None) -> list[dict[str, Any]]:
        """Every stored payload of ``kind`` (optionally of one dock), by dock then seq/arrival."""
        sql = "SELECT payload FROM records WHERE kind = ?"
        args: list[object] = [kind]
        if dock_id is not None:
            sql += " AND dock_id = ?"
            args.append(dock_id)
        with self._mutex:
            rows = self._db.execute(sql + " ORDER BY dock_id, seq, rowid", args).fetchall()
        return [json.loads(r[0]) for r in rows]

    def last_ledger_entry(self, dock_id: str) -> dict[str, Any] | None:
        row = self._one("SELECT payload FROM records WHERE kind = 'ledger' AND dock_id = ? "
                        "ORDER BY seq DESC LIMIT 1", dock_id)
        return None if row is None else dict(json.loads(row[0])["entry"])

    def ledger_docks(self) -> list[str]:
        with self._mutex:
            return [str(r[0]) for r in self._db.execute(
                "SELECT DISTINCT dock_id FROM records WHERE kind = 'ledger' ORDER BY dock_id")]

    def ledger_stream(self, dock_id: str, *, at_from: str | None = None,
                      at_before: str | None = None) -> Iterator[dict[str, Any]]:
        """One dock's ledger entries in journal (seq) order, optionally by their ``at``
        (``at_from <= at < at_before``, compared as the fixed-width strings they are)."""
        sql = "SELECT payload FROM records WHERE kind = 'ledger' AND dock_id = ?"
        args: list[object] = [dock_id]
        if at_from is not None:
            sql += " AND at >= ?"
            args.append(at_from)
        if at_before is not None:
            sql += " AND at < ?"
            args.append(at_before)
        with self._mutex:
            rows = self._db.execute(sql + " ORDER BY seq", args).fetchall()
        for (text,) in rows:
            yield dict(json.loads(text)["entry"])

    # -- audit heads ----------------------------------------------------------------------------

    def last_head(self, dock_id: str) -> Head | None:
        row = self._one("SELECT seq, head, at FROM audit_heads WHERE dock_id = ?", dock_id)
        return None if row is None else Head(dock_id, int(row[0]), str(row[1]), str(row[2]))

    def set_head(self, head: Head, payload: Mapping[str, Any]) -> None:
        self._write("INSERT OR REPLACE INTO audit_heads VALUES (?, ?, ?, ?, ?, ?)",
                    head.dock_id, head.seq, head.head, head.at, iso_now(),
                    json.dumps(payload, separators=(",", ":")))

    # -- alerts ---------------------------------------------------------------------------------

    def save_alert(self, kind: str, dock_id: str, message: str,
                   details: Mapping[str, Any]) -> Path | None:
        """Persist an alert (file, then index); None if this very alert was raised before."""
        digest = payload_digest({"kind": kind, "dock_id": dock_id, "details": dict(details)})
        if self._one("SELECT 1 FROM alerts WHERE digest = ?", digest) is not None:
            return None
        at = iso_now()
        stamp = at.replace("-", "").replace(":", "")
        path = self.root / "alerts" / f"{stamp}-{dock_id}-{kind}-{digest[:12]}.json"
        doc = {"type": "console_alert", "schema": 1, "kind": kind, "dock_id": dock_id,
               "at": at, "message": message, "details": dict(details)}
        write_atomic(path, json.dumps(doc, indent=2, ensure_ascii=False).encode() + b"\n")
        self._write("INSERT OR IGNORE INTO alerts VALUES (?, ?, ?, ?, ?)", digest, kind,
                    dock_id, at, path.name)
        return path

    def alerts(self) -> list[dict[str, Any]]:
        d = self.root / "alerts"
        if not d.is_dir():
            return []
        return [json.loads(p.read_text()) for p in sorted(d.glob("*.json"))]
